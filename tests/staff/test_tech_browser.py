"""Issue 14, item 6: the technician page in real headless Chromium against a real `storegw run`.

A scanner simulator on a pty, a virtual ESC/POS printer on loopback and a fridge publishing to a real
Mosquitto; a technician signs in with password + TOTP and sees the devices live, runs a scan test
(the result arrives through tech.js, so the page's script works under its CSP), prints a test page,
opens the scanner's last frames (masked) and its raw bytes with a reason (audited), runs doctor's
checks and opens the QR sticker sheet. No CSP violation, no request leaves the gateway.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from ordhelpers import CHROMIUM_ARGS, devices_toml, enrol_cli, prepare_store, start_gateway
from realparts import db_key, equipment, wait_for

from devices.escpos.simulator import VirtualPrinter
from devices.scanner.simulator import ScannerSimulator

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def test_technician_page_in_chromium(broker, write_config, gateway_process, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")

    synced = tmp_path / "synchronized"
    synced.touch()
    scanner = ScannerSimulator(tmp_path / "scanner")
    scanner.plug()
    printer = VirtualPrinter().start()
    fridge = None
    try:
        devices = (f'[[devices]]\nid = "scanner-1"\nkind = "scanner"\nport = "{scanner.port}"\n\n'
                   + devices_toml(("kitchen", printer.url, "hot")))
        cfg = write_config(local_port=broker.port, hq_port=broker.port, uplink='client_id = "hq-side"',
                           extra=f'\n[staff]\nclock_sync_files = ["{synced.as_posix()}"]\n\n{devices}')
        prepare_store(cfg)
        totp = enrol_cli(cfg, tmp_path, "li", "technician", "a long technician password")
        gw = start_gateway(gateway_process, cfg).start()
        origin = f"http://127.0.0.1:{gw.web_port}"
        fridge = equipment(broker.port, "fridge-7")
        fridge.publish("devices/fridge-7/telemetry", json.dumps({"temp_c": 3.9}), qos=1).wait_for_publish(5)

        requests: list[str] = []
        console: list[str] = []
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            ctx = browser.new_context(viewport={"width": 1200, "height": 900}, locale="zh-CN")
            ctx.on("request", lambda r: requests.append(r.url))
            ctx.set_default_timeout(15_000)
            page = ctx.new_page()
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.goto(origin + "/tech/")  # signed out: the sign-in page, then back here
            page.get_by_role("textbox", name="Name 姓名").fill("li")
            page.get_by_label("PIN or password").fill("a long technician password")
            page.get_by_label("Authenticator code").fill(totp.now())
            page.get_by_role("button", name="Sign in 登录").click()
            page.get_by_role("heading", name="Technician 技术员").wait_for()
            assert page.url == origin + "/tech/"

            row = page.locator('tr[data-dev="scanner-1"]')
            row.locator(".avail").filter(has_text="available 可用").wait_for()
            # the broker's equipment
            page.locator('tr[data-eq="fridge-7"]').filter(has_text="online").wait_for()
            assert "connected 已连接" in page.locator("#broker").inner_text()

            # live scan test: the result appears without a reload (tech.js under the CSP)
            row.get_by_role("button", name="Scan test on scanner-1").click()
            row.locator(".scantest").filter(has_text="Waiting").wait_for()
            scanner.scan("]Q1https://example.com/menu?t=12")
            row.locator(".scantest").filter(has_text="Received 已收到").wait_for()
            assert "example.com/menu" in row.locator(".scantest").inner_text()
            for _ in range(3):
                scanner.sample()
                time.sleep(0.3)
            wait_for(lambda: row.locator(".rate").inner_text() not in ("…", ""), timeout=20, what="events/min")
            assert int(row.locator(".count").inner_text()) >= 4

            # test print
            page.get_by_role("button", name="Test print on kitchen").click()
            page.get_by_role("status").filter(has_text="Test page queued").first.wait_for()
            wait_for(lambda: printer.lines(), timeout=20, what="the test page on the virtual printer")

            # doctor's checks with their fixes
            page.get_by_role("button", name="Run checks 运行检查").click()
            page.locator("#findings").wait_for()
            local = page.locator("#findings tr").filter(has_text="local broker")
            assert local.count() >= 1 and "ok" in local.first.inner_text()

            # the sticker sheet
            link = page.get_by_role("link", name=re.compile("Sticker sheet"))
            sheet = page.request.get(origin + link.get_attribute("href"))
            assert sheet.status == 200 and sheet.headers["content-type"].startswith("image/svg+xml")

            # last frames, masked; raw bytes only with a reason, audited
            page.get_by_role("link", name="scanner-1").click()
            frames = page.locator("#frames tbody tr")
            assert frames.count() >= 4
            assert "example.com/menu" in page.locator("#frames").inner_text()
            last_scan = frames.filter(has_text="example.com/menu").first
            last_scan.get_by_label("Reason 原因").fill("scanner drops characters")
            last_scan.get_by_role("button", name=re.compile("Show .* bytes")).click()
            page.get_by_role("heading", name=re.compile("Raw bytes")).wait_for()
            assert "5d 51 31" in page.locator("pre.hex").first.inner_text()  # "]Q1", the AIM id
            browser.close()
        csp = [m for m in console if "Content Security Policy" in m or "Refused to" in m]
        assert not csp, csp
        assert all(u.startswith(origin) for u in requests), [u for u in requests if not u.startswith(origin)]

        # the raw view and the test print are in the audit chain (who, device, reason; never the bytes)
        from gateway.store.db import DB_NAME, connect

        data_dir = tmp_path / "data"
        conn = connect(data_dir / DB_NAME, db_key(data_dir), readonly=True)
        try:
            rows = conn.execute("SELECT action, subject, why FROM audit_log WHERE action LIKE 'tech-%'").fetchall()
        finally:
            conn.close()
        assert ("tech-raw-view", "device:scanner-1", "scanner drops characters") in [tuple(r) for r in rows]
        assert any(r[0] == "tech-test-print" and r[1] == "device:kitchen" for r in rows)
    finally:
        if fridge is not None:
            fridge.loop_stop()
            fridge.disconnect()
        printer.stop()
        scanner.unplug()
