"""``classproperty``: a read-only property of the ``DBOS`` class itself (``DBOS.logger``)."""

from __future__ import annotations

from typing import Any, Callable


class classproperty:
    def __init__(self, getter: Callable[[Any], Any]) -> None:
        self.getter = getter
        self.__doc__ = getter.__doc__

    def __get__(self, obj: Any, owner: Any) -> Any:
        return self.getter(owner)
