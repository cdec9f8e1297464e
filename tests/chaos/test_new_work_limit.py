"""During a long outage, requests from outside any workflow (a start, an
enqueue, a management call) give up after ``new_work_outage_limit_sec``
with a DBOS exception, while a workflow already running waits it out."""

from __future__ import annotations

import threading
from typing import Any, Callable, Iterator

import pytest

from dbos import DBOS, DBOSConfig, Queue
from dbos.error import DBOSSystemDatabaseError
from tests.chaos.proxy import FaultProxy
from tests.chaos.support import proxy, require_postgres, through
from tests.threads import in_thread

pytestmark = pytest.mark.chaos
__all__ = ["proxy"]  # fixture, imported for pytest


@pytest.fixture
def limited(backend: str, fresh_postgres_url: str, proxy: FaultProxy) -> Iterator[None]:
    require_postgres(backend)
    config = DBOSConfig(name="chaos-limit", system_database_url=through(fresh_postgres_url, proxy),
                        new_work_outage_limit_sec=0.5)
    DBOS(config=config)
    yield
    proxy.accept()
    DBOS.destroy(destroy_registry=True)


def gave_up(action: Callable[[], Any]) -> str:
    with pytest.raises(DBOSSystemDatabaseError) as caught:
        action()
    return str(caught.value)


def test_requests_from_outside_give_up_while_running_work_waits(limited: None, proxy: FaultProxy) -> None:
    inside, release = threading.Event(), threading.Event()

    @DBOS.step()
    def blocked() -> str:
        inside.set()
        release.wait(30)
        return "done"

    @DBOS.workflow()
    def running() -> str:
        return blocked()

    @DBOS.workflow()
    def fresh() -> str:
        return "never"

    queue = Queue("limit-jobs")
    DBOS.launch()
    handle = DBOS.start_workflow(running)
    assert inside.wait(10)
    proxy.refuse()
    proxy.cut()
    for action in (fresh, lambda: queue.enqueue(fresh), DBOS.list_workflows):
        assert "Gave up" in gave_up(action)
    thread, box = in_thread(handle.get_result)
    release.set()  # the step's checkpoint now waits for the database
    thread.join(1.0)
    assert thread.is_alive()  # still waiting, not failed
    proxy.accept()
    thread.join(30)
    assert box == {"result": "done"}
    assert [w.workflow_id for w in DBOS.list_workflows()] == [handle.workflow_id]
