"""`storegw demo`: a whole store on one machine, with a live status line.

Fresh temporary data directory, the built-in broker (the uplink points at it too, so the demo
is its own HQ), simulated equipment publishing once a second, one fridge drifting into a fault
(alert raised, later cleared).
"""

from __future__ import annotations

import json
import logging
import math
import random
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from gateway.config import parse
from gateway.core.models import now_ms
from gateway.hq.watch import HQCollector
from gateway.spine.mqtt import new_client

_LOGGER = logging.getLogger(__name__)

EQUIPMENT = {
    # device: (metric, normal value, noise)
    "fridge-1": ("temp_c", 4.0, 0.3),
    "fridge-2": ("temp_c", 4.5, 0.3),
    "freezer-1": ("temp_c", -18.0, 0.5),
    "fryer-1": ("oil_temp_c", 175.0, 1.5),
}
DRIFTING = "fridge-2"


def free_port() -> int:
    """Return a free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def demo_config_text(data_dir: Path, broker_port: int, web_port: int, *, printer_url: str = "",
                     scanner_port: str = "") -> str:
    """Return the demo's TOML config (also written to the data dir for the curious)."""
    devices = ""
    if printer_url:
        devices += f"""
[[devices]]
id = "printer-hot"
kind = "escpos"
port = "{printer_url}"
station = "hot"
"""
    if scanner_port:
        devices += f"""
[[devices]]
id = "scanner-pass"
kind = "scanner"
port = "{scanner_port}"
"""
    return f"""\
[store]
id = "demo-001"
name = "Demo Store"
data_dir = "{data_dir.as_posix()}"

[local_mqtt]
host = "127.0.0.1"
port = {broker_port}
embedded = true

[uplink]
host = "127.0.0.1"
port = {broker_port}
tls = false
client_id = "storegw-demo-001-uplink"

[web]
listen = "127.0.0.1:{web_port}"
public_host = "127.0.0.1:{web_port}"

[telemetry]
summary_window = "10s"
summary_grace = "2s"

[alerts]
device_offline_after = "30s"

[[alerts.rules]]
name = "fridge-warm"
devices = "fridge-*"
metric = "temp_c"
above = 8.0
for = "10s"
clear_below = 6.0
severity = "major"

[[alerts.rules]]
name = "freezer-warm"
devices = "freezer-*"
metric = "temp_c"
above = -12.0
for = "30s"
severity = "critical"

[[alerts.rules]]
name = "fryer-overheat"
devices = "fryer-*"
metric = "oil_temp_c"
above = 195.0
for = "5s"
severity = "critical"
{devices}"""


def drift(elapsed: float) -> float:
    """Return the drifting fridge's offset: warms from 20 s, peaks, recovers by 80 s (then repeats)."""
    t = elapsed % 120
    if 20 <= t <= 80:
        return 7.0 * math.sin(math.pi * (t - 20) / 60)
    return 0.0


class Equipment(threading.Thread):
    """Publishes simulated fridge, freezer and fryer telemetry (QoS 1, once a second)."""

    def __init__(self, port: int) -> None:
        super().__init__(name="demo-equipment", daemon=True)
        self.port = port
        self.stop_event = threading.Event()
        self.client = new_client("demo-equipment", clean=True)
        self.rng = random.Random(7)

    def run(self) -> None:
        """Publish until stopped."""
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        for dev in EQUIPMENT:
            self.client.publish(f"devices/{dev}/status", json.dumps({"state": "online"}), qos=1)
        t0 = time.monotonic()
        while not self.stop_event.wait(1.0):
            elapsed = time.monotonic() - t0
            for dev, (metric, base, noise) in EQUIPMENT.items():
                value = base + self.rng.gauss(0, noise) + (drift(elapsed) if dev == DRIFTING else 0.0)
                payload = {"ts": now_ms(), metric: round(value, 2)}
                if dev.startswith(("fridge", "freezer")):
                    payload["door_open"] = self.rng.random() < 0.05
                self.client.publish(f"devices/{dev}/telemetry", json.dumps(payload), qos=1)
        self.client.loop_stop()
        self.client.disconnect()


def run_demo(*, duration: float = 0, web_port: int = 0, status: bool = True) -> None:
    """Run the demo until Ctrl-C (or ``duration`` seconds)."""
    from devices.escpos.simulator import VirtualPrinter
    from devices.scanner.simulator import ScannerSimulator
    from gateway.app import build

    tmp = Path(tempfile.mkdtemp(prefix="storegw-demo-"))
    broker_port = free_port()
    web_port = web_port or free_port()
    printer = VirtualPrinter().start()  # the hot-kitchen printer: records what it is sent
    scanner = ScannerSimulator(link=tmp / "scanner-pass")  # the pass scanner (划菜) on a pty
    scanner.plug()
    text = demo_config_text(tmp / "data", broker_port, web_port, printer_url=printer.url,
                            scanner_port=scanner.port)
    (tmp / "storegw.toml").write_text(text)
    import tomllib

    cfg = parse(tomllib.loads(text), source=str(tmp / "storegw.toml"))
    gw = build(cfg)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    gw.start()
    hq = HQCollector("127.0.0.1", broker_port, cfg.uplink.topic_prefix, cfg.store.id, client_id="demo-hq").start()
    equipment = Equipment(broker_port)
    equipment.start()
    out = sys.stderr
    print(f"storegw demo: data in {tmp}  (config: {tmp / 'storegw.toml'})", file=out)
    print(f"  web:    http://127.0.0.1:{web_port}/   health: http://127.0.0.1:{web_port}/api/v1/health", file=out)
    print(f"  broker: 127.0.0.1:{broker_port}   HQ view: storegw hq watch --port {broker_port}", file=out)
    print(f"  devices: virtual kitchen printer {printer.url} (station hot; tickets end up in "
          f"{tmp / 'printer-hot.txt'}), pass scanner on {scanner.port}", file=out)
    print("  fridge-2 drifts warm after ~20 s: watch for the fridge-warm alert. Ctrl-C to stop.", file=out)
    ordering = gw.services.get("ordering")
    if ordering is not None:
        from gateway.ordering.demo import setup as setup_ordering

        for line in setup_ordering(ordering):
            print(line, file=out)
    t0 = time.monotonic()
    tty = out.isatty()
    last_print = 0.0
    try:
        while not stop.wait(1.0):
            if duration and time.monotonic() - t0 >= duration:
                break
            if not status:
                continue
            line = status_line(gw.health(), hq) + f" | tickets printed {len(printer.tickets())}"
            if tty:
                out.write("\r\x1b[K" + line)
                out.flush()
            elif time.monotonic() - last_print >= 10:
                print(line, file=out)
                last_print = time.monotonic()
    finally:
        if tty and status:
            out.write("\n")
        equipment.stop_event.set()
        equipment.join(3)
        hq.stop()
        gw.stop()
        (tmp / "printer-hot.txt").write_text("\n".join(printer.lines()) + "\n", encoding="utf-8")
        printer.stop()
        scanner.unplug()
        print(f"storegw demo stopped; data left in {tmp}", file=out)


def status_line(h: dict[str, Any], hq: HQCollector) -> str:
    """One line: ingest rate, outbox depth, HQ messages, last alert."""
    depth = sum(v["depth"] for v in h["outbox"].values())
    last = h["alerts"]["last"]
    alert = f"{last['state']} {last['rule']} on {last['device']} at {last['ts'][11:19]}" if last else "none"
    return (f"ingest {h['ingest']['rate_per_s']:.1f}/s | readings {h['ingest']['committed']} | outbox {depth} | "
            f"HQ received {hq.received} | alerts active {h['alerts']['active']} | last alert: {alert}")
