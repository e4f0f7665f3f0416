"""The privacy tables: the audit chain, its checkpoints and the public keys that signed them.

``audit_log`` is append-only: triggers refuse UPDATE and DELETE, so only a deliberate change of the
schema (dropping a trigger) can alter history, and ``storegw audit verify`` catches that
(gateway/privacy/audit.py). ``audit_checkpoints`` and ``audit_keys`` are append-only as well.
"""

from __future__ import annotations

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
