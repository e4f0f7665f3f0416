"""End to end with real parts: two Mosquittos (store and HQ), a real `storegw run` subprocess.

Zero loss across a SIGKILL of the gateway and an HQ outage; alert episodes raised and cleared
exactly once after dedupe by id.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from realparts import wait_for

from gateway.hq.watch import HQCollector
from gateway.spine.mqtt import new_client

pytestmark = pytest.mark.slow


class Publisher(threading.Thread):
    """Publish N QoS 1 readings from K devices with distinct timestamps, at a steady pace."""

    def __init__(self, port: int, n: int, devices: int, rate: float, start_ts: int | None) -> None:
        """``start_ts=None``: payloads without ``ts``, all alike (a cheap sensor repeating itself)."""
        super().__init__(daemon=True)
        self.port, self.n, self.devices, self.rate, self.start_ts = port, n, devices, rate, start_ts
        self.published = self.acked = 0
        self.client = new_client("test-publisher", clean=True)
        self.client.max_inflight_messages_set(100)

    def run(self) -> None:
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        t0 = time.monotonic()
        sent = []
        for i in range(self.n):
            dev = f"fridge-{i % self.devices:02d}"
            topic = f"devices/{dev}/telemetry"
            if self.start_ts is None:
                payload = json.dumps({"temp_c": 4.0})
            else:
                ts = self.start_ts + (i // self.devices) * 10
                payload = json.dumps({"ts": ts, "temp_c": 4.0 + (i % 7) * 0.1, "door_open": i % 2 == 0})
            sent.append((topic, payload, self.client.publish(topic, payload, qos=1)))
            self.published += 1
            ahead = self.published / self.rate - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
        # Like a device's firmware: what the broker did not acknowledge (it was down) is sent again;
        # a repeat of something it did get is the same reading, which the gateway stores once.
        deadline = time.monotonic() + 60
        while sent and time.monotonic() < deadline:
            unacked = []
            for topic, payload, info in sent:
                try:
                    info.wait_for_publish(5)
                    done = info.is_published()
                except (RuntimeError, ValueError):  # paho: "not currently connected" when it was published
                    done = False
                if not done:
                    if self.client.is_connected():
                        info = self.client.publish(topic, payload, qos=1)
                    unacked.append((topic, payload, info))
            sent = unacked
            if sent:
                time.sleep(0.2)
        self.acked = self.n - len(sent)
        self.client.loop_stop()
        self.client.disconnect()


def test_zero_loss_across_sigkill_and_hq_outage(mosquitto_factory, write_config, gateway_process):
    local = mosquitto_factory("local")
    hq_broker = mosquitto_factory("hq", persistence=True)  # HQ's broker keeps what it acknowledged
    cfg = write_config(local_port=local.port, hq_port=hq_broker.port, window="1s", grace="500ms")
    hq = HQCollector("127.0.0.1", hq_broker.port, client_id="hq-test", persistent=True).start()
    gw = gateway_process(cfg).start()
    n, devices = 20_000, 20
    start_ts = int(time.time() * 1000) - 60_000
    pub = Publisher(local.port, n, devices, rate=2500, start_ts=start_ts)
    pub.start()
    wait_for(lambda: pub.published >= n * 0.3, timeout=60, what="30% published")
    gw.kill()  # crash mid-stream: the local broker keeps the persistent session's messages
    hq_broker.stop()  # and HQ goes away too
    wait_for(lambda: pub.published >= n * 0.5, timeout=60, what="50% published")
    gw.start()
    wait_for(lambda: pub.published >= n * 0.7, timeout=60, what="70% published")
    hq_broker.start()  # HQ back on the same port; the collector reconnects by itself
    pub.join(120)
    assert pub.published == n
    wait_for(lambda: gw.health()["ingest"]["committed"] >= 1, timeout=30, what="ingest after restart")
    # Every reading has two metrics, so HQ's count per metric must be exactly n.
    try:
        wait_for(lambda: hq.summary_count("temp_c") >= n, timeout=90, what=f"{n} readings summarised at HQ")
    except TimeoutError:
        pytest.fail(f"HQ has {hq.summary_count('temp_c')} of {n}; gateway health: {gw.health()}")
    time.sleep(2)  # any late duplicate would arrive now
    assert hq.summary_count("temp_c") == n, gw.health()
    assert hq.summary_count("door_open") == n
    health = gw.health()
    assert health["outbox"]["summaries"]["depth"] == 0
    hq.stop()


def test_local_broker_restart_mid_stream_loses_nothing(mosquitto_factory, write_config, gateway_process):
    """The store's Mosquitto restarts while readings flow: the ingest notices, reconnects to its
    persistent session and gets every reading the broker acknowledged, each stored once."""
    local = mosquitto_factory("local", persistence=True)  # keeps the gateway's session across the restart
    hq_broker = mosquitto_factory("hq")
    cfg = write_config(local_port=local.port, hq_port=hq_broker.port)
    gw = gateway_process(cfg).start()
    wait_for(lambda: gw.health()["local_mqtt"]["connected"], timeout=20, what="subscribed")
    n = 6000
    pub = Publisher(local.port, n, 10, rate=1500, start_ts=int(time.time() * 1000) - 60_000)
    pub.start()
    wait_for(lambda: gw.health()["ingest"]["committed"] >= n * 0.3, timeout=60, what="30% committed")
    local.stop()
    wait_for(lambda: not gw.health()["local_mqtt"]["connected"], timeout=10, what="ingest noticed the outage")
    time.sleep(1)
    local.start()  # same port and persistence file
    pub.join(120)
    assert pub.acked == n, f"the publisher got {pub.acked} of {n} acknowledged"
    try:
        wait_for(lambda: gw.health()["ingest"]["committed"] >= n, timeout=60, what=f"{n} readings committed")
    except TimeoutError:
        pytest.fail(f"committed {gw.health()['ingest']['committed']} of {n}")
    time.sleep(1)
    health = gw.health()
    assert health["ingest"]["committed"] == n  # redelivered ones were recognised as duplicates
    assert health["local_mqtt"]["connected"]


def test_readings_without_ts_count_once_across_sigkills(mosquitto_factory, write_config, gateway_process):
    """Payloads without ``ts``, every one alike, are stamped on receipt: a backlog delivered in one
    burst after a crash must not collapse into one reading, and a reading stored but not yet
    acknowledged when the process died must not count twice when the broker delivers it again."""
    from realparts import db_key

    from gateway.store.db import DB_NAME, connect

    local = mosquitto_factory("local")
    hq = mosquitto_factory("hq")
    cfg = write_config(local_port=local.port, hq_port=hq.port)
    gw = gateway_process(cfg).start()
    wait_for(lambda: gw.health()["local_mqtt"]["connected"], timeout=20, what="subscribed")
    n = 6000
    pub = Publisher(local.port, n, 10, rate=2000, start_ts=None)
    pub.start()
    for share in (0.25, 0.5, 0.75):
        wait_for(lambda s=share: pub.published >= n * s, timeout=60, what=f"{share:.0%} published")
        gw.kill()  # whatever was committed and not yet acknowledged comes again, marked DUP
        time.sleep(0.3)  # a backlog builds up at the broker: it arrives as one burst
        gw.start()
    pub.join(120)
    assert pub.acked == n
    data = cfg.parent / "data"
    conn = connect(data / DB_NAME, db_key(data), readonly=True)
    try:
        wait_for(lambda: conn.execute("SELECT count(*) FROM readings").fetchone()[0] >= n, timeout=60,
                 what=f"{n} readings stored")
        time.sleep(1.5)  # a late duplicate would land now
        assert conn.execute("SELECT count(*) FROM readings").fetchone()[0] == n
    finally:
        conn.close()


def test_rule_alert_raised_and_cleared_once(mosquitto_factory, write_config, gateway_process):
    local = mosquitto_factory("local")
    hq_broker = mosquitto_factory("hq")
    rules = """
[alerts]
device_offline_after = "1h"

[[alerts.rules]]
name = "fridge-warm"
devices = "fridge-*"
metric = "temp_c"
above = 8.0
for = "3s"
clear_below = 6.0
severity = "major"
"""
    cfg = write_config(local_port=local.port, hq_port=hq_broker.port, extra=rules)
    hq = HQCollector("127.0.0.1", hq_broker.port, client_id="hq-alerts").start()
    gw = gateway_process(cfg).start()
    client = new_client("fridge-sim", clean=True)
    client.connect("127.0.0.1", local.port)
    client.loop_start()

    def send(temp: float) -> None:
        client.publish("devices/fridge-7/telemetry", json.dumps({"temp_c": temp}), qos=1).wait_for_publish(5)

    for _ in range(3):
        send(4.0)
        time.sleep(0.2)
    breach_started = time.monotonic()
    raised = None
    while time.monotonic() - breach_started < 20 and raised is None:
        send(9.5)
        time.sleep(0.5)
        raised = next((a for a in hq.alert_states("fridge-warm") if a["state"] == "raised"), None)
    assert raised is not None, "alert not raised within for + 5 s (+ margin)"
    # Hysteresis: 7 is below the threshold but above clear_below; it must not clear.
    for _ in range(4):
        send(7.0)
        time.sleep(0.3)
    assert [a["state"] for a in hq.alert_states("fridge-warm")] == ["raised"]
    for _ in range(3):
        send(5.0)
        time.sleep(0.3)
    wait_for(lambda: any(a["state"] == "cleared" for a in hq.alert_states("fridge-warm")), timeout=15,
             what="cleared alert")
    # A restart does not raise again or clear again.
    gw.stop()
    gw.start()
    send(5.0)
    time.sleep(2)
    states = sorted(a["state"] for a in hq.alert_states("fridge-warm"))
    assert states == ["cleared", "raised"]
    episode = {a["episode"] for a in hq.alert_states("fridge-warm")}
    assert len(episode) == 1
    client.loop_stop()
    hq.stop()
