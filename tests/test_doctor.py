"""`storegw doctor` with real parts: real Mosquitto brokers (one requiring a login), real SQLCipher
files (a wrong key, a key file others can read), a missing serial port, a pty that exists."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys

from realparts import ROOT, Mosquitto, config_text, free_port, wait_for


def _doctor(cfg, *extra, env=None):
    return subprocess.run([sys.executable, "-m", "gateway", "doctor", "--config", str(cfg), "--timeout", "3",
                           *extra], capture_output=True, text=True, timeout=90, cwd=ROOT,
                          env={**os.environ, **(env or {})})


def _findings(res):
    return {(f["check"], f["level"]): f for f in json.loads(res.stdout)["findings"]}


def test_a_healthy_store_passes(mosquitto_factory, tmp_path):
    local, hq = mosquitto_factory("local"), mosquitto_factory("hq")
    master, slave = pty.openpty()
    try:
        cfg = tmp_path / "c.toml"
        scanner = f'[[devices]]\nid = "scanner-1"\nkind = "scanner"\nport = "{os.ttyname(slave)}"\n'
        cfg.write_text(config_text(tmp_path / "data", local_port=local.port, hq_port=hq.port, web_port=free_port(),
                                   extra=scanner))
        res = _doctor(cfg)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "local broker" in res.stdout and "connected and subscribed" in res.stdout
        assert "device scanner-1" in res.stdout and "warning" in res.stdout  # storegw itself is not running
        found = _findings(_doctor(cfg, "--json"))
        assert ("HQ", "ok") in found and ("db key", "ok") in found and ("clock", "ok") in found
        assert ("service", "warn") in found and ("backups", "warn") in found  # none yet
        assert not (tmp_path / "data" / "storegw.db").exists()  # doctor changes nothing
    finally:
        os.close(master)
        os.close(slave)


def test_problems_are_named_with_their_fix(mosquitto_factory, tmp_path):
    from gateway.store import open_store

    hq = mosquitto_factory("hq")
    store = open_store(tmp_path / "data")  # a database made with one key ...
    store.close()
    (tmp_path / "data" / "db.key").chmod(0o644)
    cfg = tmp_path / "c.toml"
    cfg.write_text(config_text(tmp_path / "data", local_port=free_port(), hq_port=hq.port, web_port=free_port(),
                               extra='[[devices]]\nid = "printer-1"\nkind = "escpos"\nport = "/dev/ttyUSB-nope"\n'))
    res = _doctor(cfg, "--json")
    assert res.returncode == 1, res.stdout + res.stderr
    found = _findings(res)
    assert "chmod 600" in found[("db key", "FAIL")]["fix"]
    assert "Connection refused" in found[("local broker", "FAIL")]["text"]
    assert "Mosquitto" in found[("local broker", "FAIL")]["fix"]
    assert "/dev/serial/by-id" in found[("device printer-1", "FAIL")]["fix"]
    # ... opened with another: the wrong key is named, and the file is not touched
    before = (tmp_path / "data" / "storegw.db").read_bytes()
    res = _doctor(cfg, env={"STOREGW_DB_KEY": "0" * 64})
    assert res.returncode == 1
    assert "does not open" in res.stdout and "$STOREGW_DB_KEY" in res.stdout
    assert (tmp_path / "data" / "storegw.db").read_bytes() == before


def test_a_wrong_broker_password_is_caught(tmp_path):
    """Mosquitto with logins required (as systemd/mosquitto/storegw.conf has it) and a wrong password."""
    broker = Mosquitto(tmp_path / "mosq")
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(tmp_path / "passwd"), "storegw", "right"], check=True,
                   capture_output=True, timeout=30)
    conf = broker.conf.read_text().replace("allow_anonymous true", "allow_anonymous false")
    broker.conf.write_text(conf + f"password_file {tmp_path / 'passwd'}\n")
    broker.start()
    try:
        (tmp_path / "pw").write_text("Xq7-not-it\n")
        cfg = tmp_path / "c.toml"
        text = config_text(tmp_path / "data", local_port=broker.port, hq_port=free_port(), web_port=free_port())
        cfg.write_text(text.replace("[local_mqtt]\n", f'[local_mqtt]\nusername = "storegw"\n'
                                                       f'password_file = "{tmp_path / "pw"}"\n'))
        res = _doctor(cfg, "--json")
        assert res.returncode == 1
        fail = _findings(res)[("local broker", "FAIL")]
        assert "local_mqtt.username" in fail["fix"], fail
        assert "Xq7-not-it" not in res.stdout  # the password is never printed
        (tmp_path / "pw").write_text("right\n")
        assert ("local broker", "ok") in _findings(_doctor(cfg, "--json"))
    finally:
        broker.stop()


def test_an_invalid_config_exits_2(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[store]\nid = "sh-001"\ndata_dir = "/tmp/x"\n[uplink]\nhots = "hq"\n')
    res = _doctor(cfg)
    assert res.returncode == 2 and "did you mean `host`" in res.stderr


def test_a_unit_not_enabled_at_boot_is_a_failure(tmp_path, monkeypatch):
    """systemd cannot run in this container: a stand-in `systemctl` answers as a board's would."""
    from provisioning import doctor

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    state = tmp_path / "state"
    script = bin_dir / "systemctl"
    script.write_text(f'#!/bin/sh\ncat "{state}"\n[ "$(cat "{state}")" = enabled ]\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(doctor, "SYSTEMD_RUN", tmp_path)
    state.write_text("disabled\n")
    [finding] = doctor.check_unit()
    assert finding.level == doctor.FAIL and "disabled" in finding.text and "systemctl enable" in finding.fix
    state.write_text("enabled\n")
    assert doctor.check_unit()[0].level == doctor.OK
    monkeypatch.setattr(doctor, "SYSTEMD_RUN", tmp_path / "absent")
    assert doctor.check_unit() == []  # not a systemd system: nothing to say


def test_a_running_gateway_is_asked_not_impersonated(mosquitto_factory, gateway_process, tmp_path):
    """The shipped Mosquitto configuration ties client ids to users (``use_username_as_clientid``): signing in as
    the gateway's user while it runs would take over its session. The doctor asks the running gateway."""
    local, hq = mosquitto_factory("local"), mosquitto_factory("hq")
    cfg = tmp_path / "c.toml"
    cfg.write_text(config_text(tmp_path / "data", local_port=local.port, hq_port=hq.port, web_port=free_port()))
    gw = gateway_process(cfg).start()
    wait_for(lambda: gw.health()["local_mqtt"]["connected"], timeout=30, what="the gateway subscribed")
    found = _findings(_doctor(cfg, "--json"))
    assert found[("local broker", "ok")]["text"].endswith("the running gateway is connected and subscribed")
    local.stop()
    wait_for(lambda: not gw.health()["local_mqtt"]["connected"], timeout=30, what="the gateway sees the broker gone")
    found = _findings(_doctor(cfg, "--json"))
    assert "the running gateway is not connected" in found[("local broker", "FAIL")]["text"]
