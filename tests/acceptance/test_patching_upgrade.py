"""Upgrading an app's code under its running workflows with DBOS.patch, with real processes.

Three revisions of ``patch_app.py`` run one after another on one system
database, each killed (SIGKILL) while a workflow hangs in its last step:
v1 charges a card; v2 patches invoicing in for new workflows; v3 deprecates
the patch. Each relaunch recovers the workflow the previous process left,
and each workflow must keep the path it started on: the one started on v1
charges the card even when v2 finishes it, the one v2 started invoices even
when v3 finishes it, and the ones started on v2 and v3 invoice.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Callable, Iterator, List

import pytest

from tests.acceptance.child import Child, children_of
from tests.probe import qualified, query

pytestmark = pytest.mark.acceptance

APP = str(Path(__file__).with_name("patch_app.py"))


@pytest.fixture
def children(tmp_path: Path) -> Iterator[Callable[..., Child]]:
    with children_of(APP, tmp_path) as start:
        yield start


def steps(sys_url: str, workflow_id: str) -> List[str]:
    rows = query(sys_url, f"SELECT function_name FROM {qualified(sys_url, 'operation_outputs')} "
                          "WHERE workflow_uuid = %s ORDER BY function_id", (workflow_id,))
    return [str(r[0]) for r in rows]


def versions(sys_url: str) -> List[str]:
    rows = query(sys_url, f"SELECT DISTINCT application_version FROM {qualified(sys_url, 'workflow_status')}")
    return [str(r[0]) for r in rows]


def test_old_and_new_workflows_each_keep_their_path_across_patch_and_deprecation(
    sys_db_url: str, tmp_path: Path, children: Callable[..., Child],
) -> None:
    ledger = tmp_path / "ledger"
    args = (sys_db_url, str(ledger))

    v1 = children("v1", *args, "v1", "started-on-v1")
    v1.expect("READY")
    v1.ask("start started-on-v1", "HOLDING started-on-v1")
    v1.kill()  # past the patch point on the old code, in its last step

    v2 = children("v2", *args, "v2", "started-on-v2")
    v2.expect("READY")
    assert v2.ask("result started-on-v1", "RESULT") == "RESULT started-on-v1 charged"  # recovered on v2
    v2.ask("start new-on-v2", "STARTED")
    assert v2.ask("result new-on-v2", "RESULT") == "RESULT new-on-v2 invoiced"
    v2.ask("start started-on-v2", "HOLDING started-on-v2")
    v2.kill()  # past its patch marker, in its last step

    v3 = children("v3", *args, "v3")
    v3.expect("READY")
    assert v3.ask("result started-on-v2", "RESULT") == "RESULT started-on-v2 invoiced"  # recovered on v3
    v3.ask("start new-on-v3", "STARTED")
    assert v3.ask("result new-on-v3", "RESULT") == "RESULT new-on-v3 invoiced"
    v3.stop()

    marker = "DBOS.patch-invoice"
    assert steps(sys_db_url, "started-on-v1") == ["reserve", "charge_card", "ship"]
    assert steps(sys_db_url, "new-on-v2") == ["reserve", marker, "send_invoice", "ship"]
    assert steps(sys_db_url, "started-on-v2") == ["reserve", marker, "send_invoice", "ship"]
    assert steps(sys_db_url, "new-on-v3") == ["reserve", "send_invoice", "ship"]
    # Completed steps never ran again; only the step each kill interrupted did.
    ran = Counter(tuple(line.split()) for line in ledger.read_text().splitlines())
    assert ran == Counter({
        ("reserve", "started-on-v1"): 1, ("charge_card", "started-on-v1"): 1, ("ship", "started-on-v1"): 2,
        ("reserve", "new-on-v2"): 1, ("send_invoice", "new-on-v2"): 1, ("ship", "new-on-v2"): 1,
        ("reserve", "started-on-v2"): 1, ("send_invoice", "started-on-v2"): 1, ("ship", "started-on-v2"): 2,
        ("reserve", "new-on-v3"): 1, ("send_invoice", "new-on-v3"): 1, ("ship", "new-on-v3"): 1,
    })
    # One version for every revision: that is what lets new code recover old workflows.
    assert versions(sys_db_url) == ["PATCHING_ENABLED"]
