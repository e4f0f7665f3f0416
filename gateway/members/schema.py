"""Members tables (named migrations) and the data inventory of every column they add.

Balances are sums of an append-only ledger (``mem_ledger``; every entry has a UNIQUE idempotency
key); ``mem_members.points`` is a cache updated in the same transaction and checked by
``storegw members check``. Benefits (coupons, perks, later priority booking and member events) are
rows of one table whose state moves only by conditional UPDATEs, so one benefit is used once.
"""

from __future__ import annotations

from gateway.store.db import Connection
from gateway.store.migrations import migration, run_script


@migration("0300_members")
def _members(conn: Connection) -> None:
    run_script(conn, """
        CREATE TABLE mem_members (
            id INTEGER PRIMARY KEY,
            member_no TEXT NOT NULL UNIQUE,          -- store code + sequence + check character
            nickname TEXT NOT NULL,
            phone_ct BLOB,                           -- field-encrypted (gateway/privacy/fields.py)
            phone_bidx INTEGER,                      -- 13-bit blind index of the phone
            birthday TEXT NOT NULL DEFAULT '',       -- MM-DD, blank when the birthday consent is withdrawn
            preferences TEXT NOT NULL DEFAULT '',
            allergies_ct BLOB,                       -- field-encrypted (health-related: sensitive)
            card_ref TEXT UNIQUE,                    -- HMAC of a membership card (devices/cardref.py)
            qr_version INTEGER NOT NULL DEFAULT 1,   -- bump to revoke a member QR / member page link
            tier INTEGER NOT NULL DEFAULT 0,
            tier_since_ms INTEGER NOT NULL,
            tier_hold_until_ms INTEGER NOT NULL DEFAULT 0,
            points INTEGER NOT NULL DEFAULT 0,       -- cache of sum(mem_ledger.points)
            state TEXT NOT NULL DEFAULT 'active',    -- active | suspended (benefits consent withdrawn)
            channel TEXT NOT NULL,                   -- counter | diner
            created_ms INTEGER NOT NULL,
            last_visit_ms INTEGER
        );
        CREATE INDEX mem_members_phone ON mem_members (phone_bidx);
        CREATE TABLE mem_consents (
            id INTEGER PRIMARY KEY,
            member_id INTEGER NOT NULL,
            purpose TEXT NOT NULL,                   -- benefits | marketing | birthday
            granted INTEGER NOT NULL,
            text_version TEXT NOT NULL,
            channel TEXT NOT NULL,
            by TEXT NOT NULL DEFAULT '',
            ts_ms INTEGER NOT NULL
        );
        CREATE INDEX mem_consents_member ON mem_consents (member_id, purpose, id);
        CREATE TABLE mem_ledger (
            id INTEGER PRIMARY KEY,
            member_id INTEGER NOT NULL,
            ts_ms INTEGER NOT NULL,
            kind TEXT NOT NULL,                      -- earn | redeem | reverse | restore | expire | adjust
            points INTEGER NOT NULL,                 -- signed
            idem TEXT NOT NULL UNIQUE,               -- bill + rule, request id, device + sequence, lot
            req TEXT NOT NULL DEFAULT '',            -- digest of the request (a key reused for another is refused)
            session_id INTEGER,
            lot_id INTEGER,
            ref TEXT NOT NULL DEFAULT '',
            who TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX mem_ledger_member ON mem_ledger (member_id, id);
        CREATE INDEX mem_ledger_session ON mem_ledger (session_id);
        CREATE TABLE mem_lots (
            id INTEGER PRIMARY KEY,
            member_id INTEGER NOT NULL,
            entry_id INTEGER NOT NULL UNIQUE,
            earned_ms INTEGER NOT NULL,
            expires_ms INTEGER NOT NULL,
            points INTEGER NOT NULL,
            remaining INTEGER NOT NULL CHECK (remaining >= 0)
        );
        CREATE INDEX mem_lots_member ON mem_lots (member_id, expires_ms);
        CREATE INDEX mem_lots_expiry ON mem_lots (expires_ms) WHERE remaining > 0;
        CREATE TABLE mem_lot_use (
            entry_id INTEGER NOT NULL,
            lot_id INTEGER NOT NULL,
            points INTEGER NOT NULL,
            PRIMARY KEY (entry_id, lot_id)
        );
        CREATE TABLE mem_benefits (
            id INTEGER PRIMARY KEY,
            code TEXT NOT NULL UNIQUE,
            member_id INTEGER NOT NULL,
            kind TEXT NOT NULL,                      -- birthday | tier | campaign (later: booking, event)
            issue_key TEXT NOT NULL UNIQUE,          -- birthday:MEMBER:YEAR, tier:MEMBER:TIER:N, campaign:...
            title_zh TEXT NOT NULL,
            title_en TEXT NOT NULL,
            value_kind TEXT NOT NULL,                -- amount | percent | access
            value INTEGER NOT NULL,
            min_spend_cents INTEGER NOT NULL DEFAULT 0,
            valid_from_ms INTEGER NOT NULL,
            valid_to_ms INTEGER NOT NULL,
            state TEXT NOT NULL DEFAULT 'issued',    -- issued | applied | redeemed | expired | void
            session_id INTEGER,                      -- the bill it is applied to / was redeemed on
            used_on TEXT NOT NULL DEFAULT '',        -- bill:SESSION (later booking:ID, event:ID)
            used_ms INTEGER,
            used_by TEXT NOT NULL DEFAULT '',
            issued_ms INTEGER NOT NULL,
            issued_by TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX mem_benefits_member ON mem_benefits (member_id, state);
        CREATE UNIQUE INDEX mem_benefits_one_per_bill ON mem_benefits (session_id, kind)
            WHERE state IN ('applied', 'redeemed') AND value_kind != 'access';
        CREATE TABLE mem_visits (
            session_id INTEGER PRIMARY KEY,          -- one member per bill
            member_id INTEGER NOT NULL,
            table_id TEXT NOT NULL,
            attached_ms INTEGER NOT NULL,
            by TEXT NOT NULL DEFAULT '',
            paid_ms INTEGER,
            spend_cents INTEGER NOT NULL DEFAULT 0,
            discount_cents INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX mem_visits_member ON mem_visits (member_id, paid_ms);
        CREATE TABLE mem_tier_log (
            id INTEGER PRIMARY KEY,
            member_id INTEGER NOT NULL,
            ts_ms INTEGER NOT NULL,
            from_tier INTEGER NOT NULL,
            to_tier INTEGER NOT NULL,
            why TEXT NOT NULL
        );
        CREATE TABLE mem_requests (
            id INTEGER PRIMARY KEY,
            member_id INTEGER NOT NULL,
            kind TEXT NOT NULL,                      -- export | erase
            state TEXT NOT NULL DEFAULT 'open',      -- open | done | refused
            created_ms INTEGER NOT NULL,
            done_ms INTEGER,
            done_by TEXT NOT NULL DEFAULT '',
            note TEXT NOT NULL DEFAULT ''
        );
        CREATE UNIQUE INDEX mem_requests_open ON mem_requests (member_id, kind) WHERE state = 'open';
        CREATE TABLE mem_feedback (
            id INTEGER PRIMARY KEY,
            session_id INTEGER NOT NULL,
            table_id TEXT NOT NULL,
            diner TEXT NOT NULL,                     -- a MAC of the phone's page id, one rating per phone and bill
            rating INTEGER NOT NULL CHECK (rating BETWEEN 1 AND 5),
            comment TEXT NOT NULL DEFAULT '',
            created_ms INTEGER NOT NULL,
            UNIQUE (session_id, diner)
        );
        CREATE TABLE mem_complaints (
            id INTEGER PRIMARY KEY,
            session_id INTEGER,
            line_id INTEGER,
            table_id TEXT NOT NULL DEFAULT '',
            category TEXT NOT NULL,
            note TEXT NOT NULL DEFAULT '',
            staff TEXT NOT NULL,
            day TEXT NOT NULL,                       -- business day (store.timezone), YYYY-MM-DD
            created_ms INTEGER NOT NULL
        );
        CREATE INDEX mem_complaints_day ON mem_complaints (day, category);
        CREATE TABLE mem_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)
    """)


# ---------------------------------------------------------------------------------------------------
# The data inventory of these tables: (table, column, category, purpose, legal basis, retention, mask,
# leaves_store, encrypted). Kept here until gateway/core/inventory.py lands (branch retention); then
# each row becomes an inventory Column. Fides categories; PIPL Art. 13 bases.

_M = "membership (consent, PIPL 13(1)) / the membership contract (13(2))"
_UNTIL_ERASED = "while a member; erased on an erasure request or 3 years after the last visit"
INVENTORY: list[tuple[str, str, str, str, str, str, str, bool, bool]] = [
    ("mem_members", "id", "system.operations", "row id", "not personal data", "with the row", "none", False, False),
    ("mem_members", "member_no", "user.unique_id", "identify the member at the counter", "contract", _UNTIL_ERASED,
     "none", False, False),
    ("mem_members", "nickname", "user.name", "greet the member", "consent", _UNTIL_ERASED, "mask_name", False, False),
    ("mem_members", "phone_ct", "user.contact.phone_number", "find the member by phone", "consent", _UNTIL_ERASED,
     "phone 3+4 (138****5678)", False, True),
    ("mem_members", "phone_bidx", "user.contact.phone_number", "blind index of the phone (13 bits)", "consent",
     _UNTIL_ERASED, "hidden", False, False),
    ("mem_members", "birthday", "user.demographic.date_of_birth", "birthday perk (month-day only)", "consent",
     "blanked when the birthday consent is withdrawn", "none", False, False),
    ("mem_members", "preferences", "user.behavior.purchase_history", "serve the member as they like", "consent",
     _UNTIL_ERASED, "none", False, False),
    ("mem_members", "allergies_ct", "user.health_and_medical", "warn the kitchen (忌口/allergies)", "consent",
     _UNTIL_ERASED, "shown to staff serving the member", False, True),
    ("mem_members", "card_ref", "user.unique_id", "identify by member card (HMAC, never the card number)",
     "contract", _UNTIL_ERASED, "hidden", False, False),
    ("mem_members", "qr_version", "system.operations", "revoke member QR links", "not personal data", "with the row",
     "none", False, False),
    ("mem_members", "tier", "user.behavior", "tier benefits", "contract", _UNTIL_ERASED, "none", False, False),
    ("mem_members", "tier_since_ms", "user.behavior", "tier hold", "contract", _UNTIL_ERASED, "none", False, False),
    ("mem_members", "tier_hold_until_ms", "user.behavior", "tier hold", "contract", _UNTIL_ERASED, "none", False,
     False),
    ("mem_members", "points", "user.financial", "cached points balance", "contract", _UNTIL_ERASED, "none", False,
     False),
    ("mem_members", "state", "system.operations", "membership state", "not personal data", "with the row", "none",
     False, False),
    ("mem_members", "channel", "system.operations", "where the member registered", "not personal data",
     "with the row", "none", False, False),
    ("mem_members", "created_ms", "user.behavior", "membership since", "contract", _UNTIL_ERASED, "none", False,
     False),
    ("mem_members", "last_visit_ms", "user.behavior", "active member counts", "contract", _UNTIL_ERASED, "none",
     False, False),
    *[("mem_consents", c, cat, "proof of consent (PIPL 14)", "legal obligation",
       "3 years after the membership ends", "none", False, False)
      for c, cat in (("id", "system.operations"), ("member_id", "user.unique_id"), ("purpose", "user.behavior"),
                     ("granted", "user.behavior"), ("text_version", "user.behavior"), ("channel", "user.behavior"),
                     ("by", "user.behavior"), ("ts_ms", "user.behavior"))],
    *[("mem_ledger", c, "user.financial", "points ledger (append-only)", "contract", _UNTIL_ERASED, "none", False,
       False)
      for c in ("id", "member_id", "ts_ms", "kind", "points", "idem", "req", "session_id", "lot_id", "ref", "who")],
    *[("mem_lots", c, "user.financial", "points lots and expiry", "contract", _UNTIL_ERASED, "none", False, False)
      for c in ("id", "member_id", "entry_id", "earned_ms", "expires_ms", "points", "remaining")],
    *[("mem_lot_use", c, "user.financial", "which lots a debit used", "contract", _UNTIL_ERASED, "none", False, False)
      for c in ("entry_id", "lot_id", "points")],
    *[("mem_benefits", c, "user.financial", "coupons and perks", "contract", _UNTIL_ERASED, "none", False, False)
      for c in ("id", "code", "member_id", "kind", "issue_key", "title_zh", "title_en", "value_kind", "value",
                "min_spend_cents", "valid_from_ms", "valid_to_ms", "state", "session_id", "used_on", "used_ms",
                "used_by", "issued_ms", "issued_by")],
    *[("mem_visits", c, "user.behavior.purchase_history", "bills of a member (tier by spend)", "contract",
       _UNTIL_ERASED, "none", False, False)
      for c in ("session_id", "member_id", "table_id", "attached_ms", "by", "paid_ms", "spend_cents",
                "discount_cents")],
    *[("mem_tier_log", c, "user.behavior", "tier changes", "contract", _UNTIL_ERASED, "none", False, False)
      for c in ("id", "member_id", "ts_ms", "from_tier", "to_tier", "why")],
    *[("mem_requests", c, "user.behavior", "data-subject requests (PIPL 45, 47)", "legal obligation",
       "3 years after completion", "none", False, False)
      for c in ("id", "member_id", "kind", "state", "created_ms", "done_ms", "done_by", "note")],
    ("mem_feedback", "id", "system.operations", "row id", "not personal data", "180 days", "none", False, False),
    ("mem_feedback", "session_id", "system.operations", "which bill", "not personal data", "180 days", "none", False,
     False),
    ("mem_feedback", "table_id", "system.operations", "which table", "not personal data", "180 days", "none", False,
     False),
    ("mem_feedback", "diner", "user.device", "one rating per phone (MAC of a random page id)", "consent", "180 days",
     "hidden", False, False),
    ("mem_feedback", "rating", "user.content", "service quality", "consent", "180 days", "none", True, False),
    ("mem_feedback", "comment", "user.content.free_text", "service quality", "consent", "180 days", "redact",
     False, False),
    ("mem_feedback", "created_ms", "system.operations", "when", "not personal data", "180 days", "none", False,
     False),
    *[("mem_complaints", c, "system.operations", "complaints per day and category", "not personal data", "1 year",
       "none", c == "category", False)
      for c in ("id", "session_id", "line_id", "table_id", "category", "day", "created_ms")],
    ("mem_complaints", "note", "user.content.free_text", "what went wrong", "contract", "1 year", "redact", False,
     False),
    ("mem_complaints", "staff", "user.name", "who logged it", "employment", "1 year", "none", False, False),
    ("mem_meta", "key", "system.operations", "summary cursor", "not personal data", "kept", "none", False, False),
    ("mem_meta", "value", "system.operations", "summary cursor", "not personal data", "kept", "none", False, False),
]
PURPOSE = _M
