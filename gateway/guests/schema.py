"""Guest registration tables (named migrations) and their data inventory.

A **stay** is one room's occupation from check-in to checkout; its **guests** are the people
registered into it (the first and every co-occupant). Every identity value is field-encrypted
(``gateway/privacy/fields.py`` ``FIELDS``; AAD bound to the guest's random ``ref``): names,
document numbers (with a truncated blind index), document details, the chip photo and a minor's
guardian. The clear columns hold no identity: document type, flags, times, the room number
(whereabouts; blanked ``guests.keep_room`` after checkout).

``guest_reports`` is the authority outbox: one row per report of a stay (state machine due → sent
→ acknowledged | failed, attempts, deadline); ``payload_ct`` is the copy handed to the police
system and is set to NULL once acknowledged. ``guest_receipts`` records every purge (counts only).
"""

from __future__ import annotations

from gateway.core.inventory import (
    HIDDEN,
    LEGAL_OBLIGATION,
    Column,
    Declaration,
    Retention,
    Table,
    managed,
    ops,
    until,
)
from gateway.store.db import Connection
from gateway.store.migrations import migration, run_script


@migration("0400_guests")
def _guests(conn: Connection) -> None:
    run_script(conn, """
        CREATE TABLE guest_stays (
            id INTEGER PRIMARY KEY,
            room TEXT,                       -- NULL once guests.keep_room after checkout passed
            check_in_ms INTEGER NOT NULL,
            expected_out_ms INTEGER NOT NULL,
            checked_out_ms INTEGER,
            overseas INTEGER NOT NULL DEFAULT 0,
            created_by TEXT NOT NULL DEFAULT '',
            created_ms INTEGER NOT NULL
        );
        CREATE INDEX guest_stays_out ON guest_stays (checked_out_ms);
        CREATE TABLE guest_people (
            id INTEGER PRIMARY KEY,
            ref TEXT NOT NULL UNIQUE,        -- random, bound into every ciphertext of the row
            stay_id INTEGER NOT NULL,
            doc_type TEXT NOT NULL,
            source TEXT NOT NULL,            -- idcard | mrz | manual
            overseas INTEGER NOT NULL DEFAULT 0,
            minor INTEGER NOT NULL DEFAULT 0,
            under14 INTEGER NOT NULL DEFAULT 0,
            name_ct BLOB,
            doc_number_ct BLOB,
            doc_bidx INTEGER,
            details_ct BLOB,                 -- JSON: sex, ethnicity, birth date, address, issuer, validity, ...
            photo_ct BLOB,                   -- the chip's WLT photo as read (never decoded here)
            guardian_ct BLOB,                -- JSON: a minor's guardian name, contact, relationships
            registered_ms INTEGER NOT NULL,
            registered_by TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX guest_people_stay ON guest_people (stay_id);
        CREATE INDEX guest_people_doc ON guest_people (doc_bidx);
        CREATE TABLE guest_reports (
            id INTEGER PRIMARY KEY,
            stay_id INTEGER NOT NULL,
            people TEXT NOT NULL DEFAULT '[]', -- guest_people ids in this report
            state TEXT NOT NULL DEFAULT 'due', -- due | sent | acknowledged | failed
            attempts INTEGER NOT NULL DEFAULT 0,
            created_ms INTEGER NOT NULL,
            deadline_ms INTEGER,             -- NULL: no legal deadline (domestic guests)
            sent_ms INTEGER,
            acked_ms INTEGER,
            failed_ms INTEGER,
            error TEXT NOT NULL DEFAULT '',
            file TEXT NOT NULL DEFAULT '',   -- the dropped file's name (REPORT_ID.json)
            payload_ct BLOB                  -- the copy sent, NULL once acknowledged
        );
        CREATE INDEX guest_reports_state ON guest_reports (state);
        CREATE INDEX guest_reports_stay ON guest_reports (stay_id);
        CREATE TABLE guest_receipts (
            id INTEGER PRIMARY KEY,
            ts_ms INTEGER NOT NULL,
            counts TEXT NOT NULL,            -- JSON {category: rows}
            oldest_checkout_ms INTEGER       -- the oldest checkout still holding identity data
        );
        CREATE TABLE guest_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """)


# ---------------------------------------------------------------------------- the data inventory
# (gateway/core/inventory.py). Legal basis: PIPL Art. 13(3), legal obligation (旅馆业治安管理办法 Art. 6,
# 出境入境管理法 Art. 39). The limits are configurable ([guests] keep_*), so the guests purge
# (gateway/guests/retention.py, hourly) applies them: the rules are declared ``managed`` with the
# defaults. Room, times and flags are shown only on the front-desk pages (permission ``guests``),
# never on tickets, in logs or upstream: declared ``hidden`` with that note.

DAY = 1.0
_BY = "guests purge (gateway/guests/retention.py, [guests] keep_*)"
_STAY_CLOCK = "coalesce(checked_out_ms, expected_out_ms + 2592000000)"
_PERSON_CLOCK = f"(SELECT {_STAY_CLOCK} FROM guest_stays s WHERE s.id = stay_id)"  # noqa: S608 - constants
_REG = "hotel guest register (旅馆业治安管理办法 Art. 6)"
_FRONT = "shown only on the front-desk pages"


def _keep(days: float, what: str, clock: str) -> Retention:
    return managed(f"{what} after checkout ([guests] keep_*; default {days:g} days)", _BY, days, clock)


_ID_STAY = _keep(365, "identity: 1 year", _STAY_CLOCK)
_ID_PERSON = _keep(365, "identity: 1 year", _PERSON_CLOCK)
_ID_REPORT = _keep(365, "the stay's identity: 1 year", _PERSON_CLOCK)
_LEGAL = LEGAL_OBLIGATION


def _p(name: str, category: str, purpose: str, retention: Retention, mask: str = HIDDEN, *,
       encrypted: bool = False, index: str = "", note: str = "") -> Column:
    return Column(name, category, purpose, _LEGAL, retention, mask, False, encrypted, index, note)


INVENTORY = Declaration("guests", (
    Table("guest_stays", "Hotel stays: room, check-in and checkout (whereabouts)", (
        *ops("id created_ms", _ID_STAY, "bookkeeping"),
        _p("room", "user.location.imprecise", f"{_REG}: where the guest stays",
           _keep(1, "24 hours", _STAY_CLOCK), note=_FRONT),
        _p("check_in_ms", "user.behavior", _REG, _ID_STAY, note=_FRONT),
        _p("expected_out_ms", "user.behavior", _REG, _ID_STAY, note=_FRONT),
        _p("checked_out_ms", "user.behavior", _REG, _ID_STAY, note=_FRONT),
        _p("overseas", "user.demographic", "the 24 h report deadline for overseas guests", _ID_STAY, note=_FRONT),
        *ops("created_by", _ID_STAY, "staff name (accountability)"),
    ), created="created_ms"),
    Table("guest_people", "Registered guests: identity documents, field-encrypted", (
        *ops("id ref stay_id source registered_ms registered_by", _ID_PERSON, "bookkeeping and references"),
        _p("doc_type", "user.government_id", f"{_REG}: document type", _ID_PERSON, note=_FRONT),
        _p("overseas", "user.demographic", "the 24 h report deadline", _ID_PERSON, note=_FRONT),
        _p("minor", "user.demographic", "a minor needs a guardian (未成年人保护法 Art. 57)", _ID_PERSON, note=_FRONT),
        _p("under14", "user.demographic", "under 14: sensitive PI (PIPL Art. 28)", _ID_PERSON, note=_FRONT),
        _p("name_ct", "user.name", f"{_REG}: name", _ID_PERSON, "mask_name", encrypted=True),
        _p("doc_number_ct", "user.government_id", f"{_REG}: document number", _ID_PERSON, "mask_id_number",
           encrypted=True, index="doc_bidx", note="travel documents: mask_document_number"),
        _p("doc_bidx", "user.government_id", "truncated keyed blind index of the document number", _ID_PERSON),
        _p("details_ct", "user.government_id", f"{_REG}: sex, ethnicity, birth date, address, issuer, validity, "
           "nationality, visa", _ID_PERSON, encrypted=True),
        _p("photo_ct", "user.biometric", f"{_REG}: the chip photo (WLT, never decoded)",
           _keep(365, "1 year", _PERSON_CLOCK), encrypted=True),
        _p("guardian_ct", "user.contact", "a minor's guardian name, contact and relationships",
           _keep(365, "1 year", _PERSON_CLOCK), encrypted=True),
    ), created="registered_ms"),
    Table("guest_reports", "The authority outbox: police registration reports of stays", (
        *ops("id stay_id people state attempts created_ms deadline_ms sent_ms acked_ms failed_ms error file",
             _ID_REPORT, "report state machine (no values)"),
        _p("payload_ct", "user.government_id", "the copy handed to the police system, until acknowledged",
           _ID_REPORT, encrypted=True, note="set to NULL on acknowledgement"),
    ), created="created_ms"),
    Table("guest_receipts", "Receipts of the guests purge (counts only)",
          ops("id ts_ms counts oldest_checkout_ms", until("kept: counts only"), "deletion receipts"),
          created="ts_ms"),
    Table("guest_meta", "Guest summary bookkeeping", ops("key value", until("kept"), "bookkeeping")),
))
