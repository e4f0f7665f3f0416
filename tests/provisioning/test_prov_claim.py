"""Claim codes: `storegw hq claim` issues one, `storegw hq provisioner` answers over a real Mosquitto,
`storegw provision init --claim` gets the certificate and the store's config. Only the CSR leaves the
board (every message on the broker is recorded and searched), a code works once, and expires."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest
from cryptography import x509
from provhelpers import Board
from realparts import ROOT

from gateway import config
from gateway.hq import claims
from gateway.spine.mqtt import new_client


def _spy(port: int) -> tuple[list[tuple[str, bytes]], object]:
    seen: list[tuple[str, bytes]] = []
    ready = threading.Event()
    c = new_client("spy", clean=True)
    c.on_message = lambda cl, u, m: seen.append((m.topic, m.payload))
    c.on_subscribe = lambda *a, **k: ready.set()
    c.connect("127.0.0.1", port)
    c.subscribe("#", qos=1)
    c.loop_start()
    assert ready.wait(10)
    return seen, c


def _claim(board: Board, port: int, code: str, store: str = "sh-001") -> subprocess.CompletedProcess:
    return board.storegw("provision", "init", "--config", str(board.config), "--data-dir", str(board.data),
                         "--store-id", store, "--hq-host", "127.0.0.1", "--hq-port", str(port), "--no-hq-tls",
                         "--claim", code, "--claim-timeout", "10", "--time-server", "", check=False)


def test_a_claim_code_provisions_a_board_once(mosquitto_factory, tmp_path):
    hq_broker = mosquitto_factory("hq")
    hq_dir = tmp_path / "hq"
    res = subprocess.run([sys.executable, "-m", "gateway", "hq", "claim", "--store", "sh-001", "--name", "Bund",
                          "--timezone", "Asia/Shanghai", "--hq-host", "127.0.0.1", "--hq-port", str(hq_broker.port),
                          "--no-tls", "--dir", str(hq_dir)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert res.returncode == 0, res.stderr
    code = res.stdout.split(": ")[1].split()[0]
    assert len(code) == 14 and "--claim " + code in res.stdout
    prov = subprocess.Popen([sys.executable, "-m", "gateway", "hq", "provisioner", "--port", str(hq_broker.port),
                             "--count", "2", "--dir", str(hq_dir)], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    seen, spy = _spy(hq_broker.port)
    try:
        time.sleep(1.0)  # the provisioner subscribes
        board = Board(tmp_path / "board")
        res = _claim(board, hq_broker.port, code.lower().replace("-", " "))  # as typed, any case
        assert res.returncode == 0, res.stdout + res.stderr
        cfg = config.load(board.config)
        assert (cfg.store.id, cfg.store.name, cfg.uplink.port, cfg.uplink.enabled) == \
            ("sh-001", "Bund", hq_broker.port, True)
        cert = x509.load_pem_x509_certificate((board.dir / "etc" / "hq.crt").read_bytes())
        ca = x509.load_pem_x509_certificate((hq_dir / "ca.crt").read_bytes())
        cert.verify_directly_issued_by(ca)
        assert cert.subject.rfc4514_string() == "CN=sh-001"
        # used once: a second board with the same code is refused, and nothing is written for it
        second = Board(tmp_path / "second")
        res = _claim(second, hq_broker.port, code)
        assert res.returncode == 1 and "already used" in res.stderr, res.stderr
        assert not second.config.exists()
        prov.wait(20)
    finally:
        spy.loop_stop()
        if prov.poll() is None:
            prov.kill()
            prov.wait()
    # only the CSR left the board: no private key, no secret, not even the code itself
    secrets_on_board = [p.read_text().strip() for p in board.credentials.iterdir()]
    requests = [(t, p) for t, p in seen if t.endswith("/request")]
    assert len(requests) == 2
    for _topic, payload in seen:
        text = payload.decode()
        assert "PRIVATE KEY" not in text and claims.normalise(code) not in text.replace("-", "")
        assert not any(s in text for s in secrets_on_board if len(s) > 20)
    assert set(json.loads(requests[0][1])) == {"nonce", "proof", "csr"}


def test_an_expired_or_wrong_code_is_refused(tmp_path):
    auth = claims.Authority(tmp_path / "hq")
    code = auth.issue("sh-001", {"store": {"id": "sh-001"}}, ttl=-1)  # already past its 15 minutes
    csr = "-----BEGIN CERTIFICATE REQUEST-----\n"
    cid, nonce = claims.claim_id(code), "a" * 32
    with pytest.raises(claims.ClaimError, match="expired"):
        auth.redeem(cid, nonce, claims.proof(code, csr, nonce), csr)
    with pytest.raises(claims.ClaimError, match="wrong claim code"):
        auth.redeem(cid, nonce, claims.proof("WRONG-CODE-0000", csr, nonce), csr)
    stored = json.loads((tmp_path / "hq" / "claims.json").read_text())
    assert stored[cid]["used"] is None  # a refused attempt does not consume it
    assert (tmp_path / "hq" / "claims.json").stat().st_mode & 0o077 == 0
