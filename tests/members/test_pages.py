"""Members pages through the test client (zh and en): diner join, own page, consent withdraw, requests,
feedback; staff find/register, bill panel, points and coupons on the bill, complaints, refund, receipt;
16 concurrent redemptions of one coupon from two staff sessions: exactly one wins."""

from __future__ import annotations

import re
import threading

import pytest
from memhelpers import order, register
from ordhelpers import PASSWORD, Diner, add_privileged, csrf, staff_login

from gateway.staff import accounts as staffops
from web import create_app


def add_staff(gw, name, role, pin="246813"):
    gw.store.writer.call(lambda c: staffops.add_staff(c, name, role, pin))


def login(client, name, pin="246813"):
    page = client.get("/staff/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    r = client.post("/staff/login", data={"name": name, "pin": pin, "csrf_token": token})
    assert r.status_code == 303
    return csrf(client)


@pytest.fixture
def app(gw):
    return create_app(gw, {"TESTING": True})


@pytest.fixture
def staff(gw, app):
    auth = add_privileged(gw.services["ordering"], "wang")  # managers: password + TOTP
    c = app.test_client()
    r = staff_login(c, "wang", PASSWORD, auth.code())
    assert r.status_code == 303, r.get_data(as_text=True)
    c.csrf = csrf(c)
    return c


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_diner_joins_sees_own_page_withdraws_consent_and_asks_for_erasure(gw, svc, mem, app, lang):
    client = app.test_client()
    d = Diner(client, svc, "A1", lang=lang)
    order(gw, "A1", {"c06": 1})
    page = d.page().get_data(as_text=True)
    assert "/member?" in page  # the optional members link; ordering never requires it
    join = client.get(f"/t/{d.token}/member?d={d.d}&lang={lang}")
    html = join.get_data(as_text=True)
    assert join.status_code == 200 and ("加入会员" in html if lang == "zh" else "Become a member" in html)
    assert 'checked' not in html  # no consent is ticked for the diner
    r = client.post(f"/t/{d.token}/member/join", data={**d.form(), "nickname": "小林", "phone": "13812345678",
                                                         "birthday": "05-21", "allergies": "花生",
                                                         "consent_benefits": "1", "consent_birthday": "1"})
    assert r.status_code == 303
    own = r.headers["Location"]
    mtoken = re.search(r"/m/([^?]+)", own).group(1)
    html = client.get(own).get_data(as_text=True)
    assert "138****5678" not in html and "13812345678" not in html
    assert ("会员号" if lang == "zh" else "Member number") in html
    form = re.search(r'name="csrf" value="([^"]+)"', html).group(1)
    r = client.post(f"/m/{mtoken}/consent", data={"csrf": form, "purpose": "birthday", "granted": "0",
                                                  "lang": lang})
    assert r.status_code == 303
    mid = mem.by_token(mtoken)
    m = mem.member(mid)
    assert m["birthday"] == "" and not m["consents"]["birthday"]["granted"]
    client.post(f"/m/{mtoken}/request", data={"csrf": form, "kind": "erase", "lang": lang})
    client.post(f"/m/{mtoken}/request", data={"csrf": form, "kind": "erase", "lang": lang})
    assert [r["kind"] for r in mem.requests()] == ["erase"]
    # a forged form value or token is refused
    assert client.post(f"/m/{mtoken}/request", data={"csrf": "x", "kind": "export"}).status_code == 400
    assert client.get(f"/m/{mtoken[:-2]}zz").status_code == 404
    # link to the bill from the diner side, then pay and rate
    r = client.post(f"/t/{d.token}/member/attach", data={"csrf": form, "m": mtoken, "lang": lang})
    assert r.status_code == 303
    svc.pay("A1", "cash", "", "boss")
    assert mem.member(mid)["points"] == 36
    r = client.post(f"/t/{d.token}/feedback", data={**d.form(), "rating": "4", "comment": "好吃"})
    assert r.status_code == 303
    assert ("感谢评价" if lang == "zh" else "Thanks for rating") in d.page().get_data(as_text=True)
    # a phone that was not one of the party cannot rate (nor see the bill)
    other = Diner(client, svc, "A1", d="stranger9", lang=lang)
    assert client.post(f"/t/{d.token}/feedback", data={**other.form(), "rating": "1"}).status_code == 403


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_staff_register_find_bill_panel_points_coupon_refund_receipt(gw, svc, mem, staff, lang):
    r = staff.post("/staff/members/register", data={
        "csrf_token": staff.csrf, "nickname": "Lin", "phone": "13812345678", "allergies": "peanuts 花生",
        "consent_benefits": "1"})
    assert r.status_code == 303, r.get_data(as_text=True)
    mid = mem.identify("13812345678")
    mem.points(mid, "earn", 1000, "seed-points-1", "wang")
    mem.issue_coupon(mid, "满减", "Five off", 500, 30, "seed-coupon-1", "wang")
    order(gw, "A1", {"h06": 1})
    r = staff.post("/staff/tables/A1/member", data={"csrf_token": staff.csrf, "q": "138 1234 5678"})
    assert r.status_code == 303
    html = staff.get(f"/staff/tables/A1?lang={lang}").get_data(as_text=True)
    assert "peanuts 花生" in html and "138****5678" in html and "13812345678" not in html
    idem = re.search(r'name="idem" value="([^"]+)"', html).group(1)
    for _ in range(3):  # a double tap and a retry: one redemption
        staff.post("/staff/tables/A1/member/points", data={"csrf_token": staff.csrf, "points": "300", "idem": idem})
    code = mem.member(mid)["usable"][0]["code"]
    staff.post("/staff/tables/A1/member/coupon", data={"csrf_token": staff.csrf, "code": code})
    b = svc.bill("A1")
    assert b["discount"] == 300 + 500 and b["total"] == 9800 - 800
    receipt = staff.get("/staff/tables/A1/receipt").get_data(as_text=True)
    assert "Points redeemed: 300" in receipt and "Coupon: Five off" in receipt and "¥90.00" in receipt
    staff.post("/staff/tables/A1/pay", data={"csrf_token": staff.csrf, "method": "cash"})
    assert mem.member(mid)["points"] == 1000 - 300 + 90
    line = svc.bill("A1")["lines"][0]["id"]
    r = staff.post("/staff/tables/A1/complaint", data={"csrf_token": staff.csrf, "line": str(line),
                                                       "category": "taste", "note": "salty"})
    assert r.status_code == 303
    staff.post("/staff/tables/A1/refund", data={"csrf_token": staff.csrf, "reason": "guest unhappy"})
    m = mem.member(mid)
    assert m["points"] == 1000 and m["usable"][0]["code"] == code  # earned reversed, redeemed given back
    assert mem.check() == []
    for path in ("/staff/members", f"/staff/members/{mid}", "/staff/members/requests"):
        assert staff.get(f"{path}?lang={lang}").status_code == 200, path


def test_sixteen_concurrent_redemptions_of_one_coupon_from_two_staff_sessions(gw, svc, mem, app):
    add_staff(gw, "till1", "cashier")
    add_staff(gw, "till2", "cashier")
    mid = register(mem)["id"]
    mem.issue_coupon(mid, "", "", 500, 30, "one-coupon-1", "boss")
    code = mem.member(mid)["usable"][0]["code"]
    order(gw, "A1", {"c06": 1})
    order(gw, "A2", {"c06": 1})
    mem.attach("A1", mid, "boss")
    mem.attach("A2", mid, "boss")  # the same member at two tills (two bills)
    tills = []
    for name in ("till1", "till2"):
        c = app.test_client()
        c.csrf = login(c, name)
        tills.append(c)
    barrier = threading.Barrier(16)
    results: list[tuple[int, dict]] = []
    lock = threading.Lock()

    def go(i):
        c = tills[i % 2]
        table = "A1" if i % 2 == 0 else "A2"
        barrier.wait()
        r = c.post(f"/staff/tables/{table}/member/coupon", data={"csrf_token": c.csrf, "code": code},
                   headers={"X-Requested-With": "js"})
        with lock:
            results.append((r.status_code, r.get_json()))

    threads = [threading.Thread(target=go, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    ok = [r for r in results if r[0] == 200]
    refused = [r for r in results if r[0] != 200]
    assert len(ok) == 1 and len(refused) == 15, results
    assert all(r[0] == 409 and r[1]["code"] == "coupon_refused" and "already been used" in r[1]["error"]
               for r in refused)
    used = gw.store.read().execute("SELECT state, session_id FROM mem_benefits").fetchall()
    assert len(used) == 1 and used[0][0] == "applied"
    audits = gw.store.read().execute("SELECT count(*) FROM audit_log WHERE action = 'benefit-apply'").fetchone()[0]
    assert audits == 1
