"""PostgreSQL connections that prepare the statements they repeat (``_sysdb/prepared.py``)."""

from __future__ import annotations

from typing import Any, Callable, List

import pytest

from dbos.error import DBOSSystemDatabaseError
from dbos._sysdb import SystemDatabase
from dbos._sysdb.prepared import preparable


@pytest.fixture(autouse=True)
def postgres_only(backend: str) -> None:
    if backend != "postgres":
        pytest.skip("SQLite statements are prepared by the sqlite3 module itself")


def on_one_connection(sysdb: SystemDatabase, work: Callable[[], Any], transaction: bool = False) -> Any:
    return sysdb.run(work, transaction=transaction)


def prepared_here(sysdb: SystemDatabase) -> List[str]:
    sql = "SELECT statement FROM pg_prepared_statements ORDER BY name"
    return [r[0] for r in sysdb.execute(sql).fetchall()]


def test_a_marked_statement_is_prepared_and_answers_the_same(sysdb: SystemDatabase) -> None:
    sql = preparable("SELECT %s::INT + 1, %s || '%%'")

    def work() -> Any:
        answers = [sysdb.execute(sql, [n, "x"]).fetchone() for n in range(3)]
        return answers, prepared_here(sysdb)

    answers, prepared = on_one_connection(sysdb, work)
    assert answers == [(1, "x%"), (2, "x%"), (3, "x%")]
    assert prepared == ["PREPARE dbos_stmt_1 AS SELECT $1::INT + 1, $2 || '%'"]


def test_an_unmarked_statement_is_sent_as_text(sysdb: SystemDatabase) -> None:
    # Prepared, $1 would be typed text and the answers would be strings.
    def work() -> Any:
        answers = [sysdb.execute("SELECT %s", [n]).fetchone() for n in range(3)]
        return answers, prepared_here(sysdb)

    answers, prepared = on_one_connection(sysdb, work)
    assert answers == [(0,), (1,), (2,)]
    assert prepared == []


def test_a_statement_the_server_cannot_prepare_is_sent_as_text(sysdb: SystemDatabase) -> None:
    sql = preparable("SELECT %s IS NULL")  # the server cannot type $1 here

    def work() -> Any:
        answers = [sysdb.execute(sql, [n]).fetchone() for n in (None, 1)]
        return answers, prepared_here(sysdb)

    answers, prepared = on_one_connection(sysdb, work)
    assert answers == [(True,), (False,)]
    assert prepared == []


def test_nothing_is_prepared_inside_a_transaction(sysdb: SystemDatabase) -> None:
    sql = preparable("SELECT %s::INT * 2")

    def work() -> Any:
        answers = [sysdb.execute(sql, [n]).fetchone() for n in range(3)]
        return answers, prepared_here(sysdb)

    # A failed PREPARE there would abort the caller's transaction.
    answers, prepared = on_one_connection(sysdb, work, transaction=True)
    assert answers == [(0,), (2,), (4,)]
    assert prepared == []


def test_errors_of_a_prepared_statement_are_the_usual_ones(sysdb: SystemDatabase) -> None:
    table = sysdb.backend.qualified("queues")
    sql = preparable(f"INSERT INTO {table} (queue_id, name, created_at, updated_at) VALUES (%s, %s, 1, 1)")
    for n in range(2):
        sysdb.run(lambda: sysdb.execute(sql, [f"q-{n}", f"queue-{n}"]), transaction=False)
    with pytest.raises(DBOSSystemDatabaseError, match="duplicate key"):
        sysdb.run(lambda: sysdb.execute(sql, ["q-1", "again"]), transaction=False)
