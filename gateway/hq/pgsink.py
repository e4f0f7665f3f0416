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

from gateway.hq.contract import parse_time
from gateway.hq.sink import (
    COMMON_QUERIES,
    GRACE_S,
    MAX_GAP,
    Incoming,
    Resend,
    Sink,
    WriteResult,
    activity,
    first_check_s,
    migrations,
    newest,
    plan_repair,
    status_updates,
    summary_fields,
)

_LOCK_KEY = zlib.crc32(b"storegw-hq")  # advisory lock: migrations and partition creation, one consumer at a time

PG_QUERIES = {
    **COMMON_QUERIES,
    "alerts": "SELECT a.store, a.ts, a.payload->>'severity' AS severity, a.payload->>'rule' AS rule, "
              "a.payload->>'device' AS device, a.payload->'value' AS value FROM hq_messages a "
              "WHERE a.kind = 'alerts' AND a.payload->>'state' = 'raised' AND NOT EXISTS (SELECT 1 FROM "
              "hq_messages c WHERE c.id = (a.payload->>'episode') || ':cleared') ORDER BY a.ts DESC LIMIT 500",
    "latest": "SELECT DISTINCT ON (store, kind) store, kind, ts, payload FROM hq_messages "
              "WHERE kind LIKE '%%summary' OR kind LIKE 'reports/%%' ORDER BY store, kind, ts DESC",
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
            for version, name, sql in migrations("postgresql"):
                if version in done:
                    continue
                marker = next((line.split(":", 1)[1] for line in sql.splitlines()
                               if line.startswith("-- TIMESCALEDB:")), None)
                if have_ts and marker:
                    # the same table, unpartitioned, as a hypertable
                    sql = ("CREATE EXTENSION IF NOT EXISTS timescaledb;\n"
                           + sql.replace(" PARTITION BY RANGE (window_start)", "") + ";\n" + marker)
                    name = name.replace(".sql", ".timescaledb.sql")
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
            status = sorted(status_updates(batch).items())
            if status:
                c.execute("UPDATE hq_stores t SET changed_at = CASE WHEN t.state IS NOT DISTINCT FROM u.state "
                          "THEN t.changed_at ELSE now() END, state = u.state, status_id = u.id, status_ts = u.ts, "
                          "version = u.version, received_ms = u.r FROM unnest(%s::text[], %s::text[], %s::text[], "
                          "%s::timestamptz[], %s::text[], %s::bigint[]) AS u(store, state, id, ts, version, r) "
                          "WHERE t.store = u.store AND (t.received_ms IS NULL OR t.received_ms <= u.r)",
                          ([st for st, _ in status], [d["state"] for _, (_, d) in status],
                           [d["id"] for _, (_, d) in status], [parse_time(d["ts"], "ts") for _, (_, d) in status],
                           [d.get("version") for _, (_, d) in status], [m.received_ms for _, (m, _) in status]))
            dead = [m for m in batch if m.reason]
            if dead:
                c.execute("INSERT INTO hq_dead_letters (topic, store, payload, reason) SELECT * FROM "
                          "unnest(%s::text[], %s::text[], %s::bytea[], %s::text[])",
                          ([m.topic for m in dead], [m.store for m in dead], [m.payload for m in dead],
                           [m.reason for m in dead]))
                res.dead = len(dead)
            manifests = sorted(((m.parsed.store, int(m.parsed.manifest["seq"]), m.parsed.manifest,
                                 first_check_s(m.parsed.manifest, m.received_ms, self.grace))
                                for m in batch if m.parsed is not None and m.parsed.manifest is not None),
                               key=lambda x: (x[0], x[1]))
            if manifests:
                res.manifests = len(manifests)
                self._manifests(manifests)
        return res

    def _manifests(self, found: list[tuple[str, int, dict[str, Any], float]]) -> None:
        """Keep the batch's manifests (filling an ``absent`` placeholder), then add placeholders for
        the seqs missing below each one (a gap: lost manifests HQ will ask for)."""
        stores, seqs, delays = [f[0] for f in found], [f[1] for f in found], [f[3] for f in found]
        self.conn.execute(
            "INSERT INTO hq_manifests AS t (store, seq, id, window_start, window_s, ids, state, check_at) "
            "SELECT u.store, u.seq, u.id, u.ws, u.wsec, u.ids, 'pending', now() + make_interval(secs => u.delay) "
            "FROM unnest(%s::text[], %s::bigint[], %s::text[], %s::timestamptz[], %s::integer[], %s::jsonb[], "
            "%s::float8[]) AS u(store, seq, id, ws, wsec, ids, delay) ON CONFLICT (store, seq) DO UPDATE SET "
            "id = excluded.id, window_start = excluded.window_start, window_s = excluded.window_s, "
            "ids = excluded.ids, state = 'pending', check_at = excluded.check_at WHERE t.state = 'absent'",
            (stores, seqs, [f[2]["id"] for f in found], [parse_time(f[2]["window_start"], "window_start")
                                                         for f in found],
             [f[2]["window_s"] for f in found], [json.dumps(f[2]["ids"]) for f in found], delays))
        self.conn.execute(
            "INSERT INTO hq_manifests (store, seq, state, check_at) SELECT u.store, g, 'absent', "
            "now() + make_interval(secs => u.delay) FROM unnest(%s::text[], %s::bigint[], %s::float8[]) "
            "AS u(store, seq, delay) CROSS JOIN LATERAL (SELECT max(m.seq) AS prev FROM hq_manifests m "
            "WHERE m.store = u.store AND m.seq < u.seq) p CROSS JOIN LATERAL generate_series("
            "greatest(coalesce(p.prev, 0) + 1, u.seq - %s, 1), u.seq - 1) g ON CONFLICT DO NOTHING",
            (stores, seqs, delays, MAX_GAP))

    def repair(self, limit: int = 100) -> list[Resend]:
        with self._lock, self.conn.transaction():
            rows = self.conn.execute(
                "WITH due AS (SELECT store, seq, state, attempts FROM hq_manifests WHERE state NOT IN "
                "('complete', 'lost') AND check_at <= now() ORDER BY check_at LIMIT %s FOR UPDATE SKIP LOCKED) "
                "SELECT d.store, d.seq, d.state, d.attempts, m.key FROM due d LEFT JOIN LATERAL (SELECT e.key "
                "FROM hq_manifests f CROSS JOIN LATERAL jsonb_each_text(f.ids) e LEFT JOIN hq_messages h "
                "ON h.id = e.key WHERE f.store = d.store AND f.seq = d.seq AND d.state <> 'absent' "
                "AND (h.rev IS NULL OR h.rev < e.value::bigint)) m ON true", (limit,)).fetchall()
            checks, requests = plan_repair(rows, self.grace)
            if checks:
                self.conn.execute(
                    "UPDATE hq_manifests t SET state = u.state, attempts = t.attempts + u.asked, missing = u.missing, "
                    "check_at = coalesce(now() + make_interval(secs => u.delay), t.check_at) FROM unnest(%s::text[], "
                    "%s::bigint[], %s::text[], %s::integer[], %s::integer[], %s::float8[]) "
                    "AS u(store, seq, state, asked, missing, delay) WHERE t.store = u.store AND t.seq = u.seq",
                    ([k.store for k in checks], [k.seq for k in checks], [k.state for k in checks],
                     [k.asked for k in checks], [k.missing for k in checks], [k.delay_s for k in checks]))
        return requests

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
