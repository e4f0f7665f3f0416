"""Data-subject requests (issue 10, item 8): export and erase a staff member and a queue number,
audited by reference; erasure survives the restore of an older backup (by `storegw restore` and by
a file put in place by hand); the privacy report (item 10)."""

from __future__ import annotations

import json
import shutil

from privkit import DAY, cli, contains_anywhere, open_db, plant_session, write_config

from gateway.core.models import iso_ms, now_ms
from gateway.privacy import audit
from gateway.staff import accounts


def _staff(conn, name: str, *, audit_ts: int | None = None) -> None:
    ts = now_ms()
    conn.execute("BEGIN IMMEDIATE")
    sid = conn.execute("INSERT INTO ord_staff (name, role, pin_hash, created_ms) VALUES (?, 'waiter', "
                       "'$argon2id$v=19$m=65536,t=3,p=4$PINHASH', ?)", (name, ts)).lastrowid
    conn.execute("INSERT INTO ord_staff_sessions (token_hash, staff_id, created_ms, seen_ms, addr, agent) "
                 "VALUES (?, ?, ?, ?, '10.1.2.3', 'Tablet-UA-77')", (f"tok-{name}", sid, ts, ts))
    # on the chain as the staff helper writes it (staff:ID/ROLE), at the time the test chooses
    audit.append(conn, accounts.audit_who(conn, name), "void", "table:A1", "wrong dish", ts_ms=audit_ts or ts)
    conn.execute("COMMIT")
    plant_session(conn, closed_ms=ts - DAY, staff=name, note="n", nickname="x")


def _json(res):
    assert res.exit_code == 0, res.output
    return json.loads(res.output[res.output.index("{"):])


def test_export_and_erase_a_staff_member(tmp_path):
    cfg = str(write_config(tmp_path))
    conn = open_db(tmp_path / "data")
    _staff(conn, "wang", audit_ts=now_ms() - 10 * DAY)
    _staff(conn, "li")
    doc = _json(cli("privacy", "export", "--subject", "staff:wang", "--config", cfg))
    tables = doc["tables"]
    assert tables["ord_staff"][0]["name"] == "wang" and "PINHASH" not in json.dumps(doc)
    assert tables["ord_staff_sessions"][0]["addr"] == "10.1.2.3"
    assert len(tables["ord_payments"]) == 1 and len(tables["ord_sessions"]) == 1 and len(tables["ord_tasks"]) == 1
    assert [(a["action"], a["who"]) for a in tables["audit_log"]] == [("void", "staff:1/waiter")]
    assert doc["subject"]["reference"].startswith("dsr:staff-") and doc["erased_before"] is False
    assert doc["inventory"]["ord_staff"]["personal_columns"] == ["name", "role", "pin_hash", "totp_sealed"]
    out = tmp_path / "wang.json"
    res = cli("privacy", "export", "--subject", "staff:wang", "--config", cfg, "-o", str(out))
    assert res.exit_code == 0 and (out.stat().st_mode & 0o777) == 0o600
    # erase: the account and its sessions go, the name leaves the sales rows, the log is kept (legal obligation)
    res = _json(cli("privacy", "erase", "--subject", "staff:wang", "--reason", "left the company", "--config", cfg))
    assert res["erased"] == {"ord_staff": 1, "ord_staff_sessions": 1, "ord_payments": 1, "ord_sessions": 1,
                             "ord_tasks": 1}
    [kept] = res["retained"]
    assert kept["table"] == "audit_log" and kept["rows"] == 1 and kept["basis"] == "legal obligation"
    assert res["answer"].startswith("retained by legal obligation until ") and "processing stopped" in res["answer"]
    assert res["answer"][35:45] == kept["until"][:10]
    assert kept["until"][:10] == iso_ms(now_ms() - 10 * DAY + 365 * DAY)[:10]  # a year after the newest entry
    assert conn.execute("SELECT count(*) FROM ord_staff WHERE name = 'wang'").fetchone() == (0,)
    assert conn.execute("SELECT DISTINCT staff FROM ord_payments ORDER BY 1").fetchall() == [("erased",), ("li",)]
    assert conn.execute("SELECT count(*) FROM ord_staff WHERE name = 'li'").fetchone() == (1,)  # nobody else
    # audited by reference, never by value; the chain keeps its entry about wang, untouched and intact
    entries = conn.execute("SELECT who, action, subject, why FROM audit_log WHERE action LIKE 'privacy.%' "
                           "ORDER BY seq").fetchall()
    assert [e[1] for e in entries] == ["privacy.export", "privacy.export", "privacy.erase"]
    assert all(e[2] == res["subject"]["reference"] and "wang" not in " ".join(e) for e in entries)
    assert conn.execute("SELECT who, action FROM audit_log WHERE seq = 1").fetchone() == ("staff:1/waiter", "void")
    assert "wang" not in repr(conn.execute("SELECT * FROM audit_log").fetchall())
    assert audit.verify(conn, "storegw/v1/sh-001/audit").ok
    # the session's user agent and address are gone from the files, even decrypted
    conn.close()
    assert contains_anywhere(tmp_path / "data", "Tablet-UA-77") == ["storegw.db"]  # li's session is still there
    again = _json(cli("privacy", "export", "--subject", "staff:wang", "--config", cfg))
    assert "ord_staff" not in again["tables"] and again["erased_before"] is True


def test_an_erased_members_id_is_never_given_again(tmp_path):
    """The chain keeps staff:ID after the account is erased: a new account must not inherit it (nor
    the erased member's entries in its export)."""
    cfg = str(write_config(tmp_path))
    conn = open_db(tmp_path / "data")
    _staff(conn, "li")    # staff:1
    _staff(conn, "wang")  # staff:2, the newest
    assert cli("privacy", "erase", "--subject", "staff:wang", "--reason", "left", "--config", cfg).exit_code == 0
    conn.execute("BEGIN IMMEDIATE")
    new_id = accounts.add_staff(conn, "zhou", "waiter", "135790")
    conn.execute("COMMIT")
    assert new_id == 3
    assert "audit_log" not in _json(cli("privacy", "export", "--subject", "staff:zhou", "--config", cfg))["tables"]


def test_export_and_erase_a_queue_number(tmp_path):
    cfg = str(write_config(tmp_path))
    conn = open_db(tmp_path / "data")
    sid = plant_session(conn, closed_ms=now_ms() - DAY, note="QUEUE-NOTE-PLANTED-4411", nickname="QNICK-PLANTED-7")
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO ord_queue (number, token, created_ms, prefix, day, phone, nickname, origin, session_id) "
                 "VALUES (12, 'tq', ?, 'A', '20260201', 'mac-phone-x', 'QNICK-PLANTED-7', 'mac-origin-x', ?)",
                 (now_ms(), sid))
    conn.execute("INSERT INTO ord_cart (session_id, item_id, qty, note, diner, created_ms) VALUES (?, 'tea', 1, "
                 "'CART-NOTE-PLANTED-99', 'QNICK-PLANTED-7', ?)", (sid, now_ms()))
    conn.execute("COMMIT")
    doc = _json(cli("privacy", "export", "--subject", "queue:20260201/A012", "--config", cfg))
    assert doc["tables"]["ord_queue"][0]["nickname"] == "QNICK-PLANTED-7"
    assert doc["tables"]["ord_lines"][0]["note"] == "QUEUE-NOTE-PLANTED-4411"
    assert doc["tables"]["ord_cart"][0]["note"] == "CART-NOTE-PLANTED-99"
    res = _json(cli("privacy", "erase", "--subject", "queue:20260201/A12", "--reason", "asked at the door",
                    "--config", cfg))
    assert res["erased"] == {"ord_queue": 1, "ord_cart": 1, "ord_rounds": 1, "ord_lines": 1}
    assert res["retained"][0]["table"] == "ord_lines" and res["answer"].startswith("retained by legal obligation")
    assert conn.execute("SELECT qty, unit_cents, note FROM ord_lines WHERE session_id = ?", (sid,)).fetchone() == \
        (1, 1800, "")
    conn.close()
    for planted in ("QUEUE-NOTE-PLANTED-4411", "QNICK-PLANTED-7", "CART-NOTE-PLANTED-99", "mac-phone-x"):
        assert contains_anywhere(tmp_path / "data", planted) == [], planted
    assert _json(cli("privacy", "erase", "--subject", "queue:20260201/A99", "--reason", "x", "--config", cfg)
                 )["erased"] == {}


def test_erasure_survives_restore_of_an_older_backup(tmp_path):
    cfg = str(write_config(tmp_path))
    data = tmp_path / "data"
    conn = open_db(data)
    _staff(conn, "zhao")
    _staff(conn, "li")
    conn.close()
    res = cli("backup", "--config", cfg, "--to", str(tmp_path / "usb"))
    assert res.exit_code == 0, res.output
    backup = tmp_path / "usb" / res.output.split()[0].rsplit("/", 1)[-1]
    assert cli("privacy", "erase", "--subject", "staff:zhao", "--reason", "asked", "--config", cfg).exit_code == 0

    def zhao_held(path=data / "storegw.db") -> int:
        from privkit import db_key

        from gateway.store.db import connect

        c = connect(path, db_key(data))
        try:
            return sum(c.execute(sql).fetchone()[0] for sql in (
                "SELECT count(*) FROM ord_staff WHERE name = 'zhao'",
                "SELECT count(*) FROM ord_payments WHERE staff = 'zhao'",
                "SELECT count(*) FROM ord_staff_sessions s JOIN ord_staff m ON m.id = s.staff_id "
                "WHERE m.name = 'zhao'"))
        finally:
            c.close()

    assert zhao_held() == 0
    assert zhao_held(backup) == 3  # the backup still has them...
    res = cli("restore", "--config", cfg, str(backup), "--yes")
    assert res.exit_code == 0, res.output
    assert "re-applied erasures (1 subjects)" in res.output
    assert zhao_held() == 0  # ...the restored database does not
    # a backup put in place by hand: the gateway notices at start and erases again
    for suffix in ("-wal", "-shm"):
        (data / f"storegw.db{suffix}").unlink(missing_ok=True)
    shutil.copyfile(backup, data / "storegw.db")
    assert zhao_held() == 3
    from gateway.app import build
    from gateway.config import load

    gw = build(load(cfg))
    gw.start(web=False, devices=False)
    try:
        assert gw.privacy_restored
        assert gw.store.read().execute("SELECT count(*) FROM ord_staff WHERE name = 'zhao'").fetchone() == (0,)
        assert gw.store.read().execute("SELECT count(*) FROM ord_staff WHERE name = 'li'").fetchone() == (1,)
    finally:
        gw.stop()
    assert zhao_held() == 0


def test_report(tmp_path):
    cfg = str(write_config(tmp_path))
    conn = open_db(tmp_path / "data")
    _staff(conn, "wang")  # staff:1/waiter
    _staff(conn, "li")    # staff:2/waiter
    week_ago = now_ms() - 8 * DAY
    conn.execute("BEGIN IMMEDIATE")
    for ts, name in [(now_ms(), "li"), (now_ms(), "li"), (now_ms(), "wang"), (week_ago, "wang")]:
        audit.append(conn, accounts.audit_who(conn, name), "unmask", "guest:p:1", "check-in", ts_ms=ts)
    conn.execute("COMMIT")
    before = _json(cli("privacy", "report", "--config", cfg, "--json"))
    assert before["last_receipt"] is None
    assert cli("privacy", "retention", "--config", cfg).exit_code == 0
    doc = _json(cli("privacy", "report", "--config", cfg, "--json"))
    assert doc["unmask_this_week"] == {"staff:2/waiter": 2, "staff:1/waiter": 1}  # references, never names
    assert doc["last_receipt"]["id"].startswith("receipt:")
    assert doc["categories"]["user.name"]["held"] >= 4 and doc["categories"]["user.name"]["oldest"]
    assert doc["categories"]["user.device.ip_address"] == {"held": 2, "oldest": doc["categories"]["user.device"]
                                                           ["oldest"]}
    assert doc["next_retention_run"].endswith(":15:00.000Z")  # 04:15 Shanghai is 20:15 UTC
    assert doc["key_versions"]["fields"].startswith("v1 primary")
    text = cli("privacy", "report", "--config", cfg).output
    for line in ("user.content.free_text", "next retention run", "last receipt        ",
                 "unmasks this week   staff:1/waiter 1, staff:2/waiter 2", "key versions"):
        assert line in text, line
    assert "10.1.2.3" not in text and "wang" not in text
