"""Local state: groups, node records and the intent log, in SQLite.

The clouds are the source of truth (every node carries skyctl's labels); this file remembers
what the clouds cannot tell: which launches are in flight (intents), group specs for `scale`,
and name counters. It is safe with several skyctl processes at once (WAL + busy timeout +
BEGIN IMMEDIATE for read-modify-write), private (file 0600 in a 0700 dir) and versioned.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skyctl.errors import StateError
from skyctl.model import GroupSpec

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 30.0  # how long a write waits for another skyctl's transaction

# Migration N brings the schema from N-1 to N. Never edit a released one; append.
MIGRATIONS: dict[int, list[str]] = {
    1: [
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE groups (
             name TEXT PRIMARY KEY,
             spec TEXT NOT NULL,            -- JSON: image, size, cpus, memory, contexts, vars (masked)
             next_index INTEGER NOT NULL DEFAULT 0,
             created_at REAL NOT NULL)""",
        """CREATE TABLE nodes (
             name TEXT PRIMARY KEY,
             grp TEXT NOT NULL,
             site TEXT NOT NULL,
             cloud_id TEXT,
             launch_id TEXT NOT NULL,
             created_at REAL NOT NULL)""",
        "CREATE INDEX nodes_grp ON nodes (grp)",
        """CREATE TABLE intents (
             id INTEGER PRIMARY KEY AUTOINCREMENT,
             launch_id TEXT NOT NULL,
             op TEXT NOT NULL,              -- create | delete | move
             grp TEXT NOT NULL,
             node TEXT NOT NULL,
             site TEXT NOT NULL,
             status TEXT NOT NULL,          -- pending | done | failed
             detail TEXT,
             created_at REAL NOT NULL,
             updated_at REAL NOT NULL)""",
        "CREATE INDEX intents_status ON intents (status)",
        """CREATE TABLE burst_log (
             rule TEXT NOT NULL,
             at REAL NOT NULL,
             action TEXT NOT NULL)""",
    ],
}


@dataclass(frozen=True)
class NodeRecord:
    name: str
    group: str
    site: str
    cloud_id: str | None
    launch_id: str
    created_at: float


@dataclass(frozen=True)
class Intent:
    id: int
    launch_id: str
    op: str
    group: str
    node: str
    site: str
    status: str
    detail: str | None
    created_at: float


def default_path() -> Path:
    from skyctl.paths import base

    return base("state") / "state.db"


def problem(path: Path, e: BaseException) -> StateError:
    """One line for a state file skyctl cannot use: which file, what is wrong, what to do."""
    text = str(e).lower()
    if isinstance(e, IsADirectoryError) or (path.is_dir()):
        return StateError(f"the state file {path} is a directory",
                          hint="move it out of the way; skyctl creates a new state file")
    if isinstance(e, PermissionError) or "readonly" in text or "read-only" in text:
        return StateError(f"cannot write the state file {path} (read-only file or folder)",
                          hint=f"make {path.parent} writable, or set SKYCTL_HOME to a writable folder")
    if "locked" in text or "busy" in text:
        return StateError(f"the state file {path} stayed locked by another skyctl for {BUSY_TIMEOUT_S:g} s",
                          hint="let the other command finish (see 'fuser " + str(path) + "'), then try again")
    if isinstance(e, OSError):
        return StateError(f"cannot use the state file {path}: {e.strerror or e}")
    return StateError(f"state database {path} is unusable: {e}",
                      hint="move it out of the way; 'skyctl reconcile' rebuilds what the clouds know")


def _guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """File-system and SQLite failures of a State method become one StateError line."""
    import functools

    @functools.wraps(fn)
    def call(self: State, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(self, *args, **kwargs)
        except StateError:
            raise
        except (OSError, sqlite3.Error) as e:
            raise problem(self.path, e) from None

    return call


class State:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_path()
        self._local = threading.local()
        try:
            self._ensure_file()
            self._migrate()
        except StateError:
            raise
        except (OSError, sqlite3.Error) as e:
            raise problem(self.path, e) from None

    # ---------------------------------------------------------------- connection
    def _ensure_file(self) -> None:
        from skyctl.paths import private_dir

        private_dir(self.path.parent)
        # Create the file 0600 before SQLite does (SQLite would use the umask).
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        if (self.path.stat().st_mode & 0o777) != 0o600:
            self.path.chmod(0o600)

    @property
    def db(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                       check_same_thread=False)
                conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error as e:
                raise problem(self.path, e) from None
            self._local.conn = conn
        return conn

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the lock up front (no upgrade deadlocks)."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        else:
            db.execute("COMMIT")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _migrate(self) -> None:
        try:
            with self.tx() as db:
                version = db.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise StateError(
                        f"state database {self.path} has schema {version}, newer than this skyctl "
                        f"understands ({SCHEMA_VERSION}); upgrade skyctl")
                for v in range(version + 1, SCHEMA_VERSION + 1):
                    for stmt in MIGRATIONS[v]:
                        db.execute(stmt)
                    db.execute(f"PRAGMA user_version = {v}")
                if version == 0:
                    db.execute("INSERT INTO meta VALUES ('install_id', ?)", (uuid.uuid4().hex[:12],))
        except sqlite3.Error as e:
            raise problem(self.path, e) from None

    @property
    @_guarded
    def schema_version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    @property
    @_guarded
    def install_id(self) -> str:
        """Stable id of this skyctl installation; goes into every node's owner label."""
        row = self.db.execute("SELECT value FROM meta WHERE key='install_id'").fetchone()
        return str(row[0])

    # ---------------------------------------------------------------- groups
    @_guarded
    def ensure_group(self, name: str, spec: GroupSpec) -> None:
        with self.tx() as db:
            db.execute(
                "INSERT INTO groups (name, spec, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET spec=excluded.spec",
                (name, json.dumps(spec.to_json(), sort_keys=True), time.time()))

    @_guarded
    def group_spec(self, name: str) -> GroupSpec | None:
        row = self.db.execute("SELECT spec FROM groups WHERE name=?", (name,)).fetchone()
        return GroupSpec.from_json(json.loads(row[0])) if row else None

    @_guarded
    def groups(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT name FROM groups ORDER BY name")]

    @_guarded
    def reserve_indices(self, group: str, count: int, *, at_least: int = 0) -> list[int]:
        """Atomically take `count` fresh node indices for `group` (names never repeat)."""
        with self.tx() as db:
            row = db.execute("SELECT next_index FROM groups WHERE name=?", (group,)).fetchone()
            if row is None:
                raise StateError(f"group {group!r} is not known to this skyctl")
            start = max(int(row[0]), at_least)
            db.execute("UPDATE groups SET next_index=? WHERE name=?", (start + count, group))
        return list(range(start, start + count))

    @_guarded
    def delete_group(self, name: str) -> None:
        with self.tx() as db:
            db.execute("DELETE FROM groups WHERE name=?", (name,))
            db.execute("DELETE FROM nodes WHERE grp=?", (name,))

    # ---------------------------------------------------------------- nodes
    @_guarded
    def record_node(self, name: str, group: str, site: str, cloud_id: str | None, launch_id: str) -> None:
        with self.tx() as db:
            db.execute(
                "INSERT INTO nodes (name, grp, site, cloud_id, launch_id, created_at) VALUES (?,?,?,?,?,?) "
                "ON CONFLICT(name) DO UPDATE SET site=excluded.site, cloud_id=excluded.cloud_id, "
                "launch_id=excluded.launch_id",
                (name, group, site, cloud_id, launch_id, time.time()))

    @_guarded
    def forget_node(self, name: str) -> None:
        with self.tx() as db:
            db.execute("DELETE FROM nodes WHERE name=?", (name,))

    @_guarded
    def nodes(self, group: str | None = None) -> list[NodeRecord]:
        q = "SELECT name, grp, site, cloud_id, launch_id, created_at FROM nodes"
        rows = self.db.execute(q + (" WHERE grp=? ORDER BY name" if group else " ORDER BY name"),
                               (group,) if group else ()).fetchall()
        return [NodeRecord(*r) for r in rows]

    # ---------------------------------------------------------------- intents
    @_guarded
    def begin(self, launch_id: str, op: str, group: str, node: str, site: str) -> int:
        now = time.time()
        with self.tx() as db:
            cur = db.execute(
                "INSERT INTO intents (launch_id, op, grp, node, site, status, created_at, updated_at) "
                "VALUES (?,?,?,?,?, 'pending', ?, ?)", (launch_id, op, group, node, site, now, now))
            return int(cur.lastrowid or 0)

    @_guarded
    def finish(self, intent_id: int, status: str, detail: str | None = None) -> None:
        with self.tx() as db:
            db.execute("UPDATE intents SET status=?, detail=?, updated_at=? WHERE id=?",
                       (status, detail, time.time(), intent_id))

    @_guarded
    def intents(self, status: str | None = None) -> list[Intent]:
        q = "SELECT id, launch_id, op, grp, node, site, status, detail, created_at FROM intents"
        rows = self.db.execute(q + (" WHERE status=? ORDER BY id" if status else " ORDER BY id"),
                               (status,) if status else ()).fetchall()
        return [Intent(*r) for r in rows]

    # ---------------------------------------------------------------- bursting
    @_guarded
    def log_burst(self, rule: str, action: str) -> None:
        with self.tx() as db:
            db.execute("INSERT INTO burst_log VALUES (?,?,?)", (rule, time.time(), action))

    @_guarded
    def last_burst(self, rule: str) -> float | None:
        row = self.db.execute("SELECT MAX(at) FROM burst_log WHERE rule=?", (rule,)).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    @_guarded
    def burst_events(self, rule: str, since: float = 0.0) -> list[tuple[float, str]]:
        """(at, action) of one key of the burst log since `since`, oldest first (demand runs and
        early deaths are logged under `demand:RULE` and `died:RULE`, apart from the moves)."""
        rows = self.db.execute("SELECT at, action FROM burst_log WHERE rule=? AND at>=? ORDER BY at",
                               (rule, since)).fetchall()
        return [(float(r[0]), str(r[1])) for r in rows]
