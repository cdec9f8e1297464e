"""``DBOSClient``'s queues kept in the database: register, retrieve, list, delete."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .client_handles import ClientStorage


class QueueClientAPI:
    """The client's queue methods (a base of ``DBOSClient``)."""

    _storage: "ClientStorage"
