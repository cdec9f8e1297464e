"""Workflow schedules kept in the database, on the backend chosen with ``--backend``.

The scheduled workflows record each run in a ``Runs`` log that tests wait on
(a condition, never a bare sleep). To show that a schedule does *not* fire,
a test waits for a second, "witness" schedule to fire twice more: the
scheduler was alive and ticking all that while.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple
from zoneinfo import ZoneInfo

import pytest

from dbos import DBOS, DBOSClient, DBOSConfig, Queue
from dbos._engine.engine import Engine, peek_engine
from dbos._queues.cron import next_tick
from dbos._queues.schedule_runner import ScheduleRunner, _Ticking, running_schedules
from dbos.error import DBOSException, DBOSInvalidArgumentError

WAIT_S = 30.0  # an upper bound reached only when a test is already failing
EVERY_SECOND = "* * * * * *"
FAR_AWAY = "0 0 1 1 *"  # once a year: never fires during a test


class Runs:
    """Each run of a scheduled workflow: (schedule, scheduled_time, context, workflow ID)."""

    def __init__(self) -> None:
        self.log: List[Tuple[str, datetime, Any, str]] = []
        self._cond = threading.Condition()

    def add(self, scheduled_time: datetime, context: Any) -> None:
        workflow_id = str(DBOS.workflow_id)
        name = workflow_id.split("-")[1] if workflow_id.startswith("sched-") else ""
        with self._cond:
            self.log.append((name, scheduled_time, context, workflow_id))
            self._cond.notify_all()

    def of(self, name: str) -> List[Tuple[str, datetime, Any, str]]:
        with self._cond:
            return [run for run in self.log if run[0] == name]

    def wait(self, name: str, count: int) -> List[Tuple[str, datetime, Any, str]]:
        self.wait_for(lambda: len([r for r in self.log if r[0] == name]) >= count, f"{name} ran {count} times")
        return self.of(name)

    def wait_for(self, predicate: Callable[[], bool], what: str) -> None:
        with self._cond:
            ok = self._cond.wait_for(predicate, WAIT_S)
        assert ok, f"not so: {what}; runs: {self.log}"


RUNS = Runs()


@pytest.fixture
def app(config: DBOSConfig) -> Iterator[Dict[str, Callable[..., Any]]]:
    """A launched DBOS with scheduled workflows registered."""
    global RUNS
    RUNS = Runs()

    @DBOS.workflow()
    def ticked(scheduled_time: datetime, context: Any) -> None:
        RUNS.add(scheduled_time, context)

    @DBOS.workflow()
    async def ticked_async(scheduled_time: datetime, context: Any) -> None:
        RUNS.add(scheduled_time, context)

    @DBOS.dbos_class("Jobs")
    class Jobs:
        @classmethod
        @DBOS.workflow()
        def nightly(cls, scheduled_time: datetime, context: Any) -> None:
            RUNS.add(scheduled_time, context)

    Queue("sched-queue")
    DBOS(config=config)
    DBOS.launch()
    yield {"ticked": ticked, "ticked_async": ticked_async, "nightly": Jobs.nightly}
    DBOS.destroy(destroy_registry=True)


def engine() -> Engine:
    found = peek_engine()
    assert found is not None
    return found


def rows_of(schedule_name: str) -> List[Dict[str, Any]]:
    return [w.__dict__ for w in DBOS.list_workflows(schedule_name=schedule_name, load_input=False)]


def witness(app: Dict[str, Callable[..., Any]], ticks: int = 2) -> None:
    """Wait until a fresh every-second schedule has fired ``ticks`` times."""
    name = f"witness{len(RUNS.log)}"
    DBOS.create_schedule(schedule_name=name, workflow_fn=app["ticked"], schedule=EVERY_SECOND)
    RUNS.wait(name, ticks)
    DBOS.delete_schedule(name)


# ----------------------------------------------------------------------
# Creating, reading, listing, deleting
# ----------------------------------------------------------------------


def test_create_get_list_delete(app: Dict[str, Callable[..., Any]]) -> None:
    DBOS.create_schedule(schedule_name="alpha", workflow_fn=app["ticked"], schedule=FAR_AWAY,
                         context={"n": 1}, cron_timezone="Europe/Paris", queue_name="sched-queue")
    DBOS.create_schedule(schedule_name="beta", workflow_fn=app["nightly"], schedule="0 3 * * *",
                         automatic_backfill=True)
    alpha = DBOS.get_schedule("alpha")
    assert alpha is not None
    assert {k: v for k, v in alpha.items() if k != "schedule_id"} == {
        "schedule_name": "alpha", "workflow_name": app["ticked"].__qualname__, "workflow_class_name": None,
        "schedule": FAR_AWAY, "status": "ACTIVE", "context": {"n": 1}, "last_fired_at": None,
        "automatic_backfill": False, "cron_timezone": "Europe/Paris", "queue_name": "sched-queue",
        "application_name": "test-app"}
    beta = DBOS.get_schedule("beta")
    assert beta is not None and beta["workflow_class_name"] == "Jobs" and beta["automatic_backfill"] is True
    assert DBOS.get_schedule("nothing") is None
    assert [s["schedule_name"] for s in DBOS.list_schedules()] == ["alpha", "beta"]
    assert [s["schedule_name"] for s in DBOS.list_schedules(schedule_name_prefix="al")] == ["alpha"]
    assert [s["schedule_name"] for s in DBOS.list_schedules(schedule_name_prefix=["x", "b"])] == ["beta"]
    assert [s["schedule_name"] for s in DBOS.list_schedules(workflow_name=beta["workflow_name"])] == ["beta"]
    assert DBOS.list_schedules(status="PAUSED") == []
    assert DBOS.list_schedules(application_name="another-app") == []  # nothing unclaimed either
    DBOS.delete_schedule("alpha")
    DBOS.delete_schedule("alpha")  # already gone: nothing happens
    assert [s["schedule_name"] for s in DBOS.list_schedules()] == ["beta"]


def test_async_twins(app: Dict[str, Callable[..., Any]]) -> None:
    async def scenario() -> Tuple[Any, ...]:
        await DBOS.create_schedule_async(schedule_name="asy", workflow_fn=app["ticked_async"],
                                         schedule=FAR_AWAY, context=[1, 2])
        got = await DBOS.get_schedule_async("asy")
        listed = await DBOS.list_schedules_async(status=["ACTIVE"])
        await DBOS.apply_schedules_async([{"schedule_name": "asy", "workflow_fn": app["ticked_async"],
                                           "schedule": "0 0 2 1 *"}])
        applied = await DBOS.get_schedule_async("asy")
        await DBOS.delete_schedule_async("asy")
        return got, listed, applied, await DBOS.get_schedule_async("asy")

    got, listed, applied, gone = asyncio.run(scenario())
    assert got["context"] == [1, 2] and [s["schedule_name"] for s in listed] == ["asy"]
    assert applied["schedule"] == "0 0 2 1 *" and applied["context"] is None
    assert gone is None


# ----------------------------------------------------------------------
# Bad input: a DBOS exception naming the argument and value, nothing written
# ----------------------------------------------------------------------


def not_a_workflow(scheduled_time: datetime, context: Any) -> None:
    pass


@pytest.mark.parametrize("change, argument, value", [
    ({"schedule": "not a cron"}, "schedule", "not a cron"),
    ({"schedule": "61 * * * *"}, "schedule", "61 * * * *"),
    ({"cron_timezone": "Mars/Olympus_Mons"}, "cron_timezone", "Mars/Olympus_Mons"),
    ({"queue_name": "no-such-queue"}, "queue_name", "no-such-queue"),
    ({"workflow_fn": not_a_workflow}, "workflow_fn", "not_a_workflow"),
    ({"workflow_fn": "instance"}, "workflow_fn", "Plain.method"),
    ({"schedule_name": ""}, "schedule_name", ""),
])
def test_bad_input_names_argument_and_writes_nothing(app: Dict[str, Callable[..., Any]],
                                                     change: Dict[str, Any], argument: str, value: str) -> None:
    DBOS.create_schedule(schedule_name="kept", workflow_fn=app["ticked"], schedule=FAR_AWAY)
    before = DBOS.list_schedules()
    args: Dict[str, Any] = {"schedule_name": "new", "workflow_fn": app["ticked"], "schedule": FAR_AWAY, **change}
    if args["workflow_fn"] == "instance":
        class Plain:
            @DBOS.workflow()
            def method(self, scheduled_time: datetime, context: Any) -> None:
                pass

        args["workflow_fn"] = Plain().method
    with pytest.raises(DBOSInvalidArgumentError) as caught:
        DBOS.create_schedule(**args)
    assert isinstance(caught.value, DBOSException)
    assert caught.value.argument == argument and argument in str(caught.value) and value in str(caught.value)
    entry = {k: v for k, v in args.items()}
    with pytest.raises(DBOSInvalidArgumentError):
        DBOS.apply_schedules([{"schedule_name": "kept", "workflow_fn": app["ticked"], "schedule": "0 0 2 1 *"},
                              entry])  # type: ignore[list-item]
    assert DBOS.list_schedules() == before  # the good entry was not applied either


def test_bad_filters_and_names_are_refused(app: Dict[str, Callable[..., Any]]) -> None:
    DBOS.create_schedule(schedule_name="one", workflow_fn=app["ticked"], schedule=FAR_AWAY)
    for call, argument in (
        (lambda: DBOS.list_schedules(status=5), "status"),  # type: ignore[arg-type]
        (lambda: DBOS.list_schedules(workflow_name=[1]), "workflow_name"),  # type: ignore[list-item]
        (lambda: DBOS.get_schedule(None), "name"),  # type: ignore[arg-type]
        (lambda: DBOS.pause_schedule(3), "name"),  # type: ignore[arg-type]
        (lambda: DBOS.backfill_schedule("one", "yesterday", datetime.now()), "start"),  # type: ignore[arg-type]
        (lambda: DBOS.apply_schedules(["one"]), "schedules"),  # type: ignore[list-item]
        (lambda: DBOS.create_schedule(schedule_name="two", workflow_fn=app["ticked"], schedule=FAR_AWAY,
                                      automatic_backfill="yes"), "automatic_backfill"),  # type: ignore[arg-type]
    ):
        with pytest.raises(DBOSInvalidArgumentError) as caught:
            call()
        assert caught.value.argument == argument
    assert [s["schedule_name"] for s in DBOS.list_schedules()] == ["one"]
    assert DBOS.get_schedule("one")["status"] == "ACTIVE"  # type: ignore[index]


def test_duplicate_name_is_refused(app: Dict[str, Callable[..., Any]]) -> None:
    DBOS.create_schedule(schedule_name="dup", workflow_fn=app["ticked"], schedule=FAR_AWAY)
    before = DBOS.list_schedules()
    with pytest.raises(DBOSException, match="Schedule 'dup' already exists"):
        DBOS.create_schedule(schedule_name="dup", workflow_fn=app["ticked"], schedule="0 0 2 1 *")
    with pytest.raises(DBOSInvalidArgumentError, match="dup"):
        DBOS.apply_schedules([{"schedule_name": "dup", "workflow_fn": app["ticked"], "schedule": FAR_AWAY}] * 2)
    assert DBOS.list_schedules() == before


def test_a_registered_queue_is_accepted(app: Dict[str, Callable[..., Any]]) -> None:
    engine().sysdb.save_queue({"name": "db-queue", "polling_interval_sec": 1.0,
                               "application_name": "test-app"}, True)
    DBOS.create_schedule(schedule_name="onq", workflow_fn=app["ticked"], schedule=FAR_AWAY, queue_name="db-queue")
    assert DBOS.get_schedule("onq")["queue_name"] == "db-queue"  # type: ignore[index]


def test_another_applications_schedule_name_is_refused(app: Dict[str, Callable[..., Any]], sys_db_url: str) -> None:
    client = DBOSClient(system_database_url=sys_db_url, application_name="other-app")
    try:
        client.create_schedule(schedule_name="theirs", workflow_name=app["ticked"].__qualname__, schedule=EVERY_SECOND)
        for attempt in (
            lambda: DBOS.create_schedule(schedule_name="theirs", workflow_fn=app["ticked"], schedule=FAR_AWAY),
            lambda: DBOS.apply_schedules([{"schedule_name": "theirs", "workflow_fn": app["ticked"],
                                           "schedule": FAR_AWAY}]),
        ):
            with pytest.raises(DBOSException, match="'other-app'.*rename_application"):
                attempt()
        assert DBOS.list_schedules() == []  # not ours, and not unclaimed
        anonymous = DBOSClient(system_database_url=sys_db_url)
        try:
            with pytest.raises(DBOSException, match="application_name='other-app'"):
                anonymous.create_schedule(schedule_name="theirs", workflow_name="w", schedule=FAR_AWAY)
        finally:
            anonymous.destroy()
        assert client.get_schedule("theirs")["schedule"] == EVERY_SECOND  # type: ignore[index]
        witness(app)
        assert RUNS.of("theirs") == []  # another application's schedule does not fire here
    finally:
        client.destroy()


# ----------------------------------------------------------------------
# Firing
# ----------------------------------------------------------------------


def test_ticks_fire_once_each_with_time_and_context(app: Dict[str, Callable[..., Any]]) -> None:
    DBOS.create_schedule(schedule_name="sec", workflow_fn=app["ticked"], schedule=EVERY_SECOND, context="ctx")
    runs = sorted(RUNS.wait("sec", 3), key=lambda run: run[1])  # by tick: they may finish in any order
    times = [t for _, t, _, _ in runs]
    assert all(t.tzinfo is not None and t.utcoffset() == timedelta(0) and t.microsecond == 0 for t in times)
    assert [b - a for a, b in zip(times, times[1:])] == [timedelta(seconds=1)] * (len(times) - 1)
    assert {c for _, _, c, _ in runs} == {"ctx"}
    assert [w for _, _, _, w in runs] == [f"sched-sec-{t.isoformat()}" for t in times]
    rows = {r["workflow_id"]: r for r in rows_of("sec")}
    for _, _, _, workflow_id in runs:
        assert rows[workflow_id]["queue_name"] == "_dbos_internal_queue"
        assert rows[workflow_id]["schedule_name"] == "sec"
    fired = DBOS.get_schedule("sec")["last_fired_at"]  # type: ignore[index]
    assert fired is not None and datetime.fromisoformat(fired) >= times[-1] - timedelta(seconds=1)


def test_ticks_in_a_time_zone_on_a_queue(app: Dict[str, Callable[..., Any]]) -> None:
    DBOS.create_schedule(schedule_name="tz", workflow_fn=app["nightly"], schedule=EVERY_SECOND,
                         cron_timezone="Asia/Kolkata", queue_name="sched-queue")
    _, tick, _, workflow_id = RUNS.wait("tz", 1)[0]
    assert tick.utcoffset() == timedelta(hours=5, minutes=30)
    assert workflow_id.endswith("+05:30")
    assert DBOS.get_workflow_status(workflow_id).queue_name == "sched-queue"  # type: ignore[union-attr]


def test_pause_resume_and_delete_stop_and_restart_ticks(app: Dict[str, Callable[..., Any]]) -> None:
    DBOS.create_schedule(schedule_name="pz", workflow_fn=app["ticked"], schedule=EVERY_SECOND)
    RUNS.wait("pz", 1)
    DBOS.pause_schedule("pz")
    assert DBOS.get_schedule("pz")["status"] == "PAUSED"  # type: ignore[index]
    count = len(RUNS.of("pz"))
    witness(app)
    assert "pz" not in running_schedules()
    paused_count = len(RUNS.of("pz"))
    assert paused_count <= count + 1  # at most a tick already claimed when the pause came
    DBOS.resume_schedule("pz")
    RUNS.wait("pz", paused_count + 2)
    DBOS.delete_schedule("pz")
    deleted_count = len(RUNS.of("pz"))
    witness(app)
    assert len(RUNS.of("pz")) <= deleted_count + 1


def test_a_new_definition_is_picked_up(app: Dict[str, Callable[..., Any]]) -> None:
    DBOS.apply_schedules([{"schedule_name": "re", "workflow_fn": app["ticked"], "schedule": EVERY_SECOND,
                           "context": "first"}])
    RUNS.wait("re", 1)
    DBOS.apply_schedules([{"schedule_name": "re", "workflow_fn": app["ticked"], "schedule": EVERY_SECOND,
                           "context": "second"}])
    changed_at = len(RUNS.of("re"))
    runs = sorted(RUNS.wait("re", changed_at + 3), key=lambda run: run[1])
    assert runs[-1][2] == "second"
    assert [c for _, _, c, _ in runs] == sorted(c for _, _, c, _ in runs)  # never back to the old one


@pytest.mark.parametrize("backfill", [False, True])
def test_a_process_that_wakes_late_skips_the_missed_ticks(app: Dict[str, Callable[..., Any]],
                                                           backfill: bool) -> None:
    """What a process stopped for a while (SIGSTOP, a debugger) finds: ticks
    due long ago. It fires none of them, only those to come (issue #803),
    unless the schedule asks for automatic backfill."""
    created = datetime.now(timezone.utc)
    DBOS.create_schedule(schedule_name="late", workflow_fn=app["ticked"], schedule=EVERY_SECOND,
                         automatic_backfill=backfill)
    row = engine().sysdb.get_schedule("late")
    assert row is not None
    # A runner of its own (not started) whose next tick was due 10 s ago.
    runner = ScheduleRunner(engine(), 1.0)
    due = next_tick(EVERY_SECOND, None, created - timedelta(seconds=11))
    runner.ticking["late"] = _Ticking(row, due, due)
    woke = datetime.now(timezone.utc)
    runner.fire_due()
    # On to the next tick to come. Compare its firing time, not its tick: a
    # tick of this very second may still wait for its jitter to pass.
    assert runner.ticking["late"].fire_at > woke
    missed = {f"sched-late-{(due + timedelta(seconds=s)).isoformat()}" for s in range(9)}
    fired = {w.workflow_id for w in DBOS.list_workflows(schedule_name="late", load_input=False)}
    assert (missed <= fired) if backfill else missed.isdisjoint(fired)


def test_automatic_backfill_fires_the_ticks_missed_while_down(config: DBOSConfig) -> None:
    @DBOS.workflow()
    def caught_up(scheduled_time: datetime, context: Any) -> None:
        RUNS.add(scheduled_time, context)

    DBOS(config=config)
    DBOS.launch()
    DBOS.create_schedule(schedule_name="bf", workflow_fn=caught_up, schedule=EVERY_SECOND, automatic_backfill=True)
    DBOS.create_schedule(schedule_name="nobf", workflow_fn=caught_up, schedule=EVERY_SECOND)
    RUNS.wait("bf", 1)
    RUNS.wait("nobf", 1)
    DBOS.destroy()
    down = max(t for _, t, _, _ in RUNS.of("bf") + RUNS.of("nobf"))
    threading.Event().wait(3)  # three ticks pass with no process up
    DBOS(config=config)
    DBOS.launch()
    up = datetime.now(timezone.utc)
    missed = [down + timedelta(seconds=s) for s in range(1, 3)]  # both due well before the launch
    assert missed[-1] < up - timedelta(seconds=1)
    RUNS.wait_for(lambda: all(t in {r[1] for r in RUNS.of("bf")} for t in missed), "bf's missed ticks ran")
    witness({"ticked": caught_up})
    assert not {r[1] for r in RUNS.of("nobf")} & set(missed)


# ----------------------------------------------------------------------
# Trigger and backfill
# ----------------------------------------------------------------------


def test_trigger_runs_now_and_refuses_unknown(app: Dict[str, Callable[..., Any]]) -> None:
    DBOS.create_schedule(schedule_name="trig", workflow_fn=app["ticked"], schedule=FAR_AWAY, context=7)
    DBOS.pause_schedule("trig")
    handle = DBOS.trigger_schedule("trig")
    assert handle.workflow_id.startswith("sched-trig-trigger-")
    assert handle.get_result() is None
    _, tick, context, _ = RUNS.of("trig")[0]
    assert context == 7 and abs(datetime.now(timezone.utc) - tick) < timedelta(seconds=WAIT_S)
    assert DBOS.get_workflow_status(handle.workflow_id).schedule_name == "trig"  # type: ignore[union-attr]
    with pytest.raises(DBOSException, match="Schedule 'nope' does not exist"):
        DBOS.trigger_schedule("nope")


def test_backfill_starts_each_tick_between_once(app: Dict[str, Callable[..., Any]]) -> None:
    DBOS.create_schedule(schedule_name="bk", workflow_fn=app["ticked"], schedule="0 * * * *",
                         cron_timezone="Europe/Paris")
    start, end = datetime(2025, 3, 30, 0, 0), datetime(2025, 3, 30, 3, 0)  # naive: UTC; DST starts at 01:00 UTC
    handles = DBOS.backfill_schedule("bk", start, end)
    paris = ZoneInfo("Europe/Paris")
    expected = [datetime(2025, 3, 30, h, tzinfo=timezone.utc).astimezone(paris) for h in (1, 2)]
    assert [h.workflow_id for h in handles] == [f"sched-bk-{t.isoformat()}" for t in expected]
    assert handles[0].workflow_id.endswith("T03:00:00+02:00")  # 02:00 Paris time did not exist that night
    for h in handles:
        h.get_result()
    again = DBOS.backfill_schedule("bk", start - timedelta(hours=1), end)
    assert [h.workflow_id for h in again][-2:] == [h.workflow_id for h in handles]
    for h in again:
        h.get_result()
    assert sorted(w for _, _, _, w in RUNS.of("bk")) == sorted(h.workflow_id for h in again)  # each ran once
    assert DBOS.backfill_schedule("bk", end, start) == []
    with pytest.raises(DBOSException, match="does not exist"):
        DBOS.backfill_schedule("nope", start, end)


# ----------------------------------------------------------------------
# apply_schedules
# ----------------------------------------------------------------------


def test_apply_schedules_upserts_and_keeps_state(app: Dict[str, Callable[..., Any]]) -> None:
    DBOS.create_schedule(schedule_name="keep", workflow_fn=app["ticked"], schedule=FAR_AWAY, context="old",
                         cron_timezone="Europe/Paris", queue_name="sched-queue", automatic_backfill=True)
    DBOS.pause_schedule("keep")
    before = DBOS.get_schedule("keep")
    assert before is not None
    DBOS.apply_schedules([
        {"schedule_name": "keep", "workflow_fn": app["nightly"], "schedule": "0 0 2 1 *"},
        {"schedule_name": "fresh", "workflow_fn": app["ticked"], "schedule": FAR_AWAY, "context": {"k": 1}},
    ])
    after = DBOS.get_schedule("keep")
    assert after is not None
    assert (after["schedule_id"], after["status"], after["last_fired_at"]) == (
        before["schedule_id"], "PAUSED", before["last_fired_at"])
    assert (after["workflow_name"], after["workflow_class_name"], after["schedule"]) == (
        app["nightly"].__qualname__, "Jobs", "0 0 2 1 *")
    # Optional fields left out are cleared.
    assert (after["context"], after["cron_timezone"], after["queue_name"], after["automatic_backfill"]) == (
        None, None, None, False)
    assert DBOS.get_schedule("fresh")["context"] == {"k": 1}  # type: ignore[index]


# ----------------------------------------------------------------------
# Inside workflows
# ----------------------------------------------------------------------


def test_inside_a_workflow_each_call_is_checkpointed(app: Dict[str, Callable[..., Any]]) -> None:
    @DBOS.workflow()
    def manage() -> Optional[str]:
        DBOS.create_schedule(schedule_name="inwf", workflow_fn=app["ticked"], schedule=FAR_AWAY)
        got = DBOS.get_schedule("inwf")
        DBOS.pause_schedule("inwf")
        DBOS.list_schedules()
        DBOS.resume_schedule("inwf")
        DBOS.delete_schedule("inwf")
        return got["schedule_name"] if got else None

    @DBOS.workflow()
    def forbidden(which: str) -> None:
        if which == "apply":
            DBOS.apply_schedules([])
        elif which == "trigger":
            DBOS.trigger_schedule("x")
        else:
            DBOS.backfill_schedule("x", datetime(2025, 1, 1), datetime(2025, 1, 2))

    handle = DBOS.start_workflow(manage)
    assert handle.get_result() == "inwf"
    steps = DBOS.list_workflow_steps(handle.workflow_id)
    assert [s["function_name"] for s in steps] == [
        "DBOS.createSchedule", "DBOS.getSchedule", "DBOS.pauseSchedule", "DBOS.listSchedules",
        "DBOS.resumeSchedule", "DBOS.deleteSchedule"]
    # A fork from the last step replays the first five: no second creation, no error.
    fork = DBOS.fork_workflow(handle.workflow_id, 6)
    assert fork.get_result() == "inwf"
    assert DBOS.get_schedule("inwf") is None
    for which, api in (("apply", "apply_schedules"), ("trigger", "trigger_schedule"),
                       ("backfill", "backfill_schedule")):
        with pytest.raises(DBOSException, match=f"DBOS.{api} cannot be called from within a workflow"):
            DBOS.start_workflow(forbidden, which).get_result()


# ----------------------------------------------------------------------
# DBOSClient
# ----------------------------------------------------------------------


def test_client_schedules_by_workflow_name(app: Dict[str, Callable[..., Any]], sys_db_url: str) -> None:
    client = DBOSClient(system_database_url=sys_db_url)
    name = app["ticked"].__qualname__
    try:
        client.create_schedule(schedule_name="cl", workflow_name=name, schedule=FAR_AWAY, context="c")
        got = client.get_schedule("cl")
        assert got is not None and got["application_name"] is None and got["context"] == "c"
        for bad, argument in (({"schedule": "nope"}, "schedule"), ({"cron_timezone": "Nowhere/Town"},
                                                                     "cron_timezone")):
            with pytest.raises(DBOSInvalidArgumentError, match=argument):
                client.create_schedule(**{"schedule_name": "bad", "workflow_name": name,  # type: ignore[arg-type]
                                          "schedule": FAR_AWAY, **bad})
        with pytest.raises(DBOSException, match="already exists"):
            client.create_schedule(schedule_name="cl", workflow_name=name, schedule=FAR_AWAY)
        assert [s["schedule_name"] for s in DBOS.list_schedules()] == ["cl"]  # unclaimed: the app sees it
        client.pause_schedule("cl")
        assert client.list_schedules(status="PAUSED")[0]["schedule_name"] == "cl"
        client.resume_schedule("cl")
        assert client.trigger_schedule("cl").get_result() is None
        handles = client.backfill_schedule("cl", datetime(2024, 12, 31), datetime(2025, 1, 2))
        assert [h.workflow_id for h in handles] == ["sched-cl-2025-01-01T00:00:00+00:00"]
        assert handles[0].get_result() is None
        client.apply_schedules([{"schedule_name": "cl", "workflow_name": name, "schedule": EVERY_SECOND,
                                 "application_name": "test-app"}])
        assert client.get_schedule("cl")["application_name"] == "test-app"  # type: ignore[index]
        RUNS.wait("cl", 3)  # the launched app fires the client's schedule
        client.delete_schedule("cl")
        assert client.get_schedule("cl") is None
    finally:
        client.destroy()


def test_client_async_twins(app: Dict[str, Callable[..., Any]], sys_db_url: str) -> None:
    client = DBOSClient(system_database_url=sys_db_url, application_name="test-app")
    name = app["ticked"].__qualname__

    async def scenario() -> Tuple[Any, ...]:
        await client.create_schedule_async(schedule_name="ca", workflow_name=name, schedule=FAR_AWAY)
        await client.apply_schedules_async([{"schedule_name": "cb", "workflow_name": name, "schedule": FAR_AWAY}])
        listed = [s["schedule_name"] for s in await client.list_schedules_async()]
        got = await client.get_schedule_async("cb")
        await client.delete_schedule_async("ca")
        return listed, got, await client.get_schedule_async("ca")

    try:
        listed, got, gone = asyncio.run(scenario())
        assert listed == ["ca", "cb"] and got["application_name"] == "test-app" and gone is None
    finally:
        client.destroy()


def test_the_legacy_scheduler_skips_ticks_missed_while_suspended(app: Dict[str, Callable[..., Any]]) -> None:
    """``@DBOS.scheduled`` has the same cure for issue #803."""
    from dbos._engine.registry import FunctionInfo
    from dbos._queues.scheduler import Scheduler

    info = getattr(app["ticked"], "__dbos_info__")
    assert isinstance(info, FunctionInfo)
    scheduler = Scheduler(engine(), [(info, EVERY_SECOND)])
    woke = datetime.now(timezone.utc)
    first_due = scheduler._due[0] - timedelta(seconds=10)  # as if suspended for 10 s
    scheduler._due[0] = first_due
    scheduler.start()
    try:
        RUNS.wait_for(lambda: any(w.startswith(f"sched-{info.name}-") for _, _, _, w in RUNS.log),
                      "the legacy scheduler fired a tick")
    finally:
        scheduler.stop()
    fired = [t for _, t, _, w in RUNS.log if w.startswith(f"sched-{info.name}-")]
    assert fired and min(fired) > woke - timedelta(seconds=1), (first_due, fired)


def test_a_broken_row_does_not_stop_the_other_schedules(app: Dict[str, Callable[..., Any]]) -> None:
    """A row no process can fire (its cron edited by hand, say) is logged and left."""
    engine().sysdb.create_schedule({
        "schedule_id": "broken-id", "schedule_name": "broken", "workflow_name": app["ticked"].__qualname__,
        "workflow_class_name": None, "schedule": "every now and then", "status": "ACTIVE",
        "context": engine().codec.dump_value(None, what="context"), "last_fired_at": None,
        "automatic_backfill": False, "cron_timezone": None, "queue_name": None, "application_name": "test-app"})
    DBOS.create_schedule(schedule_name="fine", workflow_fn=app["ticked"], schedule=EVERY_SECOND)
    RUNS.wait("fine", 2)
    assert "broken" not in running_schedules() and "fine" in running_schedules()


def test_rename_application_moves_schedules(app: Dict[str, Callable[..., Any]], sys_db_url: str) -> None:
    DBOS.create_schedule(schedule_name="mine", workflow_fn=app["ticked"], schedule=FAR_AWAY)
    client = DBOSClient(system_database_url=sys_db_url)
    try:
        client.create_schedule(schedule_name="nobodys", workflow_name="wf", schedule=FAR_AWAY)
        counts = client.rename_application("test-app", "renamed-app")
        assert counts["schedules"] == 1
        assert {s["schedule_name"]: s["application_name"] for s in client.list_schedules()} == {
            "mine": "renamed-app", "nobodys": None}
        assert [s["schedule_name"] for s in DBOS.list_schedules()] == ["nobodys"]  # no longer this app's
        assert client.rename_application(None, "adopter", adopt_unclaimed_rows=True)["schedules"] == 1
        assert client.get_schedule("nobodys")["application_name"] == "adopter"  # type: ignore[index]
    finally:
        client.destroy()
