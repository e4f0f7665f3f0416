"""Soak: `storegw run` under a mixed load for a while, its RSS sampled every 10 s.

The load, all to 127.0.0.1: diners ordering (bench/rush.py's diners: page, state polls, cart,
rounds printed on four virtual ESC/POS printers), staff pages (a waiter signing in with a PIN,
reading the table map, queue, a table and the KDS, signing out), KDS screens opening their live stream and
dropping it, diners' live streams opening and dropping (SSE churn, more than there are slots),
telemetry at 200 msg/s (QoS 1), and hostile traffic: wrong PINs from several addresses, oversized
and malformed bodies and request lines, forged table tokens, staff pages without a session, POSTs
without CSRF, path traversal, markup in nicknames, and slow sockets that send half a request and
hang up.

RSS (VmRSS of the gateway process) is sampled every ``--sample`` seconds; the slope is the least
squares fit over the samples after ``--warmup`` (default: a fifth of the run, at most 2 minutes).
``rss_peak_mb`` is the kernel's high-water mark (VmHWM), so a peak between samples counts.
``errors`` counts transport failures of requests that should have had an answer, any 5xx, 4xx
that an ordinary diner or staff request should not get, and ERROR lines or tracebacks in the
gateway's log. Every loop ends when the run does.

Prints progress to stderr and, last, one JSON line on stdout:
``{"minutes", "rss_start_mb", "rss_peak_mb", "rss_end_mb", "rss_slope_mb_per_h", "errors", "requests"}``
plus details (samples, warm-up, requests by kind, telemetry, rounds).

    python bench/soak.py                     # 10 minutes
    python bench/soak.py --minutes 1 --tracemalloc   # short, with tracemalloc growth sites on stderr
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import tracemalloc
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import Broker, GatewayProc, free_port, make_log  # noqa: E402
from rush import STATIONS, Diner, Equipment, Stats, TimedPrinter, cli  # noqa: E402
from rush import write_config as rush_config  # noqa: E402

log = make_log("soak")

PIN = "246810"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
XSS = ('<script>alert(1)</script>', '"><img src=x onerror=alert(1)>', "\u202egnp.exe", "\x1b@\x1dV\x00",
       "{{7*7}}", "' OR 1=1 --")


class Counter:
    """Requests and errors by kind (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: dict[str, int] = {}
        self.errors: dict[str, int] = {}

    def add(self, kind: str, error: str = "") -> None:
        with self.lock:
            self.requests[kind] = self.requests.get(kind, 0) + 1
            if error:
                key = f"{kind}: {error}"
                self.errors[key] = self.errors.get(key, 0) + 1

    def totals(self) -> tuple[int, int]:
        with self.lock:
            return sum(self.requests.values()), sum(self.errors.values())


class Client:
    """One HTTP client with a cookie jar, a source address and a bounded timeout."""

    def __init__(self, port: int, counter: Counter, source: str = "127.0.0.1") -> None:
        self.port, self.counter, self.source = port, counter, source
        self.cookies: dict[str, str] = {}

    def request(self, kind: str, method: str, path: str, body: str | bytes | None = None,
                headers: dict[str, str] | None = None, ok: tuple[int, ...] = (200,),
                timeout: float = 30) -> tuple[int, str, dict[str, str]]:
        """Send one request on a new connection; count it; return (status, text, headers)."""
        hdrs = dict(headers or {})
        if self.cookies:
            hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout, source_address=(self.source, 0))
        try:
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
            rh = {k.lower(): v for k, v in resp.getheaders()}
            for k, v in resp.getheaders():
                if k.lower() == "set-cookie":
                    name, _, rest = v.partition("=")
                    value = rest.split(";")[0]
                    if value and "Max-Age=0" not in v and "expires=Thu, 01 Jan 1970" not in v:
                        self.cookies[name] = value
                    else:
                        self.cookies.pop(name, None)
        except (OSError, http.client.HTTPException) as err:
            self.counter.add(kind, type(err).__name__)
            return 0, "", {}
        finally:
            conn.close()
        status = resp.status
        self.counter.add(kind, "" if status in ok else f"HTTP {status}")
        return status, data.decode("utf-8", "replace"), rh

    def login(self, kind: str, name: str, pin: str, ok: tuple[int, ...] = (303,)) -> int:
        """GET the sign-in page (session and CSRF) and POST name and PIN; return the POST's status."""
        self.cookies.clear()
        status, html, _ = self.request(kind, "GET", "/staff/login")
        m = re.search(r'name="csrf_token" value="([^"]+)"', html)
        if status != 200 or not m:
            return status
        body = urllib.parse.urlencode({"name": name, "pin": pin, "csrf_token": m.group(1)})
        return self.request(kind, "POST", "/staff/login", body, FORM, ok=ok)[0]


def stream(port: int, path: str, cookies: str, hold: float, stop: threading.Event) -> tuple[int, int]:
    """Open an SSE stream, read it for up to ``hold`` seconds, then drop it; return (status, bytes read)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        extra = f"Cookie: {cookies}\r\n" if cookies else ""
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n{extra}\r\n".encode())
        end = time.monotonic() + hold
        got = b""
        sock.settimeout(1.0)
        while time.monotonic() < end and not stop.is_set():
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                continue
            if not chunk:
                break
            got += chunk
        head = got.split(b"\r\n", 1)[0].split()
        return (int(head[1]) if len(head) > 1 and head[1].isdigit() else 0), len(got)
    finally:
        sock.close()


def staff_loop(port: int, counter: Counter, stop: threading.Event, rng: random.Random) -> None:
    """A waiter (floor roles sign in with a PIN): sign in, read pages for a while, sign out; again."""
    pages = ("/staff/", "/staff/queue", "/staff/tables/T01", "/staff/kds", "/staff/kds/hot/live")
    while not stop.is_set():
        c = Client(port, counter)
        if c.login("staff", "soak-staff", PIN) != 303:
            stop.wait(5)
            continue
        for _ in range(rng.randint(5, 20)):
            if stop.wait(rng.uniform(0.5, 2.0)):
                break
            c.request("staff", "GET", rng.choice(pages))
        csrf = c.request("staff", "GET", "/staff/")[1]
        m = re.search(r'name="csrf_token" value="([^"]+)"', csrf)
        if m:
            c.request("staff", "POST", "/staff/logout", urllib.parse.urlencode({"csrf_token": m.group(1)}), FORM,
                      ok=(303,))


def cashier_loop(port: int, counter: Counter, stop: threading.Event, tables: list[str], turnover: float) -> None:
    """A cashier turning tables over: each table's bill paid and the table cleared every ``turnover`` s.

    A store's tables close: a bill paid, the table cleared (清台), the next party's phones start a
    new session. Without this every table's session would grow for the whole run, which no store
    does (the cached table views would grow with it).
    """
    c = Client(port, counter)
    i = 0
    while not stop.wait(turnover / len(tables)):
        if not c.cookies and c.login("cashier", "soak-cashier", PIN) != 303:
            continue
        status, html, _ = c.request("cashier", "GET", "/staff/", ok=(200, 302, 303))
        m = re.search(r'name="csrf_token" value="([^"]+)"', html)
        if status != 200 or not m:
            c.cookies.clear()  # signed out: sign in again
            continue
        table = tables[i % len(tables)]
        i += 1
        for action, form in (("pay", {"method": "cash"}), ("clear", {})):
            body = urllib.parse.urlencode({**form, "csrf_token": m.group(1)})
            c.request("cashier", "POST", f"/staff/tables/{table}/{action}", body, FORM, ok=(303,))


def kds_loop(port: int, counter: Counter, stop: threading.Event, rng: random.Random, station: str) -> None:
    """A kitchen screen: signed in, its live stream connected for a while and dropped; polls between."""
    c = Client(port, counter)
    while not stop.is_set() and c.login("kds", "soak-kds", PIN) != 303:
        stop.wait(5)
    cookies = "; ".join(f"{k}={v}" for k, v in c.cookies.items())
    while not stop.is_set():
        try:
            status, _ = stream(port, f"/staff/events?ch=kds:{station}", cookies, rng.uniform(1, 30), stop)
            counter.add("kds-sse", "" if status == 200 else f"HTTP {status}")
        except OSError as err:
            counter.add("kds-sse", type(err).__name__)
        c.request("kds", "GET", f"/staff/kds/{station}/live")
        stop.wait(rng.uniform(0.2, 3))


def sse_churn_loop(port: int, counter: Counter, stop: threading.Event, rng: random.Random,
                   paths: list[str]) -> None:
    """A diner's phone opening the table's live stream and dropping it (slots run out: 'busy' is fine)."""
    while not stop.is_set():
        try:
            status, _ = stream(port, f"{rng.choice(paths)}/events", "", rng.uniform(0.1, 12), stop)
            counter.add("sse", "" if status == 200 else f"HTTP {status}")
        except OSError as err:
            counter.add("sse", type(err).__name__)
        stop.wait(rng.uniform(0.1, 2))


def raw(port: int, data: bytes, hold: float = 0.0, read: bool = True) -> bytes:
    """Send raw bytes, optionally wait, read the answer (up to 5 s); return it."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        if hold:
            time.sleep(hold)
        if not read:
            return b""
        try:
            return sock.recv(4096)
        except OSError:
            return b""


def hostile_loop(port: int, counter: Counter, stop: threading.Event, rng: random.Random, paths: list[str],
                 worker: int) -> None:
    """One attacker: a random hostile request at a time."""
    table = paths[0]
    while not stop.is_set():
        src = f"127.0.{worker}.{rng.randint(2, 250)}"
        c = Client(port, counter, source=src)
        what = rng.randrange(11)
        try:
            if what == 0:  # wrong PINs (an account of its own: the others must keep working)
                c.login("bad-login", rng.choice(("soak-guess", "nobody", "admin")), f"{rng.randrange(10**6):06d}",
                        ok=(401, 429))
            elif what == 1:  # oversized body: refused on its Content-Length
                reply = raw(port, b"POST " + table.encode() + b"/add HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n"
                            b"Content-Type: application/x-www-form-urlencoded\r\n\r\n" + b"a" * 65536)
                counter.add("oversized", "" if reply[9:12] == b"413" else f"got {reply[:12]!r}")
            elif what == 2:  # malformed request lines, lengths and chunks
                junk = rng.choice((b"GET\r\n\r\n", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" * 4,
                                   b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
                                   b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                                   b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n"))
                reply = raw(port, junk)
                code = reply[9:12]
                counter.add("malformed", "" if not code or code[:1] == b"4" else f"got {reply[:12]!r}")
            elif what == 3:  # forged and foreign table tokens
                tok = rng.choice(("A1.1.forged", "T01.9.AAAA", "..%2f..", "T01.\u00b2.x", "x" * 300))
                c.request("forged", "GET", f"/t/{urllib.parse.quote(tok)}/state.json", ok=(400, 403, 404))
            elif what == 4:  # staff pages without a session
                c.request("no-session", "GET", rng.choice(("/staff/", "/staff/menu", "/staff/kds/hot")), ok=(302,))
            elif what == 5:  # a POST without CSRF
                c.request("no-csrf", "POST", "/staff/tables/T01/open", "covers=4", FORM, ok=(400,))
            elif what == 6:  # traversal
                target = rng.choice(("/static/../../etc/passwd", "/static/%2e%2e/%2e%2e/etc/passwd",
                                     "/t/../../etc/passwd"))
                c.request("traversal", "GET", target, ok=(400, 404))
            elif what == 7:  # markup and control bytes in a nickname and a cart note (answered; stored cleaned)
                status, html, _ = c.request("markup", "GET", f"{rng.choice(paths)}?d=evilxx{worker}")
                m = re.search(r'name="csrf" value="([^"]+)"', html)
                if m:
                    path = rng.choice(paths)
                    body = urllib.parse.urlencode({"csrf": m.group(1), "d": f"evilxx{worker}", "nick": rng.choice(XSS)})
                    c.request("markup", "POST", f"{path}/name", body, FORM, ok=(200, 303, 400, 403, 429))
            elif what == 8:  # a slow socket: half a request, then nothing, then gone
                raw(port, b"POST " + table.encode() + b"/add HTTP/1.1\r\nHost: x\r\nContent-Length: 60000\r\n\r\n"
                    + b"a" * rng.randint(0, 50000), hold=rng.uniform(1, 8), read=False)
                counter.add("slow-socket")
            elif what == 9:  # a body the form parser must reject (bad encoding, huge field count)
                body = "&".join(f"f{i}=%ff%fe" for i in range(2000))
                c.request("bad-form", "POST", f"{table}/add", body, FORM, ok=(400, 403, 413))
            else:  # a sneaky Host and a redirect target
                c.request("host", "GET", "/t//x", headers={"Host": "evil.example"}, ok=(301, 308, 400, 404))
        except OSError as err:
            counter.add("hostile", type(err).__name__)
        stop.wait(rng.uniform(0.05, 0.5))


def slope_per_hour(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) samples, in MB per hour."""
    if len(samples) < 3:
        return 0.0
    n = len(samples)
    mx = sum(t for t, _ in samples) / n
    my = sum(v for _, v in samples) / n
    sxx = sum((t - mx) ** 2 for t, _ in samples)
    if sxx == 0:
        return 0.0
    return sum((t - mx) * (v - my) for t, v in samples) / sxx * 3600


def log_errors(path: Path) -> list[str]:
    """Return the gateway log's ERROR lines and traceback heads."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        if " ERROR " in line or " CRITICAL " in line or line.startswith("Traceback") or "Exception in thread" in line:
            out.append(line[:300])
    return out


def tracemalloc_diff(snaps: Path, log_fn) -> None:  # noqa: ANN001
    """Log the top growth sites from before the load and from the end of the warm-up to the end."""
    files = sorted(snaps.glob("snapshot-*.pickle"), key=lambda p: int(p.stem.split("-")[1]))
    if len(files) < 2:
        log_fn("tracemalloc: fewer than two snapshots")
        return
    last = tracemalloc.Snapshot.load(str(files[-1]))
    for first in files[:-1]:
        a = tracemalloc.Snapshot.load(str(first))
        total = sum(st.size_diff for st in last.compare_to(a, "filename"))
        log_fn(f"tracemalloc growth {first.name} -> {files[-1].name}: {total / 1e6:+.2f} MB traced in all; top:")
        for st in last.compare_to(a, "traceback")[:10]:
            frames = [f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno}" for f in st.traceback][-5:]
            log_fn(f"  {st.size_diff / 1e6:+7.2f} MB ({st.count_diff:+d} blocks) {' < '.join(reversed(frames))}")


def main(argv: list[str] | None = None) -> int:
    """Run the soak and print the JSON line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog="example: python bench/soak.py --minutes 10",
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the run (default 10)")
    ap.add_argument("--sample", type=float, default=10.0, help="seconds between RSS samples (default 10)")
    ap.add_argument("--warmup", type=float, default=None,
                    help="seconds before the slope is fitted (default: a fifth of the run, at most 120)")
    ap.add_argument("--tables", type=int, default=20)
    ap.add_argument("--turnover", type=float, default=300.0,
                    help="seconds between a table's bill paid and cleared by the cashier (0: tables never close)")
    ap.add_argument("--diners", type=int, default=60)
    ap.add_argument("--telemetry", type=float, default=200.0, help="telemetry messages per second (default 200)")
    ap.add_argument("--kds", type=int, default=2, help="KDS screens (default 2)")
    ap.add_argument("--sse", type=int, default=12, help="diner phones opening and dropping live streams (12)")
    ap.add_argument("--hostile", type=int, default=3, help="attackers, each one request at a time (3)")
    ap.add_argument("--threads", type=int, default=16, help="web.threads of the gateway (16)")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                    help="extra environment for the gateway, e.g. MALLOC_ARENA_MAX=2 (repeatable)")
    ap.add_argument("--tracemalloc", action="store_true",
                    help="run the gateway with STOREGW_TRACEMALLOC; log growth sites after warm-up (RSS is then "
                         "inflated by tracemalloc itself: not for the goal)")
    ap.add_argument("--memstats", action="store_true",
                    help="at every sample, have the gateway log SQLite's heap, Python's blocks and threads "
                         "(STOREGW_TRACEMALLOC=0 and SIGUSR2; no tracing) and show it here")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args(argv)
    duration = args.minutes * 60
    warmup = args.warmup if args.warmup is not None else min(120.0, duration / 5)

    work = Path(tempfile.mkdtemp(prefix="storegw-soak-"))
    broker = Broker(work / "mosquitto").start()
    web_port = free_port()
    printers = {s: TimedPrinter().start() for s in STATIONS}
    config = rush_config(work, broker.port, web_port, printers, args.threads)
    tables = [f"T{i:02d}" for i in range(1, args.tables + 1)]
    cli(config, "menu", "import", "--sample")
    cli(config, "tables", "add", *tables)
    for name, role in (("soak-staff", "waiter"), ("soak-kds", "kitchen"), ("soak-guess", "waiter"),
                       ("soak-cashier", "cashier")):
        cli(config, "staff", "add", name, "--role", role, "--pin-stdin", stdin=PIN + "\n")
    urls = {line.split("\t")[0]: line.split("\t")[3] for line in cli(config, "tables", "list").splitlines()}
    paths = [urllib.parse.urlsplit(urls[t]).path for t in tables]
    env = dict(kv.split("=", 1) for kv in args.env)
    snaps = work / "snaps"
    if args.tracemalloc:
        env["STOREGW_TRACEMALLOC"] = str(snaps)
    elif args.memstats:
        env["STOREGW_TRACEMALLOC"] = "0"
    gw = GatewayProc(config, web_port, work / "gateway.log")
    counter = Counter()
    stats = Stats()
    stop = threading.Event()
    samples: list[tuple[float, float]] = []
    result: dict = {}
    try:
        gw.start(env)
        gw.wait_healthy(timeout=60)
        time.sleep(2)
        rss_start = gw.status_kb("VmRSS") / 1024
        if args.tracemalloc:
            gw.proc.send_signal(signal.SIGUSR2)  # snapshot 1: before the load
        log(f"work dir {work}; gateway pid {gw.pid} RSS {rss_start:.1f} MB; {args.minutes:g} min, warm-up "
            f"{warmup:.0f} s; {args.diners} diners, {args.kds} KDS, {args.sse} SSE phones, {args.hostile} attackers, "
            f"telemetry {args.telemetry:g}/s")
        from gateway.ordering.menu import sample_document

        items = []
        for cat in sample_document()["categories"]:
            for it in cat["items"]:
                if it.get("stock") is None:
                    items.append((it["id"], {f"opt_{g['id']}": g["choices"][-1]["id"]
                                             for g in it["options"] if g["required"]}))
        actors: list[threading.Thread] = [Equipment(broker.port, args.telemetry, stop)]
        for i in range(args.diners):
            table = tables[i % len(tables)]
            actors.append(Diner(web_port, urls[table], table, i // len(tables), i < len(tables), stats, stop,
                                items, seed=i, source=f"127.1.{i // 250}.{i % 250 + 1}"))
        rng = random.Random(7)
        actors.append(threading.Thread(target=staff_loop, args=(web_port, counter, stop, random.Random(1)),
                                       daemon=True, name="staff"))
        if args.turnover > 0:
            actors.append(threading.Thread(target=cashier_loop, args=(web_port, counter, stop, tables,
                                                                      args.turnover), daemon=True, name="cashier"))
        for k in range(args.kds):
            actors.append(threading.Thread(target=kds_loop, args=(web_port, counter, stop, random.Random(10 + k),
                                                                  STATIONS[k % len(STATIONS)]), daemon=True))
        for k in range(args.sse):
            actors.append(threading.Thread(target=sse_churn_loop, args=(web_port, counter, stop,
                                                                        random.Random(100 + k), paths), daemon=True))
        for k in range(args.hostile):
            actors.append(threading.Thread(target=hostile_loop, args=(web_port, counter, stop,
                                                                      random.Random(200 + k), paths, k + 1),
                                           daemon=True))
        rng.shuffle(actors)
        t0 = time.monotonic()
        for a in actors:
            a.start()
        snapped = False
        next_sample = t0
        while (now := time.monotonic()) - t0 < duration:
            if now >= next_sample:
                gw.check_alive()
                rss = gw.status_kb("VmRSS") / 1024
                samples.append((now - t0, rss))
                n, e = counter.totals()
                with stats.lock:
                    dn, de = len(stats.latencies), stats.errors
                log(f"t={now - t0:5.0f}s RSS {rss:6.1f} MB (peak {gw.status_kb('VmHWM') / 1024:.1f}) requests "
                    f"{n + dn} errors {e + de} rounds {stats.rounds} telemetry {actors_sent(actors)}")
                next_sample += args.sample
                if args.memstats:
                    gw.proc.send_signal(signal.SIGUSR2)
                    time.sleep(0.3)
                    lines = [ln for ln in (work / "gateway.log").read_text(errors="replace").splitlines()
                             if "memory: RSS" in ln]
                    if lines:
                        log("  gateway " + lines[-1].split("memory: ", 1)[1])
                if args.tracemalloc and not snapped and now - t0 >= warmup:
                    gw.proc.send_signal(signal.SIGUSR2)
                    snapped = True
            time.sleep(min(1.0, max(0.05, next_sample - time.monotonic())))
        now = time.monotonic()
        samples.append((now - t0, gw.status_kb("VmRSS") / 1024))
        if args.tracemalloc:
            gw.proc.send_signal(signal.SIGUSR2)
            time.sleep(5)
        rss_peak = gw.status_kb("VmHWM") / 1024
        stop.set()
        for a in actors:
            a.join(40)
        alive = [a.name for a in actors if a.is_alive()]
        if alive:
            log(f"warning: {len(alive)} load threads still running: {alive[:5]}")
        health = gw.health() or {}
        rss_end = samples[-1][1]
    finally:
        stop.set()
        code = gw.stop()
        broker.stop()
        for p in printers.values():
            p.stop()
    if args.tracemalloc:
        tracemalloc_diff(snaps, log)
    gw_errors = log_errors(work / "gateway.log")
    for line in gw_errors[:10]:
        log(f"gateway log: {line}")
    n, e = counter.totals()
    with stats.lock:
        diner_requests, diner_errors = len(stats.latencies), stats.errors
    errors = e + diner_errors + len(gw_errors) + (1 if code not in (0, None) else 0)
    if counter.errors or stats.error_kinds:
        log(f"errors by kind: {dict(counter.errors)} diners: {stats.error_kinds}")
    log(f"requests by kind: {dict(sorted(counter.requests.items()))}, diners {diner_requests}")
    after = [s for s in samples if s[0] >= warmup]
    result = {
        "minutes": args.minutes,
        "rss_start_mb": round(rss_start, 1),
        "rss_peak_mb": round(rss_peak, 1),
        "rss_end_mb": round(rss_end, 1),
        "rss_slope_mb_per_h": round(slope_per_hour(after), 2),
        "errors": errors,
        "requests": n + diner_requests,
        "warmup_s": round(warmup),
        "rss_samples_mb": [round(v, 1) for _, v in samples],
        "rounds": stats.rounds,
        "telemetry_sent": actors_sent(actors),
        "telemetry_committed": health.get("ingest", {}).get("committed"),
        "gateway_log_errors": len(gw_errors),
        "gateway_exit": code,
        "env": env,
    }
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result), flush=True)
    return 0


def actors_sent(actors: list[threading.Thread]) -> int:
    """Telemetry messages published so far."""
    return sum(a.sent for a in actors if isinstance(a, Equipment))


if __name__ == "__main__":
    sys.exit(main())
