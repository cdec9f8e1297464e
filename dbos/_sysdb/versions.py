"""Application versions: ``application_versions``, one row per version a launch registered.

The latest version is the one with the highest timestamp; a workflow
enqueued for no particular version runs on the latest.
"""

from __future__ import annotations

import uuid
from typing import Any, Dict, List

from .._clock import now_ms
from .._versions import VersionInfo
from .connection import Connection
from .statements import Statement

REGISTER_VERSION = Statement("""
    INSERT INTO {application_versions} (version_id, version_name, version_timestamp, created_at,
        application_name)
    VALUES (:version_id, :version_name, :now, :now, :application_name)
    ON CONFLICT DO NOTHING
""")

LIST_VERSIONS = Statement("""
    SELECT version_id, version_name, version_timestamp, created_at, application_name
    FROM {application_versions} ORDER BY version_timestamp DESC
""")

MAKE_LATEST = Statement("""
    UPDATE {application_versions} SET version_timestamp = :now WHERE version_name = :version_name
""")


def _version_info(row: Dict[str, Any]) -> VersionInfo:
    return VersionInfo(
        version_id=row["version_id"],
        version_name=row["version_name"],
        version_timestamp=int(row["version_timestamp"]),
        created_at=int(row["created_at"]),
        application_name=row["application_name"],
    )


class VersionRows(Connection):
    def register_application_version(self, version_name: str, application_name: str) -> None:
        """Record a version this application launched with (once per name)."""
        self.rowcount(REGISTER_VERSION, version_id=str(uuid.uuid4()), version_name=version_name,
                      now=now_ms(), application_name=application_name)

    def list_application_versions(self) -> List[VersionInfo]:
        """Registered application versions, newest first."""
        return [_version_info(row) for row in self.records(LIST_VERSIONS)]

    def set_latest_application_version(self, version_name: str) -> None:
        """Make ``version_name`` the latest, as if registered now."""
        self.rowcount(MAKE_LATEST, now=now_ms(), version_name=version_name)
