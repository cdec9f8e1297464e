"""Decorated methods of DBOS classes, roles, registration conflicts, and recovery.

Classes are defined inside each test: the autouse fixture clears the
registry after every test. Recovery is driven by hand: a finished workflow
is set back to PENDING (optionally losing its last checkpoint, as if the
process died there) and ``recover_one`` / ``recover_pending`` picks it up.
"""

from __future__ import annotations

import asyncio
from typing import Any, List, Tuple

import pytest

from dbos import DBOS, DBOSConfig, DBOSConfiguredInstance, DBOSContextSetAuth, SetWorkflowID
from dbos.error import (
    DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded,
    DBOSConflictingRegistrationError,
    DBOSException,
    DBOSNotAuthorizedError,
)
from dbos._engine.recovery import recover_one, recover_pending
from tests.integration.sysdb_sql import (
    delete_step,
    engine,
    loaded_output,
    recover,
    set_pending,
    status_row,
    step_rows,
    sys_sql,
    wait_for_launch_recovery,
)


def names(rows: List[Tuple[Any, ...]]) -> List[str]:
    return [str(r[1]) for r in rows]


# ----------------------------------------------------------------------
# Static, class and instance methods
# ----------------------------------------------------------------------


def test_static_class_and_instance_methods_as_workflows_and_steps(dbos: type[DBOS]) -> None:
    @DBOS.dbos_class("Shop")
    class Shop(DBOSConfiguredInstance):
        def __init__(self, config_name: str, markup: int) -> None:
            self.markup = markup
            super().__init__(config_name)

        @staticmethod
        @DBOS.step()
        def tax(n: int) -> int:
            return n // 10

        @staticmethod
        @DBOS.workflow()
        def static_total(n: int) -> int:
            return n + Shop.tax(n)

        @classmethod
        @DBOS.step()
        def currency(cls) -> str:
            return f"{cls.__name__}-EUR"

        @classmethod
        @DBOS.workflow()
        def class_label(cls, n: int) -> str:
            return f"{n} {cls.currency()}"

        @DBOS.step()
        def price(self, n: int) -> int:
            return n + self.markup

        @DBOS.workflow()
        def instance_total(self, n: int) -> int:
            return self.price(n) + Shop.tax(n)

    shop = Shop("paris", markup=5)
    with SetWorkflowID("static"):
        assert Shop.static_total(100) == 110
    with SetWorkflowID("class"):
        assert Shop.class_label(3) == "3 Shop-EUR"
    with SetWorkflowID("instance"):
        assert shop.instance_total(100) == 115

    stored = {wid: status_row(wid) for wid in ("static", "class", "instance")}
    assert [(r["name"], r["class_name"], r["config_name"]) for r in stored.values()] == [
        ("test_static_class_and_instance_methods_as_workflows_and_steps.<locals>.Shop.static_total",
         None, None),
        ("test_static_class_and_instance_methods_as_workflows_and_steps.<locals>.Shop.class_label",
         "Shop", None),
        ("test_static_class_and_instance_methods_as_workflows_and_steps.<locals>.Shop.instance_total",
         "Shop", "paris"),
    ]
    # The object a method runs on is not stored among the inputs.
    assert DBOS.get_workflow_status("instance").input == {"args": (100,), "kwargs": {}}  # type: ignore[union-attr]
    assert DBOS.get_workflow_status("class").input == {"args": (3,), "kwargs": {}}  # type: ignore[union-attr]
    assert [r[1].rsplit(".", 1)[1] for r in step_rows("instance")] == ["price", "tax"]
    assert [loaded_output(r[2]) for r in step_rows("instance")] == [105, 10]
    assert [loaded_output(r[2]) for r in step_rows("class")] == ["Shop-EUR"]


def test_start_workflow_on_bound_methods(dbos: type[DBOS]) -> None:
    @DBOS.dbos_class()
    class Greeter(DBOSConfiguredInstance):
        def __init__(self, greeting: str) -> None:
            self.greeting = greeting
            super().__init__(greeting)

        @DBOS.workflow()
        def greet(self, who: str) -> str:
            return f"{self.greeting}, {who}"

        @classmethod
        @DBOS.workflow()
        def shout(cls, who: str) -> str:
            return f"{cls.__name__}: {who.upper()}"

        @DBOS.step()
        def whisper(self, who: str) -> str:
            return f"{self.greeting.lower()} {who}"

    hello, hi = Greeter("Hello"), Greeter("Hi")
    handles = [
        DBOS.start_workflow(hello.greet, "ann"),
        DBOS.start_workflow(hi.greet, "bob"),
        DBOS.start_workflow(Greeter.shout, "cy"),
        DBOS.start_workflow(hi.whisper, "dee"),  # a step, run as a one-step workflow
    ]
    assert [h.get_result() for h in handles] == ["Hello, ann", "Hi, bob", "Greeter: CY", "hi dee"]
    configs = [status_row(h.workflow_id)["config_name"] for h in handles]
    assert configs == ["Hello", "Hi", None, "Hi"]


def test_async_instance_method_workflow_and_step(dbos: type[DBOS]) -> None:
    @DBOS.dbos_class("Doubler")
    class Doubler(DBOSConfiguredInstance):
        def __init__(self, config_name: str, factor: int) -> None:
            self.factor = factor
            super().__init__(config_name)

        @DBOS.step()
        async def scale(self, n: int) -> int:
            await asyncio.sleep(0)
            return n * self.factor

        @DBOS.workflow()
        async def run(self, n: int) -> int:
            return await self.scale(n) + await self.scale(1)

    tripler = Doubler("triple", 3)

    async def main() -> int:
        with SetWorkflowID("async-method"):
            return await tripler.run(5)

    assert asyncio.run(main()) == 18
    row = status_row("async-method")
    assert (row["class_name"], row["config_name"], row["status"]) == ("Doubler", "triple", "SUCCESS")
    assert [loaded_output(r[2]) for r in step_rows("async-method")] == [15, 3]


def test_transaction_methods(config: DBOSConfig, sys_db_url: str) -> None:
    # The system database doubles as the application database here.
    config["application_database_url"] = sys_db_url
    DBOS(config=config)
    DBOS.launch()

    @DBOS.dbos_class("Ledger")
    class Ledger(DBOSConfiguredInstance):
        @DBOS.transaction()
        def echo(self, n: int) -> str:
            assert DBOS.sql_session is not None
            return f"{self.config_name}:{n}"

        @DBOS.workflow()
        def run(self, n: int) -> str:
            return self.echo(n)

    with SetWorkflowID("ledger"):
        assert Ledger("books").run(4) == "books:4"
    assert names(step_rows("ledger")) == [
        "test_transaction_methods.<locals>.Ledger.echo"
    ]


# ----------------------------------------------------------------------
# Recovery finds the class and the instance
# ----------------------------------------------------------------------


def test_recovery_runs_the_method_on_the_registered_instance(dbos: type[DBOS]) -> None:
    wait_for_launch_recovery()

    @DBOS.dbos_class("Counter")
    class Counter(DBOSConfiguredInstance):
        def __init__(self, config_name: str, offset: int) -> None:
            self.offset = offset
            self.calls: List[int] = []
            super().__init__(config_name)

        @DBOS.step()
        def bump(self, n: int) -> int:
            self.calls.append(n)
            return n + self.offset

        @DBOS.workflow()
        def run(self, n: int) -> int:
            return self.bump(n) + self.bump(n + 1)

    first, second = Counter("first", 100), Counter("second", 1000)
    with SetWorkflowID("inst-recovery"):
        assert first.run(1) == 203
    delete_step("inst-recovery", 2)  # as if the process died in the second step
    assert recover("inst-recovery") == 203
    assert first.calls == [1, 2, 2]
    assert second.calls == []
    assert names(step_rows("inst-recovery"))[1].endswith("Counter.bump")


def test_recovery_runs_a_class_method_on_its_class(dbos: type[DBOS]) -> None:
    wait_for_launch_recovery()
    seen: List[type] = []

    @DBOS.dbos_class("Reporter")
    class Reporter:
        @classmethod
        @DBOS.workflow()
        def report(cls, n: int) -> str:
            seen.append(cls)
            return f"{cls.__name__}:{n}"

    with SetWorkflowID("class-recovery"):
        assert Reporter.report(7) == "Reporter:7"
    assert recover("class-recovery") == "Reporter:7"
    assert seen == [Reporter, Reporter]


def test_recovery_of_an_instance_step_started_as_a_workflow(dbos: type[DBOS]) -> None:
    wait_for_launch_recovery()

    @DBOS.dbos_class("Pinger")
    class Pinger(DBOSConfiguredInstance):
        def __init__(self, config_name: str) -> None:
            self.pings: List[str] = []
            super().__init__(config_name)

        @DBOS.step()
        def ping(self, who: str) -> str:
            self.pings.append(who)
            return f"{self.config_name} pings {who}"

    pinger = Pinger("p1")
    with SetWorkflowID("temp-step"):
        handle = DBOS.start_workflow(pinger.ping, "you")
    assert handle.get_result() == "p1 pings you"
    delete_step("temp-step", 1)
    assert recover("temp-step") == "p1 pings you"
    assert pinger.pings == ["you", "you"]
    assert status_row("temp-step")["config_name"] == "p1"


def test_recovery_without_the_instance_leaves_the_workflow_pending(dbos: type[DBOS]) -> None:
    wait_for_launch_recovery()

    @DBOS.dbos_class("Orphan")
    class Orphan(DBOSConfiguredInstance):
        @DBOS.workflow()
        def run(self) -> str:
            return self.config_name

    with SetWorkflowID("orphan"):
        assert Orphan("here").run() == "here"
    sys_sql("UPDATE {status} SET config_name = 'gone' WHERE workflow_uuid = ?", ("orphan",))
    set_pending("orphan")
    assert recover_pending(engine()) == []  # logged, not raised
    assert status_row("orphan")["status"] == "PENDING"


# ----------------------------------------------------------------------
# Registration
# ----------------------------------------------------------------------


def test_two_instances_with_the_same_config_name_raise(dbos: type[DBOS]) -> None:
    @DBOS.dbos_class("Twin")
    class Twin(DBOSConfiguredInstance):
        @DBOS.workflow()
        def run(self) -> str:
            return self.config_name

    Twin("a")
    Twin("b")
    with pytest.raises(DBOSException, match="Twin/a"):
        Twin("a")


def test_another_class_under_a_registered_name_raises(dbos: type[DBOS]) -> None:
    @DBOS.dbos_class("Same")
    class One:
        pass

    with pytest.raises(DBOSException, match="Same"):
        @DBOS.dbos_class("Same")
        class Two:
            pass


def test_same_name_as_step_and_transaction_raises() -> None:
    @DBOS.step(name="shared")
    def as_step() -> None:
        pass

    def as_transaction() -> None:
        pass

    with pytest.raises(DBOSConflictingRegistrationError, match="shared"):
        DBOS.transaction(name="shared")(as_transaction)

    def as_workflow() -> None:
        pass

    with pytest.raises(DBOSConflictingRegistrationError):
        DBOS.workflow(name="shared")(as_workflow)


# ----------------------------------------------------------------------
# Roles
# ----------------------------------------------------------------------


def test_required_roles_on_a_workflow(dbos: type[DBOS]) -> None:
    @DBOS.workflow()
    @DBOS.required_roles(["admin", "auditor"])
    def guarded() -> Tuple[Any, Any, Any]:
        return DBOS.authenticated_user, DBOS.authenticated_roles, DBOS.assumed_role

    with pytest.raises(DBOSNotAuthorizedError) as refused:
        guarded()
    assert refused.value.status_code == 403
    with DBOSContextSetAuth("eve", ["guest"]), pytest.raises(DBOSNotAuthorizedError):
        guarded()
    assert sys_sql("SELECT COUNT(*) FROM {status}") == [(0,)]  # nothing was started

    with DBOSContextSetAuth("alice", ["auditor", "admin"]), SetWorkflowID("authorized"):
        assert guarded() == ("alice", ["auditor", "admin"], "admin")
    row = status_row("authorized")
    assert (row["authenticated_user"], row["assumed_role"]) == ("alice", "admin")


def test_required_roles_on_steps(dbos: type[DBOS]) -> None:
    @DBOS.step()
    @DBOS.required_roles(["admin"])
    def privileged() -> Any:
        return DBOS.assumed_role

    @DBOS.workflow()
    def wf() -> Any:
        return privileged()

    with pytest.raises(DBOSNotAuthorizedError):
        privileged()
    with SetWorkflowID("step-refused"), pytest.raises(DBOSNotAuthorizedError):
        wf()
    with DBOSContextSetAuth("alice", ["admin"]):
        assert privileged() == "admin"
        with SetWorkflowID("step-allowed"):
            assert wf() == "admin"
        assert DBOS.assumed_role is None  # the role held for the step only
    assert status_row("step-refused")["status"] == "ERROR"


def test_required_roles_recovered_with_the_caller_identity(dbos: type[DBOS]) -> None:
    wait_for_launch_recovery()
    seen: List[Tuple[Any, Any]] = []

    @DBOS.workflow()
    @DBOS.required_roles(["admin"])
    def guarded() -> str:
        seen.append((DBOS.authenticated_user, DBOS.assumed_role))
        return "done"

    with DBOSContextSetAuth("alice", ["admin"]), SetWorkflowID("auth-recovery"):
        assert guarded() == "done"
    assert recover("auth-recovery") == "done"
    assert seen == [("alice", "admin"), ("alice", "admin")]


def test_default_required_roles_apply_to_the_class_methods(dbos: type[DBOS]) -> None:
    @DBOS.dbos_class("Vault")
    @DBOS.default_required_roles(["user"])
    class Vault:
        @staticmethod
        @DBOS.workflow()
        def peek() -> Any:
            return DBOS.assumed_role

        @staticmethod
        @DBOS.workflow()
        @DBOS.required_roles(["admin"])
        def open() -> Any:
            return DBOS.assumed_role

    with pytest.raises(DBOSNotAuthorizedError):
        Vault.peek()
    with DBOSContextSetAuth("bob", ["user"]):
        assert Vault.peek() == "user"
        with pytest.raises(DBOSNotAuthorizedError):  # its own roles replace the default
            Vault.open()
    with DBOSContextSetAuth("root", ["admin"]):
        assert Vault.open() == "admin"


# ----------------------------------------------------------------------
# Recovery: attempts and which workflows
# ----------------------------------------------------------------------


def test_max_recovery_attempts_moves_the_workflow_to_the_dead_letter_status(
    dbos: type[DBOS],
) -> None:
    wait_for_launch_recovery()
    runs: List[int] = []

    @DBOS.workflow(max_recovery_attempts=2)
    def fragile() -> int:
        runs.append(1)
        return len(runs)

    with SetWorkflowID("fragile"):
        assert fragile() == 1
    assert recover("fragile") == 2  # recovery 1 of 2
    assert recover("fragile") == 3  # recovery 2 of 2
    set_pending("fragile")
    handle = recover_one(engine(), "fragile")
    with pytest.raises(DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded):
        handle.get_result()
    assert len(runs) == 3
    row = status_row("fragile")
    assert row["status"] == "MAX_RECOVERY_ATTEMPTS_EXCEEDED"
    assert row["recovery_attempts"] == 4
    with pytest.raises(DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded):
        DBOS.retrieve_workflow("fragile").get_result()


def test_recovery_picks_only_this_executors_pending_workflows_of_this_version(
    dbos: type[DBOS],
) -> None:
    wait_for_launch_recovery()
    runs: List[str] = []

    @DBOS.workflow()
    def work(tag: str) -> str:
        runs.append(tag)
        return tag

    for tag in ("mine", "other-executor", "other-version", "finished"):
        with SetWorkflowID(tag):
            work(tag)
    for tag in ("mine", "other-executor", "other-version"):
        set_pending(tag)
    sys_sql("UPDATE {status} SET executor_id = 'elsewhere' WHERE workflow_uuid = ?",
            ("other-executor",))
    sys_sql("UPDATE {status} SET application_version = 'v-old' WHERE workflow_uuid = ?",
            ("other-version",))

    handles = recover_pending(engine())
    assert [h.workflow_id for h in handles] == ["mine"]
    assert handles[0].get_result() == "mine"
    assert runs == ["mine", "other-executor", "other-version", "finished", "mine"]
    statuses = {t: status_row(t)["status"] for t in ("mine", "other-executor", "other-version")}
    assert statuses == {"mine": "SUCCESS", "other-executor": "PENDING", "other-version": "PENDING"}
    assert status_row("other-executor")["recovery_attempts"] == 1


def test_launch_recovers_pending_workflows(config: DBOSConfig) -> None:
    runs: List[int] = []

    @DBOS.workflow()
    def resumable() -> int:
        runs.append(1)
        return 42

    DBOS(config=config)
    DBOS.launch()
    wait_for_launch_recovery()
    with SetWorkflowID("relaunched"):
        assert resumable() == 42
    set_pending("relaunched")
    DBOS.destroy()  # keeps the registry, like a restarted process importing the same code

    DBOS(config=config)
    DBOS.launch()
    assert DBOS.retrieve_workflow("relaunched").get_result() == 42
    assert len(runs) == 2
    assert status_row("relaunched")["recovery_attempts"] == 2
