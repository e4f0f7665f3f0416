"""storegw hq serve in real Chromium: a store that goes silent shows offline within 2 × keepalive of
its LWT; alerts by severity, the last summary, dead letters and /metrics over a real PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from fleetsim import SimLoop, SimStore
from realparts import CHROMIUM_ARGS, Mosquitto, free_port, wait_for, wait_port

from gateway.hq.consume import Consumer
from gateway.hq.databases import open_sink
from gateway.spine.mqtt import new_client

pytestmark = [pytest.mark.slow, pytest.mark.browser]

KEEPALIVE = 5


def shows(page, text: str) -> bool:
    """Whether the page shows ``text`` now (it reloads itself every second: a read can race a reload)."""
    try:
        return text in page.locator("body").inner_text(timeout=2000)
    except Exception:  # noqa: BLE001 - playwright's "context destroyed" during the reload: read again
        return False


def test_a_silent_store_goes_offline_on_the_fleet_page(tmp_path: Path, pg_db: str) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    broker = Mosquitto(tmp_path / "mosq").start()
    sink = open_sink(pg_db)
    consumer = Consumer(sink, "127.0.0.1", broker.port, client_id="hq-view-1", flush_s=0.05, stats_every=0.5)
    stop = threading.Event()
    worker = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    quiet, loud = (SimStore(name, "127.0.0.1", broker.port, rate=2, alert_p=0.2, keepalive=KEEPALIVE, seed=i)
                   for i, name in enumerate(("sh-001", "sh-002")))
    loops = [SimLoop([quiet]), SimLoop([loud])]
    port = free_port()
    serve = subprocess.Popen([sys.executable, "-m", "gateway", "hq", "serve", "--db", pg_db, "--port", str(port),
                              "--refresh", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    lwt_at: list[float] = []
    watcher = new_client("watcher", clean=True)
    watcher.on_message = lambda c, u, m: lwt_at.append(time.monotonic()) if b'"offline"' in m.payload else None
    try:
        consumer.start()
        worker.start()
        for loop in loops:
            loop.start()
        watcher.connect("127.0.0.1", broker.port)
        watcher.subscribe("storegw/v1/sh-001/status", qos=1)
        watcher.loop_start()
        bad = new_client("bad-store", clean=True)
        bad.connect("127.0.0.1", broker.port)
        bad.publish("storegw/v1/sh-002/alerts", json.dumps({"id": "x"}), qos=1).wait_for_publish(5)
        bad.disconnect()
        wait_port(port)
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            row = page.locator('tr[data-store="sh-001"] td.state')
            row.filter(has_text="online").wait_for(timeout=20_000)
            page.locator('tr[data-store="sh-002"]').filter(has_text="telemetry/summary").wait_for(timeout=20_000)
            wait_for(lambda: shows(page, "major"), 10, "sh-002's alerts (severity major)")
            wait_for(lambda: shows(page, "alerts schema:"), 10, "the dead letter and its reason")

            loops[0].stop(clean=False)  # sh-001 goes silent: the broker sends its LWT after 1.5 × keepalive
            wait_for(lambda: lwt_at, 4 * KEEPALIVE, "sh-001's LWT")
            page.locator('tr[data-store="sh-001"] td.state.offline').wait_for(timeout=2 * KEEPALIVE * 1000)
            seen = time.monotonic() - lwt_at[0]
            assert seen <= 2 * KEEPALIVE
            assert "online" in page.locator('tr[data-store="sh-002"] td.state').inner_text()
            browser.close()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        assert 'storegw_hq_messages_total{consumer="hq-view-1"}' in text
        assert "storegw_hq_dead_letters_total 1" in text
        assert 'storegw_hq_stores{state="offline"} 1' in text
        assert 'storegw_hq_upsert_seconds_bucket{consumer="hq-view-1",le="+Inf"}' in text
    finally:
        serve.terminate()
        serve.wait(10)
        watcher.loop_stop()
        for loop in loops:
            loop.stop()
        stop.set()
        worker.join(5)
        consumer.stop()
        sink.close()
        broker.stop()
