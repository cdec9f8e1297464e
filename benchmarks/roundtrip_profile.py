"""Where the one-process send/recv round trip spends its time (a profiling aid).

    .venv/bin/python benchmarks/roundtrip_profile.py sqlite:////tmp/rt.sqlite
    .venv/bin/python benchmarks/roundtrip_profile.py postgresql://postgres@127.0.0.1/rt

Unlike the benchmarks this reaches inside the library: it times each call of
the system database's message calls (a send, which also consumes the
message its workflow received last, and a look for a message, which found
one or none) during the same ping-pong that bench.py measures, and prints medians.
The database must not exist yet (it is created).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import uuid
from collections import defaultdict
from typing import Any, Callable, Dict, List

import workloads
from dbos._engine.engine import peek_engine

TIMES: Dict[str, List[float]] = defaultdict(list)


def timed(method: Callable[..., Any], name: Callable[[Any], str]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = method(*args, **kwargs)
        TIMES[name(result)].append((time.perf_counter() - started) * 1000)
        return result
    return wrapper


def main() -> None:
    url, rounds = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 500
    workloads.launch(url, poll=0.05)
    engine = peek_engine()
    assert engine is not None, "launched"
    sysdb: Any = engine.sysdb
    sysdb.send_messages = timed(sysdb.send_messages, lambda _: "send, with the receive before it (one commit)")
    sysdb.consume_received = timed(sysdb.consume_received, lambda _: "receive consumed by itself (one commit)")
    sysdb.find_message = timed(sysdb.find_message, lambda found: (
        "look that found a message (a read)" if found else "look that found none (a read)"))
    for _ in range(2):  # the first pass warms up; the second is reported
        TIMES.clear()
        peer = f"echo-{uuid.uuid4().hex[:8]}"
        workloads._start_peer(url, {}, "echo", peer, False, rounds)
        trips = workloads.pinger(peer, rounds)
    print(f"round trip: median {statistics.median(trips):.3f} ms over {rounds}")
    for name, values in sorted(TIMES.items()):
        print(f"  {name}: {len(values) / rounds:.0f} per round trip, median {statistics.median(values):.3f} ms")
    os._exit(0)


if __name__ == "__main__":
    main()
