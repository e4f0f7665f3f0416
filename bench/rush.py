"""Dinner rush: 60 tables, 300 simulated diners against a real `storegw run` pinned to one CPU core.

Each diner opens the table page once, then polls the table state (ETag, so unchanged polls are a
cheap 304), adds dishes to the shared cart and, one diner per table, sends rounds (加菜) to the
kitchen. Meanwhile equipment publishes telemetry (500 messages/s, QoS 1) to the store's Mosquitto
and tickets print on four virtual ESC/POS printers (one per station) through the durable queue.

Latency is measured per HTTP request on the client (p50/p99 of every request). ``errors`` counts
transport failures, 5xx and any 4xx other than an expected refusal (409 empty cart when two phones
send at once). ``order_to_ticket_p99_ms`` is from sending a round to its station ticket being fully
received (cut) by the virtual printer.

Prints progress to stderr and, last, one JSON line on stdout:
``{"diners", "requests", "p50_ms", "p99_ms", "errors", "order_to_ticket_p99_ms", ...}``.

    python bench/rush.py [--tables 60] [--diners 300] [--duration 60] [--telemetry 500] [--core 0]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from _harness import Broker, free_port  # noqa: E402

from devices.escpos.simulator import VirtualPrinter, decode_tickets  # noqa: E402
from gateway.spine.mqtt import new_client  # noqa: E402

STATIONS = ("cold", "hot", "staple", "bar")
TICKET_RE = re.compile(r"TABLE (T\d+)")
ROUND_RE = re.compile(r"ROUND #(\d+)")


def log(msg: str) -> None:
    """Write a progress line to stderr."""
    print(f"[bench/rush] {msg}", file=sys.stderr, flush=True)


def pct(values: list[float], p: float) -> float:
    """Return the p-th percentile (nearest rank)."""
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(p / 100 * len(s) + 0.5)) - 1))]


class TimedPrinter(VirtualPrinter):
    """A virtual printer that timestamps each ticket (table, round) when its cut arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.printed_at: dict[tuple[str, int], float] = {}
        self._seen = 0

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """Record bytes; on a cut, time-stamp the new tickets."""
        out = super().feed(data)
        if b"\x1dV" in data:
            now = time.monotonic()
            tickets = decode_tickets(self.printed, self.encoding)
            for lines in tickets[self._seen:]:
                text = "\n".join(lines)
                t, r = TICKET_RE.search(text), ROUND_RE.search(text)
                if t and r:
                    self.printed_at.setdefault((t.group(1), int(r.group(1))), now)
            self._seen = len(tickets)
        return out


class Stats:
    """Shared counters of the load generators."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.errors = 0
        self.error_kinds: dict[str, int] = {}
        self.refusals = 0
        self.sent_at: dict[tuple[str, int], float] = {}
        self.rounds = 0

    def record(self, ms: float, status: int | str, expected: tuple[int, ...] = ()) -> None:
        """Record one request."""
        with self.lock:
            self.latencies.append(ms)
            if isinstance(status, str) or status >= 500 or (status >= 400 and status not in expected):
                self.errors += 1
                self.error_kinds[str(status)] = self.error_kinds.get(str(status), 0) + 1
            elif status >= 400:
                self.refusals += 1


class Diner(threading.Thread):
    """One phone: page once, then poll state, add dishes, and (the table's sender) send rounds."""

    def __init__(self, port: int, url: str, table: str, idx: int, sender: bool, stats: Stats,
                 stop: threading.Event, items: list[tuple[str, dict[str, str]]], seed: int,
                 source: str = "127.0.0.1") -> None:
        super().__init__(daemon=True, name=f"diner-{table}-{idx}")
        self.source = source  # the phone's own address: on the store's Wi-Fi every phone has one
        self.port, self.table, self.sender, self.stats, self.stop = port, table, sender, stats, stop
        self.path = urllib.parse.urlsplit(url).path
        self.d = f"{table.lower()}d{idx}x"
        self.items = items
        self.rng = random.Random(seed)
        self.conn: http.client.HTTPConnection | None = None
        self.etag = ""
        self.csrf = ""
        self.idem = ""
        self.keepalive = False

    def request(self, method: str, path: str, body: dict[str, str] | None = None,
                headers: dict[str, str] | None = None, expected: tuple[int, ...] = ()) -> tuple[int, bytes, dict]:
        """One request on this phone's keep-alive connection; timed."""
        hdrs = dict(headers or {})
        if not self.keepalive:
            hdrs["Connection"] = "close"
        data = None
        if body is not None:
            data = urllib.parse.urlencode(body)
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        t0 = time.monotonic()
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30,
                                                       source_address=(self.source, 0))
            self.conn.request(method, path, body=data, headers=hdrs)
            resp = self.conn.getresponse()
            payload = resp.read()
            status, rh = resp.status, dict(resp.getheaders())
            if rh.get("Connection", "").lower() == "close":
                self.conn.close()
                self.conn = None
        except (OSError, http.client.HTTPException) as err:
            if self.conn is not None:
                self.conn.close()
            self.conn = None
            self.stats.record((time.monotonic() - t0) * 1000, type(err).__name__)
            return 0, b"", {}
        self.stats.record((time.monotonic() - t0) * 1000, status, expected)
        return status, payload, rh

    def run(self) -> None:
        """Behave like a diner until the rush ends."""
        time.sleep(self.rng.uniform(0, 8))  # guests arrive over a few seconds
        status, html, _ = self.request("GET", f"{self.path}?d={self.d}&lang=zh")
        m = re.search(rb'name="csrf" value="([^"]+)"', html)
        if status != 200 or not m:
            return
        self.csrf = m.group(1).decode()
        js = {"Accept": "application/json", "X-Requested-With": "js"}
        next_add = time.monotonic() + self.rng.uniform(2, 10)
        next_send = time.monotonic() + self.rng.uniform(12, 20)
        while not self.stop.is_set():
            hdrs = {"If-None-Match": self.etag} if self.etag else {}
            status, _, rh = self.request("GET", f"{self.path}/state.json", headers=hdrs)
            if status == 200:
                self.etag = rh.get("ETag", "")
            now = time.monotonic()
            if now >= next_add:
                item, opts = self.rng.choice(self.items)
                body = {"csrf": self.csrf, "d": self.d, "lang": "zh", "item": item, "qty": "1", **opts}
                if self.rng.random() < 0.2:
                    body["note"] = "少辣 less spicy"
                self.request("POST", f"{self.path}/add", body, js, expected=(429,))
                next_add = now + self.rng.uniform(8, 20)
            if self.sender and now >= next_send:
                self.idem = self.idem or os.urandom(9).hex()
                t0 = time.monotonic()
                status, payload, _ = self.request(
                    "POST", f"{self.path}/submit", {"csrf": self.csrf, "d": self.d, "lang": "zh", "idem": self.idem},
                    js, expected=(409,))
                if status == 200:
                    rnd = json.loads(payload).get("round")
                    with self.stats.lock:
                        self.stats.sent_at.setdefault((self.table, rnd), t0)
                        self.stats.rounds += 1
                    self.idem = ""
                elif status == 409:
                    self.idem = ""
                next_send = now + self.rng.uniform(15, 25)
            self.stop.wait(self.rng.uniform(2.0, 3.0))
        if self.conn is not None:
            self.conn.close()


class Equipment(threading.Thread):
    """Publishes telemetry at a steady rate (QoS 1) from 50 devices."""

    def __init__(self, port: int, rate: float, stop: threading.Event) -> None:
        super().__init__(daemon=True, name="equipment")
        self.port, self.rate, self.stop = port, rate, stop
        self.sent = 0

    def run(self) -> None:
        """Publish until stopped."""
        if self.rate <= 0:
            return
        client = new_client("bench-equipment", clean=True)
        client.max_inflight_messages_set(1000)
        client.connect("127.0.0.1", self.port)
        client.loop_start()
        t0 = time.monotonic()
        while not self.stop.is_set():
            dev = f"fridge-{self.sent % 50:02d}"
            payload = json.dumps({"temp_c": 4.0 + (self.sent % 13) * 0.1, "door_open": self.sent % 7 == 0})
            client.publish(f"devices/{dev}/telemetry", payload, qos=1)
            self.sent += 1
            ahead = self.sent / self.rate - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
        client.loop_stop()
        client.disconnect()


def write_config(work: Path, mqtt_port: int, web_port: int, printers: dict[str, TimedPrinter], threads: int) -> Path:
    """Write the gateway config for the bench."""
    devices = "".join(f'\n[[devices]]\nid = "printer-{s}"\nkind = "escpos"\nport = "{p.url}"\nstation = "{s}"\n'
                      for s, p in printers.items())
    path = work / "storegw.toml"
    path.write_text(f"""[store]
id = "bench-001"
data_dir = "{(work / 'data').as_posix()}"

[local_mqtt]
port = {mqtt_port}

[uplink]
host = "127.0.0.1"
port = {mqtt_port}
tls = false
client_id = "storegw-bench-001-uplink"

[web]
listen = "127.0.0.1:{web_port}"
public_host = "127.0.0.1:{web_port}"
threads = {threads}

[ordering]
submit_rate = 10
{devices}""")
    return path


def run_command(config: Path) -> list[str]:
    """Return `storegw run` for this config."""
    return [sys.executable, "-m", "gateway", "run", "--config", str(config)]


def cli(config: Path, *args: str, stdin: str | None = None) -> str:
    """Run a storegw command; return stdout."""
    out = subprocess.run([sys.executable, "-m", "gateway", *args, "--config", str(config)], input=stdin,
                         capture_output=True, text=True, cwd=ROOT, check=True)
    return out.stdout


def main() -> None:
    """Run the rush and print the JSON line."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tables", type=int, default=60)
    ap.add_argument("--diners", type=int, default=300)
    ap.add_argument("--duration", type=float, default=60.0, help="Seconds of the rush after the first arrivals.")
    ap.add_argument("--telemetry", type=float, default=500.0, help="Telemetry messages per second.")
    ap.add_argument("--core", type=int, default=0, help="CPU core for `storegw run` (-1: no pinning).")
    ap.add_argument("--threads", type=int, default=16, help="web.threads of the gateway.")
    ap.add_argument("--keepalive", action="store_true",
                    help="Keep one connection per phone (needs a server connection limit above --diners).")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="storegw-rush-"))
    broker = Broker(work / "mosquitto").start()
    mqtt_port, web_port = broker.port, free_port()
    printers = {s: TimedPrinter().start() for s in STATIONS}
    config = write_config(work, mqtt_port, web_port, printers, args.threads)
    tables = [f"T{i:02d}" for i in range(1, args.tables + 1)]
    cli(config, "menu", "import", "--sample")
    cli(config, "tables", "add", *tables)
    urls = {}
    for line in cli(config, "tables", "list").splitlines():
        tid, _, _, url = line.split("\t")
        urls[tid] = url
    cmd = run_command(config)
    if args.core >= 0 and shutil.which("taskset"):
        cmd = ["taskset", "-c", str(args.core), *cmd]
        if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
            others = set(range(os.cpu_count() or 1)) - {args.core}
            os.sched_setaffinity(0, others)  # keep the load generator off the gateway's core
    log(f"work dir {work}; starting: {' '.join(cmd[:4])} ...")
    gw = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(work / "gateway.log", "wb"),  # noqa: SIM115
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    stats = Stats()
    stop = threading.Event()
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", web_port, timeout=2)
                c.request("GET", "/api/v1/health")
                if c.getresponse().status in (200, 503):
                    break
            except OSError:
                if time.monotonic() > deadline or gw.poll() is not None:
                    raise SystemExit(f"gateway did not start; see {work / 'gateway.log'}") from None
                time.sleep(0.2)
        from gateway.ordering.menu import sample_document

        items = []
        for cat in sample_document()["categories"]:
            for it in cat["items"]:
                if it.get("stock") is None:
                    opts = {f"opt_{g['id']}": g["choices"][-1]["id"] for g in it["options"] if g["required"]}
                    items.append((it["id"], opts))
        equipment = Equipment(mqtt_port, args.telemetry, stop)
        equipment.start()
        diners = []
        for i in range(args.diners):
            table = tables[i % len(tables)]
            # each phone from its own loopback address, as on the store's Wi-Fi (limits are per address)
            diners.append(Diner(web_port, urls[table], table, i // len(tables), i < len(tables), stats, stop,
                                items, seed=i, source=f"127.1.{i // 250}.{i % 250 + 1}"))
        log(f"{len(diners)} diners at {len(tables)} tables; telemetry {args.telemetry:.0f}/s; "
            f"{args.duration:.0f} s of rush")
        t0 = time.monotonic()
        for d in diners:
            d.keepalive = args.keepalive
            d.start()
        while time.monotonic() - t0 < args.duration + 8:
            time.sleep(5)
            with stats.lock:
                lat = list(stats.latencies)
            log(f"t={time.monotonic() - t0:4.0f}s requests {len(lat)} p50 {pct(lat, 50):.1f} ms "
                f"p99 {pct(lat, 99):.1f} ms errors {stats.errors} rounds {stats.rounds} "
                f"telemetry {equipment.sent}")
        stop.set()
        for d in diners:
            d.join(35)
        equipment.join(10)
        time.sleep(3)  # the last tickets finish printing
        o2t = []
        missing = 0
        printed: dict[tuple[str, int], float] = {}
        for p in printers.values():
            for key, ts in p.printed_at.items():
                printed[key] = max(printed.get(key, 0.0), ts)  # a round is on paper when its last station ticket is
        for key, sent in stats.sent_at.items():
            if key in printed:
                o2t.append((printed[key] - sent) * 1000)
            else:
                missing += 1
        with stats.lock:
            lat = list(stats.latencies)
        health = {}
        try:
            c = http.client.HTTPConnection("127.0.0.1", web_port, timeout=5)
            c.request("GET", "/api/v1/health")
            health = json.loads(c.getresponse().read())
        except (OSError, ValueError):
            pass
        if stats.error_kinds:
            log(f"errors by kind: {stats.error_kinds}")
        log(f"rounds {stats.rounds}, tickets printed for {len(o2t)}, not printed {missing}; "
            f"telemetry committed {health.get('ingest', {}).get('committed')}")
        result = {"diners": len(diners), "requests": len(lat), "p50_ms": round(pct(lat, 50), 1),
                  "p99_ms": round(pct(lat, 99), 1), "errors": stats.errors + missing,
                  "order_to_ticket_p99_ms": round(pct(o2t, 99), 1), "rounds": stats.rounds,
                  "refusals": stats.refusals, "telemetry_sent": equipment.sent,
                  "telemetry_committed": health.get("ingest", {}).get("committed")}
    finally:
        stop.set()
        gw.send_signal(signal.SIGTERM)
        try:
            gw.wait(20)
        except subprocess.TimeoutExpired:
            gw.kill()
        broker.stop()
        for p in printers.values():
            p.stop()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
