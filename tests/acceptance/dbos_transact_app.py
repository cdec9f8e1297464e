"""A DBOS Transact 2.x program, written exactly as for DBOS Transact.

    python dbos_transact_app.py SYSTEM_DATABASE_URL APPLICATION_DATABASE_URL WORKFLOW_ID NAME

It imports only ``dbos`` and ``sqlalchemy``, configures the application
database by URL alone, and uses ``DBOS.sql_session`` in its transactions.
It prints what the workflow returns, and stays a valid DBOS Transact app:
nothing here belongs to this project only.
"""

import sys

import sqlalchemy as sa

from dbos import DBOS, DBOSConfig, SetWorkflowID

metadata = sa.MetaData()
greetings = sa.Table(
    "greetings",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("greeted", sa.Integer, nullable=False),
)


@DBOS.step()
def compose_note(name: str) -> str:
    return f"Hello, {name}!"


@DBOS.transaction()
def record_greeting(name: str, note: str) -> int:
    DBOS.sql_session.execute(
        sa.text("INSERT INTO greetings (name, note, greeted) VALUES (:name, :note, 1)"),
        {"name": name, "note": note},
    )
    row = DBOS.sql_session.execute(
        sa.select(greetings.c.greeted).where(greetings.c.name == name)
    ).one()
    return int(row.greeted)


@DBOS.transaction(isolation_level="READ COMMITTED")
def count_greetings() -> int:
    return int(DBOS.sql_session.execute(sa.text("SELECT COUNT(*) FROM greetings")).scalar_one())


@DBOS.workflow()
def greeting_workflow(name: str) -> str:
    note = compose_note(name)
    greeted = record_greeting(name, note)
    total = count_greetings()
    return f"{note} (greeted {greeted}x, {total} in all, workflow {DBOS.workflow_id})"


def create_tables(app_db_url: str) -> None:
    # DBOS Transact apps usually run Alembic here; create_all does the same job.
    url = sa.make_url(app_db_url)
    if url.get_backend_name() == "postgresql":
        url = url.set(drivername="postgresql+psycopg2")  # SQLAlchemy 2.1 would pick psycopg 3
    engine = sa.create_engine(url)
    metadata.create_all(engine)
    engine.dispose()


if __name__ == "__main__":
    system_database_url, app_database_url, workflow_id, name = sys.argv[1:5]
    config: DBOSConfig = {
        "name": "dbos-transact-app",
        "system_database_url": system_database_url,
        "application_database_url": app_database_url,
    }
    DBOS(config=config)
    DBOS.launch()
    create_tables(app_database_url)
    with SetWorkflowID(workflow_id):
        result = greeting_workflow(name)
    print(f"RESULT {result}", flush=True)
