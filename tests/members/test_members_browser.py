"""Members pages in real headless Chromium on a phone-sized viewport (360 x 740), in zh-CN and in en,
against a real `storegw run`: a diner joins from the table page (consents unticked, ticked one by one),
sees their own page (tier, points, QR), withdraws a consent and asks for erasure; staff find the member
by phone on the bill, redeem a coupon, see the member lines and allergies, take payment; the diner
rates the visit; a manager completes the request. No page scrolls sideways; nothing leaves the gateway."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "ordering"))

from memhelpers import MANAGER_PASSWORD, enrol_manager, fresh_code, trust_clock  # noqa: E402
from ordhelpers import HttpDiner, prepare_store, start_gateway, table_url  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.browser]

PHONE = {"width": 360, "height": 740}
T = {  # what each page says, per language
    "zh": {"members": "会员", "join": "注册会员", "nick": "昵称或姓名", "phone": "手机号", "allergies": "过敏",
           "no": "会员号", "withdraw": "撤回 birthday", "erase": "申请删除我的数据（注销会员）", "given": "已同意",
           "withdrawn": "未同意/已撤回", "requested": "已提交：删除", "rate": "提交评价", "thanks": "感谢评价",
           "tier": "普通", "attach": "本单使用会员"},
    "en": {"members": "Members", "join": "Join", "nick": "Nickname or name", "phone": "Mobile number",
           "allergies": "Allergies", "no": "Member number", "withdraw": "Withdraw birthday",
           "erase": "Ask to erase my data (leave)", "given": "Given", "withdrawn": "Not given / withdrawn",
           "requested": "Requested: erasure", "rate": "Send", "thanks": "Thanks for rating", "tier": "Regular",
           "attach": "Use my membership on this bill"},
}


def _no_sideways_scroll(page, what):
    page.wait_for_load_state("load")  # the stylesheet too: unstyled, a loaded machine measured 419 px
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"] + 1, f"{what} scrolls sideways on a phone: {width}px"


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_member_pages_on_a_phone(broker, write_config, gateway_process, chromium, lang, tmp_path):
    t = T[lang]
    cfg = write_config(local_port=broker.port, hq_port=broker.port, uplink='client_id = "hq-side"',
                       extra="[members]\nbirthday_coupon_cents = 0\n")
    prepare_store(cfg)
    totp = enrol_manager(cfg, tmp_path)
    gw = start_gateway(gateway_process, cfg).start()
    trust_clock(cfg)
    origin = f"http://127.0.0.1:{gw.web_port}"
    url = table_url(cfg, "A1")
    HttpDiner(url, d="orderer01").post("add", item="c06", qty="2")
    assert HttpDiner(url, d="orderer01").send()[0] == 303
    requests: list[str] = []
    locale = "zh-CN" if lang == "zh" else "en-US"

    ctx = chromium.new_context(viewport=PHONE, locale=locale)
    ctx.on("request", lambda r: requests.append(r.url))
    ctx.set_default_timeout(10_000)
    diner = ctx.new_page()
    diner.goto(f"{url}?lang={lang}")
    diner.get_by_role("heading", name=re.compile("A1")).wait_for()
    own_table_page = diner.url  # with this phone's id: one of the party
    diner.get_by_role("link", name=t["members"], exact=True).click()
    diner.get_by_role("button", name=t["join"]).wait_for()
    _no_sideways_scroll(diner, "join page")
    assert diner.locator("input[type=checkbox]:checked").count() == 0
    diner.get_by_role("textbox", name=t["nick"]).fill("小林 Lin")
    diner.get_by_role("textbox", name=t["phone"]).fill("13812345678")
    diner.get_by_role("textbox", name=re.compile(t["allergies"])).fill("花生 peanuts")
    diner.locator("input[name=birthday]").fill("05-21")
    diner.locator("input[name=consent_benefits]").check()
    diner.locator("input[name=consent_birthday]").check()
    diner.get_by_role("button", name=t["join"]).click()
    diner.locator("#member-no").wait_for()
    number = diner.locator("#member-no").inner_text()
    assert re.fullmatch(r"SH001-\d{7}-[0-9A-Z]", number), number
    assert t["no"] in diner.content() and t["tier"] in diner.locator("#member-tier").inner_text()
    assert diner.locator("img[alt*=QR]").evaluate("img => img.naturalWidth") > 0
    _no_sideways_scroll(diner, "member page")
    diner.get_by_role("button", name=t["attach"], exact=False).click()
    diner.locator("#member-no").wait_for()
    birthday = diner.locator("small[data-consent=birthday]")
    assert t["given"] in birthday.inner_text()
    diner.get_by_role("button", name=re.compile(t["withdraw"], re.I)).click()
    diner.locator("small[data-consent=birthday]").filter(has_text=t["withdrawn"]).wait_for()
    diner.get_by_role("button", name=t["erase"]).click()
    diner.get_by_text(t["requested"]).wait_for()
    member_page = diner.url

    staff_ctx = chromium.new_context(viewport=PHONE, locale=locale)
    staff_ctx.on("request", lambda r: requests.append(r.url))
    staff_ctx.set_default_timeout(10_000)
    desk = staff_ctx.new_page()
    desk.goto(f"{origin}/staff/tables/A1?lang={lang}")
    desk.get_by_role("textbox", name="Name 姓名").fill("boss")
    desk.get_by_label("PIN or password").fill(MANAGER_PASSWORD)
    desk.get_by_label("Authenticator code").fill(fresh_code(totp))
    desk.get_by_role("button", name="Sign in 登录").click()
    desk.locator("#panel-member").wait_for()  # the diner linked the bill
    assert "花生 peanuts" in desk.locator(".allergy").inner_text()
    assert "138****5678" in desk.content() and "13812345678" not in desk.content()
    _no_sideways_scroll(desk, "staff bill page")
    desk.locator("input[name=points]").fill("")
    desk.get_by_role("button", name=re.compile("Mark paid")).click()
    desk.get_by_role("button", name=re.compile("Refund bill")).wait_for()
    assert "Points earned: 72" in desk.content()
    desk.goto(f"{origin}/staff/tables/A1/receipt?lang={lang}")
    from gateway.core.masking import mask_member_no

    assert mask_member_no(number) in desk.content() and number not in desk.content()
    assert "¥72.00" in desk.locator("#receipt-total").inner_text()
    for path in ("/staff/members", "/staff/members/requests", "/staff/members/1"):
        desk.goto(f"{origin}{path}?lang={lang}")
        desk.locator("h1").wait_for()
        _no_sideways_scroll(desk, path)
        assert desk.evaluate("document.documentElement.lang") == ("zh-CN" if lang == "zh" else "en")
    desk.goto(f"{origin}/staff/members/requests?lang={lang}")
    desk.get_by_role("button", name="Done 1").click()
    desk.locator("td").filter(has_text=re.compile("^done")).wait_for()

    diner.goto(member_page)
    assert "72" in diner.locator("#member-points").inner_text()
    diner.goto(own_table_page)
    diner.locator("input[name=rating][value='5']").check()
    diner.get_by_role("button", name=t["rate"]).click()
    diner.get_by_text(t["thanks"]).wait_for()
    _no_sideways_scroll(diner, "table page with the rating")

    outside = [u for u in requests if urlsplit(u).netloc != urlsplit(origin).netloc and not u.startswith("data:")]
    assert outside == []
    ctx.close()
    staff_ctx.close()
