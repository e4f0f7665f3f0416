"""Power cuts during a rush: SIGKILL `storegw run` at random moments N times, then count what was lost.

The rush, all on 127.0.0.1: one diner per table adding dishes and sending rounds (each round
acknowledged to the diner is remembered with its idempotency key; a send whose answer never came is
sent again with the same key, as the page does), a cashier paying bills, tickets printing on four
virtual ESC/POS printers (they live in this process and keep every byte across the kills),
telemetry at 200 msg/s QoS 1 from 20 fridges (every reading unique: its own ``ts``) plus one
fridge that goes warm and cold so alerts are raised and cleared. HQ is a second Mosquitto with a
persistent collector (gateway.hq.watch.HQCollector: summaries deduplicated by id, highest rev,
counts summed, as tests/test_e2e_spine.py counts them).

Each cycle waits a random 0.3-4 s once the gateway answers its health endpoint (one cycle in five
does not wait: the kill lands mid-start), SIGKILLs it and starts it again at once.
``max_restart_s`` is the longest time from a restart to the health endpoint answering.

Then the load stops, the gateway runs until HQ has every acknowledged reading and the printers
are idle, stops, and the bench opens the database:

- ``orders_lost``: rounds acknowledged to a diner whose idempotency key is not in ``ord_rounds``;
- tickets, by print job id (the footer ``#pj-...`` of every ticket): ``tickets_missing`` is a job of
  an acknowledged round with no complete copy on paper; ``tickets_duplicated`` counts *silent*
  copies: a second copy without a REPRINT banner, or two copies with the same REPRINT number. A
  job whose bytes went out but whose confirmation did not come back before the kill is printed
  again with a **REPRINT #n** banner (gateway/printing/service.py): that is the design, counted in
  ``tickets_reprinted``, not as a duplicate (docs/architecture.md, crash safety);
- ``readings_lost``: readings the local broker acknowledged minus what HQ counts for them
  (``readings_extra`` the other way);
- ``alerts_lost``: alert messages (``episode:state``) in ``alert_log`` that never reached HQ;
  ``payments_lost``: payments acknowledged to the cashier that are not in ``ord_payments``.

Prints progress to stderr and, last, one JSON line on stdout:
``{"cycles", "orders_acked", "orders_lost", "tickets_duplicated", "tickets_missing", "readings_lost",
"max_restart_s"}`` plus details.

    python bench/crash.py --cycles 100
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
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import Broker, GatewayProc, free_port, make_log, wait_for  # noqa: E402
from rush import STATIONS, cli  # noqa: E402

from devices.escpos.simulator import VirtualPrinter, decode_lines  # noqa: E402
from gateway.hq.watch import HQCollector  # noqa: E402
from gateway.spine.mqtt import new_client  # noqa: E402

log = make_log("crash")
PIN = "246810"
JS = {"Accept": "application/json", "X-Requested-With": "js", "Content-Type": "application/x-www-form-urlencoded"}
FOOTER = re.compile(r"#(pj-[0-9a-f]+)")
REPRINT = re.compile(r"REPRINT #(\d+)")
RULES = """
[alerts]
device_offline_after = "1h"

[[alerts.rules]]
name = "fridge-warm"
devices = "alarm-*"
metric = "temp_c"
above = 8.0
for = "0s"
clear_below = 6.0
severity = "major"
"""


def post(port: int, path: str, fields: dict[str, str], headers: dict[str, str], source: str,
         timeout: float = 10) -> tuple[int, bytes]:
    """One POST on a new connection from ``source``; (0, b"") when no answer came."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, source_address=(source, 0))
    try:
        conn.request("POST", path, body=urllib.parse.urlencode(fields), headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    except (OSError, http.client.HTTPException):
        return 0, b""
    finally:
        conn.close()


def get(port: int, path: str, source: str, headers: dict[str, str] | None = None,
        timeout: float = 10) -> tuple[int, bytes, dict[str, str]]:
    """One GET; (0, b"", {}) when no answer came."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, source_address=(source, 0))
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read(), {k.lower(): v for k, v in resp.getheaders()}
    except (OSError, http.client.HTTPException):
        return 0, b"", {}
    finally:
        conn.close()


class Diner(threading.Thread):
    """One phone per table: add a dish or two, send the round; a send without an answer is repeated
    with the same key until it is answered (200: acknowledged; 409: the cart was empty)."""

    def __init__(self, port: int, path: str, table: str, idx: int, items: list, stop: threading.Event,
                 acked: dict[str, tuple[str, int]], lock: threading.Lock) -> None:
        super().__init__(daemon=True, name=f"diner-{table}")
        self.port, self.path, self.table, self.items, self.stop = port, path, table, items, stop
        self.acked, self.lock = acked, lock
        self.source = f"127.2.0.{idx + 1}"
        self.d = f"crash{idx:03d}x"
        self.rng = random.Random(idx)
        self.csrf = ""
        self.unanswered = 0

    def run(self) -> None:
        idem = ""
        while not self.stop.is_set():
            if not self.csrf:
                status, html, _ = get(self.port, f"{self.path}?d={self.d}&lang=en", self.source)
                m = re.search(rb'name="csrf" value="([^"]+)"', html)
                if status != 200 or not m:
                    self.stop.wait(0.5)
                    continue
                self.csrf = m.group(1).decode()
            form = {"csrf": self.csrf, "d": self.d, "lang": "en"}
            if not idem:
                for _ in range(self.rng.randint(1, 2)):
                    item, opts = self.rng.choice(self.items)
                    post(self.port, f"{self.path}/add", {**form, "item": item, "qty": "1", **opts}, JS, self.source)
                idem = os.urandom(9).hex()
            status, body = post(self.port, f"{self.path}/submit", {**form, "idem": idem}, JS, self.source)
            if status == 200:
                with self.lock:
                    self.acked[idem] = (self.table, int(json.loads(body).get("round") or 0))
                idem = ""
                self.stop.wait(self.rng.uniform(4, 8))  # submit_rate: 10 per table per minute
            elif status == 0:
                self.unanswered += 1  # killed mid-request: the same key again once it is back
                self.stop.wait(0.3)
            elif status == 429:
                self.stop.wait(2)
            else:  # 409 empty cart and other refusals: start a new round
                idem = ""
                self.stop.wait(1)


class Cashier(threading.Thread):
    """Pays a table's bill now and then (a signed-in cashier; sessions live in the database)."""

    def __init__(self, port: int, tables: list[str], stop: threading.Event) -> None:
        super().__init__(daemon=True, name="cashier")
        self.port, self.tables, self.stop = port, tables, stop
        self.source = "127.3.0.1"
        self.cookie = ""
        self.csrf = ""
        self.acked: dict[str, int] = {}
        self.rng = random.Random(99)

    def login(self) -> bool:
        status, html, h = get(self.port, "/staff/login", self.source)
        m = re.search(rb'name="csrf_token" value="([^"]+)"', html)
        if status != 200 or not m:
            return False
        cookie = h.get("set-cookie", "").split(";")[0]
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10, source_address=(self.source, 0))
        try:
            conn.request("POST", "/staff/login", body=urllib.parse.urlencode(
                {"name": "crash-cashier", "pin": PIN, "csrf_token": m.group(1).decode()}),
                headers={"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})
            resp = conn.getresponse()
            resp.read()
            if resp.status != 303:
                return False
            self.cookie = (resp.getheader("Set-Cookie") or cookie).split(";")[0]
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()
        status, html, _ = get(self.port, "/staff/", self.source, {"Cookie": self.cookie})
        m = re.search(rb'name="csrf_token" value="([^"]+)"', html)
        self.csrf = m.group(1).decode() if status == 200 and m else ""
        return bool(self.csrf)

    def run(self) -> None:
        while not self.stop.is_set():
            if not self.csrf and not self.login():
                self.stop.wait(1)
                continue
            table = self.rng.choice(self.tables)
            status, body = post(self.port, f"/staff/tables/{table}/pay",
                                {"method": "cash", "csrf_token": self.csrf},
                                {**JS, "Cookie": self.cookie}, self.source)
            if status == 200 and json.loads(body).get("ok"):
                self.acked[table] = self.acked.get(table, 0) + 1
            elif status in (302, 303, 400, 401, 403):
                self.csrf = ""  # signed out (or a new CSRF token): sign in again
            self.stop.wait(self.rng.uniform(3, 8))


class Equipment(threading.Thread):
    """20 fridges at ``rate`` msg/s QoS 1, every reading its own ts; one alarm fridge warm/cold."""

    def __init__(self, port: int, rate: float, stop: threading.Event) -> None:
        super().__init__(daemon=True, name="equipment")
        self.port, self.rate, self.stop = port, rate, stop
        self.infos: list = []
        self.published = 0

    def run(self) -> None:
        client = new_client("crash-equipment", clean=True)
        client.max_inflight_messages_set(1000)
        client.connect("127.0.0.1", self.port)
        client.loop_start()
        t0 = time.monotonic()
        start_ts = int(time.time() * 1000)
        i = 0
        while not self.stop.is_set():
            if i % 200 == 199:  # the alarm fridge, once a second: warm for 3 s, cold for 3 s
                dev, temp = "alarm-1", 10.5 if (i // 600) % 2 else 4.0
            else:
                dev, temp = f"fridge-{i % 20:02d}", 4.0 + (i % 13) * 0.1
            payload = json.dumps({"ts": start_ts + i * 5, "temp_c": temp})
            self.infos.append(client.publish(f"devices/{dev}/telemetry", payload, qos=1))
            i += 1
            self.published = i
            ahead = i / self.rate - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
        deadline = time.monotonic() + 60
        for info in self.infos:
            try:
                info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            except (RuntimeError, ValueError):
                pass
        self.client = client

    def acked(self) -> int:
        """Readings the local broker acknowledged."""
        return sum(1 for info in self.infos if info.is_published())

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            client.loop_stop()
            client.disconnect()


def paper(printers: dict[str, VirtualPrinter]) -> dict[str, list[int]]:
    """Return {job id: [REPRINT number of each complete copy (0: no banner)]} from every printer's paper."""
    copies: dict[str, list[int]] = {}
    for p in printers.values():
        for chunk in p.printed.split(b"\x1b@")[1:]:  # every job starts with ESC @
            lines = decode_lines(b"\x1b@" + chunk, p.encoding)
            text = "\n".join(lines)
            ids = FOOTER.findall(text)
            if not ids or b"\x1dV" not in chunk:
                continue  # cut off before its footer and cut: not a complete copy
            m = REPRINT.search(text)
            copies.setdefault(ids[-1], []).append(int(m.group(1)) if m else 0)
    return copies


def main(argv: list[str] | None = None) -> int:
    """Run the cycles and print the JSON line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog="example: python bench/crash.py --cycles 100",
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cycles", type=int, default=100, help="SIGKILLs (default 100)")
    ap.add_argument("--tables", type=int, default=12)
    ap.add_argument("--telemetry", type=float, default=200.0, help="telemetry messages per second (default 200)")
    ap.add_argument("--max-wait", type=float, default=4.0, help="longest run between kills, seconds (default 4)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)

    work = Path(tempfile.mkdtemp(prefix="storegw-crash-"))
    local = Broker(work / "mosquitto-local").start()
    hq_broker = Broker(work / "mosquitto-hq", persistence=True).start()
    web_port = free_port()
    printers = {s: VirtualPrinter().start() for s in STATIONS}
    devices = "".join(f'\n[[devices]]\nid = "printer-{s}"\nkind = "escpos"\nport = "{p.url}"\nstation = "{s}"\n'
                      f'status_timeout = "500ms"\nconfirm_timeout = "2s"\npoll = "200ms"\n'
                      for s, p in printers.items())
    config = work / "storegw.toml"
    config.write_text(f"""[store]
id = "crash-001"
data_dir = "{(work / 'data').as_posix()}"

[local_mqtt]
host = "127.0.0.1"
port = {local.port}

[uplink]
host = "127.0.0.1"
port = {hq_broker.port}
tls = false
reconnect_min = "200ms"
reconnect_max = "2s"

[web]
listen = "127.0.0.1:{web_port}"
public_host = "127.0.0.1:{web_port}"

[telemetry]
summary_window = "2s"
summary_grace = "1s"
{RULES}
{devices}""")
    tables = [f"T{i:02d}" for i in range(1, args.tables + 1)]
    cli(config, "menu", "import", "--sample")
    cli(config, "tables", "add", *tables)
    cli(config, "staff", "add", "crash-cashier", "--role", "cashier", "--pin-stdin", stdin=PIN + "\n")
    urls = {line.split("\t")[0]: line.split("\t")[3] for line in cli(config, "tables", "list").splitlines()}
    from gateway.ordering.menu import sample_document

    items = []
    for cat in sample_document()["categories"]:
        for it in cat["items"]:
            if it.get("stock") is None:
                items.append((it["id"], {f"opt_{g['id']}": g["choices"][-1]["id"]
                                         for g in it["options"] if g["required"]}))
    hq = HQCollector("127.0.0.1", hq_broker.port, store="crash-001", client_id="crash-hq", persistent=True).start()
    gw = GatewayProc(config, web_port, work / "gateway.log")
    stop = threading.Event()
    acked: dict[str, tuple[str, int]] = {}
    lock = threading.Lock()
    restarts: list[float] = []
    result: dict = {}
    equipment = Equipment(local.port, args.telemetry, stop)
    try:
        gw.start()
        gw.wait_healthy(timeout=60)
        diners = [Diner(web_port, urllib.parse.urlsplit(urls[t]).path, t, i, items, stop, acked, lock)
                  for i, t in enumerate(tables)]
        cashier = Cashier(web_port, tables, stop)
        for th in (equipment, cashier, *diners):
            th.start()
        log(f"work dir {work}; {args.cycles} cycles; {len(diners)} diners, a cashier, telemetry "
            f"{args.telemetry:g}/s, 4 printers")
        t_start = time.monotonic()
        restarted_at: float | None = None
        for cycle in range(1, args.cycles + 1):
            if rng.random() < 0.2:
                time.sleep(rng.uniform(0.0, 1.5))  # mid-start
            else:
                gw.wait_healthy(timeout=120, what=f"the gateway after restart (cycle {cycle})")
                if restarted_at is not None:
                    restarts.append(time.monotonic() - restarted_at)
                time.sleep(rng.uniform(0.3, args.max_wait))
            gw.proc.send_signal(signal.SIGKILL)
            gw.proc.wait()
            gw.start()
            restarted_at = time.monotonic()
            if cycle % 10 == 0 or cycle == args.cycles:
                with lock:
                    n_acked = len(acked)
                log(f"cycle {cycle}/{args.cycles} at {time.monotonic() - t_start:.0f}s: rounds acked {n_acked}, "
                    f"payments acked {sum(cashier.acked.values())}, readings published {equipment.published}, "
                    f"max restart {max(restarts, default=0):.2f}s")
        gw.wait_healthy(timeout=120, what="the gateway after the last restart")
        if restarted_at is not None:
            restarts.append(time.monotonic() - restarted_at)
        time.sleep(3)
        stop.set()
        for th in (equipment, cashier, *diners):
            th.join(90)
        readings_acked = equipment.acked()
        log(f"load stopped; readings acked by the broker {readings_acked}/{equipment.published}; waiting for HQ")
        try:
            wait_for(lambda: hq.summary_count("temp_c") >= readings_acked, timeout=180,
                     what="every acknowledged reading at HQ", interval=0.5)
        except TimeoutError as err:
            log(str(err))
        try:
            wait_for(lambda: all(not lane["depth"] for lane in (gw.health() or {}).get("outbox", {"x": {"depth": 1}})
                                 .values()), timeout=120, what="an empty outbox", interval=0.5)
        except TimeoutError as err:
            log(str(err))
        time.sleep(3)  # a late duplicate would arrive now
        health = gw.health() or {}
        code = gw.stop()
        equipment.close()
        hq_count = hq.summary_count("temp_c")
        with hq.lock:
            hq_items = {k: (v["count"], v["rev"]) for k, v in hq.summaries.items() if v["metric"] == "temp_c"}
        hq_alerts = {a["id"] for a in hq.alert_states()}
        hq.stop()

        from gateway.config import load as load_config
        from gateway.privacy.keys import current_db_key
        from gateway.store import open_store

        cfg = load_config(config)
        store = open_store(cfg.data_path, key=current_db_key(cfg.data_path, cfg.keys_path, cfg.store.key_file))
        try:
            conn = store.read()
            # the key is stored scoped to its table: "T01:KEY"
            rounds = {r[0].split(":", 1)[-1]: (r[1], r[2])
                      for r in conn.execute("SELECT idem_key, table_id, round_no FROM ord_rounds")}
            tickets = [(r[0].split(":", 1)[-1], r[1], r[2]) for r in conn.execute(
                "SELECT r.idem_key, t.job_id, t.station FROM ord_tickets t JOIN ord_rounds r ON r.id = t.round_id "
                "WHERE t.job_id IS NOT NULL")]
            jobs = {r[0]: (r[1], r[2]) for r in conn.execute("SELECT id, state, attempts FROM print_jobs")}
            alert_ids = {f"{r[0]}:{r[1]}" for r in conn.execute("SELECT episode, state FROM alert_log")}
            windows = {f"crash-001:{r[0]}:{r[1]}:{r[2]}:{r[3]}": (r[4], r[5], r[6]) for r in conn.execute(
                "SELECT d.name, m.name, w.window_s, w.wstart_ms, w.count, w.rev, w.dirty FROM windows w "
                "JOIN devices d ON d.id = w.device_id JOIN metrics m ON m.id = w.metric_id")}
            stored = conn.execute("SELECT count(*) FROM readings").fetchone()[0]
            payments: dict[str, int] = {}
            for table, n in conn.execute("SELECT table_id, count(*) FROM ord_payments GROUP BY table_id"):
                payments[table] = n
        finally:
            store.close()
        with lock:
            acked_now = dict(acked)
        orders_lost = [k for k, v in acked_now.items() if rounds.get(k) != v]
        copies = paper(printers)
        acked_jobs = [job for idem, job, _ in tickets if idem in acked_now]
        missing = [j for j in acked_jobs if not copies.get(j)]
        duplicated = 0
        dup_jobs = []
        for job, marks in copies.items():
            plain = marks.count(0)
            extra = max(0, plain - 1) + sum(marks.count(n) - 1 for n in set(marks) if n and marks.count(n) > 1)
            if extra:
                dup_jobs.append((job, marks, jobs.get(job)))
            duplicated += extra
        reprinted = sum(1 for marks in copies.values() if any(marks))
        unknown = [j for j in copies if j not in jobs]
        payments_lost = sum(max(0, n - payments.get(t, 0)) for t, n in cashier.acked.items())
        alerts_lost = sorted(alert_ids - hq_alerts)
        log(f"rounds in the database {len(rounds)}, acknowledged {len(acked_now)}, lost {len(orders_lost)} "
            f"{[(k, acked_now[k], rounds.get(k)) for k in orders_lost[:3]]}")
        log(f"print jobs {len(jobs)} ({sum(1 for s, _ in jobs.values() if s == 'confirmed')} confirmed); on paper "
            f"{len(copies)} jobs, {sum(len(m) for m in copies.values())} copies; missing {len(missing)} {missing[:5]}; "
            f"silent duplicates {duplicated} {dup_jobs[:5]}; reprinted with a banner {reprinted}; "
            f"not in the database {len(unknown)}")
        log(f"readings: acked {readings_acked}, HQ counts {hq_count}; alerts in alert_log {len(alert_ids)}, "
            f"lost {len(alerts_lost)} {alerts_lost[:5]}; payments acked {sum(cashier.acked.values())}, "
            f"lost {payments_lost}; gateway exit {code}")
        if hq_count != readings_acked:  # where HQ and the store's windows disagree
            log(f"readings stored {stored}; windows summed {sum(c for (c, _, _) in windows.values())}")
            for wid in sorted(set(hq_items) | {k for k in windows if ':temp_c:' in k}):
                if hq_items.get(wid, (None,))[0] != windows.get(wid, (None,))[0]:
                    log(f"  window {wid}: HQ (count, rev) {hq_items.get(wid)}, store (count, rev, dirty) "
                        f"{windows.get(wid)}")
        if health:
            log(f"last health: uplink {health.get('uplink')}, "
                f"ingest committed {health.get('ingest', {}).get('committed')}")
        result = {
            "cycles": args.cycles,
            "orders_acked": len(acked_now),
            "orders_lost": len(orders_lost),
            "tickets_duplicated": duplicated,
            "tickets_missing": len(missing),
            "readings_lost": max(0, readings_acked - hq_count),
            "max_restart_s": round(max(restarts, default=0.0), 2),
            "tickets_printed": len(copies),
            "tickets_reprinted": reprinted,
            "readings_acked": readings_acked,
            "readings_extra": max(0, hq_count - readings_acked),
            "alerts": len(alert_ids),
            "alerts_lost": len(alerts_lost),
            "payments_acked": sum(cashier.acked.values()),
            "payments_lost": payments_lost,
            "diner_unanswered": sum(d.unanswered for d in diners),
        }
    finally:
        stop.set()
        gw.stop()
        local.stop()
        hq_broker.stop()
        for p in printers.values():
            p.stop()
        if not args.keep and result:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
