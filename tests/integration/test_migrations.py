"""The versioned migrations against real databases, on the chosen backend.

A database migrated from empty must match the Peewee models column for
column; migrating is idempotent, safe when processes race, tolerant of a
newer schema, and atomic per migration.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Type

import peewee as pw
import psycopg2
import pytest

from dbos import run_dbos_database_migrations
from dbos.error import DBOSMigrationRequiredError, DBOSSystemDatabaseError
from dbos._sysdb import DatabaseURL, SystemDatabase, latest_version
from dbos._sysdb.migrator import load_migrations, read_migrations
from dbos._sysdb.models import SYSTEM_MODELS, TransactionOutput, bind_model

SYSTEM_TABLES = sorted(m._meta.table_name for m in SYSTEM_MODELS)

# What PostgreSQL's information_schema reports for each Peewee field type.
PG_DATA_TYPES = {
    "TEXT": "text",
    "VARCHAR": "character varying",
    "BIGINT": "bigint",
    "INT": "integer",
    "BOOL": "boolean",
    "DOUBLE": "double precision",
}
# SQLite keeps declared types as written; what matters is their affinity.
SQLITE_AFFINITIES = {
    "TEXT": "TEXT",
    "VARCHAR": "TEXT",
    "BIGINT": "INTEGER",
    "INT": "INTEGER",
    "BOOL": "INTEGER",
    "DOUBLE": "REAL",
}


# ----------------------------------------------------------------------
# Helpers: independent connections and schema comparison
# ----------------------------------------------------------------------


def plain_database(url: str) -> pw.Database:
    """A plain (unpooled) Peewee database on ``url``, apart from the code under test."""
    parsed = DatabaseURL.parse(url)
    if parsed.is_sqlite:
        return pw.SqliteDatabase(parsed.sqlite_path)
    return pw.PostgresqlDatabase(parsed.database, **parsed.connect_kwargs())


@contextmanager
def connected(url: str) -> Iterator[pw.Database]:
    db = plain_database(url)
    db.connect()
    try:
        yield db
    finally:
        db.close()


def expected_schema(url: str, schema: Optional[str]) -> Optional[str]:
    """Where the tables must be: the schema on PostgreSQL, the main file on SQLite."""
    return None if DatabaseURL.parse(url).is_sqlite else schema


def sqlite_affinity(declared: str) -> str:
    """SQLite's rules for a declared column type, in their documented order."""
    upper = declared.upper()
    if "INT" in upper:
        return "INTEGER"
    if any(word in upper for word in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if "BLOB" in upper or not upper:
        return "BLOB"
    if any(word in upper for word in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    return "NUMERIC"


def type_problem(field: pw.Field, column: Any, is_sqlite: bool) -> Optional[str]:
    """Why ``column`` cannot hold ``field``'s values, or None."""
    kind = field.field_type
    if is_sqlite:
        wanted, found = SQLITE_AFFINITIES.get(kind), sqlite_affinity(column.data_type)
    else:
        wanted, found = PG_DATA_TYPES.get(kind), column.data_type
    if wanted is None:
        return f"{field.name}: no known column type for Peewee type {kind}"
    if found != wanted:
        return f"{field.name}: column type {column.data_type!r}, expected {wanted!r}"
    if kind == "VARCHAR" and f"({field.max_length})" not in column.full_type:
        return f"{field.name}: column type {column.full_type!r}, expected length {field.max_length}"
    return None


def primary_key_columns(model: Type[pw.Model]) -> List[str]:
    key = model._meta.primary_key
    if isinstance(key, pw.CompositeKey):
        return [model._meta.fields[name].column_name for name in key.field_names]
    return [key.column_name]


def index_problems(db: pw.Database, model: Type[pw.Model], schema: Optional[str]) -> List[str]:
    """Unique fields and ``Meta.indexes`` of the model that have no index."""
    table = model._meta.table_name
    present = {(tuple(i.columns), i.unique) for i in db.get_indexes(table, schema)}
    wanted = [((f.column_name,), True) for f in model._meta.sorted_fields if f.unique]
    for columns, unique in model._meta.indexes:
        wanted.append((tuple(model._meta.fields[c].column_name for c in columns), unique))
    missing = [(cols, u) for cols, u in wanted if (cols, u) not in present]
    return [f"{table}: no index on {cols} (unique={u})" for cols, u in missing]


def model_mismatches(db: pw.Database, model: Type[pw.Model], schema: Optional[str]) -> List[str]:
    """Every way the table differs from the model; empty when they match."""
    table, is_sqlite = model._meta.table_name, isinstance(db, pw.SqliteDatabase)
    columns = {c.name: c for c in db.get_columns(table, schema)}
    fields = {f.column_name: f for f in model._meta.sorted_fields}
    problems: List[str] = []
    if set(columns) != set(fields):
        problems.append(f"{table}: columns {sorted(columns)} but fields {sorted(fields)}")
    if db.get_primary_keys(table, schema) != primary_key_columns(model):
        problems.append(f"{table}: primary key {db.get_primary_keys(table, schema)}")
    for name in sorted(set(columns) & set(fields)):
        field, column = fields[name], columns[name]
        if column.null != field.null:
            problems.append(f"{table}.{name}: nullable={column.null}, model null={field.null}")
        problem = type_problem(field, column, is_sqlite)
        if problem:
            problems.append(f"{table}.{problem}")
    return problems + index_problems(db, model, schema)


def migration_rows(url: str, schema: Optional[str] = "dbos") -> List[int]:
    where = expected_schema(url, schema)
    table = f'"{where}".dbos_migrations' if where else "dbos_migrations"
    with connected(url) as db:
        return [row[0] for row in db.execute_sql(f"SELECT version FROM {table}").fetchall()]


def admin_connection(url: str) -> Any:
    """An autocommit psycopg2 connection to the server's maintenance database."""
    conn = psycopg2.connect(**{**DatabaseURL.parse(url).connect_kwargs(), "dbname": "postgres"})
    conn.autocommit = True
    return conn


def database_listed(url: str) -> bool:
    conn = admin_connection(url)
    try:
        with conn.cursor() as cur:
            name = DatabaseURL.parse(url).database
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            return cur.fetchone() is not None
    finally:
        conn.close()


def schemas_of(url: str) -> List[str]:
    with connected(url) as db:
        rows = db.execute_sql("SELECT nspname FROM pg_namespace ORDER BY nspname").fetchall()
    return [r[0] for r in rows]


# ----------------------------------------------------------------------
# 1. A migrated database matches the models
# ----------------------------------------------------------------------


def test_shipped_migrations_number_one_to_latest() -> None:
    versions = [m.version for m in load_migrations()]
    assert versions == list(range(1, latest_version() + 1))
    assert latest_version() >= 1
    assert all(m.scripts for m in load_migrations())


@pytest.mark.parametrize("schema", ["dbos", "custom_sys"])
def test_migrated_database_matches_models(sys_db_url: str, schema: str) -> None:
    sysdb = SystemDatabase(sys_db_url, schema=schema)
    try:
        sysdb.migrate()
    finally:
        sysdb.close()
    where = expected_schema(sys_db_url, schema)
    with connected(sys_db_url) as db:
        assert db.get_tables(schema=where) == SYSTEM_TABLES
        problems = [p for m in SYSTEM_MODELS for p in model_mismatches(db, m, where)]
    assert problems == []


def test_bound_models_name_the_migrated_tables(sysdb: SystemDatabase) -> None:
    bound = sysdb.models.by_table
    assert sorted(bound) == SYSTEM_TABLES
    for table, model in bound.items():
        assert model._meta.schema == expected_schema(str(sysdb.url), "dbos")
        assert model.table_exists(), table
    # A query through the bound models reaches the migrated table.
    rows = sysdb.run(lambda: list(sysdb.models.dbos_migrations.select().tuples()))
    assert rows == [(latest_version(),)]


def test_custom_schema_leaves_the_default_schema_alone(backend: str, sys_db_url: str) -> None:
    if backend != "postgres":
        pytest.skip("SQLite has no schemas: the tables live in the database file")
    run_dbos_database_migrations(sys_db_url, schema="custom_sys")
    assert "custom_sys" in schemas_of(sys_db_url)
    assert "dbos" not in schemas_of(sys_db_url)
    with connected(sys_db_url) as db:
        assert db.get_tables(schema="custom_sys") == SYSTEM_TABLES
        assert db.get_tables(schema="public") == []
    assert migration_rows(sys_db_url, "custom_sys") == [latest_version()]


def test_transaction_output_model_creates_its_table(sys_db_url: str) -> None:
    SystemDatabase(sys_db_url, pool_size=1).create_if_missing()
    schema = expected_schema(sys_db_url, "dbos")
    with connected(sys_db_url) as db:
        if schema:
            db.execute_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        model = bind_model(TransactionOutput, db, schema)
        model.create_table()
        model.insert(workflow_uuid="wf", function_id=1, output="o", created_at=5).execute()
        assert model_mismatches(db, model, schema) == []
        row = model.get((model.workflow_uuid == "wf") & (model.function_id == 1))
    assert (row.output, row.function_name, row.created_at) == ("o", "", 5)


# ----------------------------------------------------------------------
# 2. Migrating again is a no-op
# ----------------------------------------------------------------------


def test_migrating_twice_is_a_no_op(sys_db_url: str) -> None:
    first = SystemDatabase(sys_db_url)
    try:
        assert first.migrate() == list(range(1, latest_version() + 1))
        assert first.migrate() == []
        assert first.schema_version() == latest_version()
    finally:
        first.close()
    second = SystemDatabase(sys_db_url)
    try:
        assert second.migrate() == []
    finally:
        second.close()
    assert migration_rows(sys_db_url) == [latest_version()]


# ----------------------------------------------------------------------
# 3. Concurrent migrators, and a database that does not exist yet
# ----------------------------------------------------------------------

MIGRATE_AFTER_GO = """
import os, sys
from dbos import run_dbos_database_migrations
go = int(sys.argv[2])
print("ready", flush=True)
os.read(go, 1)  # returns at EOF: the parent closes the pipe for everyone at once
print(run_dbos_database_migrations(sys.argv[1]), flush=True)
"""


def start_waiting_migrators(url: str, count: int, cwd: Path) -> List["subprocess.Popen[str]"]:
    """``count`` processes, each blocked on the "go" pipe until this returns."""
    read_end, write_end = os.pipe()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATE_AFTER_GO, url, str(read_end)],
            pass_fds=(read_end,),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
        )
        for _ in range(count)
    ]
    os.close(read_end)
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    finally:
        os.close(write_end)  # go
    return procs


def applied_by_each(procs: Sequence["subprocess.Popen[str]"]) -> List[List[int]]:
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(ast.literal_eval(out.strip().splitlines()[-1]))
    return results


def test_concurrent_migrators_all_succeed(sys_db_url: str, tmp_path: Path) -> None:
    # On PostgreSQL the database does not exist yet: they also race to create it.
    results = applied_by_each(start_waiting_migrators(sys_db_url, 4, tmp_path))
    applied = sorted(v for result in results for v in result)
    assert applied == list(range(1, latest_version() + 1))  # each version exactly once
    assert migration_rows(sys_db_url) == [latest_version()]
    with connected(sys_db_url) as db:
        assert db.get_tables(schema=expected_schema(sys_db_url, "dbos")) == SYSTEM_TABLES


def test_cli_migrate_command(sys_db_url: str, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "dbos", "migrate", "-s", sys_db_url]
    first = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert f"to version {latest_version()}" in first.stdout
    second = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert "up to date" in second.stdout
    assert migration_rows(sys_db_url) == [latest_version()]


def test_migrate_creates_a_missing_database(backend: str, sys_db_url: str) -> None:
    sysdb = SystemDatabase(sys_db_url)
    try:
        assert not sysdb.exists()
        assert sysdb.migrate() == list(range(1, latest_version() + 1))
        assert sysdb.exists()
    finally:
        sysdb.close()
    if backend == "postgres":
        assert database_listed(sys_db_url)
    else:
        assert os.path.isfile(DatabaseURL.parse(sys_db_url).sqlite_path)


# ----------------------------------------------------------------------
# 4. Ahead is fine, behind needs a migration
# ----------------------------------------------------------------------


def set_version(sysdb: SystemDatabase, version: int) -> None:
    table = sysdb.models.dbos_migrations
    sysdb.run(lambda: table.update(version=version).execute())


def test_database_ahead_of_the_code_is_accepted(sysdb: SystemDatabase) -> None:
    ahead = latest_version() + 5
    set_version(sysdb, ahead)
    other = SystemDatabase(str(sysdb.url.render()))
    try:
        other.verify_schema("dbos migrate")
        assert other.migrate() == []
        assert other.schema_version() == ahead
    finally:
        other.close()
    assert migration_rows(sysdb.url.render()) == [ahead]


def test_database_behind_the_code_needs_the_given_command(sysdb: SystemDatabase) -> None:
    set_version(sysdb, latest_version() - 1)
    command = "dbos migrate --sys-db-url 'somewhere special'"
    with pytest.raises(DBOSMigrationRequiredError) as caught:
        sysdb.verify_schema(command)
    assert command in str(caught.value)
    assert (caught.value.current, caught.value.required) == (latest_version() - 1, latest_version())


def test_missing_database_needs_migration_and_is_not_created(sys_db_url: str) -> None:
    sysdb = SystemDatabase(sys_db_url)
    try:
        with pytest.raises(DBOSMigrationRequiredError) as caught:
            sysdb.verify_schema("dbos migrate")
        assert caught.value.current == 0
        assert "`dbos migrate`" in str(caught.value)
        assert not sysdb.exists()
    finally:
        sysdb.close()


# ----------------------------------------------------------------------
# 5. One transaction per migration
# ----------------------------------------------------------------------


def write_migration(directory: Path, version: int, name: str, sql: Dict[str, str]) -> None:
    for backend, script in sql.items():
        (directory / f"{version:04d}_{name}.{backend}.sql").write_text(script)


def both(sql: str) -> Dict[str, str]:
    return {"postgres": sql, "sqlite": sql}


def probe_tables(url: str) -> List[str]:
    with connected(url) as db:
        names = db.get_tables(schema=expected_schema(url, "dbos"))
    return [n for n in names if n.startswith("probe_")]


def test_failing_migration_rolls_back_alone(sys_db_url: str, tmp_path: Path) -> None:
    write_migration(tmp_path, 1, "add_probe_a", both("CREATE TABLE probe_a (id INTEGER);"))
    broken = "CREATE TABLE probe_b (id INTEGER);\nINSERT INTO no_such_table VALUES (1);"
    write_migration(tmp_path, 2, "add_probe_b", both(broken))
    sysdb = SystemDatabase(sys_db_url)
    try:
        with pytest.raises(DBOSSystemDatabaseError) as caught:
            sysdb.migrate(read_migrations(tmp_path))
        assert "migration 2 (add_probe_b)" in str(caught.value)
        assert "no_such_table" in str(caught.value)
        # The good one stays recorded; the failed one left nothing behind.
        assert sysdb.schema_version() == 1
        assert probe_tables(sys_db_url) == ["probe_a"]
    finally:
        sysdb.close()


def test_fixed_migration_applies_after_a_failure(sys_db_url: str, tmp_path: Path) -> None:
    write_migration(tmp_path, 1, "add_probe_a", both("CREATE TABLE probe_a (id INTEGER);"))
    broken = "CREATE TABLE probe_b (x INTEGER);\nSELECT nope FROM nowhere;"
    write_migration(tmp_path, 2, "add_probe_b", both(broken))
    sysdb = SystemDatabase(sys_db_url)
    try:
        with pytest.raises(DBOSSystemDatabaseError):
            sysdb.migrate(read_migrations(tmp_path))
        write_migration(tmp_path, 2, "add_probe_b", both("CREATE TABLE probe_b (x INTEGER);"))
        # Version 3 exists for PostgreSQL only: on SQLite it is empty but counted.
        write_migration(tmp_path, 3, "pg_only", {"postgres": "CREATE TABLE probe_c (y TEXT);"})
        assert sysdb.migrate(read_migrations(tmp_path)) == [2, 3]
        assert sysdb.schema_version() == 3
    finally:
        sysdb.close()
    expected = ["probe_a", "probe_b"] + ([] if sysdb.is_sqlite else ["probe_c"])
    assert probe_tables(sys_db_url) == expected


def test_migration_numbers_must_have_no_gaps(tmp_path: Path) -> None:
    write_migration(tmp_path, 1, "one", both("SELECT 1;"))
    write_migration(tmp_path, 3, "three", both("SELECT 1;"))
    (tmp_path / "README.md").write_text("not a migration")
    with pytest.raises(RuntimeError, match=r"without gaps, found \[1, 3\]"):
        read_migrations(tmp_path)


def test_schema_comparison_reports_drift(sysdb: SystemDatabase) -> None:
    # The checker above must not pass vacuously: a model unlike the table fails it.
    from dbos._sysdb.models import WorkflowStatus

    class Drifted(WorkflowStatus):
        priority = pw.BooleanField(null=True)
        class_name = pw.CharField(max_length=100, null=True)
        extra = pw.TextField(null=True)

        class Meta:
            table_name = "workflow_status"

    where = expected_schema(str(sysdb.url.render()), "dbos")
    with connected(sysdb.url.render()) as db:
        problems = model_mismatches(db, bind_model(Drifted, db, where), where)
    assert any("columns" in p and "extra" in p for p in problems), problems
    assert any("priority: nullable=False, model null=True" in p for p in problems), problems
    assert any("class_name" in p and "length 100" in p for p in problems), problems
    if not sysdb.is_sqlite:  # SQLite stores booleans as integers, so only PostgreSQL differs
        assert any("priority: column type 'integer'" in p for p in problems), problems
