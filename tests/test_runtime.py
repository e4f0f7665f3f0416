"""The running gateway: health (C5), `storegw status`, `hq watch`, systemd notify and watchdog,
MQTT 5 and TLS with client certificates to HQ, and the demo."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys
import time

import pytest
from realparts import ROOT, equipment, wait_for

from gateway.hq.watch import HQCollector

pytestmark = pytest.mark.slow


def _cli(*args: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, **kw)


def test_health_status_and_hq_watch(mosquitto_factory, write_config, gateway_process):
    local = mosquitto_factory("local")
    hq = mosquitto_factory("hq")
    cfg = write_config(local_port=local.port, hq_port=hq.port)
    gw = gateway_process(cfg).start()
    watcher = subprocess.Popen([sys.executable, "-m", "gateway", "hq", "watch", "--port", str(hq.port),
                                "--count", "1"], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    h = wait_for(lambda: (doc := gw.health())["uplink"]["connected"] and doc, timeout=20, what="uplink")
    assert h["status"] == "ok"
    assert set(h["outbox"]) == {"alerts", "orders", "summaries", "bulk"}
    assert {"depth", "oldest_age_s", "bytes"} <= set(h["outbox"]["alerts"])
    assert {"rate_per_s", "invalid", "dropped", "committed"} <= set(h["ingest"])
    assert h["db"]["ok"] is True and h["version"]
    res = _cli("status", "--config", str(cfg))
    assert res.returncode == 0, res.stderr
    assert "status OK" in res.stdout and "uplink   connected" in res.stdout
    res = _cli("status", "--config", str(cfg), "--json")
    assert json.loads(res.stdout)["store"] == "sh-001"
    out, _ = watcher.communicate(timeout=30)
    assert "storegw/v1/sh-001/status" in out  # the retained birth message
    gw.stop()
    res = _cli("status", "--config", str(cfg))
    assert res.returncode == 1 and "not answering" in res.stderr


def test_systemd_notify_ready_and_watchdog(mosquitto_factory, write_config, gateway_process, tmp_path):
    local = mosquitto_factory("local")
    hq = mosquitto_factory("hq")
    cfg = write_config(local_port=local.port, hq_port=hq.port)
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(1.0)
    os.environ["NOTIFY_SOCKET"] = str(sock_path)
    os.environ["WATCHDOG_USEC"] = "2000000"
    try:
        gw = gateway_process(cfg).start()
    finally:
        del os.environ["NOTIFY_SOCKET"], os.environ["WATCHDOG_USEC"]
    seen: set[str] = set()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not {"READY=1", "WATCHDOG=1"} <= seen:
        try:
            seen.update(sock.recv(1024).decode().split("\n"))
        except TimeoutError:
            pass
    assert {"READY=1", "WATCHDOG=1"} <= seen
    gw.stop()
    sock.close()


def _make_ca(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("test-ca")).issuer_name(name("test-ca"))
          .public_key(ca_key.public_key()).serial_number(1).not_valid_before(now - dt.timedelta(days=1))
          .not_valid_after(now + dt.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))

    def issue(cn, serial, server):
        key = ec.generate_private_key(ec.SECP256R1())
        b = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca.subject).public_key(key.public_key())
             .serial_number(serial).not_valid_before(now - dt.timedelta(days=1))
             .not_valid_after(now + dt.timedelta(days=2)))
        if server:
            b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        cert = b.sign(ca_key, hashes.SHA256())
        cpath, kpath = tmp_path / f"{cn}.crt", tmp_path / f"{cn}.key"
        cpath.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        kpath.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
        return cpath, kpath

    ca_path = tmp_path / "ca.crt"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return ca_path, issue("localhost", 2, True), issue("sh-001", 3, False)


def test_mqtt5_and_mutual_tls_to_hq(mosquitto_factory, write_config, gateway_process, tmp_path):
    local = mosquitto_factory("local")
    hq = mosquitto_factory("hq")  # plain listener for the test's HQ consumer
    ca, (srv_crt, srv_key), (cli_crt, cli_key) = _make_ca(tmp_path)
    from realparts import free_port

    tls_port = free_port()
    hq.stop()
    with open(hq.conf, "a") as fh:
        fh.write(f"\nlistener {tls_port} 127.0.0.1\ncafile {ca}\ncertfile {srv_crt}\nkeyfile {srv_key}\n"
                 "require_certificate true\nuse_identity_as_username true\n")
    hq.start()
    from realparts import wait_port

    wait_port(tls_port)
    uplink = (f'ca_file = "{ca}"\ncert_file = "{cli_crt}"\nkey_file = "{cli_key}"\nprotocol = "5"\n')
    cfg = write_config(local_port=local.port, hq_port=tls_port, uplink=uplink)
    text = cfg.read_text().replace('host = "127.0.0.1"\nport = ' + str(tls_port), 'host = "localhost"\nport = '
                                   + str(tls_port)).replace("tls = false", "tls = true")
    cfg.write_text(text)
    collector = HQCollector("127.0.0.1", hq.port, client_id="hq-tls").start()
    gw = gateway_process(cfg).start()
    wait_for(lambda: gw.health()["uplink"]["connected"], timeout=20, what="TLS uplink")
    pub = equipment(local.port, "fridge")
    old = int(time.time() * 1000) - 120_000
    for i in range(5):
        pub.publish("devices/fridge-1/telemetry", json.dumps({"ts": old + i, "temp_c": 4}), qos=1).wait_for_publish(5)
    wait_for(lambda: collector.summary_count("temp_c") == 5, timeout=20, what="summary over mTLS + MQTT 5")
    pub.loop_stop()
    collector.stop()


def test_demo_runs_and_stops_cleanly():
    res = _cli("demo", "--duration", "8", timeout=90)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "storegw demo: data in" in res.stderr
    assert "ingest" in res.stderr and "stopped" in res.stderr
