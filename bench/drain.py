"""Benchmark draining a day of backlog to HQ, and how late a new alert raised during the drain arrives.

1. Backlog, while HQ is down, through the real code paths: synthetic readings for D devices
   (default 50, one metric, R readings per 60 s window) spanning the last H hours (default 24)
   go through ``Telemetry.write_batch`` and ``Telemetry.flush_summaries`` with the clock of the
   moment they would have happened, flushed as the running gateway flushes: after each window
   closes (plus grace). So the outbox holds what a gateway would hold after a day without HQ:
   one summary message per window of up to ``uplink.batch`` items (D items when D <= batch),
   plus the alerts of a few temperature excursions (raised and cleared). ``--single-flush``
   packs everything at the end instead (full ``uplink.batch`` messages).
2. HQ (a real Mosquitto) and an HQ collector (``gateway.hq.watch.HQCollector``) start; then
   ``python -m gateway run --config FILE`` starts on that data directory (``uplink.drain_rate``,
   ``uplink.batch`` and ``uplink.max_inflight`` set explicitly in its config).
3. Drain rate: backlog messages (and summary items) from the first to the last one arriving at
   HQ; the outbox must then be empty (``/api/v1/health``). The health endpoint is not polled
   during the drain unless ``--health-poll`` asks for it: each call runs on one of the web
   server's threads, each with its own database connection and page cache, which shows in RSS.
4. Alert latency: at 25 %, 50 % and 75 % of the drain a breaching reading (rule ``for = "0s"``) is
   published to the store's broker; latency is from that publish to the ``raised`` alert arriving
   at HQ. ``alert_latency_ms`` is the worst of the samples.

Prints progress to stderr and, last, one JSON line on stdout:
``{"backlog_messages", "backlog_items", "drain_msgs_per_s", "drain_items_per_s", "alert_latency_ms",
"rss_mb_peak"}`` plus ``drain_rate``, ``uplink_batch``, ``max_inflight``, ``backlog_alerts``,
``alert_latency_ms_samples`` and ``devices``/``hours``.

    python bench/drain.py [--devices 50] [--hours 24] [--drain-rate 200] [--batch 100] [--max-inflight 20]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import Broker, GatewayProc, free_port, make_log, wait_for, write_config  # noqa: E402

from gateway import domains  # noqa: E402
from gateway.config import load as load_config  # noqa: E402
from gateway.hq.watch import HQCollector  # noqa: E402
from gateway.spine import alerts as alerts_mod  # noqa: E402
from gateway.spine import telemetry as telemetry_mod  # noqa: E402
from gateway.spine.alerts import AlertManager  # noqa: E402
from gateway.spine.mqtt import new_client  # noqa: E402
from gateway.spine.payload import parse  # noqa: E402
from gateway.spine.telemetry import Telemetry  # noqa: E402
from gateway.store import open_store  # noqa: E402
from gateway.store import outbox as outbox_mod  # noqa: E402

log = make_log("drain")

WINDOW_MS = 60_000
GRACE_MS = 5_000
RULES = """\
device_offline_after = "1h"

[[alerts.rules]]
name = "fridge-warm"
devices = "fridge-*"
metric = "temp_c"
above = 8.0
for = "0s"
clear_below = 6.0
severity = "major"
"""


def device_name(i: int) -> str:
    """Return the id of device ``i``."""
    return f"fridge-{i:02d}"


def temperature(dev: int, minute: int, k: int, excursions: int) -> float:
    """Return a fridge temperature: 3-5 °C, and 20 warm minutes for the first ``excursions`` devices."""
    if dev < excursions and 180 + dev * 240 <= minute < 200 + dev * 240:
        return 10.5
    return round(3.0 + ((dev * 7 + minute * 3 + k) % 21) / 10, 1)


class SimClock:
    """Stand in for ``now_ms`` in telemetry, alerts and outbox while the backlog is generated."""

    def __init__(self) -> None:
        self.now = 0
        self._saved: list[tuple[Any, Any]] = []

    def __enter__(self) -> SimClock:
        for mod in (telemetry_mod, alerts_mod, outbox_mod):
            self._saved.append((mod, mod.now_ms))
            mod.now_ms = lambda: self.now  # type: ignore[attr-defined]
        return self

    def __exit__(self, *exc: object) -> None:
        for mod, fn in self._saved:
            mod.now_ms = fn  # type: ignore[attr-defined]


def build_backlog(cfg_path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Write H hours of readings, windows, summaries and alerts as the gateway would; return counts."""
    cfg = load_config(cfg_path)
    store = open_store(cfg.data_path, cfg.store.key_file, domains.SCHEMAS)
    store.start()
    alerts = AlertManager(cfg.store.id, cfg.prefix)
    tel = Telemetry(cfg, alerts)
    store.writer.call(lambda c: (alerts.load(c), tel.load(c)))
    minutes = int(args.hours * 60)
    real_now = int(time.time() * 1000)
    end = real_now - real_now % WINDOW_MS  # the last simulated window closes a minute before now
    start = end - minutes * WINDOW_MS
    clock = SimClock()

    def minute_readings(m: int) -> list:
        wstart = start + m * WINDOW_MS
        out = []
        for k in range(args.per_window):
            ts = wstart + (k + 1) * WINDOW_MS // (args.per_window + 1)
            for d in range(args.devices):
                body = json.dumps({"ts": ts, "temp_c": temperature(d, m, k, args.excursions)},
                                  separators=(",", ":")).encode()
                out.append(parse(device_name(d), body, ts))
        return out

    def write_hour(conn: Any, first: int, last: int) -> None:
        for m in range(first, last):
            wstart = start + m * WINDOW_MS
            clock.now = wstart + WINDOW_MS  # received as the window ends
            tel.write_batch(conn, minute_readings(m))
            if not args.single_flush:
                clock.now = wstart + WINDOW_MS + GRACE_MS
                tel.flush_summaries(conn, now=clock.now)

    t0 = time.perf_counter()
    logging.getLogger("gateway").setLevel(logging.ERROR)  # the excursions' "Alert raised" lines
    with clock:
        for first in range(0, minutes, 60):
            store.writer.call(lambda c, f=first: write_hour(c, f, min(f + 60, minutes)), timeout=600)
        if args.single_flush:
            clock.now = end + GRACE_MS
            store.writer.call(lambda c: tel.flush_summaries(c, now=clock.now), timeout=600)
    conn = store.read()
    counts: dict[str, Any] = {"messages": 0, "items": 0, "alerts": 0, "largest": 0, "keys": set()}
    for kind, msg_id, payload in conn.execute("SELECT kind, msg_id, payload FROM outbox"):
        counts["messages"] += 1
        counts["keys"].add(msg_id)
        if kind == "summary":
            n = len(json.loads(payload))
            counts["items"] += n
            counts["largest"] = max(counts["largest"], n)
        elif kind == "alert":
            counts["alerts"] += 1
    counts["bytes"] = conn.execute("SELECT coalesce(sum(size), 0) FROM outbox").fetchone()[0]
    counts["readings"] = tel.stats.committed
    store.close()
    log(f"backlog: {counts['readings']} readings from {args.devices} devices over {args.hours:g} h -> "
        f"{counts['messages']} outbox messages ({counts['items']} summary items, up to {counts['largest']} "
        f"per message; {counts['alerts']} alerts; {counts['bytes'] / 1e6:.1f} MB) in "
        f"{time.perf_counter() - t0:.1f}s")
    return counts


class DrainWatch:
    """HQ side: count backlog arrivals (deduplicated by id) and time alerts raised during the drain."""

    def __init__(self, backlog: set[str]) -> None:
        self.backlog = backlog  # outbox msg_id of every backlog message
        self.lock = threading.Lock()
        self.msg_ids: set[str] = set()
        self.item_ids: set[str] = set()
        self.first = 0.0
        self.last = 0.0
        self.done = threading.Event()
        self.waiting: dict[str, float] = {}  # device -> publish time of its breaching reading
        self.latencies: dict[str, float] = {}

    def on_message(self, topic: str, doc: Any) -> None:
        """Collector callback (paho thread)."""
        now = time.perf_counter()
        with self.lock:
            if topic.endswith("/telemetry/summary"):
                self.item_ids.update(item["id"] for item in doc)
                key = f"{doc[0]['id']}:{doc[0]['rev']}"  # the outbox msg_id of a summary message
            elif topic.endswith("/alerts"):
                key = doc["id"]
                sent = self.waiting.pop(doc["device"], None) if doc["state"] == "raised" else None
                if sent is not None:
                    self.latencies[doc["device"]] = (now - sent) * 1000
            else:
                return  # status
            if key not in self.backlog or key in self.msg_ids:
                return  # new since the backlog (e.g. the probes, an uplink-backlog alert) or a duplicate
            if not self.msg_ids:
                self.first = now
            self.msg_ids.add(key)
            if len(self.msg_ids) >= len(self.backlog) and not self.done.is_set():
                self.last = now
                self.done.set()

    @property
    def received(self) -> int:
        """Backlog messages received so far (deduplicated)."""
        with self.lock:
            return len(self.msg_ids)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the JSON line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=50, help="devices, one metric each (default 50)")
    ap.add_argument("--hours", type=float, default=24, help="hours of backlog (default 24)")
    ap.add_argument("--per-window", type=int, default=2, help="readings per device per 60 s window (default 2)")
    ap.add_argument("--excursions", type=int, default=5, help="devices with one warm excursion each (default 5)")
    ap.add_argument("--drain-rate", type=float, default=200.0, help="uplink.drain_rate, msg/s; 0 = no limit (200)")
    ap.add_argument("--batch", type=int, default=100, help="uplink.batch, items per message at most (100)")
    ap.add_argument("--max-inflight", type=int, default=20, help="uplink.max_inflight (20)")
    ap.add_argument("--single-flush", action="store_true",
                    help="flush all summaries once at the end (full uplink.batch messages) instead of per window")
    ap.add_argument("--health-poll", type=float, default=0, metavar="SECONDS",
                    help="also GET /api/v1/health every SECONDS during the drain, as monitoring would (0: never)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, database)")
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="storegw-bench-drain-"))
    log(f"work dir {work}; drain_rate {args.drain_rate:g} msg/s, batch {args.batch}, "
        f"max_inflight {args.max_inflight}")
    local = Broker(work / "mosquitto-local").start()
    hq_broker = Broker(work / "mosquitto-hq")  # port reserved; HQ is down while the backlog builds
    web_port = free_port()
    cfg_path = write_config(
        work / "storegw.toml", data_dir=work / "data", local_port=local.port, hq_port=hq_broker.port,
        web_port=web_port, client_id="storegw-bench-local", alerts=RULES,
        telemetry='summary_window = "60s"\nsummary_grace = "5s"',
        uplink=f"drain_rate = {args.drain_rate}\nbatch = {args.batch}\nmax_inflight = {args.max_inflight}\n"
               f"client_id = \"storegw-bench-uplink\"")
    gw = GatewayProc(cfg_path, web_port, work / "gateway.log")
    collector = None
    pub = None
    try:
        counts = build_backlog(cfg_path, args)
        hq_broker.start()
        watch = DrainWatch(counts["keys"])
        collector = HQCollector("127.0.0.1", hq_broker.port, "storegw/v1", "bench-001",
                                on_message=watch.on_message, client_id="bench-hq").start()
        pub = new_client("bench-device", clean=True)
        pub.connect("127.0.0.1", local.port)
        pub.loop_start()
        t_start = time.perf_counter()
        gw.start()
        log("HQ is up; gateway starting")
        marks = [0.25, 0.5, 0.75]
        probes = [device_name(args.devices - 1 - i) for i in range(len(marks))]
        next_check = next_poll = 0.0
        while not watch.done.wait(0.005):
            now = time.perf_counter()
            if now - t_start > 900:
                raise TimeoutError(f"drain incomplete after 900s: {watch.received}/{counts['messages']}")
            if now > next_check:  # fail fast if the gateway died; RSS as the drain goes
                gw.check_alive()
                if watch.received:
                    log(f"  {now - t_start:5.1f}s: {watch.received} messages at HQ, gateway RSS "
                        f"{gw.status_kb('VmRSS') / 1024:.1f} MB")
                next_check = now + 1.0
            if args.health_poll and now > next_poll:
                gw.health()
                next_poll = now + args.health_poll
            if marks and watch.received >= marks[0] * counts["messages"]:
                device = probes[len(probes) - len(marks)]
                marks.pop(0)
                with watch.lock:
                    watch.waiting[device] = time.perf_counter()
                pub.publish(f"devices/{device}/telemetry", json.dumps({"temp_c": 12.5}), qos=1)
        secs = watch.last - watch.first
        log(f"drained {counts['messages']} messages in {secs:.2f}s (first arrived "
            f"{watch.first - t_start:.2f}s after the gateway was started)")
        wait_for(lambda: len(watch.latencies) >= len(probes) - len(marks), 30, "the alerts raised during the drain")
        health = gw.wait_healthy(lambda h: sum(lane["depth"] for lane in h["outbox"].values()) == 0, timeout=60,
                                 what="an empty outbox")
        peak_rss = gw.status_kb("VmHWM") / 1024
        log(f"outbox empty; uplink sent {health['uplink']['sent']}, acked {health['uplink']['acked']}; "
            f"HQ has {len(watch.item_ids)} distinct summary items; alert latencies (ms) "
            f"{ {k: round(v, 1) for k, v in watch.latencies.items()} }; peak RSS {peak_rss:.1f} MB")
        if len(watch.item_ids) != counts["items"]:
            raise RuntimeError(f"HQ got {len(watch.item_ids)} distinct summary items, expected {counts['items']}")
    finally:
        if pub is not None:
            pub.disconnect()
            pub.loop_stop()
        code = gw.stop()
        if collector is not None:
            collector.stop()
        hq_broker.stop()
        local.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if code != 0:
        log(f"warning: gateway exited with {code}")
    samples = [round(v, 1) for v in watch.latencies.values()]
    result = {
        "backlog_messages": counts["messages"],
        "backlog_items": counts["items"],
        "drain_msgs_per_s": round(counts["messages"] / secs, 1),
        "drain_items_per_s": round(counts["items"] / secs, 1),
        "alert_latency_ms": max(samples) if samples else None,
        "rss_mb_peak": round(peak_rss, 1),
        "drain_rate": args.drain_rate,
        "uplink_batch": args.batch,
        "max_inflight": args.max_inflight,
        "backlog_alerts": counts["alerts"],
        "alert_latency_ms_samples": samples,
        "alert_latency_ms_median": round(statistics.median(samples), 1) if samples else None,
        "devices": args.devices,
        "hours": args.hours,
        "health_poll_s": args.health_poll,
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
