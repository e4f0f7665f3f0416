"""Helpers for the guest tests: synthetic identities from the shared vectors, a gateway with guests on.

Every identity is synthetic and checksum-valid, taken from ``tests/devices/vectors`` and cited by id:
GB 11643 numbers from ``gb11643.json``, passports from ``mrz.json``. Names and addresses are made up.
"""

from __future__ import annotations

import base64
import json
import tomllib
from pathlib import Path
from typing import Any

from realparts import free_port

from devices.mrz.protocol import MrzProtocol
from gateway.config import parse
from gateway.core.models import DeviceEvent

VECTORS = Path(__file__).resolve().parent.parent / "devices" / "vectors"


def vector(file: str, vid: str) -> dict[str, Any]:
    """The entry ``vid`` of a vector file (asserting it is a valid one)."""
    entry = next(e for e in json.loads((VECTORS / file).read_text()) if e["id"] == vid)
    assert entry["valid"], vid
    return entry


def id_card(vid: str, name: str, address: str = "示例省示例市示例路1号", photo_hex: str = "") -> dict[str, str]:
    """Card fields for the SAM simulator from a gb11643.json vector (its number, birth date, sex)."""
    e = vector("gb11643.json", vid)
    number, exp = e["input"], e["expected"]
    card = {"name": name, "gender": "1" if exp["sex"] == "male" else "2", "nation": "01",
            "birth": exp["birth_date"].replace("-", ""), "address": address, "id_number": number,
            "authority": "示例市公安局", "valid_from": "20200101", "valid_to": "20400101"}
    if photo_hex:
        card["photo_hex"] = photo_hex
    return card


def mrz_zone(vid: str) -> str:
    """The MRZ text of an mrz.json vector."""
    return vector("mrz.json", vid)["input"]


ADULT = ("stdnum-jiangxi-dean", "王小明")          # 360426199101010071, male, 1991-01-01
ADULT_F = ("gb-std-beijing-chaoyang", "李小红")    # 11010519491231002X, female, 1949-12-31
MINOR = ("stdnum-guangzhou-panyu-x", "王小宝")     # 44011320141005001X, male, 2014-10-05 (a minor, under 14)
PASSPORT = "td3-can"                               # MARTIN, SARAH; CAN; ZE000509; 1985-01-01


def encodings(secret: str | bytes) -> list[bytes]:
    """A value as plain UTF-8, UTF-16 (LE and BE), hex (both cases) and base64."""
    raw = secret.encode() if isinstance(secret, str) else secret
    out = [raw, base64.b64encode(raw), raw.hex().encode(), raw.hex().upper().encode()]
    if isinstance(secret, str):
        out += [secret.encode("utf-16-le"), secret.encode("utf-16-be")]
    return out


def guests_config(tmp_path: Path, extra: str = "", *, uplink: str = "enabled = false", local_port: int = 0,
                  hq_port: int = 0) -> Any:
    """A config for an in-process gateway with guest registration on (the board's clock counts as
    synchronised, so managers can sign in with password + TOTP)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    synced = tmp_path / "synchronized"
    synced.touch()
    text = f"""
[store]
id = "sh-001"
name = "示例酒店"
data_dir = "{(tmp_path / 'data').as_posix()}"

[local_mqtt]
port = {local_port or free_port()}

[uplink]
host = "127.0.0.1"
port = {hq_port or free_port()}
tls = false
reconnect_min = "200ms"
reconnect_max = "2s"
{uplink}

[web]
listen = "127.0.0.1:{free_port()}"
public_host = "order.test"

[staff]
clock_sync_files = ["{synced.as_posix()}"]

[guests]
enabled = true
{extra}
"""
    return parse(tomllib.loads(text))


PAGE, RESERVE = 4096, 80  # SQLCipher 4 defaults: 4 KiB pages, IV (16) + HMAC-SHA512 (64) reserved per page


def _decrypt_page(raw: bytes, key: bytes, first: bool) -> bytes:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    start = 16 if first else 0
    iv = raw[PAGE - RESERVE: PAGE - RESERVE + 16]
    dec = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    return dec.update(raw[start:PAGE - RESERVE]) + dec.finalize()


def decrypted_file(db: Path, key: bytes) -> bytes:
    """Every page of the database file *and* its WAL decrypted with the SQLCipher key (raw key: AES-256-CBC
    per page, the IV in the page's reserved tail): live rows, free pages and stale cells alike."""
    out = bytearray()
    data = db.read_bytes()
    for i in range(0, len(data) - PAGE + 1, PAGE):
        out += _decrypt_page(data[i:i + PAGE], key, first=i == 0)
    wal = Path(f"{db}-wal")
    if wal.exists():
        w = wal.read_bytes()
        pos = 32
        while pos + 24 + PAGE <= len(w):
            pgno = int.from_bytes(w[pos:pos + 4], "big")
            out += _decrypt_page(w[pos + 24:pos + 24 + PAGE], key, first=pgno == 1)
            pos += 24 + PAGE
    for extra in (Path(f"{db}-shm"),):
        if extra.exists():
            out += extra.read_bytes()
    return bytes(out)


class Clock:
    """The guest service's clock, advanced by the tests."""

    def __init__(self, start_ms: int) -> None:
        self.ms = start_ms

    def __call__(self) -> int:
        return self.ms

    def advance(self, hours: float = 0, days: float = 0) -> None:
        self.ms += int(hours * 3_600_000 + days * 86_400_000)


def idcard_event(card: dict[str, str], photo: bytes = b"\x11" * 1024) -> DeviceEvent:
    sensitive = {"name": card["name"], "gender": card["gender"], "nation": card["nation"], "birth": card["birth"],
                 "address": card["address"], "id_number": card["id_number"], "authority": card["authority"],
                 "valid_from": card["valid_from"], "valid_to": card["valid_to"], "card_type": "resident_id",
                 "photo_wlt": photo}
    return DeviceEvent("idreader-1", "idcard", 0, {}, sensitive)


def mrz_event(vid: str) -> DeviceEvent:
    (mrz,) = MrzProtocol().data_received((mrz_zone(vid) + "\n").encode())
    sensitive = {"format": mrz.format, **{k: v for k, v in mrz.values.items() if not k.endswith("_check")}}
    return DeviceEvent("mrz-1", "mrz", 0, {}, sensitive)


def scan(svc, event: DeviceEvent) -> str:
    """Hand a reader event to the guest service (as the hub does); return the read's id."""
    svc._on_document(event)
    return svc.scans()[0]["id"]


def stay_form(**kw: str) -> dict[str, str]:
    return {"room": "0801", "check_in": "2026-11-30T14:00", "expected_out": "2026-12-02T12:00", "photo_match": "1",
            **kw}


PASSWORD = "correct horse battery"  # the test manager's password (managers sign in with password + TOTP)


class Authenticator:
    """A manager's authenticator app: each ``code()`` is of a newer time step (codes work once)."""

    def __init__(self, secret: str) -> None:
        import pyotp

        self.totp = pyotp.TOTP(secret)
        self.step: int | None = None

    def code(self) -> str:
        import time

        if time.time() % 30 > 28.5:  # not at the edge of a step
            time.sleep(1.6)
        now = int(time.time() // 30)
        step = now - 1 if self.step is None else self.step + 1
        if step > now + 1:
            time.sleep((step - 1) * 30 - time.time() + 0.2)
            return self.code()
        self.step = step
        return self.totp.generate_otp(step)
