"""`storegw install` / `uninstall` into a staging root (--root): the unit it installs scores at most 2.0
with `systemd-analyze security` and verifies cleanly, units are enabled (`systemctl --root`), secrets
are credentials the gateway reads from $CREDENTIALS_DIRECTORY; uninstall keeps the data unless --purge."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from provhelpers import Board, BoardBroker, provision
from realparts import ROOT, GatewayProcess, free_port, wait_for

from gateway import config
from provisioning.checks import MAX_EXPOSURE, check_unit_hardening, exposure

needs_systemd = pytest.mark.skipif(shutil.which("systemd-analyze") is None or shutil.which("systemctl") is None,
                                   reason="systemd is not installed (apt-get install systemd)")


def _stage(tmp_path):
    """A board provisioned inside a staging root, as `provision init --root` makes it."""
    root = tmp_path / "root"
    board = Board(tmp_path)
    board.storegw("provision", "init", "--root", str(root), "--store-id", "sh-001", "--hq-host", "hq.example.com",
                  "--timezone", "Asia/Shanghai")
    return root, board


@needs_systemd
def test_install_into_a_staging_root(tmp_path):
    root, board = _stage(tmp_path)
    res = board.storegw("install", "--root", str(root), "--exe", shutil.which("true"))
    assert "installed" in res.stdout
    unit = root / "etc/systemd/system/storegw.service"
    text = unit.read_text()
    assert f"ExecStart={shutil.which('true')} run --config /etc/storegw/storegw.toml" in text
    for name in ("kek", "hq-key", "mqtt-local"):  # staging: no systemd-creds sealing, plain credentials
        assert f"LoadCredential={name}:/etc/storegw/credentials/{name}" in text
    # hardened: systemd-analyze security on the installed unit, and verify clean
    score, verdict = exposure(unit)
    assert score <= MAX_EXPOSURE and verdict == "OK", (score, verdict)
    assert check_unit_hardening(unit)[0].level == "ok"
    res = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    complaints = [ln for ln in (res.stdout + res.stderr).splitlines() if "storegw.service" in ln]
    assert res.returncode == 0 and not complaints, res.stdout + res.stderr
    assert (root / "etc/systemd/system/multi-user.target.wants/storegw.service").is_symlink()
    # the broker: storegw's include, its password file and ACL
    conf = (root / "etc/mosquitto/conf.d/storegw.conf").read_text()
    assert "allow_anonymous false" in conf and "acl_file /etc/mosquitto/storegw.acl" in conf
    assert "topic read devices/#" in (root / "etc/mosquitto/storegw.acl").read_text()
    assert (root / "etc/mosquitto/storegw.passwd").read_text().count("storegw:$7$") == 1
    assert "SystemMaxUse=" in (root / "etc/systemd/journald.conf.d/storegw.conf").read_text()
    assert (root / "etc/modules-load.d/storegw.conf").exists()
    # the service user reads its config and certificates, never the credentials' directory
    assert (root / "etc/storegw").stat().st_mode & 0o777 == 0o755
    assert (root / "etc/storegw/storegw.toml").stat().st_mode & 0o777 == 0o644
    assert (root / "etc/storegw/credentials").stat().st_mode & 0o777 == 0o700
    # install again: same result, nothing doubled
    board.storegw("install", "--root", str(root), "--exe", shutil.which("true"))
    assert unit.read_text() == text
    # uninstall keeps config, keys and data; --purge removes them
    board.storegw("uninstall", "--root", str(root))
    assert not unit.exists() and not (root / "etc/mosquitto/conf.d/storegw.conf").exists()
    assert not (root / "etc/systemd/system/multi-user.target.wants/storegw.service").exists()
    assert (root / "var/lib/storegw/storegw.db").exists() and (root / "var/lib/storegw-keys/keyring.json").exists()
    assert (root / "etc/storegw/credentials/kek").exists()
    res = board.storegw("uninstall", "--root", str(root), "--purge", check=False)
    assert res.returncode == 2 and "--yes" in res.stderr  # not without confirmation
    board.storegw("uninstall", "--root", str(root), "--purge", "--yes")
    assert not (root / "var/lib/storegw").exists() and not (root / "etc/storegw").exists()


def test_install_needs_provisioning_first(tmp_path):
    root = tmp_path / "root"
    (root / "etc/storegw").mkdir(parents=True)
    (root / "etc/storegw/storegw.toml").write_text('[store]\nid = "sh-001"\n')
    res = Board(tmp_path).storegw("install", "--root", str(root), check=False)
    assert res.returncode == 1 and "storegw provision init" in res.stderr


def test_the_gateway_reads_its_secrets_from_its_credentials(tmp_path, mosquitto_factory, monkeypatch):
    """`storegw run` as systemd starts it: the broker password only in $CREDENTIALS_DIRECTORY."""
    hq = mosquitto_factory("hq")
    port = free_port()
    board = provision(tmp_path, local_port=port, hq_port=hq.port)
    board.storegw("provision", "mosquitto", "--config", str(board.config))
    broker = BoardBroker(board, port).start()
    gw = GatewayProcess(board.config, tmp_path / "gw.log")
    try:
        monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(board.credentials))
        gw.start()
        monkeypatch.delenv("CREDENTIALS_DIRECTORY")
        wait_for(lambda: gw.health()["local_mqtt"]["connected"], timeout=30,
                 what="gateway logged in to the store broker with its credential")
        assert gw.health()["uplink"]["connected"]
    finally:
        gw.stop()
        broker.stop()
    # without the credentials directory the error names it
    res = subprocess.run([sys.executable, "-m", "gateway", "config", "check", str(board.config)],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert res.returncode == 0  # the config itself is valid ...
    cfg = config.load(board.config)
    from gateway.core.errors import ConfigError
    from gateway.spine.mqtt import read_secret

    with pytest.raises(ConfigError, match="CREDENTIALS_DIRECTORY is not set"):
        read_secret(cfg.local_mqtt.password_file, "local_mqtt.password_file")  # ... the secret is the unit's
