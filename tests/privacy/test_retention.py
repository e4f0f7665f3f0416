"""Retention that really deletes (issue 10, item 7): exact at the boundary with the clock advanced,
the planted expired values gone from the files even with the key, a signed receipt with the right
counts at HQ (real Mosquitto), batches through the one writer."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest
from privkit import DAY, cli, contains_anywhere, open_db, plant_session, write_config
from realparts import wait_for

from gateway import domains
from gateway.privacy import audit, retention
from gateway.staff import accounts

NOW_ISO = "2026-03-01T04:15:00+08:00"
NOW = int(dt.datetime.fromisoformat(NOW_ISO).timestamp() * 1000)
EXPIRED = ("PLANTED-EXPIRED-NOTE-7f3a", "PLANTED-NICK-9b2c", "PLANTED-TICKET-DOC-55e1", "PLANTED-REF-0c4d",
           "PLANTED-QUEUE-NICK-21aa", "PLANTED-AGENT-8d8d")
KEPT = ("KEEP-NOTE-EXACT-30D", "KEEP-NICK-EXACT-30D", "KEEP-TICKET-7D", "KEEP-REF-180D", "KEEP-QUEUE-7D",
        "KEEP-OPEN-TABLE-NOTE")
# The audit chain is append-only and no rule of the job deletes it (gateway/privacy/schema.py): an
# entry older than a year and one younger both stay, and the chain stays intact.
CHAIN = ("CHAIN-WHY-OLDER-THAN-365D", "CHAIN-WHY-365D")


def _plant(conn) -> dict[str, int]:
    """Rows on both sides of every rule, each side one millisecond from the boundary."""
    ids = {
        # a paid, cleared table exactly 30 days ago: its free text stays; 1 ms older: blanked
        "kept": plant_session(conn, closed_ms=NOW - 30 * DAY, note=KEPT[0], nickname=KEPT[1], reference=KEPT[3]),
        "blanked": plant_session(conn, closed_ms=NOW - 30 * DAY - 1, note=EXPIRED[0], nickname=EXPIRED[1]),
        "old_ref": plant_session(conn, closed_ms=NOW - 180 * DAY - 1, note="n", nickname="x", reference=EXPIRED[3]),
        "edge_ref": plant_session(conn, closed_ms=NOW - 180 * DAY, note="n", nickname="x", reference="REF-AT-EDGE"),
        "sales_gone": plant_session(conn, closed_ms=NOW - 400 * DAY - 1, note="n", nickname="x"),
        "sales_kept": plant_session(conn, closed_ms=NOW - 400 * DAY, note="n", nickname="x"),
        "open": plant_session(conn, closed_ms=None, paid=False, note=KEPT[5], nickname="open"),
    }
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT INTO ord_diners (id, nickname, created_ms) VALUES (?, ?, ?)",
                     [("d-old", "DINER-OLD", NOW - 30 * DAY - 1), ("d-edge", "DINER-EDGE", NOW - 30 * DAY)])
    conn.executemany("INSERT INTO print_jobs (id, printer, doc, state, created_ms, updated_ms) "
                     "VALUES (?, 'p', ?, ?, ?, ?)",
                     [("j-old", EXPIRED[2], "confirmed", 0, NOW - 7 * DAY - 1),
                      ("j-edge", KEPT[2], "confirmed", 0, NOW - 7 * DAY),
                      ("j-stuck", "queued long ago", "queued", 0, NOW - 90 * DAY)])
    conn.executemany("INSERT INTO ord_queue (number, token, created_ms, prefix, day, phone, nickname, origin) "
                     "VALUES (?, ?, ?, 'A', '20260201', 'mac-phone', ?, 'mac-origin')",
                     [(1, "t1", NOW - 7 * DAY - 1, EXPIRED[4]), (2, "t2", NOW - 7 * DAY, KEPT[4])])
    conn.execute("INSERT INTO ord_staff (name, role, pin_hash, created_ms) VALUES ('wang', 'waiter', 'h', 0)")
    for ts, why in ((NOW - 365 * DAY - 1, CHAIN[0]), (NOW - 365 * DAY, CHAIN[1])):
        audit.append(conn, accounts.audit_who(conn, "wang"), "void", "table:A1", why, ts_ms=ts)
    conn.executemany("INSERT INTO ord_staff_sessions (token_hash, staff_id, created_ms, seen_ms, ended_ms, addr, "
                     "agent) VALUES (?, 1, 0, 0, ?, '10.0.0.7', ?)",
                     [("th1", NOW - 30 * DAY - 1, EXPIRED[5]), ("th2", NOW - 30 * DAY, "agent-kept")])
    conn.execute("COMMIT")
    return ids


def _one(conn, sql, args=()):
    return conn.execute(sql, args).fetchone()


def test_rows_past_their_rule_go_rows_inside_stay_exactly(tmp_path):
    cfg = write_config(tmp_path)
    conn = open_db(tmp_path / "data")
    ids = _plant(conn)
    res = cli("privacy", "retention", "--config", str(cfg), "--now", NOW_ISO)
    assert res.exit_code == 0, res.output
    out = json.loads(res.output.strip().splitlines()[-1])
    # free text of a paid, cleared table: exactly 30 days old stays, 1 ms older is blanked; the sales row stays
    assert _one(conn, "SELECT note, diner FROM ord_lines WHERE session_id = ?", (ids["kept"],)) == KEPT[:2]
    assert _one(conn, "SELECT note, diner, qty, unit_cents FROM ord_lines WHERE session_id = ?",
                (ids["blanked"],)) == ("", "", 1, 1800)
    assert _one(conn, "SELECT diner, total_cents FROM ord_rounds WHERE session_id = ?", (ids["blanked"],)) == ("", 1800)
    assert _one(conn, "SELECT note FROM ord_lines WHERE session_id = ?", (ids["open"],)) == (KEPT[5],)
    # payment references: 180 days
    assert _one(conn, "SELECT reference FROM ord_payments WHERE session_id = ?", (ids["old_ref"],)) == ("",)
    assert _one(conn, "SELECT reference FROM ord_payments WHERE session_id = ?", (ids["edge_ref"],)) == ("REF-AT-EDGE",)
    assert _one(conn, "SELECT amount_cents FROM ord_payments WHERE session_id = ?", (ids["old_ref"],)) == (1800,)
    # sales rows: 400 days, every table of the session
    for table in ("ord_sessions", "ord_payments"):
        key = "id" if table == "ord_sessions" else "session_id"
        assert _one(conn, f"SELECT count(*) FROM {table} WHERE {key} = ?", (ids["sales_gone"],)) == (0,), table
        assert _one(conn, f"SELECT count(*) FROM {table} WHERE {key} = ?", (ids["sales_kept"],)) == (1,), table
    for table in ("ord_rounds", "ord_lines", "ord_tasks"):
        assert _one(conn, f"SELECT count(*) FROM {table} WHERE session_id = ?", (ids["sales_gone"],)) == (0,), table
    assert _one(conn, "SELECT count(*) FROM ord_tickets")[0] == 6  # 7 planted, the 400-day-old one gone
    # tasks: 30 days after the close
    assert _one(conn, "SELECT count(*) FROM ord_tasks WHERE session_id = ?", (ids["blanked"],)) == (0,)
    assert _one(conn, "SELECT count(*) FROM ord_tasks WHERE session_id = ?", (ids["kept"],)) == (1,)
    # the other tables, both sides of each boundary
    assert [r[0] for r in conn.execute("SELECT id FROM ord_diners")] == ["d-edge"]
    assert sorted(r[0] for r in conn.execute("SELECT id FROM print_jobs")) == ["j-edge", "j-stuck"]
    assert [r[0] for r in conn.execute("SELECT nickname FROM ord_queue")] == [KEPT[4]]
    assert conn.execute("SELECT who, why FROM audit_log ORDER BY seq").fetchall() == [("staff:1/waiter", w)
                                                                                        for w in CHAIN]
    assert audit.verify(conn, "storegw/v1/sh-001/audit").ok
    assert [r[0] for r in conn.execute("SELECT agent FROM ord_staff_sessions")] == ["agent-kept"]
    assert _one(conn, "SELECT count(*) FROM ord_staff") == (1,)  # accounts are not time-limited
    # the counts the receipt reports: five sessions closed more than 30 days ago (blanked: round and
    # line nicknames, line notes), their five tasks (ack_by) deleted, one old payment reference, the
    # 400-day-old session's payment and opened_by, one diner, one print job, one queue number (nickname,
    # two MACs), one staff session (token hash, address, agent); nothing of the audit chain
    assert out["deleted"] == {"user.name": 5 + 5 + 5 + 1 + 1 + 1 + 1, "user.content.free_text": 5 + 1,
                              "user.financial": 1, "user.unique_id.pseudonymous": 1 + 2,
                              "user.authorization.credentials": 1, "user.device.ip_address": 1, "user.device": 1}
    assert out["rows"] == {"ord_rounds": 5 + 1, "ord_lines": 5 + 1, "ord_payments": 1 + 1, "ord_tasks": 5,
                           "ord_tickets": 1, "ord_sessions": 1, "ord_diners": 1, "print_jobs": 1, "ord_queue": 1,
                           "ord_staff_sessions": 1}
    second = json.loads(cli("privacy", "retention", "--config", str(cfg), "--now", NOW_ISO).output.splitlines()[-1])
    assert second["rows"] == {} and second["deleted"] == {}  # idempotent: nothing left to do


def test_planted_expired_values_are_not_in_the_files_even_with_the_key(tmp_path):
    cfg = write_config(tmp_path)
    data = tmp_path / "data"
    conn = open_db(data)
    _plant(conn)
    # a reader holding a snapshot must not keep the WAL alive either: retention waits for it briefly
    for value in (*EXPIRED, *KEPT, *CHAIN):  # positive control: the decryptor finds what is there
        assert contains_anywhere(data, value), value
    assert cli("privacy", "retention", "--config", str(cfg), "--now", NOW_ISO).exit_code == 0
    conn.close()
    for value in EXPIRED:
        assert contains_anywhere(data, value) == [], value
    for value in (*KEPT, *CHAIN):
        assert contains_anywhere(data, value) == ["storegw.db"], value
    assert (data / "storegw.db-wal").stat().st_size == 0 if (data / "storegw.db-wal").exists() else True


def test_the_run_goes_through_the_writer_in_short_batches(tmp_path):
    """The daemon's path: every batch one writer call, maintenance between transactions; a
    concurrent writer keeps committing while a large backlog is deleted."""
    import threading

    from gateway.store import open_store

    data = tmp_path / "data"
    store = open_store(data, schemas=domains.SCHEMAS)
    store.start()
    try:
        def plant(c):
            c.executemany("INSERT INTO ord_diners (id, nickname, created_ms) VALUES (?, ?, ?)",
                          [(f"d{i}", f"nick{i}", NOW - 40 * DAY) for i in range(3000)])
        store.writer.call(plant)
        stop = threading.Event()
        gaps: list[float] = []

        def ingest():
            last = time.monotonic()
            while not stop.is_set():
                store.writer.call(lambda c: c.execute("INSERT INTO metrics (name) VALUES (?)", (f"m{time.time_ns()}",)))
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        t = threading.Thread(target=ingest)
        t.start()
        signer = retention.InterimSigner(bytes(32))
        result = retention.run(store.writer.call, store.writer.run_exclusive, domains.INVENTORY, now_ms=NOW,
                               prefix="storegw/v1/sh-001", store="sh-001", signer=signer,
                               audit_head=audit.head, batch=500)
        stop.set()
        t.join()
    finally:
        store.close()
    assert result.rows["ord_diners"] == 3000 and result.batches == 6
    assert result.deleted == {"user.name": 3000, "user.unique_id.pseudonymous": 3000}
    assert max(gaps) < 2.0, f"a concurrent write waited {max(gaps):.2f} s"
    assert len(gaps) > 6  # writes went on between the batches
    assert retention.signature_ok(result.receipt)


@pytest.mark.slow
def test_receipt_reaches_hq_signed_with_the_right_counts_and_no_personal_data(
        mosquitto_factory, write_config, gateway_process, tmp_path):
    from gateway.hq.watch import HQCollector

    local, hq_broker = mosquitto_factory("local"), mosquitto_factory("hq")
    cfg = write_config(local_port=local.port, hq_port=hq_broker.port)
    hq = HQCollector("127.0.0.1", hq_broker.port, client_id="hq-receipts").start()
    conn = open_db(tmp_path / "data")
    _plant(conn)
    conn.close()
    gw = gateway_process(cfg).start()
    try:
        res = cli("privacy", "retention", "--config", str(cfg), "--now", NOW_ISO)
        assert res.exit_code == 0, res.output
        ran = json.loads(res.output.strip().splitlines()[-1])
        receipts = wait_for(lambda: hq.other.get("privacy/receipt"), timeout=30, what="a receipt at HQ")
    finally:
        hq.stop()
    doc = receipts[0]
    assert doc["id"] == ran["receipt"] and doc["store"] == "sh-001"
    assert doc["deleted"] == ran["deleted"] and doc["rows"] == ran["rows"]
    assert doc["deleted"]["user.content.free_text"] == 6 and doc["deleted"]["user.financial"] == 1
    assert doc["rows"]["print_jobs"] == 1 and doc["rows"]["ord_queue"] == 1 and doc["rows"]["ord_diners"] == 1
    assert doc["oldest"]["user.content.free_text"] is not None
    assert doc["scrub"]["wal_truncated"] in (True, False)
    assert retention.signature_ok(doc)
    assert doc["audit"]["length"] >= 2  # the chain's head, the two planted entries and what the run appended
    forged = dict(doc, deleted={**doc["deleted"], "user.name": 0})
    assert not retention.signature_ok(forged)
    text = json.dumps(doc, ensure_ascii=False)
    for value in (*EXPIRED, *KEPT, *CHAIN, "wang", "10.0.0.7", "DINER-EDGE", "mac-phone"):
        assert value not in text
    gw.stop()
