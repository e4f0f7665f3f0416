"""The data inventory (issue 10, item 1): every table and column of a freshly migrated database is
declared, a new undeclared column fails, rules are executable, docs/privacy.md is generated."""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest
from privkit import cli, open_db, write_config

from gateway import domains
from gateway.core.inventory import BASES, HIDDEN, NONE, REDACT, SHOW
from gateway.privacy import render
from gateway.store import migrations

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _schema(conn) -> dict[str, list[str]]:
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                         "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
    return {t: [r[1] for r in conn.execute(f"PRAGMA table_info({t})")] for t in tables}


def test_every_table_and_column_after_all_migrations_is_declared(tmp_path):
    conn = open_db(tmp_path / "data")
    schema = _schema(conn)
    undeclared, stale = domains.INVENTORY.gaps(schema)
    assert not undeclared, f"columns not in the data inventory (declare them in their schema.py): {undeclared}"
    assert not stale, f"declared columns that no migration creates: {stale}"
    missing_tables = sorted(set(domains.INVENTORY.tables) - set(schema))
    assert not missing_tables, f"declared tables that no migration creates: {missing_tables}"
    # the tables the issue names are all there
    for name in ("readings", "devices", "windows", "alerts_active", "outbox", "meta", "print_jobs", "ord_lines",
                 "ord_queue", "ord_payments", "ord_staff", "ord_staff_sessions", "ord_diners", "audit_log",
                 "audit_checkpoints", "audit_keys"):
        assert name in domains.INVENTORY.tables
    assert "ord_audit" not in domains.INVENTORY.tables  # carried onto the chain and dropped (0290)


def test_a_migration_adding_an_undeclared_column_fails_the_check(tmp_path):
    throwaway = types.ModuleType("throwaway_schema")

    def add_phone(conn):
        migrations.run_script(conn, "ALTER TABLE ord_queue ADD COLUMN contact_phone TEXT NOT NULL DEFAULT '';"
                                    "CREATE TABLE guest_notes (id INTEGER PRIMARY KEY, text TEXT)")
    add_phone.__module__ = throwaway.__name__
    migrations.migration("9999_throwaway_phone")(add_phone)
    try:
        conn = open_db(tmp_path / "data")
        migrations.apply(conn, (*domains.SCHEMAS, throwaway))
        undeclared, _ = domains.INVENTORY.gaps(_schema(conn))
    finally:
        migrations._MIGRATIONS[:] = [m for m in migrations._MIGRATIONS if m[1] != "9999_throwaway_phone"]
    assert undeclared == ["guest_notes.id", "guest_notes.text", "ord_queue.contact_phone"]


def _masks() -> set[str]:
    try:
        from gateway.core import masking  # branch tripwires moves it here
    except ImportError:
        from devices import masking
    return {n for n in dir(masking) if n.startswith("mask_")} | {SHOW, HIDDEN, REDACT}


def test_every_column_is_well_formed():
    masks = _masks()
    for table, col in domains.INVENTORY.columns():
        where = f"{table.name}.{col.name}"
        assert col.basis in BASES, where
        assert col.mask in masks, f"{where}: mask {col.mask!r} is not in the masking module"
        assert col.retention.text, where
        if col.personal:
            assert col.basis != NONE, where
            assert col.mask != SHOW or col.category in ("user.name", "user.device", "user.device.ip_address",
                                                        "user.job_title") \
                or where in ("audit_log.who", "audit_log.subject"), where  # references, shown to the auditor
            assert not col.leaves_store, f"{where}: personal data does not leave the store yet"


def test_the_audit_chain_is_declared_and_the_job_never_deletes_it():
    """Append-only (a deleted entry breaks every later hash): declared under a legal obligation with a
    rule the retention job does not run; its personal columns hold references and redacted reasons."""
    from gateway.privacy.retention import plan

    chain = [domains.INVENTORY.table(t) for t in ("audit_log", "audit_checkpoints", "audit_keys")]
    assert all(t.owner == "privacy" for t in chain)
    assert not [s for s in plan(domains.INVENTORY) if s.table.name.startswith("audit_")]
    log = chain[0]
    assert [c.name for c in log.personal] == ["who", "subject", "why"]
    assert all(c.basis == "legal obligation" and not c.retention.executable and not c.leaves_store
               for c in log.personal)
    assert log.column("why").mask == REDACT
    assert not chain[1].personal and not chain[2].personal


def test_every_personal_column_of_ordering_and_printing_has_a_rule_the_job_applies():
    from gateway.privacy.retention import plan

    steps = plan(domains.INVENTORY)
    applied = {(s.table.name, c.name) for s in steps for c in s.columns}
    for table, col in domains.INVENTORY.columns():
        if table.owner not in ("ordering", "printing") or not col.personal:
            continue
        erasable = any(h.kind == "staff" for h in table.subjects)
        assert (table.name, col.name) in applied or erasable, \
            f"{table.name}.{col.name} has no retention rule the job applies ({col.retention.text})"
    # and every ordering/printing table that holds personal data is touched by some step
    for table in domains.INVENTORY:
        if table.owner in ("ordering", "printing") and table.personal and not table.subjects:
            assert any(s.table.name == table.name for s in steps), table.name


def test_rules_run_children_before_the_tables_their_clock_reads():
    from gateway.privacy.retention import plan

    order = [s.table.name for s in plan(domains.INVENTORY) if s.action == "delete"]
    for child in ("ord_lines", "ord_rounds", "ord_cart", "ord_tasks"):
        assert order.index(child) < order.index("ord_sessions"), order
    assert order.index("ord_tickets") < order.index("ord_rounds"), order


def test_docs_privacy_md_is_generated_from_the_inventory():
    text = (DOCS / "privacy.md").read_text(encoding="utf-8")
    expected = render.splice(text, render.markdown(domains.INVENTORY))
    assert text == expected, "docs/privacy.md is stale: run `storegw privacy inventory --markdown` and paste the " \
                             "block between the markers (or: python -m gateway privacy inventory --markdown)"


def test_cli_inventory_text_json_and_markdown(tmp_path):
    res = cli("privacy", "inventory", "--config", str(write_config(tmp_path)))
    assert res.exit_code == 0 and "ord_lines" in res.output and "user.content.free_text" in res.output
    doc = json.loads(cli("privacy", "inventory", "--json").output)
    note = next(c for t in doc if t["table"] == "ord_lines" for c in t["columns"] if c["column"] == "note")
    assert note == {"column": "note", "category": "user.content.free_text", "personal": True,
                    "purpose": "kitchen instructions (printed, on the KDS)", "basis": "contract",
                    "retention": "30d after the table session closes (blanked; the sales row stays)",
                    "retention_days": 30, "retention_from": note["retention_from"], "retention_action": "blank",
                    "retention_by": "privacy retention", "mask": "redact", "leaves_store": False, "encrypted": False}
    assert "ord_sessions" in note["retention_from"]
    assert cli("privacy", "inventory", "--markdown").output.startswith(render.BEGIN)


@pytest.mark.parametrize("subject", ["nobody", "phone:13912345678", "staff:"])
def test_unknown_subjects_are_usage_errors(tmp_path, subject):
    res = cli("privacy", "export", "--subject", subject, "--config", str(write_config(tmp_path)))
    assert res.exit_code == 2 and "subject" in res.output


def test_the_inventory_and_the_field_encryption_registry_agree():
    """Until one is generated from the other: every column the inventory calls encrypted is in
    gateway/privacy/fields.py FIELDS (with its blind index), and every FIELDS entry is declared
    encrypted in the inventory."""
    from gateway.privacy import fields

    registry = {(f.table, f.column): f for f in fields.FIELDS}
    declared = {(t.name, c.name): c for t, c in domains.INVENTORY.columns() if c.encrypted}
    assert set(declared) == set(registry)
    for key, col in declared.items():
        assert (registry[key].index or "") == col.index, key
