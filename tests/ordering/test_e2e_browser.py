"""End to end in real headless Chromium against a real `storegw run` with a virtual ESC/POS printer.

Open the table URL → add dishes with options → a second phone sees the shared cart live → send →
the printer's bytes decode to the expected ticket → the KDS shows it → bump → the diner page shows
"served" without a reload. Every request the pages make must go to the gateway itself.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from ordhelpers import devices_toml, prepare_store, run_cli, start_gateway, table_url, wait_for
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from devices.escpos.simulator import VirtualPrinter

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def phone(browser, origin, requests):
    ctx = browser.new_context(viewport={"width": 360, "height": 740}, locale="en-US",
                              user_agent="Mozilla/5.0 (Linux; Android 8.1; cheap phone) CaptiveNetworkSupport")
    ctx.on("request", lambda r: requests.append(r.url))
    ctx.set_default_timeout(10_000)
    return ctx


def staff_page(browser, origin, requests, path, name, pin="246813"):
    """A staff browser signed in as ``name`` on ``path`` (the login form redirects back)."""
    ctx = browser.new_context(viewport={"width": 1024, "height": 700})
    ctx.on("request", lambda r: requests.append(r.url))
    page = ctx.new_page()
    page.goto(origin + path)
    page.get_by_role("textbox", name="Name 姓名").fill(name)
    page.get_by_label("PIN").fill(pin)
    page.get_by_role("button", name="Sign in 登录").click()
    return page


def test_order_print_kds_bump_served(broker, write_config, gateway_process, chromium):
    with VirtualPrinter() as printer:
        extra = "\n[ordering]\nkds_warn = \"5m\"\n\n" + devices_toml(("printer-hot", printer.url, "hot"))
        cfg = write_config(local_port=broker.port, hq_port=broker.port, uplink='client_id = "hq-side"', extra=extra)
        prepare_store(cfg, staff=(("chef", "kitchen"),))
        gw = start_gateway(gateway_process, cfg).start()
        url = table_url(cfg, "A1")
        origin = f"http://127.0.0.1:{gw.web_port}"
        assert url.startswith(origin + "/t/A1.")
        requests: list[str] = []

        a = phone(chromium, origin, requests).new_page()
        b = phone(chromium, origin, requests).new_page()
        a.goto(url)
        b.goto(url)
        assert a.get_by_role("heading", name=re.compile("Table A1")).is_visible()

        kung_pao = a.get_by_role("article", name="Kung Pao chicken")
        kung_pao.get_by_text("Options and note").click()
        kung_pao.get_by_role("radio", name="Extra hot").check()
        kung_pao.get_by_role("radio", name=re.compile("With rice")).check()
        kung_pao.get_by_role("textbox", name="Note").fill("no peanuts <b>please</b>")
        kung_pao.get_by_role("button", name="Add Kung Pao chicken").click()
        a.locator("#cart").get_by_text("Kung Pao chicken").wait_for()
        # the second phone at the table sees the shared cart without reloading
        b.locator("#cart").get_by_text("Kung Pao chicken").wait_for(timeout=10_000)
        b.get_by_role("button", name="Add Mapo tofu").click()
        a.locator("#cart").get_by_text("Mapo tofu").wait_for(timeout=10_000)
        assert "¥83.00" in a.locator("#cart-total").inner_text()  # 48 + 3 rice + 32

        a.get_by_role("button", name="Send to kitchen").click()
        a.get_by_text("Sent to the kitchen: round 1.").wait_for()
        b.locator("#rounds").get_by_text("Kung Pao chicken").wait_for(timeout=10_000)

        wait_for(lambda: printer.tickets(), timeout=20, what="the ticket on the printer")
        ticket = "\n".join(printer.tickets()[0])
        for expected in ("TABLE A1", "ROUND #1", "宫保鸡丁", "Kung Pao chicken", "特辣 / Extra hot",
                         "配米饭 / With rice", "NOTE: no peanuts <b>please</b>", "麻婆豆腐", "ALLERGY"):
            assert expected in ticket, (expected, ticket)
        assert len(printer.tickets()) == 1
        # "kitchen received" appears once the printer confirmed the ticket
        a.get_by_role("status", name="Kung Pao chicken: Kitchen received").wait_for(timeout=15_000)

        kds = staff_page(chromium, origin, requests, "/staff/kds/hot", "chef")
        kds.get_by_role("article", name=re.compile("Table A1")).wait_for()
        assert "no peanuts <b>please</b>" in kds.content().replace("&lt;", "<").replace("&gt;", ">")
        kds.get_by_role("button", name=re.compile("Bump ticket T")).click()
        # the diner's page shows both dishes served, live
        a.get_by_role("status", name="Kung Pao chicken: Served").wait_for(timeout=10_000)
        a.get_by_role("status", name="Mapo tofu: Served").wait_for(timeout=10_000)
        b.get_by_role("status", name="Mapo tofu: Served").wait_for(timeout=10_000)

        outside = [u for u in requests if urlsplit(u).netloc != urlsplit(origin).netloc and not u.startswith("data:")]
        assert outside == []
        for ctx in (a.context, b.context, kds.context):
            ctx.close()


def test_queue_number_preorder_call_and_seat(broker, write_config, gateway_process, chromium):
    """取号 and 预点餐 in Chromium: take a number, pre-order while waiting, get called and seated
    (staff in a second browser), then the table page holds the pre-ordered dish, not yet sent."""
    from gateway.cli import ordering as cli

    cfg = write_config(local_port=broker.port, hq_port=broker.port, uplink='client_id = "hq-side"')
    prepare_store(cfg, staff=(("wang", "waiter"),))
    gw = start_gateway(gateway_process, cfg).start()
    origin = f"http://127.0.0.1:{gw.web_port}"
    queue_url = run_cli(cli.tables, "queue-url", "--config", str(cfg)).strip()
    assert queue_url.startswith(origin + "/q/")
    requests: list[str] = []

    diner = phone(chromium, origin, requests).new_page()
    diner.goto(queue_url + ("&" if "?" in queue_url else "?") + "lang=en")
    diner.get_by_role("heading", name="Take a number").wait_for()
    diner.get_by_label("Party size").fill("3")
    diner.get_by_label(re.compile("Nickname")).fill("<script>x</script>Li")
    diner.get_by_role("button", name="Take a number").click()
    diner.get_by_role("status").filter(has_text="Waiting").wait_for()
    number = diner.locator(".qno").inner_text()
    assert re.fullmatch(r"[A-Z]\d{3}", number), number
    diner.get_by_role("button", name="Add Mapo tofu").click()
    diner.locator("#cart").get_by_text("Mapo tofu").wait_for()

    desk = staff_page(chromium, origin, requests, "/staff/queue", "wang")
    desk.get_by_role("cell", name=number, exact=True).wait_for()
    assert "<script>x</script>Li" in desk.locator("table.list").inner_text()  # shown as text, never run
    desk.get_by_role("button", name=f"Call {number}").click()
    # the diner's page is told without a reload
    diner.get_by_role("alert").filter(has_text="Called: please come to the desk!").wait_for(timeout=10_000)
    # the staff page reloads itself once the call is committed; choose the table after that reload,
    # or the reload resets the choice
    desk.get_by_role("row").filter(has_text=number).get_by_text("Called 已叫号").wait_for()
    seated = diner.get_by_role("status").filter(has_text="Seated at table")
    for _ in range(3):  # under load a late reload of the desk page can still reset the choice: choose again
        seat = desk.get_by_role("button", name=f"Seat {number}")
        if seat.count():
            desk.get_by_label(f"Table for {number}").select_option("A2")
            seat.click()
        try:
            seated.wait_for(timeout=10_000)
            break
        except PlaywrightTimeoutError:
            continue
    seated.wait_for(timeout=1_000)
    diner.get_by_role("link", name=re.compile("Open your table's page")).click()
    diner.get_by_role("heading", name=re.compile("Table A2")).wait_for()
    diner.locator("#cart").get_by_text("Mapo tofu").wait_for()  # the pre-order, waiting to be sent
    assert diner.get_by_role("button", name="Send to kitchen").is_visible()

    outside = [u for u in requests if urlsplit(u).netloc != urlsplit(origin).netloc and not u.startswith("data:")]
    assert outside == []
    for ctx in (diner.context, desk.context):
        ctx.close()
