"""Guests' retention: delete each field ``guests.keep_*`` after checkout, with a receipt.

Until the privacy retention job (branch ``retention``) lands, this is the guests-local purge; that
job will call :func:`purge` (or take over the rules in ``schema.INVENTORY``). Per category:

=========================  ==================================================  ===========================
what                       columns                                             kept after checkout
=========================  ==================================================  ===========================
room (whereabouts)         ``guest_stays.room``                                ``keep_room`` (24 h)
chip photo                 ``guest_people.photo_ct``                           ``keep_photo`` (1 year)
guardian and relationships ``guest_people.guardian_ct``                        ``keep_contact`` (1 year)
identity                   name, number, index, details, the report payload;   ``keep_identity`` (1 year)
                           then the rows themselves
=========================  ==================================================  ===========================

A stay never checked out counts from 30 days after its expected checkout, so a forgotten checkout
does not keep a guest forever. The purge runs with ``secure_delete`` on (freed cells and pages are
zeroed) and the service then truncates the WAL, so the values are gone from the file, not only
from the tables (data-anchors F.7). The receipt (counts per category, oldest surviving checkout) is
stored and sent to HQ as a ``P/guests/summary`` of kind ``purge``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from gateway.core.models import iso_ms
from gateway.store.db import Connection
from gateway.store.outbox import Lane, enqueue

if TYPE_CHECKING:
    from gateway.guests.context import GuestsContext

FORGOTTEN_CHECKOUT_MS = 30 * 86_400_000
CLOCK = f"coalesce(checked_out_ms, expected_out_ms + {FORGOTTEN_CHECKOUT_MS})"


def _expired(seconds: float, now: int) -> tuple[str, tuple[int]]:
    return f"stay_id IN (SELECT id FROM guest_stays WHERE {CLOCK} < ?)", (now - int(seconds * 1000),)  # noqa: S608


def purge(ctx: GuestsContext, c: Connection) -> dict[str, Any]:
    """Delete what is past its retention (in the writer); return the receipt."""
    c.execute("PRAGMA secure_delete = ON")
    g = ctx.gcfg
    now = ctx.now()
    counts: dict[str, int] = {}
    counts["user.location.imprecise"] = c.execute(
        f"UPDATE guest_stays SET room = NULL WHERE room IS NOT NULL AND {CLOCK} < ?",  # noqa: S608
        (now - int(g.keep_room * 1000),)).rowcount
    where, args = _expired(g.keep_photo, now)
    counts["user.biometric"] = c.execute(
        f"UPDATE guest_people SET photo_ct = NULL WHERE photo_ct IS NOT NULL AND {where}", args).rowcount  # noqa: S608
    where, args = _expired(g.keep_contact, now)
    counts["user.contact"] = c.execute(
        f"UPDATE guest_people SET guardian_ct = NULL WHERE guardian_ct IS NOT NULL AND {where}", args).rowcount  # noqa: S608
    where, args = _expired(g.keep_identity, now)
    counts["user.name"] = c.execute(
        f"UPDATE guest_people SET name_ct = NULL, doc_number_ct = NULL, doc_bidx = NULL, details_ct = NULL "  # noqa: S608
        f"WHERE name_ct IS NOT NULL AND {where}", args).rowcount
    counts["user.government_id"] = counts["user.name"]
    counts["reports"] = c.execute(
        f"UPDATE guest_reports SET payload_ct = NULL WHERE payload_ct IS NOT NULL AND {where}", args).rowcount  # noqa: S608
    # rows with nothing left go; a stay goes with its last guest once its identity time has passed
    counts["guests"] = c.execute("DELETE FROM guest_people WHERE name_ct IS NULL AND photo_ct IS NULL "
                                 "AND guardian_ct IS NULL").rowcount
    gone = f"id NOT IN (SELECT stay_id FROM guest_people) AND room IS NULL AND {CLOCK} < ?"  # noqa: S608
    c.execute(f"DELETE FROM guest_reports WHERE stay_id IN (SELECT id FROM guest_stays WHERE {gone})",  # noqa: S608
              args)
    counts["stays"] = c.execute(f"DELETE FROM guest_stays WHERE {gone}", args).rowcount  # noqa: S608
    oldest = c.execute(f"SELECT min({CLOCK}) FROM guest_stays WHERE id IN "  # noqa: S608
                       "(SELECT stay_id FROM guest_people WHERE name_ct IS NOT NULL) AND checked_out_ms IS NOT NULL"
                       ).fetchone()[0]
    receipt = {"ts_ms": now, "counts": counts, "oldest_checkout_ms": oldest}
    if any(counts.values()):
        rid = int(c.execute("INSERT INTO guest_receipts (ts_ms, counts, oldest_checkout_ms) VALUES (?, ?, ?)",
                            (now, json.dumps(counts, sort_keys=True), oldest)).lastrowid)
        msg = {"id": f"{ctx.store_id}:guests-purge:{rid}", "ts": iso_ms(now), "kind": "purge", "store": ctx.store_id,
               "deleted": counts, "oldest_checkout": iso_ms(oldest) if oldest is not None else None}
        enqueue(c, Lane.ORDERS, f"{ctx.cfg.prefix}/guests/summary", msg["id"], "guests", msg)
        receipt["id"] = rid
    return receipt


def scrub_wal(conn: Connection) -> None:
    """After a purge (outside a transaction, on the writer's connection): checkpoint and truncate the WAL."""
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
