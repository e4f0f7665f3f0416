"""`storegw doctor` on a provisioned board: it passes, then names each injected fault with its fix, one
test per fault: broker down, a device unplugged, disk full, wrong database key, clock skew, certificate
expired, ACL missing a device. Real parts: Mosquitto with the generated accounts, a pty behind a
by-id link, a full tmpfs (in a private mount namespace), another board's database, a real SNTP
exchange with a server whose clock is two minutes ahead, a certificate signed by the HQ CA."""

from __future__ import annotations

import datetime as dt
import os
import pty
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest
from provhelpers import BoardBroker, provision
from realparts import ROOT, free_port

from gateway.hq.claims import Authority
from provisioning.checks import NTP_EPOCH


@pytest.fixture
def board(tmp_path, mosquitto_factory):
    """A provisioned board with its broker running (generated accounts) and HQ reachable."""
    hq = mosquitto_factory("hq")
    port = free_port()
    b = provision(tmp_path, local_port=port, hq_port=hq.port)
    b.accounts("fridge-1")
    b.broker = BoardBroker(b, port).start()
    yield b
    b.broker.stop()


def test_a_provisioned_board_passes(board):
    code, found, out = board.doctor()  # the command, as the technician runs it
    assert code == 0, out
    for check in ("local broker", "HQ", "keys", "db key", "database", "broker ACL"):
        assert (check, "ok") in found, (check, out)


def test_broker_down(board):
    board.broker.stop()
    found = board.checks()
    f = found[("local broker", "FAIL")]
    assert "Connection refused" in f.text and "systemctl enable --now mosquitto" in f.fix


def test_a_device_unplugged(board, tmp_path):
    master, slave = pty.openpty()
    by_id = tmp_path / "serial" / "by-id" / "usb-1a86_USB_Serial-if00-port0"
    by_id.parent.mkdir(parents=True)
    by_id.symlink_to(os.ttyname(slave))
    try:
        with board.config.open("a") as fh:
            fh.write(f'\n[[devices]]\nid = "scanner-1"\nkind = "scanner"\nport = "{by_id}"\n')
        assert ("device scanner-1", "ok") in board.checks()
        by_id.unlink()  # udev removes the by-id link when it is unplugged
        found = board.checks()
        f = found[("device scanner-1", "FAIL")]
        assert "does not exist" in f.text and "plugged in?" in f.fix and "/dev/serial/by-id" in f.fix
    finally:
        os.close(master)
        os.close(slave)


def test_disk_full(board, tmp_path):
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare to mount a small tmpfs in a private mount namespace")
    full = tmp_path / "full"
    full.mkdir()
    board.edit(store={"data_dir": str(full)}, keys={"dir": str(board.data.with_name("data-keys"))})
    cmd = (f"mount -t tmpfs -o size=2m tmpfs {full} && dd if=/dev/zero of={full}/filler bs=64k count=31 "
           f"2>/dev/null; exec {sys.executable} -m gateway doctor --config {board.config} --timeout 3")
    res = subprocess.run(["unshare", "-m", "sh", "-c", cmd], capture_output=True, text=True, timeout=120, cwd=ROOT,
                         env=board.env())
    if "mount:" in res.stderr:
        pytest.skip(f"cannot mount here: {res.stderr.strip()}")
    assert res.returncode == 1, res.stdout + res.stderr
    line = next(ln for ln in res.stdout.splitlines() if ln.split()[:2] == ["FAIL", "disk"])
    assert "MiB free" in line
    assert "free disk space" in res.stdout.split(line, 1)[1].splitlines()[1]


def test_wrong_database_key(board, tmp_path):
    other = provision(tmp_path / "other", fresh=True)  # another board: its own keys, its own database
    for name in ("storegw.db", "storegw.db.keycheck"):
        shutil.copy(other.data / name, board.data / name)
    found = board.checks()
    f = found[("database", "FAIL")]
    assert "does not open" in f.text and "the key this database was made with" in f.fix


class _SntpServer:
    """A real SNTP server on loopback whose clock is ``ahead`` seconds ahead of this machine's."""

    def __init__(self, ahead: float) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.ahead = ahead
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _ts(self) -> bytes:
        t = time.time() + self.ahead + NTP_EPOCH
        return struct.pack("!II", int(t), int((t % 1) * 2**32))

    def _serve(self) -> None:
        while True:
            try:
                data, addr = self.sock.recvfrom(512)
            except OSError:
                return
            recv = self._ts()
            reply = bytearray(48)
            reply[0] = 0x24  # version 4, mode 4 (server)
            reply[1] = 2  # stratum
            reply[24:32] = data[40:48]  # originate = the client's transmit time
            reply[32:40] = recv
            reply[40:48] = self._ts()
            self.sock.sendto(bytes(reply), addr)

    def close(self) -> None:
        self.sock.close()


def test_clock_skew(board):
    good, ahead = _SntpServer(0.0), _SntpServer(120.0)
    try:
        board.edit(store={"time_server": f"127.0.0.1:{good.port}"})
        found = board.checks()
        assert ("clock skew", "ok") in found and not any(level == "FAIL" for _, level in found), found
        board.edit(store={"time_server": f"127.0.0.1:{ahead.port}"})
        found = board.checks()
        f = found[("clock skew", "FAIL")]
        assert "s behind" in f.text and "timedatectl set-ntp true" in f.fix
        assert 119 < float(f.text.split("the clock is ")[1].split(" s")[0]) < 121
    finally:
        good.close()
        ahead.close()


def test_certificate_expired(board, tmp_path):
    hq = Authority(tmp_path / "hq")
    csr = (tmp_path / "etc" / "hq.csr").read_text()
    stale = hq.sign(csr, "sh-001", days=365, not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=366))
    (tmp_path / "etc" / "hq.crt").write_text(stale)
    board.edit(uplink={"cert_file": str(tmp_path / "etc" / "hq.crt"), "key_file": "${CREDENTIALS_DIRECTORY}/hq-key"})
    found = board.checks()
    f = found[("certificate", "FAIL")]
    assert "expired on" in f.text and "storegw provision csr" in f.fix and "storegw hq sign" in f.fix
    fresh = hq.sign(csr, "sh-001")
    (tmp_path / "etc" / "hq.crt").write_text(fresh)
    assert ("certificate", "ok") in board.checks()


def test_acl_missing_a_device(board, tmp_path):
    board.accounts("fryer-1")
    acl = tmp_path / "mosquitto" / "acl"
    acl.write_text(acl.read_text().replace("user fryer-1\ntopic write devices/fryer-1/#\n", ""))
    found = board.checks()
    f = found[("broker ACL", "FAIL")]
    assert "fryer-1" in f.text and "storegw provision mosquitto" in f.fix
    board.storegw("provision", "mosquitto", "--config", str(board.config))  # the fix it names
    assert ("broker ACL", "ok") in board.checks()


def test_config_the_service_user_cannot_read():
    """Doctor as root would not notice: the service's own user must read its config and write its data.
    `nobody` stands in for the storegw user (creating a user would change this machine)."""
    import pwd
    import tempfile
    from pathlib import Path

    from gateway import config
    from provisioning.checks import check_service_access

    if os.geteuid() != 0:
        pytest.skip("needs root to chown to another user")
    top = Path(tempfile.mkdtemp(prefix="storegw-access-"))  # under /tmp, which others may search
    try:
        top.chmod(0o755)
        board = provision(top / "board")
        (top / "board").chmod(0o755)
        cfg = config.load(board.config)
        (top / "board" / "etc").chmod(0o700)
        fails = [f for f in check_service_access(cfg, user="nobody") if f.level == "FAIL"]
        assert any(str(board.config) in f.text and "cannot read" in f.text for f in fails), fails
        assert "storegw install" in fails[0].fix
        (top / "board" / "etc").chmod(0o755)
        nobody = pwd.getpwnam("nobody")
        for d in (board.data, board.data.with_name("data-keys")):
            for p in [d, *d.rglob("*")]:
                os.chown(p, nobody.pw_uid, nobody.pw_gid)
        assert [f.level for f in check_service_access(cfg, user="nobody")] == ["ok"]
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_registry_equipment_without_an_account(board, tmp_path):
    """Equipment imported into the registry but never given a broker account: its readings are refused."""
    (tmp_path / "eq.csv").write_text("device_id,kind,brand\nfridge-1,fridge,Haier\noven-1,oven,Rational\n")
    board.storegw("equipment", "import", str(tmp_path / "eq.csv"), "--config", str(board.config))
    found = board.checks()
    f = found[("broker ACL", "warn")]
    assert "oven-1" in f.text and "storegw equipment add oven-1" in f.fix
    assert "fridge-1" not in f.text  # it has its account
    board.accounts("oven-1")
    assert ("broker ACL", "ok") in board.checks()
