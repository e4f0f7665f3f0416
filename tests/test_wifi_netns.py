"""`storegw provision wifi`, for real, in network namespaces: the generated dnsmasq and nftables files.

Four namespaces stand in for the board and its networks:

    client (a phone) --eth0/ap0-- gateway --up0/eth0-- uplink host 198.51.100.2 (the internet side)
                                          --st0/eth0-- staff host 10.77.0.2 (the staff network)

The gateway namespace runs a real ``storegw run`` (portal on), the generated dnsmasq and the
generated nftables table; the client gets its address and option 114 from a real DHCP client
(ISC dhclient), resolves the Android/Apple/Windows probe hosts, is redirected to the portal,
reaches the ordering page, and cannot reach the uplink or staff hosts. Before the firewall is
loaded the same client does reach the uplink host (the gateway forwards): the rules are what stop it.

Needs root, ``ip netns``, nft, dnsmasq and dhclient (provisioning/dev.sh installs them; CI runs as
root). Skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from realparts import wait_for

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ("ip", "nft", "dnsmasq", "dhclient")


def _skip_reason() -> str:
    if os.geteuid() != 0:
        return "needs root (network namespaces, nftables); CI runs as root"
    missing = [t for t in TOOLS if not shutil.which(t)]
    if missing:
        return f"missing {', '.join(missing)} (provisioning/dev.sh test installs them)"
    name = f"sgwprobe{os.getpid()}"
    res = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        return f"no network namespace support here: {res.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], check=False)
    return ""


_REASON = _skip_reason()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(_REASON), reason=_REASON or "ok")]


def sh(*cmd: str, ns: str | None = None, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    full = (["ip", "netns", "exec", ns] if ns else []) + list(cmd)
    res = subprocess.run(full, capture_output=True, text=True, timeout=timeout, check=False)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(full)} failed ({res.returncode}): {res.stderr or res.stdout}")
    return res


# prints the HTTP status of a GET (or the error's name), 3 s at most
FETCH = ("import sys, urllib.request\ntry:\n    print(urllib.request.urlopen(sys.argv[1], timeout=3).status, end='')\n"
         "except Exception as err:\n    print(type(err).__name__, end='')")

CLIENT = textwrap.dedent('''
    import http.client, json, random, socket, struct, sys

    def dns(server, name):
        qid = random.randrange(65536)
        q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
        q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\\0" + struct.pack(">HH", 1, 1)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(2)
        try:
            s.sendto(q, (server, 53))
            data, _ = s.recvfrom(2048)
        except OSError as err:
            return "error: " + type(err).__name__
        finally:
            s.close()
        an = struct.unpack(">H", data[6:8])[0]
        i = 12
        while data[i]:
            i += data[i] + 1
        i += 5
        for _ in range(an):
            i += 2 if data[i] & 0xC0 == 0xC0 else 0
            rtype, _, _, rdlen = struct.unpack(">HHIH", data[i:i + 10])
            i += 10
            if rtype == 1:
                return socket.inet_ntoa(data[i:i + 4])
            i += rdlen
        return "no A record"

    def get(ip, host, path, port=80, accept=None):
        c = http.client.HTTPConnection(ip, port, timeout=5)
        headers = {"Host": host}
        if accept:
            headers["Accept"] = accept
        try:
            c.request("GET", path, headers=headers)
            r = c.getresponse()
            return {"status": r.status, "location": r.getheader("Location"), "type": r.getheader("Content-Type"),
                    "body": r.read(4000).decode("utf-8", "replace")}
        except OSError as err:
            return {"error": type(err).__name__}
        finally:
            c.close()

    def connect(ip, port):
        s = socket.socket()
        s.settimeout(1.5)
        try:
            s.connect((ip, port))
            return "connected"
        except socket.timeout:
            return "timeout"
        except OSError as err:
            return type(err).__name__
        finally:
            s.close()

    job = json.loads(sys.argv[1])
    out = {"dns": {h: dns(job["dns"], h) for h in job["hosts"]}, "http": {}, "connect": {}}
    out["dns_hardcoded"] = dns("8.8.8.8", job["hosts"][0])
    for key, (host, path) in job["probes"].items():
        out["http"][key] = get(out["dns"].get(host, host), host, path)
    pub = job["public"]
    out["http"]["portal"] = get(out["dns"][pub], pub, "/portal")
    out["http"]["api"] = get(out["dns"][pub], pub, job["api"], accept="application/captive+json")
    order = get(out["dns"][pub], pub, job["order"])
    for _ in range(3):  # the table page sends a new phone to its own URL first (303), then answers
        if order.get("status") not in (302, 303):
            break
        loc = order["location"].removeprefix("http://" + pub)
        order = get(out["dns"][pub], pub, loc) if loc.startswith("/") else {"offsite": loc}
    out["http"]["order"] = order
    for key, (ip, port) in job["connect"].items():
        out["connect"][key] = connect(ip, port)
    print(json.dumps(out))
''')

PROBES = {  # (host, path) of each OS's probe
    "android": ("connectivitycheck.gstatic.com", "/generate_204"),
    "xiaomi": ("connect.rom.miui.com", "/generate_204"),
    "apple": ("captive.apple.com", "/hotspot-detect.html"),
    "windows": ("www.msftconnecttest.com", "/connecttest.txt"),
}


@pytest.fixture
def netns(tmp_path: Path):
    """Four namespaces wired as the picture in the module's text; removed afterwards with everything in them."""
    tag = uuid.uuid4().hex[:6]
    ns = {k: f"sgw{tag}{k}" for k in ("gw", "cl", "up", "st")}
    procs: list[subprocess.Popen] = []
    for name in ns.values():
        sh("ip", "netns", "add", name)
    try:
        for name in ns.values():
            sh("ip", "link", "set", "lo", "up", ns=name)
        links = (("ap0", "cl", "", ""), ("up0", "up", "198.51.100.1/24", "198.51.100.2/24"),
                 ("st0", "st", "10.77.0.1/24", "10.77.0.2/24"))
        for gw_if, peer, addr_gw, addr_peer in links:
            sh("ip", "-n", ns["gw"], "link", "add", gw_if, "type", "veth", "peer", "name", "eth0", "netns", ns[peer])
            sh("ip", "-n", ns["gw"], "link", "set", gw_if, "up")
            sh("ip", "-n", ns[peer], "link", "set", "eth0", "up")
            if addr_gw:
                sh("ip", "-n", ns["gw"], "addr", "add", addr_gw, "dev", gw_if)
                sh("ip", "-n", ns[peer], "addr", "add", addr_peer, "dev", "eth0")
                sh("ip", "-n", ns[peer], "route", "add", "default", "via", addr_gw.split("/")[0])
        sh("ip", "-n", ns["gw"], "addr", "add", "10.42.0.1/24", "dev", "ap0")
        sh("sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward", ns=ns["gw"])  # the gateway routes
        yield ns, procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        pid_file = tmp_path / "dhclient.pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
            except (ValueError, ProcessLookupError):
                pass
        for name in ns.values():
            subprocess.run(["ip", "netns", "del", name], check=False)


def _config(tmp_path: Path, web_port: int) -> Path:
    synced = tmp_path / "synchronized"
    synced.touch()
    cfg = tmp_path / "storegw.toml"
    cfg.write_text(f"""
[store]
id = "sh-001"
name = "Test store"
data_dir = "{(tmp_path / 'data').as_posix()}"

[local_mqtt]
embedded = true
host = "127.0.0.1"
port = 18830  # inside the gateway namespace: no other process can hold it

[uplink]
enabled = false

[web]
listen = "0.0.0.0:{web_port}"
public_host = "wifi.store.test"

[ordering]
portal = true

[staff]
clock_sync_files = ["{synced.as_posix()}"]

[wifi]
interface = "ap0"
uplink = "up0"
staff_networks = ["10.77.0.0/24"]
""")
    return cfg


def test_client_on_portal_subnet(netns, tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "tests" / "ordering"))
    from ordhelpers import prepare_store, table_url

    ns, procs = netns
    cfg = _config(tmp_path, 8080)
    prepare_store(cfg, tables=("A1",))
    order_url = table_url(cfg, "A1")
    assert order_url.startswith("http://wifi.store.test/t/")
    out = tmp_path / "wifi"
    res = subprocess.run([sys.executable, "-m", "gateway", "provision", "wifi", "--config", str(cfg), "--mode",
                          "hostapd", "--out", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=60,
                         check=False)
    assert res.returncode == 0, res.stderr
    assert "option 114 = http://wifi.store.test/captive-portal/api" in res.stdout

    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
    with open(tmp_path / "gateway.log", "ab") as log:
        procs.append(subprocess.Popen(["ip", "netns", "exec", ns["gw"], sys.executable, "-m", "gateway", "run",
                                       "--config", str(cfg)], stdout=subprocess.DEVNULL, stderr=log, env=env,
                                      cwd=ROOT))
    with open(tmp_path / "dnsmasq.log", "ab") as log:
        procs.append(subprocess.Popen(["ip", "netns", "exec", ns["gw"], "dnsmasq", "--keep-in-foreground",
                                       "-C", str(out / "dnsmasq.conf"), "--user=root", "--log-facility=-",
                                       f"--pid-file={tmp_path / 'dnsmasq.pid'}",
                                       f"--dhcp-leasefile={tmp_path / 'leases'}"], stdout=log, stderr=log))
    # the uplink and staff hosts each serve something the client could reach without the firewall
    for host, addr in (("up", "198.51.100.2"), ("st", "10.77.0.2")):
        procs.append(subprocess.Popen(["ip", "netns", "exec", ns[host], sys.executable, "-m", "http.server", "8000",
                                       "--bind", addr], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      cwd=tmp_path))

    def healthy() -> bool:
        if procs[0].poll() is not None:
            raise AssertionError(f"storegw run exited: {(tmp_path / 'gateway.log').read_text()[-2000:]}")
        return sh(sys.executable, "-c", FETCH, "http://127.0.0.1:8080/api/v1/health", ns=ns["gw"],
                  check=False).stdout == "200"

    wait_for(healthy, timeout=60, what="storegw run in the gateway namespace")

    # a real DHCP client asks for option 114 (RFC 8910) and reports what it got
    (tmp_path / "dhclient.conf").write_text(
        "option captive-portal code 114 = text;\n"
        "request subnet-mask, routers, domain-name-servers, captive-portal;\n")
    script = tmp_path / "dhclient-script"
    script.write_text(f"#!/bin/sh\nenv | grep '^new_\\|^reason=' >> {tmp_path / 'lease.env'}\n")
    script.chmod(0o755)
    sh("dhclient", "-1", "-cf", str(tmp_path / "dhclient.conf"), "-sf", str(script),
       "-lf", str(tmp_path / "dhclient.leases"), "-pf", str(tmp_path / "dhclient.pid"), "eth0", ns=ns["cl"],
       timeout=60)
    lease = dict(line.split("=", 1) for line in (tmp_path / "lease.env").read_text().splitlines() if "=" in line)
    assert lease["reason"] in ("BOUND", "REBOOT", "RENEW"), lease
    assert lease["new_captive_portal"] == "http://wifi.store.test/captive-portal/api"
    assert lease["new_routers"] == "10.42.0.1" and lease["new_domain_name_servers"] == "10.42.0.1"
    ip = lease["new_ip_address"]
    assert ip.startswith("10.42.0.")
    sh("ip", "addr", "add", f"{ip}/24", "dev", "eth0", ns=ns["cl"])
    sh("ip", "route", "add", "default", "via", "10.42.0.1", ns=ns["cl"])

    # Negative control: without the firewall the gateway routes the client to the uplink host.
    control = sh(sys.executable, "-c", FETCH, "http://198.51.100.2:8000/", ns=ns["cl"], check=False)
    assert control.stdout == "200", "the namespaces do not route; the test would prove nothing"

    sh("nft", "-f", str(out / "diners.nft"), ns=ns["gw"])
    sh("nft", "-f", str(out / "diners.nft"), ns=ns["gw"])  # loading twice replaces, never duplicates
    job = {"dns": "10.42.0.1", "hosts": [h for h, _ in PROBES.values()] + ["wifi.store.test", "example.com"],
           "probes": PROBES, "public": "wifi.store.test", "api": "/captive-portal/api",
           "order": order_url.removeprefix("http://wifi.store.test"),
           "connect": {"uplink": ("198.51.100.2", 8000), "staff": ("10.77.0.2", 8000),
                       "gateway-uplink-side": ("198.51.100.1", 8080), "broker": ("10.42.0.1", 18830),
                       "https": ("10.42.0.1", 443)}}
    client = tmp_path / "client.py"
    client.write_text(CLIENT)
    t0 = time.monotonic()
    res = sh(sys.executable, str(client), json.dumps(job), ns=ns["cl"], timeout=120)
    got = json.loads(res.stdout)
    # every name, the probe hosts and the portal's, is the gateway; so is a hard-coded resolver's answer
    assert set(got["dns"].values()) == {"10.42.0.1"}, got["dns"]
    assert got["dns_hardcoded"] == "10.42.0.1"
    for key in PROBES:
        r = got["http"][key]
        assert r.get("status") == 302 and r["location"] == "http://wifi.store.test/portal", (key, r)
    assert got["http"]["portal"]["status"] == 200
    api = got["http"]["api"]
    assert api["status"] == 200 and api["type"].startswith("application/captive+json")
    assert json.loads(api["body"])["captive"] is True
    assert got["http"]["order"]["status"] == 200 and "text/html" in got["http"]["order"]["type"]
    # off limits: the uplink and staff networks, the gateway's other address, the broker; HTTPS is reset at once
    assert got["connect"]["uplink"] == "timeout"
    assert got["connect"]["staff"] == "timeout"
    assert got["connect"]["gateway-uplink-side"] == "timeout"
    assert got["connect"]["broker"] == "timeout"
    assert got["connect"]["https"] == "ConnectionRefusedError"
    counters = sh("nft", "list", "chain", "inet", "storegw_diners", "forward", ns=ns["gw"]).stdout
    dropped = re.search(r'iifname "ap0" counter packets (\d+)', counters)
    assert dropped and int(dropped.group(1)) > 0, counters  # the forward drop did the work
    assert time.monotonic() - t0 < 60
