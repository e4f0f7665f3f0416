"""Equipment telemetry: store readings idempotently, build window summaries, forward raw.

Payloads are parsed by ``gateway.spine.payload`` in the ingest process (no database);
``Telemetry.write_batch`` runs inside one writer transaction and updates the readings, the windows,
the rules and the outbox together.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.config import Config
from gateway.core.models import Reading, iso_ms, now_ms
from gateway.spine.alerts import AlertManager
from gateway.spine.rules import OfflineWatch, RuleEngine
from gateway.store.db import Connection
from gateway.store.outbox import Lane, enqueue
from gateway.store.writer import on_rollback

_LOGGER = logging.getLogger(__name__)

_INSERT_READING = ("INSERT OR IGNORE INTO readings (device_id, ts_ms, digest, received_ms, metrics) "
                   "VALUES (?, ?, ?, ?, ?)")

def _metrics_encoder() -> Callable[[Mapping[str, Any]], str]:
    """Return what ``outbox.dumps(metrics).decode()`` produces, for the hot path of every reading.

    ``JSONEncoder.encode`` builds a new C encoder on every call (about 40 % of its time for a small
    object); this builds the same C encoder once. Without the C accelerator: the plain encoder.
    """
    plain = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return plain
    encoder = make(None, None, json.encoder.encode_basestring, None, ":", ",", False, False, False)

    def encode(metrics: Mapping[str, Any]) -> str:
        return "".join(encoder(metrics if type(metrics) is dict else dict(metrics), 0))

    sample = {"t\u00e9\"\n": 1.5, "b": False, "n": 3.0}
    return encode if encode(sample) == plain(sample) else plain


_encode_metrics = _metrics_encoder()


@dataclass
class IngestStats:
    """Counters for health: committed, duplicates, invalid per (device, reason)."""

    committed: int = 0
    duplicates: int = 0
    dropped: int = 0

    def __post_init__(self) -> None:
        self.invalid: Counter[tuple[str, str]] = Counter()
        self._rate: deque[tuple[float, int]] = deque(maxlen=120)
        self._last_log: dict[str, float] = {}

    MAX_TRACKED = 500  # distinct device ids counted by name; a flood of made-up ids must not grow memory

    def note_invalid(self, device: str, reason: str) -> None:
        """Count a bad payload; log at most once per device per minute."""
        device = device[:64]
        if device not in self._last_log and len(self._last_log) >= self.MAX_TRACKED:
            device = "(other)"
        self.invalid[(device, reason)] += 1
        now = time.monotonic()
        if now - self._last_log.get(device, -1e9) >= 60:
            self._last_log[device] = now
            _LOGGER.warning("Invalid telemetry from %s: %s (further ones counted, logged once a minute)",
                            device[:64], reason)

    def sample(self) -> None:
        """Record the committed count now (the rate is computed over the samples)."""
        self._rate.append((time.monotonic(), self.committed))

    def rate(self) -> float:
        """Return committed readings per second over the recent samples."""
        self.sample()
        if len(self._rate) < 2:
            return 0.0
        (t0, c0), (t1, c1) = self._rate[0], self._rate[-1]
        while len(self._rate) > 2 and t1 - self._rate[0][0] > 30:
            self._rate.popleft()
            t0, c0 = self._rate[0]
        return round((c1 - c0) / (t1 - t0), 1) if t1 > t0 else 0.0

    def invalid_summary(self) -> dict[str, int]:
        """Return invalid counts per reason (device ids stay out of upstream messages)."""
        out: Counter[str] = Counter()
        for (_, reason), n in self.invalid.items():
            out[reason] += n
        return dict(out)


class Telemetry:
    """Readings, windows, summaries and raw forwarding; used only on the writer thread."""

    def __init__(self, cfg: Config, alerts: AlertManager) -> None:
        self.cfg = cfg
        self.store_id = cfg.store.id
        self.window_ms = int(cfg.telemetry.summary_window * 1000)
        self.grace_ms = int(cfg.telemetry.summary_grace * 1000)
        self.prefix = cfg.prefix
        self.alerts = alerts
        self.offline = OfflineWatch(cfg.alerts.device_offline_after, alerts)
        self.rules = RuleEngine(cfg.alerts.rules, alerts, no_data_after=cfg.alerts.no_data_after,
                                pending_resume=cfg.alerts.pending_resume, device_seen=self.offline.last_seen)
        self.stats = IngestStats()
        self._device_ids: dict[str, int] = {}
        self._metric_ids: dict[str, int] = {}
        self._forward: dict[str, bool] = {}
        self.retention_ms = int(cfg.telemetry.raw_retention * 1000)

    def load(self, conn: Connection) -> None:
        """Load id caches and give every known device a fresh grace period after a restart."""
        self._device_ids = dict(conn.execute("SELECT name, id FROM devices"))
        self._metric_ids = dict(conn.execute("SELECT name, id FROM metrics"))
        now = now_ms()
        for name in self._device_ids:
            self.offline.last_seen[name] = now
        self.rules.load(conn, now)

    def forwards_raw(self, device: str) -> bool:
        """Return whether every reading of this device also goes to HQ."""
        hit = self._forward.get(device)
        if hit is None:
            hit = self._forward[device] = any(
                fnmatch.fnmatchcase(device, g) for g in self.cfg.telemetry.forward_raw)
        return hit

    def _device_id(self, conn: Connection, name: str, ts: int) -> int:
        dev = self._device_ids.get(name)
        if dev is None:
            conn.execute("INSERT OR IGNORE INTO devices (name, first_seen_ms, last_seen_ms) VALUES (?, ?, ?)",
                         (name, ts, ts))
            dev = conn.execute("SELECT id FROM devices WHERE name = ?", (name,)).fetchone()[0]
            self._device_ids[name] = dev
            on_rollback(lambda: self._device_ids.pop(name, None))  # the row went with the rollback
        return dev

    def _metric_id(self, conn: Connection, name: str) -> int:
        mid = self._metric_ids.get(name)
        if mid is None:
            conn.execute("INSERT OR IGNORE INTO metrics (name) VALUES (?)", (name,))
            mid = conn.execute("SELECT id FROM metrics WHERE name = ?", (name,)).fetchone()[0]
            self._metric_ids[name] = mid
            on_rollback(lambda: self._metric_ids.pop(name, None))
        return mid

    def write_batch(self, conn: Connection, readings: list[Reading]) -> int:
        """Store readings (idempotently), update windows, rules, offline state and raw forwarding."""
        now = now_ms()
        new = 0
        raw_items: list[dict[str, Any]] = []
        oldest = now - self.retention_ms
        seen_devices: dict[str, int] = {}
        # Window updates of the batch, folded per window after the loop: one read and one write per
        # window instead of one upsert per reading and metric (see _write_windows).
        updates: dict[tuple[int, int, int], list[tuple[bool, float | bool, float, int]]] = {}
        rows: list[tuple[int, int, bytes, int, str]] = []
        fresh: list[tuple[Reading, int]] = []
        for r in readings:
            dev = self._device_id(conn, r.device, now)
            seen_devices[r.device] = dev
            if r.ts_ms < oldest:
                self.stats.note_invalid(r.device, "too_old")
                continue
            digest = bytes.fromhex(r.digest)
            if r.dup and self.seen_before(conn, dev, digest):
                self.stats.duplicates += 1
                continue
            rows.append((dev, r.ts_ms, digest, now, _encode_metrics(r.metrics)))
            fresh.append((r, dev))
        fresh = self._insert_readings(conn, rows, fresh)
        metric_ids, window_ms, evaluate = self._metric_ids, self.window_ms, self.rules.evaluate
        for r, dev in fresh:
            ts = r.ts_ms
            wstart = ts - ts % window_ms
            for metric, value in r.metrics.items():
                mid = metric_ids.get(metric)
                if mid is None:
                    mid = self._metric_id(conn, metric)
                key = (dev, mid, wstart)
                pending = updates.get(key)
                if pending is None:
                    pending = updates[key] = []
                pending.append((isinstance(value, bool), value, float(value), ts))
            evaluate(conn, r.device, r.metrics, ts)
            if self.forwards_raw(r.device):
                raw_items.append({"id": f"{self.store_id}:{r.device}:{r.ts_ms}:{r.digest}", "device": r.device,
                                  "ts": iso_ms(r.ts_ms), "metrics": dict(r.metrics)})
        new = len(fresh)
        self._write_windows(conn, updates)
        for name, dev in seen_devices.items():
            self.offline.seen(conn, name, now)
            conn.execute("UPDATE devices SET last_seen_ms = ? WHERE id = ?", (now, dev))
        step = max(1, self.cfg.uplink.batch)
        for i in range(0, len(raw_items), step):
            chunk = raw_items[i:i + step]
            enqueue(conn, Lane.BULK, f"{self.prefix}/telemetry/raw", chunk[0]["id"], "raw", chunk)
        self.stats.committed += new
        return new

    LATELY = 2000  # a device's latest readings searched for a redelivered one (> what can be in flight)

    def seen_before(self, conn: Connection, dev: int, digest: bytes) -> bool:
        """Return whether a redelivered (DUP) reading without its own ``ts`` is already stored.

        Such a reading is stamped on receipt, so its redelivery after a crash or a lost connection
        (stored, acknowledgement not yet sent) gets another stamp and would count twice. Its digest
        covers the payload and the MQTT packet id (``gateway.spine.ingest``); the broker redelivers with
        the original packet id and does not reuse an unacknowledged one, so the same digest among
        the device's latest readings is that very message.
        """
        return conn.execute(
            "SELECT 1 FROM (SELECT digest FROM readings WHERE device_id = ? ORDER BY ts_ms DESC LIMIT ?) "
            "WHERE digest = ?", (dev, self.LATELY, digest)).fetchone() is not None

    def _insert_readings(self, conn: Connection, rows: list[tuple[int, int, bytes, int, str]],
                         fresh: list[tuple[Reading, int]]) -> list[tuple[Reading, int]]:
        """Insert the rows (idempotently); return the readings that were new.

        One ``executemany`` for the batch; only when it stored fewer rows than given (a broker
        redelivering after a crash) is it rolled back and redone row by row to find the duplicates.
        """
        if not rows:
            return fresh
        conn.execute("SAVEPOINT readings")
        if conn.executemany(_INSERT_READING, rows).rowcount == len(rows):
            conn.execute("RELEASE readings")
            return fresh
        conn.execute("ROLLBACK TO readings")
        conn.execute("RELEASE readings")
        kept = []
        for row, item in zip(rows, fresh, strict=True):
            if conn.execute(_INSERT_READING, row).rowcount == 1:
                kept.append(item)
            else:
                self.stats.duplicates += 1
        return kept

    def _write_windows(self, conn: Connection,
                       updates: dict[tuple[int, int, int], list[tuple[bool, float | bool, float, int]]]) -> None:
        """Apply a batch's values to their windows, exactly as one upsert per value in order would.

        The fold repeats the upsert's arithmetic in the same order (count + 1, min/max as SQLite
        breaks ties, sum + value, last by timestamp with ``>=``), so the stored window, and the
        summary built from it, is bit-for-bit what the per-value statements produced.
        """
        window_s = self.window_ms // 1000
        for (dev, metric_id, wstart), values in updates.items():
            row = conn.execute(
                "SELECT count, true_count, min, max, sum, last, last_ts_ms FROM windows "
                "WHERE device_id = ? AND metric_id = ? AND wstart_ms = ?", (dev, metric_id, wstart)).fetchone()
            if row is None:
                is_bool, value, v, ts = values[0]
                count, true_count, vmin, vmax, vsum, last, last_ts = 1, int(is_bool and value), v, v, v, v, ts
                rest = values[1:]
            else:
                count, true_count, vmin, vmax, vsum, last, last_ts = row
                rest = values
            for is_bool, value, v, ts in rest:
                count += 1
                true_count += int(is_bool and value)
                if v <= vmin:  # SQLite's min(a, b) returns b on a tie, max(a, b) returns a
                    vmin = v
                if v > vmax:
                    vmax = v
                vsum = vsum + v
                if ts >= last_ts:
                    last = v
                    last_ts = ts
            if row is None:
                conn.execute(
                    "INSERT INTO windows (device_id, metric_id, wstart_ms, window_s, is_bool, count, true_count, "
                    "min, max, sum, last, last_ts_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (dev, metric_id, wstart, window_s, int(values[0][0]), count, true_count, vmin, vmax, vsum,
                     last, last_ts))
            else:
                conn.execute(
                    "UPDATE windows SET count = ?, true_count = ?, min = ?, max = ?, sum = ?, last = ?, "
                    "last_ts_ms = ?, dirty = 1 WHERE device_id = ? AND metric_id = ? AND wstart_ms = ?",
                    (count, true_count, vmin, vmax, vsum, last, last_ts, dev, metric_id, wstart))

    def status(self, conn: Connection, device: str, state: str) -> None:
        """Apply a ``devices/{id}/status`` message."""
        now = now_ms()
        self._device_id(conn, device, now)
        if state == "offline":
            self.offline.said_offline(conn, device, now)
        else:
            self.offline.seen(conn, device, now)

    def tick(self, conn: Connection) -> None:
        """Periodic: held rule breaches and silent devices."""
        now = now_ms()
        self.offline.tick(conn, now)
        self.rules.tick(conn, now)

    def flush_summaries(self, conn: Connection, *, now: int | None = None, force: bool = False) -> int:
        """Send every closed window (plus grace) that changed since it was last sent; return items sent."""
        now = now if now is not None else now_ms()
        cutoff = now - self.window_ms - self.grace_ms
        if force:
            cutoff = now + self.window_ms
        rows = conn.execute(
            "SELECT d.name, m.name, w.device_id, w.metric_id, w.wstart_ms, w.window_s, w.is_bool, w.count, "
            "w.true_count, w.min, w.max, w.sum, w.last, w.rev FROM windows w "
            "JOIN devices d ON d.id = w.device_id JOIN metrics m ON m.id = w.metric_id "
            "WHERE w.dirty = 1 AND w.wstart_ms <= ? ORDER BY w.wstart_ms", (cutoff,)).fetchall()
        if not rows:
            return 0
        ts = iso_ms(now)
        items = []
        for (device, metric, dev_id, metric_id, wstart, window_s, is_bool, count, true_count, vmin, vmax,
             vsum, last, rev) in rows:
            conn.execute("UPDATE windows SET rev = ?, dirty = 0 WHERE device_id = ? AND metric_id = ? "
                         "AND wstart_ms = ?", (rev + 1, dev_id, metric_id, wstart))
            item: dict[str, Any] = {
                "id": f"{self.store_id}:{device}:{metric}:{window_s}:{wstart}",
                "rev": rev + 1, "device": device, "metric": metric, "window_start": iso_ms(wstart),
                "window_s": window_s, "count": count, "ts": ts,
            }
            if is_bool:
                item.update(type="bool", true_count=true_count, min=None, max=None, mean=round(true_count / count, 4),
                            last=bool(last))
            else:
                item.update(type="number", min=vmin, max=vmax, mean=round(vsum / count, 6), last=last)
            items.append(item)
        step = max(1, self.cfg.uplink.batch)
        for i in range(0, len(items), step):
            chunk = items[i:i + step]
            enqueue(conn, Lane.SUMMARIES, f"{self.prefix}/telemetry/summary",
                    f"{chunk[0]['id']}:{chunk[0]['rev']}", "summary", chunk)
        return len(items)

    def coarsen(self, conn: Connection, rows: list[tuple[int, bytes]]) -> int:
        """Replace summary messages with hourly ones (outbox over budget); return messages replaced."""
        merged: dict[tuple[str, str, int], dict[str, Any]] = {}
        for seq, payload in rows:
            conn.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
            for item in json.loads(payload):
                start = dt.datetime.fromisoformat(item["window_start"].replace("Z", "+00:00"))
                hour = int(start.timestamp()) // 3600 * 3600 * 1000
                key = (item["device"], item["metric"], hour)
                m = merged.get(key)
                if m is None:
                    merged[key] = dict(item, id=f"{item['id']}:coarse", rev=1, window_start=iso_ms(hour),
                                       window_s=3600, coarsened=True, _sum=(item["mean"] or 0) * item["count"])
                    continue
                m["_sum"] += (item["mean"] or 0) * item["count"]
                m["count"] += item["count"]
                if item.get("true_count") is not None:
                    m["true_count"] = m.get("true_count", 0) + item["true_count"]
                if item["min"] is not None:
                    m["min"] = min(m["min"], item["min"])
                    m["max"] = max(m["max"], item["max"])
                m["last"] = item["last"]
        items = []
        for m in merged.values():
            m["mean"] = round(m.pop("_sum") / m["count"], 6) if m["count"] else None
            items.append(m)
        step = max(1, self.cfg.uplink.batch)
        for i in range(0, len(items), step):
            chunk = items[i:i + step]
            enqueue(conn, Lane.SUMMARIES, f"{self.prefix}/telemetry/summary", chunk[0]["id"], "summary-coarse",
                    chunk)
        return len(rows)

    def retention(self, conn: Connection) -> int:
        """Delete raw readings and sent windows older than the retention; return rows deleted."""
        cutoff = now_ms() - self.retention_ms
        deleted = 0
        for dev in list(self._device_ids.values()):
            deleted += conn.execute("DELETE FROM readings WHERE device_id = ? AND ts_ms < ?", (dev, cutoff)).rowcount
        deleted += conn.execute("DELETE FROM windows WHERE dirty = 0 AND wstart_ms < ?", (cutoff,)).rowcount
        return deleted
