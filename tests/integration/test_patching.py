"""``DBOS.patch`` / ``deprecate_patch`` (and async twins), ``enable_patching`` and its version.

One workflow function stands for three revisions of an app's code, chosen
by ``CODE["rev"]``: v1 calls ``old``, v2 patches ``new`` in its place, v3
deprecates the patch. A workflow "started on v1 and upgraded" is made the
way a crash makes it: run on v1, its last checkpoints deleted and its row set
back to PENDING, then recovered while the code says v2 (or v3).
"""

from __future__ import annotations

import asyncio
from typing import Any, Dict, Iterator, List

import pytest

from dbos import DBOS, DBOSConfig, SetWorkflowID
from dbos._engine.recovery import recover_one
from dbos._engine.registry import get_registry
from dbos.error import DBOSException, DBOSPatchNondeterminismError
from tests.integration.sysdb_sql import delete_step, engine, set_pending, step_rows, wait_for_launch_recovery

CODE: Dict[str, str] = {"rev": "v1"}
RAN: List[str] = []


@pytest.fixture
def patching(config: DBOSConfig) -> Iterator[type[DBOS]]:
    """A launched DBOS with patching enabled, its launch recovery over."""
    CODE["rev"] = "v1"
    RAN.clear()
    DBOS(config={**config, "enable_patching": True})
    _register()
    DBOS.launch()
    wait_for_launch_recovery()
    yield DBOS
    DBOS.destroy(destroy_registry=True)


def _register() -> None:
    @DBOS.step(name="old")
    def old() -> str:
        RAN.append(f"old {DBOS.workflow_id}")
        return "old"

    @DBOS.step(name="new")
    def new() -> str:
        RAN.append(f"new {DBOS.workflow_id}")
        return "new"

    @DBOS.step(name="last")
    def last() -> str:
        return "last"

    @DBOS.workflow(name="order")
    def order() -> str:
        if CODE["rev"] == "v1":
            chosen = old()
        elif CODE["rev"] == "v2":
            chosen = new() if DBOS.patch("use-new") else old()
        else:
            DBOS.deprecate_patch("use-new")
            chosen = new()
        return f"{chosen}+{last()}"


def run(workflow_id: str) -> str:
    """Start ``order`` (as the code revision in CODE says) under ``workflow_id``."""
    workflow = get_registry().functions["order"].wrapper
    assert workflow is not None
    with SetWorkflowID(workflow_id):
        result: str = workflow()
    return result


def names(workflow_id: str) -> List[str]:
    return [r[1] for r in step_rows(workflow_id)]


def crash_after(workflow_id: str, steps: int) -> None:
    """Leave the finished workflow as a process killed after its first ``steps`` checkpoints."""
    for function_id in range(steps + 1, len(step_rows(workflow_id)) + 1):
        delete_step(workflow_id, function_id)
    set_pending(workflow_id)


def recover(workflow_id: str) -> Any:
    return recover_one(engine(), workflow_id).get_result()


# ----------------------------------------------------------------------
# The answers and the markers
# ----------------------------------------------------------------------


def test_a_new_workflow_takes_the_new_path_and_records_the_marker(patching: type[DBOS]) -> None:
    CODE["rev"] = "v2"
    assert run("fresh") == "new+last"
    assert names("fresh") == ["DBOS.patch-use-new", "new", "last"]
    (marker,) = [s for s in DBOS.list_workflow_steps("fresh") if s["function_id"] == 1]
    assert (marker["output"], marker["error"]) == (None, None)
    assert marker["started_at_epoch_ms"] == marker["completed_at_epoch_ms"]


def test_a_workflow_past_the_patch_point_on_old_code_keeps_the_old_path(patching: type[DBOS]) -> None:
    run("started-on-v1")
    crash_after("started-on-v1", 1)  # old() recorded, last() not
    CODE["rev"] = "v2"
    assert recover("started-on-v1") == "old+last"
    assert names("started-on-v1") == ["old", "last"]  # no marker: the ID stayed old()'s
    assert RAN == ["old started-on-v1"]  # replayed, not run again; new() never ran


def test_a_workflow_that_had_not_reached_the_patch_point_takes_the_new_path(patching: type[DBOS]) -> None:
    run("early")
    crash_after("early", 0)
    CODE["rev"] = "v2"
    assert recover("early") == "new+last"
    assert names("early") == ["DBOS.patch-use-new", "new", "last"]


def test_a_recorded_marker_is_replayed_not_decided_again(patching: type[DBOS]) -> None:
    CODE["rev"] = "v2"
    run("patched")
    crash_after("patched", 2)
    RAN.clear()
    assert recover("patched") == "new+last"
    assert names("patched") == ["DBOS.patch-use-new", "new", "last"]
    assert RAN == []  # new() replayed from its checkpoint


def test_deprecate_steps_over_a_recorded_marker_and_records_none(patching: type[DBOS]) -> None:
    CODE["rev"] = "v2"
    run("patched")
    crash_after("patched", 2)
    CODE["rev"] = "v3"
    RAN.clear()
    assert recover("patched") == "new+last"
    assert names("patched") == ["DBOS.patch-use-new", "new", "last"]
    assert RAN == []
    assert run("after-deprecation") == "new+last"
    assert names("after-deprecation") == ["new", "last"]


def test_deprecate_patch_returns_true(patching: type[DBOS]) -> None:
    @DBOS.workflow()
    def answers() -> List[bool]:
        return [DBOS.deprecate_patch("never-patched")]

    assert answers() == [True]


# ----------------------------------------------------------------------
# Async twins
# ----------------------------------------------------------------------


def test_async_twins_decide_in_the_order_tasks_begin(patching: type[DBOS]) -> None:
    @DBOS.step(name="tick")
    async def tick(n: int) -> int:
        await asyncio.sleep(0)
        return n

    @DBOS.workflow()
    async def concurrent() -> List[Any]:
        return list(await asyncio.gather(DBOS.patch_async("a"), tick(1), DBOS.patch_async("b"), tick(2),
                                         DBOS.deprecate_patch_async("c")))

    async def main() -> List[Any]:
        with SetWorkflowID("gathered"):
            return await concurrent()

    assert asyncio.run(main()) == [True, 1, True, 2, True]
    assert names("gathered") == ["DBOS.patch-a", "tick", "DBOS.patch-b", "tick"]
    set_pending("gathered")
    assert recover("gathered") == [True, 1, True, 2, True]
    assert names("gathered") == ["DBOS.patch-a", "tick", "DBOS.patch-b", "tick"]


def test_sync_patch_on_a_running_event_loop_names_the_async_twin(patching: type[DBOS]) -> None:
    @DBOS.workflow()
    async def wrong() -> str:
        try:
            DBOS.patch("p")
        except RuntimeError as exc:
            return str(exc)
        return "no error"

    assert "await patch_async(...)" in asyncio.run(wrong())


# ----------------------------------------------------------------------
# Misuse
# ----------------------------------------------------------------------


def test_a_patch_name_used_twice_in_one_workflow_is_refused(patching: type[DBOS]) -> None:
    @DBOS.workflow()
    def twice() -> None:
        DBOS.patch("p")
        DBOS.patch("p")

    with pytest.raises(DBOSPatchNondeterminismError, match="already called in this workflow") as caught:
        twice()
    assert "keep its answer in a variable" in str(caught.value)
    assert caught.value.patch_name == "DBOS.patch-p"


def test_patch_outside_a_workflow_or_in_a_step_is_refused(patching: type[DBOS]) -> None:
    with pytest.raises(DBOSException, match="must be called from a workflow"):
        DBOS.patch("p")

    @DBOS.step()
    def inside() -> bool:
        return DBOS.patch("p")

    @DBOS.workflow()
    def calls_step() -> bool:
        return inside()

    with pytest.raises(DBOSException, match="not outside a workflow nor inside a step"):
        calls_step()


def test_patch_without_enable_patching_says_what_to_set(dbos: type[DBOS]) -> None:
    @DBOS.workflow()
    def unpatched() -> bool:
        return DBOS.patch("p")

    @DBOS.workflow()
    def deprecated() -> bool:
        return DBOS.deprecate_patch("p")

    for workflow in (unpatched, deprecated):
        with pytest.raises(DBOSException, match='set "enable_patching": True'):
            workflow()


# ----------------------------------------------------------------------
# The application version
# ----------------------------------------------------------------------


def test_patching_fixes_the_version_so_new_code_recovers_old_workflows(patching: type[DBOS]) -> None:
    assert DBOS.application_version == "PATCHING_ENABLED"
    run("versioned")
    assert DBOS.get_workflow_status("versioned").app_version == "PATCHING_ENABLED"  # type: ignore[union-attr]
    assert [v.version_name for v in DBOS.list_application_versions()] == ["PATCHING_ENABLED"]


def test_a_configured_version_wins_over_patching(config: DBOSConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBOS__APPVERSION", "from-env")
    DBOS(config={**config, "enable_patching": True, "application_version": "v-7"})
    assert DBOS.application_version == "v-7"
    DBOS.destroy(destroy_registry=True)
    DBOS(config={**config, "enable_patching": True})
    assert DBOS.application_version == "PATCHING_ENABLED"  # over the environment's
    DBOS.destroy(destroy_registry=True)
    DBOS(config=config)
    assert DBOS.application_version == "from-env"
