"""``DBOS``'s workflow schedules kept in the database, each with an ``_async`` twin."""

from __future__ import annotations


class ScheduleAPI:
    """Create, list, pause, resume, trigger and backfill schedules (a base of ``DBOS``)."""
