"""Benchmark HQ at fleet scale: N simulated stores, a real broker, 2 consumers in a shared group, PostgreSQL.

1. Starts PostgreSQL (initdb in a temp dir, stopped by PID) and Mosquitto (persistence on, so the
   consumers' sessions survive its restart), unless ``--db``/``--broker`` point at existing ones
   (e.g. an EMQX or HiveMQ cluster; docs/operations.md). Then 2 ``storegw hq consume`` processes in
   one shared-subscription group, and ``--procs`` processes each driving its share of the N stores
   (``tests/fleetsim.py``: real paho clients on one epoll loop, the real topic contract with ids and
   revs, later revisions of earlier ids, alerts, status + LWT, a manifest per ``--manifest-s``
   window, ``P/cmd/resend`` answered, reconnects with the gateway's ReconnectPolicy).
2. Steady: each store publishes ``--rate`` summaries a second for ``--duration`` s. At
   ``--restart-at`` s the broker is stopped and restarted (``--down`` s later); ``reconnect_all_s``
   is from the broker being back until every store is connected again. Every ``--kill-every`` s one
   consumer (alternately) is SIGKILLed mid-batch and restarted with the same client id.
3. Then the stores stop producing (manifests go on) and the bench waits until every id a store
   produced is in PostgreSQL at its highest rev: ``lost`` counts those still missing at the end of
   ``--settle`` s. ``duplicates_absorbed`` counts rows the upsert left alone (redeliveries,
   re-sends, older revisions); ``consumer_split`` is each consumer's share of the messages;
   ``upsert_p99_ms`` the 99th percentile of a batch's write (one transaction).
4. Backlog: every store replays ``--backlog-hours`` of ``--backlog-window-s`` summaries (packed
   ``--backlog-batch`` items per message, as ``uplink.batch``); ``backlog_rows_per_s`` is the rows
   landed in ``hq_telemetry_summary`` per second, first publish to last row.

Prints progress on stderr and, last, one JSON line:
``{"stores", "msgs", "lost", "duplicates_absorbed", "reconnect_all_s", "consumer_split", "upsert_p99_ms",
"backlog_rows_per_s"}`` plus details.

    python bench/fleet.py [--stores 1000] [--duration 150] [--restart-at 50] [--kill-every 60]
                          [--backlog-hours 24] [--procs 3] [--db postgresql://…] [--broker HOST:PORT]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import ROOT, Broker, make_log, wait_for

log = make_log("fleet")


def _worker(idx: int, names: list[str], host: str, port: int, args: dict[str, Any], connected: Any, idle: Any,
            produce: Any, backlog: Any, backlog_rows: Any, stop: Any, out: str) -> None:
    from fleetsim import SimLoop, SimStore

    stores = [SimStore(n, host, port, rate=args["rate"], manifest_s=args["manifest_s"], seed=hash(n) & 0xFFFF,
                       keepalive=args["keepalive"]) for n in names]
    loop = SimLoop(stores).start()
    backlog_done = snapped = False

    def replay() -> None:
        now_ms = int(time.time() * 1000)
        window_ms = args["backlog_window_s"] * 1000
        start = now_ms - now_ms % window_ms - int(args["backlog_hours"] * 3600 * 1000)
        for s in stores:
            items = []
            for w in range(start, now_ms - window_ms, window_ms):
                item = s.summary_item(w, 1, 60, window_s=args["backlog_window_s"])
                item["id"] = f"{s.store}:oven-1:temp_c:{args['backlog_window_s']}:{w}"
                item["device"] = "oven-1"
                items.append(item)
                if len(items) >= args["backlog_batch"]:
                    s.send("telemetry/summary", items)
                    items = []
            if items:
                s.send("telemetry/summary", items)
        backlog_rows[idx] = sum(1 for s in stores for k in s.expected if ":oven-1:" in k)

    while not stop.is_set():
        connected[idx] = loop.connected()
        idle[idx] = int(all(s.idle for s in stores))
        if not produce.is_set():
            loop.producing.clear()
            if idle[idx] and not snapped:  # nothing new comes after this: what HQ must end up holding
                snapped = True
                snap = {k: v for s in stores for k, v in dict(s.expected).items()}
                Path(out).with_suffix(".snap.json").write_text(json.dumps(snap))
        if backlog.is_set() and not backlog_done:
            backlog_done = True
            loop.call(replay)
        time.sleep(0.2)
    expected = {k: v for s in stores for k, v in s.expected.items()}
    Path(out).write_text(json.dumps({"expected": expected, "resent": sum(s.resent for s in stores),
                                     "connects": sum(s.connects for s in stores),
                                     "msgs": sum(s.n for s in stores)}))
    loop.stop()


class Consumers:
    """The 2 ``storegw hq consume`` processes, their restarts and their accumulated counters."""

    def __init__(self, db: str, port: int, workdir: Path, grace: float, group: str = "bench") -> None:
        self.db, self.port, self.workdir, self.grace, self.group = db, port, workdir, grace, group
        self.ids = ["hq-bench-1", "hq-bench-2"]
        self.procs: dict[str, subprocess.Popen] = {}
        self.totals: dict[str, dict[str, Any]] = {c: {} for c in self.ids}

    def start(self, cid: str) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.procs[cid] = subprocess.Popen(
            [sys.executable, "-m", "gateway", "hq", "consume", "--db", self.db, "--broker", f"127.0.0.1:{self.port}",
             "--group", self.group, "--client-id", cid, "--repair-grace", str(self.grace)],
            stdout=subprocess.DEVNULL, stderr=open(self.workdir / f"{cid}.log", "ab"), env=env, cwd=ROOT)  # noqa: SIM115

    def stats(self, sink: Any) -> dict[str, dict[str, Any]]:
        return {r["consumer"]: r["stats"] for r in sink.query("consumers")}

    def kill(self, cid: str, sink: Any) -> None:
        self.accumulate(cid, self.stats(sink).get(cid, {}))
        self.procs[cid].send_signal(signal.SIGKILL)
        self.procs[cid].wait()

    def accumulate(self, cid: str, stats: dict[str, Any]) -> None:
        tot = self.totals[cid]
        for k, v in stats.items():
            if isinstance(v, (int, float)) and k != "messages_per_s" and k != "lag_ms":
                tot[k] = tot.get(k, 0) + v
            elif k == "upsert_ms_counts":
                have = tot.get(k) or [0] * len(v)
                tot[k] = [a + b for a, b in zip(have, v, strict=True)]
            elif k == "upsert_ms_buckets":
                tot[k] = v

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        for p in self.procs.values():
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stores", type=int, default=1000)
    ap.add_argument("--procs", type=int, default=2, help="simulator processes (each drives stores/procs clients)")
    ap.add_argument("--rate", type=float, default=1.0, help="messages per second per store")
    ap.add_argument("--duration", type=float, default=150, help="seconds of steady load")
    ap.add_argument("--restart-at", type=float, default=50, help="restart the broker this many s in (0: never)")
    ap.add_argument("--down", type=float, default=3, help="seconds the broker stays down")
    ap.add_argument("--kill-every", type=float, default=60, help="SIGKILL a consumer this often (0: never)")
    ap.add_argument("--manifest-s", type=float, default=10, help="manifest window of each store")
    ap.add_argument("--repair-grace", type=float, default=5)
    ap.add_argument("--keepalive", type=int, default=30)
    ap.add_argument("--settle", type=float, default=300, help="seconds to wait, at most, for the consumers to "
                    "catch up and gap repair to finish at the end")
    ap.add_argument("--backlog-hours", type=float, default=24)
    ap.add_argument("--backlog-window-s", type=int, default=300)
    ap.add_argument("--backlog-batch", type=int, default=100)
    ap.add_argument("--db", default="", help="an existing PostgreSQL (default: start one)")
    ap.add_argument("--broker", default="", help="an existing broker HOST:PORT (default: start Mosquitto; "
                    "then no restart scenario)")
    ap.add_argument("--fsync", action=argparse.BooleanOptionalAction, default=True,
                    help="PostgreSQL with fsync (default) or without")
    args = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    work = Path(tempfile.mkdtemp(prefix="storegw-fleet-"))
    from realparts import Postgres

    pg = broker = None
    consumers = None
    workers: list[mp.Process] = []
    stop = mp.Event()
    try:
        if args.db:
            db = args.db
        else:
            pg = Postgres(fsync=args.fsync).start()
            db = pg.url
        if args.broker:
            host, _, p = args.broker.rpartition(":")
            port = int(p)
            args.restart_at = 0
        else:
            broker = Broker(work / "mosq", persistence=True, max_queued=1_000_000, max_inflight=2000)
            broker.conf.write_text(broker.conf.read_text() + "max_connections -1\nautosave_interval 0\n")
            broker.start()
            host, port = "127.0.0.1", broker.port
        log(f"PostgreSQL {db}, broker {host}:{port}, fd limit {hard}")
        from gateway.hq.databases import open_sink

        sink = open_sink(db)
        consumers = Consumers(db, port, work, args.repair_grace)
        for cid in consumers.ids:
            consumers.start(cid)
        time.sleep(2)

        names = [f"b{i:05d}" for i in range(args.stores)]
        connected = mp.Array("i", args.procs)
        idle = mp.Array("i", args.procs)
        backlog_rows = mp.Array("i", [-1] * args.procs)
        produce, backlog = mp.Event(), mp.Event()
        produce.set()
        wargs = {"rate": args.rate, "manifest_s": args.manifest_s, "keepalive": args.keepalive,
                 "backlog_hours": args.backlog_hours, "backlog_window_s": args.backlog_window_s,
                 "backlog_batch": args.backlog_batch}
        ctx = mp.get_context("fork")
        for i in range(args.procs):
            wa = (i, names[i::args.procs], host, port, wargs, connected, idle, produce, backlog, backlog_rows, stop,
                  str(work / f"w{i}.json"))
            w = ctx.Process(target=_worker, args=wa, daemon=True)
            w.start()
            workers.append(w)
        t0 = time.monotonic()
        wait_for(lambda: sum(connected) == args.stores, 120, "every store connected", interval=0.2)
        log(f"{args.stores} stores connected in {time.monotonic() - t0:.1f}s")

        reconnect_all_s = None
        restarted = args.restart_at <= 0
        next_kill = t0 + args.kill_every if args.kill_every > 0 else float("inf")
        victim = 0
        kills = 0
        next_report = t0 + 10
        while time.monotonic() - t0 < args.duration:
            now = time.monotonic()
            if not restarted and now - t0 >= args.restart_at:
                restarted = True
                log("broker restart")
                broker.stop()
                time.sleep(args.down)
                broker.start(timeout=120)
                back = time.monotonic()
                wait_for(lambda: sum(connected) == args.stores, 120, "every store back", interval=0.1)
                reconnect_all_s = round(time.monotonic() - back, 1)
                log(f"all {args.stores} stores back {reconnect_all_s}s after the broker")
            if now >= next_report:
                next_report = now + 10
                st = consumers.stats(sink)
                log("  consumers: " + ", ".join(f"{c} {s.get('messages_per_s', 0):.0f} msg/s lag "
                                                 f"{s.get('lag_ms', 0) / 1000:.1f}s" for c, s in sorted(st.items()))
                    + f"; {sum(connected)} stores connected")
            if now >= next_kill:
                cid = consumers.ids[victim % 2]
                victim += 1
                kills += 1
                log(f"SIGKILL {cid}")
                consumers.kill(cid, sink)
                consumers.start(cid)
                next_kill = now + args.kill_every
            time.sleep(0.2)
        produce.clear()
        log("steady phase over; waiting for every store's outbox to drain")
        try:
            wait_for(lambda: sum(idle) == args.procs, 300, "outboxes drained", interval=0.5)
        except TimeoutError:
            log("some stores still have unacknowledged messages after 300 s")

        # the stores keep sending manifests; wait until PostgreSQL holds every id they produced
        settle_start = time.monotonic()
        missing = None
        while time.monotonic() - settle_start < args.settle:
            missing = _missing(sink, work, args.procs)
            if missing == 0:
                break
            log(f"  {missing} ids not yet at their highest rev in PostgreSQL")
            time.sleep(5)
        log(f"gap repair: {missing} missing after {time.monotonic() - settle_start:.0f}s")

        # backlog replay
        before = _count_backlog(sink, args.backlog_window_s)
        backlog.set()
        b0 = time.monotonic()
        wait_for(lambda: min(backlog_rows) >= 0, 300, "the stores' backlogs queued", interval=0.2)
        target = before + sum(backlog_rows)
        log(f"backlog replay: {sum(backlog_rows)} rows")
        wait_for(lambda: _count_backlog(sink, args.backlog_window_s) >= target, 900,
                 "the backlog in PostgreSQL", interval=0.5)
        b_rows = _count_backlog(sink, args.backlog_window_s) - before
        backlog_rows_per_s = round(b_rows / (time.monotonic() - b0))
        log(f"backlog: {b_rows} rows in {time.monotonic() - b0:.1f}s")

        final = consumers.stats(sink)
        for cid in consumers.ids:
            consumers.accumulate(cid, final.get(cid, {}))
        stop.set()
        for w in workers:
            w.join(30)
        lost, msgs, resent, exp_n = _final_missing(sink, work, args.procs)
        from gateway.hq.consume import percentile_ms

        tot = consumers.totals
        all_msgs = sum(t.get("messages", 0) for t in tot.values()) or 1
        buckets = next((t["upsert_ms_buckets"] for t in tot.values() if "upsert_ms_buckets" in t), [])
        counts = [sum(x) for x in zip(*[t.get("upsert_ms_counts", [0] * (len(buckets) + 1)) for t in tot.values()],
                                      strict=True)]
        result = {
            "stores": args.stores, "msgs": msgs, "lost": lost,
            "duplicates_absorbed": sum(t.get("absorbed", 0) for t in tot.values()),
            "reconnect_all_s": reconnect_all_s,
            "consumer_split": [round(tot[c].get("messages", 0) / all_msgs, 3) for c in consumers.ids],
            "upsert_p99_ms": percentile_ms(buckets, counts, 0.99) if buckets else None,
            "backlog_rows_per_s": backlog_rows_per_s,
            "ids": exp_n, "resent_by_stores": resent, "consumer_kills": kills,
            "dead_letters": sum(t.get("dead_letters", 0) for t in tot.values()),
            "resend_ids_requested": sum(t.get("resend_ids", 0) for t in tot.values()),
            "duration_s": args.duration, "rate": args.rate, "manifest_s": args.manifest_s,
            "backlog_rows": b_rows, "backlog_hours": args.backlog_hours,
        }
        sink.close()
        print(json.dumps(result))
    finally:
        stop.set()
        for w in workers:
            w.join(10)
            if w.is_alive():
                w.kill()
        if consumers:
            consumers.stop()
        if broker:
            broker.stop()
        if pg:
            pg.stop()
        shutil.rmtree(work, ignore_errors=True)


def _count_backlog(sink: Any, window_s: int) -> int:
    if sink.backend == "postgresql":
        return sink.conn.execute("SELECT count(*) FROM hq_telemetry_summary WHERE window_s = %s",
                                 (window_s,)).fetchone()[0]
    return sink.conn.execute("SELECT count(*) FROM hq_telemetry_summary WHERE window_s = ?", (window_s,)).fetchone()[0]


def _missing(sink: Any, work: Path, procs: int) -> int | None:
    """Ids not (yet) at their highest rev, by the stores' own record (the workers' snapshots)."""
    snaps = [work / f"w{i}.snap.json" for i in range(procs)]
    if not all(p.exists() for p in snaps):
        return None
    expected: dict[str, int] = {}
    for p in snaps:
        expected.update(json.loads(p.read_text()))
    return _compare(sink, expected)


def _compare(sink: Any, expected: dict[str, int]) -> int:
    have = dict(sink.conn.execute("SELECT id, rev FROM hq_messages").fetchall())
    return sum(1 for k, v in expected.items() if have.get(k, -1) < v)


def _final_missing(sink: Any, work: Path, procs: int) -> tuple[int, int, int, int]:
    expected: dict[str, int] = {}
    msgs = resent = 0
    for i in range(procs):
        doc = json.loads((work / f"w{i}.json").read_text())
        expected.update(doc["expected"])
        msgs += doc["msgs"]
        resent += doc["resent"]
    return _compare(sink, expected), msgs, resent, len(expected)


if __name__ == "__main__":
    main()
