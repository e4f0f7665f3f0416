"""A manager signs in with a password and an authenticator code in real headless Chromium on a
phone-sized screen, against a real `storegw run` whose clock is untrusted until a technician runs
`storegw staff trust-clock` (the board has no time sync since boot)."""

from __future__ import annotations

import re

import pytest
from ordhelpers import CHROMIUM_ARGS, enrol_cli, prepare_store, run_cli, start_gateway

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def test_manager_signs_in_with_password_and_totp_in_chromium(broker, write_config, gateway_process, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    from gateway.cli import ordering as cli

    absent = tmp_path / "timesync-synchronized"  # never created: the clock is not known to be right
    cfg = write_config(local_port=broker.port, hq_port=broker.port, uplink='client_id = "hq-side"',
                       extra=f'\n[staff]\nclock_sync_files = ["{absent.as_posix()}"]\n')
    prepare_store(cfg)
    totp = enrol_cli(cfg, tmp_path, "wang", "manager", "a long manager password")
    gw = start_gateway(gateway_process, cfg).start()
    origin = f"http://127.0.0.1:{gw.web_port}"
    requests: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        ctx = browser.new_context(viewport={"width": 360, "height": 740}, locale="zh-CN")
        ctx.on("request", lambda r: requests.append(r.url))
        ctx.set_default_timeout(10_000)
        page = ctx.new_page()

        def sign_in(code: str) -> None:
            page.goto(origin + "/staff/menu")
            page.get_by_role("textbox", name="Name 姓名").fill("wang")
            page.get_by_label("PIN or password").fill("a long manager password")
            page.get_by_label("Authenticator code").fill(code)
            page.get_by_role("button", name="Sign in 登录").click()

        step = int(__import__("time").time() // 30)
        sign_in(totp.generate_otp(step - 1))
        page.get_by_role("alert").filter(has_text="clock is not trusted").wait_for()
        run_cli(cli.staff, "trust-clock", "--by", "zhao", "--config", str(cfg))
        sign_in(totp.generate_otp(step))
        page.get_by_role("heading", name=re.compile("Menu")).wait_for()
        assert page.url.startswith(origin + "/staff/menu")
        assert "wang (manager)" in page.locator("nav.staffbar").inner_text()
        # the same code again (a shoulder-surfer, a second tab) is refused
        page.get_by_role("button", name="Sign out 退出").click()
        sign_in(totp.generate_otp(step))
        page.get_by_role("alert").filter(has_text="already used").wait_for()
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 360, width  # the sign-in page fits a phone
        browser.close()
    assert all(u.startswith(origin) for u in requests), [u for u in requests if not u.startswith(origin)]
