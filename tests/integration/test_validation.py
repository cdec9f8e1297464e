"""``@DBOS.workflow(validate_args=...)``, ``pydantic_args_validator`` and
``make_pydantic_args_validator``: arguments read from a row are checked (and
converted) before the body runs; a direct call's are not, as in DBOS Transact."""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

from dbos import (
    DBOS,
    DBOSClient,
    DBOSConfiguredInstance,
    Queue,
    SetWorkflowID,
    pydantic_args_validator,
)
from dbos.error import DBOSArgumentValidationError, DBOSException
from tests.integration.sysdb_sql import recover, status_row, wait_for_launch_recovery

POLL_S = 0.05
SEEN: List[Tuple[Tuple[Any, ...], Dict[str, Any]]] = []


def doubling(args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Tuple[Tuple[Any, ...], Dict[str, Any]]:
    SEEN.append((args, kwargs))
    return tuple(a * 2 for a in args), kwargs


@pytest.fixture
def queue(dbos: type[DBOS]) -> Iterator[Queue]:
    wait_for_launch_recovery()
    SEEN.clear()
    yield Queue("checked", polling_interval_sec=POLL_S)


def test_a_validator_runs_on_dispatch_only_and_its_result_is_what_the_body_gets(queue: Queue) -> None:
    @DBOS.workflow(validate_args=doubling)
    def echo(n: int) -> int:
        return n

    assert echo(3) == 3  # a direct call: not validated
    assert DBOS.start_workflow(echo, 4).get_result() == 4  # nor a start in the background
    assert SEEN == []
    handle = queue.enqueue(echo, 5)
    assert handle.get_result() == 10
    assert SEEN == [((5,), {})]
    # The row keeps the arguments as they were written.
    assert handle.get_status().input == {"args": (5,), "kwargs": {}}


def test_pydantic_converts_what_it_can_and_reports_every_bad_argument(queue: Queue) -> None:
    @DBOS.workflow(validate_args=pydantic_args_validator)
    def typed(n: int, tags: List[str], note: str = "none") -> str:
        return f"{n!r} {tags!r} {note!r}"

    assert queue.enqueue(typed, "7", tags=("a",)).get_result() == "7 ['a'] 'none'"
    bad = queue.enqueue(typed, "seven", tags=[1.5])
    with pytest.raises(DBOSArgumentValidationError) as caught:
        bad.get_result()
    message = str(caught.value)
    assert "workflow test_pydantic_converts_what_it_can_and_reports_every_bad_argument.<locals>.typed" in message
    assert "argument 'n': Input should be a valid integer" in message and "'seven'" in message
    assert "argument 'tags': Input should be a valid string at 0" in message
    assert isinstance(caught.value, ValueError)  # as DBOS Transact's ValueError
    assert status_row(bad.workflow_id)["status"] == "ERROR"
    missing = queue.enqueue(typed)
    with pytest.raises(DBOSArgumentValidationError, match="missing a required argument: 'n'"):
        missing.get_result()
    assert typed("direct", tags=[]) == "'direct' [] 'none'"  # direct: as given


def test_recovery_validates_too(dbos: type[DBOS]) -> None:
    wait_for_launch_recovery()
    received: List[Any] = []

    @DBOS.workflow(validate_args=pydantic_args_validator)
    def count(n: int) -> int:
        received.append(n)
        return n

    with SetWorkflowID("recovered"):
        assert count("5") == "5"  # type: ignore[arg-type]
    assert recover("recovered") == 5
    assert received == ["5", 5]


def test_a_client_enqueue_is_validated(queue: Queue, sys_db_url: str) -> None:
    @DBOS.workflow(name="client-typed", validate_args=pydantic_args_validator)
    def typed(n: int) -> int:
        return n + 1

    client = DBOSClient(system_database_url=sys_db_url)
    try:
        handle = client.enqueue({"workflow_name": "client-typed", "queue_name": "checked"}, "41")
        assert handle.get_result(polling_interval_sec=POLL_S) == 42
        refused = client.enqueue({"workflow_name": "client-typed", "queue_name": "checked"}, [])
        with pytest.raises(DBOSArgumentValidationError, match="argument 'n'"):
            refused.get_result(polling_interval_sec=POLL_S)
    finally:
        client.destroy()


def test_methods_are_validated_without_self_or_cls(queue: Queue) -> None:
    @DBOS.dbos_class()
    class Ledger(DBOSConfiguredInstance):
        @DBOS.workflow(validate_args=pydantic_args_validator)
        def add(self, amount: float, memo: Optional[str] = None) -> str:
            return f"{self.config_name}: {amount!r} {memo!r}"

        @classmethod
        @DBOS.workflow(validate_args=pydantic_args_validator)
        def scale(cls, factor: int) -> str:
            return f"{cls.__name__} x{factor!r}"

    ledger = Ledger("books")
    assert queue.enqueue(ledger.add, "2.5", memo=None).get_result() == "books: 2.5 None"
    assert queue.enqueue(Ledger.scale, "3").get_result() == "Ledger x3"
    with pytest.raises(DBOSArgumentValidationError, match="argument 'amount'"):
        queue.enqueue(ledger.add, "lots").get_result()


def test_a_validator_that_raises_or_returns_nonsense_ends_the_workflow_in_error(queue: Queue) -> None:
    def refuse(args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
        raise KeyError("no such customer")

    def nonsense(args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
        return args

    @DBOS.workflow(validate_args=refuse)
    def refused() -> None:
        raise AssertionError("the body must not run")

    @DBOS.workflow(validate_args=nonsense)
    def confused(n: int) -> None:
        raise AssertionError("the body must not run")

    with pytest.raises(KeyError, match="no such customer"):  # the validator's own error, recorded
        queue.enqueue(refused).get_result()
    with pytest.raises(DBOSException, match=r"must return \(args, kwargs\)"):
        queue.enqueue(confused, 1).get_result()


def test_bad_validators_are_refused_at_decoration(dbos: type[DBOS]) -> None:
    with pytest.raises(DBOSException, match="must be a callable"):
        DBOS.workflow(validate_args="pydantic")(lambda: None)  # type: ignore[arg-type]
    with pytest.raises(DBOSException, match="make_pydantic_args_validator"):
        pydantic_args_validator((), {})
