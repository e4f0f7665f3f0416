"""The audit chain: an append-only, hash-chained log of who did what to which subject, and why.

Every entry commits to the one before it (RFC 6962-style domain separation)::

    leaf(i) = SHA-256(0x00 || canonical(entry i))
    hash(i) = SHA-256(0x01 || hash(i-1) || leaf(i))        hash(0) = 32 zero bytes

``canonical`` is compact JSON of ``[1, seq, ts_ms, who, action, subject, why, detail]``. An entry
names its subject by reference (``table:A1``, ``staff:7``, ``guest:p:<keyed pseudonym>``), never
by value, and its reason is cleaned and redacted, so the chain holds no personal data and the
retention work never has to rewrite it.

``append(conn, ...)`` runs inside the caller's write (through the writer), so an audited action
and its entry commit together or not at all. Triggers refuse UPDATE and DELETE
(gateway/privacy/schema.py).

A signed **checkpoint** (``{"id", "ts", "length", "head", "key_id", "sig"}``, Ed25519 over a
C2SP tlog-checkpoint-like note naming the store's origin ``P/audit``, the length and the head) goes
to HQ on ``P/audit/checkpoint`` from a periodic job and whenever ``checkpoint_entries`` entries
were appended since the last one; each is also kept locally. ``verify`` walks the chain and
compares it with the checkpoints, local and HQ's: an edited, deleted, reordered or truncated entry
is named; a chain recomputed by someone holding the keys is caught against a checkpoint HQ holds.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.core import pii
from gateway.core.models import iso_ms, now_ms
from gateway.store import ensure_secret
from gateway.store.db import Connection
from gateway.store.outbox import Lane, enqueue

ZERO = bytes(32)
VERSION = 1
TOPIC_SUFFIX = "/audit/checkpoint"
CHECKPOINT_KIND = "audit-checkpoint"
DEFAULT_EVERY_ENTRIES = 500
IDLE_CHECKPOINT_S = 3600  # an unchanged chain is re-anchored hourly, so HQ can tell a silent store

_ACTION_RE = re.compile(r"[a-z][a-z0-9_.-]{0,39}")
_WHO_RE = re.compile(r"system|cli|staff:(?:\d{1,12}(?:/[a-z]{1,16})?|p:[0-9a-f]{16})")
_SUBJECT_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}:[A-Za-z0-9_.:/+=-]{1,96}")
_MAX_WHY = 200
_MAX_DETAIL = 1024


# ---------------------------------------------------------------------------------------- text


def redact(text: str) -> str:
    """Mask ID numbers, mobile numbers and MRZ lines (``110105********002X``, ``138****5678``,
    ``<MRZ>``) and card numbers (``****4242``) with the shared recognisers (``gateway.core.pii``),
    as every other tripwire does; each hit is counted in health (``privacy.redacted``)."""
    return pii.redact(text)[0]


def clean_reason(text: str, limit: int = _MAX_WHY) -> str:
    """A reason as the chain keeps it: no control or format characters, one line, redacted, capped.

    NFKC first, so full-width digits are ASCII digits before the recognisers look; the cap comes after
    the masks, so a number is never cut in half before it is recognised.
    """
    text = unicodedata.normalize("NFKC", str(text))
    text = "".join(" " if unicodedata.category(ch)[0] in "CZ" else ch for ch in text)
    return redact(" ".join(text.split()))[:limit]


def valid_subject(subject: str) -> bool:
    """Whether ``subject`` is a reference the chain accepts (``KIND:REF``)."""
    return bool(_SUBJECT_RE.fullmatch(subject))


def valid_action(action: str) -> bool:
    """Whether ``action`` is a name the chain accepts."""
    return bool(_ACTION_RE.fullmatch(action))


def pseudonym(conn: Connection, kind: str, value: str) -> str:
    """A keyed pseudonym for a person (``KIND:p:<16 hex>``): the same person gives the same reference,
    and the reference cannot be turned back into the value without the store's secret."""
    secret = ensure_secret(conn, "secret:audit-pseudonym")
    mac = hmac.new(secret, f"{kind}\x00{value}".encode(), hashlib.sha256).hexdigest()[:16]
    return f"{kind}:p:{mac}"


def _detail_text(detail: Mapping[str, Any] | None) -> str:
    if not detail:
        return "{}"
    clean: dict[str, Any] = {}
    for key, value in detail.items():
        if not isinstance(key, str) or not _ACTION_RE.fullmatch(key):
            raise ValueError(f"audit detail key {key!r}: expected a short lower-case name")
        if isinstance(value, str):
            value = clean_reason(value, 120)
        elif value is not None and not isinstance(value, bool | int | float):
            raise ValueError(f"audit detail {key!r}: only strings, numbers, booleans and null")
        clean[key] = value
    text = json.dumps(clean, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    if len(text) > _MAX_DETAIL:
        raise ValueError(f"audit detail is {len(text)} characters; at most {_MAX_DETAIL}")
    return text


# ---------------------------------------------------------------------------------------- hashing


def leaf_hash(seq: int, ts_ms: int, who: str, action: str, subject: str, why: str, detail: str) -> bytes:
    """SHA-256(0x00 || canonical entry)."""
    canonical = json.dumps([VERSION, seq, ts_ms, who, action, subject, why, detail],
                           separators=(",", ":"), ensure_ascii=False).encode()
    return hashlib.sha256(b"\x00" + canonical).digest()


def chain_hash(prev: bytes, leaf: bytes) -> bytes:
    """SHA-256(0x01 || previous chain hash || leaf)."""
    return hashlib.sha256(b"\x01" + prev + leaf).digest()


def b64(data: bytes) -> str:
    """Standard base64 text."""
    return base64.b64encode(data).decode()


# ---------------------------------------------------------------------------------------- append


@dataclass(frozen=True)
class Entry:
    """One audit entry as stored."""

    seq: int
    ts_ms: int
    who: str
    action: str
    subject: str
    why: str
    detail: str
    prev: bytes
    hash: bytes

    def recomputed(self, prev: bytes) -> bytes:
        """The chain hash this entry's content gives after ``prev``."""
        return chain_hash(prev, leaf_hash(self.seq, self.ts_ms, self.who, self.action, self.subject, self.why,
                                          self.detail))


def head(conn: Connection) -> tuple[int, bytes]:
    """Return (length, head hash) of the chain as stored (0 and 32 zero bytes when empty)."""
    row = conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    return (int(row[0]), bytes(row[1])) if row else (0, ZERO)


def append(conn: Connection, who: str, action: str, subject: str, why: str = "",
           detail: Mapping[str, Any] | None = None, *, ts_ms: int | None = None) -> int:
    """Append one entry inside the caller's transaction; return its sequence number.

    ``who``: ``staff:ID/ROLE``, ``system`` or ``cli``; ``subject``: a reference such as ``table:A1``
    (use :func:`pseudonym` for a person); ``why``: free text, cleaned and redacted here;
    ``detail``: a small flat mapping, no personal data. A malformed ``who``, ``action`` or
    ``subject`` raises ValueError, so the audited write fails with it.
    """
    if not _WHO_RE.fullmatch(who):
        raise ValueError(f"audit who {who!r}: expected staff:ID/ROLE, staff:p:<pseudonym>, system or cli")
    if not _ACTION_RE.fullmatch(action):
        raise ValueError(f"audit action {action!r}: expected a short lower-case name")
    if not _SUBJECT_RE.fullmatch(subject):
        raise ValueError(f"audit subject {subject!r}: expected KIND:REFERENCE (a reference, never a value)")
    why = clean_reason(why)
    detail_text = _detail_text(detail)
    ts = now_ms() if ts_ms is None else int(ts_ms)
    length, prev = head(conn)
    seq = length + 1
    digest = chain_hash(prev, leaf_hash(seq, ts, who, action, subject, why, detail_text))
    conn.execute("INSERT INTO audit_log (seq, ts_ms, who, action, subject, why, detail, prev, hash) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", (seq, ts, who, action, subject, why, detail_text, prev, digest))
    bound = _bound.get(id(conn))
    if bound is not None and bound[0] is conn:
        bound[1].after_append(conn, seq)
    return seq


def entries(conn: Connection, *, after: int = 0) -> Iterator[Entry]:
    """Every entry in sequence order (from ``after + 1``).

    Reads what is there, whatever a tamper stored: blobs are cast back to bytes and text that is not
    UTF-8 is decoded with replacement characters (its hash then no longer matches).
    """
    def text(raw: Any) -> str:
        return bytes(raw or b"").decode("utf-8", "replace")

    cur = conn.execute("SELECT seq, ts_ms, CAST(who AS BLOB), CAST(action AS BLOB), CAST(subject AS BLOB), "
                       "CAST(why AS BLOB), CAST(detail AS BLOB), CAST(prev AS BLOB), CAST(hash AS BLOB) "
                       "FROM audit_log WHERE seq > ? ORDER BY seq", (after,))
    for row in cur:
        yield Entry(int(row[0]), int(row[1]), text(row[2]), text(row[3]), text(row[4]), text(row[5]), text(row[6]),
                    bytes(row[7] or b""), bytes(row[8] or b""))


def recent(conn: Connection, limit: int = 50) -> list[dict[str, Any]]:
    """The latest entries, newest first, for the auditor (references and redacted reasons only)."""
    rows = conn.execute("SELECT seq, ts_ms, who, action, subject, why, detail FROM audit_log "
                        "ORDER BY seq DESC LIMIT ?", (max(0, limit),)).fetchall()
    return [{"seq": r[0], "ts": iso_ms(r[1]), "who": r[2], "action": r[3], "subject": r[4], "why": r[5],
             "detail": json.loads(r[6])} for r in rows]


# ---------------------------------------------------------------------------------------- signing


class Signer(Protocol):
    """What signs checkpoints (``gateway.privacy.keys.Keyring.signer()`` provides one)."""

    key_id: str
    public_key_b64: str

    def sign(self, data: bytes) -> bytes:
        """Return the Ed25519 signature of ``data``."""
        ...


class Ed25519Signer:
    """An Ed25519 signer from a 32-byte seed (tests and tools; the gateway uses the keyring's)."""

    def __init__(self, seed: bytes) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        raw = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.public_key_b64 = b64(raw)
        self.key_id = "audit-" + hashlib.sha256(raw).hexdigest()[:16]

    def sign(self, data: bytes) -> bytes:
        """Return the Ed25519 signature of ``data``."""
        return self._key.sign(data)


def checkpoint_note(origin: str, length: int, head_b64: str, ts: str) -> bytes:
    """The signed text (C2SP tlog-checkpoint style): origin, length, base64 head, then the time."""
    return f"{origin}\n{length}\n{head_b64}\ntime {ts}\n".encode()


def signature_ok(msg: Mapping[str, Any], origin: str, public_key_b64: str) -> bool:
    """Whether a checkpoint message's signature verifies for this origin and public key."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64, validate=True))
        key.verify(base64.b64decode(msg["sig"], validate=True),
                   checkpoint_note(origin, int(msg["length"]), msg["head"], msg["ts"]))
    except (InvalidSignature, ValueError, KeyError, TypeError):
        return False
    return True


# ---------------------------------------------------------------------------------------- checkpoints


@dataclass
class Checkpointer:
    """Writes signed checkpoints: to HQ through the outbox, and to ``audit_checkpoints``.

    ``prefix`` is ``P`` (``{uplink.topic_prefix}/{store.id}``); the signed origin is ``P/audit``.
    """

    prefix: str
    store_id: str
    signer: Signer
    every_entries: int = DEFAULT_EVERY_ENTRIES
    idle_s: float = IDLE_CHECKPOINT_S
    written: int = field(default=0, init=False)

    @property
    def origin(self) -> str:
        """The log's name in the signed note."""
        return f"{self.prefix}/audit"

    @property
    def topic(self) -> str:
        """``P/audit/checkpoint``."""
        return self.prefix + TOPIC_SUFFIX

    def write(self, conn: Connection) -> dict[str, Any] | None:
        """Sign the current head, keep it and queue it for HQ (inside the caller's transaction)."""
        length, digest = head(conn)
        if length == 0:
            return None
        ts_ms = now_ms()
        ts = iso_ms(ts_ms)
        head_b64 = b64(digest)
        sig = self.signer.sign(checkpoint_note(self.origin, length, head_b64, ts))
        msg = {"id": f"{self.store_id}:audit:{length}:{ts_ms}", "ts": ts, "length": length, "head": head_b64,
               "key_id": self.signer.key_id, "sig": b64(sig)}
        self.record_key(conn)
        conn.execute("INSERT INTO audit_checkpoints (length, ts_ms, head, key_id, message) VALUES (?, ?, ?, ?, ?)",
                     (length, ts_ms, digest, self.signer.key_id, json.dumps(msg, separators=(",", ":"))))
        enqueue(conn, Lane.ALERTS, self.topic, msg["id"], CHECKPOINT_KIND, msg)
        self.written += 1
        return msg

    def record_key(self, conn: Connection) -> None:
        """Record the signer's public key (where ``storegw audit verify`` finds it)."""
        conn.execute("INSERT OR IGNORE INTO audit_keys (key_id, public_key, created_ms) VALUES (?, ?, ?)",
                     (self.signer.key_id, self.signer.public_key_b64, now_ms()))

    def after_append(self, conn: Connection, seq: int) -> None:
        """Called by ``append``: checkpoint when ``every_entries`` entries passed since the last one."""
        if self.every_entries <= 0:
            return
        last = conn.execute("SELECT max(length) FROM audit_checkpoints").fetchone()[0] or 0
        if seq - last >= self.every_entries:
            self.write(conn)

    def periodic(self, conn: Connection) -> dict[str, Any] | None:
        """The periodic job: checkpoint when the chain grew, or hourly when it did not."""
        length, _ = head(conn)
        row = conn.execute("SELECT length, ts_ms FROM audit_checkpoints ORDER BY id DESC LIMIT 1").fetchone()
        if length == 0:
            return None
        if row is not None and row[0] == length and now_ms() - row[1] < self.idle_s * 1000:
            return None
        return self.write(conn)


# The checkpointer of each writer connection (set by the composition root), so ``append`` can
# checkpoint every N entries without its callers knowing about signers. Keyed by the connection's
# id, holding the connection itself so the id cannot be reused while bound.
_bound: dict[int, tuple[Connection, Checkpointer]] = {}
_bound_lock = threading.Lock()


def bind(conn: Connection, checkpointer: Checkpointer) -> None:
    """Let appends on ``conn`` (the writer's connection) trigger checkpoints."""
    with _bound_lock:
        _bound[id(conn)] = (conn, checkpointer)


def unbind(conn: Connection) -> None:
    """Undo :func:`bind` (the gateway stops)."""
    with _bound_lock:
        _bound.pop(id(conn), None)


def local_checkpoints(conn: Connection) -> list[dict[str, Any]]:
    """Every checkpoint this store signed, oldest first (the messages as sent)."""
    return [json.loads(r[0]) for r in conn.execute("SELECT message FROM audit_checkpoints ORDER BY id")]


def public_keys(conn: Connection) -> dict[str, str]:
    """key_id -> base64 public key, as recorded when each key first signed."""
    return {r[0]: r[1] for r in conn.execute("SELECT key_id, public_key FROM audit_keys")}


# ---------------------------------------------------------------------------------------- verify


@dataclass
class Verdict:
    """What ``verify`` found: ``ok``, the first bad entry (if any) and lines for a person."""

    length: int = 0
    head: bytes = ZERO
    first_bad: int | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the chain is intact and agrees with every checkpoint."""
        return not self.problems

    def bad(self, seq: int, text: str) -> None:
        """Record a problem at entry ``seq`` (the first bad entry is the smallest)."""
        self.problems.append(text)
        if self.first_bad is None or seq < self.first_bad:
            self.first_bad = seq


def verify(conn: Connection, origin: str, hq_checkpoints: Iterable[Mapping[str, Any]] = (), *,
           public_key: str | None = None) -> Verdict:
    """Walk the chain, then check it against the local checkpoints and those HQ holds.

    Catches an edited entry (its hash), a deleted one (a gap), a reordered one (its link), a
    truncated tail (a checkpoint longer than the chain) and a chain recomputed after an edit (a
    checkpoint HQ holds whose head differs). ``public_key`` (base64) overrides the keys recorded in
    the database for checking signatures.
    """
    hq = [dict(m) for m in hq_checkpoints]
    local = local_checkpoints(conn)
    wanted = {int(m.get("length", 0)) for m in (*hq, *local)}
    heads: dict[int, bytes] = {0: ZERO}
    v = Verdict()
    prev = ZERO
    expected = 1
    for e in entries(conn):
        if e.seq != expected:
            v.bad(expected, f"entry {expected} is missing: entry {e.seq} follows entry {expected - 1} "
                            f"(deleted from the middle)")
            break
        if e.prev != prev:
            v.bad(e.seq, f"entry {e.seq}: its link to entry {e.seq - 1} is broken "
                         f"(an entry was changed, removed or moved here)")
            break
        digest = e.recomputed(prev)
        if digest != e.hash:
            v.bad(e.seq, f"entry {e.seq}: its content does not match its hash (changed after it was written)")
            break
        prev = digest
        if e.seq in wanted:
            heads[e.seq] = digest
        expected += 1
    v.length, v.head = expected - 1, prev
    stored_length = head(conn)[0]
    keys = public_keys(conn)

    def key_for(msg: Mapping[str, Any]) -> str | None:
        return public_key or keys.get(str(msg.get("key_id", "")))

    hq_good: list[int] = []  # lengths of HQ's checkpoints that match this chain
    mismatched: list[tuple[int, str]] = []
    for source, msgs in (("HQ's", hq), ("local", local)):
        for msg in msgs:
            length = int(msg.get("length", 0))
            what = f"{source} checkpoint of {msg.get('ts', '?')} (length {length}, key {msg.get('key_id', '?')})"
            key = key_for(msg)
            if key is None:
                v.problems.append(f"{what}: no public key {msg.get('key_id')!r} to check its signature "
                                  f"(give --public-key)")
                continue
            if not signature_ok(msg, origin, key):
                v.problems.append(f"{what}: the signature does not verify for {origin} (forged, altered, "
                                  f"another store's, or the wrong public key)")
                continue
            if length > stored_length:
                v.bad(stored_length + 1, f"entries {stored_length + 1}..{length} are missing: the {what} covers "
                                         f"{length} entries, the chain has {stored_length} (tail truncated)")
                continue
            if length not in heads:
                continue  # past the first bad entry found by the walk
            if b64(heads[length]) != msg.get("head"):
                mismatched.append((length, what))
            elif source == "HQ's":
                hq_good.append(length)
    for length, what in sorted(mismatched):
        low = max((n for n in hq_good if n < length), default=0) + 1
        where = f"entry {low}" if low == length else f"entries {low}..{length}"
        v.bad(low, f"the chain was rewritten: the {what} does not match the chain's head at {length}; "
                   f"the first bad entry is among {where}"
                   + ("" if low == length else f" (the last checkpoint HQ holds that matches is at {low - 1})"))
    if not v.problems:
        v.notes.append(f"{v.length} entries, head {b64(v.head)}; {len(local)} local and {len(hq)} HQ "
                       f"checkpoint(s) verified")
    return v
