"""`storegw members check` names a member whose cached balance was tampered with (exit 1); every column
of the members tables is declared in the inventory; the planted phone and allergy are nowhere in
plaintext in the database (read with its SQLCipher key) and never in the logs; config is validated."""

from __future__ import annotations

import logging

import pytest
from click.testing import CliRunner
from memhelpers import register

from gateway.app import build
from gateway.cli import main
from gateway.config import load, parse
from gateway.core.errors import ConfigError
from gateway.members.schema import INVENTORY


def _config(tmp_path):
    path = tmp_path / "storegw.toml"
    path.write_text(f"""
[store]
id = "bj-007"
data_dir = "{(tmp_path / 'data').as_posix()}"

[uplink]
enabled = false

[web]
listen = "127.0.0.1:18099"
""")
    return path


def test_members_check_names_a_tampered_balance(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    path = _config(tmp_path)
    gw = build(load(path))
    gw.start(web=False, devices=False)
    try:
        mem = gw.services["members"]
        a = register(mem, phone="13812345678", allergies="芝麻 sesame")
        b = register(mem, phone="13987654321")
        mem.points(a["id"], "earn", 120, "check-earn-1", "boss")
        mem.points(b["id"], "earn", 80, "check-earn-2", "boss")
        mem.points(b["id"], "redeem", 30, "check-redeem-1", "boss")
        assert a["no"].startswith("BJ007-")
    finally:
        gw.stop()
    ok = CliRunner().invoke(main, ["members", "check", "--config", str(path)])
    assert ok.exit_code == 0, ok.output
    assert "2 members" in ok.output

    gw = build(load(path))
    gw.start(web=False, devices=False)
    try:
        gw.store.writer.call(lambda c: c.execute("UPDATE mem_members SET points = points + 5 WHERE id = ?",
                                                 (b["id"],)))
        conn = gw.store.read()
        dump = []
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            for row in conn.execute(f"SELECT * FROM {table}").fetchall():  # noqa: S608
                dump.append(repr(row))
        text = "\n".join(dump)
        assert "13812345678" not in text and "13987654321" not in text and "sesame" not in text
    finally:
        gw.stop()
    bad = CliRunner().invoke(main, ["members", "check", "--config", str(path)])
    assert bad.exit_code == 1
    assert b["no"] in bad.output and a["no"] not in bad.output
    assert "cached 55, ledger sum 50" in bad.output
    logs = "\n".join(r.getMessage() for r in caplog.records)
    assert "13812345678" not in logs and "sesame" not in logs


def test_every_members_column_is_declared(gw):
    conn = gw.store.read()
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                         "AND name LIKE 'mem\\_%' ESCAPE '\\'")]
    schema = {t: [r[1] for r in conn.execute(f"PRAGMA table_info({t})")] for t in tables}
    declared = {t.name: [c.name for c in t.columns] for t in INVENTORY.tables}
    assert set(schema) == set(declared)
    for t in tables:
        assert sorted(schema[t]) == sorted(declared[t]), t
    encrypted = {(t.name, c.name) for t in INVENTORY.tables for c in t.columns if c.encrypted}
    assert encrypted == {("mem_members", "phone_ct"), ("mem_members", "allergies_ct")}
    assert [c.name for t in INVENTORY.tables for c in t.columns if c.leaves_store] == []


def test_member_export_and_erase_hooks(gw, mem):
    from gateway.members import subjects

    out = register(mem, phone="13812345678", allergies="sesame")
    mem.points(out["id"], "earn", 50, "hook-earn-01", "boss")
    conn = gw.store.read()
    exported = subjects.member_export(conn, out["no"].lower())
    assert exported["mem_members"][0]["phone_ct"] == "(field-encrypted)"
    assert exported["mem_ledger"][0]["points"] == 50
    erased = gw.store.writer.call(lambda c: subjects.member_erase(c, out["no"], 0))
    assert erased.erased["mem_members"] == 1 and erased.erased["mem_ledger"] == 1
    assert erased.retained and erased.retained[0]["basis"] == "legal obligation"
    assert subjects.member_values(gw.store.read()) == []
    assert mem.check() == []


@pytest.mark.parametrize(("extra", "key"), [
    ('tier_names = ["a", "b"]', "members.tier_names_en"),
    ("tier_thresholds = [0, 10, 5, 20]", "members.tier_thresholds"),
    ("tier_discount_pct = [0, 2, 5, 80]", "members.tier_discount_pct"),
    ('downgrade = "sometimes"', "members.downgrade"),
    ("tier_thresholds = [0, 1.5, 5, 20]", "members.tier_thresholds"),
])
def test_members_config_is_validated(extra, key):
    import tomllib

    with pytest.raises(ConfigError) as err:
        parse(tomllib.loads(f'[store]\nid = "sh-001"\n[members]\n{extra}\n'))
    assert err.value.key == key
