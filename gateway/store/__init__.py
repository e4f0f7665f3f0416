"""The encrypted store: open (key, quarantine, migrations), one writer, per-thread readers."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from gateway.store import migrations
from gateway.store.db import Connection, Key, OpenResult, connect, open_database, resolve_key
from gateway.store.writer import Writer

_LOGGER = logging.getLogger(__name__)

__all__ = ["Store", "ensure_secret", "open_store"]


def ensure_secret(conn: Connection, name: str) -> bytes:
    """Return the gateway's random 32-byte secret called ``name``, creating it on first use.

    Kept in the encrypted database's ``meta`` table (so it is as safe as the data it protects,
    and a backup restores it with that data). Call it inside a write (``writer.call``).
    """
    key = f"secret:{name}"
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    if row:
        return bytes.fromhex(row[0])
    value = os.urandom(32)
    conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, value.hex()))
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


def open_store(data_dir: Path, key_file: str = "") -> Store:
    """Resolve the key, open or create the database (quarantining a damaged one), migrate it."""
    os.umask(0o077)  # the key, database, WAL and backups are for this user only
    key = resolve_key(data_dir, key_file)
    opened = open_database(data_dir, key)
    conn = connect(opened.path, key)
    try:
        migrations.apply(conn)
    finally:
        conn.close()
    return Store(opened, key)
