"""Stays and guests: register (a new stay or a co-occupant), checkout, and the masked views.

Write functions take ``(ctx, conn, ...)`` and run in the gateway's writer; every change is audited
with a reference (``stay:12``, ``guest:34``), never a value. Identity values are encrypted with the
field cipher, bound to the guest row's random ``ref``.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from typing import TYPE_CHECKING, Any

from gateway.core.errors import GuestError
from gateway.guests import authority, rules
from gateway.staff.accounts import audit
from gateway.store.db import Connection

if TYPE_CHECKING:
    from gateway.guests.context import GuestsContext

T = "guest_people"


def adults_of(conn: Connection, stay_id: int) -> list[int]:
    """Ids of the adults registered in a stay."""
    return [r[0] for r in conn.execute("SELECT id FROM guest_people WHERE stay_id = ? AND minor = 0 "
                                       "AND name_ct IS NOT NULL ORDER BY id", (stay_id,))]


def open_stay(conn: Connection, stay_id: int) -> tuple[int, int]:
    """(check-in ms, overseas) of an open stay, or a GuestError."""
    row = conn.execute("SELECT check_in_ms, overseas FROM guest_stays WHERE id = ? AND checked_out_ms IS NULL",
                       (stay_id,)).fetchone()
    if row is None:
        raise GuestError("该入住已结束或不存在。This stay is closed or does not exist.", code="no_stay", status=404)
    return int(row[0]), int(row[1])


def register(ctx: GuestsContext, c: Connection, values: dict[str, Any], who: str,
             stay_id: int | None) -> tuple[int, int]:
    """Validate and store one guest (a new stay when ``stay_id`` is None); return (stay id, guest id)."""
    if stay_id is None:
        room, check_in, expected_out = rules.check_stay(values, ctx.tz)
    else:
        check_in, _ = open_stay(c, stay_id)
    day = dt.datetime.fromtimestamp(check_in / 1000, ctx.tz).date()
    adults = adults_of(c, stay_id) if stay_id is not None else []
    rec = rules.check_guest(values, check_in=day, minor_age=ctx.gcfg.minor_age, adults=adults)
    now = ctx.now()
    if stay_id is None:
        stay_id = int(c.execute(
            "INSERT INTO guest_stays (room, check_in_ms, expected_out_ms, created_by, created_ms) "
            "VALUES (?, ?, ?, ?, ?)", (room, check_in, expected_out, who, now)).lastrowid)
    ref = secrets.token_hex(12)
    details = {k: rec[k] for k in rules.DETAIL_KEYS if rec.get(k)}
    guardian = None
    if rec["minor"]:
        guardian = {"name": rec["guardian_name"], "contact": rec["guardian_contact"],
                    "relationships": rec["relationships"]}
    enc = ctx.cipher.encrypt
    pid = int(c.execute(
        "INSERT INTO guest_people (ref, stay_id, doc_type, source, overseas, minor, under14, name_ct, doc_number_ct, "
        "doc_bidx, details_ct, photo_ct, guardian_ct, registered_ms, registered_by) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (ref, stay_id, rec["doc_type"], values.get("source", "manual"), int(rec["overseas"]), int(rec["minor"]),
         int(rec["under14"]), enc(T, "name_ct", rec["name"], ref), enc(T, "doc_number_ct", rec["doc_number"], ref),
         ctx.cipher.blind_index("id_number", rec["doc_number"]), enc(T, "details_ct", json.dumps(details), ref),
         enc(T, "photo_ct", rec["photo"], ref) if rec["photo"] else None,
         enc(T, "guardian_ct", json.dumps(guardian, ensure_ascii=False), ref) if guardian else None,
         now, who)).lastrowid)
    if rec["overseas"]:
        c.execute("UPDATE guest_stays SET overseas = 1 WHERE id = ?", (stay_id,))
    audit(c, who, "guest-register", f"stay:{stay_id}", f"guest:{pid} {rec['doc_type']}"
          + (" minor" if rec["minor"] else ""))
    authority.add_guest(ctx, c, stay_id, pid, check_in, bool(rec["overseas"]))
    return stay_id, pid


def checkout(ctx: GuestsContext, c: Connection, stay_id: int, who: str) -> int:
    """Close a stay (its retention clocks start now)."""
    open_stay(c, stay_id)
    c.execute("UPDATE guest_stays SET checked_out_ms = ? WHERE id = ?", (ctx.now(), stay_id))
    audit(c, who, "guest-checkout", f"stay:{stay_id}")
    return stay_id


def _guest_view(ctx: GuestsContext, row: tuple[Any, ...]) -> dict[str, Any]:
    pid, ref, doc_type, minor, under14, overseas, name_ct, num_ct, photo_ct, guardian_ct = row
    dec = ctx.cipher.decrypt_text
    name = dec(T, "name_ct", bytes(name_ct), ref) if name_ct is not None else ""
    number = dec(T, "doc_number_ct", bytes(num_ct), ref) if num_ct is not None else ""
    return {"id": pid, "doc_type": doc_type, "name": rules.masked_name(name) if name else "",
            "number": rules.masked_number(doc_type, number) if number else "", "minor": bool(minor),
            "under14": bool(under14), "overseas": bool(overseas), "photo": photo_ct is not None,
            "guardian": guardian_ct is not None, "purged": name_ct is None}


_GUEST_COLS = "id, ref, doc_type, minor, under14, overseas, name_ct, doc_number_ct, photo_ct, guardian_ct"


def stays(ctx: GuestsContext, conn: Connection, *, open_only: bool = True, limit: int = 100,
          stay_id: int = -1) -> list[dict[str, Any]]:
    """Stays with their guests, masked (server-side: full values never reach the page)."""
    where = "checked_out_ms IS NULL" if open_only else "1"
    out = []
    for sid, room, cin, exp, cout, overseas in conn.execute(
            "SELECT id, room, check_in_ms, expected_out_ms, checked_out_ms, overseas FROM guest_stays "  # noqa: S608
            f"WHERE {where} AND (? < 0 OR id = ?) ORDER BY id DESC LIMIT ?", (stay_id, stay_id, limit)).fetchall():
        guests = [_guest_view(ctx, r) for r in conn.execute(
            f"SELECT {_GUEST_COLS} FROM guest_people WHERE stay_id = ? ORDER BY id", (sid,))]  # noqa: S608
        report = conn.execute("SELECT id, state, deadline_ms FROM guest_reports WHERE stay_id = ? ORDER BY id DESC "
                              "LIMIT 1", (sid,)).fetchone()
        out.append({"id": sid, "room": room or "", "check_in_ms": cin, "expected_out_ms": exp,
                    "checked_out_ms": cout, "overseas": bool(overseas), "guests": guests,
                    "report": {"id": report[0], "state": report[1], "deadline_ms": report[2]} if report else None})
    return out


def stay(ctx: GuestsContext, conn: Connection, stay_id: int) -> dict[str, Any] | None:
    """One stay, masked."""
    found = stays(ctx, conn, open_only=False, limit=1, stay_id=stay_id)
    return found[0] if found else None
