"""The registry of decorated functions, filled at import time by the decorators."""

from __future__ import annotations

from typing import Callable, Dict, List


class Registry:
    def __init__(self) -> None:
        self.workflows: Dict[str, Callable[..., object]] = {}

    def workflow_functions(self) -> List[Callable[..., object]]:
        return list(self.workflows.values())


_registry = Registry()


def get_registry() -> Registry:
    return _registry


def clear_registry() -> None:
    """Forget every decorated function (``DBOS.destroy(destroy_registry=True)``)."""
    global _registry
    _registry = Registry()
