"""Named, ordered schema migrations, recorded in the database (sqlite-utils style).

A domain declares its tables in a ``schema`` module with ``@migration("name")``; whoever opens the
database names those modules (``gateway.domains.SCHEMAS``), so the store imports nothing above it.
The store's own migrations come first, then each schema module's in the order given, each in the
order written, once each.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from types import ModuleType

from gateway.core.models import now_ms
from gateway.store.db import Connection

_LOGGER = logging.getLogger(__name__)

Migration = Callable[[Connection], None]
_MIGRATIONS: list[tuple[str, str, Migration]] = []  # (module, name, fn) in registration order


def run_script(conn: Connection, script: str) -> None:
    """Run several DDL statements inside the current transaction (executescript would commit)."""
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def migration(name: str) -> Callable[[Migration], Migration]:
    """Register a migration under a unique, never-reused name."""
    def register(fn: Migration) -> Migration:
        if any(n == name for _, n, _ in _MIGRATIONS):
            raise RuntimeError(f"migration {name} registered twice")
        _MIGRATIONS.append((fn.__module__, name, fn))
        return fn
    return register


def ordered(schemas: Sequence[ModuleType] = ()) -> list[tuple[str, Migration]]:
    """Return the store's migrations, then each schema module's, in order."""
    out = []
    for module in (__name__, *(m.__name__ for m in schemas)):
        out.extend((name, fn) for mod, name, fn in _MIGRATIONS if mod == module)
    return out


def pending(conn: Connection, schemas: Sequence[ModuleType] = ()) -> list[str]:
    """Return the names of the migrations this database has not had yet (read only)."""
    has_table = conn.execute("SELECT 1 FROM sqlite_master WHERE name = '_migrations'").fetchone()
    done = {row[0] for row in conn.execute("SELECT name FROM _migrations")} if has_table else set()
    return [name for name, _ in ordered(schemas) if name not in done]


def apply(conn: Connection, schemas: Sequence[ModuleType] = ()) -> list[str]:
    """Apply every pending migration in its own transaction; return the names applied."""
    conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_ms INTEGER NOT NULL)")
    done = {row[0] for row in conn.execute("SELECT name FROM _migrations")}
    applied = []
    for name, fn in ordered(schemas):
        if name in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            fn(conn)
            conn.execute("INSERT INTO _migrations (name, applied_ms) VALUES (?, ?)", (name, now_ms()))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        _LOGGER.info("Applied migration %s", name)
        applied.append(name)
    return applied


@migration("0001_core")
def _core(conn: Connection) -> None:
    run_script(conn, """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE devices (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL DEFAULT 'mqtt',
            first_seen_ms INTEGER NOT NULL,
            last_seen_ms INTEGER NOT NULL
        );
        CREATE TABLE metrics (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
        CREATE TABLE readings (  -- idempotent on (device, ts, payload digest)
            device_id INTEGER NOT NULL,
            ts_ms INTEGER NOT NULL,
            digest BLOB NOT NULL,
            received_ms INTEGER NOT NULL,
            metrics TEXT NOT NULL,
            PRIMARY KEY (device_id, ts_ms, digest)
        ) WITHOUT ROWID;
        CREATE TABLE windows (
            device_id INTEGER NOT NULL,
            metric_id INTEGER NOT NULL,
            wstart_ms INTEGER NOT NULL,
            window_s INTEGER NOT NULL,
            is_bool INTEGER NOT NULL DEFAULT 0,
            count INTEGER NOT NULL,
            true_count INTEGER NOT NULL DEFAULT 0,
            min REAL, max REAL, sum REAL NOT NULL DEFAULT 0,
            last REAL, last_ts_ms INTEGER NOT NULL,
            rev INTEGER NOT NULL DEFAULT 0,
            dirty INTEGER NOT NULL DEFAULT 1,
            PRIMARY KEY (device_id, metric_id, wstart_ms)
        ) WITHOUT ROWID;
        CREATE INDEX windows_dirty ON windows (wstart_ms) WHERE dirty = 1;
        CREATE TABLE outbox (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            lane INTEGER NOT NULL,
            topic TEXT NOT NULL,
            msg_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            payload BLOB NOT NULL,
            size INTEGER NOT NULL,
            retain INTEGER NOT NULL DEFAULT 0,
            created_ms INTEGER NOT NULL
        );
        CREATE INDEX outbox_lane ON outbox (lane, seq);
        CREATE TABLE alerts_active (
            key TEXT PRIMARY KEY,
            episode TEXT NOT NULL,
            kind TEXT NOT NULL,
            rule TEXT NOT NULL,
            device TEXT NOT NULL,
            severity TEXT NOT NULL,
            value REAL,
            raised_ms INTEGER NOT NULL
        );
        CREATE TABLE alert_log (
            id INTEGER PRIMARY KEY,
            episode TEXT NOT NULL,
            state TEXT NOT NULL,
            kind TEXT NOT NULL,
            rule TEXT NOT NULL,
            device TEXT NOT NULL,
            severity TEXT NOT NULL,
            value REAL,
            ts_ms INTEGER NOT NULL
        );
        CREATE TABLE device_events (
            id INTEGER PRIMARY KEY,
            device TEXT NOT NULL,
            kind TEXT NOT NULL,
            ts_ms INTEGER NOT NULL,
            data TEXT NOT NULL
        );
    """)


@migration("0002_outbox_health_index")
def _outbox_health_index(conn: Connection) -> None:
    # Health reads depth, size and oldest age per lane on every call: a covering index keeps that
    # at ~0.5 ms and out of the page cache even with a day's backlog.
    conn.execute("CREATE INDEX outbox_lane_age ON outbox (lane, created_ms, size)")


@migration("0003_rule_state")
def _rule_state(conn: Connection) -> None:
    # One row per (rule, device) series the rule engine has evaluated (gateway/spine/rules.py): the
    # start of a pending breach (its ``for`` timer), so a restart does not reset the timer, and when
    # the series was last seen, so a restart neither forgets a series nor calls it "no data" at once.
    run_script(conn, """
        CREATE TABLE rule_state (
            key TEXT PRIMARY KEY,
            rule TEXT NOT NULL,
            device TEXT NOT NULL,
            since_ms INTEGER,
            value REAL,
            seen_ms INTEGER NOT NULL
        )
    """)


@migration("0004_outbox_sent")
def _outbox_sent(conn: Connection) -> None:
    # What HQ's broker acknowledged, kept for uplink.resend_keep: the hourly manifest lists it, and
    # HQ's P/cmd/resend is answered from it (a broker or consumer can lose a message after its PUBACK).
    run_script(conn, """
        CREATE TABLE outbox_sent (
            seq INTEGER PRIMARY KEY,
            lane INTEGER NOT NULL,
            topic TEXT NOT NULL,
            msg_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            payload BLOB NOT NULL,
            retain INTEGER NOT NULL DEFAULT 0,
            acked_ms INTEGER NOT NULL
        );
        CREATE INDEX outbox_sent_acked ON outbox_sent (acked_ms);
        CREATE INDEX outbox_sent_msg ON outbox_sent (msg_id);
        CREATE TABLE outbox_sent_items (
            item_id TEXT NOT NULL,
            rev INTEGER NOT NULL,
            seq INTEGER NOT NULL,
            PRIMARY KEY (item_id, seq)
        ) WITHOUT ROWID;
        CREATE INDEX outbox_sent_items_seq ON outbox_sent_items (seq);
    """)
