"""Benchmark telemetry ingest end to end against a bare paho subscriber on the same stream.

A real Mosquitto (free loopback port, ``max_inflight_messages 1000``, ``max_queued_messages 200000``)
and N QoS 1 readings from K devices. Each consumer first connects once with a persistent session
and subscribes, then goes away; several publisher processes pre-publish the N readings into the
broker's queue for that session; then the consumer comes back and drains it. So both consumers see
exactly the same stream at the broker's pace, and the publishers' speed is not what is measured.

- baseline: a bare paho subscriber (QoS 1 subscription, auto-ack, only counts) — window from its
  first message to its Nth;
- gateway: ``python -m gateway run --config FILE`` in a subprocess, as systemd runs ``storegw run``
  (manual ack: PUBACK only after the reading's transaction committed; SQLCipher, WAL,
  synchronous=FULL; one alert rule, 60 s summaries, uplink to the same broker) — window from the
  first committed reading (``readings.received_ms``, the writer's clock) to the moment a reader
  of the database sees N readings (polled every 5 ms from the benchmark process: polling the
  gateway's health endpoint instead would cost the gateway interpreter time).
  Peak RSS is the process's VmHWM (startup included).

Prints progress to stderr and, last, one JSON line on stdout:
``{"ingest_per_s", "paho_baseline_per_s", "ratio", "rss_mb_peak", "n", "devices"}``
(plus ``rounds``, ``publishers``, ``metrics`` and ``rss_mb_idle``). With ``--rounds R`` the two
consumers alternate R times and the best window of each is kept.

    python bench/ingest.py [--n 20000] [--devices 20] [--publishers 4] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

import paho.mqtt.client as paho  # noqa: E402
from _harness import (  # noqa: E402
    ROOT,
    Broker,
    GatewayProc,
    free_port,
    make_log,
    summarize_profile,
    thread_cpu,
    wait_for,
    write_config,
)

from gateway.spine.mqtt import new_client  # noqa: E402

log = make_log("ingest")

TOPIC = "devices/+/telemetry"
METRICS = ("temp_c", "power_w", "door_open")
RULES = """\
[[alerts.rules]]
name = "fridge-warm"
devices = "fridge-*"
metric = "temp_c"
above = 8.0
for = "2m"
clear_below = 6.0
"""


def device_name(i: int) -> str:
    """Return the id of device ``i``."""
    return f"fridge-{i:03d}"


def payload(j: int, ts: int) -> bytes:
    """Return reading ``j`` of a device: a fridge with temperature, power and a door contact."""
    return json.dumps({"ts": ts, "temp_c": round(2.0 + (j % 40) * 0.1, 2), "power_w": 80.0 + j % 25,
                       "door_open": j % 30 == 0}, separators=(",", ":")).encode()


def publish_share(port: int, devices: list[int], per_device: list[int], base_ts: int, tag: str) -> int:
    """Publish the readings of some devices (a publisher process); return how many were acknowledged."""
    client = new_client(f"bench-pub-{tag}", clean=True)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    messages = []
    for j in range(max(per_device)):
        for d, count in zip(devices, per_device, strict=True):
            if j < count:
                messages.append((f"devices/{device_name(d)}/telemetry", payload(j, base_ts + j * 1000)))
    client.connect("127.0.0.1", port, keepalive=60)
    client.loop_start()
    infos = [client.publish(topic, body, qos=1) for topic, body in messages]
    for info in infos:
        info.wait_for_publish(60)
    done = sum(1 for info in infos if info.is_published())
    client.disconnect()
    client.loop_stop()
    return done


def prepublish(port: int, n: int, devices: int, publishers: int, tag: str) -> float:
    """Put N readings into the broker from several processes; return the publish rate."""
    per_device = [n // devices + (1 if i < n % devices else 0) for i in range(devices)]
    base_ts = int(time.time() * 1000) - (max(per_device) + 120) * 1000
    groups = [list(range(devices))[p::publishers] for p in range(publishers)]
    groups = [g for g in groups if g]
    t0 = time.perf_counter()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(len(groups)) as pool:
        done = pool.starmap(publish_share, [(port, g, [per_device[d] for d in g], base_ts, f"{tag}-{i}")
                                            for i, g in enumerate(groups)])
    secs = time.perf_counter() - t0
    if sum(done) != n:
        raise RuntimeError(f"only {sum(done)} of {n} publishes were acknowledged by the broker")
    return n / secs


class BareSubscriber:
    """The baseline: paho, persistent session, QoS 1 subscription, auto-ack, counts messages."""

    def __init__(self, port: int, client_id: str, n: int) -> None:
        self.port, self.n = port, n
        self.count = 0
        self.first = self.last = self.cpu0 = self.cpu = 0.0
        self.done = threading.Event()
        self.subscribed = threading.Event()
        self.client = new_client(client_id, clean=False)
        self.client.on_connect = lambda c, *a: c.subscribe(TOPIC, qos=1)
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        if self.count == 0:
            self.first = time.perf_counter()
            self.cpu0 = time.thread_time()
        self.count += 1
        if self.count >= self.n and not self.done.is_set():
            self.last = time.perf_counter()
            self.cpu = time.thread_time() - self.cpu0
            self.done.set()

    def connect(self) -> None:
        """Connect (the persistent session delivers what was queued) and run the network loop."""
        self.client.connect("127.0.0.1", self.port, keepalive=60)
        self.client.loop_start()

    def disconnect(self) -> None:
        """Disconnect cleanly (the broker keeps the session and queues for it)."""
        self.client.disconnect()
        self.client.loop_stop()


def run_baseline(broker: Broker, args: argparse.Namespace, r: int) -> float:
    """Measure the bare subscriber's drain rate of N pre-published readings."""
    sub = BareSubscriber(broker.port, f"bench-baseline-{r}", args.n)
    sub.connect()
    if not sub.subscribed.wait(10):
        raise RuntimeError("baseline subscriber: no SUBACK")
    sub.disconnect()
    pub_rate = prepublish(broker.port, args.n, args.devices, args.publishers, f"b{r}")
    log(f"round {r}: baseline: pre-published {args.n} at {pub_rate:.0f}/s; draining")
    sub.connect()
    if not sub.done.wait(300):
        raise RuntimeError(f"baseline subscriber got only {sub.count} of {args.n}")
    sub.disconnect()
    rate = args.n / (sub.last - sub.first)
    log(f"round {r}: baseline {rate:.0f} msg/s ({sub.last - sub.first:.2f}s; paho thread CPU {sub.cpu:.2f}s)")
    return rate


def run_gateway(broker: Broker, args: argparse.Namespace, r: int, work: Path,
                root: Path = ROOT) -> tuple[float, float, float]:
    """Measure the gateway's committed readings/s; return (rate, peak RSS MB, idle RSS MB)."""
    from gateway.privacy.keys import current_db_key, keys_dir_for
    from gateway.store.db import DB_NAME, connect

    tag = "" if root == ROOT else "-ab"
    rdir = work / f"gateway-{r}{tag}"
    rdir.mkdir()
    data = rdir / "data"
    web_port = free_port()
    cfg = write_config(rdir / "storegw.toml", data_dir=data, local_port=broker.port, hq_port=broker.port,
                       web_port=web_port, client_id=f"storegw-bench-{r}{tag}", alerts=RULES,
                       telemetry='summary_window = "60s"\nraw_retention = "7d"')
    gw = GatewayProc(cfg, web_port, rdir / "gateway.log", root=root)
    # 1. create the persistent session (subscriptions) and the database, then stop
    gw.start()
    gw.wait_healthy(lambda h: h["local_mqtt"]["connected"], what="gateway connected to the local broker")
    idle_rss = gw.status_kb("VmRSS") / 1024
    if gw.stop() != 0:
        raise RuntimeError(f"gateway exited with {gw.proc.returncode if gw.proc else '?'}")
    # 2. queue N readings for it
    pub_rate = prepublish(broker.port, args.n, args.devices, args.publishers, f"g{r}")
    log(f"round {r}: gateway{tag}: pre-published {args.n} at {pub_rate:.0f}/s; starting storegw run")
    # 3. start it again: it drains the queue through parse → writer transaction → commit → PUBACK
    profile = args.profile / f"ingest-round{r}{tag}.txt" if args.profile else None
    gw = GatewayProc(cfg, web_port, rdir / "gateway.log", profile=profile, root=root).start()
    done_at = [0.0]
    # The window ends when a reader sees the Nth reading committed. This process polls the database
    # (count(*) of 20,000 rows: 0.2 ms) rather than /api/v1/health, whose every request costs the
    # gateway interpreter time it would otherwise spend ingesting.
    conn = connect(data / DB_NAME, current_db_key(data, keys_dir_for(data)), readonly=True)

    def committed_all() -> bool:
        gw.check_alive()
        return conn.execute("SELECT count(*) FROM readings").fetchone()[0] >= args.n

    try:
        wait_for(committed_all, 600, f"{args.n} readings committed", interval=0.005)
        done_at[0] = time.time()
        conn.close()
        peak_rss = gw.status_kb("VmHWM") / 1024
        cpu = thread_cpu(gw.pid)
        health = gw.health() or {}
    finally:
        code = gw.stop()
    if code != 0:
        raise RuntimeError(f"gateway exited with {code}; see {rdir / 'gateway.log'}")
    conn = connect(data / DB_NAME, current_db_key(data, keys_dir_for(data)), readonly=True)
    try:
        first_ms, last_ms, rows = conn.execute(
            "SELECT min(received_ms), max(received_ms), count(*) FROM readings").fetchone()
    finally:
        conn.close()
    if rows != args.n:
        raise RuntimeError(f"{rows} readings stored, expected {args.n}")
    secs = done_at[0] - first_ms / 1000
    rate = args.n / secs
    db = health.get("db", {})
    log(f"round {r}: gateway{tag} {rate:.0f} readings/s ({secs:.2f}s; last write began "
        f"{(last_ms - first_ms) / 1000:.2f}s after the first), {db.get('transactions')} transactions, "
        f"duplicates {health.get('ingest', {}).get('duplicates')}, peak RSS {peak_rss:.1f} MB "
        f"(idle {idle_rss:.1f} MB)")
    log(f"round {r}: gateway{tag} CPU seconds per thread (startup included): "
        + ", ".join(f"{k} {v:.2f}" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]) if v >= 0.01))
    return rate, peak_rss, idle_rss


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the JSON line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000, help="readings (default 20000)")
    ap.add_argument("--devices", type=int, default=20, help="devices (default 20)")
    ap.add_argument("--publishers", type=int, default=4, help="publisher processes (default 4)")
    ap.add_argument("--rounds", type=int, default=1, help="alternating rounds; best of each is kept (1)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, databases)")
    ap.add_argument("--ab", type=Path, metavar="TREE",
                    help="also measure the gateway of another source tree (e.g. a `git worktree` of the "
                         "previous commit) in the same rounds; adds ab_ingest_per_s")
    ap.add_argument("--profile", type=Path, metavar="DIR",
                    help="run the measured gateway under py-spy (GIL holder, per thread) and write "
                         "collapsed stacks to DIR/ingest-roundR.txt (slows it down; rates are not comparable)")
    args = ap.parse_args(argv)
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)

    work = Path(tempfile.mkdtemp(prefix="storegw-bench-ingest-"))
    log(f"work dir {work}; N={args.n} from {args.devices} devices, {args.publishers} publisher processes")
    broker = Broker(work / "mosquitto", max_queued=200000, max_inflight=1000).start()
    base_rates, gw_rates, peaks, idles, ab_rates = [], [], [], [], []
    try:
        for r in range(1, args.rounds + 1):
            base_rates.append(run_baseline(broker, args, r))
            rate, peak, idle = run_gateway(broker, args, r, work)
            gw_rates.append(rate)
            peaks.append(peak)
            idles.append(idle)
            if args.ab:
                ab_rates.append(run_gateway(broker, args, r, work, root=args.ab.resolve())[0])
    finally:
        broker.stop()
        if not args.keep:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    ingest, base = max(gw_rates), max(base_rates)
    result = {
        "ingest_per_s": round(ingest, 1),
        "paho_baseline_per_s": round(base, 1),
        "ratio": round(ingest / base, 3),
        "rss_mb_peak": round(max(peaks), 1),
        "n": args.n,
        "devices": args.devices,
        "rounds": args.rounds,
        "publishers": args.publishers,
        "metrics": len(METRICS),
        "rss_mb_idle": round(max(idles), 1),
    }
    if ab_rates:
        result["ab_ingest_per_s"] = round(max(ab_rates), 1)
        result["ab_ratio"] = round(max(ab_rates) / base, 3)
    if args.profile:
        for r in range(1, args.rounds + 1):
            summarize_profile(args.profile / f"ingest-round{r}.txt", log)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
