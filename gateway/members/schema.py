"""Members tables (named migrations) and the data inventory of every column they add.

Balances are sums of an append-only ledger (``mem_ledger``; every entry has a UNIQUE idempotency
key); ``mem_members.points`` is a cache updated in the same transaction and checked by
``storegw members check``. Benefits (coupons, perks, later priority booking and member events) are
rows of one table whose state moves only by conditional UPDATEs, so one benefit is used once.
"""

from __future__ import annotations

from gateway.core.inventory import (
    CONSENT,
    CONTRACT,
    EMPLOYMENT,
    HIDDEN,
    LEGAL_OBLIGATION,
    REDACT,
    Column,
    Declaration,
    SubjectHook,
    Table,
    after,
    ops,
    until,
)
from gateway.members import subjects
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
# The data inventory of these tables (gateway/core/inventory.py): every column, its Fides category,
# purpose, PIPL Art. 13 basis, retention, mask, whether it leaves the store, whether it is encrypted.

_MEMBER = until("while a member (storegw privacy erase --subject member:NUMBER, after an erasure request)")
_PROOF = until("proof of consent and of requests: kept 3 years after the membership ends (PIPL 14, 47)")
_FEEDBACK = after(180, "created_ms", "180d after the rating")
_COMPLAINT = after(365, "created_ms", "1 year after the complaint (store-health history)")


_STAFF_AND_MEMBER = ("shown only to the member (their own page) and to staff on the member pages and the bill "
                     "panel; never on tickets, in logs or upstream")


def _m(name: str, category: str, purpose: str, basis: str = CONTRACT, **kw: object) -> Column:
    kw.setdefault("mask", HIDDEN)
    kw.setdefault("note", _STAFF_AND_MEMBER)
    return Column(name, category, purpose, basis, _MEMBER, **kw)  # type: ignore[arg-type]


def _fin(names: str, purpose: str) -> tuple[Column, ...]:
    return tuple(_m(n, "user.financial", purpose) for n in names.split())


INVENTORY = Declaration("members", (
    Table("mem_members", "Members: who they are, their tier and cached points balance", (
        *ops("id qr_version state channel", _MEMBER, "membership"),
        _m("member_no", "user.unique_id", "identify the member at the counter (masked on receipts)",
           mask="mask_member_no"),
        _m("nickname", "user.name", "greet the member", CONSENT, mask="mask_name"),
        _m("phone_ct", "user.contact.phone_number", "find the member by phone", CONSENT, mask="mask_phone",
           encrypted=True, index="phone_bidx"),
        _m("phone_bidx", "user.contact.phone_number", "13-bit blind index of the phone", CONSENT, mask=HIDDEN),
        Column("birthday", "user.demographic.date_of_birth", "birthday perk (month-day only)", CONSENT,
               until("blanked when the birthday consent is withdrawn; else while a member"), mask=HIDDEN),
        _m("preferences", "user.behavior.purchase_history", "serve the member as they like", CONSENT, mask=REDACT),
        _m("allergies_ct", "user.health_and_medical", "warn staff serving the member (忌口/allergies)", CONSENT,
           mask=REDACT, encrypted=True),
        _m("card_ref", "user.unique_id.pseudonymous", "identify by member card (HMAC, never the card number)",
           mask=HIDDEN),
        _m("tier", "user.behavior", "tier benefits"),
        _m("tier_since_ms", "user.behavior", "tier hold"),
        _m("tier_hold_until_ms", "user.behavior", "tier hold"),
        _m("points", "user.financial", "cached points balance (= the ledger's sum)"),
        _m("created_ms", "user.behavior", "member since"),
        _m("last_visit_ms", "user.behavior", "active member counts"),
    ), created="created_ms", subjects=(SubjectHook(
        "member", "member:SH001-0000042-7 (the member number)", subjects.member_export, subjects.member_erase,
        subjects.member_values, subjects.member_normalise),)),
    Table("mem_consents", "Consent per purpose, each answer a row (time, text version, channel)", (
        *ops("id", _PROOF, "consent"),
        *(Column(n, "user.behavior", "proof of consent (PIPL 14)", LEGAL_OBLIGATION, _PROOF, mask=HIDDEN,
                 note=_STAFF_AND_MEMBER)
          for n in ("member_id", "purpose", "granted", "text_version", "channel", "ts_ms")),
        Column("by", "user.name", "the staff member who asked (counter)", EMPLOYMENT, _PROOF),
    ), created="ts_ms"),
    Table("mem_ledger", "The points ledger (append-only; balance = sum)", (
        *_fin("id member_id ts_ms kind points idem req session_id lot_id", "points ledger"),
        _m("ref", "user.financial", "what the entry was for (a bill, a note)", mask=REDACT),
        Column("who", "user.name", "the staff member who posted it", EMPLOYMENT, _MEMBER),
    ), created="ts_ms"),
    Table("mem_lots", "Points lots and their expiry (FEFO)", _fin(
        "id member_id entry_id earned_ms expires_ms points remaining", "points expiry"), created="earned_ms"),
    Table("mem_lot_use", "Which lots a debit took from", _fin("entry_id lot_id points", "points expiry")),
    Table("mem_benefits", "Coupons and perks (birthday, tier, campaign; later booking, event)", (
        *_fin("id code member_id kind issue_key value_kind value min_spend_cents valid_from_ms valid_to_ms state "
              "session_id used_on used_ms issued_ms", "coupons and perks"),
        *ops("title_zh title_en", _MEMBER, "coupon titles"),
        Column("used_by", "user.name", "the staff member who applied it", EMPLOYMENT, _MEMBER),
        Column("issued_by", "user.name", "the staff member who issued it", EMPLOYMENT, _MEMBER),
    ), created="issued_ms"),
    Table("mem_visits", "Bills a member was on (spend for tiers, discounts)", (
        *(_m(n, "user.behavior.purchase_history", "bills of a member")
          for n in ("session_id", "member_id", "table_id", "attached_ms", "paid_ms", "spend_cents",
                    "discount_cents")),
        Column("by", "user.name", "the staff member who identified the member", EMPLOYMENT, _MEMBER),
    ), created="attached_ms"),
    Table("mem_tier_log", "Tier changes", tuple(_m(n, "user.behavior", "tier history")
                                                for n in ("id", "member_id", "ts_ms", "from_tier", "to_tier",
                                                          "why")), created="ts_ms"),
    Table("mem_requests", "Export and erasure requests", (
        *(Column(n, "user.behavior", "data-subject requests (PIPL 45, 47)", LEGAL_OBLIGATION, _PROOF, mask=HIDDEN,
                 note=_STAFF_AND_MEMBER)
          for n in ("id", "member_id", "kind", "state", "created_ms", "done_ms")),
        Column("done_by", "user.name", "the staff member who completed it", EMPLOYMENT, _PROOF),
        Column("note", "user.content.free_text", "the outcome or the reason for a refusal", LEGAL_OBLIGATION,
               _PROOF, mask=REDACT),
    ), created="created_ms"),
    Table("mem_feedback", "Visit ratings (现场评价)", (
        *ops("id session_id table_id created_ms", _FEEDBACK, "service quality"),
        Column("diner", "user.unique_id.pseudonymous", "one rating per phone (a MAC of its page id)", CONSENT,
               _FEEDBACK, mask=HIDDEN),
        Column("rating", "user.content", "service quality (counts and the average go to HQ)", CONSENT, _FEEDBACK,
               mask=HIDDEN, note="shown to the phone that gave it; only counts and the average go to HQ"),
        Column("comment", "user.content.free_text", "service quality (stays in the store unless configured)",
               CONSENT, _FEEDBACK, mask=REDACT),
    ), created="created_ms"),
    Table("mem_complaints", "Complaints against dishes, per day and category", (
        *ops("id session_id line_id table_id category day created_ms", _COMPLAINT, "store health"),
        Column("note", "user.content.free_text", "what went wrong", CONTRACT, _COMPLAINT, mask=REDACT),
        Column("staff", "user.name", "who logged it", EMPLOYMENT, _COMPLAINT),
    ), created="created_ms"),
    Table("mem_meta", "Members settings (summary cursor)", ops("key value", until("for the life of the database"))),
))
