"""1,000 replays of the same earn and redeem requests against a real `storegw run`, interleaved with
SIGKILLs (some while a request is in flight, i.e. between its commit and its reply) → each request
changed its member's balance exactly once, and `storegw members check` finds Σ ledger = balance."""

from __future__ import annotations

import http.client
import http.cookiejar
import json
import random
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from memhelpers import MANAGER_PASSWORD, enrol_manager, fresh_code, trust_clock
from ordhelpers import prepare_store, start_gateway

pytestmark = pytest.mark.slow

REPLAYS = 1000
MEMBERS = 4
EARNS, REDEEMS = 5, 3
SEED = 1000


class Staff:
    """A signed-in staff browser (cookie jar, CSRF header) against a gateway's web port."""

    def __init__(self, port: int) -> None:
        self.origin = f"http://127.0.0.1:{port}"
        self.jar = http.cookiejar.CookieJar()

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):
                return None

        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), NoRedirect)
        self.csrf = ""

    def call(self, method: str, path: str, data: dict | None = None, timeout: float = 10) -> tuple[int, str]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(self.origin + path, data=body, method=method,
                                     headers={"X-Requested-With": "js", "X-CSRF-Token": self.csrf})
        try:
            with self.opener.open(req, timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    def login(self, name: str, password: str, code: str) -> None:
        _, html = self.call("GET", "/staff/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
        status, body = self.call("POST", "/staff/login", {"name": name, "pin": password, "code": code,
                                                          "csrf_token": token})
        assert status == 303, body[-500:]
        _, html = self.call("GET", "/staff/members")
        self.csrf = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def test_thousand_replays_with_sigkill_change_each_balance_once(broker, write_config, gateway_process, tmp_path):
    rng = random.Random(11)
    cfg = write_config(local_port=broker.port, hq_port=broker.port, uplink='client_id = "hq-side"')
    prepare_store(cfg)
    totp = enrol_manager(cfg, tmp_path)
    gw = start_gateway(gateway_process, cfg).start()
    trust_clock(cfg)
    staff = Staff(gw.web_port)
    staff.login("boss", MANAGER_PASSWORD, fresh_code(totp))

    members = []
    for i in range(MEMBERS):
        status, body = staff.call("POST", "/staff/members/register", {
            "nickname": f"m{i}", "phone": f"1391234{i:04d}", "consent_benefits": "1"})
        assert status == 200, body
        members.append(json.loads(body)["id"])
    expected = {}
    requests = []
    for mid in members:
        status, body = staff.call("POST", f"/staff/members/{mid}/points",
                                  {"op": "earn", "points": SEED, "idem": f"seed-{mid}-0000"})
        assert status == 200, body
        expected[mid] = SEED
        for k in range(EARNS):
            requests.append((mid, "earn", 10 + k, f"earn-{mid}-{k:04d}"))
            expected[mid] += 10 + k
        for k in range(REDEEMS):
            requests.append((mid, "redeem", 50 + k, f"redeem-{mid}-{k:04d}"))
            expected[mid] -= 50 + k

    sends = [*requests, *(rng.choice(requests) for _ in range(REPLAYS - len(requests)))]
    rng.shuffle(sends)
    answers: dict[str, list[dict]] = {}
    kills = in_flight_kills = 0

    def send(req):
        mid, op, points, idem = req
        status, body = staff.call("POST", f"/staff/members/{mid}/points",
                                  {"op": op, "points": points, "idem": idem}, timeout=15)
        return status, body

    i = 0
    while i < len(sends):
        if i and i % 60 == 0:  # a kill while a request is in flight: between its commit and its reply
            t = threading.Thread(target=_safe, args=(send, sends[i]))
            t.start()
            time.sleep(rng.uniform(0.0, 0.03))
            gw.kill()
            t.join(20)
            kills += 1
            in_flight_kills += 1
            gw.start()
            i += 1  # whatever happened to it, it is replayed later (it is in `requests` and sent again)
            sends.append(sends[i - 1])
            continue
        status, body = _safe(send, sends[i])
        if status is None:  # the gateway is down (killed between two requests): restart and retry
            gw.start()
            continue
        assert status == 200, (status, body)
        doc = json.loads(body)
        answers.setdefault(sends[i][3], []).append(doc)
        i += 1
        if rng.random() < 0.01:  # a kill between two requests
            gw.kill()
            kills += 1
            gw.start()

    assert gw.stop() == 0
    # every request took effect once: its first answer and every replay name the same entry
    for idem, docs in answers.items():
        assert len({d["entry_id"] for d in docs}) == 1, idem
        assert sum(not d["duplicate"] for d in docs) <= 1, idem  # the first may have been the killed one

    from realparts import db_key

    from gateway.config import load
    from gateway.members.ledger import check
    from gateway.store.db import DB_NAME, connect

    conf = load(cfg)
    conn = connect(conf.data_path / DB_NAME, db_key(conf.data_path))
    try:
        rows = dict(conn.execute("SELECT id, points FROM mem_members").fetchall())
        keys = [r[0] for r in conn.execute("SELECT idem FROM mem_ledger WHERE idem LIKE 'api:%'")]
        assert check(conn) == []
    finally:
        conn.close()
    assert rows == expected
    assert sorted(keys) == sorted({f"api:{r[3]}" for r in requests} | {f"api:seed-{m}-0000" for m in members})
    out = subprocess.run([sys.executable, "-m", "gateway", "members", "check", "--config", str(cfg)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"{MEMBERS} members" in out.stdout
    print(f"replays={len(sends)} distinct={len(requests)} kills={kills} in-flight kills={in_flight_kills} "
          f"balances={rows}")


def _safe(fn, req):
    try:
        return fn(req)
    except (OSError, urllib.error.URLError, http.client.HTTPException):  # killed mid-reply
        return None, ""
