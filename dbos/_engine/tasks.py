"""``DBOS.asyncio_wait``: ``asyncio.wait`` whose partition a replay repeats.

Which of a workflow's awaitables finished first depends on timing; a
recovered workflow must see the same ones done, or it takes another branch.
So inside a workflow the indices of the done awaitables are an operation's
checkpoint, and a replay waits for exactly those, whatever else is ready.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any, Awaitable, List, Optional, Set, Tuple

from .engine import Engine
from .operation import Operation

ASYNCIO_WAIT = "DBOS.asyncio_wait"

Partition = Tuple[Set["asyncio.Future[Any]"], Set["asyncio.Future[Any]"]]


async def asyncio_wait(engine: Optional[Engine], fs: List[Awaitable[Any]], timeout: Optional[float],
                       return_when: str) -> Partition:
    """``(done, pending)`` as ``asyncio.wait`` returns them; the same on replay."""
    # Begun before the first await, so concurrent operations are numbered in call
    # order. Without an engine nothing runs durably here: a plain asyncio.wait.
    op = Operation.begin(engine, ASYNCIO_WAIT) if engine is not None else None
    futures: List["asyncio.Future[Any]"] = [asyncio.ensure_future(f) for f in fs]
    if op is not None and op.replaying:
        return await _replay(futures, op.replay() or [])
    done, pending = await asyncio.wait(futures, timeout=timeout, return_when=return_when)
    if op is not None:
        indices = [i for i, f in enumerate(futures) if f in done]
        await op.engine.in_pool(partial(op.succeed, indices, what="the done awaitables of DBOS.asyncio_wait"))
    return set(done), set(pending)


async def _replay(futures: List["asyncio.Future[Any]"], indices: List[int]) -> Partition:
    """The recorded partition: the awaitables done then are awaited to completion now."""
    done = {futures[i] for i in indices}
    if done:
        await asyncio.wait(done)
    return done, {f for f in futures if f not in done}
