"""`storegw provision init` by flags: keys made on the board, a valid config, safe to run again,
--force moves the old keys aside, a CSR HQ can sign and a certificate that must match the board's key."""

from __future__ import annotations

import os
import stat

from cryptography import x509
from provhelpers import Board, provision

from gateway import config
from gateway.hq.claims import Authority


def _snapshot(board: Board) -> dict[str, bytes]:
    files = [*board.credentials.iterdir(), board.data.with_name("data-keys") / "keyring.json",
             board.data / "storegw.db"]
    return {p.name: p.read_bytes() for p in files if p.is_file()}


def test_init_by_flags_makes_keys_and_a_valid_config(tmp_path):
    board = provision(tmp_path, fresh=True)
    cfg = config.load(board.config)  # what `storegw run` accepts
    assert cfg.store.id == "sh-001" and cfg.store.timezone == "Asia/Shanghai"
    assert cfg.local_mqtt.password_file == "${CREDENTIALS_DIRECTORY}/mqtt-local"
    assert cfg.keys_path == tmp_path / "data-keys"
    for name in ("kek", "hq-key", "mqtt-local"):
        mode = stat.S_IMODE((board.credentials / name).stat().st_mode)
        assert mode == 0o600, (name, oct(mode))
    assert stat.S_IMODE(board.credentials.stat().st_mode) == 0o700
    # no secret in the config file
    text = board.config.read_text()
    for name in ("kek", "mqtt-local"):
        assert (board.credentials / name).read_text().strip() not in text
    # the keyring is sealed with the credential kek and holds the database key
    res = board.storegw("keys", "status", "--config", str(board.config))
    assert "credential kek" in res.stdout, res.stdout
    # the CSR names the store and carries the board's key; HQ can sign it
    csr = x509.load_pem_x509_csr((tmp_path / "etc" / "hq.csr").read_bytes())
    assert csr.subject.rfc4514_string() == "CN=sh-001" and csr.is_signature_valid
    assert "PRIVATE" not in (tmp_path / "etc" / "hq.csr").read_text()


def test_running_again_keeps_every_key_and_force_moves_them_aside(tmp_path):
    board = provision(tmp_path)
    before = _snapshot(board)
    board.storegw("provision", "init", "--config", str(board.config), "--store-name", "People's Square")
    assert _snapshot(board) == before  # nothing regenerated
    assert config.load(board.config).store.name == "People's Square"
    assert config.load(board.config).local_mqtt.broker_acl_file.endswith("mosquitto/acl")  # other keys kept
    board.storegw("provision", "init", "--config", str(board.config), "--force")
    after = _snapshot(board)
    assert after["kek"] != before["kek"] and after["hq-key"] != before["hq-key"]
    aside = [p.name for p in board.credentials.iterdir() if ".bak-" in p.name]
    assert {n.split(".bak-")[0] for n in aside} == {"kek", "hq-key", "mqtt-local"}
    old_kek = next(p for p in board.credentials.iterdir() if p.name.startswith("kek.bak-"))
    assert old_kek.read_bytes() == before["kek"]  # backed up, not lost
    assert any(p.name.startswith("data.bak-") for p in tmp_path.iterdir())  # the data its old key opens, too


def test_no_prompt_without_a_terminal_names_the_missing_flag(tmp_path):
    board = Board(tmp_path)
    res = board.storegw("provision", "init", "--config", str(board.config), "--data-dir", str(board.data),
                        "--hq-host", "hq.example.com", check=False)
    assert res.returncode == 2 and "--store-id is required" in res.stderr
    res = board.storegw("provision", "init", "--config", str(board.config), "--data-dir", str(board.data),
                        "--store-id", "sh-001", "--hq-host", "hq", "--timezone", "Mars/Olympus", check=False)
    assert res.returncode == 2 and "IANA" in res.stderr
    assert not board.config.exists()


def test_a_certificate_is_imported_only_for_this_boards_key(tmp_path):
    board = provision(tmp_path / "a", fresh=True)
    other = provision(tmp_path / "b", fresh=True)
    hq = Authority(tmp_path / "hq")
    board.storegw("hq", "sign", str(tmp_path / "a" / "etc" / "hq.csr"), "--store", "sh-001", "--dir",
                  str(tmp_path / "hq"), "--out", str(tmp_path / "mine.crt"))  # what HQ runs
    mine = (tmp_path / "mine.crt").read_text()
    wrong = board.storegw("hq", "sign", str(tmp_path / "a" / "etc" / "hq.csr"), "--store", "sh-002", "--dir",
                          str(tmp_path / "hq"), check=False)
    assert wrong.returncode == 1 and "not for store sh-002" in wrong.stderr
    theirs = hq.sign((tmp_path / "b" / "etc" / "hq.csr").read_text(), "sh-001")
    (tmp_path / "theirs.crt").write_text(theirs)
    res = board.storegw("provision", "init", "--config", str(board.config), "--cert", str(tmp_path / "theirs.crt"),
                        "--hq-ca", str(hq.ca_cert_path), check=False)
    assert res.returncode == 1 and "not for this board's key" in res.stderr
    board.storegw("provision", "init", "--config", str(board.config), "--cert", str(tmp_path / "mine.crt"),
                  "--hq-ca", str(hq.ca_cert_path))
    cfg = config.load(board.config)
    assert cfg.uplink.cert_file == str(tmp_path / "a" / "etc" / "hq.crt")
    assert cfg.uplink.key_file == "${CREDENTIALS_DIRECTORY}/hq-key"
    assert cfg.uplink.ca_file == str(tmp_path / "a" / "etc" / "hq-ca.crt")
    assert other.config.exists()
    # the renewal CSR comes from the same key
    res = board.storegw("provision", "csr", "--config", str(board.config))
    assert x509.load_pem_x509_csr(res.stdout.encode()).public_key() == x509.load_pem_x509_certificate(
        mine.encode()).public_key()
    assert os.environ.get("CREDENTIALS_DIRECTORY") is None  # the CLI's borrowing never leaks into this process


def test_on_a_terminal_it_asks_for_what_is_missing(tmp_path):
    """A real pseudo-terminal as stdin: the three questions, answered as a technician types them."""
    import pty
    import subprocess
    import sys

    from realparts import ROOT

    master, slave = pty.openpty()
    board = Board(tmp_path)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "gateway", "provision", "init", "--config", str(board.config),
                                 "--data-dir", str(board.data), "--time-server", ""], stdin=slave,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                                env={**os.environ, "CREDENTIALS_DIRECTORY": ""})
        os.write(master, b"sh-007\nhq.example.com\nEurope/Paris\n")
        out, err = proc.communicate(timeout=120)
    finally:
        os.close(master)
        os.close(slave)
    assert proc.returncode == 0, out + err
    assert "Store id" in out and "HQ broker host" in out and "Time zone" in out
    cfg = config.load(board.config)
    assert (cfg.store.id, cfg.uplink.host, cfg.store.timezone) == ("sh-007", "hq.example.com", "Europe/Paris")
