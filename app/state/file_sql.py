"""The SQL of the state file (``app.state.file``): its schema, opening it, and one function per
operation.

The functions are synchronous and run on the store's worker thread; a write function runs
inside the transaction the store opened, a read function is one statement (one consistent
snapshot). ``name`` is the namespaced key; ``now`` is the store's clock (wall-clock seconds,
shared by every process on the file), against which every read checks the expiry.

A key is one row of ``entries`` (its kind and expiry, and the bytes or the counter); a hash's
fields and a list's items are rows of their own tables under the same key.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from app.errors import ConfigError, StateUnavailableError

__all__ = [
    "connect",
    "delete",
    "explain",
    "get",
    "hash_delete",
    "hash_get",
    "hash_items",
    "hash_set",
    "incr",
    "list_push",
    "list_range",
    "purge",
    "set_value",
]

SCHEMA_VERSION = 1
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS entries (
        key TEXT PRIMARY KEY,
        kind TEXT NOT NULL,  -- bytes, counter, hash or list
        value,               -- the bytes or the counter (untyped, so an integer stays one), or NULL
        expires_at REAL      -- wall-clock seconds, or NULL: never
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS entries_by_expiry ON entries (expires_at) WHERE expires_at IS NOT NULL",
    """CREATE TABLE IF NOT EXISTS hash_fields (
        key TEXT NOT NULL,
        field TEXT NOT NULL,
        value BLOB NOT NULL,
        PRIMARY KEY (key, field)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS list_items (
        key TEXT NOT NULL,
        seq INTEGER NOT NULL,  -- consecutive per key, so trimming to the newest max_len is one range
        value BLOB NOT NULL,
        PRIMARY KEY (key, seq)
    ) WITHOUT ROWID""",
)
_LIVE = "(e.expires_at IS NULL OR e.expires_at > ?)"

_FAULTS = {
    "SQLITE_BUSY": "locked by another process",
    "SQLITE_LOCKED": "locked by another process",
    "SQLITE_NOTADB": "not a state file (not an SQLite database)",
    "SQLITE_CORRUPT": "corrupt",
    "SQLITE_READONLY": "not writable",
    "SQLITE_CANTOPEN": "cannot be opened",
    "SQLITE_FULL": "the disk is full",
    "SQLITE_INTERRUPT": "interrupted after the timeout",
}


def explain(exc: BaseException) -> str:
    """A reason for a failure of the file, in words first."""
    if isinstance(exc, sqlite3.Error):
        name = getattr(exc, "sqlite_errorname", "") or ""
        for prefix, reason in _FAULTS.items():
            if name.startswith(prefix):
                return f"{reason} ({exc})"
        return f"{name or type(exc).__name__}: {exc}"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return f"{type(exc).__name__}: {exc}"


def connect(path: Path, *, busy_timeout_s: float) -> sqlite3.Connection:
    """Open (or create) the state file: its folder, write-ahead logging, the schema.

    ``ConfigError`` when the path cannot be a state file (its folder cannot be created, it is not
    writable, not a database, or from a newer schema); ``StateUnavailableError`` when another
    process holds it locked for longer than ``busy_timeout_s``.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"the folder of the state file {path} cannot be created: {explain(exc)}") from exc
    conn: sqlite3.Connection | None = None
    try:
        conn = sqlite3.connect(
            path,
            timeout=busy_timeout_s,
            isolation_level=None,  # autocommit: the store opens each write's transaction itself
            check_same_thread=False,  # used on the worker only; interrupt() comes from the loop
        )
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise ConfigError(
                f"the state file {path} cannot use write-ahead logging (journal mode {mode}): "
                "put it on a local file system"
            )
        # WAL + NORMAL: a process that dies loses nothing committed; a power loss at worst the
        # last transactions, never the file's consistency.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise ConfigError(
                    f"the state file {path} was written by a newer version of kb "
                    f"(schema {version}, this one knows {SCHEMA_VERSION})"
                )
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            conn.execute("COMMIT")
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
    except sqlite3.Error as exc:
        if conn is not None:
            conn.close()
        if (getattr(exc, "sqlite_errorname", "") or "").startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            raise StateUnavailableError(f"state file {path}: {explain(exc)}") from exc
        raise ConfigError(
            f"the state file {path} cannot be used: {explain(exc)}; fix its permissions, move it "
            "away or point state.file elsewhere"
        ) from exc
    except BaseException:
        if conn is not None:
            conn.close()
        raise
    return conn


# ---------------------------------------------------------------------------- reads


def get(conn: sqlite3.Connection, name: str, now: float) -> bytes | None:
    row = conn.execute(
        f"SELECT kind, value FROM entries AS e WHERE key = ? AND kind IN ('bytes', 'counter') AND {_LIVE}",
        (name, now),
    ).fetchone()
    if row is None:
        return None
    return str(row[1]).encode() if row[0] == "counter" else bytes(row[1])


def hash_get(conn: sqlite3.Connection, name: str, field: str, now: float) -> bytes | None:
    row = conn.execute(
        "SELECT f.value FROM hash_fields AS f JOIN entries AS e ON e.key = f.key "
        f"WHERE f.key = ? AND f.field = ? AND e.kind = 'hash' AND {_LIVE}",
        (name, field, now),
    ).fetchone()
    return None if row is None else bytes(row[0])


def hash_items(conn: sqlite3.Connection, name: str, now: float) -> dict[str, bytes]:
    rows = conn.execute(
        "SELECT f.field, f.value FROM hash_fields AS f JOIN entries AS e ON e.key = f.key "
        f"WHERE f.key = ? AND e.kind = 'hash' AND {_LIVE}",
        (name, now),
    )
    return {str(field): bytes(value) for field, value in rows}


def list_range(conn: sqlite3.Connection, name: str, last: int, now: float) -> list[bytes]:
    rows = conn.execute(
        "SELECT value FROM (SELECT i.seq, i.value FROM list_items AS i JOIN entries AS e ON e.key = i.key "
        f"WHERE i.key = ? AND e.kind = 'list' AND {_LIVE} ORDER BY i.seq DESC LIMIT ?) ORDER BY seq",
        (name, now, last),
    )
    return [bytes(value) for (value,) in rows]


# ---------------------------------------------------------------------------- writes


def set_value(conn: sqlite3.Connection, name: str, value: bytes, expires_at: float | None) -> None:
    _drop(conn, name)
    conn.execute(
        "INSERT INTO entries (key, kind, value, expires_at) VALUES (?, 'bytes', ?, ?)",
        (name, bytes(value), expires_at),
    )


def delete(conn: sqlite3.Connection, name: str, now: float) -> bool:
    existed = conn.execute(f"SELECT 1 FROM entries AS e WHERE key = ? AND {_LIVE}", (name, now)).fetchone()
    _drop(conn, name)
    return existed is not None


def incr(conn: sqlite3.Connection, name: str, amount: int, now: float, expires_at: float | None) -> int:
    row = conn.execute(
        f"SELECT value FROM entries AS e WHERE key = ? AND kind = 'counter' AND {_LIVE}", (name, now)
    ).fetchone()
    if row is None:  # created now, so the expiry is set now and only now
        _drop(conn, name)
        conn.execute(
            "INSERT INTO entries (key, kind, value, expires_at) VALUES (?, 'counter', ?, ?)",
            (name, amount, expires_at),
        )
        return amount
    value = int(row[0]) + amount
    conn.execute("UPDATE entries SET value = ? WHERE key = ?", (value, name))
    return value


def hash_set(conn: sqlite3.Connection, name: str, field: str, value: bytes, now: float) -> None:
    _ensure(conn, name, "hash", now, expires_at=None)
    conn.execute(
        "INSERT OR REPLACE INTO hash_fields (key, field, value) VALUES (?, ?, ?)", (name, field, bytes(value))
    )


def hash_delete(conn: sqlite3.Connection, name: str, field: str, now: float) -> bool:
    removed = conn.execute(
        "DELETE FROM hash_fields WHERE key = ? AND field = ? AND EXISTS "
        f"(SELECT 1 FROM entries AS e WHERE key = ? AND kind = 'hash' AND {_LIVE})",
        (name, field, name, now),
    ).rowcount
    if conn.execute("SELECT 1 FROM hash_fields WHERE key = ? LIMIT 1", (name,)).fetchone() is None:
        conn.execute("DELETE FROM entries WHERE key = ? AND kind = 'hash'", (name,))
    return removed > 0


def list_push(
    conn: sqlite3.Connection, name: str, value: bytes, max_len: int, now: float, expires_at: float | None
) -> None:
    _ensure(conn, name, "list", now, expires_at=expires_at)
    newest = int(
        conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM list_items WHERE key = ?", (name,)).fetchone()[0]
    )
    conn.execute("INSERT INTO list_items (key, seq, value) VALUES (?, ?, ?)", (name, newest, bytes(value)))
    conn.execute("DELETE FROM list_items WHERE key = ? AND seq <= ?", (name, newest - max_len))


def purge(conn: sqlite3.Connection, now: float, *, limit: int) -> int:
    """Delete up to ``limit`` expired entries (the expiry index finds them); how many it deleted."""
    rows = conn.execute("SELECT key FROM entries WHERE expires_at <= ? LIMIT ?", (now, limit)).fetchall()
    for (name,) in rows:
        _drop(conn, name)
    return len(rows)


def _drop(conn: sqlite3.Connection, name: str) -> None:
    """Remove ``name`` whatever it holds, live or expired."""
    conn.execute("DELETE FROM entries WHERE key = ?", (name,))
    conn.execute("DELETE FROM hash_fields WHERE key = ?", (name,))
    conn.execute("DELETE FROM list_items WHERE key = ?", (name,))


def _ensure(conn: sqlite3.Connection, name: str, kind: str, now: float, *, expires_at: float | None) -> None:
    """Make ``name`` a live entry of ``kind`` with this expiry, replacing an expired entry or one of
    another kind."""
    row = conn.execute(f"SELECT kind FROM entries AS e WHERE key = ? AND {_LIVE}", (name, now)).fetchone()
    if row is not None and row[0] == kind:
        conn.execute("UPDATE entries SET expires_at = ? WHERE key = ?", (expires_at, name))
        return
    _drop(conn, name)
    conn.execute(
        "INSERT INTO entries (key, kind, value, expires_at) VALUES (?, ?, NULL, ?)", (name, kind, expires_at)
    )
