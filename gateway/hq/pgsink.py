"""HQ's PostgreSQL backend (psycopg 3): batched, order-free upserts in one transaction per batch.

Each batch is a handful of statements whatever its size: ``INSERT … SELECT FROM unnest(arrays)``
with ``ON CONFLICT (id) DO UPDATE … WHERE excluded.rev > t.rev`` (hundreds of rows per statement;
a row per id, replaced only by a higher rev). Telemetry summaries also go to
``hq_telemetry_summary``, partitioned by day on ``window_start`` (native partitions the sink creates
before writing into them, or a TimescaleDB hypertable when the extension is installed). Rows are
locked in id order by every consumer, and a deadlock or serialization failure retries the batch.
"""

from __future__ import annotations

import json
import threading
import zlib
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
from psycopg import errors as pgerrors

from gateway.hq.sink import (
    GRACE_S,
    MAX_ASKS,
    MAX_GAP,
    Incoming,
    Resend,
    Sink,
    WriteResult,
    activity,
    first_check_s,
    migrations,
    newest,
    next_check_s,
    resend_requests,
    status_updates,
    summary_fields,
)

_LOCK_KEY = zlib.crc32(b"storegw-hq")  # advisory lock: migrations and partition creation, one consumer at a time

PG_QUERIES = {
    "stores": "SELECT s.store, s.state, s.changed_at, s.last_seen, s.lag_ms, s.messages, s.version, "
              "coalesce((SELECT sum(m.missing) FROM hq_manifests m WHERE m.store = s.store "
              "AND m.state NOT IN ('complete', 'lost')), 0) AS missing FROM hq_stores s ORDER BY s.store",
    "alerts": "SELECT a.store, a.ts, a.payload->>'severity' AS severity, a.payload->>'rule' AS rule, "
              "a.payload->>'device' AS device, a.payload->'value' AS value FROM hq_messages a "
              "WHERE a.kind = 'alerts' AND a.payload->>'state' = 'raised' AND NOT EXISTS (SELECT 1 FROM "
              "hq_messages c WHERE c.id = (a.payload->>'episode') || ':cleared') ORDER BY a.ts DESC LIMIT 500",
    "latest": "SELECT DISTINCT ON (store, kind) store, kind, ts, payload FROM hq_messages "
              "WHERE kind LIKE '%%summary' OR kind LIKE 'reports/%%' ORDER BY store, kind, ts DESC",
    "dead_letters": "SELECT seq, received_at, topic, store, reason FROM hq_dead_letters ORDER BY seq DESC LIMIT 50",
    "counts": "SELECT (SELECT count(*) FROM hq_messages) AS messages, "
              "(SELECT count(*) FROM hq_dead_letters) AS dead_letters, "
              "(SELECT count(*) FROM hq_manifests WHERE state NOT IN ('complete', 'lost')) AS manifests_open, "
              "(SELECT coalesce(sum(missing), 0) FROM hq_manifests WHERE state NOT IN ('complete', 'lost')) AS missing",
    "consumers": "SELECT consumer, updated_at, stats FROM hq_consumers ORDER BY consumer",
}

RETRYABLE = (pgerrors.DeadlockDetected, pgerrors.SerializationFailure)


class PostgresSink(Sink):
    """HQ's database in PostgreSQL (TimescaleDB when installed)."""

    backend = "postgresql"

    def __init__(self, url: str, *, grace: float = GRACE_S) -> None:
        self.url = url
        self.grace = grace
        self._lock = threading.Lock()
        self.conn = psycopg.connect(url, autocommit=True)
        self.timescale = False
        self._partitions: set[date] = set()
        self.migrate()

    def migrate(self) -> None:
        """Apply the shipped PostgreSQL migrations not applied yet (TimescaleDB variants when available)."""
        with self._lock, self.conn.transaction():
            c = self.conn
            c.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            c.execute("CREATE TABLE IF NOT EXISTS hq_schema (version integer PRIMARY KEY, name text NOT NULL, "
                      "applied_at timestamptz NOT NULL DEFAULT now())")
            done = dict(c.execute("SELECT version, name FROM hq_schema").fetchall())
            have_ts = c.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
            chosen: dict[int, tuple[str, str]] = {}
            for version, name, sql in migrations("postgresql"):
                variant = name.endswith(".timescaledb.sql")
                if variant and not have_ts:
                    continue
                if version not in chosen or variant:
                    chosen[version] = (name, sql)
            for version in sorted(chosen):
                name, sql = chosen[version]
                if version in done:
                    continue
                c.execute(sql)
                c.execute("INSERT INTO hq_schema (version, name) VALUES (%s, %s)", (version, name))
                done[version] = name
            self.timescale = any(n.endswith(".timescaledb.sql") for n in done.values())

    def _ensure_partitions(self, days: set[date]) -> None:
        need = days - self._partitions
        if not need or self.timescale:
            return
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            for day in sorted(need):
                nxt = day + timedelta(days=1)
                self.conn.execute(
                    f"CREATE TABLE IF NOT EXISTS hq_telemetry_summary_p{day:%Y%m%d} PARTITION OF "  # noqa: S608
                    f"hq_telemetry_summary FOR VALUES FROM ('{day.isoformat()}') TO ('{nxt.isoformat()}')")
        self._partitions |= need

    def write(self, batch: list[Incoming]) -> WriteResult:
        for attempt in range(5):
            try:
                with self._lock:
                    return self._write(batch)
            except RETRYABLE:
                if attempt == 4:
                    raise
        raise AssertionError("unreachable")

    def _write(self, batch: list[Incoming]) -> WriteResult:
        res = WriteResult()
        rows, res.absorbed = newest(r for m in batch if m.parsed for r in m.parsed.rows)
        res.rows = len(rows) + res.absorbed
        summaries = [(r, summary_fields(r)) for r in rows if r.kind == "telemetry/summary"]
        self._ensure_partitions({f[0].date() for _, f in summaries})
        c = self.conn
        with c.transaction():
            if rows:
                payloads = [json.dumps(r.payload, separators=(",", ":"), ensure_ascii=False) for r in rows]
                cur = c.execute(
                    "INSERT INTO hq_messages AS t (id, store, kind, rev, ts, payload) "
                    "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[], %s::timestamptz[], "
                    "%s::jsonb[]) ON CONFLICT (id) DO UPDATE SET rev = excluded.rev, ts = excluded.ts, "
                    "payload = excluded.payload, received_at = now(), revisions = t.revisions + 1 "
                    "WHERE excluded.rev > t.rev RETURNING id",
                    ([r.id for r in rows], [r.store for r in rows], [r.kind for r in rows], [r.rev for r in rows],
                     [r.ts for r in rows], payloads))
                written = {row[0] for row in cur.fetchall()}
                res.written = len(written)
                res.absorbed += len(rows) - res.written
                body = dict(zip((r.id for r in rows), payloads, strict=True))
                fresh = [(r, f, body[r.id]) for r, f in summaries if r.id in written]
                if fresh:
                    c.execute(
                        "INSERT INTO hq_telemetry_summary AS t (window_start, id, store, device, metric, window_s, "
                        "rev, count, min, max, mean, payload) SELECT * FROM unnest(%s::timestamptz[], %s::text[], "
                        "%s::text[], %s::text[], %s::text[], %s::integer[], %s::bigint[], %s::bigint[], "
                        "%s::float8[], %s::float8[], %s::float8[], %s::jsonb[]) ON CONFLICT (window_start, id) "
                        "DO UPDATE SET rev = excluded.rev, count = excluded.count, min = excluded.min, "
                        "max = excluded.max, mean = excluded.mean, payload = excluded.payload "
                        "WHERE excluded.rev > t.rev",
                        _summary_columns(fresh))
            act = sorted(activity(batch).items())
            if act:
                c.execute("INSERT INTO hq_stores AS t (store, last_seen, lag_ms, messages) "
                          "SELECT s, now(), l, n FROM unnest(%s::text[], %s::bigint[], %s::bigint[]) AS u(s, l, n) "
                          "ON CONFLICT (store) DO UPDATE SET last_seen = excluded.last_seen, "
                          "lag_ms = excluded.lag_ms, messages = t.messages + excluded.messages",
                          ([s for s, _ in act], [lag for _, (_, lag) in act], [n for _, (n, _) in act]))
            for store, (msg, doc) in sorted(status_updates(batch).items()):
                c.execute("UPDATE hq_stores SET changed_at = CASE WHEN state IS NOT DISTINCT FROM %s THEN changed_at "
                          "ELSE now() END, state = %s, status_id = %s, status_ts = %s, version = %s, "
                          "received_ms = %s WHERE store = %s AND (received_ms IS NULL OR received_ms <= %s)",
                          (doc["state"], doc["state"], doc["id"], doc["ts"], doc.get("version"), msg.received_ms,
                           store, msg.received_ms))
            dead = [m for m in batch if m.reason]
            if dead:
                c.cursor().executemany(
                    "INSERT INTO hq_dead_letters (topic, store, payload, reason) VALUES (%s, %s, %s, %s)",
                    [(m.topic, m.store, m.payload, m.reason) for m in dead])
                res.dead = len(dead)
            for msg in batch:
                if msg.parsed is not None and msg.parsed.manifest is not None:
                    res.manifests += 1
                    self._manifest(msg.parsed.store, msg.parsed.manifest, msg.received_ms)
        return res

    def _manifest(self, store: str, doc: dict[str, Any], received_ms: int) -> None:
        c, seq = self.conn, int(doc["seq"])
        first = first_check_s(doc, received_ms, self.grace)
        c.execute("INSERT INTO hq_manifests AS t (store, seq, id, window_start, window_s, ids, state, check_at) "
                  "VALUES (%s, %s, %s, %s, %s, %s::jsonb, 'pending', now() + make_interval(secs => %s)) "
                  "ON CONFLICT (store, seq) DO UPDATE SET id = excluded.id, window_start = excluded.window_start, "
                  "window_s = excluded.window_s, ids = excluded.ids, state = 'pending', check_at = excluded.check_at "
                  "WHERE t.state = 'absent'",
                  (store, seq, doc["id"], doc["window_start"], doc["window_s"], json.dumps(doc["ids"]), first))
        prev = c.execute("SELECT max(seq) FROM hq_manifests WHERE store = %s AND seq < %s", (store, seq)).fetchone()[0]
        if prev is None or prev + 1 < seq:  # seqs start at 1: the first ones seen may follow lost ones
            c.execute("INSERT INTO hq_manifests (store, seq, state, check_at) SELECT %s, g, 'absent', "
                      "now() + make_interval(secs => %s) FROM generate_series(%s::bigint, %s::bigint) g "
                      "ON CONFLICT DO NOTHING", (store, first, max((prev or 0) + 1, seq - MAX_GAP, 1), seq - 1))

    def repair(self, limit: int = 100) -> list[Resend]:
        found: list[tuple[str, str | None, int | None]] = []
        with self._lock, self.conn.transaction():
            c = self.conn
            due = c.execute("SELECT store, seq, state, attempts FROM hq_manifests WHERE state NOT IN "
                            "('complete', 'lost') AND check_at <= now() ORDER BY check_at LIMIT %s "
                            "FOR UPDATE SKIP LOCKED", (limit,)).fetchall()
            for store, seq, state, attempts in due:
                if state == "absent" and attempts >= MAX_ASKS:
                    c.execute("UPDATE hq_manifests SET state = 'lost' WHERE store = %s AND seq = %s", (store, seq))
                    continue
                if state == "absent":
                    found.append((store, None, seq))
                    missing = 1
                else:
                    ids = [r[0] for r in c.execute(
                        "SELECT e.key FROM hq_manifests f CROSS JOIN LATERAL jsonb_each_text(f.ids) e "
                        "LEFT JOIN hq_messages h ON h.id = e.key WHERE f.store = %s AND f.seq = %s "
                        "AND (h.rev IS NULL OR h.rev < e.value::bigint)", (store, seq))]
                    found.extend((store, i, None) for i in ids)
                    missing = len(ids)
                if missing:
                    c.execute("UPDATE hq_manifests SET state = CASE state WHEN 'absent' THEN 'absent' "
                              "ELSE 'requested' END, attempts = attempts + 1, missing = %s, "
                              "check_at = now() + make_interval(secs => %s) WHERE store = %s AND seq = %s",
                              (missing, next_check_s(attempts, self.grace), store, seq))
                else:
                    c.execute("UPDATE hq_manifests SET state = 'complete', missing = 0 WHERE store = %s AND seq = %s",
                              (store, seq))
        return resend_requests(found)

    def record_stats(self, consumer: str, stats: dict[str, Any]) -> None:
        with self._lock:
            self.conn.execute("INSERT INTO hq_consumers (consumer, stats) VALUES (%s, %s::jsonb) "
                              "ON CONFLICT (consumer) DO UPDATE SET updated_at = now(), stats = excluded.stats",
                              (consumer, json.dumps(stats)))

    def query(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            cur = self.conn.execute(PG_QUERIES[name])
            cols = [d.name for d in cur.description or ()]
            out = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
        for row in out:
            for key, value in row.items():
                if isinstance(value, datetime):
                    row[key] = value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        return out

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    def transient(self, err: Exception) -> bool:
        if not isinstance(err, psycopg.OperationalError):
            return False
        with self._lock:
            try:
                self.conn.close()
                self.conn = psycopg.connect(self.url, autocommit=True)
            except psycopg.OperationalError:
                pass  # still down: the next write fails the same way and comes back here
        return True


def _summary_columns(fresh: list[tuple[Any, tuple[Any, ...], str]]) -> tuple[list[Any], ...]:
    ws = [f[0] for _, f, _ in fresh]
    return (ws, [r.id for r, _, _ in fresh], [r.store for r, _, _ in fresh], [f[1] for _, f, _ in fresh],
            [f[2] for _, f, _ in fresh], [f[3] for _, f, _ in fresh], [r.rev for r, _, _ in fresh],
            [f[4] for _, f, _ in fresh], [f[5] for _, f, _ in fresh], [f[6] for _, f, _ in fresh],
            [f[7] for _, f, _ in fresh], [p for _, _, p in fresh])
