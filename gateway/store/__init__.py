"""The encrypted store: open (key, quarantine, migrations), one writer, a few pooled read connections."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from gateway.store import migrations
from gateway.store.db import Connection, Key, OpenResult, connect, open_database, rekey, resolve_key
from gateway.store.writer import Writer

_LOGGER = logging.getLogger(__name__)

__all__ = ["ReadConnection", "Store", "ensure_secret", "open_store"]

# Every thread's statements share READ_POOL read connections, each with a 256 KiB page cache; the
# writer keeps 1 MiB (the pages it appends to and the indexes' right edges). A connection costs
# ~0.3 MB however little it is used (schema, prepared statements, lookaside, cipher buffers): one per
# reading thread was 26 connections and 7.7 MB under bench/soak.py, and a thread that ended left its
# connection open (docs/architecture.md, Memory).
READ_CACHE_KIB = 256
READ_POOL = 2  # reads are short and mostly hold the GIL; each further connection is ~0.3 MB
WRITE_CACHE_KIB = 1024


def ensure_secret(conn: Connection, key: str, *, table: str = "meta") -> bytes:
    """Return the random 32-byte secret stored under ``key``, creating it on first use.

    Kept in a key/value table of the encrypted database (``meta``, or a service's own such table):
    as safe as the data it protects, and a backup restores it with that data. Call it inside a
    write (``writer.call``). ``table`` is a name from code, never from input.
    """
    if not table.isidentifier():
        raise ValueError(f"not a table name: {table!r}")
    row = conn.execute(f"SELECT value FROM {table} WHERE key = ?", (key,)).fetchone()  # noqa: S608
    if row:
        return bytes.fromhex(row[0])
    value = os.urandom(32)
    conn.execute(f"INSERT INTO {table} (key, value) VALUES (?, ?)", (key, value.hex()))  # noqa: S608
    return value


class _Gate:
    """Statements of the read connections share the gate; a rekey takes it alone.

    A rekey waits for the statements running now to finish and holds new ones back until the
    readers are reopened with the new key: a request waits a moment, it never fails.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._active = 0
        self._closed = False

    def enter(self) -> None:
        with self._cond:
            while self._closed:
                self._cond.wait()
            self._active += 1

    def leave(self) -> None:
        with self._cond:
            self._active -= 1
            if self._active == 0 and self._closed:
                self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            while self._closed:  # one rekey at a time
                self._cond.wait()
            self._closed = True
            while self._active:
                self._cond.wait()

    def open(self) -> None:
        with self._cond:
            self._closed = False
            self._cond.notify_all()


class Rows:
    """The fetched result of a read statement (what a cursor offers readers: fetch and iterate)."""

    __slots__ = ("_rows", "_i", "description")

    def __init__(self, rows: list[Any], description: Any) -> None:
        self._rows = rows
        self._i = 0
        self.description = description

    def fetchone(self) -> Any:
        if self._i >= len(self._rows):
            return None
        self._i += 1
        return self._rows[self._i - 1]

    def fetchall(self) -> list[Any]:
        rest = self._rows[self._i:]
        self._i = len(self._rows)
        return rest

    def fetchmany(self, size: int = 1) -> list[Any]:
        part = self._rows[self._i:self._i + size]
        self._i += len(part)
        return part

    def __iter__(self) -> Iterator[Any]:
        while self._i < len(self._rows):
            self._i += 1
            yield self._rows[self._i - 1]


class ReadConnection:
    """A thread's reader: each statement borrows one of the store's pooled read connections and runs
    (and is fetched) inside the store's read gate, so a rekey waits for it and the pool reopens with
    the current key. Anything else asked of it (rare) goes to a connection of the thread's own."""

    __slots__ = ("_store", "_conn", "_gen")

    def __init__(self, store: Store) -> None:
        self._store = store
        self._conn: Connection | None = None
        self._gen = -1

    def execute(self, sql: str, params: Any = ()) -> Rows:
        store = self._store
        store._gate.enter()
        try:
            conn = store._borrow()
            try:
                cur = conn.execute(sql, params)
                return Rows(cur.fetchall(), cur.description)
            finally:
                store._give_back(conn)
        finally:
            store._gate.leave()

    def _reopen(self) -> Connection:
        store = self._store
        old, self._conn = self._conn, None
        if old is not None:
            store._forget(old)
        conn = connect(store.path, store._key, cache_kib=READ_CACHE_KIB)
        conn.execute("PRAGMA query_only = ON")
        with store._lock:
            store._readers.append(conn)
        self._conn, self._gen = conn, store._gen
        return conn

    def close(self) -> None:
        """Close the underlying connection (it is reopened on the next statement)."""
        if self._conn is not None:
            self._store._forget(self._conn)
            self._conn = None

    def __getattr__(self, name: str) -> Any:  # anything else a reader may ask of a connection
        conn = self._conn
        if conn is None or self._gen != self._store._gen:
            conn = self._reopen()
        return getattr(conn, name)


class Store:
    """An opened database: the writer thread and a pool of read connections."""

    def __init__(self, opened: OpenResult, key: Key) -> None:
        self.path = opened.path
        self.quarantined = opened.quarantined
        self._key = key
        self._gen = 0
        self._gate = _Gate()
        self._local = threading.local()
        self._readers: list[Connection] = []  # every open read connection (pooled and threads' own)
        self._idle: list[Connection] = []  # pooled ones not in use now, the last used last
        self._pool = threading.BoundedSemaphore(READ_POOL)
        self._lock = threading.Lock()
        self.writer = Writer(connect(self.path, key, cache_kib=WRITE_CACHE_KIB))

    @property
    def key(self) -> Key:
        """The key the database is encrypted with now (changes with a rekey)."""
        return self._key

    def read(self) -> ReadConnection:
        """Return this thread's reader (its statements run on the pooled read connections)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = ReadConnection(self)
        return conn

    def _borrow(self) -> Connection:
        """Take an idle pooled read connection, or open one while fewer than READ_POOL are open;
        wait while all are in use. Called inside the read gate."""
        self._pool.acquire()
        try:
            with self._lock:
                if self._idle:
                    return self._idle.pop()
            conn = connect(self.path, self._key, cache_kib=READ_CACHE_KIB)
            conn.execute("PRAGMA query_only = ON")
            with self._lock:
                self._readers.append(conn)
            return conn
        except BaseException:
            self._pool.release()
            raise

    def _give_back(self, conn: Connection) -> None:
        with self._lock:
            if any(c is conn for c in self._readers):  # not closed meanwhile (close)
                self._idle.append(conn)
        self._pool.release()

    def _forget(self, conn: Connection) -> None:
        with self._lock:
            if conn in self._readers:
                self._readers.remove(conn)
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - closing on another thread may fail; nothing to keep
            pass

    def rekey(self, new_key: Key, step: Callable[[str], None] | None = None, timeout: float = 600.0) -> None:
        """Re-encrypt the database under ``new_key`` while the gateway runs, losing no write and
        failing no read: the writer pauses between transactions and rekeys on its own connection,
        read statements wait at the gate meanwhile, and every reader reopens with the new key."""
        self._gate.close()
        try:
            self.writer.run_exclusive(lambda conn: rekey(conn, self.path, new_key, step), timeout=timeout)
            with self._lock:
                readers, self._readers = self._readers, []
                self._idle.clear()
            for conn in readers:  # idle: the gate is closed
                try:
                    conn.close()
                except Exception:  # noqa: BLE001 - nothing to keep
                    pass
            self._key = new_key
            self._gen += 1
        finally:
            self._gate.open()

    def start(self) -> None:
        """Start the writer thread."""
        self.writer.start()

    def close(self) -> None:
        """Stop the writer (after its queue drains) and close every connection."""
        self.writer.stop()
        with self._lock:
            for conn in self._readers:
                try:
                    conn.close()
                except Exception:  # noqa: BLE001 - closing on another thread may fail; nothing to keep
                    pass
            self._readers.clear()
            self._idle.clear()
        self._gen += 1
        self._local = threading.local()


def open_store(data_dir: Path, key_file: str = "", schemas: Sequence[ModuleType] = (), *,
               key: Key | None = None) -> Store:
    """Open or create the database (quarantining a damaged one) and migrate it.

    ``key`` is the database key resolved by the composition root (from the keyring,
    ``gateway.privacy.keys``); without it the key is resolved here the old way (credential
    ``db-key``, ``$STOREGW_DB_KEY``, ``key_file`` or ``DATA_DIR/db.key``). ``schemas`` are the
    domain schema modules whose migrations to apply after the store's own
    (``gateway.domains.SCHEMAS`` for the whole gateway).
    """
    os.umask(0o077)  # the key, database, WAL and backups are for this user only
    if key is None:
        key = resolve_key(data_dir, key_file)
    opened = open_database(data_dir, key)
    conn = connect(opened.path, key)
    try:
        migrations.apply(conn, schemas)
    finally:
        conn.close()
    return Store(opened, key)
