"""An app that a ``DBOSClient`` in the test process drives from outside.

    python client_app.py SYS_URL POLL_SEC

It serves the queue ``orders``, prints ``READY`` once launched, and runs
until its standard input closes. The test process holds none of this code:
it enqueues by workflow name and reads results through the client alone.
"""

from __future__ import annotations

import sys

from dbos import DBOS, DBOSConfig, Queue

WAIT_S = 300.0  # beyond the test's patience: only the client's message ends it in time

orders = Queue("orders", concurrency=4)


@DBOS.step(name="price")
def price(item: str, quantity: int) -> int:
    return len(item) * quantity


@DBOS.workflow(name="place_order")
def place_order(item: str, quantity: int = 1) -> str:
    total = price(item, quantity)
    DBOS.set_event("quote", total)
    decision = DBOS.recv("decision", timeout_seconds=WAIT_S)
    DBOS.write_stream("log", f"{item}:{decision}")
    return f"{item} x{quantity} = {total}: {decision}"


if __name__ == "__main__":
    sys_url, poll_sec = sys.argv[1], float(sys.argv[2])
    DBOS(config=DBOSConfig(name="client-app", system_database_url=sys_url,
                           notification_listener_polling_interval_sec=poll_sec))
    DBOS.launch()
    print("READY", flush=True)
    sys.stdin.read()
    DBOS.destroy()
