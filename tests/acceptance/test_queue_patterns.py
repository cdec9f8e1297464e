"""The queue-patterns app (``patterns_app.py``) started as a real process, on either backend."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.acceptance.patterns_app import RATE_LIMIT, WORK_CONCURRENCY
from tests.probe import qualified, query

pytestmark = pytest.mark.acceptance

APP = str(Path(__file__).with_name("patterns_app.py"))


def test_queue_patterns_app(sys_db_url: str, tmp_path: Path) -> None:
    log = tmp_path / "patterns.log"
    with open(log, "w") as err:
        done = subprocess.run([sys.executable, APP, sys_db_url], stdout=subprocess.PIPE, stderr=err,
                              text=True, timeout=120)
    assert done.returncode == 0, log.read_text()[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, done.stdout
    report = json.loads(lines[0][len("RESULT "):])

    fair = report["fair"]
    assert fair["results"] == [[f"big-tenant:{n}" for n in range(6)]] * 4 + [["small-tenant:0", "small-tenant:1"]]
    # One batch per tenant at a time, both tenants at once, and the shared limit held.
    assert fair["peak"]["batch:big-tenant"] == 1 and fair["peak"]["batch:small-tenant"] == 1
    assert fair["peak"]["work"] == WORK_CONCURRENCY
    assert fair["small_before_last_big"]

    rate = report["rate"]
    assert rate["results"] == list(range(6)) and rate["limiter"] == RATE_LIMIT
    # No window of a period holds more than the limit's starts (a little slack for clocks).
    assert len(rate["gaps"]) == 3 and min(rate["gaps"]) >= RATE_LIMIT["period"] - 0.05, rate["gaps"]

    named = report["named"]
    assert named == {"by_name": "by-name:7", "same": True, "dedup_result": 1}
    table = qualified(sys_db_url, "workflow_status")
    statuses = query(sys_db_url, f"SELECT status, COUNT(*) FROM {table} GROUP BY status")
    assert dict((str(s), int(n)) for s, n in statuses) == {"SUCCESS": 4 + 1 + 24 + 2 + 6 + 1 + 1}
