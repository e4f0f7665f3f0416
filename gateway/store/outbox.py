"""Store-and-forward: upstream messages written in the same transaction as their cause.

Lanes drain in priority order (alerts & status > orders/sales > summaries > bulk), in order
within a lane. A row is deleted only when HQ acknowledged it (PUBACK). Over the disk budget the
outbox degrades in the order of docs/architecture.md ("Nothing lost", rule 5): raw first, then
summaries are coarsened (minute windows merged into hours), alerts are never dropped; each
degradation is reported.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from gateway.core import pii
from gateway.core.models import now_ms
from gateway.store.db import Connection

_LOGGER = logging.getLogger(__name__)


class Lane(IntEnum):
    """Outbox lanes; lower drains first."""

    ALERTS = 0
    ORDERS = 1
    SUMMARIES = 2
    BULK = 3


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One pending upstream message."""

    seq: int
    lane: int
    topic: str
    msg_id: str
    kind: str
    payload: bytes
    retain: bool


def dumps(obj: Any) -> bytes:
    """Serialise a message compactly, as UTF-8 JSON."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


# Set by enqueue on the writer thread that ran it; read after the commit (take_enqueued) to wake the
# uplink only when a transaction really added something. Thread-local: one flag per writer.
_pending = threading.local()


def take_enqueued() -> bool:
    """Return (and reset) whether this thread enqueued anything since the last call."""
    hit = getattr(_pending, "hit", False)
    _pending.hit = False
    return hit


# Called with (topic, payload) for every message enqueued; the test suite sets it to check each
# produced message against its JSON Schema in docs/schemas. None in production.
on_enqueue: Any = None


# The upstream filter every message passes before it is stored (so the outbox table and backups hold
# what HQ may receive): the spine's schema allowlist (``gateway.spine.upstream.install``); until it is
# installed, every string (keys too) passes the recognisers of ``gateway.core.pii``.
upstream_filter: Callable[[str, Any], Any] = lambda topic, payload: pii.redact_strings(payload)  # noqa: E731
upstream_id_filter: Callable[[str], str] = lambda msg_id: msg_id  # noqa: E731


def enqueue(conn: Connection, lane: Lane, topic: str, msg_id: str, kind: str, payload: Any,
            *, retain: bool = False) -> int:
    """Add one message to the outbox inside the caller's transaction; return its sequence.

    The payload passes ``upstream_filter`` first: what is stored is what HQ may receive.
    """
    payload = upstream_filter(topic, payload)
    msg_id = upstream_id_filter(msg_id)
    if on_enqueue is not None:
        on_enqueue(topic, payload)
    _pending.hit = True
    body = payload if isinstance(payload, bytes) else dumps(payload)
    cur = conn.execute(
        "INSERT INTO outbox (lane, topic, msg_id, kind, payload, size, retain, created_ms) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (int(lane), topic, msg_id, kind, body, len(body) + len(topic) + 64, int(retain), now_ms()))
    return int(cur.lastrowid)


def fetch(conn: Connection, limit: int, exclude: Iterable[int] = ()) -> list[OutboxRow]:
    """Return the next messages to send, by lane then sequence, skipping ones in flight."""
    skip = set(exclude)
    rows: list[OutboxRow] = []
    # Per lane, so a long bulk backlog never delays an alert.
    for lane in Lane:
        if len(rows) >= limit:
            break
        cur = conn.execute(
            "SELECT seq, lane, topic, msg_id, kind, payload, retain FROM outbox WHERE lane = ? "
            "ORDER BY seq LIMIT ?", (int(lane), limit + len(skip)))
        for r in cur:
            if r[0] in skip:
                continue
            rows.append(OutboxRow(r[0], r[1], r[2], r[3], r[4], bytes(r[5]), bool(r[6])))
            if len(rows) >= limit:
                break
    return rows


def delete(conn: Connection, seqs: Sequence[int]) -> int:
    """Delete acknowledged messages; return how many were removed."""
    total = 0
    for i in range(0, len(seqs), 500):
        chunk = list(seqs[i:i + 500])
        marks = ",".join("?" * len(chunk))
        total += conn.execute(f"DELETE FROM outbox WHERE seq IN ({marks})", chunk).rowcount  # noqa: S608
    return total


@dataclass(frozen=True)
class LaneDepth:
    """Depth and oldest age of one lane (for health)."""

    lane: str
    depth: int
    bytes: int
    oldest_age_s: float | None


def depths(conn: Connection) -> list[LaneDepth]:
    """Return depth, size and oldest age per lane."""
    now = now_ms()
    found = {row[0]: row for row in conn.execute(
        "SELECT lane, count(*), coalesce(sum(size), 0), min(created_ms) FROM outbox GROUP BY lane")}
    out = []
    for lane in Lane:
        row = found.get(int(lane))
        if row is None:
            out.append(LaneDepth(lane.name.lower(), 0, 0, None))
        else:
            out.append(LaneDepth(lane.name.lower(), row[1], row[2], round((now - row[3]) / 1000, 1)))
    return out


def total_bytes(conn: Connection) -> int:
    """Return the outbox's size in bytes (as counted against the budget)."""
    return int(conn.execute("SELECT coalesce(sum(size), 0) FROM outbox").fetchone()[0])


@dataclass
class Degradation:
    """What enforcing the budget did."""

    dropped_raw: int = 0
    coarsened_summaries: int = 0
    over_budget_after: bool = False

    @property
    def changed(self) -> bool:
        """Whether anything was dropped or coarsened."""
        return bool(self.dropped_raw or self.coarsened_summaries)


def enforce_budget(conn: Connection, budget: int, coarsen: Any = None) -> Degradation:
    """Bring the outbox under its byte budget: drop bulk oldest first, then coarsen summaries.

    ``coarsen(conn, rows)`` re-expresses deleted summary messages as hourly ones (it lives in
    telemetry, which knows the windows); alerts and orders are never touched.
    """
    result = Degradation()
    size = total_bytes(conn)
    if size <= budget:
        return result
    # 1. raw readings (bulk lane), oldest first
    while size > budget:
        rows = conn.execute("SELECT seq, size FROM outbox WHERE lane = ? ORDER BY seq LIMIT 500",
                            (int(Lane.BULK),)).fetchall()
        if not rows:
            break
        cut = []
        for seq, sz in rows:
            cut.append(seq)
            size -= sz
            if size <= budget:
                break
        result.dropped_raw += delete(conn, cut)
    # 2. summaries: the oldest half of the summary lane becomes hourly summaries
    if size > budget and coarsen is not None:
        rows = conn.execute("SELECT seq, payload FROM outbox WHERE lane = ? AND kind = 'summary' "
                            "ORDER BY seq LIMIT (SELECT count(*) / 2 + 1 FROM outbox WHERE lane = ? "
                            "AND kind = 'summary')", (int(Lane.SUMMARIES), int(Lane.SUMMARIES))).fetchall()
        if rows:
            result.coarsened_summaries = coarsen(conn, rows)
            size = total_bytes(conn)
    result.over_budget_after = size > budget
    if result.changed:
        _LOGGER.warning("Outbox over its budget: dropped %d raw messages, coarsened %d summary messages",
                        result.dropped_raw, result.coarsened_summaries)
    return result


# -- gap repair: what HQ's broker acknowledged, the manifest of it, and re-sends (docs/hq-topics.md)

def _items(payload: bytes) -> list[tuple[str, int]]:
    """The (id, rev) of each item of a message (an object, or an array of objects)."""
    try:
        doc = json.loads(payload)
    except ValueError:
        return []
    items = doc if isinstance(doc, list) else [doc]
    return [(i["id"], i["rev"] if isinstance(i.get("rev"), int) else 0)
            for i in items if isinstance(i, dict) and isinstance(i.get("id"), str)]


def acknowledged(conn: Connection, seqs: Sequence[int], *, keep: bool, now: int | None = None) -> int:
    """HQ's broker acknowledged these messages: delete them from the outbox and, when ``keep``, keep
    them (and the ids and revs of their items) in ``outbox_sent`` for the manifest and re-sends."""
    if keep:
        acked = now_ms() if now is None else now
        for i in range(0, len(seqs), 500):
            chunk = list(seqs[i:i + 500])
            marks = ",".join("?" * len(chunk))
            rows = conn.execute("SELECT seq, lane, topic, msg_id, kind, payload, retain FROM outbox "  # noqa: S608
                                f"WHERE seq IN ({marks})", chunk).fetchall()
            conn.executemany("INSERT OR REPLACE INTO outbox_sent (seq, lane, topic, msg_id, kind, payload, retain, "
                             "acked_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [(*r, acked) for r in rows])
            conn.executemany("INSERT OR REPLACE INTO outbox_sent_items (item_id, rev, seq) VALUES (?, ?, ?)",
                             [(item, rev, r[0]) for r in rows for item, rev in _items(bytes(r[5]))])
    return delete(conn, seqs)


def sent_items(conn: Connection, since_ms: int, until_ms: int) -> dict[str, int]:
    """Item id → highest rev of what HQ's broker acknowledged in (since_ms, until_ms], manifests excluded."""
    return dict(conn.execute(
        "SELECT i.item_id, max(i.rev) FROM outbox_sent s JOIN outbox_sent_items i ON i.seq = s.seq "
        "WHERE s.acked_ms > ? AND s.acked_ms <= ? AND s.kind <> 'manifest' GROUP BY i.item_id",
        (since_ms, until_ms)).fetchall())


def resend(conn: Connection, item_ids: Sequence[str], msg_ids: Sequence[str] = ()) -> int:
    """Put back in the outbox the acknowledged messages holding these item ids (the one with each
    item's highest rev) or with these message ids; skip what is already waiting. Return how many."""
    seqs: dict[str, int] = {}
    best: dict[str, tuple[int, int]] = {}
    for i in range(0, len(item_ids), 500):
        chunk = list(item_ids[i:i + 500])
        marks = ",".join("?" * len(chunk))
        for item, rev, seq in conn.execute(
                f"SELECT item_id, rev, seq FROM outbox_sent_items WHERE item_id IN ({marks})", chunk):  # noqa: S608
            if (rev, seq) > best.get(item, (-1, -1)):
                best[item] = (rev, seq)
    for rev_seq in best.values():
        seqs[str(rev_seq[1])] = rev_seq[1]
    for i in range(0, len(msg_ids), 500):
        chunk = list(msg_ids[i:i + 500])
        marks = ",".join("?" * len(chunk))
        for (seq,) in conn.execute(f"SELECT max(seq) FROM outbox_sent WHERE msg_id IN ({marks}) "  # noqa: S608
                                   "GROUP BY msg_id", chunk):
            seqs[str(seq)] = seq
    n = 0
    now = now_ms()
    for seq in sorted(seqs.values()):
        n += conn.execute(
            "INSERT INTO outbox (lane, topic, msg_id, kind, payload, size, retain, created_ms) "
            "SELECT s.lane, s.topic, s.msg_id, s.kind, s.payload, length(s.payload) + length(s.topic) + 64, "
            "s.retain, ? "
            "FROM outbox_sent s WHERE s.seq = ? AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.msg_id = s.msg_id "
            "AND o.payload = s.payload)", (now, seq)).rowcount
    if n:
        _pending.hit = True
    return n


def purge_sent(conn: Connection, before_ms: int) -> int:
    """Forget acknowledged messages older than ``before_ms`` (``uplink.resend_keep``)."""
    conn.execute("DELETE FROM outbox_sent_items WHERE seq IN (SELECT seq FROM outbox_sent WHERE acked_ms < ?)",
                 (before_ms,))
    return conn.execute("DELETE FROM outbox_sent WHERE acked_ms < ?", (before_ms,)).rowcount
