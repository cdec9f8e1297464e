"""The ``dbos`` logger and its console handler."""

from __future__ import annotations

import logging

dbos_logger = logging.getLogger("dbos")

_FORMAT = "%(asctime)s [%(levelname)8s] (%(name)s:%(filename)s:%(lineno)s) %(message)s"


def configure_logging(level: str, console_level: str) -> None:
    """Set the logger's level and, where nothing else prints logs, a console handler."""
    dbos_logger.setLevel(level)
    ours = [h for h in dbos_logger.handlers if getattr(h, "_dbos_console", False)]
    # An application (or pytest) that configured the root logger already
    # prints our records through propagation; a second handler would double them.
    if logging.getLogger().handlers:
        for handler in ours:
            dbos_logger.removeHandler(handler)
        return
    handler = ours[0] if ours else logging.StreamHandler()
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.setLevel(console_level)
    setattr(handler, "_dbos_console", True)
    if not ours:
        dbos_logger.addHandler(handler)
