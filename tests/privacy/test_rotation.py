"""Key rotation with real parts: kill -9 at every step (offline and inside a running gateway), and a
rotation while `storegw run` ingests MQTT telemetry, diners order, the counter registers members
(field-encrypted phones) and a manager's TOTP secret waits for its re-wrap; the field re-wrap in a
running gateway down to 0 rows on the old version."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from realparts import ROOT, config_text, equipment, free_port, wait_for

from gateway.privacy.keys import Keyring, current_db_key, database_key
from gateway.store.db import DB_NAME, connect, opens

pytestmark = pytest.mark.slow

STEPS = ("pending", "rekeyed", "keycheck", "promoted", "field-version")


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})


def _count(data, table="readings") -> int:
    conn = connect(data / DB_NAME, current_db_key(data, data.with_name(data.name + "-keys")), readonly=True)
    try:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        conn.close()


@pytest.mark.parametrize("step", STEPS)
def test_offline_rotation_killed_at_each_step_leaves_a_database_that_opens(tmp_path, step, monkeypatch):
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    from gateway.store import open_store

    data, kd = tmp_path / "data", tmp_path / "data-keys"
    ring = Keyring.open(kd)
    store = open_store(data, key=database_key(ring, data))
    store.start()
    for i in range(2000):
        store.writer.submit(lambda c, i=i: c.execute("INSERT INTO meta VALUES (?, ?)", (f"k{i}", "v" * 200)))
    store.writer.call(lambda c: None)
    store.close()
    before = current_db_key(data, kd)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[store]\nid = "sh-001"\ndata_dir = "{data.as_posix()}"\n[web]\nlisten = "127.0.0.1:9"\n')
    res = _cli("keys", "rotate", "--config", str(cfg), env={"STOREGW_TEST_CRASH_AFTER": step})
    assert res.returncode == -9, res.stderr  # killed right after that step
    # the database opens (the gateway's own resolution finishes an interrupted rotation) and lost nothing
    ring = Keyring.open(kd)
    key = database_key(ring, data)
    assert opens(data / DB_NAME, key)
    assert _count(data, "meta") == 2000
    if step in ("rekeyed", "keycheck", "promoted", "field-version"):
        assert key != before and not opens(data / DB_NAME, before)
        assert ring.db_key("pending") is None  # promoted at open
    else:
        assert key == before
    # and the next rotation completes
    res = _cli("keys", "rotate", "--config", str(cfg))
    assert res.returncode == 0, res.stderr
    after = current_db_key(data, kd)
    assert opens(data / DB_NAME, after) and not opens(data / DB_NAME, key) and _count(data, "meta") == 2000


class Diners(threading.Thread):
    """Diners ordering on their phones and a cashier registering members (field-encrypted phones) over
    HTTP; every answer must be the success one (303 for a diner's form, 200 for the counter's JSON)."""

    def __init__(self, origin: str, urls: list[str]) -> None:
        super().__init__(daemon=True)
        self.origin, self.urls = origin, urls
        self.rounds = self.members = self.failed = 0
        self.errors: list[str] = []
        self.stop = threading.Event()

    def _check(self, what: str, status: int, body: str, want: tuple[int, ...]) -> bool:
        if status in want:
            return True
        self.failed += 1
        self.errors.append(f"{what}: {status} {body[-300:]}")
        return False

    def run(self) -> None:
        from test_planted import Http
        from test_scripted_day import StaffWeb

        counter = StaffWeb(self.origin).sign_in("lin", "246813")
        i = 0
        while not self.stop.is_set():
            i += 1
            try:
                phone = Http(self.urls[i % len(self.urls)], source=f"127.4.{i // 250 % 250}.{i % 250 + 1}")
                phone.d = f"rot{i:06d}"
                ok = self._check("add", *phone.post("add", item="h01"), want=(200, 303))
                if ok and self._check("submit", *phone.post("submit"), want=(200, 303)):
                    self.rounds += 1
                status, body, _ = counter.post("/staff/members/register", nickname=f"m{i}", phone=f"139{i:08d}",
                                               consent_benefits="1")
                if self._check("register", status, body, (200,)):
                    self.members += 1
            except Exception as err:  # noqa: BLE001 - counted
                self.failed += 1
                self.errors.append(repr(err))
            time.sleep(0.05)


class Load(threading.Thread):
    """HTTP requests against the gateway (health reads the outbox; every response must be 200)."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port, self.ok, self.failed, self.errors = port, 0, 0, []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v1/health", timeout=30) as r:
                    json.load(r)
                    self.ok += 1
            except Exception as err:  # noqa: BLE001 - counted
                self.failed += 1
                self.errors.append(repr(err))
            time.sleep(0.01)


def test_rotation_while_running_loses_nothing_and_fails_no_request(mosquitto_factory, write_config,
                                                                   gateway_process, tmp_path):
    import re

    import pyotp

    from gateway.privacy import control
    from gateway.privacy.keys import CONTROL_SOCKET

    local, hq = mosquitto_factory("local"), mosquitto_factory("hq")
    synced = tmp_path / "synchronized"
    synced.touch()
    cfg = write_config(local_port=local.port, hq_port=hq.port,
                       extra=f'[ordering]\nsubmit_rate = 100000\n[staff]\nclock_sync_files = ["{synced.as_posix()}"]\n')
    tables = [f"A{i}" for i in range(1, 5)]
    for args in (("menu", "import", "--sample"), ("tables", "add", *tables)):
        assert _cli(*args, "--config", str(cfg)).returncode == 0
    res = subprocess.run([sys.executable, "-m", "gateway", "staff", "add", "lin", "--role", "cashier", "--pin-stdin",
                          "--config", str(cfg)], input="246813\n", capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    pw = tmp_path / "boss.pw"
    pw.write_text("a long manager password\n")
    res = _cli("staff", "add", "boss", "--role", "manager", "--password-file", str(pw), "--config", str(cfg))
    assert res.returncode == 0, res.stderr
    totp = pyotp.parse_uri(re.search(r"otpauth://\S+", res.stdout).group(0))  # its secret: a field ciphertext
    urls = [_cli("tables", "url", t, "--config", str(cfg)).stdout.strip() for t in tables]
    gw = gateway_process(cfg).start()
    wait_for(lambda: gw.health()["local_mqtt"]["connected"], timeout=20, what="subscribed")
    origin = f"http://127.0.0.1:{gw.web_port}"
    urls = [re.sub(r"^https?://[^/]+", origin, u) for u in urls]
    data = tmp_path / "data"
    old = current_db_key(data, tmp_path / "data-keys")
    load = Load(gw.web_port)
    load.start()
    diners = Diners(origin, urls)
    diners.start()
    client = equipment(local.port, "rotation-feeder")
    n = 6000
    start = int(time.time() * 1000) - 600_000
    infos = []

    def publish() -> None:
        for i in range(n):
            infos.append(client.publish(f"devices/fridge-{i % 10}/telemetry",
                                        json.dumps({"ts": start + i, "temp_c": 4.0}), qos=1))
            time.sleep(0.001)

    feeder = threading.Thread(target=publish, daemon=True)
    feeder.start()
    wait_for(lambda: gw.health()["ingest"]["committed"] >= 500, timeout=30, what="ingest under way")
    results = [_cli("keys", "rotate", "--config", str(cfg)) for _ in range(3)]
    for res in results:
        assert res.returncode == 0, res.stderr
        assert "online" in res.stdout
    feeder.join(60)
    wait_for(lambda: gw.health()["ingest"]["committed"] >= n, timeout=60, what="every reading committed")
    load.stop.set()
    diners.stop.set()
    load.join(40)
    diners.join(40)
    client.loop_stop()
    assert load.failed == 0, load.errors[:3]
    assert diners.failed == 0, diners.errors[:3]
    assert load.ok > 50 and diners.rounds >= 5 and diners.members >= 5
    health = gw.health()
    assert health["db"]["failed_writes"] == 0 and health["keys"]["rotations"] == 3
    # the background re-wrap (run to the end now) moves every field ciphertext, the TOTP secret included,
    # to the newest field key; the older versions retire at 0 rows, and the manager still signs in
    assert control.request(tmp_path / "data-keys" / CONTROL_SOCKET, {"op": "rewrap"})["ok"]
    versions = json.loads(_cli("keys", "status", "--config", str(cfg), "--json").stdout)["fields"]["versions"]
    assert [(v["status"], v["rows"]) for v in versions[:-1]] == [("retired", 0)] * 3
    assert versions[-1]["status"] == "primary" and versions[-1]["rows"] == diners.members + 1  # phones, the TOTP
    from test_scripted_day import StaffWeb

    StaffWeb(origin).sign_in("boss", "a long manager password", totp.now())
    assert gw.stop() == 0
    assert _count(data) == n  # 0 lost readings
    assert _count(data, "ord_rounds") == diners.rounds and _count(data, "mem_members") == diners.members
    print(json.dumps({"rotations": 3, "readings": n, "readings_stored": _count(data), "health_reads": load.ok,
                      "rounds": diners.rounds, "members": diners.members, "failed": load.failed + diners.failed,
                      "field_versions": [(v["version"], v["status"], v["rows"]) for v in versions]}))
    new = current_db_key(data, tmp_path / "data-keys")
    assert not opens(data / DB_NAME, old) and opens(data / DB_NAME, new)
    ring = Keyring.open(tmp_path / "data-keys", create=False)
    assert len(ring.retired_db_keys()) == 3  # the first one, and two rotated away
    status = json.loads(_cli("keys", "status", "--config", str(cfg), "--json").stdout)
    assert status["database"]["primary"] == 4 and status["database"]["opens_with"] == 4


@pytest.mark.parametrize("step", ["rekeyed", "keycheck"])
def test_gateway_killed_mid_rotation_restarts_and_loses_nothing(mosquitto_factory, tmp_path, step):
    from realparts import GatewayProcess

    local, hq = mosquitto_factory("local"), mosquitto_factory("hq")
    cfg = tmp_path / "storegw.toml"
    cfg.write_text(config_text(tmp_path / "data", local_port=local.port, hq_port=hq.port, web_port=free_port()))
    env_before = os.environ.get("STOREGW_TEST_CRASH_AFTER")
    os.environ["STOREGW_TEST_CRASH_AFTER"] = step  # the daemon dies at that step of the rotation it runs
    try:
        gw = GatewayProcess(cfg, tmp_path / "gw.log").start()
    finally:
        if env_before is None:
            os.environ.pop("STOREGW_TEST_CRASH_AFTER")
        else:
            os.environ["STOREGW_TEST_CRASH_AFTER"] = env_before
    try:
        wait_for(lambda: gw.health()["local_mqtt"]["connected"], timeout=20, what="subscribed")
        client = equipment(local.port, "crash-feeder")
        start = int(time.time() * 1000) - 600_000
        infos = [client.publish("devices/fridge-1/telemetry", json.dumps({"ts": start + i, "temp_c": 4.0}), qos=1)
                 for i in range(1000)]
        wait_for(lambda: gw.health()["ingest"]["committed"] >= 1000, timeout=30, what="1000 readings")
        res = _cli("keys", "rotate", "--config", str(cfg), "--db")
        assert res.returncode == 1  # the gateway died under it
        gw.proc.wait(10)
        assert gw.proc.returncode == -9
        for i in range(1000, 1500):  # published while it is down: the broker keeps them
            infos.append(client.publish("devices/fridge-1/telemetry",
                                        json.dumps({"ts": start + i, "temp_c": 4.0}), qos=1))
        for info in infos:
            info.wait_for_publish(10)
        client.loop_stop()
        gw.start()  # opens with whichever key the file is under, finishing the rotation
        wait_for(lambda: gw.health()["ingest"]["committed"] >= 500, timeout=30, what="redelivered readings")
        assert gw.stop() == 0
    finally:
        gw.stop()
    assert _count(tmp_path / "data") == 1500
    ring = Keyring.open(tmp_path / "data-keys", create=False)
    assert ring.db_key("pending") is None and ring.db_key("primary").source.startswith("keyring database key 2")


def test_field_rewrap_in_a_running_gateway_retires_the_old_version(tmp_path, monkeypatch):
    """In process (the test table is declared here): rows under v1, `keys rotate --fields` through the
    control socket, new writes use v2, the background re-wrap brings v1 to 0 rows and retires it."""
    from gateway import config as config_mod
    from gateway.app import build
    from gateway.privacy import fields as F
    from gateway.privacy.service import rotate, status

    specs = [F.declare("subjects", "phone_ct", ref="sid", index="phone_bidx", kind="phone")]
    cfgp = tmp_path / "c.toml"
    cfgp.write_text(config_text(tmp_path / "data", local_port=free_port(), hq_port=free_port(), web_port=free_port(),
                                extra='[keys]\nrewrap_every = "1s"\nrewrap_batch = 50\n'))
    cfg = config_mod.load(cfgp)
    gw = build(cfg)
    gw.start(web=False, devices=False)
    try:
        cipher = gw.privacy.cipher
        gw.store.writer.call(lambda c: c.execute(
            "CREATE TABLE subjects (sid TEXT PRIMARY KEY, phone_ct BLOB, phone_bidx INTEGER)"))

        def insert(c, i):
            sid, phone = f"s{i}", f"139{i:08d}"
            c.execute("INSERT INTO subjects VALUES (?, ?, ?)",
                      (sid, cipher.encrypt("subjects", "phone_ct", phone, sid), cipher.blind_index("phone", phone)))

        for i in range(400):
            gw.store.writer.submit(lambda c, i=i: insert(c, i))
        gw.store.writer.call(lambda c: None)
        assert [(v["version"], v["rows"]) for v in status(cfg)["fields"]["versions"]] == [(1, 400)]
        out = rotate(cfg, db=True, fields=True)  # the running gateway answers on its control socket
        assert out["mode"] == "online" and out["field_version"] == 2
        gw.store.writer.call(lambda c: insert(c, 400))
        row = gw.store.read().execute("SELECT phone_ct FROM subjects WHERE sid = 's400'").fetchone()
        assert F.version_of(row[0]) == 2  # new writes use the new primary at once

        def settled():
            versions = {v["version"]: (v["status"], v["rows"]) for v in status(cfg)["fields"]["versions"]}
            return versions == {1: ("retired", 0), 2: ("primary", 401)}

        wait_for(settled, timeout=60, what="v1 re-wrapped to 0 rows and retired", interval=0.5)
        # everything still decrypts, and lookups by blind index still work
        for sid, ct in gw.store.read().execute("SELECT sid, phone_ct FROM subjects"):
            assert cipher.decrypt_text("subjects", "phone_ct", ct, sid) == f"139{int(sid[1:]):08d}"
        hits = gw.store.read().execute("SELECT sid FROM subjects WHERE phone_bidx = ?",
                                       (cipher.blind_index("phone", "+86 139 0000 0123"),)).fetchall()
        assert ("s123",) in hits
    finally:
        gw.stop()
        for s in specs:
            F.undeclare(s)
