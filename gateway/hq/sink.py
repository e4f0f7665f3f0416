"""Where HQ keeps what stores send: one interface, PostgreSQL (``gateway.hq.pgsink``) or embedded SQLite.

``Sink.write`` takes one batch (everything a consumer read since its last commit) and writes it in
ONE transaction: a row per message ``id`` updated only when the incoming ``rev`` is higher (so
duplicates, replays and late older revisions are no-ops whatever the order), the stores' state,
the manifests for gap repair and the dead letters. The consumer acknowledges the batch to the broker
only after ``write`` returned. ``Sink.repair`` compares due manifests with what is stored and says
what to ask each store to re-send. The read side (``stores``, ``active_alerts``, ...) serves the
fleet page and ``/metrics``.

``gateway.hq.databases.open_sink`` opens either backend from a URL.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from gateway.hq.contract import Parsed, Row, parse_time

GRACE_S = 10.0  # a manifest is first checked this long after it arrived (other consumers' batches)
MAX_RECHECK_S = 300.0
MAX_LATE_S = 600.0  # a manifest that arrived this late (or later) waits this much more before its first check
MAX_GAP = 48  # manifests missing between two received ones that HQ asks for again, at most
MAX_ASKS = 20  # a missing manifest asked for this often is given up on (state 'lost': the store no longer has it)


@dataclass(slots=True)
class Incoming:
    """One message as read from the broker, parsed (or not)."""

    topic: str
    payload: bytes
    received_ms: int
    store: str | None = None  # from the topic, when it has one
    parsed: Parsed | None = None
    reason: str = ""  # set: it goes to the dead letters


@dataclass(slots=True)
class WriteResult:
    """What one batch did."""

    rows: int = 0  # items in the batch
    written: int = 0  # inserted or raised to a higher rev
    absorbed: int = 0  # duplicates or older revisions: no change
    dead: int = 0
    manifests: int = 0


@dataclass(slots=True)
class Resend:
    """What to ask one store to publish again (``P/cmd/resend``)."""

    store: str
    ids: list[str] = field(default_factory=list)
    manifests: list[int] = field(default_factory=list)


def iso(dt: datetime) -> str:
    """Format an aware datetime as the contract's ISO-8601 UTC with milliseconds."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def newest(rows: Iterable[Row]) -> tuple[list[Row], int]:
    """Keep the highest rev of each id (one statement cannot touch a row twice); return them sorted by
    id (every consumer locks rows in the same order: no deadlock) and how many were dropped."""
    best: dict[str, Row] = {}
    dropped = 0
    for row in rows:
        have = best.get(row.id)
        if have is None:
            best[row.id] = row
            continue
        dropped += 1
        if row.rev > have.rev:
            best[row.id] = row
    return [best[k] for k in sorted(best)], dropped


def summary_fields(row: Row) -> tuple[datetime, str | None, str | None, int | None, int | None,
                                      float | None, float | None, float | None]:
    """The columns of a telemetry summary item (``window_start`` parsed; numbers or None)."""
    p = row.payload

    def num(key: str) -> float | None:
        v = p.get(key)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    return (parse_time(p.get("window_start"), "window_start"), p.get("device"), p.get("metric"),
            p.get("window_s"), p.get("count"), num("min"), num("max"), num("mean"))


def status_updates(batch: list[Incoming]) -> dict[str, tuple[Incoming, dict[str, Any]]]:
    """The last status read per store in this batch."""
    out: dict[str, tuple[Incoming, dict[str, Any]]] = {}
    for msg in batch:
        if msg.parsed is not None and msg.parsed.status is not None:
            have = out.get(msg.parsed.store)
            if have is None or msg.received_ms >= have[0].received_ms:
                out[msg.parsed.store] = (msg, msg.parsed.status)
    return out


def activity(batch: list[Incoming]) -> dict[str, tuple[int, int]]:
    """Per store: messages in the batch and the lag (read time minus the newest ts) in ms."""
    out: dict[str, tuple[int, int]] = {}
    for msg in batch:
        p = msg.parsed
        if p is None or p.ignored:
            continue
        lag = 0
        if p.rows:
            newest_ts = max(r.ts for r in p.rows)
            lag = max(0, msg.received_ms - int(newest_ts.timestamp() * 1000))
        n, worst = out.get(p.store, (0, 0))
        out[p.store] = (n + 1, max(worst, lag))
    return out


@dataclass(slots=True)
class ManifestCheck:
    """What one due manifest's check decided."""

    store: str
    seq: int
    state: str  # complete | requested | absent | lost
    asked: int  # 1 when HQ asks the store again this time
    missing: int
    delay_s: float | None  # when to check again; None: never


def plan_repair(rows: Iterable[tuple[str, int, str, int, str | None]], grace: float
                ) -> tuple[list[ManifestCheck], list[Resend]]:
    """Decide, from (store, seq, state, attempts, a missing id or None) rows of the due manifests (one
    row per missing id, or one row with None), what becomes of each and what to ask each store for."""
    missing: dict[tuple[str, int], tuple[str, int, list[str]]] = {}
    for store, seq, state, attempts, msg_id in rows:
        entry = missing.setdefault((store, seq), (state, attempts, []))
        if msg_id is not None:
            entry[2].append(msg_id)
    checks, found = [], []
    for (store, seq), (state, attempts, ids) in missing.items():
        if state == "absent" and attempts >= MAX_ASKS:
            checks.append(ManifestCheck(store, seq, "lost", 0, 1, None))
        elif state == "absent":
            found.append((store, None, seq))
            checks.append(ManifestCheck(store, seq, "absent", 1, 1, next_check_s(attempts, grace)))
        elif ids:
            found.extend((store, i, None) for i in ids)
            checks.append(ManifestCheck(store, seq, "requested", 1, len(ids), next_check_s(attempts, grace)))
        else:
            checks.append(ManifestCheck(store, seq, "complete", 0, 0, None))
    return checks, resend_requests(found)


def resend_requests(found: Iterable[tuple[str, str | None, int | None]]) -> list[Resend]:
    """Group (store, missing id, missing manifest seq) into one request per store."""
    by_store: dict[str, Resend] = {}
    for store, msg_id, seq in found:
        req = by_store.setdefault(store, Resend(store))
        if msg_id is not None:
            req.ids.append(msg_id)
        if seq is not None:
            req.manifests.append(seq)
    return list(by_store.values())


def first_check_s(doc: dict[str, Any], received_ms: int, grace: float) -> float:
    """Seconds until a manifest is first compared with the database: ``grace`` plus however late the
    manifest itself arrived (its ``ts`` is when the store wrote it). Messages of its window reached
    the broker before it; when the consumers run behind, they are still queued, not lost, and asking
    for them again would only add to the queue."""
    try:
        late = (received_ms - parse_time(doc.get("ts"), "ts").timestamp() * 1000) / 1000
    except ValueError:
        late = 0.0
    return grace + min(MAX_LATE_S, max(0.0, late))


def next_check_s(attempts: int, grace: float) -> float:
    """Seconds until a manifest with missing messages is checked again (doubling, capped)."""
    return min(MAX_RECHECK_S, grace * 2 ** min(attempts, 10))


def migrations(backend: str) -> list[tuple[int, str, str]]:
    """Return (version, file name, SQL) of the shipped migrations of a backend, in order."""
    base = resources.files("gateway.hq.migrations") / backend
    out = []
    for entry in sorted(base.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".sql"):
            out.append((int(entry.name.split("_", 1)[0]), entry.name, entry.read_text(encoding="utf-8")))
    return out


class Sink:
    """The interface both backends implement."""

    backend = ""
    grace = GRACE_S

    def write(self, batch: list[Incoming]) -> WriteResult:  # pragma: no cover - interface
        raise NotImplementedError

    def repair(self, limit: int = 100) -> list[Resend]:  # pragma: no cover - interface
        raise NotImplementedError

    def record_stats(self, consumer: str, stats: dict[str, Any]) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def query(self, name: str) -> list[dict[str, Any]]:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def transient(self, err: Exception) -> bool:
        """Whether ``err`` means "the database is unavailable, retry the batch" (not "this data is refused")."""
        return False


# The fleet page's queries: the same in both dialects, then SQLite's own (gateway.hq.pgsink has
# PostgreSQL's).
COMMON_QUERIES = {
    "stores": "SELECT s.store, s.state, s.changed_at, s.last_seen, s.lag_ms, s.messages, s.version, "
              "coalesce((SELECT sum(m.missing) FROM hq_manifests m WHERE m.store = s.store "
              "AND m.state NOT IN ('complete', 'lost')), 0) AS missing FROM hq_stores s ORDER BY s.store",
    "dead_letters": "SELECT seq, received_at, topic, store, reason FROM hq_dead_letters ORDER BY seq DESC LIMIT 50",
    "counts": "SELECT (SELECT count(*) FROM hq_messages) AS messages, "
              "(SELECT count(*) FROM hq_dead_letters) AS dead_letters, "
              "(SELECT count(*) FROM hq_manifests WHERE state NOT IN ('complete', 'lost')) AS manifests_open, "
              "(SELECT coalesce(sum(missing), 0) FROM hq_manifests WHERE state NOT IN ('complete', 'lost')) AS missing",
    "consumers": "SELECT consumer, updated_at, stats FROM hq_consumers ORDER BY consumer",
}
SQLITE_QUERIES = {
    **COMMON_QUERIES,
    "alerts": "SELECT a.store, a.ts, json_extract(a.payload, '$.severity') AS severity, "
              "json_extract(a.payload, '$.rule') AS rule, json_extract(a.payload, '$.device') AS device, "
              "json_extract(a.payload, '$.value') AS value FROM hq_messages a WHERE a.kind = 'alerts' "
              "AND json_extract(a.payload, '$.state') = 'raised' AND NOT EXISTS (SELECT 1 FROM hq_messages c "
              "WHERE c.id = json_extract(a.payload, '$.episode') || ':cleared') ORDER BY a.ts DESC LIMIT 500",
    "latest": "SELECT m.store, m.kind, m.ts, m.payload FROM hq_messages m JOIN (SELECT store, kind, max(ts) AS ts "
              "FROM hq_messages WHERE kind LIKE '%summary' OR kind LIKE 'reports/%' GROUP BY store, kind) l "
              "ON l.store = m.store AND l.kind = m.kind AND l.ts = m.ts ORDER BY m.store, m.kind",
}


class SqliteSink(Sink):
    """The embedded backend (demo, tests): one sqlite3 database file, same tables and rules."""

    backend = "sqlite"

    def __init__(self, path: str, *, grace: float = GRACE_S) -> None:
        self.path = path
        self.grace = grace
        self._lock = threading.Lock()
        self.conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.migrate()

    def migrate(self) -> None:
        """Apply the shipped SQLite migrations not applied yet."""
        with self._lock:
            self.conn.execute("CREATE TABLE IF NOT EXISTS hq_schema (version INTEGER PRIMARY KEY, name TEXT, "
                              "applied_at TEXT)")
            done = {r[0] for r in self.conn.execute("SELECT version FROM hq_schema")}
            for version, name, sql in migrations("sqlite"):
                if version in done:
                    continue
                self.conn.execute("BEGIN IMMEDIATE")
                try:
                    for stmt in sql.split(";"):
                        if stmt.strip():
                            self.conn.execute(stmt)
                    self.conn.execute("INSERT INTO hq_schema VALUES (?, ?, ?)", (version, name, iso(_now())))
                    self.conn.execute("COMMIT")
                except BaseException:
                    self.conn.execute("ROLLBACK")
                    raise

    def write(self, batch: list[Incoming]) -> WriteResult:
        res = WriteResult()
        rows, res.absorbed = newest(r for m in batch if m.parsed for r in m.parsed.rows)
        res.rows = len(rows) + res.absorbed
        now = iso(_now())
        with self._lock:
            c = self.conn
            c.execute("BEGIN IMMEDIATE")
            try:
                for r in rows:
                    payload = json.dumps(r.payload, separators=(",", ":"), ensure_ascii=False)
                    hit = c.execute(
                        "INSERT INTO hq_messages AS t (id, store, kind, rev, ts, payload, received_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET rev = excluded.rev, "
                        "ts = excluded.ts, payload = excluded.payload, received_at = excluded.received_at, "
                        "revisions = t.revisions + 1 WHERE excluded.rev > t.rev RETURNING id",
                        (r.id, r.store, r.kind, r.rev, iso(r.ts), payload, now)).fetchone()
                    if hit is None:
                        res.absorbed += 1
                        continue
                    res.written += 1
                    if r.kind == "telemetry/summary":
                        ws, device, metric, window_s, count, lo, hi, mean = summary_fields(r)
                        c.execute(
                            "INSERT INTO hq_telemetry_summary AS t VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                            "ON CONFLICT (window_start, id) DO UPDATE SET rev = excluded.rev, count = excluded.count, "
                            "min = excluded.min, max = excluded.max, mean = excluded.mean, payload = excluded.payload "
                            "WHERE excluded.rev > t.rev",
                            (iso(ws), r.id, r.store, device, metric, window_s, r.rev, count, lo, hi, mean, payload))
                for store, (n, lag) in sorted(activity(batch).items()):
                    c.execute("INSERT INTO hq_stores AS t (store, last_seen, lag_ms, messages) VALUES (?, ?, ?, ?) "
                              "ON CONFLICT (store) DO UPDATE SET last_seen = excluded.last_seen, "
                              "lag_ms = excluded.lag_ms, messages = t.messages + excluded.messages",
                              (store, now, lag, n))
                for store, (msg, doc) in sorted(status_updates(batch).items()):
                    c.execute("UPDATE hq_stores SET changed_at = CASE WHEN state IS ? THEN changed_at ELSE ? END, "
                              "state = ?, status_id = ?, status_ts = ?, version = ?, received_ms = ? "
                              "WHERE store = ? AND (received_ms IS NULL OR received_ms <= ?)",
                              (doc["state"], now, doc["state"], doc["id"], doc["ts"], doc.get("version"),
                               msg.received_ms, store, msg.received_ms))
                for msg in batch:
                    if msg.parsed is not None and msg.parsed.manifest is not None:
                        res.manifests += 1
                        self._manifest(msg.parsed.store, msg.parsed.manifest, msg.received_ms)
                    elif msg.reason:
                        res.dead += 1
                        c.execute("INSERT INTO hq_dead_letters (received_at, topic, store, payload, reason) "
                                  "VALUES (?, ?, ?, ?, ?)", (now, msg.topic, msg.store, msg.payload, msg.reason))
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
        return res

    def _manifest(self, store: str, doc: dict[str, Any], received_ms: int) -> None:
        c, seq = self.conn, int(doc["seq"])
        check_at = time.time() + first_check_s(doc, received_ms, self.grace)
        c.execute("INSERT INTO hq_manifests AS t (store, seq, id, window_start, window_s, ids, state, received_at, "
                  "check_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?) ON CONFLICT (store, seq) DO UPDATE SET "
                  "id = excluded.id, window_start = excluded.window_start, window_s = excluded.window_s, "
                  "ids = excluded.ids, state = 'pending', check_at = excluded.check_at WHERE t.state = 'absent'",
                  (store, seq, doc["id"], doc["window_start"], doc["window_s"], json.dumps(doc["ids"]),
                   iso(_now()), check_at))
        prev = c.execute("SELECT max(seq) FROM hq_manifests WHERE store = ? AND seq < ?", (store, seq)).fetchone()[0]
        if prev is None or prev + 1 < seq:  # seqs start at 1: the first ones seen may follow lost ones
            for gap in range(max((prev or 0) + 1, seq - MAX_GAP, 1), seq):
                c.execute("INSERT INTO hq_manifests (store, seq, state, received_at, check_at) "
                          "VALUES (?, ?, 'absent', ?, ?) ON CONFLICT DO NOTHING", (store, gap, iso(_now()), check_at))

    def repair(self, limit: int = 100) -> list[Resend]:
        now = time.time()
        with self._lock:
            c = self.conn
            c.execute("BEGIN IMMEDIATE")
            try:
                rows = c.execute(
                    "SELECT d.store, d.seq, d.state, d.attempts, m.key FROM (SELECT store, seq, state, attempts, "
                    "check_at FROM hq_manifests WHERE state NOT IN ('complete', 'lost') AND check_at <= ? "
                    "ORDER BY check_at LIMIT ?) d LEFT JOIN (SELECT f.store, f.seq, e.key FROM hq_manifests f, "
                    "json_each(f.ids) e LEFT JOIN hq_messages h ON h.id = e.key WHERE f.state NOT IN "
                    "('complete', 'lost', 'absent') AND f.check_at <= ? AND (h.rev IS NULL OR h.rev < e.value)) m "
                    "ON m.store = d.store AND m.seq = d.seq", (now, limit, now)).fetchall()
                checks, requests = plan_repair(rows, self.grace)
                c.executemany("UPDATE hq_manifests SET state = ?, attempts = attempts + ?, missing = ?, "
                              "check_at = coalesce(?, check_at) WHERE store = ? AND seq = ?",
                              [(k.state, k.asked, k.missing, None if k.delay_s is None else now + k.delay_s,
                                k.store, k.seq) for k in checks])
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
        return requests

    def record_stats(self, consumer: str, stats: dict[str, Any]) -> None:
        with self._lock:
            self.conn.execute("INSERT INTO hq_consumers VALUES (?, ?, ?) ON CONFLICT (consumer) DO UPDATE SET "
                              "updated_at = excluded.updated_at, stats = excluded.stats",
                              (consumer, iso(_now()), json.dumps(stats)))

    def query(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            cur = self.conn.execute(SQLITE_QUERIES[name])
            cols = [d[0] for d in cur.description]
            out = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
        for row in out:
            for key in ("payload", "stats"):
                if isinstance(row.get(key), str):
                    row[key] = json.loads(row[key])
        return out

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    def transient(self, err: Exception) -> bool:
        return isinstance(err, sqlite3.OperationalError) and ("locked" in str(err) or "busy" in str(err))


def _now() -> datetime:
    return datetime.now(UTC)
