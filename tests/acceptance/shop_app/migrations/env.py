"""Alembic's entry point: migrate the database named by APP_DATABASE_URL."""

from __future__ import annotations

import os

from alembic import context
from shop_app.models import Base  # importable through alembic.ini's prepend_sys_path
from sqlalchemy import create_engine, pool

target_metadata = Base.metadata


def database_url() -> str:
    url = os.environ.get("APP_DATABASE_URL")
    if not url:
        raise SystemExit("Set APP_DATABASE_URL to the shop's database before running alembic")
    return url


def run_offline() -> None:
    """Print the SQL instead of running it (``alembic upgrade head --sql``)."""
    context.configure(url=database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = create_engine(database_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
