"""Versioned system-database migrations, installed as ``dbos._migrations``.

A migration is ``NNNN_name.sql``, written once for every backend (the tokens
``{{now_ms}}``, ``{{random_id}}`` and ``{{boolean}}`` are rendered in each dialect), or
``NNNN_name.postgres.sql`` / ``NNNN_name.sqlite.sql`` for one backend only; a
version with no file for a backend is an empty migration there. Numbers start
at 1 and have no gaps. On PostgreSQL a migration runs with ``search_path`` set
to the configured schema, so it names tables unqualified. Once released, a
migration file never changes: add a new number instead.
"""
