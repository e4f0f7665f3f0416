"""Issue 10, item 10 on a page: the privacy report for the auditor role (``/staff/privacy``).

GET only, role-checked (``privacy-report``: auditors and managers), in Chinese and English, counts,
dates, staff references and key versions: never a personal value (a member's phone, a staff name).
In real headless Chromium on a phone-sized screen: the auditor signs in with password + TOTP and
reads it in both languages without sideways scrolling.
"""

from __future__ import annotations

import re

import pytest
from ordhelpers import CHROMIUM_ARGS, PASSWORD, add_privileged, gateway_config, staff_login

from gateway.staff import accounts as staffops

PHONE = "13912345678"


def _member(gw):
    return gw.services["members"].register(nickname="Chen", phone=PHONE, allergies="peanut",
                                           consents={"benefits": True}, channel="counter", who="boss")["id"]


def test_the_auditor_reads_the_report_in_both_languages_and_floor_staff_may_not(app, svc, gw):
    _member(gw)
    boss = app.test_client()
    boss_auth = add_privileged(svc, "boss", "manager")
    assert staff_login(boss, "boss", PASSWORD, boss_auth.code()).status_code == 303
    tok = re.search(r'name="csrf_token" value="([^"]+)"', boss.get("/staff/login").get_data(as_text=True)).group(1)
    member_id = gw.store.read().execute("SELECT id FROM mem_members").fetchone()[0]
    r = boss.post("/staff/unmask/phone", data={"field": "mem_members.phone_ct", "ref": str(member_id),
                                               "reason": "call back", "csrf_token": tok},
                  headers={"X-Requested-With": "js"})
    assert r.get_json() == {"ok": True, "value": PHONE}

    auditor = app.test_client()
    auth = add_privileged(svc, "audrey", "auditor")
    assert staff_login(auditor, "audrey", PASSWORD, auth.code()).status_code == 303
    en = auditor.get("/staff/privacy?lang=en")
    assert en.status_code == 200
    html = en.get_data(as_text=True)
    assert "Privacy report" in html and "user.contact.phone_number" in html and "Key versions" in html
    boss_ref = gw.store.read().execute("SELECT id FROM ord_staff WHERE name = 'boss'").fetchone()[0]
    assert f"staff:{boss_ref}/manager" in html  # unmasks by reference
    assert PHONE not in html and "boss" not in html.split("</nav>", 1)[1]
    zh = auditor.get("/staff/privacy?lang=zh").get_data(as_text=True)
    assert "隐私报告" in zh and "密钥版本" in zh and PHONE not in zh
    assert auditor.post("/staff/privacy").status_code == 405  # GET only
    # the staff bar links it for those who may read it
    assert "/staff/privacy" in auditor.get("/staff/audit").get_data(as_text=True)
    waiter = app.test_client()
    svc.writer.call(lambda c: staffops.add_staff(c, "li", "waiter", "246813"))
    assert staff_login(waiter, "li", "246813").status_code == 303
    assert waiter.get("/staff/privacy").status_code == 403
    assert "/staff/privacy" not in waiter.get("/staff/").get_data(as_text=True)


@pytest.mark.slow
@pytest.mark.browser
def test_the_privacy_report_in_chromium_on_a_phone(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    from gateway.app import build

    gw = build(gateway_config(tmp_path))
    gw.start(web=True, devices=False)
    try:
        _member(gw)
        auth = add_privileged(gw.services["ordering"], "audrey", "auditor")
        origin = f"http://{gw.cfg.web.listen}"
        requests: list[str] = []
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            try:
                for locale, heading, keys in (("en-US", "Privacy report", "Key versions"),
                                              ("zh-CN", "隐私报告", "密钥版本")):
                    ctx = browser.new_context(viewport={"width": 360, "height": 740}, locale=locale, is_mobile=True,
                                              has_touch=True)
                    ctx.on("request", lambda r: requests.append(r.url))
                    ctx.set_default_timeout(10_000)
                    page = ctx.new_page()
                    page.goto(origin + "/staff/privacy")
                    page.get_by_role("textbox", name="Name 姓名").fill("audrey")
                    page.get_by_label("PIN or password").fill(PASSWORD)
                    page.get_by_label("Authenticator code").fill(auth.code())
                    page.get_by_role("button", name="Sign in 登录").click()
                    page.get_by_role("heading", name=heading, exact=True).wait_for()
                    page.get_by_role("heading", name=keys).wait_for()
                    assert page.locator("text=user.contact.phone_number").count() == 1
                    assert PHONE not in page.content()
                    width = page.evaluate("document.documentElement.scrollWidth")
                    assert width <= 361, width  # fits the phone: no sideways scrolling
                    ctx.close()
            finally:
                browser.close()
        assert all(u.startswith(origin) for u in requests), [u for u in requests if not u.startswith(origin)]
    finally:
        gw.stop()
