"""The guest tables in the data inventory (gateway/core/inventory.py): legal obligation, local only,
encrypted where identity; tests/privacy/test_inventory.py checks every column is declared and the
encrypted ones match gateway/privacy/fields.py."""

from __future__ import annotations

from gateway import domains
from gateway.core.inventory import LEGAL_OBLIGATION


def test_guest_columns_are_legal_obligation_local_and_encrypted_where_identity() -> None:
    cols = {(t.name, c.name): c for t, c in domains.INVENTORY.columns() if t.owner == "guests"}
    assert {t for t, _ in cols} == {"guest_stays", "guest_people", "guest_reports", "guest_receipts", "guest_meta"}
    for key, c in cols.items():
        assert c.leaves_store is False, key
        if c.personal:
            assert c.basis == LEGAL_OBLIGATION, key
            assert c.retention.text, key
    for col in ("name_ct", "doc_number_ct", "photo_ct", "details_ct", "guardian_ct"):
        assert cols[("guest_people", col)].encrypted
    assert cols[("guest_people", "doc_number_ct")].index == "doc_bidx"
    assert cols[("guest_reports", "payload_ct")].encrypted
