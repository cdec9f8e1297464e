"""A private, throwaway PostgreSQL cluster for measuring the server's side.

pg_stat_statements must be in ``shared_preload_libraries``, which only a
server start can change; the machine's own cluster (port 5432) is never
reconfigured or restarted for a benchmark. So scale_out.py makes its own:
``initdb`` into a temporary directory, ``pg_ctl start`` on a free loopback
port, and ``pg_ctl stop`` plus deleting the directory at the end, on an
exception or Ctrl-C too. PostgreSQL refuses to run as root; as root, the
server's commands run as the ``postgres`` OS user in a directory it owns.

If the server will not start with pg_stat_statements loaded, it is started
without it and logs every statement with its duration instead
(``log_min_duration_statement = 0``); ``statements_source`` says which.

Also here: the server-side counters the benchmark reads (statements, WAL,
WAL syncs, and the CPU time of the cluster's processes from ``/proc``).
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from contextlib import closing
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

PGSS = "pg_stat_statements"
SERVER_LOG = "server log (log_min_duration_statement = 0)"
OBSERVER = "scale_observer"

# Settings for a small dedicated server: durable commits (fsync and
# synchronous_commit stay on), enough connections for many worker pools,
# and no time-triggered checkpoint inside a short run (full-page images after
# a checkpoint are reported separately, as wal_fpi).
SERVER_SETTINGS: Dict[str, str] = {
    "listen_addresses": "127.0.0.1",
    "max_connections": "300",
    "shared_buffers": "256MB",
    "max_wal_size": "4GB",
    "checkpoint_timeout": "30min",
    "track_wal_io_timing": "on",
    "pg_stat_statements.max": "5000",
}


def _bin_dir() -> str:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if not found:
        raise RuntimeError("no /usr/lib/postgresql/*/bin/initdb: PostgreSQL's server binaries are needed")
    return os.path.dirname(found[-1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateCluster:
    """One temporary cluster; use as a context manager (``stop`` deletes it)."""

    def __init__(self) -> None:
        self.bin = _bin_dir()
        self.port = _free_port()
        self.dir = tempfile.mkdtemp(prefix="dbos-scale-out-")
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "server.log")
        self.statements_source = PGSS
        self._started = False
        self._as: List[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    def __enter__(self) -> "PrivateCluster":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def url(self, database: str, user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str) -> None:
        subprocess.run(self._as + list(argv), check=True, capture_output=True, text=True)

    def start(self) -> None:
        self._run(os.path.join(self.bin, "initdb"), "-D", self.data, "-U", "postgres",
                  "--auth=trust", "-E", "UTF8", "--no-sync")
        try:
            self._pg_ctl_start({"shared_preload_libraries": PGSS})
        except subprocess.CalledProcessError:
            self.statements_source = SERVER_LOG
            self._pg_ctl_start({"log_min_duration_statement": "0", "log_line_prefix": "'%d %u '"})
        self._prepare()

    def _pg_ctl_start(self, extra: Dict[str, str]) -> None:
        settings = dict(SERVER_SETTINGS, port=str(self.port), unix_socket_directories=self.dir, **extra)
        options = " ".join(f"-c {k}={v}" for k, v in settings.items())
        self._run(os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-l", self.log,
                  "-w", "-t", "60", "-o", options, "start")
        self._started = True

    def _prepare(self) -> None:
        # The observer is a role of its own so its polling is filtered out of
        # the statement counts (pg_stat_statements keys on user and database).
        with closing(self.connect("postgres")) as conn, conn.cursor() as cur:
            cur.execute(f"CREATE ROLE {OBSERVER} LOGIN SUPERUSER")
        if self.statements_source == PGSS:
            # In template1 too, so every database created later has the view.
            for database in ("postgres", "template1"):
                with closing(self.connect(database)) as conn, conn.cursor() as cur:
                    cur.execute(f"CREATE EXTENSION IF NOT EXISTS {PGSS}")

    def connect(self, database: str, user: str = "postgres") -> Any:
        import psycopg2

        conn = psycopg2.connect(self.url(database, user))
        conn.autocommit = True
        return conn

    def stop(self) -> None:
        if self._started:
            self._started = False
            subprocess.run(self._as + [os.path.join(self.bin, "pg_ctl"), "-D", self.data,
                                       "-m", "immediate", "-w", "stop"], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    def postmaster_pid(self) -> int:
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            return int(f.readline())

    def server_cpu_s(self) -> float:
        """CPU seconds (user + system) of the postmaster and its live children."""
        root = self.postmaster_pid()
        total = 0.0
        for stat in glob.glob("/proc/[0-9]*/stat"):
            fields = _proc_stat(stat)
            if fields and (int(stat.split("/")[2]) == root or int(fields[1]) == root):
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total


def _proc_stat(path: str) -> Optional[List[str]]:
    """Fields of /proc/PID/stat after the command name (state, ppid, ...)."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    return text[text.rfind(")") + 2:].split()


def process_cpu_s(pid: int) -> float:
    fields = _proc_stat(f"/proc/{pid}/stat")
    if not fields:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- counters

@dataclass
class Statement:
    query: str
    calls: int = 0
    exec_ms: float = 0.0
    rows: int = 0


def statements(cluster: PrivateCluster, observer: Any, database: str) -> Dict[str, Statement]:
    """Statements run so far in ``database`` by the ``postgres`` role, keyed by normalised text."""
    if cluster.statements_source != PGSS:
        return _logged_statements(cluster.log, database)
    with observer.cursor() as cur:
        cur.execute(f"""SELECT s.query, s.calls, s.total_exec_time, s.rows FROM {PGSS} s
                        JOIN pg_roles r ON r.oid = s.userid JOIN pg_database d ON d.oid = s.dbid
                        WHERE r.rolname = 'postgres' AND d.datname = %s""", (database,))
        found: Dict[str, Statement] = {}
        for query, calls, exec_ms, rows in cur.fetchall():
            # An IN list's length makes a new entry (and renumbers the
            # parameters after it); fold those together.
            key = re.sub(r"\$(, \$)+", "$, ...", re.sub(r"\$\d+", "$", " ".join(query.split())))
            prior = found.setdefault(key, Statement(key))
            prior.calls += int(calls)
            prior.exec_ms += float(exec_ms)
            prior.rows += int(rows)
        return found


_LOGGED = re.compile(r"^(\S+) (\S+) LOG:\s+duration: ([\d.]+) ms\s+(?:statement|execute [^:]*): (.*)$")


def _logged_statements(log: str, database: str) -> Dict[str, Statement]:
    found: Dict[str, Statement] = defaultdict(lambda: Statement(""))
    with open(log, errors="replace") as f:
        for line in f:
            m = _LOGGED.match(line.strip())
            if not m or m.group(1) != database or m.group(2) != "postgres":
                continue
            key = re.sub(r"'[^']*'|\b\d+\b|\bNULL\b", "?", " ".join(m.group(4).split()))
            entry = found[key]
            entry.query = key
            entry.calls += 1
            entry.exec_ms += float(m.group(3))
    return dict(found)


def reset_statements(cluster: PrivateCluster, observer: Any, database: str) -> Dict[str, Statement]:
    """Zero pg_stat_statements; returns the baseline to subtract (empty unless logging)."""
    if cluster.statements_source == PGSS:
        with observer.cursor() as cur:
            cur.execute(f"SELECT {PGSS}_reset()")
        return {}
    return statements(cluster, observer, database)


def wal_lsn(observer: Any) -> str:
    with observer.cursor() as cur:
        cur.execute("SELECT pg_current_wal_lsn()::text")
        return str(cur.fetchone()[0])


def wal_bytes_since(observer: Any, lsn: str) -> int:
    with observer.cursor() as cur:
        cur.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", (lsn,))
        return int(cur.fetchone()[0])


def wal_stats(observer: Any) -> Dict[str, float]:
    """Cluster-wide WAL counters (records, full-page images, writes, syncs and their time)."""
    with observer.cursor() as cur:
        cur.execute("SELECT wal_records, wal_fpi, wal_bytes, wal_write, wal_sync, wal_sync_time FROM pg_stat_wal")
        row = cur.fetchone()
    names = ("wal_records", "wal_fpi", "wal_bytes", "wal_write", "wal_sync", "wal_sync_ms")
    return {name: float(value) for name, value in zip(names, row)}
