"""The manager's equipment pages in real headless Chromium against a real `storegw run`: sign in with
password and TOTP, see every device with its SVG sparklines (server-rendered, no script, CSP-clean, no
request leaves the gateway), open a device, record a service done and see it in the history with the name
of who did it (the store keeps the staff id)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner
from realparts import equipment, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "members"))

from memhelpers import MANAGER_PASSWORD, enrol_manager, fresh_code, trust_clock  # noqa: E402
from ordhelpers import start_gateway  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CSP_WATCH = ("window.__csp = []; document.addEventListener('securitypolicyviolation', "
             "e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));")


@pytest.mark.parametrize("lang", ["zh"])  # the staff pages are bilingual inline (English 中文)
def test_manager_sees_sparklines_and_records_a_service(broker, write_config, gateway_process, chromium, tmp_path,
                                                       lang):
    from gateway.cli import main

    cfg = write_config(local_port=broker.port, hq_port=broker.port, uplink='client_id = "hq-side"',
                       extra='\n[equipment]\ncheck_every = "1s"\n')
    doc = {"equipment": [
        {"device_id": "fridge-1", "brand": "Haier", "model": "SC-240", "location": "kitchen",
         "purchased": "2024-03-01", "life_years": 8,
         "plans": [{"task": "clean coil", "mode": "fixed", "every": "2s", "start": "2026-01-01"}]}]}
    (tmp_path / "eq.json").write_text(json.dumps(doc))
    assert CliRunner().invoke(main, ["equipment", "import", str(tmp_path / "eq.json"), "--config", str(cfg)]
                              ).exit_code == 0
    totp = enrol_manager(cfg, tmp_path)
    gw = start_gateway(gateway_process, cfg).start()
    trust_clock(cfg)
    fridge = equipment(broker.port, "sim-fridge-2")
    fridge.publish("devices/fridge-2/telemetry", json.dumps({"temp_c": 4.0}), qos=1).wait_for_publish(5)
    wait_for(lambda: gw.health()["equipment"]["overdue"] >= 1, timeout=20, what="the plan overdue")
    origin = f"http://127.0.0.1:{gw.web_port}"
    requests: list[str] = []
    console: list[str] = []
    ctx = chromium.new_context(viewport={"width": 1280, "height": 800},
                               locale="zh-CN" if lang == "zh" else "en-US")
    ctx.on("request", lambda r: requests.append(r.url))
    ctx.add_init_script(CSP_WATCH)
    ctx.set_default_timeout(10_000)
    page = ctx.new_page()
    page.on("console", lambda m: console.append(m.text))
    try:
        page.goto(f"{origin}/staff/equipment?lang={lang}")
        page.get_by_role("textbox", name="Name 姓名").fill("boss")
        page.get_by_label("PIN or password").fill(MANAGER_PASSWORD)
        page.get_by_label("Authenticator code").fill(fresh_code(totp))
        page.get_by_role("button", name="Sign in 登录").click()
        page.get_by_role("heading", name="Equipment 设备").wait_for()
        assert page.get_by_role("link", name="fridge-2").count() == 1  # seen on MQTT, not registered
        row = page.locator("tr", has=page.get_by_role("link", name="fridge-1"))
        sparks = row.locator("svg.spark")
        assert sparks.count() == 4
        score = row.get_by_role("img", name="score 评分: 100 (last of 14)")
        assert score.count() == 1
        box = score.bounding_box()
        assert box and box["width"] > 50 and box["height"] > 10
        assert row.locator("svg.spark polyline, svg.spark circle").count() >= 4
        stroke = row.locator("svg.spark .spark-line, svg.spark .spark-point").first.evaluate(
            "el => getComputedStyle(el).stroke || getComputedStyle(el).fill")
        assert stroke and stroke != "none"
        assert "overdue 已逾期" in row.inner_text()
        row.get_by_role("link", name="fridge-1").click()
        page.get_by_role("heading", name="fridge-1").wait_for()
        assert page.get_by_label("Brand 品牌").input_value() == "Haier"
        page.get_by_label("What 内容").fill("coil cleaned")
        page.get_by_label("Parts 配件").fill("brush")
        page.get_by_role("button", name="Done 已完成").click()
        page.get_by_text("Service recorded 已记录保养").wait_for()
        assert "coil cleaned" in page.locator("#h-done + table").inner_text()
        assert "boss" in page.locator("#h-done + table").inner_text()
        violations = page.evaluate("window.__csp")
    finally:
        ctx.close()
        fridge.loop_stop()
        fridge.disconnect()
    assert violations == [], violations
    assert not [m for m in console if "Content Security Policy" in m], console
    outside = [u for u in requests if urlsplit(u).netloc != urlsplit(origin).netloc]
    assert not outside, outside
