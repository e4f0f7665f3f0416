"""Staff pages through the test client: login and roles, CSRF, open/clear, KDS bumps, bill and HQ summary."""

from __future__ import annotations

import json
import re

import pytest
from ordhelpers import PASSWORD, Diner, add_privileged, csrf

from gateway.staff import accounts as staffops

AUTHENTICATORS = {}  # managers sign in with a password and TOTP (gateway/staff/matrix.py)


def add_staff(svc, name, role, pin="246813"):
    if staffops.matrix.needs_totp(role):
        AUTHENTICATORS[name] = add_privileged(svc, name, role)
        return
    svc.writer.call(lambda c: staffops.add_staff(c, name, role, pin))


def login(client, name, pin="246813"):
    code = ""
    if name in AUTHENTICATORS:
        pin, code = PASSWORD, AUTHENTICATORS[name].code()
    page = client.get("/staff/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    r = client.post("/staff/login", data={"name": name, "pin": pin, "code": code, "csrf_token": token})
    return r, token


@pytest.fixture
def staff_client(gw, svc):
    from web import create_app

    add_staff(svc, "wang", "manager")
    app = create_app(gw, {"TESTING": True})
    c = app.test_client()
    r, _ = login(c, "wang")
    assert r.status_code == 303
    return c


def test_login_requires_right_pin_and_pins_are_argon2(gw, svc, client):
    add_staff(svc, "li", "waiter", "135790")
    row = svc.gw.store.read().execute("SELECT pin_hash FROM ord_staff WHERE name = 'li'").fetchone()
    assert row[0].startswith("$argon2") and "135790" not in row[0]
    r, _ = login(client, "li", "0000")
    assert r.status_code == 401
    assert client.get("/staff/").status_code == 302
    r, _ = login(client, "li", "135790")
    assert r.status_code == 303
    assert client.get("/staff/").status_code == 200
    assert client.get("/staff/menu").status_code == 403  # waiters do not edit the menu


def test_login_attempts_are_limited_per_app(gw, svc):
    from web import create_app
    from web.staff.views import LOGIN_ATTEMPTS_PER_MINUTE

    add_staff(svc, "li", "waiter", "135790")
    c = create_app(gw, {"TESTING": True}).test_client()
    for _ in range(LOGIN_ATTEMPTS_PER_MINUTE):  # (an unknown name: the account's own back-off is not involved)
        assert login(c, "nobody", "000000")[0].status_code == 401
    r, _ = login(c, "li", "135790")  # even the right PIN waits out the minute
    assert r.status_code == 401 and "Too many attempts" in r.get_data(as_text=True)
    # The limit belongs to one app (one running gateway), not to the process.
    fresh = create_app(gw, {"TESTING": True}).test_client()
    assert login(fresh, "li", "135790")[0].status_code == 303


def test_csrf_is_required_on_every_staff_form(staff_client):
    r = staff_client.post("/staff/tables/A1/open", data={"covers": "2"})
    assert r.status_code == 400
    r = staff_client.post("/staff/tables/A1/open", data={"covers": "2", "csrf_token": "forged"})
    assert r.status_code == 400
    r = staff_client.post("/staff/tables/A1/open", data={"covers": "2", "csrf_token": csrf(staff_client)})
    assert r.status_code == 303


def test_require_open_table_and_clear(make_gw):
    from web import create_app

    gw = make_gw("[ordering]\nrequire_open_table = true\n")
    svc = gw.services["ordering"]
    add_staff(svc, "wang", "manager")
    app = create_app(gw, {"TESTING": True})
    staff, diners = app.test_client(), app.test_client()
    login(staff, "wang")
    d = Diner(diners, svc, "A1")
    r = d.add("c01")
    assert r.status_code == 409
    assert "not open" in r.get_data(as_text=True)
    token = csrf(staff)
    assert staff.post("/staff/tables/A1/open", data={"covers": "3", "csrf_token": token}).status_code == 303
    assert d.add("c01").status_code == 303
    assert d.send().status_code == 303
    assert staff.post("/staff/tables/A1/clear", data={"csrf_token": token}).status_code == 303
    r = d.add("c01")
    assert r.status_code == 409 and "本桌尚未开台" in r.get_data(as_text=True)
    r = d.send(idem="another-key-123")
    assert r.status_code == 409


def test_kds_shows_ticket_and_bump_serves(staff_client, client, svc):
    d = Diner(client, svc, "A1")
    d.add("h01", note="<script>alert(1)</script>")
    d.add("d01")
    d.send()
    # no printers configured: tickets go to the KDS only; showing them there is "kitchen received"
    page = staff_client.get("/staff/kds/hot")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Kung Pao chicken" in html and "Sour plum" not in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    from ordhelpers import wait_for

    wait_for(lambda: d.state()["rounds"][0]["lines"][0]["status"] == "received", timeout=5, what="received")
    tid = re.search(r"Bump ticket T(\d+)", html).group(1)
    token = csrf(staff_client, "/staff/kds/hot")
    assert staff_client.post(f"/staff/kds/hot/bump/{tid}", data={"csrf_token": token}).status_code == 303
    lines = {ln["name_en"]: ln["status"] for ln in d.state()["rounds"][0]["lines"]}
    assert lines == {"Kung Pao chicken": "served", "Sour plum drink": "sent"}
    assert staff_client.post("/staff/kds/hot/recall", data={"csrf_token": token}).status_code == 303
    assert d.state()["rounds"][0]["lines"][0]["status"] == "cooking"
    # scan-to-serve with the bar ticket's line code
    bar_line = d.state()["rounds"][0]["lines"][1]["id"]
    r = staff_client.post("/staff/kds/bar/scan", data={"code": f"L{bar_line}", "csrf_token": token})
    assert r.status_code == 303
    assert d.state()["rounds"][0]["lines"][1]["status"] == "served"


def test_scanner_event_serves_a_line(gw, svc, client):
    from gateway.core.models import DeviceEvent, now_ms

    d = Diner(client, svc, "A1")
    d.add("c01")
    d.send()
    line = d.state()["rounds"][0]["lines"][0]["id"]
    gw.hub.event(DeviceEvent("scanner-pass", "code", now_ms(), {"code": f"L{line}"}))
    from ordhelpers import wait_for

    wait_for(lambda: d.state()["rounds"][0]["lines"][0]["status"] == "served", timeout=5, what="served by scan")


def test_void_comp_bill_pay_and_hq_summary(staff_client, client, svc, gw):
    d = Diner(client, svc, "A1")
    d.add("h01", qty=2)
    d.add("c01")
    d.add("d03")
    d.send()
    lines = d.state()["rounds"][0]["lines"]
    token = csrf(staff_client, "/staff/tables/A1")
    r = staff_client.post(f"/staff/lines/{lines[1]['id']}/adjust", data={"action": "void", "reason": "",
                                                                         "csrf_token": token})
    assert r.status_code == 303  # refused (no reason): flashed, nothing changed
    assert d.state()["rounds"][0]["lines"][1]["status"] == "sent"
    staff_client.post(f"/staff/lines/{lines[1]['id']}/adjust",
                      data={"action": "void", "reason": "guest changed mind", "csrf_token": token})
    staff_client.post(f"/staff/lines/{lines[2]['id']}/adjust",
                      data={"action": "comp", "reason": "birthday", "csrf_token": token})
    page = staff_client.get("/staff/tables/A1").get_data(as_text=True)
    assert "¥96.00" in page  # 2 x 48, cucumber voided, drink comped
    r = staff_client.post("/staff/tables/A1/pay", data={"method": "card", "reference": "4111111111111111",
                                                        "csrf_token": token})
    assert "never a card number" in staff_client.get("/staff/tables/A1").get_data(as_text=True)
    r = staff_client.post("/staff/tables/A1/pay", data={"method": "card", "reference": "AUTH42",
                                                        "csrf_token": token})
    assert r.status_code == 303
    conn = gw.store.read()
    rows = conn.execute("SELECT topic, payload FROM outbox WHERE topic LIKE '%/orders/summary'").fetchall()
    assert len(rows) == 1
    msg = json.loads(rows[0][1])
    assert rows[0][0] == "storegw/v1/sh-001/orders/summary"
    assert msg["revenue_cents"] == 9600 and msg["kind"] == "bill" and msg["ts"].endswith("Z")
    text = json.dumps(msg, ensure_ascii=False)
    assert "AUTH42" not in text and "wang" not in text and "#PHO" not in text
    audits = [r[0] for r in conn.execute("SELECT action FROM audit_log ORDER BY seq")]
    assert audits.count("void") == 1 and "comp" in audits and "pay" in audits
    who = {r[0] for r in conn.execute("SELECT who FROM audit_log WHERE action IN ('void', 'comp', 'pay')")}
    assert len(who) == 1 and next(iter(who)).startswith("staff:")  # a reference, not the member's name


def test_move_and_merge(staff_client, client, svc):
    a, b = Diner(client, svc, "A1"), Diner(client, svc, "A2")
    a.add("c01")
    a.send()
    b.add("c04")
    b.send()
    token = csrf(staff_client)
    assert staff_client.post("/staff/tables/A1/move", data={"to": "B1", "csrf_token": token}).status_code == 303
    assert a.state()["open"] is False
    moved = Diner(client, svc, "B1")
    assert moved.state()["rounds"][0]["lines"][0]["name_en"] == "Smashed cucumber"
    staff_client.post("/staff/tables/A2/merge", data={"into": "B1", "csrf_token": token})
    rounds = moved.state()["rounds"]
    assert [r["no"] for r in rounds] == [1, 2]
    assert b.state()["open"] is False


def test_task_ack_shows_on_diner_page(staff_client, client, svc):
    d = Diner(client, svc, "A1")
    d.add("c01")
    d.send()
    client.post(f"/t/{d.token}/request", data=d.form(kind="bill"))
    home = staff_client.get("/staff/").get_data(as_text=True)
    task = re.search(r"/staff/tasks/(\d+)/ack", home).group(1)
    staff_client.post(f"/staff/tasks/{task}/ack", data={"csrf_token": csrf(staff_client)})
    assert d.state()["tasks"] == [{"kind": "bill", "line": None, "acked": True}]
    assert "staff on the way" in d.page().get_data(as_text=True)
