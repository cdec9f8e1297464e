"""One operation at a time against a database that goes away: it waits for
the database and succeeds; new work gives up after its limit; a COMMIT whose
answer was lost is not applied twice."""

from __future__ import annotations

import threading
from typing import Any, Callable, Iterator, List

import psycopg2
import pytest

from dbos._sysdb import SystemDatabase
from dbos._sysdb.outage import Backoff, is_outage, new_work
from dbos._sysdb.records import ClaimLimits, Received, StepWrite
from dbos.error import DBOSSystemDatabaseError
from tests.chaos.proxy import FaultProxy
from tests.chaos.support import OUTAGE_END, OUTAGE_WARNING, Records, dbos_log, proxy, require_postgres, through
from tests.probe import maintenance_url

pytestmark = pytest.mark.chaos
__all__ = ["dbos_log", "proxy"]  # fixtures, imported for pytest


@pytest.fixture
def proxied(backend: str, fresh_postgres_url: str, proxy: FaultProxy) -> Iterator[SystemDatabase]:
    require_postgres(backend)
    sysdb = SystemDatabase(through(fresh_postgres_url, proxy), pool_size=4)
    sysdb.migrate()
    yield sysdb
    proxy.accept()
    sysdb.close()


def versions(sysdb: SystemDatabase) -> List[str]:
    return sorted(v.version_name for v in sysdb.list_application_versions())


def raised(action: Callable[[], Any]) -> BaseException:
    try:
        action()
    except BaseException as exc:
        return exc
    raise AssertionError("nothing raised")


def test_outages_are_told_from_other_errors(backend: str, fresh_postgres_url: str) -> None:
    require_postgres(backend)
    refused = raised(lambda: psycopg2.connect(host="127.0.0.1", port=1, user="postgres"))
    assert is_outage(refused)
    assert is_outage(psycopg2.OperationalError("server closed the connection unexpectedly"))  # no code
    conn = psycopg2.connect(maintenance_url(fresh_postgres_url))
    try:
        assert not is_outage(raised(lambda: conn.cursor().execute("SELEC 1")))  # 42601
        conn.rollback()
        killed = raised(lambda: conn.cursor().execute("SELECT pg_terminate_backend(pg_backend_pid())"))
        assert is_outage(killed)  # 57P01: terminated by an administrator
    finally:
        conn.close()
    assert not is_outage(ValueError("not a database error"))
    pauses = Backoff(cap=1.0)
    assert all(0 < pauses.next() <= 1.0 for _ in range(20))


def test_an_operation_during_a_cut_waits_and_succeeds(
    proxied: SystemDatabase, proxy: FaultProxy, dbos_log: Records
) -> None:
    proxied.register_application_version("before", "app")
    proxy.refuse()
    proxy.cut()
    failures: List[BaseException] = []
    done = threading.Event()

    def write() -> None:
        try:
            proxied.register_application_version("during", "app")
        except BaseException as exc:
            failures.append(exc)
        finally:
            done.set()

    threading.Thread(target=write).start()
    assert proxy.wait_refused(3, timeout=30)  # it is retrying, with the database away
    assert not done.is_set()
    proxy.accept()
    assert done.wait(timeout=30)
    assert failures == []
    assert versions(proxied) == ["before", "during"]
    assert len(dbos_log.saying(OUTAGE_WARNING)) == 1
    assert len(dbos_log.saying(OUTAGE_END)) == 1
    assert dbos_log.tracebacks() == []


def test_new_work_gives_up_after_its_limit(proxied: SystemDatabase, proxy: FaultProxy) -> None:
    proxied.register_application_version("before", "app")
    proxied.new_work_limit = 0.5
    proxy.refuse()
    proxy.cut()
    with new_work():
        with pytest.raises(DBOSSystemDatabaseError, match="Gave up starting new work") as caught:
            proxied.register_application_version("refused", "app")
    assert "***" in str(caught.value) or "@127.0.0.1" in str(caught.value)
    proxy.accept()
    assert versions(proxied) == ["before"]


def test_a_step_whose_commit_answer_was_lost_is_recorded_once(
    proxied: SystemDatabase, proxy: FaultProxy
) -> None:
    proxied.run(lambda: proxied.models.workflow_status.insert(
        workflow_uuid="wf-lost-commit", status="PENDING", created_at=1, updated_at=1).execute())
    step = StepWrite("wf-lost-commit", 1, "lost-commit-marker", output='"value"')
    proxy.drop_on(b"lost-commit-marker")
    assert proxied.record_step(step) == "PENDING"  # the retry finds its own row
    assert proxy.dropped.is_set()
    steps = proxied.list_steps("wf-lost-commit")
    assert [(s["function_id"], s["output"]) for s in steps] == [(1, '"value"')]


def test_a_different_step_recorded_first_is_still_a_conflict(proxied: SystemDatabase) -> None:
    from dbos.error import DBOSWorkflowConflictIDError

    proxied.run(lambda: proxied.models.workflow_status.insert(
        workflow_uuid="wf-other", status="PENDING", created_at=1, updated_at=1).execute())
    proxied.record_step(StepWrite("wf-other", 1, "step", output='"first"'))
    with pytest.raises(DBOSWorkflowConflictIDError):
        proxied.record_step(StepWrite("wf-other", 1, "step", output='"second"'))


def test_a_claim_whose_commit_answer_was_lost_still_hands_over_its_work(
    proxied: SystemDatabase, proxy: FaultProxy
) -> None:
    proxied.run(lambda: proxied.models.workflow_status.insert(
        workflow_uuid="wf-queued", status="ENQUEUED", queue_name="q", application_version="v1",
        created_at=1, updated_at=1).execute())
    proxy.drop_on(b"COMMIT")
    claimed = proxied.claim_queued("q", ClaimLimits(max_tasks=5, global_concurrency=5), "exec-1", "v1", "app")
    assert proxy.dropped.is_set()
    assert [row["workflow_uuid"] for row in claimed] == ["wf-queued"]
    assert proxied.workflow_statuses(["wf-queued"]) == {"wf-queued": "PENDING"}


def test_a_receive_whose_commit_answer_was_lost_returns_the_message_it_took(
    proxied: SystemDatabase, proxy: FaultProxy
) -> None:
    proxied.run(lambda: proxied.models.workflow_status.insert(
        workflow_uuid="wf-recv", status="PENDING", created_at=1, updated_at=1).execute())
    proxied.send_messages([("wf-recv", None, '"first"', "m-1", None), ("wf-recv", None, '"second"', "m-2", None)])
    found = proxied.find_message("wf-recv", None)
    assert found is not None and found[1] == '"first"'
    proxy.drop_on(b"lost-recv-marker")
    step = StepWrite("wf-recv", 1, "lost-recv-marker", output=found[1])
    assert proxied.consume_received(Received(found[0], step)) == "PENDING"  # not a conflict
    assert proxy.dropped.is_set()
    again = proxied.find_message("wf-recv", None)
    assert again is not None and again[1] == '"second"'  # the first is consumed, once
