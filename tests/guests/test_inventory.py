"""The guest tables' inventory (schema.INVENTORY) declares every column, and every column it calls
encrypted is a declared field (gateway/privacy/fields.py) — a copy like OCA's SOAP log fails here."""

from __future__ import annotations

from gateway.guests.schema import INVENTORY, LEGAL_OBLIGATION
from gateway.privacy.fields import FIELDS


def test_every_guest_column_is_declared(gw) -> None:
    conn = gw.store.read()
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'guest_%'")]
    assert sorted(tables) == ["guest_meta", "guest_people", "guest_receipts", "guest_reports", "guest_stays"]
    declared = {(c.table, c.column) for c in INVENTORY}
    actual = {(t, r[1]) for t in tables for r in conn.execute(f"PRAGMA table_info({t})")}
    assert actual == declared


def test_personal_columns_are_legal_obligation_local_and_encrypted_where_identity() -> None:
    encrypted = {(f.table, f.column) for f in FIELDS}
    for c in INVENTORY:
        assert c.leaves_store is False
        if not c.category.startswith("system."):
            assert c.basis == LEGAL_OBLIGATION, c
        assert c.encrypted == ((c.table, c.column) in encrypted), c
    for col in ("name_ct", "doc_number_ct", "photo_ct", "details_ct", "guardian_ct"):
        assert ("guest_people", col) in encrypted
