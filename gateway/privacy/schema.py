"""The privacy tables: the audit chain, its checkpoints and the public keys that signed them.

``audit_log`` is append-only: triggers refuse UPDATE and DELETE, so only a deliberate change of the
schema (dropping a trigger) can alter history, and ``storegw audit verify`` catches that
(gateway/privacy/audit.py). ``audit_checkpoints`` and ``audit_keys`` are append-only as well.

``INVENTORY`` declares them for the data inventory (``gateway/core/inventory.py``). Their rule is
one the retention job does not run: deleting an entry would break the chain (every later hash
commits to it) and the checkpoints HQ holds. That is acceptable because an entry holds references
(``staff:7/manager``, ``table:A1``, a keyed pseudonym) and a redacted reason, never a value; erasing
a person removes what the reference points to (the staff account), and the entries then name an
account that no longer exists (docs/privacy.md, "The audit chain and retention").
"""

from __future__ import annotations

from gateway.core.inventory import LEGAL_OBLIGATION, NONE, REDACT, Column, Declaration, Table, ops, until
from gateway.store.db import Connection
from gateway.store.migrations import migration, run_script

_APPEND_ONLY = ("audit_log", "audit_checkpoints", "audit_keys")


@migration("0050_audit")
def _audit(conn: Connection) -> None:
    run_script(conn, """
        CREATE TABLE audit_log (
            seq INTEGER PRIMARY KEY,            -- 1, 2, 3 ... without gaps
            ts_ms INTEGER NOT NULL,
            who TEXT NOT NULL,                  -- staff:ID/ROLE, system or cli
            action TEXT NOT NULL,
            subject TEXT NOT NULL,              -- a reference (table:A1, staff:7, guest:p:...), never a value
            why TEXT NOT NULL DEFAULT '',       -- cleaned and redacted reason
            detail TEXT NOT NULL DEFAULT '{}',  -- canonical JSON, no personal data
            prev BLOB NOT NULL,                 -- the chain hash of entry seq - 1
            hash BLOB NOT NULL                  -- SHA-256(0x01 || prev || SHA-256(0x00 || entry))
        );
        CREATE TABLE audit_checkpoints (
            id INTEGER PRIMARY KEY,
            length INTEGER NOT NULL,
            ts_ms INTEGER NOT NULL,
            head BLOB NOT NULL,
            key_id TEXT NOT NULL,
            message TEXT NOT NULL               -- the signed message as sent to HQ
        );
        CREATE INDEX audit_checkpoints_length ON audit_checkpoints (length);
        CREATE TABLE audit_keys (
            key_id TEXT PRIMARY KEY,
            public_key TEXT NOT NULL,           -- base64 of the raw Ed25519 public key
            created_ms INTEGER NOT NULL
        )
    """)
    for table in _APPEND_ONLY:
        for op in ("UPDATE", "DELETE"):
            conn.execute(f"CREATE TRIGGER {table}_no_{op.lower()} BEFORE {op} ON {table} "
                         f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END")


# ------------------------------------------------------------------------------------ inventory

_CHAIN = until("kept with the chain: append-only, never deleted by the retention job (Cybersecurity Law Art. 21: "
               "logs kept at least 6 months; deleting an entry would break the chain); erasing a person removes "
               "what a reference points to")
_BASIS = "the staff action and sensitive-access log (Cybersecurity Law Art. 21)"

INVENTORY = Declaration("privacy", (
    Table("audit_log", "The audit chain: who did what to which subject, and why (references, never values)",
          (*ops("seq ts_ms action", _CHAIN, "the audit chain"),
           Column("who", "user.unique_id.pseudonymous", "who acted, as a reference: staff:ID/ROLE (the account), a "
                  "keyed pseudonym staff:p:..., system or cli", LEGAL_OBLIGATION, _CHAIN,
                  note=_BASIS),
           Column("subject", "user.unique_id.pseudonymous", "what or whom it acted on, as a reference (table:A1, "
                  "staff:7, dsr:KIND-HASH, KIND:p:PSEUDONYM; keyed hashes)", LEGAL_OBLIGATION, _CHAIN, note=_BASIS),
           Column("why", "user.content.free_text", "the reason typed (free_text at input, masked again on the chain)",
                  LEGAL_OBLIGATION, _CHAIN, mask=REDACT, note=_BASIS),
           *ops("detail prev hash", _CHAIN, "the audit chain (a small JSON without personal data; the links)")),
          created="ts_ms"),
    Table("audit_checkpoints", "Signed checkpoints of the chain (length and head), as sent to HQ",
          ops("id length ts_ms head key_id message", _CHAIN, "anchoring the chain at HQ"), created="ts_ms"),
    Table("audit_keys", "Public keys that signed checkpoints (storegw audit verify)",
          (*ops("key_id created_ms", _CHAIN, "checking checkpoint signatures"),
           Column("public_key", "system.authentication", "an Ed25519 public key", NONE, _CHAIN)),
          created="created_ms"),
))
