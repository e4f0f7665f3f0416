"""Retention that really deletes (issue 10, item 7): apply the inventory's rules, scrub the file,
send HQ a signed deletion receipt.

One run:

1. For every executable rule of the inventory (``gateway/core/inventory.py``), in batches of
   ``batch`` rows, each batch one short write through the single writer (ingest and orders
   interleave between batches): rows past their rule are deleted, or their personal columns are
   blanked where the row is an aggregate that must stay. Due means ``clock < now - days``: a row
   exactly ``days`` old stays. Tables whose rule counts from another table's row (lines from their
   session) are done before that table.
2. The file is scrubbed: every connection runs with ``PRAGMA secure_delete = ON``
   (``gateway/store/db.py``: deleted cells and freed pages are overwritten with zeros), then a WAL
   checkpoint with TRUNCATE (the WAL still holds the old pages until then), then
   ``PRAGMA incremental_vacuum`` gives the free pages back (databases made before auto_vacuum was
   set are converted once by a VACUUM). docs/privacy.md has the measured costs.
3. A receipt is written to the outbox for ``P/privacy/receipt``: counts per category and per table
   of what this run deleted or blanked, what is held now and the oldest surviving record per
   category, the audit chain head, signed (Ed25519). It holds no personal data: categories, table
   names, counts and dates.

The signer and the audit head are parameters (tiny protocols below), so the keyring
(``Keyring.signer()``) and the audit chain (``audit.head``) replace the interim ones without a
change here.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from gateway.core.inventory import Column, Inventory, Retention, Table
from gateway.core.models import iso_ms
from gateway.store.db import Connection
from gateway.store.outbox import Lane, enqueue

_LOGGER = logging.getLogger(__name__)
T = TypeVar("T")

TOPIC_SUFFIX = "/privacy/receipt"
KIND = "privacy-receipt"
LAST_RUN_KEY = "privacy:last-run"
LAST_RECEIPT_KEY = "privacy:last-receipt"
BATCH = 500


class Signer(Protocol):
    """Signs receipts: ``gateway.privacy.keys.Keyring.signer()`` (branch keys) or the interim one."""

    key_id: str
    public_key_b64: str

    def sign(self, data: bytes) -> bytes:
        """Return the signature of ``data``."""
        ...


class AuditHead(Protocol):
    """Returns (length, head hash) of the audit chain: ``gateway.privacy.audit.head`` (branch audit)."""

    def __call__(self, conn: Connection) -> tuple[int, bytes]:
        """The chain's length and head."""
        ...


Write = Callable[[Callable[[Connection], Any]], Any]


@dataclass
class Step:
    """One rule on one table: which columns it blanks (or the row it deletes)."""

    table: Table
    rule: Retention
    columns: tuple[Column, ...]

    @property
    def action(self) -> str:
        """``delete`` or ``blank``."""
        return self.rule.action


@dataclass
class RunResult:
    """What a run did."""

    now_ms: int
    deleted: dict[str, int] = field(default_factory=dict)       # category -> values deleted or blanked
    rows: dict[str, int] = field(default_factory=dict)          # table -> rows deleted or changed
    batches: int = 0
    max_batch_s: float = 0.0
    scrub_s: float = 0.0
    receipt: dict[str, Any] | None = None


def plan(inventory: Inventory) -> list[Step]:
    """The steps of a run: blanks first, then deletes, each table after the tables whose rules read it."""
    steps: list[Step] = []
    for table in inventory:
        rules: dict[Retention, list[Column]] = {}
        for col in table.columns:
            if col.retention.executable:
                rules.setdefault(col.retention, []).append(col)
        for rule, cols in rules.items():
            steps.append(Step(table, rule, tuple(cols) if rule.action == "blank" else table.columns))
    blanks = [s for s in steps if s.action == "blank"]
    deletes = [s for s in steps if s.action == "delete"]
    ordered: list[Step] = []
    while deletes:  # a table goes once no remaining rule counts from it
        ready = [s for s in deletes if not any(_reads(o.rule, s.table.name) for o in deletes if o is not s
                                              and o.table.name != s.table.name)]
        if not ready:
            raise ValueError("retention rules read each other in a cycle: "
                             + ", ".join(s.table.name for s in deletes))
        ordered.extend(ready)
        deletes = [s for s in deletes if s not in ready]
    return blanks + ordered


def _reads(rule: Retention, table: str) -> bool:
    return re.search(rf"\b{re.escape(table)}\b", f"{rule.clock} {rule.where} {rule.due}") is not None


def _due(step: Step) -> str:
    cond = f"({step.rule.due})" if step.rule.due else f"({step.rule.clock}) < ?"
    if step.rule.where:
        cond += f" AND ({step.rule.where})"
    if step.action == "blank":
        cond += " AND (" + " OR ".join(f"{c.name} IS NOT ?" for c in step.columns) + ")"
    return cond


def _args(step: Step, cutoff: int) -> list[Any]:
    return [cutoff] + ([step.rule.blank] * len(step.columns) if step.action == "blank" else [])


def apply_batch(conn: Connection, step: Step, now_ms: int, limit: int = BATCH) -> tuple[int, dict[str, int]]:
    """Delete or blank up to ``limit`` due rows of one step; return (rows, values per category)."""
    t = step.table.name
    cutoff = step.rule.cutoff_ms(now_ms)
    rowids = [r[0] for r in conn.execute(f"SELECT rowid FROM {t} WHERE {_due(step)} LIMIT ?",  # noqa: S608
                                         (*_args(step, cutoff), limit))]
    if not rowids:
        return 0, {}
    marks = ",".join("?" * len(rowids))
    counted = [c for c in step.columns if c.personal]
    per_cat: dict[str, int] = {}
    if counted:
        sums = ", ".join(f"sum({c.name} IS NOT NULL AND {c.name} IS NOT ?)" for c in counted)
        blanks = [step.rule.blank if step.action == "blank" else "" for _ in counted]
        row = conn.execute(f"SELECT {sums} FROM {t} WHERE rowid IN ({marks})",  # noqa: S608
                           (*blanks, *rowids)).fetchone()
        for col, n in zip(counted, row, strict=True):
            if n:
                per_cat[col.category] = per_cat.get(col.category, 0) + int(n)
    if step.action == "delete":
        conn.execute(f"DELETE FROM {t} WHERE rowid IN ({marks})", rowids)  # noqa: S608
    else:
        sets = ", ".join(f"{c.name} = ?" for c in step.columns)
        conn.execute(f"UPDATE {t} SET {sets} WHERE rowid IN ({marks})",  # noqa: S608
                     (*[step.rule.blank] * len(step.columns), *rowids))
    return len(rowids), per_cat


def held(conn: Connection, inventory: Inventory) -> tuple[dict[str, int], dict[str, str | None]]:
    """Per personal category: values held now, and the oldest surviving record's time (ISO, UTC)."""
    counts: dict[str, int] = {}
    oldest: dict[str, int | None] = {}
    present = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    for table in inventory:
        if table.name not in present:
            continue
        for col in table.personal:
            cond = f"{col.name} IS NOT NULL AND {col.name} != ''"
            created = table.created or "NULL"
            n, first = conn.execute(f"SELECT count(*), min({created}) FROM {table.name} WHERE {cond}"  # noqa: S608
                                    ).fetchone()
            counts[col.category] = counts.get(col.category, 0) + int(n)
            prev = oldest.get(col.category)
            if first is not None and (prev is None or first < prev):
                oldest[col.category] = int(first)
            else:
                oldest.setdefault(col.category, prev)
    return counts, {k: (iso_ms(v) if v is not None else None) for k, v in sorted(oldest.items())}


def scrub(conn: Connection, *, busy_ms: int = 2000) -> dict[str, Any]:
    """Make deleted content unrecoverable from the files: checkpoint the WAL into the database and
    truncate it, then give free pages back. Outside any transaction (``Writer.run_exclusive``)."""
    t0 = time.monotonic()
    out: dict[str, Any] = {}
    if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
        # A database made before auto_vacuum was set: convert it once (a full VACUUM).
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute("VACUUM")
        out["converted"] = True
    out["freelist_before"] = conn.execute("PRAGMA freelist_count").fetchone()[0]
    conn.execute("PRAGMA incremental_vacuum").fetchall()
    out["freelist_after"] = conn.execute("PRAGMA freelist_count").fetchone()[0]
    saved = conn.execute("PRAGMA busy_timeout").fetchone()[0]
    conn.execute(f"PRAGMA busy_timeout = {int(busy_ms)}")
    try:
        busy, log, done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        conn.execute(f"PRAGMA busy_timeout = {int(saved)}")
    out.update(checkpoint_busy=bool(busy), wal_frames=log, checkpointed=done, seconds=round(time.monotonic() - t0, 3))
    return out


def canonical(doc: dict[str, Any]) -> bytes:
    """The bytes a receipt's signature covers: the receipt without ``sig``, sorted compact JSON."""
    body = {k: v for k, v in doc.items() if k != "sig"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def signature_ok(doc: dict[str, Any], public_key_b64: str | None = None) -> bool:
    """Whether a receipt's Ed25519 signature verifies (with its own ``public_key`` unless given)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64 or doc["public_key"]))
        key.verify(base64.b64decode(doc["sig"]), canonical(doc))
    except (InvalidSignature, KeyError, ValueError):
        return False
    return True


def receipt(result: RunResult, *, store: str, counts: dict[str, int], oldest: dict[str, str | None],
            audit: tuple[int, bytes], signer: Signer, scrubbed: dict[str, Any], next_run: str | None) -> dict[str, Any]:
    """Build and sign the deletion receipt of one run."""
    doc: dict[str, Any] = {
        "id": f"receipt:{uuid.uuid4().hex}",
        "ts": iso_ms(result.now_ms),
        "store": store,
        "deleted": dict(sorted(result.deleted.items())),
        "rows": dict(sorted(result.rows.items())),
        "held": dict(sorted(counts.items())),
        "oldest": oldest,
        "audit": {"length": audit[0], "head": base64.b64encode(audit[1]).decode()},
        "scrub": {"wal_truncated": not scrubbed.get("checkpoint_busy", True),
                  "free_pages": int(scrubbed.get("freelist_after", 0))},
        "next_run": next_run,
        "alg": "ed25519",
        "key_id": signer.key_id,
        "public_key": signer.public_key_b64,
    }
    doc["sig"] = base64.b64encode(signer.sign(canonical(doc))).decode()
    return doc


def run(write: Write, maintain: Write, inventory: Inventory, *, now_ms: int, prefix: str, store: str,
        signer: Signer, audit_head: AuditHead, next_run: str | None = None, batch: int = BATCH) -> RunResult:
    """One retention run (see the module's doc). ``write(fn)`` runs ``fn(conn)`` in one committed
    write (the writer: ``writer.call``); ``maintain(fn)`` outside any transaction
    (``writer.run_exclusive``)."""
    result = RunResult(now_ms)
    for step in plan(inventory):
        while True:
            t0 = time.monotonic()
            n, per_cat = write(lambda c, s=step: _guarded(c, s, now_ms, batch))
            result.max_batch_s = max(result.max_batch_s, time.monotonic() - t0)
            if not n:
                break
            result.batches += 1
            result.rows[step.table.name] = result.rows.get(step.table.name, 0) + n
            for cat, k in per_cat.items():
                result.deleted[cat] = result.deleted.get(cat, 0) + k
            if n < batch:
                break
    t0 = time.monotonic()
    scrubbed = maintain(scrub)
    result.scrub_s = time.monotonic() - t0

    def finish(conn: Connection) -> dict[str, Any]:
        counts, oldest = held(conn, inventory)
        doc = receipt(result, store=store, counts=counts, oldest=oldest, audit=audit_head(conn), signer=signer,
                      scrubbed=scrubbed, next_run=next_run)
        enqueue(conn, Lane.ORDERS, f"{prefix}{TOPIC_SUFFIX}", doc["id"], KIND, doc)
        _set_meta(conn, LAST_RECEIPT_KEY, json.dumps(doc, separators=(",", ":")))
        _set_meta(conn, LAST_RUN_KEY, str(now_ms))
        return doc

    result.receipt = write(finish)
    _LOGGER.info("Retention run: %d rows in %d batches (longest %.3f s), scrub %.3f s; deleted %s",
                 sum(result.rows.values()), result.batches, result.max_batch_s, result.scrub_s,
                 result.deleted or "none")
    return result


def _guarded(conn: Connection, step: Step, now_ms: int, batch: int) -> tuple[int, dict[str, int]]:
    present = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                           (step.table.name,)).fetchone()
    return apply_batch(conn, step, now_ms, batch) if present else (0, {})


def _set_meta(conn: Connection, key: str, value: str) -> None:
    conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                 (key, value))


def last_receipt(conn: Connection) -> dict[str, Any] | None:
    """The last receipt this database sent (None before the first run)."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (LAST_RECEIPT_KEY,)).fetchone()
    return json.loads(row[0]) if row else None


def last_run_ms(conn: Connection) -> int | None:
    """When the last run happened, by the database (None before the first)."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (LAST_RUN_KEY,)).fetchone()
    return int(row[0]) if row else None


# ------------------------------------------------------------------------ interim signer and head

class InterimSigner:
    """An Ed25519 key from a 32-byte seed, for a gateway built without the keyring (tests, benches):
    the daemon and the CLI sign with ``Keyring.signer()``."""

    def __init__(self, seed: bytes) -> None:
        import hashlib

        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        raw = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.public_key_b64 = base64.b64encode(raw).decode()
        self.key_id = "privacy-interim-" + hashlib.sha256(raw).hexdigest()[:16]

    def sign(self, data: bytes) -> bytes:
        """Ed25519 signature of ``data``."""
        return self._key.sign(data)
