"""Issue 10, a planted-data check with real parts: a real `storegw run`, real CLI commands, two real
Mosquittos (store and HQ), HTTP diners; a checksum-valid ID number, a mobile, a Luhn card number and an
MRZ line planted through diner fields, staff fields, equipment topics and log lines. Nothing of them in
the gateway's stderr log or in any byte HQ receives (UTF-8, UTF-16, hex, base64, JSON \\u escapes);
``privacy.redacted`` counts them in health. And data files are 0600 whoever creates them.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from realparts import ROOT, config_text, equipment, free_port, wait_for

from gateway.spine.mqtt import new_client

ID = "11010519491231002X"  # gb-std-beijing-chaoyang (tests/devices/vectors/gb11643.json)
ID2 = "440524188001010014"  # gb-std-guangdong-chaoyang
MOBILE = "13912345678"
MOBILE2 = "15800001111"
CARD = "4242424242424242"  # luhn-4242424242424242 (tests/devices/vectors/magstripe.json)
MRZ1 = "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<"  # td3-icao-specimen (mrz.json)
MRZ2 = "L898902C36UTO7408122F1204159ZE184226B<<<<<10"
PLANTED = [ID, ID2, MOBILE, MOBILE2, CARD, MRZ1, MRZ2, "ERIKSSON", "L898902C3", "ZE184226B",
           "139 1234 5678", "1234-5678"]


def encodings(secret: str) -> list[bytes]:
    """The forms a value can take in a file or a message."""
    raw = secret.encode()
    forms = [raw, secret.encode("utf-16-le"), secret.encode("utf-16-be"), raw.hex().encode(),
             raw.hex().upper().encode(),
             "".join(f"\\u{ord(c):04x}" for c in secret).encode(), "".join(f"\\u{ord(c):04X}" for c in secret).encode()]
    for data in (raw, secret.encode("utf-16-le")):
        for pad in range(3):  # base64 at each alignment: the middle, which does not depend on the neighbours
            enc = base64.b64encode(b"\0" * pad + data)
            start = -(-pad * 4 // 3) + (1 if pad else 0)
            forms.append(enc[start:len(enc) - 4])
    return [f for f in forms if len(f) >= 8]


def assert_no_plaintext(blob: bytes, where: str) -> None:
    for secret in PLANTED:
        for form in encodings(secret):
            assert form not in blob, f"{where}: {secret!r} found as {form[:40]!r}"


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def _cli(*args: str, input: str | None = None, umask: int = 0o022) -> str:  # noqa: A002
    """Run a real `storegw` command in a child process with a permissive umask; return its stdout."""
    def pre() -> None:
        os.umask(umask)

    proc = subprocess.run([sys.executable, "-m", "gateway", *args], input=input, capture_output=True, text=True,
                          cwd=ROOT, timeout=120, preexec_fn=pre, env=dict(os.environ, PYTHONPATH=str(ROOT)))  # noqa: PLW1509
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


class Hq:
    """Captures every byte HQ's broker delivers under the store's prefix."""

    def __init__(self, port: int) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.client = new_client("hq-capture", clean=True)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("#", qos=1)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def docs(self, suffix: str) -> list:
        with self.lock:
            return [json.loads(p) for t, p in self.messages if t.endswith(suffix)]

    def blob(self) -> bytes:
        with self.lock:
            return b"\n".join(t.encode() + b" " + p for t, p in self.messages)

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Http:
    """A no-JS phone (urllib, no redirects followed)."""

    def __init__(self, url: str, source: str = "") -> None:
        parts = urllib.parse.urlsplit(url)
        self.origin, self.path = f"{parts.scheme}://{parts.netloc}", parts.path
        self.d = ""
        self.source = source  # the phone's own address (on the store's Wi-Fi every phone has one)

    def open(self, method: str, path: str, data: dict | None = None) -> tuple[int, str, dict]:
        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *a, **k):
                return None

        source = self.source

        class FromSource(urllib.request.HTTPHandler):
            def http_open(self, req):
                return self.do_open(http.client.HTTPConnection, req,
                                    **({"source_address": (source, 0)} if source else {}))

        body = urllib.parse.urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(self.origin + path, data=body, method=method)
        try:
            with urllib.request.build_opener(NoRedirect, FromSource).open(req, timeout=10) as r:
                return r.status, r.read().decode(), dict(r.headers)
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode(), dict(err.headers)

    def arrive(self) -> None:
        status, _, headers = self.open("GET", f"{self.path}?lang=en")
        assert status == 303
        self.d = re.search(r"d=([0-9a-f]+)", headers["Location"]).group(1)

    def post(self, action: str, **fields: str) -> tuple[int, str]:
        _, html, _ = self.open("GET", f"{self.path}?d={self.d}&lang=en")
        f = {"csrf": re.search(r'name="csrf" value="([^"]+)"', html).group(1), "d": self.d, "lang": "en"}
        if action == "submit":
            f["idem"] = re.search(r'name="idem" value="([^"]+)"', html).group(1)
        status, body, _ = self.open("POST", f"{self.path}/{action}", {**f, **fields})
        return status, body


def test_planted_personal_data_reaches_no_log_and_nothing_at_hq(tmp_path, mosquitto_factory, gateway_process):
    local, hq_broker = mosquitto_factory("local"), mosquitto_factory("hq")
    web_port = free_port()
    rules = """
[alerts]
device_offline_after = "1h"

[[alerts.rules]]
name = "warm"
metric = "temp_c"
above = 8.0
for = "1s"
severity = "major"
"""
    cfg = tmp_path / "storegw.toml"
    cfg.write_text(config_text(tmp_path / "data", local_port=local.port, hq_port=hq_broker.port, web_port=web_port,
                               extra='forward_raw = ["*"]\n' + rules))
    # Staff fields through the real CLI (which creates the database: see the file modes below).
    _cli("menu", "import", "--sample", "--config", str(cfg))
    _cli("tables", "add", "A1", "--config", str(cfg))
    _cli("staff", "add", f"Zhao {MOBILE}", "--role", "cashier", "--pin-stdin", "--config", str(cfg),
         input="246813\n")
    url = _cli("tables", "url", "A1", "--config", str(cfg)).strip()
    url = re.sub(r"^https?://[^/]+", f"http://127.0.0.1:{web_port}", url)

    hq = Hq(hq_broker.port)
    gw = gateway_process(cfg).start()
    try:
        # Diner fields.
        phone = Http(url)
        phone.arrive()
        assert phone.post("name", nickname=f"Wang {ID}")[0] in (200, 303)
        status, body = phone.post("add", item="h01", note=f"card {CARD}")
        assert status == 400 and "银行卡号" in body and CARD not in body
        assert phone.post("add", item="h01", note=f"call {MOBILE2} / {MRZ1} {MRZ2}")[0] in (200, 303)
        assert phone.post("submit")[0] in (200, 303)
        # Equipment topics: PII-looking device ids and metric names, invalid ids, bad payloads.
        eq = equipment(local.port, "equipment")
        for dev in (MOBILE, ID, CARD):
            for _ in range(3):
                eq.publish(f"devices/{dev}/telemetry", json.dumps({"temp_c": 9.5, MOBILE: 1, ID2: 2}),
                           qos=1).wait_for_publish(5)
                time.sleep(0.4)
        eq.publish(f"devices/{MOBILE}/telemetry", b"not json", qos=1).wait_for_publish(5)
        eq.publish("devices/139 1234 5678/telemetry", b'{"temp_c": 1}', qos=1).wait_for_publish(5)
        eq.publish(f"devices/{MRZ1}/telemetry", b'{"temp_c": 1}', qos=1).wait_for_publish(5)
        eq.publish(f"devices/{MOBILE2}/status", b'{"state": "offline"}', qos=1).wait_for_publish(5)

        def arrived() -> bool:
            devices = {d["device"] for d in hq.docs("/telemetry/summary") for d in d}
            alerts = {a["device"] for a in hq.docs("/alerts")}
            return len({d for d in devices if d.startswith("redacted-")}) >= 3 and len(alerts) >= 3
        wait_for(arrived, timeout=60, what="summaries and alerts of the three devices at HQ")
        wait_for(lambda: hq.docs("/telemetry/raw"), timeout=30, what="raw readings at HQ")
        health = gw.health()
        redacted = health["privacy"]["redacted"]
        assert redacted["id_number"] >= 2 and redacted["mobile"] >= 2 and redacted["card"] >= 2
        assert redacted["mrz"] >= 2
        assert ID not in json.dumps(health)
        # HQ can still tell the devices apart, and the metric that was a phone number is there, renamed.
        raw = [item for doc in hq.docs("/telemetry/raw") for item in doc]
        assert len({r["device"] for r in raw}) == 3
        assert all(len(r["metrics"]) == 3 for r in raw)
        eq.loop_stop()
        eq.disconnect()
    finally:
        code = gw.stop()
        hq.stop()
    assert code == 0
    log = gw.log.read_bytes()
    assert b"Invalid telemetry from (invalid id)" in log and b"redacted-" in log
    assert_no_plaintext(log, "gateway stderr log")
    assert_no_plaintext(hq.blob(), "what HQ received")
    for topic, payload in hq.messages:  # decoded too: no escaped form survives a JSON parse either
        assert_no_plaintext(json.dumps(json.loads(payload), ensure_ascii=False).encode(), topic)


def test_data_files_are_0600_through_storegw_run_and_cli_commands(tmp_path, mosquitto_factory):
    """The CLI creates the database (umask 022 in the child), `storegw run` adds WAL, SHM and keys,
    `storegw backup` writes a backup: every file 0600 (and DB, -wal, -shm tightened if they were not)."""
    from realparts import GatewayProcess

    local, hq_broker = mosquitto_factory("local"), mosquitto_factory("hq")
    cfg = tmp_path / "storegw.toml"
    cfg.write_text(config_text(tmp_path / "data", local_port=local.port, hq_port=hq_broker.port,
                               web_port=free_port()))
    data = tmp_path / "data"
    _cli("menu", "import", "--sample", "--config", str(cfg))
    _cli("tables", "add", "A1", "--config", str(cfg))
    db = next(data.glob("*.db"))
    for suffix in ("-wal", "-shm"):  # an older version's 0644 files are tightened
        side = db.with_name(db.name + suffix)
        if side.exists():
            os.chmod(side, 0o644)
    os.chmod(db, 0o644)

    def start() -> GatewayProcess:
        gp = GatewayProcess(cfg, tmp_path / "gw.log")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(gp.log, "ab") as log:
            gp.proc = subprocess.Popen([sys.executable, "-m", "gateway", "run", "--config", str(cfg)],
                                       stdout=subprocess.DEVNULL, stderr=log, env=env, cwd=ROOT,
                                       preexec_fn=lambda: os.umask(0o022))  # noqa: PLW1509
        wait_for(gp._healthy, timeout=30, what="gateway health")
        return gp

    gp = start()
    try:
        eq = equipment(local.port, "eq")
        eq.publish("devices/fridge-1/telemetry", b'{"temp_c": 4}', qos=1).wait_for_publish(5)
        eq.loop_stop()
        eq.disconnect()
        time.sleep(1)
        running = {p for p in tmp_path.rglob("*") if p.is_file() and p.parent.name in ("data", "data-keys")}
        assert any(p.name.endswith("-wal") for p in running) and any(p.name.endswith("-shm") for p in running)
        for p in running:
            assert _mode(p) == 0o600, (p, oct(_mode(p)))
    finally:
        assert gp.stop() == 0
    _cli("staff", "add", "li", "--role", "kitchen", "--pin-stdin", "--config", str(cfg), input="246813\n")
    _cli("backup", "--config", str(cfg), "--to", str(tmp_path / "backups"))
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p.parent.name in ("data", "data-keys", "backups")]
    assert any(p.parent.name == "backups" for p in files)
    for p in files:
        assert _mode(p) == 0o600, (p, oct(_mode(p)))
