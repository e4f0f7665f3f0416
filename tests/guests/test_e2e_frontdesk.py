"""Front desk end to end in real headless Chromium on a phone-sized screen, in English and Chinese.

A gateway (in process, so the test can advance the guest service's clock) with a SAM ID reader and
an MRZ reader, each a pty simulator speaking its real protocol: card on the reader → driver → hub →
the front-desk page offers the read document → staff confirm and save. An adult and a minor with a
guardian share a room; a foreign passport is refused until the visa fields are typed, then saved;
its unsent report raises the deadline alert 22 h after check-in and the alert reaches HQ.
Identities: guestkit (vector ids from tests/devices/vectors).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from guestkit import ADULT, MINOR, PASSPORT, PASSWORD, id_card, mrz_zone
from realparts import wait_for

from devices.idcard.simulator import IdCardSimulator
from devices.mrz.simulator import MrzSimulator
from gateway.hq.watch import HQCollector

pytestmark = [pytest.mark.slow, pytest.mark.browser]



def phone_staff(browser, origin: str, path: str, name: str, locale: str, requests: list[str], code: str = ""):
    ctx = browser.new_context(viewport={"width": 360, "height": 740}, locale=locale, is_mobile=True,
                              has_touch=True)
    ctx.on("request", lambda r: requests.append(r.url))
    ctx.set_default_timeout(10_000)
    page = ctx.new_page()
    page.goto(origin + path)
    page.get_by_role("textbox", name="Name 姓名").fill(name)
    page.get_by_label("PIN").fill(PASSWORD if code else "246813")
    if code:
        page.get_by_label("Authenticator code").fill(code)
    page.get_by_role("button", name="Sign in 登录").click()
    page.wait_for_url(re.compile(r"/staff/frontdesk"))
    return page


def fits(page) -> bool:
    """Nothing wider than the phone's screen (no sideways scrolling of the page)."""
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


def test_register_from_sam_and_mrz_readers_in_chromium(make_gw, mosquitto_factory, chromium, tmp_path) -> None:
    local, hq_broker = mosquitto_factory("local"), mosquitto_factory("hq")
    hq = HQCollector("127.0.0.1", hq_broker.port, client_id="hq-frontdesk").start()
    sam = IdCardSimulator(tmp_path / "by-id" / "usb-sam-if00")
    mrz = MrzSimulator(tmp_path / "by-id" / "usb-mrz-if00")
    sam.link.parent.mkdir()
    sam.plug()
    mrz.plug()
    devices = (f'\n[[devices]]\nid = "idreader-1"\nkind = "idcard"\nport = "{sam.port}"\npoll_interval = "100ms"\n'
               f'\n[[devices]]\nid = "mrz-1"\nkind = "mrz"\nport = "{mrz.port}"\n')
    gw = make_gw('auto_send = false' + devices, web=True, devices=True, uplink="", local_port=local.port,
                 hq_port=hq_broker.port)
    svc = gw.services["guests"]
    origin = f"http://{gw.cfg.web.listen}"
    requests: list[str] = []
    adult, minor = id_card(*ADULT), id_card(*MINOR)
    try:
        # -- English: an adult from the SAM reader opens a stay
        page = phone_staff(chromium, origin, "/staff/frontdesk?lang=en", "lin", "en-US", requests)
        page.get_by_role("heading", name="Front desk", exact=True).wait_for()
        sam.place(adult)
        page.get_by_role("link", name="Register this document 王**").click(timeout=15_000)
        assert "360426********0071" in page.content()
        assert adult["id_number"] not in page.content()
        page.get_by_label("Room", exact=True).fill("0801")
        page.get_by_label(re.compile("same person")).check()
        assert fits(page)
        page.get_by_role("button", name="Save registration").click()
        page.get_by_role("heading", name="Room 0801").wait_for()
        page.get_by_text("Guest registered.").wait_for()
        assert "360426********0071" in page.content() and adult["id_number"] not in page.content()
        sam.remove()

        # -- the minor joins the room: refused without the guardian, naming the fields; then saved
        sam.place(minor)
        page.get_by_role("link", name="Add as co-occupant 王**").click(timeout=15_000)
        page.get_by_label(re.compile("same person")).check()
        page.get_by_role("button", name="Save registration").click()
        alert = page.get_by_role("alert")
        alert.wait_for()
        for name in ("Guardian's name", "Guardian's contact", "Relationship to the adults in the room", "监护人姓名"):
            assert name in alert.inner_text()
        page.get_by_label("Guardian's name", exact=True).fill("王大明")
        page.get_by_label("Guardian's contact", exact=True).fill("13800000000")
        page.get_by_label(re.compile("Relationship to the adults in the room")).fill("父子 father and son")
        page.get_by_label(re.compile("same person")).check()
        assert fits(page)
        page.get_by_role("button", name="Save registration").click()
        page.get_by_text("minor, guardian recorded").wait_for()
        assert "440113********001X" in page.content() and minor["id_number"] not in page.content()
        assert fits(page)
        sam.remove()

        # -- 中文: a foreign passport from the MRZ reader; the visa fields are required
        zh = phone_staff(chromium, origin, "/staff/frontdesk?lang=zh", "lin", "zh-CN", requests)
        zh.get_by_role("heading", name="前台登记", exact=True).wait_for()
        mrz.read_document(mrz_zone(PASSPORT))
        zh.get_by_role("link", name=re.compile("用此证件登记 M")).click(timeout=15_000)
        assert "*****509" in zh.content() and "ZE000509" not in zh.content()
        assert zh.get_by_label("姓名", exact=True).input_value() == "MARTIN, SARAH"  # no check digit: staff confirm it
        zh.get_by_label("房号", exact=True).fill("0902")
        zh.get_by_label(re.compile("已核对本人")).check()
        zh.get_by_role("button", name="保存登记").click()
        alert = zh.get_by_role("alert")
        alert.wait_for()
        assert "签证/停留类型" in alert.inner_text() and "Visa or stay type" in alert.inner_text()
        assert fits(zh)
        zh.get_by_label("签证/停留类型", exact=True).fill("L 旅游")
        zh.get_by_label("签证/停留有效期至").fill("2027-01-01")
        zh.get_by_label(re.compile("已核对本人")).check()
        zh.get_by_role("button", name="保存登记").click()
        zh.get_by_role("heading", name="房间 0902").wait_for()
        zh.get_by_text("境外：24小时内上报").wait_for()
        assert fits(zh)

        # -- the manager's report outbox, in Chinese and English, on the phone
        boss = phone_staff(chromium, origin, "/staff/frontdesk/reports?lang=zh", "boss", "zh-CN", requests,
                           code=gw.boss.code())
        boss.get_by_role("heading", name="治安上报").wait_for()
        assert boss.get_by_text("待发送").count() == 2
        assert fits(boss)
        boss.goto(origin + "/staff/frontdesk/reports?lang=en")
        boss.get_by_role("heading", name="Police reports").wait_for()
        assert fits(boss)

        # -- 22 h after check-in the foreign guest's report is still unsent: the alert, at HQ
        foreign = next(r for r in svc.reports() if r["deadline_ms"] is not None)
        stay = svc.stay(foreign["stay"])
        svc.clock = lambda: stay["check_in_ms"] + 22 * 3_600_000 + 60_000
        svc.tick()
        assert gw.alerts.is_active(f"guests:report:{foreign['id']}")
        raised = wait_for(lambda: hq.alert_states("guest-report-deadline"), timeout=20, what="the alert at HQ")
        assert raised[0]["state"] == "raised" and raised[0]["device"] == "guests"
        # the manager sends it: the alert clears
        boss.goto(origin + "/staff/frontdesk/reports?lang=en")
        boss.get_by_role("button", name=f"Send {foreign['name']}").click()
        boss.get_by_text("Sent (on time)").wait_for()
        wait_for(lambda: len(hq.alert_states("guest-report-deadline")) == 2, timeout=20, what="cleared at HQ")

        outside = [u for u in requests if urlsplit(u).netloc != urlsplit(origin).netloc and not u.startswith("data:")]
        assert outside == []
        for p in (page, zh, boss):
            p.context.close()
    finally:
        hq.stop()
        sam.unplug()
        mrz.unplug()
