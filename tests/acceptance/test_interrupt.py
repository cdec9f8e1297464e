"""Ctrl-C and the first run without a configuration file, as a new user meets them.

The app runs as a real process in an empty folder: it must say which app
name and SQLite file it chose (after logging is set up, so that it shows),
and an interrupt must print one line, no traceback, and leave the workflow
PENDING for the next launch.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dbos import DBOSClient

from .child import WAIT_S

pytestmark = pytest.mark.acceptance

APP = str(Path(__file__).with_name("interrupt_app.py"))


@pytest.mark.parametrize("mode", ["direct", "background"])
def test_ctrl_c_prints_one_line_and_leaves_the_workflow_pending(tmp_path: Path, mode: str) -> None:
    """Background: the workflow's thread still runs; the process must not wait for it."""
    folder = tmp_path / "shop-app"
    folder.mkdir()
    # SIGINT as a terminal delivers it, whatever this test process inherited.
    proc = subprocess.Popen([sys.executable, APP, mode], cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "IN_STEP"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    database = folder / "shop_app.sqlite"
    assert f"running as app 'shop-app' with system database {database}" in err
    assert err.count("Interrupted (Ctrl-C)") == 1 and "Traceback" not in err, err
    assert proc.returncode == -signal.SIGINT
    client = DBOSClient(system_database_url=f"sqlite:///{database}")
    try:
        assert client.retrieve_workflow("interrupted").get_status().status == "PENDING"
        assert client.list_workflow_steps("interrupted") == []  # the step was cut short, not recorded
    finally:
        client.destroy()
