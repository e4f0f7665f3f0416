"""The audit chain (issue 10 item 4) on real SQLCipher files: append, triggers, checkpoints, and
`storegw audit verify` against every tamper: a byte changed, an entry deleted, two swapped, the
tail cut, and the whole chain recomputed and re-signed by someone holding the keys (caught against
the checkpoint HQ holds, received through a real Mosquitto)."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from realparts import ROOT, config_text, free_port, validate_hq_message, wait_for

from gateway import domains
from gateway.cli import main
from gateway.config import parse
from gateway.core.masking import mask_id_number, mask_phone
from gateway.privacy import audit
from gateway.store import Store, migrations, open_store
from gateway.store.db import DB_NAME, DatabaseError, connect

PREFIX = "storegw/v1/sh-001"
ORIGIN = f"{PREFIX}/audit"
PHONE, ID_NUMBER = "13812345678", "11010519491231002X"
TEST_SIGNER = audit.Ed25519Signer(bytes(range(32)))  # the store-level tests' signing key (no keyring)


def write_config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "storegw.toml"
    path.write_text(f"""
[store]
id = "sh-001"
data_dir = "{(tmp_path / 'data').as_posix()}"

[uplink]
enabled = false

[web]
listen = "127.0.0.1:{free_port()}"
{extra}
""")
    return path


@pytest.fixture
def cfg_path(tmp_path: Path) -> Path:
    return write_config(tmp_path)


@pytest.fixture
def store(tmp_path: Path, cfg_path: Path) -> Iterator[Store]:
    """An opened, migrated store with its writer running (as `storegw run` has it)."""
    st = open_store(tmp_path / "data", "", domains.SCHEMAS)
    st.start()
    yield st
    if st.writer.alive:
        st.writer.call(audit.unbind)
        st.close()


def bind_checkpointer(st: Store, every: int = 500) -> audit.Checkpointer:
    """Bind a checkpointer, as gateway.app does with the keyring's signer."""
    cp = audit.Checkpointer(PREFIX, "sh-001", TEST_SIGNER, every_entries=every)

    def bind(c: Any) -> None:
        cp.record_key(c)
        audit.bind(c, cp)
    st.writer.call(bind)
    return cp


def fill(st: Store, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        st.writer.call(lambda c, i=i: audit.append(c, f"staff:{i % 3 + 1}/manager", "void", f"line:{i + 1}",
                                                    f"reason number {i}", {"amount": i}))


def run_cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def verify(cfg_path: Path, *extra: str) -> Any:
    return run_cli("audit", "verify", "--config", str(cfg_path), *extra)


def raw_conn(cfg_path: Path) -> Any:
    """The database opened with its key (through the keyring when there is one) by the project's
    connect: the plain SQL API."""
    from gateway.clikit import db_key, load_config

    cfg = load_config(str(cfg_path))
    return connect(cfg.data_path / DB_NAME, db_key(cfg))


def tamper(cfg_path: Path, *statements: str) -> None:
    """What someone holding the database key does: drop the append-only triggers, then edit."""
    conn = raw_conn(cfg_path)
    try:
        conn.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
        conn.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
        for sql in statements:
            conn.execute(sql)
    finally:
        conn.close()


def outbox_checkpoints(st: Store) -> list[dict[str, Any]]:
    return [json.loads(r[0]) for r in st.read().execute(
        "SELECT payload FROM outbox WHERE topic = ? ORDER BY seq", (PREFIX + "/audit/checkpoint",))]


# ------------------------------------------------------------------------------------------------ chain


def test_entries_chain_and_are_append_only(store):
    cp = bind_checkpointer(store, every=0)
    fill(store, 5)
    store.writer.call(cp.write)
    rows = list(audit.entries(store.read()))
    assert [e.seq for e in rows] == [1, 2, 3, 4, 5]
    assert rows[0].prev == audit.ZERO
    for a, b in zip(rows, rows[1:], strict=False):
        assert b.prev == a.hash
    # RFC 6962-style domain separation: leaf 0x00, chain node 0x01
    e = rows[2]
    import hashlib
    leaf = hashlib.sha256(b"\x00" + json.dumps([1, e.seq, e.ts_ms, e.who, e.action, e.subject, e.why, e.detail],
                                               separators=(",", ":"), ensure_ascii=False).encode()).digest()
    assert e.hash == hashlib.sha256(b"\x01" + e.prev + leaf).digest()
    for sql in ("UPDATE audit_log SET why = 'x' WHERE seq = 2", "DELETE FROM audit_log WHERE seq = 5",
                "DELETE FROM audit_checkpoints", "UPDATE audit_keys SET public_key = 'x'"):
        with pytest.raises(DatabaseError, match="append-only"):
            store.writer.call(lambda c, sql=sql: c.execute(sql))
    assert audit.head(store.read())[0] == 5


def test_a_failed_write_leaves_no_entry(store):
    """The entry commits with its action or not at all (same savepoint of the writer)."""
    def action(c: Any) -> None:
        audit.append(c, "system", "clear", "table:A1")
        raise RuntimeError("the audited action failed")
    with pytest.raises(RuntimeError):
        store.writer.call(action)
    assert audit.head(store.read())[0] == 0


def test_malformed_references_are_refused(store):
    for who, subject in (("Zhang San", "table:A1"), ("staff:1/manager", "13812345678"),
                         ("staff:1/manager", "guest:Zhang San")):
        with pytest.raises(ValueError, match="audit"):
            store.writer.call(lambda c, w=who, s=subject: audit.append(c, w, "open", s))


# ------------------------------------------------------------------------------------------------ verify


def test_untouched_chain_verifies(store, cfg_path):
    bind_checkpointer(store, every=10)
    fill(store, 25)
    store.close()
    r = verify(cfg_path)
    assert r.exit_code == 0, r.output
    assert "ok: 25 entries" in r.output and "2 local" in r.output


def _swap(data: Path) -> None:  # data: the config file
    tamper(data, "UPDATE audit_log SET seq = -7 WHERE seq = 7", "UPDATE audit_log SET seq = 7 WHERE seq = 8",
           "UPDATE audit_log SET seq = 8 WHERE seq = -7")


@pytest.mark.parametrize(("how", "first_bad", "says"), [
    ("byte", 7, "entry 7: its content does not match its hash"),
    ("hash-byte", 7, "entry 7: its content does not match its hash"),
    ("deleted", 7, "entry 7 is missing: entry 8 follows entry 6"),
    ("swapped", 7, "entry 7: its link to entry 6 is broken"),
    ("truncated", 18, "entries 18..20 are missing"),
])
def test_each_tamper_is_named(store, cfg_path, tmp_path, how, first_bad, says):
    bind_checkpointer(store, every=20)  # one local checkpoint at 20
    fill(store, 20)
    store.close()
    assert verify(cfg_path).exit_code == 0
    data = cfg_path
    if how == "byte":  # one byte of one entry: line:7 -> line:8
        tamper(data, "UPDATE audit_log SET subject = 'line:8' WHERE seq = 7")
    elif how == "hash-byte":
        tamper(data, "UPDATE audit_log SET hash = CASE WHEN substr(hash, 1, 1) = X'00' THEN X'01' ELSE X'00' END "
                     "|| substr(hash, 2) WHERE seq = 7")
    elif how == "deleted":
        tamper(data, "DELETE FROM audit_log WHERE seq = 7")
    elif how == "swapped":
        _swap(data)
    else:
        tamper(data, "DELETE FROM audit_log WHERE seq >= 18")
    r = verify(cfg_path)
    assert r.exit_code == 1, r.output
    assert f"FAILED: first bad entry {first_bad}" in r.output
    assert says in r.output


def _rewrite_holding_the_keys(cfg_path: Path, signer: audit.Signer, seq: int = 7, prefix: str = PREFIX) -> None:
    """Someone with the database key (and so, for now, the signing key): edit entry ``seq``, recompute the
    chain from there, throw away the local checkpoints and sign new ones that match."""
    conn = raw_conn(cfg_path)
    try:
        for table in ("audit_log", "audit_checkpoints"):
            conn.execute(f"DROP TRIGGER {table}_no_update")
            conn.execute(f"DROP TRIGGER {table}_no_delete")
        conn.execute("BEGIN")
        assert conn.execute("UPDATE audit_log SET why = 'nothing happened' WHERE seq = ?", (seq,)).rowcount == 1
        prev = audit.ZERO
        for e in list(audit.entries(conn)):
            digest = e.recomputed(prev)
            conn.execute("UPDATE audit_log SET prev = ?, hash = ? WHERE seq = ?", (prev, digest, e.seq))
            prev = digest
        lengths = [r[0] for r in conn.execute("SELECT length FROM audit_checkpoints ORDER BY id")]
        conn.execute("DELETE FROM audit_checkpoints")
        cp = audit.Checkpointer(prefix, "sh-001", signer)
        for n in lengths:  # re-sign at the same lengths, over the rewritten chain
            last = conn.execute("SELECT hash FROM audit_log WHERE seq = ?", (n,)).fetchone()[0]
            msg_ts = audit.iso_ms(audit.now_ms())
            head_b64 = audit.b64(bytes(last))
            sig = cp.signer.sign(audit.checkpoint_note(cp.origin, n, head_b64, msg_ts))
            msg = {"id": f"sh-001:audit:{n}:0", "ts": msg_ts, "length": n, "head": head_b64,
                   "key_id": cp.signer.key_id, "sig": audit.b64(sig)}
            conn.execute("INSERT INTO audit_checkpoints (length, ts_ms, head, key_id, message) VALUES (?, 0, ?, ?, ?)",
                         (n, last, cp.signer.key_id, json.dumps(msg)))
        conn.execute("COMMIT")
    finally:
        conn.close()


def test_full_recompute_is_caught_against_hq_checkpoints(store, cfg_path, tmp_path):
    bind_checkpointer(store, every=5)
    fill(store, 20)
    hq = outbox_checkpoints(store)  # what HQ received: checkpoints at 5, 10, 15, 20
    assert [m["length"] for m in hq] == [5, 10, 15, 20]
    for m in hq:
        assert validate_hq_message(PREFIX + "/audit/checkpoint", m) is None
    public_key = store.read().execute("SELECT public_key FROM audit_keys").fetchone()[0]
    at_6_and_7 = [_signed_at(store, 6), _signed_at(store, 7)]
    store.close()
    (tmp_path / "latest.json").write_text(json.dumps(hq[-1]))
    (tmp_path / "history.jsonl").write_text("".join(json.dumps(m) + "\n" for m in hq))

    _rewrite_holding_the_keys(cfg_path, TEST_SIGNER)
    r = verify(cfg_path)
    assert r.exit_code == 0, r.output  # consistent in itself: only a head kept off the board tells
    assert "cannot be told from an intact one" in r.output

    r = verify(cfg_path, "--checkpoint", str(tmp_path / "latest.json"), "--public-key", public_key)
    assert r.exit_code == 1, r.output
    assert "FAILED: first bad entry 1" in r.output and "the first bad entry is among entries 1..20" in r.output

    r = verify(cfg_path, "--checkpoint", str(tmp_path / "history.jsonl"))
    assert r.exit_code == 1, r.output
    assert "FAILED: first bad entry 6" in r.output and "among entries 6..10" in r.output
    assert "the last checkpoint HQ holds that matches is at 5" in r.output

    # had HQ received checkpoints at 6 and 7, they pin it to the one entry
    (tmp_path / "fine.jsonl").write_text("".join(json.dumps(m) + "\n" for m in (hq[0], *at_6_and_7)))
    r = verify(cfg_path, "--checkpoint", str(tmp_path / "fine.jsonl"))
    assert r.exit_code == 1, r.output
    assert "FAILED: first bad entry 7" in r.output and "among entry 7" in r.output


def _signed_at(st: Store, n: int) -> dict[str, Any]:
    """The checkpoint the store would have sent at length ``n`` (signed with its key)."""
    def sign(c: Any) -> dict[str, Any]:
        signer = TEST_SIGNER
        head = audit.b64(bytes(c.execute("SELECT hash FROM audit_log WHERE seq = ?", (n,)).fetchone()[0]))
        ts = audit.iso_ms(audit.now_ms())
        sig = signer.sign(audit.checkpoint_note(ORIGIN, n, head, ts))
        return {"id": f"sh-001:audit:{n}:1", "ts": ts, "length": n, "head": head, "key_id": signer.key_id,
                "sig": audit.b64(sig)}
    return st.writer.call(sign)


def test_checkpoint_of_another_store_or_key_is_refused(store, cfg_path, tmp_path):
    cp = bind_checkpointer(store, every=0)
    fill(store, 3)
    msg = store.writer.call(cp.write)
    store.close()
    other = dict(msg)
    (tmp_path / "cp.json").write_text(json.dumps(other))
    assert verify(cfg_path, "--checkpoint", str(tmp_path / "cp.json")).exit_code == 0
    forged = dict(msg, length=2)  # a valid signature over another length
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    r = verify(cfg_path, "--checkpoint", str(tmp_path / "forged.json"))
    assert r.exit_code == 1 and "signature does not verify" in r.output
    wrong_key = audit.Ed25519Signer(b"\x01" * 32).public_key_b64
    r = verify(cfg_path, "--checkpoint", str(tmp_path / "cp.json"), "--public-key", wrong_key)
    assert r.exit_code == 1 and "signature does not verify" in r.output


# ------------------------------------------------------------------------------------------------ checkpoints


def test_500_entries_trigger_a_checkpoint(store):
    bind_checkpointer(store)  # the default: 500
    fill(store, 499)
    assert outbox_checkpoints(store) == []
    fill(store, 1, start=499)
    (cp,) = outbox_checkpoints(store)
    assert cp["length"] == 500 and validate_hq_message(PREFIX + "/audit/checkpoint", cp) is None
    assert audit.signature_ok(cp, ORIGIN, audit.public_keys(store.read())[cp["key_id"]])
    row = store.read().execute("SELECT lane, kind FROM outbox WHERE msg_id = ?", (cp["id"],)).fetchone()
    assert row == (0, "audit-checkpoint")  # the alerts lane: never dropped by the outbox budget

    def many(c: Any) -> None:  # 1,000 entries in one transaction: two more, in it
        for i in range(1000):
            audit.append(c, "system", "test", f"line:{i}")
    store.writer.call(many)
    assert [m["length"] for m in outbox_checkpoints(store)] == [500, 1000, 1500]
    assert [m["length"] for m in audit.local_checkpoints(store.read())] == [500, 1000, 1500]


def test_periodic_checkpoint_only_when_the_chain_grew(store):
    cp = bind_checkpointer(store, every=0)
    assert store.writer.call(cp.periodic) is None  # empty chain: nothing to anchor
    fill(store, 3)
    assert store.writer.call(cp.periodic)["length"] == 3
    assert store.writer.call(cp.periodic) is None  # unchanged: hourly only
    fill(store, 1, start=3)
    assert store.writer.call(cp.periodic)["length"] == 4


def test_append_costs_little(store):
    """No timing: append runs a fixed handful of statements, and its work (SQLite VM steps) does
    not grow with the chain (no scan)."""
    bind_checkpointer(store)
    statements: list[str] = []
    steps = [0]

    def count_step() -> int:
        steps[0] += 1
        return 0

    def measure(c: Any) -> tuple[int, int]:
        statements.clear()
        steps[0] = 0
        c.set_trace_callback(statements.append)
        c.set_progress_handler(count_step, 1)
        try:
            audit.append(c, "staff:1/manager", "void", "line:1", "guest changed mind", {"amount": 1200})
        finally:
            c.set_trace_callback(None)
            c.set_progress_handler(None, 1)
        return len(statements), steps[0]

    fill(store, 10)
    small = store.writer.call(measure)
    fill(store, 3000, start=10)
    large = store.writer.call(measure)
    assert small[0] <= 3 and large[0] <= 3, statements  # head, insert, last checkpoint length
    assert large[1] <= small[1] * 1.5 + 50, (small, large)


# ------------------------------------------------------------------------------------------------ no personal data


def test_staff_actions_land_on_the_chain_without_personal_data(tmp_path, cfg_path):
    from gateway.app import build
    from gateway.ordering.menu import sample_document
    from gateway.staff import accounts as staff
    from web import create_app

    text = config_text(tmp_path / "data", web_port=free_port(), local_port=free_port(), hq_port=free_port(),
                       uplink="enabled = false")
    (tmp_path / "gw.toml").write_text(text)
    gw = build(parse(tomllib.loads(text)))
    gw.start(web=False, devices=False)
    try:
        svc = gw.services["ordering"]
        svc.import_menu(sample_document())
        svc.add_table("A1")
        # managers enrol a password and TOTP (gateway/staff/matrix.py); the enrolment is audited too
        gw.store.writer.call(lambda c: staff.enrol(c, "Wang Fang", "manager", "a long password 246802", "cli",
                                                       cipher=gw.privacy.cipher))
        svc.open_table("A1", 2, "Wang Fang")
        client = create_app(gw, {"TESTING": True}).test_client()
        token = svc.token_for("A1")
        form = {"csrf": svc.form_token(token), "d": "phone01", "lang": "en"}
        client.post(f"/t/{token}/add", data={**form, "item": "c01", "qty": "1"})
        page = client.get(f"/t/{token}?d=phone01&lang=en").get_data(as_text=True)
        idem = page.split('name="idem" value="')[1].split('"')[0]
        client.post(f"/t/{token}/submit", data={**form, "idem": idem})
        line = gw.store.read().execute("SELECT id FROM ord_lines").fetchone()[0]
        svc.void_line(line, "void", f"guest {PHONE} ID {ID_NUMBER} asked", "Wang Fang")
        rows = gw.store.read().execute("SELECT * FROM audit_log").fetchall()
    finally:
        gw.stop()
    actions = [r[3] for r in rows]
    assert actions == ["enrol", "open", "void"]
    assert rows[0][2] == "cli" and rows[0][4].startswith("staff:")
    assert rows[2][2].startswith("staff:") and rows[2][2].endswith("/manager")
    # masked once, at input (free_text), with the one set of recognisers and masks the chain uses too
    assert rows[2][4] == f"line:{line}"
    assert rows[2][5] == f"guest {mask_phone(PHONE)} ID {mask_id_number(ID_NUMBER)} asked"
    shown = run_cli("audit", "show", "--config", str(tmp_path / "gw.toml"), "--limit", "5").output
    assert mask_phone(PHONE) in shown and mask_id_number(ID_NUMBER) in shown
    for where in (repr(rows), shown):
        _assert_no_planted_value(where, ("Wang Fang", "Wang"))


def _assert_no_planted_value(text: str, names: tuple[str, ...] = ()) -> None:
    """No planted value in any form: as typed, without separators, spaced, UTF-16, hex, base64 or
    JSON-escaped, nor the hidden middle of the masked number (the ID's birth date, the phone's digits 4-7)."""
    import base64

    flat = "".join(ch for ch in text if ch.isalnum())
    for value in (PHONE, ID_NUMBER, f"{PHONE[:3]} {PHONE[3:7]} {PHONE[7:]}", *names):
        forms = {value, value.encode("utf-16-le").decode("latin-1"), value.encode().hex(),
                 base64.b64encode(value.encode()).decode(), json.dumps(value, ensure_ascii=True)[1:-1]}
        assert not any(form in text for form in forms), value
        assert "".join(ch for ch in value if ch.isalnum()) not in flat, value
    assert ID_NUMBER[6:14] not in flat and PHONE[3:7] + PHONE[7:] not in flat


# ------------------------------------------------------------------------------------------------ migration


def test_ord_audit_rows_are_carried_over_in_order(tmp_path, monkeypatch, cfg_path):
    data = tmp_path / "data"
    carry = "0290_ordering_audit_to_chain"
    before = [m for m in migrations._MIGRATIONS if m[1] != carry]
    monkeypatch.setattr(migrations, "_MIGRATIONS", before)
    st = open_store(data, "", domains.SCHEMAS)
    st.close()
    conn = raw_conn(cfg_path)
    conn.execute("INSERT INTO ord_staff (name, role, pin_hash, created_ms) VALUES ('Li Lei', 'cashier', 'x', 1)")
    for i, (who, action, target, reason) in enumerate([
            ("Li Lei", "open", "table:A1", "covers=2"), ("Li Lei", "menu", "c01", '{"price": 100}'),
            ("Ghost", "void", "line:3", f"call {PHONE}"), ("", "reprint", "ticket:9", "")]):
        conn.execute("INSERT INTO ord_audit (ts_ms, staff, action, target, reason) VALUES (?, ?, ?, ?, ?)",
                     (1_700_000_000_000 + i, who, action, target, reason))
    conn.close()
    monkeypatch.undo()
    st = open_store(data, "", domains.SCHEMAS)
    try:
        conn = st.read()
        assert conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'ord_audit'").fetchone() is None
        got = [(e.ts_ms, e.who, e.action, e.subject, e.why, json.loads(e.detail)) for e in audit.entries(conn)]
    finally:
        st.close()
    assert [g[0] for g in got] == [1_700_000_000_000 + i for i in range(4)]
    assert got[0][1:4] == ("staff:1/cashier", "open", "table:A1")
    assert got[1][3] == "item:c01"
    assert got[2][1].startswith("staff:p:") and got[2][4] == f"call {mask_phone(PHONE)}"  # gateway.core.pii
    _assert_no_planted_value(repr(got))
    assert got[3][1] == "system" and got[3][5] == {"legacy_id": 4}
    assert verify(cfg_path).exit_code == 0


# ------------------------------------------------------------------------------------------------ HQ, for real


@pytest.mark.slow
def test_checkpoint_reaches_hq_and_catches_a_rewrite(tmp_path, mosquitto_factory):
    """A checkpoint goes through a real Mosquitto to `storegw hq watch --checkpoints`, validates
    against its schema, its signature verifies with the key `storegw audit key` prints, and
    `audit verify --checkpoint` with HQ's file catches a chain rewritten on the board."""
    from gateway.app import build
    from gateway.hq.watch import HQCollector

    local, hq_broker = mosquitto_factory("local"), mosquitto_factory("hq")
    cfg_text = config_text(tmp_path / "data", local_port=local.port, hq_port=hq_broker.port, web_port=free_port(),
                           extra='[audit]\ncheckpoint_entries = 5\n')
    cfg_file = tmp_path / "gw.toml"
    cfg_file.write_text(cfg_text)
    hq_dir = tmp_path / "hq-checkpoints"
    watcher = subprocess.Popen([sys.executable, "-m", "gateway", "hq", "watch", "--port", str(hq_broker.port),
                                "--checkpoints", str(hq_dir)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    collector = HQCollector("127.0.0.1", hq_broker.port).start()  # validates every message against its schema
    try:
        assert watcher.stdout.readline().startswith("# watching")
        gw = build(parse(tomllib.loads(cfg_text)))
        gw.start(web=False, devices=False)
        try:
            svc = gw.services["ordering"]
            for t in ("A1", "A2", "A3"):
                svc.add_table(t)
                svc.open_table(t, 2, "")
                svc.clear_table(t, "")
            wait_for(lambda: (hq_dir / "sh-001.json").exists(), timeout=20, what="HQ's checkpoint file")
        finally:
            gw.stop()
    finally:
        watcher.terminate()
        watcher.wait(10)
        watcher.stdout.close()
        collector.stop()
    msgs = collector.other.get("audit/checkpoint", [])
    assert [m["length"] for m in msgs] == [5]
    held = json.loads((hq_dir / "sh-001.json").read_text())
    assert held == msgs[0] and validate_hq_message(PREFIX + "/audit/checkpoint", held) is None
    key_line = run_cli("audit", "key", "--config", str(cfg_file)).output.split()
    assert key_line[0] == held["key_id"]
    assert audit.signature_ok(held, ORIGIN, key_line[1])
    assert not audit.signature_ok(dict(held, length=4), ORIGIN, key_line[1])

    assert verify(cfg_file, "--checkpoint", str(hq_dir / "sh-001.json"), "--public-key", key_line[1]).exit_code == 0
    from gateway.clikit import load_config
    from gateway.privacy.keys import Keyring

    thief_signer = Keyring.open(load_config(str(cfg_file)).keys_path, create=False).signer()  # on the board
    _rewrite_holding_the_keys(cfg_file, thief_signer, seq=2)
    assert verify(cfg_file).exit_code == 0
    r = verify(cfg_file, "--checkpoint", str(hq_dir / "sh-001.json"), "--public-key", key_line[1])
    assert r.exit_code == 1 and "FAILED: first bad entry 1" in r.output and "entries 1..5" in r.output
    r = verify(cfg_file, "--checkpoint", str(hq_dir / "sh-001.jsonl"))
    assert r.exit_code == 1 and "the chain was rewritten" in r.output
