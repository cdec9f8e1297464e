"""When DBOS takes SIGTERM at launch and when it leaves it alone (see
dbos/_ops/stop_signal.py); what SIGTERM then does is in
tests/acceptance/test_sigterm.py, with real processes.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any, Iterator, List, Optional

import pytest

from dbos import DBOS, DBOSConfig


@pytest.fixture(autouse=True)
def default_sigterm() -> Iterator[None]:
    """Each test starts with SIGTERM at its default and leaves it so."""
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    DBOS.destroy(destroy_registry=True)
    signal.signal(signal.SIGTERM, previous)


def launched(config: DBOSConfig, **extra: Any) -> None:
    DBOS(config=DBOSConfig(**{**config, **extra}))  # type: ignore[typeddict-item]
    DBOS.launch()


def test_launch_takes_a_default_sigterm_and_destroy_gives_it_back(config: DBOSConfig) -> None:
    launched(config)
    assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN, None)
    DBOS.destroy()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_the_applications_own_handler_is_left_alone(config: DBOSConfig) -> None:
    received: List[int] = []

    def own(signum: int, frame: Optional[FrameType]) -> None:
        received.append(signum)

    signal.signal(signal.SIGTERM, own)
    launched(config)
    assert signal.getsignal(signal.SIGTERM) is own
    DBOS.destroy()
    assert signal.getsignal(signal.SIGTERM) is own


def test_an_ignored_sigterm_stays_ignored(config: DBOSConfig) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    launched(config)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN


def test_handle_sigterm_false_installs_nothing(config: DBOSConfig) -> None:
    launched(config, handle_sigterm=False)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_launch_off_the_main_thread_installs_nothing(config: DBOSConfig) -> None:
    errors: List[BaseException] = []

    def launch() -> None:
        try:
            launched(config)
        except BaseException as exc:  # reported on the test's thread
            errors.append(exc)

    thread = threading.Thread(target=launch)
    thread.start()
    thread.join()
    assert errors == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_server_that_replaces_the_handler_after_launch_keeps_it(config: DBOSConfig) -> None:
    launched(config)

    def server(signum: int, frame: Optional[FrameType]) -> None:
        pass

    signal.signal(signal.SIGTERM, server)
    DBOS.destroy()
    assert signal.getsignal(signal.SIGTERM) is server
