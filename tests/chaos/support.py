"""What the chaos tests share: a proxy between the library and PostgreSQL,
URLs through it, and a handler counting what the "dbos" logger says."""

from __future__ import annotations

import logging
import re
import threading
from typing import Iterator, List

import pytest

from tests.chaos.proxy import FaultProxy

OUTAGE_WARNING = "is unavailable"
OUTAGE_END = "is back after"


def require_postgres(backend: str) -> None:
    if backend != "postgres":
        pytest.skip("the fault proxy stands between the library and a PostgreSQL server")


def through(url: str, proxy: FaultProxy) -> str:
    """``url`` with its host and port replaced by the proxy's."""
    return re.sub(r"@[^/@]+/", f"@127.0.0.1:{proxy.port}/", url, count=1)


class Records(logging.Handler):
    """Every record of the "dbos" logger while installed."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: List[logging.LogRecord] = []
        self._lock = threading.Lock()
        self.began = threading.Event()  # an outage began
        self.ended = threading.Event()  # an outage ended

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock:
            self.records.append(record)
        if OUTAGE_WARNING in record.getMessage():
            self.began.set()
        if OUTAGE_END in record.getMessage():
            self.ended.set()

    def saying(self, text: str) -> List[logging.LogRecord]:
        with self._lock:
            return [r for r in self.records if text in r.getMessage()]

    def tracebacks(self) -> List[logging.LogRecord]:
        with self._lock:
            return [r for r in self.records if r.exc_info]


@pytest.fixture
def dbos_log() -> Iterator[Records]:
    logger = logging.getLogger("dbos")
    handler = Records()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    fault = FaultProxy()
    try:
        yield fault
    finally:
        fault.close()
