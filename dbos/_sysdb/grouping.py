"""Group commit: single-statement writes that several threads wait on at the
same moment share one transaction, and so one fsync.

SQLite has one writer per file, and with ``synchronous=FULL`` every commit
waits for the disk. Committed one by one, writes from many threads queue
behind the write lock (whose busy handler sleeps between looks) and pay an
fsync each, so more threads got less done than one. Grouped, the first
writer to arrive leads: with nobody else waiting it runs its write by itself,
exactly as without grouping (no handoff, no extra statement); otherwise it
takes up to ``BATCH_LIMIT`` queued writes, runs each in its own SAVEPOINT in
one ``BEGIN IMMEDIATE`` transaction, commits once, and hands every follower
its result. A follower continues only after that COMMIT, so each write is as
durable as before. A write that fails is rolled back to its savepoint and
raises in its own thread alone, as the exception it would have raised by
itself; the others commit. The leader then hands the lead to the first write
that queued meanwhile, whose thread does the same.

The leader tries once. An outage (``outage.py``) abandons the try, rolled
back, and the lead passes on: each thread then runs its own write by itself,
retried or given up on as its own call would be (new work gives up at once on
a full disk, where work under way waits for space), so no write ever waits
out an outage behind another's lead. Each counts the lost try as a repeat
(``tries.py``), so a write that finds its own row takes it for the one it
wrote. Only bare statements join a group (``Connection``'s ``grouped_*``),
never one inside a unit of work, whose transaction is its own.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any, Callable, Deque, Generic, List, Optional, Protocol, Sequence, Tuple, TypeVar

from ..error import DBOSSystemDatabaseError
from .tries import count_retry

# A batch's most writes: enough for every thread of a busy process, few
# enough that the transaction stays short for writers outside the group.
BATCH_LIMIT = 64

T = TypeVar("T")


class Sender(Protocol):
    """What a group needs of the connection it writes through (``Connection``)."""

    def statement(self, sql: str, params: Sequence[Any], read: Callable[[Any], T]) -> T: ...

    def statement_once(self, sql: str, params: Sequence[Any], read: Callable[[Any], T]) -> Tuple[bool, Any]: ...

    def once(self, work: Callable[[], None], *, transaction: bool = True) -> bool: ...

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...

    def is_outage(self, exc: BaseException) -> bool: ...

    def failure(self, exc: BaseException, sql: str) -> DBOSSystemDatabaseError: ...


class Write(Generic[T]):
    """One statement a thread waits on, and what its thread is woken to do."""

    __slots__ = ("sql", "params", "read", "result", "error", "cause", "lead", "alone", "_wake")
    result: T  # set by the leader once the statement succeeded

    def __init__(self, sql: str, params: Sequence[Any], read: Callable[[Any], T]) -> None:
        self.sql = sql
        self.params = params
        self.read = read
        self.error: Optional[BaseException] = None
        self.cause: Optional[BaseException] = None  # the driver's error behind ``error``
        self.lead = False  # woken to lead the next batch
        self.alone = False  # to run by itself: an outage lost its group's try
        self._wake: Optional[Any] = None

    def outcome(self) -> T:
        """The statement's result, or its exception, raised in the thread that waited."""
        if self.error is None:
            return self.result
        if self.cause is None:
            raise self.error
        raise self.error from self.cause

    def park(self) -> None:
        """Take the lock this write's thread will sleep on (under the group's lock)."""
        self._wake = threading.Lock()
        self._wake.acquire()

    def sleep(self) -> None:
        """Wait until a leader hands over a result, the lead, or the write itself."""
        assert self._wake is not None
        self._wake.acquire()

    def wake(self) -> None:
        assert self._wake is not None
        self._wake.release()


class Group:
    """The grouped writes of one database, and whichever thread leads them now."""

    def __init__(self, sender: Sender) -> None:
        self._sender = sender
        self._lock = threading.Lock()
        self._queue: Deque[Write[Any]] = deque()
        self._leading = False
        self.writes = 0  # statements run through this group
        self.commits = 0  # transactions that committed them

    def run(self, write: Write[T]) -> T:
        """Run ``write``, alone or with others; return once it is committed."""
        with self._lock:
            follower = self._leading
            if follower:
                write.park()
                self._queue.append(write)
            self._leading = True
        if follower:
            try:
                write.sleep()
            except BaseException:
                self._withdraw(write)
                raise
            if not write.lead:
                return self._delivered(write)
        self._lead(write)
        return self._delivered(write)

    def counts(self) -> Tuple[int, int]:
        """(writes, commits) so far: fewer commits than writes means groups formed."""
        return self.writes, self.commits

    def _withdraw(self, write: Write[Any]) -> None:
        """A follower interrupted as it waited (Ctrl-C on the main thread): its
        write leaves the queue; if a leader took it already, the thread waits
        for that leader and passes on the lead it may have been handed, which
        no other thread would (every later write would wait for good)."""
        with self._lock:
            if write in self._queue:
                self._queue.remove(write)
                return
        write.sleep()
        if write.lead:
            self._pass_lead()

    def _delivered(self, write: Write[T]) -> T:
        if write.alone:
            count_retry()  # the group's lost try, as if it had been this thread's own
            return self._sender.statement(write.sql, write.params, write.read)
        return write.outcome()

    def _lead(self, own: Write[Any]) -> None:
        """Commit ``own`` and the writes queued behind it, then pass the lead on
        and wake the others; whatever the leader raises, each of them raises."""
        batch = self._take(own)
        try:
            self._commit(batch)
        except BaseException as exc:
            for write in batch:
                write.error, write.cause = exc, exc.__cause__
            raise
        finally:
            self._pass_lead()
            for write in batch[1:]:
                write.wake()

    def _take(self, own: Write[Any]) -> List[Write[Any]]:
        """``own`` and the writes queued behind it, up to ``BATCH_LIMIT``."""
        batch = [own]
        with self._lock:
            while self._queue and len(batch) < BATCH_LIMIT:
                batch.append(self._queue.popleft())
        return batch

    def _pass_lead(self) -> None:
        """Wake the first write that queued meanwhile to lead; or stop leading."""
        with self._lock:
            if not self._queue:
                self._leading = False
                return
            successor = self._queue.popleft()
        successor.lead = True
        successor.wake()

    def _commit(self, batch: List[Write[Any]]) -> None:
        """One try of ``batch``; lost to an outage, each write goes back to its
        own thread, so the lead is never held while an outage is waited out."""
        self.writes += len(batch)
        self.commits += 1
        if len(batch) == 1:  # nobody waiting: the write by itself, in autocommit, as without grouping
            done = self._alone(batch[0])
        else:
            done = self._sender.once(lambda: self._each(batch))
        for write in batch:
            write.alone = not done

    def _alone(self, write: Write[Any]) -> bool:
        done, result = self._sender.statement_once(write.sql, write.params, write.read)
        if done:
            write.result = result
        return done

    def _each(self, batch: List[Write[Any]]) -> None:
        for write in batch:
            self._savepointed(write)

    def _savepointed(self, write: Write[Any]) -> None:
        """Run ``write``; on an error roll back to just before it and keep the
        error for its thread. An outage ends the whole try instead."""
        sender = self._sender
        sender.execute("SAVEPOINT grouped")
        try:
            cursor = sender.execute(write.sql, write.params)
            write.result = write.read(cursor)
            cursor.close()  # done with: a statement still open would hold up the RELEASE
        except Exception as exc:
            if sender.is_outage(exc):
                raise
            sender.execute("ROLLBACK TO grouped")
            write.error, write.cause = sender.failure(exc, write.sql), exc
        sender.execute("RELEASE grouped")
