"""The upstream filter: what may go to HQ, member by member, and free text through the recognisers.

Applied to every message as it is put in the outbox (``gateway.store.outbox.enqueue`` calls the
filter ``Gateway`` installs with ``install()``), so a redacted value is what the outbox table, the
backups and HQ hold; the uplink then sends rows as stored. It is the spine's, not the store's: the
store knows no topics, while the spine owns HQ's contract (C4) like the uplink does.

Per topic (``SHAPES``, one entry per JSON Schema in docs/schemas; ``tests/privacy`` checks they
agree), each member is one of:

- ``ID``: an idempotency key or episode (``STORE:DEVICE:...``): kept, but any recogniser hit inside
  is replaced by its keyed pseudonym, so two ids stay distinct and a retry keeps its id;
- ``NAME``: a device id or metric name: replaced whole by its pseudonym when it holds a hit
  (the ingest already does this; here for names from anywhere else);
- ``TEXT``: free text (alert ``text``, rule names, item names, version): hits masked (``138****5678``);
- ``ENUM``, ``TS``, ``VALUE``: enums, timestamps, numbers and booleans: kept as they are;
- ``OPAQUE``: a hash, signature, public key, key id or random id the gateway made (base64 or hex):
  kept as it is. Random bytes can look like a number to the recognisers (a hex digest may hold a
  Luhn-valid run of digits), and changing one would break what it proves; HQ's schema constrains
  its form;
- a nested shape: a list of, an object of, or a map from ``NAME`` keys to a shape.

A ``Signed`` object shape is a message HQ verifies with a signature (audit checkpoints, deletion
receipts): every member of the real messages is a kind the filter keeps, so they pass unchanged. If
the filter ever has to change one (a member not in the schema, a recogniser hit in its store id),
privacy wins: the filtered message is what is stored and sent, and an error is logged saying its
signature will not verify at HQ (where a failed receipt or checkpoint check raises the alarm).

A member the shape does not list is dropped (HQ's schemas forbid additional properties), logged
once per topic and member, and counted in health (``privacy.dropped_members``). A topic with no
shape has every string (keys too) passed through the recognisers and is logged once.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from typing import Any

from gateway.core import pii
from gateway.store import outbox

_LOGGER = logging.getLogger(__name__)

ID, NAME, TEXT, ENUM, TS, VALUE, OPAQUE = "id", "name", "text", "enum", "ts", "value", "opaque"


class Obj(dict):
    """An object shape: member name → its kind or shape."""


class Signed(Obj):
    """An object shape of a signed message: the filter must not change it (see the module doc)."""


class ListOf:
    """A list whose items all have one shape."""

    def __init__(self, item: Any) -> None:
        self.item = item


class MapOf:
    """An object with free member names (each a ``NAME``) and one value shape."""

    def __init__(self, value: Any) -> None:
        self.value = value


_SUMMARY = Obj(id=ID, rev=VALUE, ts=TS, device=NAME, metric=NAME, window_start=TS, window_s=VALUE, count=VALUE,
               type=ENUM, true_count=VALUE, min=VALUE, max=VALUE, mean=VALUE, last=VALUE, coarsened=VALUE)
_RAW = Obj(id=ID, device=NAME, ts=TS, metrics=MapOf(VALUE))
_ORDER_ITEM = Obj(item=NAME, name_zh=TEXT, name_en=TEXT, qty=VALUE, revenue_cents=VALUE)

# Topic suffix (after ``{prefix}/{store}``) → shape; one per file in docs/schemas.
SHAPES: dict[str, Any] = {
    "/status": Obj(id=ID, state=ENUM, ts=TS, version=TEXT, started_at=TS),
    "/telemetry/summary": ListOf(_SUMMARY),
    "/telemetry/raw": ListOf(_RAW),
    "/alerts": Obj(id=ID, episode=ID, device=NAME, rule=TEXT, kind=ENUM, state=ENUM, severity=ENUM, value=VALUE,
                   ts=TS, text=TEXT),
    "/devices": Obj(id=ID, ts=TS, devices=ListOf(Obj(id=NAME, kind=ENUM, available=VALUE, last_event_at=TS,
                                                      events=VALUE))),
    "/orders/summary": Obj(id=ID, ts=TS, kind=ENUM, store=ID, table=NAME, opened_at=TS, window_start=TS,
                           window_s=VALUE, covers=VALUE, rounds=VALUE, currency=ENUM, items=ListOf(_ORDER_ITEM),
                           subtotal_cents=VALUE, service_cents=VALUE, discount_cents=VALUE, revenue_cents=VALUE,
                           payment=ENUM, ticket_times=Obj(count=VALUE, p50_s=VALUE, p90_s=VALUE, max_s=VALUE)),
    # gateway/guests/summary.py (kind hour) and gateway/guests/retention.py (kind purge): counts only
    "/guests/summary": Obj(id=ID, ts=TS, kind=ENUM, store=ID, window_start=TS, window_s=VALUE,
                           guests_checked_in=VALUE, guests_checked_out=VALUE, stays_opened=VALUE, stays_closed=VALUE,
                           reports=Obj(sent_on_time=VALUE, sent_late=VALUE, acknowledged=VALUE, failed=VALUE,
                                       overdue=VALUE),
                           deleted=MapOf(VALUE), oldest_checkout=TS),
    "/members/summary": Obj(id=ID, ts=TS, kind=ENUM, store=ID, window_start=TS, window_s=VALUE,
                            tiers=ListOf(Obj(tier=VALUE, name_zh=TEXT, name_en=TEXT, registered=VALUE, active=VALUE)),
                            new_members=VALUE,
                            points=Obj(issued=VALUE, redeemed=VALUE, expired=VALUE, reversed=VALUE, restored=VALUE),
                            coupons_redeemed=MapOf(VALUE), complaints=MapOf(VALUE),
                            feedback=Obj(count=VALUE, avg_rating=VALUE),
                            comments=ListOf(Obj(source=ENUM, rating=VALUE, category=NAME, text=TEXT))),
    # gateway/health/report.py hq_message: the daily report's aggregates (item and ingredient ids, no names)
    "/reports/daily": Obj(id=ID, ts=TS, store=ID, day=ENUM, currency=ENUM, sales_cents=VALUE, bills=VALUE,
                          covers=VALUE, avg_bill_cents=VALUE, dishes=VALUE,
                          top_items=ListOf(Obj(item=NAME, qty=VALUE, revenue_cents=VALUE)),
                          bottom_items=ListOf(Obj(item=NAME, qty=VALUE, revenue_cents=VALUE)),
                          dishes_by_hour=ListOf(VALUE), baseline_by_hour=ListOf(VALUE),
                          ticket_times=Obj(printed=Obj(count=VALUE, p50_s=VALUE, p90_s=VALUE, max_s=VALUE),
                                           served=Obj(count=VALUE, p50_s=VALUE, p90_s=VALUE, max_s=VALUE)),
                          sold_out=ListOf(NAME), below_safety=ListOf(NAME),
                          alerts=Obj(raised=VALUE, by_rule=MapOf(VALUE), active=VALUE), complaints=MapOf(VALUE),
                          device_uptime_pct=VALUE, maintenance_due=VALUE),
    # gateway/spine/uplink.py Uplink.write_manifest: ids and revs HQ's broker acknowledged in a window
    "/manifest": Obj(id=ID, ts=TS, store=ID, seq=VALUE, window_start=TS, window_s=VALUE, ids=MapOf(VALUE)),
    # gateway/privacy/audit.py Checkpointer.write: the signature covers origin, length, head and ts
    "/audit/checkpoint": Signed(id=ID, ts=TS, length=VALUE, head=OPAQUE, key_id=OPAQUE, sig=OPAQUE),
    # gateway/privacy/retention.py receipt(): the signature covers every member but sig
    "/privacy/receipt": Signed(id=OPAQUE, ts=TS, store=ID, deleted=MapOf(VALUE), rows=MapOf(VALUE),
                               held=MapOf(VALUE), oldest=MapOf(TS), audit=Obj(length=VALUE, head=OPAQUE),
                               scrub=Obj(wal_truncated=VALUE, free_pages=VALUE), next_run=TS, alg=ENUM,
                               key_id=OPAQUE, public_key=OPAQUE, sig=OPAQUE),
}

_lock = threading.Lock()
dropped: Counter[str] = Counter()  # "topic-suffix:member" → members dropped (health shows the total)
altered_signed: Counter[str] = Counter()  # topic suffix → signed messages the filter had to change
_warned: set[str] = set()


def _warn_once(key: str, message: str, *args: Any) -> None:
    with _lock:
        if key in _warned or len(_warned) > 1000:
            return
        _warned.add(key)
    _LOGGER.warning(message, *args)


def _id(value: str) -> str:
    hits = pii.find(value)
    if not hits:
        return value
    pii.count(dict(Counter(h.kind for h in hits)))
    out, pos = [], 0
    for h in hits:
        out.append(value[pos:h.start])
        out.append(pii.pseudonym(value[h.start:h.end]))
        pos = h.end
    out.append(value[pos:])
    return "".join(out)


def _apply(shape: Any, value: Any, where: str) -> Any:
    if isinstance(shape, str):
        if not isinstance(value, str) or shape in (ENUM, TS, VALUE, OPAQUE):
            return value
        if shape == TEXT:
            return pii.redact(value)[0]
        if shape == NAME:
            return pii.pseudonymize(value)
        return _id(value)
    if isinstance(shape, ListOf):
        return [_apply(shape.item, v, where) for v in value] if isinstance(value, list) else value
    if isinstance(shape, MapOf):
        if not isinstance(value, dict):
            return value
        return {pii.pseudonymize(k): _apply(shape.value, v, where) for k, v in value.items()}
    if not isinstance(value, dict):
        return value
    out = {}
    for key, member in value.items():
        sub = shape.get(key)
        if sub is None:
            with _lock:
                dropped[f"{where}:{key[:40]}"] += 1
            _warn_once(f"{where}:{key}", "Upstream %s: member %r is not in HQ's schema; dropped",
                       where, pii.pseudonymize(str(key))[:40])
            continue
        out[key] = _apply(sub, member, where)
    return out


def shape_of(topic: str) -> tuple[str, Any]:
    """Return (suffix, shape) for a full upstream topic, or ("", None) when no schema covers it."""
    for suffix, shape in SHAPES.items():
        if topic.endswith(suffix):
            return suffix, shape
    return "", None


def filter_payload(topic: str, payload: Any) -> Any:
    """Return the payload as it may go to HQ: allowlisted per its topic's schema, free text redacted."""
    if isinstance(payload, (bytes, bytearray)):
        return payload  # pre-serialised by its producer (none today); kept as is
    suffix, shape = shape_of(topic)
    if shape is None:
        _warn_once(f"topic:{topic}", "Upstream topic %s has no schema shape (gateway/spine/upstream.py); "
                   "every string passes the recognisers", topic)
        return pii.redact_strings(payload)
    out = _apply(shape, payload, suffix)
    if isinstance(shape, Signed) and out != payload:
        with _lock:
            altered_signed[suffix] += 1
        _LOGGER.error("Upstream %s: the filter changed a signed message (a member not in HQ's schema, or a "
                      "recogniser hit); it is sent as filtered and its signature will not verify at HQ", suffix)
    return out


def filter_id(msg_id: str) -> str:
    """Return an outbox message id with any recogniser hit replaced by its pseudonym (as ``ID`` members are)."""
    return _id(msg_id)


def dropped_total() -> int:
    """Return how many members were dropped for not being in HQ's schema."""
    with _lock:
        return sum(dropped.values())


def install() -> None:
    """Make this the filter of every message put in the outbox."""
    outbox.upstream_filter = filter_payload
    outbox.upstream_id_filter = filter_id
