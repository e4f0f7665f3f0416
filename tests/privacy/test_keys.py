"""Keys and field encryption with real SQLCipher files: the keyring and its KEK sources, field
ciphertexts, blind indexes that confirm nothing without the keyring, offline rotation, backups
across a rotation, `storegw keys status`, doctor, private file modes."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from realparts import ROOT

from gateway.privacy import fields as F
from gateway.privacy.keys import (
    KIND_BOARD,
    KIND_CREDENTIAL,
    KIND_FILE,
    Keyring,
    KeyringError,
    current_db_key,
    database_key,
    keys_dir_for,
)
from gateway.store.db import DB_NAME, connect, opens, resolve_key


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})


@pytest.fixture
def kd(tmp_path, monkeypatch) -> Path:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.delenv("STOREGW_DB_KEY", raising=False)
    return tmp_path / "data-keys"


# -- the keyring and its KEK


def test_keyring_is_private_and_reopens(kd):
    ring = Keyring.open(kd)
    assert ring.kek.kind == KIND_FILE
    assert _mode(kd) == 0o700 and _mode(kd / "keyring.json") == 0o600 and _mode(kd / "kek") == 0o600
    again = Keyring.open(kd, create=False)
    assert again.field_keys() == ring.field_keys()
    assert again.index_key("phone") == ring.index_key("phone") != ring.index_key("id_number")
    doc = json.loads((kd / "keyring.json").read_text())
    for e in ring.entries():  # wrapped: no key appears in the file in any usual encoding
        for enc in (e.raw.hex(), base64.b64encode(e.raw).decode()):
            assert enc not in (kd / "keyring.json").read_text()
    assert {k["purpose"] for k in doc["keys"]} == {"field", "index", "signing"}


def test_default_keys_dir_is_a_sibling_of_the_data_dir(tmp_path):
    from gateway.config import parse

    assert keys_dir_for(Path("/var/lib/storegw")) == Path("/var/lib/storegw-keys")
    cfg = parse({"store": {"id": "s1", "data_dir": str(tmp_path / "data")}})
    assert cfg.keys_path == tmp_path / "data-keys"
    from gateway.core.errors import ConfigError

    with pytest.raises(ConfigError, match="inside store.data_dir"):
        parse({"store": {"id": "s1", "data_dir": str(tmp_path / "data")}, "keys": {"dir": str(tmp_path / "data/k")}})


def test_wrong_or_missing_kek_names_the_fix(kd):
    Keyring.open(kd)
    good = (kd / "kek").read_text()
    (kd / "kek").write_text(secrets.token_hex(32))
    with pytest.raises(KeyringError, match=r"is not available.*Fix: provide it again.*restore .*kek"):
        Keyring.open(kd, create=False)
    (kd / "kek").unlink()
    with pytest.raises(KeyringError, match=r"found: none.*LoadCredentialEncrypted=kek"):
        Keyring.open(kd, create=False)
    (kd / "kek").write_text(good)
    Keyring.open(kd, create=False)
    # an altered keyring does not unwrap
    doc = json.loads((kd / "keyring.json").read_text())
    blob = bytearray(base64.b64decode(doc["keys"][0]["wrapped"]))
    blob[-1] ^= 1
    doc["keys"][0]["wrapped"] = base64.b64encode(bytes(blob)).decode()
    (kd / "keyring.json").write_text(json.dumps(doc))
    with pytest.raises(KeyringError, match="altered or damaged"):
        Keyring.open(kd, create=False)


def test_credential_kek_is_preferred_and_a_rotation_reseals_the_keyring(kd, tmp_path, monkeypatch):
    ring = Keyring.open(kd)  # sealed with a key file
    field_before = ring.field_keys()
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "kek").write_text(secrets.token_hex(32))
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    ring = Keyring.open(kd, create=False)
    assert ring.kek.kind == KIND_FILE and ring.better_kek.kind == KIND_CREDENTIAL  # still opens, says so
    ring.add_field_version()  # any write re-seals under the best KEK
    (kd / "kek").unlink()
    ring = Keyring.open(kd, create=False)
    assert ring.kek.kind == KIND_CREDENTIAL and ring.better_kek is None
    assert ring.field_keys()[1][1] == field_before[1][1]


def test_board_otp_key_is_used_when_programmed(kd, tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    tool = bindir / "rpi-otp-private-key"
    tool.write_text("#!/bin/sh\necho " + "0" * 64 + "\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    assert Keyring.open(kd).kek.kind == KIND_FILE  # an unprogrammed OTP (zeros) is not a key
    tool.write_text("#!/bin/sh\necho " + "5a" * 32 + "\n")
    ring = Keyring.open(kd, create=False)
    assert ring.better_kek is not None and ring.better_kek.kind == KIND_BOARD
    ring.add_field_version()
    (kd / "kek").unlink()
    assert Keyring.open(kd, create=False).kek.source.startswith("Raspberry Pi OTP")


def test_signer(kd):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    signer = Keyring.open(kd).signer()
    sig = signer.sign(b"checkpoint 42 abcd")
    Ed25519PublicKey.from_public_bytes(base64.b64decode(signer.public_key_b64)).verify(sig, b"checkpoint 42 abcd")
    assert signer.key_id.startswith("ed25519:") and signer.key_id == Keyring.open(kd).signer().key_id


# -- field encryption


def test_field_round_trip_versions_and_aad(kd):
    ring = Keyring.open(kd)
    c = F.FieldCipher(ring)
    blob = c.encrypt("t", "phone_ct", "13812345678", ref="m1")
    assert blob[0] == 1 and F.version_of(blob) == 1 and len(blob) == 5 + 12 + 11 + 16
    assert c.decrypt_text("t", "phone_ct", blob, ref="m1") == "13812345678"
    for table, column, ref in (("t", "id_ct", "m1"), ("u", "phone_ct", "m1"), ("t", "phone_ct", "m2")):
        with pytest.raises(F.FieldCryptoError, match="does not belong here"):
            c.decrypt("t" if table == "t" else table, column, blob, ref=ref)
    assert c.encrypt("t", "phone_ct", "x") != c.encrypt("t", "phone_ct", "x")  # randomised
    assert ring.add_field_version() == 2
    assert c.primary_version == 2  # the cipher follows the keyring
    blob2 = c.encrypt("t", "phone_ct", "13812345678", ref="m1")
    assert F.version_of(blob2) == 2 and blob2[:5] == b"\x01\x00\x00\x00\x02"
    assert c.decrypt_text("t", "phone_ct", blob, ref="m1") == "13812345678"  # old version still reads
    assert F.version_of(c.rewrap("t", "phone_ct", blob, ref="m1")) == 2


def test_normalisation_and_index_size():
    assert F.normalise_phone("+86 138-1234-5678") == F.normalise_phone("008613812345678") == "13812345678"
    assert F.normalise_id("11010519491231002x") == "11010519491231002X"


def _plant_db(tmp_path, kd, n=3000):
    """A real SQLCipher database with a field-encrypted test table (phone and ID, blind-indexed)."""
    ring = Keyring.open(kd)
    key = database_key(ring, tmp_path / "data", create=True)
    (tmp_path / "data").mkdir(exist_ok=True)
    conn = connect(tmp_path / "data" / DB_NAME, key)
    conn.execute("CREATE TABLE subjects (sid TEXT PRIMARY KEY, phone_ct BLOB, phone_bidx INTEGER, "
                 "idno_ct BLOB, idno_bidx INTEGER)")
    c = F.FieldCipher(ring)
    rng = __import__("random").Random(7)
    planted = ("13912345678", "11010519491231002X")
    conn.execute("BEGIN")
    for i in range(n):
        phone = planted[0] if i == 1234 else f"1{rng.randint(3, 9)}{rng.randint(0, 10**9 - 1):09d}"
        idno = planted[1] if i == 1234 else f"{rng.randint(10**16, 10**17 - 1)}X"
        sid = f"s{i}"
        conn.execute("INSERT INTO subjects VALUES (?, ?, ?, ?, ?)",
                     (sid, c.encrypt("subjects", "phone_ct", phone, sid), c.blind_index("phone", phone),
                      c.encrypt("subjects", "idno_ct", idno, sid), c.blind_index("id_number", idno)))
    conn.execute("COMMIT")
    return ring, key, conn, c, planted


@pytest.fixture
def subjects():
    specs = [F.declare("subjects", "phone_ct", ref="sid", index="phone_bidx", kind="phone"),
             F.declare("subjects", "idno_ct", ref="sid", index="idno_bidx", kind="id_number")]
    yield specs
    for s in specs:
        F.undeclare(s)


def test_blind_index_does_not_confirm_a_guess_without_the_keyring(tmp_path, kd, subjects):
    ring, key, conn, c, (phone, idno) = _plant_db(tmp_path, kd)
    # with the index key, the lookup finds the row among a few candidates
    cands = conn.execute("SELECT sid, phone_ct FROM subjects WHERE phone_bidx = ?",
                         (c.blind_index("phone", "+86 139 1234 5678"),)).fetchall()
    assert 1 <= len(cands) <= 12
    assert [s for s, ct in cands if c.decrypt_text("subjects", "phone_ct", ct, s) == phone] == ["s1234"]
    conn.close()
    # an attacker with the database file and its SQLCipher key, but not the keyring:
    del ring, c
    conn = connect(tmp_path / "data" / DB_NAME, key, readonly=True)
    dump = []
    for table, in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
        for row in conn.execute(f"SELECT * FROM {table}"):
            for v in row:
                dump.append(v if isinstance(v, bytes) else str(v).encode())
    blob = b"\x00".join(dump)
    for secret in (phone, idno, idno.lower()):
        encodings = [secret.encode(), secret.encode("utf-16-le"), secret.encode().hex().encode(),
                     base64.b64encode(secret.encode())]
        for unkeyed in (hashlib.sha256, hashlib.md5, hashlib.sha1):  # an unkeyed index would confirm a guess
            d = unkeyed(secret.encode())
            encodings += [d.digest(), d.hexdigest().encode()]
        for enc in encodings[:4]:
            assert enc not in blob, (secret, enc)
        for enc in encodings[4:]:
            assert enc not in dump, secret
    # and the index value is no fingerprint: even with the index key it stands for many phones and rows
    ring = Keyring.open(kd, create=False)
    c = F.FieldCipher(ring)
    value = c.blind_index("phone", phone)
    rows = conn.execute("SELECT count(*) FROM subjects WHERE phone_bidx = ?", (value,)).fetchone()[0]
    rng = __import__("random").Random(1)
    same = sum(c.blind_index("phone", f"13{rng.randint(0, 10**9 - 1):09d}") == value for _ in range(100_000))
    assert same >= 3  # ~100,000 / 2^13 ≈ 12 random phones share it
    distinct = conn.execute("SELECT count(DISTINCT phone_bidx) FROM subjects").fetchone()[0]
    assert distinct <= 2 ** F.INDEX_BITS and rows >= 1
    conn.close()


def test_rewrap_and_retire_offline_with_status(tmp_path, kd, subjects):
    ring, key, conn, c, _ = _plant_db(tmp_path, kd, n=500)
    conn.close()
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[store]\nid = "sh-001"\ndata_dir = "{(tmp_path / "data").as_posix()}"\n'
                   '[web]\nlisten = "127.0.0.1:9"\n[keys]\nrewrap_batch = 37\n')
    from gateway.config import load
    from gateway.privacy.service import rotate_offline, status

    doc = status(load(cfg))
    assert [(v["version"], v["rows"]) for v in doc["fields"]["versions"]] == [(1, 1000)]
    out = rotate_offline(load(cfg), db=False, fields=True)
    assert out["field_version"] == 2 and out["rewrapped"] == 1000 and out["retired_field_versions"] == [1]
    doc = status(load(cfg))
    assert [(v["version"], v["status"], v["rows"]) for v in doc["fields"]["versions"]] == \
        [(1, "retired", 0), (2, "primary", 1000)]
    key = current_db_key(tmp_path / "data", kd)
    conn = connect(tmp_path / "data" / DB_NAME, key)
    c = F.FieldCipher(Keyring.open(kd))
    sid, ct = conn.execute("SELECT sid, phone_ct FROM subjects WHERE sid = 's123'").fetchone()
    assert F.version_of(ct) == 2 and len(c.decrypt_text("subjects", "phone_ct", ct, sid)) == 11
    conn.close()


# -- the database key: new boards, old boards, offline rotation, backups


def _config(tmp_path: Path) -> Path:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[store]\nid = "sh-001"\ndata_dir = "{(tmp_path / "data").as_posix()}"\n'
                   '[web]\nlisten = "127.0.0.1:9"\n')
    return cfg


def test_old_board_keeps_opening_then_rotation_moves_the_key_into_the_keyring(tmp_path, kd):
    from gateway.store import open_store

    store = open_store(tmp_path / "data")  # a board from before the keyring: data/db.key
    store.start()
    store.writer.call(lambda c: c.execute("INSERT INTO meta VALUES ('planted', 'x')"))
    store.close()
    old = resolve_key(tmp_path / "data", create=False)
    assert current_db_key(tmp_path / "data", kd) == old  # no keyring yet
    ring = Keyring.open(kd)
    assert database_key(ring, tmp_path / "data") == old  # keyring, but the old key still opens it
    cfg = _config(tmp_path)
    backup = _cli("backup", "--config", str(cfg), "--to", str(tmp_path / "b"))
    assert backup.returncode == 0, backup.stderr
    res = _cli("keys", "rotate", "--config", str(cfg), "--db")
    assert res.returncode == 0, res.stderr
    assert "offline" in res.stdout and "database key version 1" in res.stdout
    assert not (tmp_path / "data" / "db.key").exists()  # the key file beside the database is gone
    db = tmp_path / "data" / DB_NAME
    assert not opens(db, old)  # the old key no longer opens the database
    new = current_db_key(tmp_path / "data", kd)
    assert new != old and opens(db, new)
    ring = Keyring.open(kd, create=False)
    assert [k.raw for k in ring.retired_db_keys()] == [old.raw]
    # a second rotation: retired keys pile up, the newest opens
    assert _cli("keys", "rotate", "--config", str(cfg), "--db").returncode == 0
    assert not opens(db, new)
    # a backup made after the rotation opens with the current key; one made before restores
    after = _cli("backup", "--config", str(cfg), "--to", str(tmp_path / "b2"))
    assert after.returncode == 0, after.stderr
    current = current_db_key(tmp_path / "data", kd)
    assert opens(Path(after.stdout.split()[0]), current)
    before = Path(backup.stdout.split()[0])
    assert opens(before, old) and not opens(before, current)
    res = _cli("restore", "--config", str(cfg), str(before), "--yes")
    assert res.returncode == 0, res.stderr
    assert opens(db, current) and not opens(db, old)  # re-encrypted under the current key
    conn = connect(db, current)
    assert conn.execute("SELECT value FROM meta WHERE key = 'planted'").fetchone() == ("x",)
    conn.close()


def test_keys_status_cli_prints_no_key_material(tmp_path, kd):
    from gateway.store import open_store

    ring = Keyring.open(kd)
    store = open_store(tmp_path / "data", key=database_key(ring, tmp_path / "data"))
    store.close()
    cfg = _config(tmp_path)
    res = _cli("keys", "status", "--config", str(cfg), "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["kek"]["kind"] == "file" and "systemd-creds encrypt" in doc["kek"]["warning"]
    assert doc["database"]["primary"] == 1 and doc["database"]["opens_with"] == 1
    assert set(doc["blind_indexes"]) >= {"phone", "id_number"}
    human = _cli("keys", "status", "--config", str(cfg))
    assert "field key version 1" in human.stdout and "warning" in human.stdout
    secrets_ = [e.raw for e in Keyring.open(kd).entries()] + [bytes.fromhex((kd / "kek").read_text().strip())]
    for raw in secrets_:
        for enc in (raw.hex(), base64.b64encode(raw).decode()):
            assert enc not in res.stdout and enc not in human.stdout


def test_doctor_reports_the_kek_source_and_the_fix(tmp_path, kd):
    from gateway.store import open_store

    ring = Keyring.open(kd)
    open_store(tmp_path / "data", key=database_key(ring, tmp_path / "data")).close()
    res = _cli("doctor", "--config", str(_config(tmp_path)), "--json", "--timeout", "0.5")
    found = [f for f in json.loads(res.stdout)["findings"] if f["check"] in ("keys", "db key", "database")]
    keys = [f for f in found if f["check"] == "keys"]
    assert keys[0]["level"] == "warn" and "key file" in keys[0]["text"] and "LoadCredentialEncrypted" in keys[0]["fix"]
    assert any(f["check"] == "database" and f["level"] == "ok" for f in found)
    (kd / "kek").write_text(secrets.token_hex(32))
    res = _cli("doctor", "--config", str(_config(tmp_path)), "--json", "--timeout", "0.5")
    keys = [f for f in json.loads(res.stdout)["findings"] if f["check"] == "keys"]
    assert any(f["level"] == "FAIL" and "is not available" in f["text"] for f in keys)


def test_data_files_are_private(tmp_path, kd):
    from realparts import config_text, free_port

    from gateway import config as config_mod
    from gateway.app import build

    old = os.umask(0o022)
    try:
        cfgp = tmp_path / "c.toml"
        cfgp.write_text(config_text(tmp_path / "data", local_port=free_port(), hq_port=free_port(),
                                    web_port=free_port()))
        gw = build(config_mod.load(cfgp))
        gw.start(web=False, devices=False)
        try:
            gw.store.writer.call(lambda c: c.execute("INSERT INTO meta VALUES ('a', 'b')"))
            gw.store.read().execute("SELECT 1").fetchall()
            data = tmp_path / "data"
            for p in (data / DB_NAME, data / f"{DB_NAME}-wal", data / f"{DB_NAME}-shm", data / f"{DB_NAME}.keycheck",
                      kd / "keyring.json", kd / "kek", kd / "control.sock"):
                assert p.exists() and _mode(p) == 0o600, (p, oct(_mode(p)))
            assert _mode(data) == 0o700 and _mode(kd) == 0o700
            assert not (data / "db.key").exists()  # a new board keeps its database key in the keyring
        finally:
            gw.stop()
    finally:
        os.umask(old)
