-- HQ's embedded database (demo and tests): the tables of the PostgreSQL migrations, times as
-- ISO-8601 UTC text, payloads as JSON text, no partitioning.
CREATE TABLE IF NOT EXISTS hq_messages (
    id TEXT PRIMARY KEY, store TEXT NOT NULL, kind TEXT NOT NULL, rev INTEGER NOT NULL, ts TEXT NOT NULL,
    payload TEXT NOT NULL, received_at TEXT NOT NULL, revisions INTEGER NOT NULL DEFAULT 1);
CREATE INDEX IF NOT EXISTS hq_messages_store_kind_ts ON hq_messages (store, kind, ts);
CREATE TABLE IF NOT EXISTS hq_stores (
    store TEXT PRIMARY KEY, state TEXT, status_id TEXT, status_ts TEXT, version TEXT, received_ms INTEGER,
    changed_at TEXT, last_seen TEXT NOT NULL, lag_ms INTEGER NOT NULL DEFAULT 0, messages INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS hq_dead_letters (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, received_at TEXT NOT NULL, topic TEXT NOT NULL, store TEXT,
    payload BLOB NOT NULL, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS hq_manifests (
    store TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT, window_start TEXT, window_s INTEGER,
    ids TEXT NOT NULL DEFAULT '{}', state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    missing INTEGER NOT NULL DEFAULT 0, received_at TEXT NOT NULL, check_at REAL NOT NULL,
    PRIMARY KEY (store, seq));
CREATE TABLE IF NOT EXISTS hq_consumers (consumer TEXT PRIMARY KEY, updated_at TEXT NOT NULL, stats TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS hq_telemetry_summary (
    window_start TEXT NOT NULL, id TEXT NOT NULL, store TEXT NOT NULL, device TEXT, metric TEXT,
    window_s INTEGER, rev INTEGER NOT NULL, count INTEGER, min REAL, max REAL, mean REAL, payload TEXT NOT NULL,
    PRIMARY KEY (window_start, id));
