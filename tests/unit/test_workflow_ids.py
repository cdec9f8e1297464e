"""Generated workflow IDs look exactly like ``str(uuid.uuid4())``."""

from __future__ import annotations

import uuid

from dbos._engine.launch import uuid4_text


def test_generated_ids_are_version_4_uuids_in_canonical_form() -> None:
    for _ in range(1000):
        text = uuid4_text()
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def test_generated_ids_differ() -> None:
    assert len({uuid4_text() for _ in range(1000)}) == 1000
