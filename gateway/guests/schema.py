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

from typing import NamedTuple

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

LEGAL_OBLIGATION = "legal obligation"  # PIPL Art. 13(3): 旅馆业治安管理办法 Art. 6, 出境入境管理法 Art. 39


class Column(NamedTuple):
    """One column of the inventory (the retention branch's ``gateway/core/inventory.py`` shape)."""

    table: str
    column: str
    category: str
    purpose: str
    basis: str
    retention: str
    mask: str
    leaves_store: bool
    encrypted: bool


_REG = "hotel guest register (旅馆业治安管理办法 Art. 6)"
_ID = "guests.keep_identity after checkout (default 1 year)"
_OPS = "system.operations"


def _c(table: str, column: str, category: str, purpose: str, retention: str, mask: str = "none",
       encrypted: bool = False) -> Column:
    basis = "not personal data" if category.startswith("system.") else LEGAL_OBLIGATION
    return Column(table, column, category, purpose, basis, retention, mask, False, encrypted)


# Every column of every guest table, personal or not. leaves_store is False for all of them: HQ gets
# only the aggregates of P/guests/summary.
INVENTORY: list[Column] = [
    _c("guest_stays", "id", _OPS, "row id", "with the stay"),
    _c("guest_stays", "room", "user.location.imprecise", f"{_REG}: where the guest stays (whereabouts)",
       "guests.keep_room after checkout (default 24 h)"),
    _c("guest_stays", "check_in_ms", "user.behavior", _REG, _ID),
    _c("guest_stays", "expected_out_ms", "user.behavior", _REG, _ID),
    _c("guest_stays", "checked_out_ms", "user.behavior", _REG, _ID),
    _c("guest_stays", "overseas", "user.demographic", "the 24 h report deadline for overseas guests", _ID),
    _c("guest_stays", "created_by", "system.operations", "staff name (accountability)", _ID),
    _c("guest_stays", "created_ms", _OPS, "bookkeeping", _ID),
    _c("guest_people", "id", _OPS, "row id", _ID),
    _c("guest_people", "ref", _OPS, "random row reference bound into the ciphertexts", _ID),
    _c("guest_people", "stay_id", _OPS, "the stay", _ID),
    _c("guest_people", "doc_type", "user.government_id", f"{_REG}: document type", _ID),
    _c("guest_people", "source", _OPS, "how the document was read", _ID),
    _c("guest_people", "overseas", "user.demographic", "the 24 h report deadline", _ID),
    _c("guest_people", "minor", "user.demographic", "minor: guardian required (未成年人保护法 Art. 57)", _ID),
    _c("guest_people", "under14", "user.demographic", "under 14: sensitive PI (PIPL Art. 28)", _ID),
    _c("guest_people", "name_ct", "user.name", f"{_REG}: name", _ID, "mask_name", True),
    _c("guest_people", "doc_number_ct", "user.government_id", f"{_REG}: document number", _ID,
       "mask_id_number / mask_document_number", True),
    _c("guest_people", "doc_bidx", "user.government_id", "truncated keyed blind index of the document number",
       _ID, "hidden"),
    _c("guest_people", "details_ct", "user.government_id", f"{_REG}: sex, ethnicity, birth date, address, "
       "issuer, validity, nationality, visa", _ID, "hidden", True),
    _c("guest_people", "photo_ct", "user.biometric", f"{_REG}: chip photo", "guests.keep_photo after checkout",
       "hidden", True),
    _c("guest_people", "guardian_ct", "user.contact", "a minor's guardian name, contact and relationships",
       "guests.keep_contact after checkout", "hidden", True),
    _c("guest_people", "registered_ms", _OPS, "bookkeeping", _ID),
    _c("guest_people", "registered_by", _OPS, "staff name (accountability)", _ID),
    _c("guest_reports", "id", _OPS, "report id", _ID),
    _c("guest_reports", "stay_id", _OPS, "the stay", _ID),
    _c("guest_reports", "people", _OPS, "guest row ids in the report", _ID),
    _c("guest_reports", "state", _OPS, "due | sent | acknowledged | failed", _ID),
    _c("guest_reports", "attempts", _OPS, "hand-overs to the adapter", _ID),
    _c("guest_reports", "created_ms", _OPS, "bookkeeping", _ID),
    _c("guest_reports", "deadline_ms", _OPS, "legal deadline (overseas guests: 24 h)", _ID),
    _c("guest_reports", "sent_ms", _OPS, "bookkeeping", _ID),
    _c("guest_reports", "acked_ms", _OPS, "bookkeeping", _ID),
    _c("guest_reports", "failed_ms", _OPS, "bookkeeping", _ID),
    _c("guest_reports", "error", _OPS, "adapter error (never a value)", _ID),
    _c("guest_reports", "file", _OPS, "dropped file name (report id)", _ID),
    _c("guest_reports", "payload_ct", "user.government_id", "the copy handed to the police system",
       "until acknowledged (then NULL); at most guests.keep_identity", "hidden", True),
    _c("guest_receipts", "id", _OPS, "receipt id", "kept (counts only)"),
    _c("guest_receipts", "ts_ms", _OPS, "when the purge ran", "kept (counts only)"),
    _c("guest_receipts", "counts", _OPS, "rows and values deleted per category", "kept (counts only)"),
    _c("guest_receipts", "oldest_checkout_ms", _OPS, "oldest surviving identity data", "kept (counts only)"),
    _c("guest_meta", "key", _OPS, "summary bookkeeping", "kept"),
    _c("guest_meta", "value", _OPS, "summary bookkeeping", "kept"),
]
