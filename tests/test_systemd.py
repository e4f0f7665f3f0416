"""systemd unit and Mosquitto config shipped in systemd/: verified by the real tools."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
from realparts import MOSQUITTO, free_port, wait_for, wait_port

from gateway.spine.mqtt import new_client

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "storegw.service"


def _verify(text: str, tmp_path: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    # The real ExecStart lives under /opt on a board; point a copy at a binary that exists here.
    unit = tmp_path / "storegw.service"
    unit.write_text(text.replace("/opt/storegw/venv/bin/storegw", shutil.which("true") or "/bin/true"))
    return subprocess.run([exe, "verify", str(unit)], capture_output=True, text=True, timeout=60)


def test_unit_verifies_cleanly(tmp_path):
    res = _verify(UNIT.read_text(), tmp_path)
    complaints = [line for line in (res.stdout + res.stderr).splitlines() if "storegw.service" in line]
    assert res.returncode == 0 and not complaints, res.stdout + res.stderr


def test_a_typo_is_caught(tmp_path):
    res = _verify(UNIT.read_text().replace("WatchdogSec=", "WatchdogSecs="), tmp_path)
    assert "Unknown key" in res.stdout + res.stderr


def test_unit_hardening():
    text = UNIT.read_text()
    for directive in ("Type=notify", "WatchdogSec=", "User=storegw", "SupplementaryGroups=dialout",
                      "ProtectSystem=strict", "ReadWritePaths=/var/lib/storegw /var/lib/storegw-keys",
                      "NoNewPrivileges=yes",
                      "LoadCredentialEncrypted=kek:", "PrivateTmp=yes", "ProtectHome=yes", "CapabilityBoundingSet=",
                      "Group=storegw", "Restart=on-failure", "StateDirectory=storegw",
                      "ExecStart=/opt/storegw/venv/bin/storegw run --config /etc/storegw/storegw.toml",
                      "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK"):
        assert any(line.startswith(directive) for line in text.splitlines()), directive


# Device groups (/proc/devices) registered by a loadable driver, and that driver.
_GROUP_DRIVER = {"ttyUSB": "usbserial", "ttyACM": "cdc_acm", "video4linux": "videodev"}


def test_device_groups_exist_when_the_unit_starts():
    """DeviceAllow=char-GROUP is resolved when the unit starts: each driver-registered group is loaded at boot."""
    groups = [line.split("-", 1)[1].split()[0] for line in UNIT.read_text().splitlines()
              if line.startswith("DeviceAllow=char-")]
    assert {"ttyUSB", "ttyACM"} <= set(groups)
    modules = (ROOT / "systemd" / "modules-load.d" / "storegw.conf").read_text().split()
    for group in groups:
        if group in _GROUP_DRIVER:
            assert _GROUP_DRIVER[group] in modules, f"char-{group} needs {_GROUP_DRIVER[group]} loaded at boot"
    assert "systemd-modules-load.service" in next(line for line in UNIT.read_text().splitlines()
                                                  if line.startswith("After="))


def _shipped_mosquitto(tmp_path: Path) -> tuple[subprocess.Popen, int]:
    """Mosquitto with systemd/mosquitto/storegw.conf and the example ACL; users storegw and fridge-1."""
    passwd = shutil.which("mosquitto_passwd")
    if passwd is None:
        pytest.skip("mosquitto_passwd is not installed (apt-get install mosquitto)")
    port = free_port()
    pw = tmp_path / "passwd"
    for user, secret in (("storegw", "gw-secret"), ("fridge-1", "f1-secret")):
        subprocess.run([passwd, *(["-c"] if not pw.exists() else []), "-b", str(pw), user, secret], check=True)
    acl = tmp_path / "acl"
    acl.write_text((ROOT / "systemd" / "mosquitto" / "storegw.acl.example").read_text())
    conf = (ROOT / "systemd" / "mosquitto" / "storegw.conf").read_text()
    conf = (conf.replace("listener 1883 127.0.0.1", f"listener {port} 127.0.0.1")
            .replace("/etc/mosquitto/storegw.passwd", str(pw)).replace("/etc/mosquitto/storegw.acl", str(acl))
            .replace("/var/lib/mosquitto/", f"{tmp_path}/"))
    (tmp_path / "m.conf").write_text(conf + "\nuser root\n")
    proc = subprocess.Popen([MOSQUITTO, "-c", str(tmp_path / "m.conf")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc, port


def test_a_device_cannot_take_the_gateways_client_id(tmp_path):
    """bench/attack.py: fridge-1 connected with the gateway's client id and a clean session; Mosquitto
    dropped the gateway and discarded its persistent session (what was queued for it)."""
    proc, port = _shipped_mosquitto(tmp_path)
    drops: list[int] = []
    got: list[str] = []
    try:
        gw = new_client("storegw-sh-001-local", clean=False)
        gw.username_pw_set("storegw", "gw-secret")
        gw.on_message = lambda c, u, m: got.append(m.topic)
        gw.on_disconnect = lambda *a: drops.append(1)
        gw.connect("127.0.0.1", port)
        gw.subscribe("devices/+/telemetry", qos=1)
        gw.loop_start()
        time.sleep(0.5)
        thief = new_client("storegw-sh-001-local", clean=True)
        thief.username_pw_set("fridge-1", "f1-secret")
        thief.connect("127.0.0.1", port)
        thief.loop_start()
        time.sleep(0.5)
        thief.publish("devices/fridge-1/telemetry", b'{"temp_c": 4}', qos=1).wait_for_publish(5)
        wait_for(lambda: got, timeout=10, what="the gateway still receives")
        assert not drops
        for c in (gw, thief):
            c.loop_stop()
            c.disconnect()
    finally:
        proc.terminate()
        proc.wait(5)


def test_mosquitto_config_enforces_per_device_acl(tmp_path):
    proc, port = _shipped_mosquitto(tmp_path)
    try:
        got: list[str] = []
        gw = new_client("gw", clean=True)
        gw.username_pw_set("storegw", "gw-secret")
        gw.on_message = lambda c, u, m: got.append(m.topic)
        gw.connect("127.0.0.1", port)
        gw.subscribe("devices/#", qos=1)
        gw.loop_start()
        dev = new_client("fridge-1", clean=True)
        dev.username_pw_set("fridge-1", "f1-secret")
        dev.connect("127.0.0.1", port)
        dev.loop_start()
        time.sleep(0.5)
        dev.publish("devices/fridge-2/telemetry", b'{"temp_c": 99}', qos=1).wait_for_publish(5)  # not its own
        dev.publish("devices/fridge-1/telemetry", b'{"temp_c": 4}', qos=1).wait_for_publish(5)
        wait_for(lambda: "devices/fridge-1/telemetry" in got, timeout=10, what="own topic delivered")
        time.sleep(0.3)
        assert got == ["devices/fridge-1/telemetry"]
        anon = new_client("anon", clean=True)
        anon.connect("127.0.0.1", port)
        rc = []
        anon.on_connect = lambda c, u, f, reason, p=None: rc.append(reason)
        anon.loop_start()
        wait_for(lambda: rc, timeout=10, what="anonymous refused")
        assert rc[0].is_failure
        for c in (gw, dev, anon):
            c.loop_stop()
    finally:
        proc.terminate()
        proc.wait(5)


