"""Ordering tables (named migrations, applied once each)."""

from __future__ import annotations

from gateway.core.inventory import (
    CONSENT,
    CONTRACT,
    EMPLOYMENT,
    HIDDEN,
    LEGAL_OBLIGATION,
    NONE,
    REDACT,
    Column,
    Declaration,
    Retention,
    SubjectHook,
    Table,
    after,
    ops,
    until,
)
from gateway.ordering import subjects
from gateway.store.db import Connection
from gateway.store.migrations import migration, run_script


@migration("0200_ordering")
def _ordering(conn: Connection) -> None:
    run_script(conn, """
        CREATE TABLE ord_stations (
            id TEXT PRIMARY KEY,
            pos INTEGER NOT NULL DEFAULT 0,
            name_zh TEXT NOT NULL,
            name_en TEXT NOT NULL,
            printer TEXT NOT NULL DEFAULT '',
            backup TEXT NOT NULL DEFAULT '',
            kds INTEGER NOT NULL DEFAULT 1
        );
        CREATE TABLE ord_categories (
            id TEXT PRIMARY KEY,
            pos INTEGER NOT NULL DEFAULT 0,
            name_zh TEXT NOT NULL,
            name_en TEXT NOT NULL,
            station TEXT NOT NULL DEFAULT ''
        );
        CREATE TABLE ord_items (
            id TEXT PRIMARY KEY,
            category_id TEXT NOT NULL,
            pos INTEGER NOT NULL DEFAULT 0,
            name_zh TEXT NOT NULL,
            name_en TEXT NOT NULL,
            desc_zh TEXT NOT NULL DEFAULT '',
            desc_en TEXT NOT NULL DEFAULT '',
            price_cents INTEGER NOT NULL,
            allergens TEXT NOT NULL DEFAULT '[]',
            options TEXT NOT NULL DEFAULT '[]',
            photo TEXT NOT NULL DEFAULT '',
            station TEXT NOT NULL DEFAULT '',
            active INTEGER NOT NULL DEFAULT 1,
            sold_out INTEGER NOT NULL DEFAULT 0,
            stock INTEGER              -- NULL: not counted
        );
        CREATE TABLE ord_tables (
            id TEXT PRIMARY KEY,
            pos INTEGER NOT NULL DEFAULT 0,
            label TEXT NOT NULL,
            area TEXT NOT NULL DEFAULT '',
            seats INTEGER NOT NULL DEFAULT 4,
            version INTEGER NOT NULL DEFAULT 1
        );
        CREATE TABLE ord_sessions (
            id INTEGER PRIMARY KEY,
            table_id TEXT NOT NULL,
            opened_ms INTEGER NOT NULL,
            closed_ms INTEGER,
            opened_by TEXT NOT NULL DEFAULT '',
            covers INTEGER NOT NULL DEFAULT 0,
            paid_ms INTEGER,
            rounds INTEGER NOT NULL DEFAULT 0
        );
        CREATE UNIQUE INDEX ord_sessions_open ON ord_sessions (table_id) WHERE closed_ms IS NULL;
        CREATE TABLE ord_diners (
            id TEXT PRIMARY KEY,
            nickname TEXT NOT NULL,
            created_ms INTEGER NOT NULL
        );
        CREATE TABLE ord_cart (
            id INTEGER PRIMARY KEY,
            session_id INTEGER NOT NULL,
            item_id TEXT NOT NULL,
            qty INTEGER NOT NULL,
            mods TEXT NOT NULL DEFAULT '[]',
            note TEXT NOT NULL DEFAULT '',
            diner TEXT NOT NULL DEFAULT '',
            created_ms INTEGER NOT NULL
        );
        CREATE INDEX ord_cart_session ON ord_cart (session_id);
        CREATE TABLE ord_rounds (
            id INTEGER PRIMARY KEY,
            session_id INTEGER NOT NULL,
            table_id TEXT NOT NULL,
            round_no INTEGER NOT NULL,
            idem_key TEXT NOT NULL UNIQUE,
            created_ms INTEGER NOT NULL,
            total_cents INTEGER NOT NULL,
            diner TEXT NOT NULL DEFAULT '',
            queue_no INTEGER
        );
        CREATE INDEX ord_rounds_session ON ord_rounds (session_id);
        CREATE TABLE ord_lines (
            id INTEGER PRIMARY KEY,
            round_id INTEGER NOT NULL,
            session_id INTEGER NOT NULL,
            table_id TEXT NOT NULL,
            item_id TEXT NOT NULL,
            name_zh TEXT NOT NULL,
            name_en TEXT NOT NULL,
            qty INTEGER NOT NULL,
            unit_cents INTEGER NOT NULL,
            mods TEXT NOT NULL DEFAULT '[]',
            allergens TEXT NOT NULL DEFAULT '[]',
            note TEXT NOT NULL DEFAULT '',
            diner TEXT NOT NULL DEFAULT '',
            station TEXT NOT NULL,
            ticket_id INTEGER,
            status TEXT NOT NULL DEFAULT 'sent',   -- sent|received|cooking|served|void
            comp INTEGER NOT NULL DEFAULT 0,
            reason TEXT NOT NULL DEFAULT '',
            created_ms INTEGER NOT NULL,
            received_ms INTEGER,
            served_ms INTEGER
        );
        CREATE INDEX ord_lines_session ON ord_lines (session_id);
        CREATE INDEX ord_lines_ticket ON ord_lines (ticket_id);
        CREATE TABLE ord_tickets (
            id INTEGER PRIMARY KEY,
            round_id INTEGER NOT NULL,
            table_id TEXT NOT NULL,
            round_no INTEGER NOT NULL,
            station TEXT NOT NULL,
            job_id TEXT,
            printer TEXT NOT NULL DEFAULT '',
            state TEXT NOT NULL DEFAULT 'queued',  -- queued|sent|confirmed|failed|kds
            rerouted_from TEXT NOT NULL DEFAULT '',
            reprints INTEGER NOT NULL DEFAULT 0,
            created_ms INTEGER NOT NULL,
            received_ms INTEGER,
            done_ms INTEGER
        );
        CREATE INDEX ord_tickets_station ON ord_tickets (station, done_ms);
        CREATE INDEX ord_tickets_job ON ord_tickets (job_id);
        CREATE TABLE ord_tasks (
            id INTEGER PRIMARY KEY,
            session_id INTEGER NOT NULL,
            table_id TEXT NOT NULL,
            kind TEXT NOT NULL,                     -- waiter|bill|rush
            line_id INTEGER,
            created_ms INTEGER NOT NULL,
            ack_ms INTEGER,
            ack_by TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX ord_tasks_open ON ord_tasks (ack_ms);
        CREATE TABLE ord_staff (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            role TEXT NOT NULL,
            pin_hash TEXT NOT NULL,
            active INTEGER NOT NULL DEFAULT 1,
            created_ms INTEGER NOT NULL
        );
        CREATE TABLE ord_payments (
            id INTEGER PRIMARY KEY,
            session_id INTEGER NOT NULL,
            table_id TEXT NOT NULL,
            method TEXT NOT NULL,                   -- cash|card|qr
            amount_cents INTEGER NOT NULL,
            staff TEXT NOT NULL,
            reference TEXT NOT NULL DEFAULT '',
            ts_ms INTEGER NOT NULL
        );
        CREATE TABLE ord_audit (
            id INTEGER PRIMARY KEY,
            ts_ms INTEGER NOT NULL,
            staff TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT ''
        );
        CREATE TABLE ord_queue (
            id INTEGER PRIMARY KEY,
            number INTEGER NOT NULL,
            token TEXT NOT NULL UNIQUE,
            party INTEGER NOT NULL DEFAULT 2,
            created_ms INTEGER NOT NULL,
            session_id INTEGER,                     -- the held pre-order session
            seated_ms INTEGER,
            table_id TEXT
        );
        CREATE TABLE ord_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)
    """)


@migration("0210_ordering_queue")
def _queue(conn: Connection) -> None:
    """Queue numbers (取号): A/B prefix per party size, per-day numbering, call (叫号) and skip (过号).

    ``phone`` is a MAC of the phone's random page id (idempotent taking), never a phone number.
    """
    run_script(conn, """
        ALTER TABLE ord_queue ADD COLUMN prefix TEXT NOT NULL DEFAULT 'A';
        ALTER TABLE ord_queue ADD COLUMN day TEXT NOT NULL DEFAULT '';
        ALTER TABLE ord_queue ADD COLUMN phone TEXT NOT NULL DEFAULT '';
        ALTER TABLE ord_queue ADD COLUMN nickname TEXT NOT NULL DEFAULT '';
        ALTER TABLE ord_queue ADD COLUMN called_ms INTEGER;
        ALTER TABLE ord_queue ADD COLUMN calls INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE ord_queue ADD COLUMN skipped_ms INTEGER;
        CREATE UNIQUE INDEX ord_queue_number ON ord_queue (day, prefix, number);
        CREATE INDEX ord_queue_phone ON ord_queue (phone, day)
    """)


@migration("0220_ordering_queue_leave")
def _queue_leave(conn: Connection) -> None:
    """A diner may leave the queue (取消排队) from their own page."""
    run_script(conn, "ALTER TABLE ord_queue ADD COLUMN left_ms INTEGER")


@migration("0221_ordering_queue_session_index")
def _queue_session_index(conn: Connection) -> None:
    """Tickets and the KDS look up a session's queue number (排队号) by session."""
    run_script(conn, "CREATE INDEX ord_queue_session ON ord_queue (session_id)")


@migration("0230_ordering_client_origin")
def _client_origin(conn: Connection) -> None:
    """Which client (a MAC of its address, or address and device cookie behind NAT) took a queue
    number or added a cart line: bounds open numbers per client and each client's share of a cart."""
    run_script(conn, """
        ALTER TABLE ord_queue ADD COLUMN origin TEXT NOT NULL DEFAULT '';
        ALTER TABLE ord_cart ADD COLUMN origin TEXT NOT NULL DEFAULT '';
        CREATE INDEX ord_queue_origin ON ord_queue (origin, day)
    """)


@migration("0240_ordering_staff_sessions")
def _staff_sessions(conn: Connection) -> None:
    """Server-side staff sessions: the cookie holds only a random id; the store keeps its SHA-256.

    A session ends (``ended_ms``) on sign-out, PIN reset, role change, account disable or a
    manager's revoke; it also expires after ``ordering.staff_session`` idle and
    ``ordering.staff_session_max`` in all.
    """
    run_script(conn, """
        CREATE TABLE ord_staff_sessions (
            id INTEGER PRIMARY KEY,
            token_hash TEXT NOT NULL UNIQUE,
            staff_id INTEGER NOT NULL,
            created_ms INTEGER NOT NULL,
            seen_ms INTEGER NOT NULL,
            ended_ms INTEGER,
            ended_why TEXT NOT NULL DEFAULT '',
            addr TEXT NOT NULL DEFAULT '',
            agent TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX ord_staff_sessions_staff ON ord_staff_sessions (staff_id, ended_ms)
    """)


@migration("0250_ordering_staff_lockout")
def _staff_lockout(conn: Connection) -> None:
    """Consecutive wrong PINs per account: back-off, then locked until a manager unlocks (NIST SP 800-63B)."""
    run_script(conn, """
        ALTER TABLE ord_staff ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE ord_staff ADD COLUMN failed_ms INTEGER;
        ALTER TABLE ord_staff ADD COLUMN locked_ms INTEGER
    """)


@migration("0290_ordering_audit_to_chain")
def _audit_to_chain(conn: Connection) -> None:
    """The staff action log moves onto the audit chain (gateway/privacy/audit.py).

    Existing ``ord_audit`` rows are appended in their order, keeping their time, with references
    instead of names (``staff:ID/ROLE``) and redacted reasons; then ``ord_audit`` is dropped so no
    second, editable log remains. The carried entries are marked ``{"legacy_id": N}``: the chain
    proves they were not changed after this migration, not before it.
    """
    from gateway.privacy import audit
    from gateway.staff import accounts

    for row_id, ts_ms, who, action, target, reason in conn.execute(
            "SELECT id, ts_ms, staff, action, target, reason FROM ord_audit ORDER BY id").fetchall():
        subject = accounts.audit_subject(conn, target if ":" in target else f"item:{target}")
        if not audit.valid_subject(subject):
            subject = audit.pseudonym(conn, "ref", target)
        act = action if audit.valid_action(action) else "legacy"
        audit.append(conn, accounts.audit_who(conn, who), act, subject, reason, {"legacy_id": row_id}, ts_ms=ts_ms)
    conn.execute("DROP TABLE ord_audit")


@migration("0295_ordering_staff_ids_never_reused")
def _staff_ids_never_reused(conn: Connection) -> None:
    """Staff ids are never given again (AUTOINCREMENT), and start above every ``staff:N`` the audit
    chain names.

    The chain names members by id (``staff:7/manager``) and keeps those entries after the member is
    erased. A plain INTEGER PRIMARY KEY gives the next account max(id) + 1, so erasing the newest
    member and adding another would hand the erased member's entries to the new one: in the chain, in
    a data-subject export and in the unmask counts.
    """
    run_script(conn, """
        CREATE TABLE ord_staff_new (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL UNIQUE,
            role TEXT NOT NULL,
            pin_hash TEXT NOT NULL,
            active INTEGER NOT NULL DEFAULT 1,
            created_ms INTEGER NOT NULL,
            failures INTEGER NOT NULL DEFAULT 0,
            failed_ms INTEGER,
            locked_ms INTEGER
        );
        INSERT INTO ord_staff_new (id, name, role, pin_hash, active, created_ms, failures, failed_ms, locked_ms)
            SELECT id, name, role, pin_hash, active, created_ms, failures, failed_ms, locked_ms FROM ord_staff;
        DROP TABLE ord_staff;
        ALTER TABLE ord_staff_new RENAME TO ord_staff
    """)
    top = conn.execute("SELECT coalesce(max(id), 0) FROM ord_staff").fetchone()[0]
    for (ref,) in conn.execute("SELECT who FROM audit_log WHERE who GLOB 'staff:[0-9]*' UNION "
                               "SELECT subject FROM audit_log WHERE subject GLOB 'staff:[0-9]*'"):
        number = ref[6:].split("/", 1)[0]
        if number.isdigit():
            top = max(top, int(number))
    conn.execute("DELETE FROM sqlite_sequence WHERE name = 'ord_staff'")
    conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('ord_staff', ?)", (top,))


# ------------------------------------------------------------------------------------ inventory
# Every table and column above, for the data inventory (gateway/core/inventory.py). The retention
# job applies each rule; docs/privacy.md is generated from these lines.

_CLOSED = "(SELECT s.closed_ms FROM ord_sessions s WHERE s.id = session_id)"
_ROUND_CLOSED = ("(SELECT s.closed_ms FROM ord_sessions s JOIN ord_rounds r ON r.session_id = s.id "
                 "WHERE r.id = round_id)")
_IN_CLOSED = "session_id IN (SELECT id FROM ord_sessions WHERE closed_ms < ?)"
_ROUND_IN_CLOSED = ("round_id IN (SELECT r.id FROM ord_rounds r JOIN ord_sessions s ON s.id = r.session_id "
                    "WHERE s.closed_ms < ?)")
_CONFIG = until("while it is in the menu or the store's configuration")
_SALES = after(subjects.SALES_KEEP_DAYS, _CLOSED,
               f"{subjects.SALES_KEEP_DAYS}d after the table session closes (a year of local reports; "
               "HQ keeps the books from P/orders/summary)", due=_IN_CLOSED)
_FREE = after(30, _CLOSED, "30d after the table session closes (blanked; the sales row stays)", action="blank",
              due=_IN_CLOSED)
_TICKETS = after(subjects.SALES_KEEP_DAYS, _ROUND_CLOSED, _SALES.text, due=_ROUND_IN_CLOSED)
_CART = after(1, _CLOSED, "1d after the table session closes", due=_IN_CLOSED)
_TASKS = after(30, _CLOSED, "30d after the table session closes", due=_IN_CLOSED)
_STAFF_NAME = "the staff member who did it (names in sales rows become 'erased' on erasure)"
_QUEUE = after(7, "created_ms", "7d after the number was taken")
_STAFF_SESSION = after(30, "coalesce(ended_ms, seen_ms)", "30d after the session ended or was last seen")
_ACCOUNT = until("while the staff account exists (storegw privacy erase --subject staff:NAME)")


def _free_text(name: str, purpose: str, rule: Retention = _FREE) -> Column:
    return Column(name, "user.content.free_text", purpose, CONTRACT, rule, mask=REDACT)


def _nickname(name: str, rule: Retention = _FREE) -> Column:
    return Column(name, "user.name", "the alias a diner chose, shown on tickets and the KDS", CONSENT, rule,
                  mask="mask_name")


INVENTORY = Declaration("ordering", (
    Table("ord_stations", "Kitchen stations", ops("id pos name_zh name_en printer backup kds", _CONFIG, "menu")),
    Table("ord_categories", "Menu categories", ops("id pos name_zh name_en station", _CONFIG, "menu")),
    Table("ord_items", "Menu items", ops("id category_id pos name_zh name_en desc_zh desc_en price_cents allergens "
                                         "options photo station active sold_out stock", _CONFIG, "menu")),
    Table("ord_tables", "Tables and their QR versions", ops("id pos label area seats version", _CONFIG, "tables")),
    Table("ord_meta", "Ordering settings and secrets (table-link key, revision)",
          ops("key", until("for the life of the database")) + (
              Column("value", "system.authentication", "settings and the table-link secret", NONE,
                     until("for the life of the database"), mask=HIDDEN),)),
    Table("ord_sessions", "Table sessions (a party from opening to clearing); a sales record",
          ops("id table_id opened_ms closed_ms covers paid_ms rounds",
              after(subjects.SALES_KEEP_DAYS, "closed_ms", _SALES.text), "sales") + (
              Column("opened_by", "user.name", _STAFF_NAME, EMPLOYMENT,
                     after(subjects.SALES_KEEP_DAYS, "closed_ms", _SALES.text), leaves_store=False),),
          created="opened_ms"),
    Table("ord_diners", "Nicknames diners chose on their phones (keyed by a random page id)",
          (Column("id", "user.unique_id.pseudonymous", "the phone's random page id", CONSENT,
                  after(30, "created_ms", "30d after it was set"), mask=HIDDEN),
           _nickname("nickname", after(30, "created_ms", "30d after it was set")),
           Column("created_ms", "system.operations", "when it was set", NONE,
                  after(30, "created_ms", "30d after it was set"))), created="created_ms"),
    Table("ord_cart", "Cart lines not yet sent",
          ops("id session_id item_id qty mods created_ms", _CART,
              "ordering") + (
              _free_text("note", "kitchen instructions", _CART),
              _nickname("diner", _CART),
              Column("origin", "user.unique_id.pseudonymous", "a MAC of the client (per-client limits)", CONTRACT,
                     _CART, mask=HIDDEN)),
          created="created_ms"),
    Table("ord_rounds", "Rounds sent to the kitchen; a sales record",
          ops("id session_id table_id round_no idem_key created_ms total_cents queue_no", _SALES, "sales") + (
              _nickname("diner"),), created="created_ms"),
    Table("ord_lines", "Order lines; a sales record (items, amounts, times)",
          ops("id round_id session_id table_id item_id name_zh name_en qty unit_cents mods allergens station "
              "ticket_id status comp created_ms received_ms served_ms", _SALES, "sales") + (
              _free_text("note", "kitchen instructions (printed, on the KDS)"),
              _nickname("diner"),
              _free_text("reason", "why staff comped or voided the line")), created="created_ms"),
    Table("ord_tickets", "Kitchen tickets and their print state",
          ops("id round_id table_id round_no station job_id printer state rerouted_from reprints created_ms "
              "received_ms done_ms", _TICKETS, "kitchen"),
          created="created_ms"),
    Table("ord_tasks", "Waiter calls, bill requests, rushes",
          ops("id session_id table_id kind line_id created_ms ack_ms",
              _TASKS, "service") + (
              Column("ack_by", "user.name", _STAFF_NAME, EMPLOYMENT,
                     _TASKS),), created="created_ms"),
    Table("ord_payments", "Payments taken; a sales record",
          ops("id session_id table_id method amount_cents ts_ms",
              after(subjects.SALES_KEEP_DAYS, "ts_ms", f"{subjects.SALES_KEEP_DAYS}d after the payment"), "sales") + (
              Column("staff", "user.name", _STAFF_NAME, EMPLOYMENT,
                     after(subjects.SALES_KEEP_DAYS, "ts_ms", f"{subjects.SALES_KEEP_DAYS}d after the payment")),
              Column("reference", "user.financial", "the payment's reference (reconciliation, disputes)",
                     LEGAL_OBLIGATION, after(180, "ts_ms", "180d after the payment (disputes; blanked)",
                                             action="blank"), mask=REDACT)),
          created="ts_ms"),
    Table("ord_queue", "Queue numbers (取号) and their pre-order sessions",
          ops("id number token party created_ms session_id seated_ms table_id prefix day called_ms calls skipped_ms "
              "left_ms", _QUEUE, "queue") + (
              Column("phone", "user.unique_id.pseudonymous", "a MAC of the phone's page id (idempotent taking)",
                     CONSENT, _QUEUE, mask=HIDDEN),
              Column("origin", "user.unique_id.pseudonymous", "a MAC of the client (per-client limits)", CONTRACT,
                     _QUEUE, mask=HIDDEN),
              _nickname("nickname", _QUEUE)),
          created="created_ms",
          subjects=(SubjectHook("queue", "queue:A12 (today's number) or queue:YYYYMMDD/A12", subjects.queue_export,
                                subjects.queue_erase, subjects.queue_values, subjects.queue_normalise),)),
    Table("ord_staff", "Staff accounts",
          (Column("id", "system.operations", "account id", NONE, _ACCOUNT),
           Column("name", "user.name", "sign-in name shown to colleagues", EMPLOYMENT, _ACCOUNT),
           Column("role", "user.job_title", "what the member may do", EMPLOYMENT, _ACCOUNT),
           Column("pin_hash", "user.authorization.credentials", "Argon2 hash of the PIN (or of the password, "
                  "auth = 'totp')", EMPLOYMENT, _ACCOUNT, mask=HIDDEN),
           # the staff package's columns (gateway/staff/schema.py, 0400_staff_totp_unmask)
           Column("totp_sealed", "user.authorization.credentials", "TOTP secret of a manager, technician or auditor",
                  EMPLOYMENT, _ACCOUNT, mask=HIDDEN, encrypted=True),
           *ops("active created_ms failures failed_ms locked_ms auth totp_step", _ACCOUNT, "sign-in state")),
          created="created_ms",
          subjects=(SubjectHook("staff", "staff:NAME (the sign-in name)", subjects.staff_export, subjects.staff_erase,
                                subjects.staff_values),)),
    Table("ord_staff_sessions", "Signed-in staff sessions (server side)",
          ops("id staff_id created_ms seen_ms ended_ms ended_why", _STAFF_SESSION, "sign-in") + (
              Column("token_hash", "user.authorization.credentials", "SHA-256 of the session cookie", EMPLOYMENT,
                     _STAFF_SESSION, mask=HIDDEN),
              Column("addr", "user.device.ip_address", "where the session signs in from (managers see it)",
                     EMPLOYMENT, _STAFF_SESSION),
              Column("agent", "user.device", "the browser (managers see it)", EMPLOYMENT, _STAFF_SESSION)),
          created="created_ms"),
))
