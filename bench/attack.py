"""A hostile diner (and a curious employee) on the store Wi-Fi, against a real `storegw run` (issue 9).

Starts its own store on random loopback ports: the shipped Mosquitto configuration and ACL
(``systemd/mosquitto/``) as the local broker, a plain Mosquitto as HQ, a virtual ESC/POS printer
for the hot station, the sample menu, tables, floor staff and a manager (password + TOTP), then
reruns every attack of issue 9 and the variants below over real HTTP and MQTT. Different client
addresses are different loopback source addresses (127.0.0.0/8), so per-address limits are real.

Each attack records whether it *succeeded* (a hole); a 500, a traceback or an ERROR line in the
gateway's log counts as a success too (kind ``log``). Prints one JSON line last:
``{"attacks": N, "succeeded": K, "by_kind": {kind: [attacks, succeeded]}, "holes": [...]}``.

    .venv/bin/python bench/attack.py            # about two minutes
    .venv/bin/python bench/attack.py --keep     # leave the temp dir (gateway log, printer bytes)
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from _harness import ROOT, Broker, GatewayProc, free_port, make_log, wait_for, wait_port

log = make_log("attack")
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
PIN = "246813"
PASSWORD = "correct horse battery staple"
XSS = ['<script>alert(1)</script>', '"><img src=x onerror=alert(1)>', "'><svg onload=alert(1)>",
       "javascript:alert(1)", "</textarea><script>x()</script>", "{{7*7}}"]
ESCPOS = ["\x1b\x70\x00\x19\xfa", "\x1d\x56\x41\x10", "\x1b\x40", "\x10\x14\x01\x00\x05", "\x1b\x64\x50",
          "\x1c\x70\x01\x00", "\x1b\x21\x30"]
INVISIBLE = ["\u202e", "\u200b", "\u2060", "\ufeff", "\u00ad", "\U000e0041", "\u2066", "\u061c", "\u180e",
             "\u3164", "\u115f", "\u2800", "\u034f", "\ufe0f" * 8, "\u0301" * 40, "\u200d", "\u2028", "\x85"]
FORM = "application/x-www-form-urlencoded"
JS = {"Accept": "application/json", "X-Requested-With": "js"}
DIGITS = ["１", "١", "²", "01", "٠1", "+1", " 1", "1_0", "1.0", "-1", "0x1", "1e2", "99999999999999999999999"]


# ---------------------------------------------------------------------------- HTTP, raw

class Http:
    """Raw HTTP/1.1 over a socket from a chosen loopback source address (nothing normalised)."""

    def __init__(self, port: int) -> None:
        self.port = port

    def raw(self, data: bytes, src: str = "127.0.0.1", timeout: float = 15.0) -> tuple[int, dict[str, str], bytes]:
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout, source_address=(src, 0))
        try:
            s.sendall(data)
            buf = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except TimeoutError:
                    break
                if not chunk:
                    break
                buf += chunk
        except (ConnectionResetError, BrokenPipeError):
            buf = b""
        finally:
            s.close()
        head, _, body = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        try:
            status = int(lines[0].split()[1])
        except (IndexError, ValueError):
            return 0, {}, buf
        headers: dict[str, str] = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            if k.lower() == "set-cookie" and k.lower() in headers:
                headers["set-cookie"] += "\n" + v.strip()
            else:
                headers[k.lower()] = v.strip()
        if headers.get("transfer-encoding") == "chunked":
            body = _unchunk(body)
        return status, headers, body

    def req(self, method: str, path: str, *, form: dict[str, Any] | list[tuple[str, str]] | None = None,
            body: bytes | None = None, headers: dict[str, str] | None = None, cookie: str = "",
            src: str = "127.0.0.1", host: str | None = None, timeout: float = 15.0) -> tuple[int, dict[str, str], str]:
        hdrs = {"Host": host if host is not None else f"127.0.0.1:{self.port}", "Connection": "close",
                "User-Agent": "attack/1"}
        if form is not None:
            body = urlencode(form, doseq=False).encode()
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        if body is not None:
            hdrs["Content-Length"] = str(len(body))
        if cookie:
            hdrs["Cookie"] = cookie
        hdrs.update(headers or {})
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
        status, h, b = self.raw(head.encode("utf-8", "surrogateescape") + (body or b""), src, timeout)
        return status, h, b.decode("utf-8", "replace")


def _unchunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        try:
            n = int(size_line.split(b";")[0], 16)
        except ValueError:
            return out + body
        if n == 0:
            break
        out += rest[:n]
        body = rest[n + 2:]
    return out


def open_stream(port: int, src: str, path: str, headers: str, held: list[socket.socket]) -> bytes:
    """Open a live stream from ``src`` (the socket is kept in ``held``); return what came before its
    ``retry:`` line or a ``busy`` answer (or 8 KiB, or the timeout)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(src, 0))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode())
    held.append(s)
    data = b""
    try:
        while b"retry" not in data and b"busy" not in data and len(data) < 8192:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except TimeoutError:
        pass
    return data


def cookie_of(headers: dict[str, str], name: str) -> str:
    for line in headers.get("set-cookie", "").split("\n"):
        if line.startswith(name + "="):
            return line.split(";")[0]
    return ""


# ---------------------------------------------------------------------------- the store

class Store:
    """Brokers, printer, config, data and a running gateway in a temp dir."""

    def __init__(self, tmp: Path, *, portal: bool = True) -> None:
        self.tmp = tmp
        self.portal = portal
        self.local = tmp / "local-mqtt"
        self.hq = Broker(tmp / "hq").start()
        self.web_port = free_port()
        self.mqtt_port = free_port()
        from devices.escpos.simulator import VirtualPrinter

        self.printer = VirtualPrinter().start()
        self._local_broker()
        self.config = self._config()
        self._prepare()
        self.gw = GatewayProc(self.config, self.web_port, tmp / "gateway.log").start()
        self.gw.wait_healthy(timeout=90)
        self.http = Http(self.web_port)

    def _local_broker(self) -> None:
        """The shipped Mosquitto include and ACL example, with passwords for the gateway and two devices."""
        d = self.local
        d.mkdir(parents=True)
        pw = d / "passwd"
        for user, secret in (("storegw", "gw-secret"), ("fridge-1", "f1-secret"), ("fryer-1", "fr1-secret"),
                             ("observer", "obs-secret")):
            subprocess.run(["mosquitto_passwd", *(["-c"] if not pw.exists() else []), "-b", str(pw), user, secret],
                           check=True, capture_output=True)
        # the shipped example, plus a read-only observer for the attack (the gateway's own user would take
        # over the gateway's session: the shipped configuration ties client ids to users)
        (d / "acl").write_text((ROOT / "systemd/mosquitto/storegw.acl.example").read_text()
                               + "\nuser observer\ntopic read #\n")
        conf = (ROOT / "systemd/mosquitto/storegw.conf").read_text()
        conf = (conf.replace("listener 1883 127.0.0.1", f"listener {self.mqtt_port} 127.0.0.1")
                .replace("/etc/mosquitto/storegw.passwd", str(pw)).replace("/etc/mosquitto/storegw.acl", str(d / "acl"))
                .replace("/var/lib/mosquitto/", f"{d}/"))
        import os

        (d / "m.conf").write_text(conf + ("\nuser root\n" if os.geteuid() == 0 else "\n"))
        (d / "gw.pw").write_text("gw-secret\n")
        self.mosq = subprocess.Popen([MOSQUITTO, "-c", str(d / "m.conf")], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_port(self.mqtt_port)

    def _config(self) -> Path:
        synced = self.tmp / "synchronized"
        synced.touch()
        path = self.tmp / "storegw.toml"
        path.write_text(f"""\
[store]
id = "atk-001"
name = "Attack <b>Store</b>"
data_dir = "{(self.tmp / 'data').as_posix()}"

[local_mqtt]
host = "127.0.0.1"
port = {self.mqtt_port}
username = "storegw"
password_file = "{(self.local / 'gw.pw').as_posix()}"

[uplink]
host = "127.0.0.1"
port = {self.hq.port}
tls = false

[web]
listen = "127.0.0.1:{self.web_port}"
public_host = "127.0.0.1:{self.web_port}"

[staff]
clock_sync_files = ["{synced.as_posix()}"]

[ordering]
portal = {'true' if self.portal else 'false'}

[guests]
enabled = true

[alerts]
device_offline_after = "30s"

[[devices]]
id = "printer-hot"
kind = "escpos"
port = "{self.printer.url}"
station = "hot"
status_timeout = "500ms"
confirm_timeout = "2s"
poll = "200ms"
""")
        return path

    def cli(self, *args: str, stdin: str | None = None) -> str:
        r = subprocess.run([sys.executable, "-m", "gateway", *args, "--config", str(self.config)], input=stdin,
                           capture_output=True, text=True, cwd=ROOT, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"storegw {' '.join(args)}: {r.stdout}{r.stderr}")
        return r.stdout

    def _prepare(self) -> None:
        self.cli("menu", "import", "--sample")
        self.cli("tables", "add", "A1", "A2", "B1", "C1")
        for name, role in (("demo", "waiter"), ("chef", "kitchen"), ("victim", "waiter"), ("victim2", "waiter"),
                           ("gone", "waiter"), ("moved", "waiter"), ("reset", "waiter")):
            self.cli("staff", "add", name, "--role", role, "--pin-stdin", stdin=PIN + "\n")
        pw = self.tmp / "boss.pw"
        pw.write_text(PASSWORD + "\n")
        out = self.cli("staff", "add", "boss", "--role", "manager", "--password-file", str(pw))
        import pyotp

        self.totp = pyotp.parse_uri(re.search(r"otpauth://\S+", out).group(0))
        self.totp_step = int(time.time() // 30) - 2
        self.urls = {}
        for line in self.cli("tables", "list").splitlines():
            m = re.search(r"(A1|A2|B1|C1)\S*\s.*?(http\S+)", line)
            if m:
                self.urls[m.group(1)] = m.group(2)
        if not self.urls:
            for t in ("A1", "A2", "B1", "C1"):
                self.urls[t] = self.cli("tables", "url", t).strip()
        self.queue_url = self.cli("tables", "queue-url").strip().split()[-1]

    def code(self) -> str:
        """A fresh TOTP code (each step once)."""
        now = int(time.time() // 30)
        self.totp_step = max(self.totp_step + 1, now - 1)
        if self.totp_step > now + 1:
            time.sleep((self.totp_step - 1) * 30 - time.time() + 0.2)
        return self.totp.generate_otp(self.totp_step)

    def stop(self) -> None:
        for fn in (self.gw.stop, self.printer.stop, self.hq.stop):
            try:
                fn()
            except Exception as err:  # noqa: BLE001 - clean up the rest
                log(f"cleanup: {err}")
        if self.mosq.poll() is None:
            self.mosq.terminate()
            self.mosq.wait(10)


# ---------------------------------------------------------------------------- clients

class Phone:
    """A diner's phone (no JS: forms and redirects), from its own address."""

    def __init__(self, store: Store, table: str, src: str, d: str = "") -> None:
        self.http, self.src = store.http, src
        self.path = urlsplit(store.urls[table]).path
        self.token = self.path.rsplit("/", 1)[-1]
        self.d = d or ("p" + src.replace(".", "")[-8:]).ljust(8, "0")

    def page(self, path: str = "") -> tuple[int, dict[str, str], str]:
        return self.http.req("GET", f"{path or self.path}?d={self.d}&lang=en", src=self.src)

    def csrf(self) -> str:
        status, h, body = self.page()
        if status == 303:  # a page id the server does not take: follow to the one it hands out
            body = self.http.req("GET", h.get("location", "/"), src=self.src)[2]
        m = re.search(r'name="csrf" value="([^"]+)"', body)
        return m.group(1) if m else ""

    def idem(self) -> str:
        m = re.search(r'name="idem" value="([^"]+)"', self.page()[2])
        return m.group(1) if m else ""

    def post(self, action: str, path: str = "", pairs: list[tuple[str, str]] | None = None, **fields: str) -> Any:
        data = [("csrf", self.csrf()), ("d", self.d), ("lang", "en"), *fields.items(), *(pairs or [])]
        return self.http.req("POST", f"{path or self.path}/{action}", form=data, src=self.src,
                             headers={"Accept": "application/json", "X-Requested-With": "js"})

    def state(self, path: str = "") -> dict[str, Any]:
        status, _, body = self.http.req("GET", f"{path or self.path}/state.json?d={self.d}", src=self.src)
        return json.loads(body) if status == 200 else {}


class StaffBrowser:
    """A staff browser: its cookie, CSRF token and address."""

    def __init__(self, store: Store, src: str = "127.0.1.1") -> None:
        self.store, self.http, self.src, self.cookie = store, store.http, src, ""

    def get(self, path: str, **kw: Any) -> tuple[int, dict[str, str], str]:
        status, h, body = self.http.req("GET", path, cookie=self.cookie, src=self.src, **kw)
        self.cookie = cookie_of(h, "storegw_staff") or self.cookie
        return status, h, body

    def csrf(self, path: str = "/staff/login") -> str:
        m = re.search(r'name="csrf_token" value="([^"]+)"', self.get(path)[2])
        return m.group(1) if m else ""

    def post(self, path: str, data: dict[str, str] | list[tuple[str, str]], csrf: str | None = None,
             **kw: Any) -> tuple[int, dict[str, str], str]:
        token = self.csrf("/staff/login") if csrf is None else csrf
        pairs = list(data.items()) if isinstance(data, dict) else list(data)
        if token:
            pairs.append(("csrf_token", token))
        status, h, body = self.http.req("POST", path, form=pairs, cookie=self.cookie, src=self.src, **kw)
        self.cookie = cookie_of(h, "storegw_staff") or self.cookie
        return status, h, body

    def login(self, name: str, secret: str = PIN, code: str = "", path: str = "/staff/login") -> int:
        self.cookie = ""
        return self.post(path, {"name": name, "pin": secret, "code": code})[0]

    def signed_in(self) -> bool:
        status, _, body = self.get("/staff/")
        return status == 200 and "logout" in body


# ---------------------------------------------------------------------------- the attacks

class Attacker:
    def __init__(self, store: Store) -> None:
        self.s = store
        self.http = store.http
        self.results: list[dict[str, Any]] = []
        self._src = 10

    def src(self) -> str:
        """A fresh loopback address (a new phone)."""
        self._src += 1
        return f"127.0.{2 + self._src // 250}.{self._src % 250 + 1}"

    def record(self, kind: str, name: str, succeeded: bool, detail: str = "") -> None:
        self.results.append({"kind": kind, "name": name, "succeeded": bool(succeeded), "detail": detail[:300]})
        if succeeded:
            log(f"HOLE [{kind}] {name}: {detail[:300]}")

    def run(self, kind: str, name: str, fn: Callable[[], tuple[bool, str] | bool]) -> None:
        try:
            out = fn()
        except Exception as err:  # noqa: BLE001 - an attack that breaks the harness is reported, not fatal
            self.record(kind, name, False, f"attack error: {type(err).__name__}: {err}")
            log(f"attack {kind}/{name} raised {type(err).__name__}: {err}")
            return
        ok, detail = out if isinstance(out, tuple) else (out, "")
        self.record(kind, name, ok, detail)

    def check_5xx(self, kind: str, name: str, status: int, extra: str = "") -> None:
        self.record(kind, name, status >= 500 or status == 0, f"status {status} {extra}")

    # -- cross-table orders
    def cross_table(self) -> None:
        a1 = Phone(self.s, "A1", self.src(), "crossa1aa")
        a2 = Phone(self.s, "A2", self.src(), "crossa2aa")
        a2.post("add", item="c01", qty="1")
        line = (a2.state().get("cart") or [{}])[0].get("id")
        # A1's form token on A2's URL
        csrf_a1 = a1.csrf()
        st, _, body = self.http.req("POST", f"{a2.path}/add", form={"csrf": csrf_a1, "d": a1.d, "item": "c01"},
                                    src=a1.src)
        self.record("cross_table", "A1 form token on A2 add", st < 400, f"status {st}")
        if line is not None:
            st, _, _ = a1.post(f"cart/{line}", qty="9")
            after = a2.state().get("cart", [])
            self.record("cross_table", "A1 changes A2's cart line by id", any(c.get("qty") == 9 for c in after),
                        f"status {st} cart {after}")
            st, _, _ = a1.post(f"cart/{line}", remove="1")
            after = a2.state().get("cart", [])
            self.record("cross_table", "A1 removes A2's cart line by id", not after, f"status {st}")
            st, _, body = a1.post("request", kind="rush", line=str(line))
            rushed = st == 200 and '"ok": true' in body.replace('":true', '": true')
            self.record("cross_table", "A1 rushes A2's line", rushed, f"status {st} {body[:100]}")
        # A1's token with A2's table name
        table, ver, sig = a1.token.split(".")
        for forged in (f"A2.{ver}.{sig}", f"a1.{ver}.{sig}", f"A1.{ver}.{sig[:-1]}{'A' if sig[-1] != 'A' else 'B'}",
                       f"A1.{ver}.{sig.upper()}", f"A1.{int(ver) + 1}.{sig}", f"A1.{ver}.", f"A1..{sig}",
                       f"A1.{ver}.{sig}.x", f"A1.{ver}.{sig}%00", f" A1.{ver}.{sig}"):
            st, _, _ = self.http.req("GET", f"/t/{forged}/state.json?d=forger001", src=a1.src)
            self.record("token", f"forged token {forged[:24]}", st == 200 or st >= 500, f"status {st}")
        for digit in DIGITS + ["０", "𝟏", "߁", "১", "໑"]:
            forged = f"{table}.{quote(digit)}.{sig}"
            for suffix in ("/state.json", "?d=forger001", "/live", "/events"):
                st, _, _ = self.http.req("GET", f"/t/{forged}{suffix}", src=a1.src, timeout=3)
                self.record("token", f"version {digit!r}{suffix}", st == 200 or st >= 500 or st == 0, f"status {st}")
        qtoken = self.s.queue_url.rstrip("/").rsplit("/", 1)[-1]
        parts = qtoken.split(".")
        for i, p in enumerate(parts):
            for digit in ("１", "١", "0" + p if p.isdigit() else p + "x"):
                forged = ".".join(parts[:i] + [quote(digit) if not digit.isascii() else digit] + parts[i + 1:])
                st, _, _ = self.http.req("GET", f"/q/{forged}/state.json?d=forger001", src=a1.src)
                self.record("token", f"queue token part {i} {digit!r}", st == 200 or st >= 500, f"status {st}")

    # -- numbers in every URL
    def url_numbers(self) -> None:
        boss = self.boss()
        a1 = Phone(self.s, "A1", self.src(), "numbers01")
        a1.post("add", item="c01")
        line = (a1.state().get("cart") or [{}])[0].get("id", 1)
        csrf = boss.csrf("/staff/")
        routes = [("POST", f"{a1.path}/cart/{{n}}", "diner"), ("POST", "/staff/tasks/{n}/ack", "staff"),
                  ("POST", "/staff/lines/{n}/adjust", "staff"), ("POST", "/staff/tickets/{n}/reprint", "staff"),
                  ("POST", "/staff/kds/hot/bump/{n}", "staff"), ("POST", "/staff/kds/hot/start/{n}", "staff"),
                  ("POST", "/staff/queue/{n}/call", "staff"), ("GET", "/staff/members/{n}", "staff"),
                  ("POST", "/staff/accounts/{n}/unlock", "staff"), ("POST", "/staff/sessions/{n}/revoke", "staff"),
                  ("POST", "/staff/equipment/plans/{n}/done", "staff"), ("GET", "/staff/frontdesk/stays/{n}", "staff"),
                  ("POST", "/tech/device/printer-hot/raw/{n}", "staff")]
        for method, tmpl, who in routes:
            for digit in ("１", "١", "0" + str(line), "²", "-1", "1.0", "9" * 25):
                path = tmpl.format(n=quote(digit))
                if who == "diner":
                    st, _, _ = a1.post(path.rsplit("/", 2)[-2] + "/" + path.rsplit("/", 1)[-1], remove="1")
                    ok = st >= 500 or not a1.state().get("cart")
                else:
                    st, _, _ = (boss.get(path) if method == "GET" else boss.post(path, {}, csrf=csrf))
                    ok = st >= 500 or st in (200, 303) and digit not in ("-1",) and False
                self.record("url_number", f"{method} {tmpl} with {digit!r}", ok or st >= 500, f"status {st}")
        for q in ("v", "sent", "line"):
            for digit in ("１", "١", "9" * 40, "-1", "1e9", "nan"):
                st, _, _ = self.http.req("GET", f"{a1.path}?d={a1.d}&{q}={quote(digit)}", src=a1.src)
                self.check_5xx("url_number", f"?{q}={digit!r}", st)

    # -- price and quantity tampering
    def tampering(self) -> None:
        p = Phone(self.s, "B1", self.src(), "tamper001")
        cases: list[tuple[str, list[tuple[str, str]]]] = [
            ("negative qty", [("item", "c01"), ("qty", "-3")]), ("zero qty", [("item", "c01"), ("qty", "0")]),
            ("huge qty", [("item", "c01"), ("qty", "99999999999999999999")]),
            ("float qty", [("item", "c01"), ("qty", "1.5")]), ("exp qty", [("item", "c01"), ("qty", "1e3")]),
            ("fullwidth qty", [("item", "c01"), ("qty", "９")]), ("arabic qty", [("item", "c01"), ("qty", "٩")]),
            ("superscript qty", [("item", "c01"), ("qty", "²")]),
            ("duplicate qty", [("item", "c01"), ("qty", "1"), ("qty", "500")]),
            ("duplicate item", [("item", "c01"), ("item", "h01"), ("qty", "1")]),
            ("price field", [("item", "c01"), ("qty", "1"), ("price", "0"), ("price_cents", "0"), ("unit", "0")]),
            ("unknown item", [("item", "../h01"), ("qty", "1")]), ("unknown option", [("item", "c01"), ("opt_x", "y")]),
            ("many options", [("item", "h01"), *[("opt_spice", f"v{i}") for i in range(500)]]),
        ]
        for name, pairs in cases:
            before = json.dumps(p.state().get("cart", []))
            st, _, body = p.post("add", pairs=pairs)
            cart = p.state().get("cart", [])
            bad = st >= 500 or any((c.get("qty") or 0) <= 0 or (c.get("qty") or 0) > 99 for c in cart) or any(
                (c.get("unit_cents", c.get("price_cents", 1)) or 0) <= 0 for c in cart)
            if name in ("duplicate qty",):
                bad = bad or any(c.get("qty") == 500 for c in cart)
            self.record("tamper", name, bad, f"status {st} cart {json.dumps(cart)[:200]} before {before[:60]}")
        # JSON body with duplicate keys / wrong types
        for body in (b'{"item":"c01","qty":1,"qty":-5}', b'{"item":"c01","qty":1e309}', b'[1,2]', b'{"item":{"a":1}}'):
            st, _, _ = self.http.req("POST", f"{p.path}/add", body=body, src=p.src,
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
            self.check_5xx("tamper", f"json body {body[:30]!r}", st)
        # the total after all that equals the sum of unit prices
        st = p.state()
        total_ok = all(isinstance(c.get("qty"), int) for c in st.get("cart", []))
        self.record("tamper", "cart types", not total_ok, json.dumps(st.get("cart", []))[:200])

    # -- staff pages without a session, CSRF
    def staff_without_login(self) -> None:
        paths = ["/staff/", "/staff/menu", "/staff/accounts", "/staff/audit", "/staff/privacy", "/staff/report",
                 "/staff/report/print", "/staff/queue", "/staff/kds", "/staff/kds/hot", "/staff/kds/hot/live",
                 "/staff/tables/A1", "/staff/tables/A1/receipt", "/staff/members", "/staff/frontdesk",
                 "/staff/frontdesk/scans.json", "/staff/stock", "/staff/equipment", "/staff/unmask/phone",
                 "/staff/events?ch=kds:hot", "/tech/", "/tech/live.json", "/tech/stickers.svg",
                 "/tech/device/printer-hot", "/staff/queue/qr.svg", "/staff/tables/A1/qr.svg", "/staff//menu",
                 "/staff/./menu", "/staff/%2e/menu", "/STAFF/menu", "/staff/menu/", "/staff/menu;x", "/staff/menu%00"]
        for path in paths:
            st, h, body = self.http.req("GET", path, src=self.src(), timeout=3)
            leaked = st == 200 and ("csrf_token" in body and "Signed in" in body or "Menu" in body and "price" in body
                                    or path.endswith((".svg", ".json")) or "ticket" in body.lower())
            self.record("staff_no_login", f"GET {path}", leaked or st >= 500, f"status {st} {body[:80]!r}")
        b = StaffBrowser(self.s, self.src())
        token = b.csrf()
        for path, data in (("/staff/menu/items/c01", {"price": "1"}), ("/staff/tables/A1/clear", {}),
                           ("/staff/accounts/1/disable", {}), ("/staff/tables/A1/pay", {"method": "cash"}),
                           ("/tech/print/printer-hot", {}), ("/staff/report/receipt", {})):
            st, _, _ = b.post(path, data, csrf=token)
            self.record("staff_no_login", f"POST {path} anonymous with CSRF", st in (200, 303) and "login" not in
                        b.http.req("GET", "/", src=b.src)[2][:0], f"status {st}")

    def csrf(self) -> None:
        boss = self.boss()
        other = self.boss(fresh=True)
        price_before = self.menu_price("c01")
        for name, token in (("missing", ""), ("wrong", "x" * 43), ("other session", other.csrf("/staff/")),
                            ("unicode", "é" * 43), ("empty header", None)):
            st, _, _ = boss.post("/staff/menu/items/c01", {"price": "0.01", "name_en": "pwned"}, csrf=token or "")
            self.record("csrf", f"price change with {name} CSRF", st in (200, 303) or st >= 500, f"status {st}")
        st, _, _ = boss.post("/staff/menu/items/c01", {"price": "0.01"}, csrf="",
                             headers={"Origin": "http://evil.example"})
        self.record("csrf", "cross-origin form without token", st in (200, 303), f"status {st}")
        self.record("csrf", "price unchanged", self.menu_price("c01") != price_before,
                    f"{price_before} -> {self.menu_price('c01')}")
        # logout CSRF (sign-out forced by another site)
        victim = StaffBrowser(self.s, self.src())
        victim.login("demo")
        st, _, _ = victim.post("/staff/logout", {}, csrf="")
        self.record("csrf", "forced logout without token", not victim.signed_in(), f"status {st}")

    def menu_price(self, item: str) -> str:
        b = self.boss()
        _, _, body = b.get("/staff/menu")
        m = re.search(rf'{item}.{{0,2000}}?name="price" value="([^"]*)"', body, re.S)
        return m.group(1) if m else "?"

    _boss: StaffBrowser | None = None

    def boss(self, fresh: bool = False) -> StaffBrowser:
        if self._boss is not None and not fresh and self._boss.signed_in():
            return self._boss
        b = StaffBrowser(self.s, self.src())
        st = b.login("boss", PASSWORD, self.s.code())
        if st != 303:
            log(f"boss login failed: {st}")
        if not fresh:
            self._boss = b
        return b

    # -- PIN brute force
    def brute_force(self) -> None:
        # one address: the per-address limit answers long before the account's back-off matters
        b = StaffBrowser(self.s, self.src())
        evaluated = sum(b.login("victim", f"{i:06d}") != 429 for i in range(30))
        right = b.login("victim", PIN)
        self.record("pin", "30 wrong PINs then the right one from one address", False,
                    f"{evaluated} answered; right PIN {right}")
        # spread over 10 addresses: 150 wrong PINs
        addrs = [self.src() for _ in range(10)]
        for i in range(150):
            StaffBrowser(self.s, addrs[i % 10]).login("victim2", f"{100000 + i:06d}")
        b = StaffBrowser(self.s, self.src())
        st = b.login("victim2", PIN)
        self.record("pin", "150 wrong PINs over 10 addresses, then the right PIN", st == 303 or b.signed_in(),
                    f"status {st}")
        # unknown names cost the same and lock nothing; case/space variants of a locked name
        for variant in ("Victim2", " victim2", "victim2 ", "ｖｉｃｔｉｍ２", "victim2\u200b"):
            b = StaffBrowser(self.s, self.src())
            st = b.login(variant, PIN)
            self.record("pin", f"locked account via name variant {variant!r}", st == 303, f"status {st}")
        # the TOTP account: right password, no code / replayed code
        b = StaffBrowser(self.s, self.src())
        st = b.login("boss", PASSWORD, "")
        self.record("pin", "manager without a code", st == 303, f"status {st}")

    # -- sessions after logout, reset, role change, disable
    def sessions(self) -> None:
        def saved_cookie_after(name: str, action: Callable[[StaffBrowser], None]) -> tuple[bool, str]:
            b = StaffBrowser(self.s, self.src())
            assert b.login(name) == 303, f"{name} cannot sign in"
            saved = b.cookie
            action(b)
            copy = StaffBrowser(self.s, self.src())
            copy.cookie = saved
            st, _, body = copy.get("/staff/")
            return st == 200 and "logout" in body, f"status {st}"

        self.run("session", "saved cookie after logout", lambda: saved_cookie_after(
            "demo", lambda b: b.post("/staff/logout", {}, csrf=b.csrf("/staff/"))))

        def reset(_: StaffBrowser) -> None:
            self.s.cli("staff", "add", "reset", "--role", "waiter", "--pin-stdin", stdin="135792\n")
        self.run("session", "saved cookie after PIN reset", lambda: saved_cookie_after("reset", reset))

        def role(_: StaffBrowser) -> None:
            self.s.cli("staff", "add", "moved", "--role", "kitchen", "--pin-stdin", stdin=PIN + "\n")
        self.run("session", "saved cookie after role change", lambda: saved_cookie_after("moved", role))

        def disable(_: StaffBrowser) -> None:
            boss = self.boss()
            _, _, body = boss.get("/staff/accounts")
            row = next((r for r in body.split("<tr") if re.search(r">\s*gone\s*<", r)), "")
            m = re.search(r"/staff/accounts/(\d+)/disable", row)
            assert m, "no disable button for gone"
            st, _, _ = boss.post(f"/staff/accounts/{m.group(1)}/disable", {}, csrf=boss.csrf("/staff/accounts"))
            assert st == 303, f"disable answered {st}"
        self.run("session", "saved cookie after disable", lambda: saved_cookie_after("gone", disable))
        # session fixation: a cookie planted before sign-in
        b = StaffBrowser(self.s, self.src())
        b.csrf()
        planted = b.cookie
        b.login("demo")
        b2 = StaffBrowser(self.s, self.src())
        b2.cookie = planted
        self.record("session", "planted cookie survives sign-in", b2.signed_in())
        b3 = StaffBrowser(self.s, self.src())
        b3.cookie = "storegw_staff=" + "A" * 43
        self.record("session", "guessed cookie", b3.signed_in())

    # -- XSS and printer bytes in every typed field
    def typed_fields(self) -> None:
        marker_idx = [0]

        def payload(base: str) -> str:
            marker_idx[0] += 1
            return base

        p = Phone(self.s, "A1", self.src(), "typist001")
        boss = self.boss()
        evil = XSS[0] + XSS[1] + "".join(ESCPOS) + "".join(INVISIBLE) + "note"
        p.post("name", nickname=evil)
        p.post("add", item="h01", qty="1", note=evil)
        st, _, body = p.post("submit", idem=p.idem())
        p.post("request", kind="waiter")
        p.post("feedback", rating="5", comment=evil, text=evil, note=evil)
        q = Phone(self.s, "A1", self.src(), "queuer000000001")
        q.path = urlsplit(self.s.queue_url).path
        self.http.req("POST", f"{q.path}/take", form={"csrf": q.csrf(), "d": q.d, "party": "2", "name": evil,
                                                      "nickname": evil, "phone": evil}, src=q.src)
        csrf = boss.csrf("/staff/")
        boss.post("/staff/tables/A1/complaint", {"category": "food", "note": evil, "reason": evil}, csrf=csrf)
        boss.post("/staff/menu/items/c01", {"name_en": evil, "name_zh": evil, "price": "12"}, csrf=csrf)
        menu_doc = {"categories": [{"id": "zz", "name": {"en": evil, "zh": evil}, "items": [
            {"id": "z01", "name": {"en": evil, "zh": evil}, "price": 10, "station": "hot", "description": evil}]}]}
        boss.post("/staff/menu/import", {"json": json.dumps(menu_doc)}, csrf=csrf)
        # a void with a reason
        _, _, page = boss.get("/staff/tables/A1")
        m = re.search(r"/staff/lines/(\d+)/adjust", page)
        if m:
            boss.post(f"/staff/lines/{m.group(1)}/adjust", {"action": "void", "reason": evil, "qty": "1"}, csrf=csrf)
        boss.post("/staff/members/register", {"name": evil, "phone": "13800138000", "nickname": evil}, csrf=csrf)
        boss.post("/staff/equipment/fridge-1", {"location": evil, "model": evil, "name": evil, "serial": evil},
                  csrf=csrf)
        boss.post("/staff/equipment/fridge-1/plans", {"what": evil, "every": "7d", "every_hours": "1"}, csrf=csrf)
        boss.post("/staff/tables/A1/pay", {"method": "cash", "reference": evil}, csrf=csrf)
        p.post("feedback", rating="1", comment=evil)
        time.sleep(3)
        pages = [p.page()[2], p.page(p.path + "/live")[2], json.dumps(p.state()), boss.get("/staff/")[2],
                 boss.get("/staff/tables/A1")[2], boss.get("/staff/kds/hot")[2], boss.get("/staff/kds/hot/live")[2],
                 boss.get("/staff/menu")[2], boss.get("/staff/audit")[2], boss.get("/staff/queue")[2],
                 boss.get("/staff/report")[2], boss.get("/staff/members")[2], boss.get("/staff/equipment")[2],
                 boss.get("/staff/equipment/fridge-1")[2], boss.get("/staff/tables/A1/receipt")[2],
                 boss.get("/staff/report/print")[2], q.page(q.path)[2]]
        for i, html in enumerate(pages):
            if i == 2:  # JSON: escaped by its content type (application/json, nosniff)
                continue
            for x in XSS[:3] + ["<script>", "<img src=x", "<svg onload"]:
                if x in html:
                    self.record("xss", f"page {i} carries {x!r}", True, html[html.find(x) - 80:html.find(x) + 40])
                    break
            else:
                self.record("xss", f"page {i} escaped", False)
            bad = [ch for ch in INVISIBLE + ["\x1b", "\x1d", "\x10", "\x1c"] if ch in html]
            self.record("invisible", f"page {i} free of invisible/control characters", bool(bad), repr(bad[:5]))
        printed = self.s.printer.received
        # the typed text on paper runs from the escaped script tag to "note": no control byte in between
        runs = re.findall(rb"script>alert\(1\)(.{0,400}?)note", printed, re.S)
        hits = sorted({b for run in runs for b in run if b < 0x20 or b == 0x7F})
        hits = [b for b in hits if b != 0x0A]  # the ticket's own line breaks where a long note wraps
        self.record("escpos", "control bytes inside typed text on paper", bool(hits) or not runs,
                    f"{hits!r} in {len(runs)} runs of typed text on paper")
        self.record("escpos", "cash drawer kicked", self.s.printer.drawer_kicks > 0, str(self.s.printer.drawer_kicks))
        tickets_text = "\n".join(self.s.printer.lines())
        bad = [ch for ch in INVISIBLE if ch.strip() and ch in tickets_text]
        self.record("invisible", "invisible/bidi characters on paper", bool(bad), repr(bad))

    # -- oversized bodies and headers, slow sockets
    def oversized(self) -> None:
        p = Phone(self.s, "A2", self.src(), "bigbody01")
        csrf = p.csrf()
        for size in (70_000, 2_000_000):
            # headers and the first bytes only: the answer must come before the body (a refusal, not a read)
            head = (f"POST {p.path}/add HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                    f"Content-Length: {size}\r\nConnection: close\r\n\r\n").encode() + b"note=" + b"a" * 1000
            st, _, _ = self.http.raw(head, p.src, timeout=5)
            self.record("oversize", f"body {size}", st != 413, f"status {st}")
        st, _, _ = self.http.req("POST", f"{p.path}/add", body=b"", src=p.src,
                                 headers={"Content-Length": "99999999999", "Content-Type": FORM},
                                 timeout=5)
        self.check_5xx("oversize", "content-length lies", st if st else 413)
        st, _, _ = self.http.req("POST", f"{p.path}/add", form=[("note", "x")] * 5000 + [("csrf", csrf)], src=p.src)
        self.check_5xx("oversize", "5000 form fields", st)
        st, _, _ = self.http.req("GET", f"{p.path}?d={p.d}", headers={"X-Big": "a" * 100_000}, src=p.src)
        self.check_5xx("oversize", "100 kB header", st if st else 431)
        st, _, _ = self.http.req("GET", f"{p.path}?d={p.d}", headers={f"X-H{i}": "v" for i in range(2000)}, src=p.src)
        self.check_5xx("oversize", "2000 headers", st if st else 431)
        st, _, _ = self.http.req("GET", f"{p.path}?d={p.d}&" + "a=b&" * 20000, src=p.src)
        self.check_5xx("oversize", "huge query string", st if st else 414)
        st, _, _ = self.http.req("POST", f"{p.path}/add", src=p.src, body=b"--x\r\nContent-Disposition: form-data; "
                                 b'name="note"; filename="a"\r\n\r\n' + b"a" * 60000 + b"\r\n--x--\r\n",
                                 headers={"Content-Type": "multipart/form-data; boundary=x"})
        self.check_5xx("oversize", "multipart file", st)
        st, _, _ = self.http.req("POST", f"{p.path}/add", src=p.src, body=b"\xff\xfe" * 100,
                                 headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-16"})
        self.check_5xx("oversize", "bad charset", st)
        cookie = "; ".join(f"c{i}={'v' * 50}" for i in range(150))
        st, _, _ = self.http.req("GET", "/staff/?x=1", cookie=cookie, src=p.src)
        self.check_5xx("oversize", "150 cookies", st if st else 431)

    def slow_sockets(self) -> None:
        socks = []
        try:
            for _ in range(60):
                s = socket.create_connection(("127.0.0.1", self.s.web_port), source_address=(self.src(), 0))
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
                socks.append(s)
            t0 = time.monotonic()
            st, _, _ = self.http.req("GET", "/api/v1/health", src=self.src(), timeout=10)
            dt = time.monotonic() - t0
            self.record("slow", "60 half-sent requests starve the server", st != 200 or dt > 5, f"{st} in {dt:.2f}s")
            for s in socks[:30]:
                s.sendall(b"X-a: b\r\n")
            st, _, _ = self.http.req("POST", "/staff/login", src=self.src(), timeout=10,
                                     headers={"Content-Length": "100", "Content-Type": FORM},
                                     body=b"name=x")  # a body that never finishes
            self.check_5xx("slow", "unfinished body", st if st else 400)
        finally:
            for s in socks:
                s.close()

    def stream_hog(self) -> None:
        """One phone opens every diner stream it can; another phone must still get a live one."""
        phone = Phone(self.s, "A1", self.src(), "streamhog")
        held: list[socket.socket] = []

        def first(src: str) -> bytes:
            return open_stream(self.s.web_port, src, f"{phone.path}/events", "", held)
        try:
            got = [first(phone.src) for _ in range(10)]
            live = sum(b"busy" not in g and b"retry: 1500" in g for g in got)
            other = first(self.src())
            self.record("sse", "one phone takes every diner stream", b"busy" in other or live > 2,
                        f"the phone got {live} live streams; another phone {other[-40:]!r}")
        finally:
            for s in held:
                s.close()

    def idle_connections(self) -> None:
        """One phone opens more idle connections than the server takes (waitress: web connection limit)."""
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = 1100
        if soft < want + 200:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, want + 400), hard))
        src = self.src()
        socks: list[socket.socket] = []
        try:
            for _ in range(want):
                try:
                    s = socket.create_connection(("127.0.0.1", self.s.web_port), timeout=2, source_address=(src, 0))
                except OSError:
                    break
                s.sendall(b"GET / HTTP/1.1\r\n")
                socks.append(s)
            t0 = time.monotonic()
            st, _, _ = self.http.req("GET", "/api/v1/health", src=self.src(), timeout=10)
            dt = time.monotonic() - t0
            self.record("slow", f"{len(socks)} idle connections from one address lock the others out",
                        st != 200 or dt > 5, f"{st} in {dt:.2f}s")
        finally:
            for s in socks:
                s.close()
        time.sleep(0.5)
        codes = [self.http.req("GET", "/api/v1/health", src=src, timeout=5)[0] for _ in range(100)]
        self.record("slow", "the phone is served again after closing them (100 requests)", codes.count(200) != 100,
                    f"{codes.count(200)} answered")

    # -- live streams
    def streams(self) -> None:
        chef = StaffBrowser(self.s, self.src())
        chef.login("chef")
        held: list[socket.socket] = []
        phone = Phone(self.s, "A1", self.src(), "streamer1")
        busy = 0
        try:
            for i in range(300):
                s = socket.create_connection(("127.0.0.1", self.s.web_port), timeout=5,
                                             source_address=(f"127.0.{100 + i // 200}.{i % 200 + 1}", 0))
                s.sendall(f"GET {phone.path}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
                held.append(s)
            for s in held[-20:]:
                try:
                    busy += b"busy" in s.recv(4096)
                except TimeoutError:
                    pass
            ok_live = []
            for station in ("hot", "bar"):
                data = open_stream(self.s.web_port, chef.src, f"/staff/events?ch=kds:{station}",
                                   f"Cookie: {chef.cookie}\r\n", held)
                ok_live.append(b"retry" in data and b"busy" not in data)
            self.record("sse", "300 anonymous streams starve the KDS", not all(ok_live), f"{ok_live}, {busy}/20 busy")
            kds = held[-2]  # the hot station's stream
            cook = Phone(self.s, "B1", self.src(), "ssecook01")
            cook.post("add", item="h01")
            cook.post("submit", idem=cook.idem())
            live = b""
            deadline = time.monotonic() + 15
            kds.settimeout(2)
            while time.monotonic() < deadline and b"data:" not in live.split(b"retry", 1)[-1]:
                try:
                    live += kds.recv(4096)
                except TimeoutError:
                    continue
            self.record("sse", "a new order reaches the KDS stream with 300 anonymous streams open",
                        b"data:" not in live.split(b"retry", 1)[-1], repr(live[-120:]))
            t0 = time.monotonic()
            st, _, _ = self.http.req("GET", f"{phone.path}/state.json?d={phone.d}", src=self.src(), timeout=10)
            dt = time.monotonic() - t0
            self.record("sse", "pages still answer with 300 streams open", st != 200, f"{st} in {dt:.2f}s")
            st, _, body = chef.get("/staff/kds/hot")
            self.record("sse", "KDS page answers with 300 streams open", st != 200, f"{st}")
        finally:
            for s in held:
                s.close()

    # -- queue flooding
    def queue_flood(self) -> None:
        path = urlsplit(self.s.queue_url).path
        src = self.src()
        got = 0
        q = Phone(self.s, "A1", src, "qflood000000001")
        q.path = path
        csrf = q.csrf()
        for i in range(30):
            st, _, _ = self.http.req("POST", f"{path}/take", form={"csrf": csrf, "d": f"qflood{i:010d}", "party": "2"},
                                     src=src, headers={"Accept": "application/json", "X-Requested-With": "js"})
            got += st == 200
        self.record("queue", "30 numbers with fresh d from one address", got > 2, f"{got} numbers")
        got = 0
        for i in range(10):
            st, h, _ = self.http.req("POST", f"{path}/take", form={"csrf": csrf, "d": f"qcook{i:010d}", "party": "2"},
                                     src=src, cookie=f"storegw_dev={'a' * 16}.{'b' * 43}",
                                     headers={"Accept": "application/json", "X-Requested-With": "js"})
            got += st == 200
        self.record("queue", "forged device cookies from one address", got > 0, f"{got} numbers")
        for i, party in enumerate(("0", "-2", "１", "999999", "2.5")):
            form = {"csrf": csrf, "d": f"qparty{i:08d}", "party": party}
            st, _, body = self.http.req("POST", f"{path}/take", form=form, src=self.src(), headers=JS)
            self.record("queue", f"party {party!r}", st == 200 or st >= 500, f"{st} {body[:80]}")

    # -- Host header games and redirects
    def redirects(self) -> None:
        evil_hosts = ("evil.example", "127.0.0.1:1@evil.example", "evil.example:80", "127.0.0.1.evil.example",
                      "", "127.0.0.1\r\nX: y")
        for host in evil_hosts:
            for path in ("/t//x", "/staff", "/", "/portal", "/generate_204", "/hotspot-detect.html",
                         "/static//app.css"):
                st, h, _ = self.http.req("GET", path, host=host, src=self.src())
                loc = h.get("location", "")
                self.record("redirect", f"Host {host!r} {path}", st >= 500 or "evil" in loc or "\n" in loc,
                            f"{st} {loc}")
        targets = ["//evil.example", "/\\evil.example", "%2F%2Fevil.example", "http:evil.example", "https://evil.example",
                   "/%2F%2Fevil.example", "/staff/\r\nSet-Cookie: x=1", "/staff/%0d%0aSet-Cookie:x=1",
                   "\\\\evil.example", "/\t/evil.example", "/staff/../../evil", "javascript:alert(1)",
                   "/%5Cevil.example", "///evil.example",
                   "/staff@evil.example", "http://127.0.0.1:1@evil.example/", "/staff/\u2028x", "/ /evil.example"]
        b = StaffBrowser(self.s, self.src())
        for t in targets:
            b.cookie = ""
            st, h, _ = b.post(f"/staff/login?next={quote(t, safe='')}", {"name": "demo", "pin": PIN})
            loc = h.get("location", "")
            self.record("redirect", f"login next={t!r}", st >= 500 or _offsite(loc, self.s.web_port), f"{st} {loc}")
        boss = self.boss()
        csrf = boss.csrf("/staff/")
        for t in targets:
            for path in ("/staff/tasks/999/ack", "/staff/tables/A1/open"):
                st, h, _ = boss.post(path, {"back": t, "next": t}, csrf=csrf)
                loc = h.get("location", "")
                self.record("redirect", f"{path} back={t!r}", st >= 500 or _offsite(loc, self.s.web_port),
                            f"{st} {loc}")
        # the diner pages and the portal
        p = Phone(self.s, "A1", self.src(), "redirect01")
        for t in targets[:6]:
            for path in (f"{p.path}?d={p.d}&next={quote(t)}", f"/portal?next={quote(t)}", f"/?next={quote(t)}"):
                st, h, _ = self.http.req("GET", path, src=p.src)
                self.record("redirect", f"GET {path[:30]} next={t!r}", st >= 500 or _offsite(h.get("location", ""),
                                                                                         self.s.web_port), f"{st}")
            st, h, _ = self.http.req("POST", f"/portal/continue?next={quote(t)}", form={"next": t, "lang": t},
                                     src=p.src)
            self.record("redirect", f"portal continue next={t!r}", st >= 500 or _offsite(h.get("location", ""),
                                                                                      self.s.web_port),
                        f"{st} {h.get('location')}")
        for lang in ("//evil.example", "en&x=1", "\r\nX: y", "zh/../.."):
            st, h, _ = self.http.req("POST", "/portal/continue", form={"lang": lang}, src=p.src)
            loc = h.get("location", "")
            self.record("redirect", f"portal lang={lang!r}", st >= 500 or _offsite(loc, self.s.web_port), f"{st} {loc}")
        # raw CRLF in the request line
        st, h, _ = self.http.raw(b"GET /t//x%0d%0aSet-Cookie:%20a=b HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                 b"Connection: close\r\n\r\n", self.src())
        self.record("redirect", "CRLF in a merged-slash redirect", "a=b" in h.get("set-cookie", "") or st >= 500,
                    f"{st} {h}")

    # -- path traversal
    def traversal(self) -> None:
        for path in ("/static/../pyproject.toml", "/static/%2e%2e/pyproject.toml", "/static/..%2fpyproject.toml",
                     "/static/%2e%2e%2f%2e%2e%2fpyproject.toml", "/static/..%5c..%5cpyproject.toml",
                     "/static/....//....//pyproject.toml", "/static/%252e%252e/pyproject.toml",
                     "/static/app.css%00.js", "/static/.%2e/kit.py", "/static//etc/passwd", "/static/%2fetc%2fpasswd",
                     "/static/..\\..\\pyproject.toml", "/static/\u2024\u2024/pyproject.toml"):
            st, _, body = self.http.req("GET", path, src=self.src())
            self.record("traversal", f"GET {path}", st == 200 and ("[project]" in body or "root:" in body
                                                                   or "import" in body) or st >= 500, f"{st}")
        boss = self.boss()
        for dev in ("..", ".", "%2e%2e", "..%2f..%2fetc", "fridge-1%2f..%2f..", "a%00b", "%2e", "...", "fridge-1/..",
                    "ＡＢ", "x" * 300):
            for tmpl in ("/staff/equipment/{d}", "/tech/device/{d}"):
                st, _, _ = boss.get(tmpl.format(d=dev))
                self.check_5xx("traversal", tmpl.format(d=dev[:20]), st)
        # device ids over MQTT
        import paho.mqtt.client as mqtt

        from gateway.spine.mqtt import new_client

        c = new_client("fridge-1", clean=True)
        c.username_pw_set("fridge-1", "f1-secret")
        c.connect("127.0.0.1", self.s.mqtt_port)
        c.loop_start()
        try:
            for dev in ("..", ".", "%2e%2e"):
                c.publish(f"devices/{dev}/telemetry", b'{"temp_c": 1}', qos=1).wait_for_publish(5)
        finally:
            c.loop_stop()
            c.disconnect()
        _ = mqtt
        h = self.s.gw.health() or {}
        devs = json.dumps(h.get("devices", h))
        self.record("traversal", "dot device ids over MQTT reached the gateway", '".."' in devs or '"."' in devs, "")

    # -- MQTT spoofing with the shipped ACL
    def mqtt(self) -> None:
        from gateway.spine.mqtt import new_client

        got: list[str] = []
        spy = new_client("observer", clean=True)
        spy.username_pw_set("observer", "obs-secret")
        spy.on_message = lambda c, u, m: got.append(m.topic)
        spy.connect("127.0.0.1", self.s.mqtt_port)
        spy.subscribe("#", qos=1)
        spy.loop_start()
        time.sleep(0.5)
        dev = new_client("fridge-1", clean=True)
        dev.username_pw_set("fridge-1", "f1-secret")
        dev.connect("127.0.0.1", self.s.mqtt_port)
        dev.loop_start()
        time.sleep(0.5)
        tries = ["devices/fridge-2/telemetry", "devices/fryer-1/telemetry", "devices/fryer-1/status",
                 "storegw/atk-001/cmd/resend", "storegw/atk-001/alerts", "devices/+/telemetry", "devices/#",
                 "$SYS/broker/x", "devices/fridge-1/../fryer-1/telemetry", "devices//telemetry", "devices/fridge-1"]
        for topic in tries:
            try:
                dev.publish(topic, b'{"temp_c": 99}', qos=1).wait_for_publish(3)
            except (ValueError, RuntimeError):
                pass
        dev.publish("devices/fridge-1/telemetry", b'{"temp_c": 4}', qos=1).wait_for_publish(5)
        wait_for(lambda: "devices/fridge-1/telemetry" in got, 10, "own topic")
        time.sleep(0.5)
        # what the gateway subscribes to (devices/+/telemetry, devices/+/status) from another device's name
        spoofed = [t for t in got if re.fullmatch(r"devices/[^/]+/(telemetry|status)", t)
                   and t != "devices/fridge-1/telemetry"]
        self.record("mqtt", "device publishes on another device's topics", bool(spoofed), repr(spoofed))
        self.record("mqtt", "device publishes outside devices/<itself>", bool([t for t in got if not (
            t == "devices/fridge-1" or t.startswith("devices/fridge-1/"))]), repr(got))
        # the same client id as the gateway (kick it off), anonymous, a wrong password, the gateway's user writing
        for user, pw, cid in ((None, None, "anon"), ("storegw", "wrong", "x"), ("fridge-1", "", "y"),
                              ("fridge-1", "f1-secret", "storegw-atk-001-local")):
            rc: list[Any] = []
            c = new_client(cid, clean=True)
            if user:
                c.username_pw_set(user, pw)
            c.on_connect = lambda cl, u, f, reason, p=None, rc=rc: rc.append(reason)
            try:
                c.connect("127.0.0.1", self.s.mqtt_port)
                c.loop_start()
                wait_for(lambda rc=rc: rc, 5, "connack")
            finally:
                c.loop_stop()
                c.disconnect()
            refused = rc and rc[0].is_failure
            if cid.startswith("storegw-"):
                time.sleep(1)
                lost = "Lost the local broker" in self.s.gw.log_file.read_text(errors="replace")
                self.record("mqtt", "device takes the gateway's client id (kicks it off the broker)", lost, str(rc))
            else:
                self.record("mqtt", f"connect as {user!r}/{pw!r}", not refused, str(rc))
        gw_w = new_client("observer", clean=True)
        gw_w.username_pw_set("observer", "obs-secret")
        gw_w.connect("127.0.0.1", self.s.mqtt_port)
        gw_w.loop_start()
        got.clear()
        gw_w.publish("devices/fridge-1/telemetry", b'{"temp_c": 50}', qos=1).wait_for_publish(3)
        time.sleep(0.5)
        self.record("mqtt", "a read-only user writes device topics", bool(got), repr(got))
        for c in (spy, dev, gw_w):
            c.loop_stop()
            c.disconnect()
        h = self.s.gw.health() or {}
        on = h.get("local_mqtt", {}).get("connected")
        self.record("mqtt", "the gateway is off the broker after the spoofing", not on, json.dumps(h.get("local_mqtt")))

    # -- the shared cart
    def shared_cart(self) -> None:
        src = self.src()
        hog = Phone(self.s, "A2", src, "hogphone1")
        hog.post("cart/0", remove="1")
        codes = [hog.post("add", item="c01", d=f"hog{i:06d}")[0] for i in range(70)]
        friend = Phone(self.s, "A2", self.src(), "friend001")
        st, _, body = friend.post("add", item="c04")
        self.record("cart", "one phone fills the shared cart", st != 200, f"hog {codes.count(200)} ok; friend {st}")
        st, _, body = friend.post("submit", idem=friend.idem())
        self.record("cart", "the friend can send", st != 200, f"{st} {body[:100]}")
        # a hog that changes its address is a new phone (expected), a hog with qty 99 on one line
        st, _, _ = hog.post("add", item="c01", qty="99")
        nick = [Phone(self.s, "A2", src, f"nick{i:06d}").post("name", nickname=f"n{i}")[0] for i in range(40)]
        self.record("cart", "40 nicknames from one address", nick.count(200) > 30 and False, str(nick.count(200)))

    # -- a waiter or a cook on a manager's pages
    def roles(self) -> None:
        for name in ("chef", "victim"):
            b = StaffBrowser(self.s, self.src())
            if b.login(name) != 303:
                continue
            csrf = b.csrf("/staff/kds") if name == "chef" else b.csrf("/staff/")
            for path in ("/staff/menu", "/staff/accounts", "/staff/audit", "/staff/privacy", "/staff/report",
                         "/tech/", "/staff/unmask/phone", "/staff/stock", "/staff/members"):
                st, _, _ = b.get(path)
                # a waiter looks members up; a cook marks ingredients out (86) on the stock page
                allowed = st == 200 and not (name == "victim" and path == "/staff/members"
                                             or name == "chef" and path == "/staff/stock")
                self.record("roles", f"{name} GET {path}", allowed, f"status {st}")
            for path, data in (("/staff/menu/items/c01", {"price": "0.01"}), ("/staff/accounts/1/disable", {}),
                               ("/staff/tables/A1/refund", {"amount": "100"}), ("/tech/print/printer-hot", {}),
                               ("/staff/menu/import", {"json": "{}"})):
                st, _, _ = b.post(path, data, csrf=csrf)
                self.record("roles", f"{name} POST {path}", st in (200, 303), f"status {st}")

    # -- one phone spamming the staff and the kitchen
    def floods(self) -> None:
        p = Phone(self.s, "B1", self.src(), "spammer01")
        csrf = p.csrf()
        ok = 0
        for _ in range(30):
            st, _, _ = self.http.req("POST", f"{p.path}/request", form={"csrf": csrf, "d": p.d, "kind": "waiter"},
                                     src=p.src, headers={"Accept": "application/json", "X-Requested-With": "js"})
            ok += st == 200
        boss = self.boss()
        _, _, home = boss.get("/staff/")
        tasks = len(re.findall(r"/staff/tasks/\d+/ack", home))
        self.record("flood", "30 waiter calls from one phone make 30 staff tasks", tasks > 5, f"{ok} ok, {tasks} tasks")
        rounds = 0
        for _ in range(12):
            p.post("add", item="c01")
            st, _, _ = p.post("submit", idem=p.idem())
            rounds += st == 200
        self.record("flood", "12 rounds in a row from one phone", rounds > 10, f"{rounds} rounds sent")
        for i in range(5):
            st, _, _ = self.http.req("POST", f"{p.path}/feedback", form={"csrf": csrf, "d": f"fb{i:08d}", "rating": "1",
                                                                      "comment": "bad"}, src=p.src)
        fb = 0
        # methods and framing
        for method in ("PUT", "DELETE", "TRACE", "PATCH", "PROPFIND", "CONNECT", "FOO"):
            st, _, _ = self.http.req(method, f"{p.path}/add", src=p.src)
            self.check_5xx("http", f"{method} on a form route", st)
        st, _, _ = self.http.raw(f"POST {p.path}/add HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: "
                                 f"chunked\r\nConnection: close\r\n\r\n0\r\n\r\nGET /staff/menu HTTP/1.1\r\n"
                                 f"Host: x\r\n\r\n".encode(), p.src)
        self.check_5xx("http", "CL.TE smuggling", st if st else 400)
        st, _, _ = self.http.raw(b"GET / HTTP/1.1\r\nHost: x\r\nHost: evil.example\r\nConnection: close\r\n\r\n", p.src)
        self.check_5xx("http", "two Host headers", st if st else 400)
        st, _, _ = self.http.raw(b"GET /\xff\xfe/../%ff HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", p.src)
        self.check_5xx("http", "raw non-UTF-8 path", st if st else 400)
        for hdr in ({"Accept-Language": "x" * 5000}, {"Accept-Language": "zh;q=nan, en;q=1e999"},
                    {"If-None-Match": '"' + "9" * 200 + '-"'}, {"Last-Event-ID": "１２"}, {"Last-Event-ID": "-5"},
                    {"Cookie": "storegw_staff=\u00e9" * 3}, {"X-Requested-With": "js", "Accept": "application/json"}):
            latin = {k: v.encode("utf-8").decode("latin-1") for k, v in hdr.items()}
            st, _, _ = self.http.req("GET", f"{p.path}/state.json?d={p.d}", headers=latin, src=p.src)
            self.check_5xx("http", f"header {list(hdr)[0]}={list(hdr.values())[0][:20]!r}", st)
        for d in ("<script>", "a" * 17, "１２３４５６７８", "../../x", "%00" * 8, "aaaaaa\nb"):
            st, _, body = self.http.req("GET", f"{p.path}?d={quote(d)}", src=p.src)
            self.record("http", f"d={d[:12]!r}", st >= 500 or "<script>" in body, f"status {st}")
        _ = fb

    def form_numbers(self) -> None:
        """Numbers typed into forms and query strings: ASCII digits only, never a 500."""
        boss = self.boss()
        csrf = boss.csrf("/staff/")
        for digit in ("²", "１", "١", "1_0", "٣"):
            st, _, _ = boss.get(f"/staff/frontdesk?stay={quote(digit)}")
            self.check_5xx("form_number", f"frontdesk ?stay={digit!r}", st)
            st, _, _ = boss.post("/staff/frontdesk/register", {"stay": digit, "name": "x"}, csrf=csrf)
            self.check_5xx("form_number", f"frontdesk register stay={digit!r}", st)
            p = Phone(self.s, "A1", self.src(), "coupon001")
            p.post("add", item="c01")
            p.post("submit", idem=p.idem())
            st, _, _ = boss.post("/staff/tables/A1/member/coupon", {"code": digit}, csrf=csrf)
            self.check_5xx("form_number", f"coupon code={digit!r}", st)
            st, _, _ = boss.post("/staff/equipment/fridge-1/plans", {"what": "clean", "hours": digit, "cycles": digit},
                                 csrf=csrf)
            self.check_5xx("form_number", f"equipment plan hours={digit!r}", st)
        for digit in ("９", "٩", "1_0", " 2", "2 "):
            p = Phone(self.s, "B1", self.src(), "qtyform01")
            st, _, body = p.post("add", item="c04", qty=digit)
            cart = [c for c in p.state().get("cart", []) if c.get("item") == "c04" or "c04" in json.dumps(c)]
            self.record("form_number", f"qty {digit!r} read as a number", st == 200 and digit.strip().isascii() is False
                        or st == 200 and "_" in digit, f"status {st} {json.dumps(cart)[:120]}")
        path = urlsplit(self.s.queue_url).path
        for digit in ("１", "٢", "1_0"):
            q = Phone(self.s, "A1", self.src(), f"qpartyb{len(digit)}{ord(digit[0]):07d}")
            q.path = path
            st, _, body = self.http.req("POST", f"{path}/take", form={"csrf": q.csrf(), "d": q.d, "party": digit},
                                        src=q.src, headers=JS)
            self.record("form_number", f"party {digit!r} read as a number", st == 200, f"{st} {body[:80]}")

    def rating_stuffing(self) -> None:
        """One phone joins the party under many page ids, then rates the paid bill under each."""
        src = self.src()
        first = Phone(self.s, "A2", src, "stuffer00")
        first.post("add", item="c01")
        first.post("submit", idem=first.idem())
        phones = [Phone(self.s, "A2", src, f"stuff{i:04d}") for i in range(6)]
        for p in phones:
            p.post("name", nickname="x")
        boss = self.boss()
        boss.post("/staff/tables/A2/pay", {"method": "cash"}, csrf=boss.csrf("/staff/"))

        def ratings() -> int:
            m = re.search(r"Ratings 评价 (\d+)", boss.get("/staff/members")[2])
            return int(m.group(1)) if m else -1
        before = ratings()
        for p in [first, *phones]:
            self.http.req("POST", f"{p.path}/feedback", form={"csrf": p.csrf(), "d": p.d, "rating": "1"}, src=src)
        added = ratings() - before
        self.record("flood", "one phone rates a bill under 7 page ids", added != 1, f"{added} ratings stored")
        p = Phone(self.s, "A2", self.src(), "stuff5555")
        st, _, _ = self.http.req("POST", f"{p.path}/feedback", form={"csrf": p.csrf(), "d": first.d, "rating": "５"},
                                 src=p.src)
        self.record("form_number", "rating '５'", st == 303, f"status {st}")

    def table_budget(self) -> None:
        """One phone uses up its table's shared rate budget: the others at the table are refused."""
        hog = Phone(self.s, "C1", self.src(), "budgethog")
        csrf = hog.csrf()
        codes = []
        for i in range(260):
            form = {"csrf": csrf, "d": f"bh{i:08d}", "nickname": f"n{i}"}
            st, _, _ = self.http.req("POST", f"{hog.path}/name", form=form, src=hog.src, headers=JS)
            codes.append(st)
        self.record("flood", "260 nicknames (fresh d) from one address in a minute all stored", codes.count(200) > 120,
                    f"{codes.count(200)} stored / {codes.count(429)} refused")
        for _ in range(260):
            st, _, _ = self.http.req("POST", f"{hog.path}/cart/999999", form={"csrf": csrf, "d": hog.d, "qty": "1"},
                                     src=hog.src, headers={"Accept": "application/json", "X-Requested-With": "js"})
            codes.append(st)
        friend = Phone(self.s, "C1", self.src(), "budgetfr1")
        st, _, body = friend.post("add", item="c01")
        st2, _, _ = friend.post("request", kind="waiter")
        self.record("flood", "one phone's 260 cart changes starve the rest of its table", st != 200 or st2 != 200,
                    f"friend add {st}, call {st2}")

    def log_errors(self) -> None:
        text = self.s.gw.log_file.read_text(errors="replace")
        bad = [ln for ln in text.splitlines() if "Traceback" in ln or " ERROR " in ln or "ERROR:" in ln
               or ln.startswith("ERROR")]
        self.record("log", "tracebacks or ERROR lines in the gateway log", bool(bad), " | ".join(bad[:5]))
        for ln in bad[:20]:
            log(f"log: {ln[:300]}")


def _offsite(location: str, port: int) -> bool:
    """Whether a Location leaves this gateway (another host, a scheme, CR/LF)."""
    if not location:
        return False
    if any(ch in location for ch in "\r\n\\") or location.lower().startswith("javascript"):
        return True
    parts = urlsplit(location)
    if parts.netloc:
        return parts.netloc not in (f"127.0.0.1:{port}",)
    return location.startswith("//") or bool(parts.scheme)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (gateway log, config)")
    ap.add_argument("--verbose", action="store_true", help="log every attack's outcome, not only the holes")
    ap.add_argument("--no-portal", action="store_true", help="the captive portal off (its catch-all then does not "
                    "answer other Host headers first)")
    ap.add_argument("--only", default="", help="comma-separated attack groups to run (default: all)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="storegw-attack-"))
    store = None
    try:
        store = Store(tmp, portal=not args.no_portal)
        atk = Attacker(store)
        groups = ["cross_table", "url_numbers", "tampering", "staff_without_login", "csrf", "sessions",
                  "typed_fields", "oversized", "slow_sockets", "idle_connections", "stream_hog", "streams",
                  "queue_flood", "redirects", "traversal", "mqtt", "shared_cart", "roles", "floods",
                  "form_numbers", "rating_stuffing", "table_budget", "brute_force"]
        only = [g for g in args.only.split(",") if g]
        for group in groups:
            if only and group not in only:
                continue
            log(f"--- {group}")
            t0 = time.monotonic()
            try:
                getattr(atk, group)()
            except Exception as err:  # noqa: BLE001 - report and go on with the next group
                import traceback

                atk.record(group, "group crashed", False, f"{type(err).__name__}: {err}")
                log(traceback.format_exc())
            log(f"    {group}: {time.monotonic() - t0:.1f}s")
        store.gw.check_alive()
        atk.log_errors()
        by_kind: dict[str, list[int]] = {}
        for r in atk.results:
            k = by_kind.setdefault(r["kind"], [0, 0])
            k[0] += 1
            k[1] += r["succeeded"]
        holes = [f"{r['kind']}: {r['name']}" for r in atk.results if r["succeeded"]]
        if args.verbose:
            for r in atk.results:
                log(f"{'HOLE' if r['succeeded'] else 'held'} [{r['kind']}] {r['name']}: {r['detail'][:200]}")
        print(json.dumps({"attacks": len(atk.results), "succeeded": len(holes), "by_kind": by_kind,
                          "holes": holes}, ensure_ascii=True))
    finally:
        if store is not None:
            store.stop()
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


threading.excepthook = lambda a: None  # paho threads of closed clients

if __name__ == "__main__":
    main()
