"""The encrypted store: open (key, quarantine, migrations), one writer, per-thread readers."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from gateway.store import migrations
from gateway.store.db import Connection, Key, OpenResult, connect, open_database, resolve_key
from gateway.store.writer import Writer

_LOGGER = logging.getLogger(__name__)

__all__ = ["Store", "ensure_secret", "open_store"]


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


class Store:
    """An opened database: the writer thread and a read connection per thread."""

    def __init__(self, opened: OpenResult, key: Key) -> None:
        self.path = opened.path
        self.quarantined = opened.quarantined
        self._key = key
        self._local = threading.local()
        self._readers: list[Connection] = []
        self._lock = threading.Lock()
        self.writer = Writer(connect(self.path, key))

    def read(self) -> Connection:
        """Return this thread's read connection (opened on first use)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, self._key)
            conn.execute("PRAGMA query_only = ON")
            self._local.conn = conn
            with self._lock:
                self._readers.append(conn)
        return conn

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
        self._local = threading.local()


def open_store(data_dir: Path, key_file: str = "", schemas: Sequence[ModuleType] = ()) -> Store:
    """Resolve the key, open or create the database (quarantining a damaged one), migrate it.

    ``schemas`` are the domain schema modules whose migrations to apply after the store's own
    (``gateway.domains.SCHEMAS`` for the whole gateway).
    """
    os.umask(0o077)  # the key, database, WAL and backups are for this user only
    key = resolve_key(data_dir, key_file)
    opened = open_database(data_dir, key)
    conn = connect(opened.path, key)
    try:
        migrations.apply(conn, schemas)
    finally:
        conn.close()
    return Store(opened, key)
