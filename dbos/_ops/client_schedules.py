"""``DBOSClient``'s workflow schedules kept in the database."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .client_handles import ClientStorage


class ScheduleClientAPI:
    """The client's schedule methods (a base of ``DBOSClient``)."""

    _storage: "ClientStorage"
