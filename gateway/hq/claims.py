"""HQ's side of provisioning a board: a small certificate authority, single-use claim codes, and the
responder that trades a claim code and a CSR for the store's certificate and config over MQTT.

Everything lives in one HQ directory (``--dir``, mode 0700): ``ca.key``/``ca.crt`` (an ECDSA P-256 CA,
made on first use) and ``claims.json`` (the codes issued, their store, expiry and use). A code is 12
characters from an alphabet without look-alikes, shown as ``K7QX-93MD-WA2F``; it expires after 15
minutes and is consumed by its first valid use.

The exchange (docs/operations.md, "Claim codes"), modelled on AWS IoT fleet provisioning by claim:
the board makes its key pair itself and publishes only a CSR to ``storegw/provision/ID/request``,
where ID is derived from the code; it proves it holds the code with an HMAC over the CSR and a
fresh nonce, so the code itself never crosses the broker. HQ answers on
``storegw/provision/ID/NONCE/response`` with the signed certificate, the CA and the store's config.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.core.errors import GatewayError

PREFIX = "storegw/provision"
ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I
CODE_TTL = 15 * 60
CERT_DAYS = 397  # what browsers accept for a leaf; boards renew with `storegw provision csr`
CA_DAYS = 10 * 365
CLAIMS = "claims.json"


class ClaimError(GatewayError):
    """A claim code or CSR was refused; the message says why (never the code)."""


# ---------------------------------------------------------------------------
# the protocol, shared with the board (provisioning/identity.py)


def normalise(code: str) -> str:
    """Return the code as typed without dashes, spaces or case: what the HMAC and the id are made of."""
    return "".join(ch for ch in code.upper() if ch.isalnum())


def claim_id(code: str) -> str:
    """Return the public id of a code (a hash): the request topic names it, never the code."""
    return hashlib.sha256(b"storegw-claim-id:" + normalise(code).encode()).hexdigest()[:20]


def proof(code: str, csr_pem: str, nonce: str) -> str:
    """Return the HMAC that shows the requester holds ``code``, bound to this CSR and nonce."""
    return hmac.new(normalise(code).encode(), f"{nonce}\n{csr_pem}".encode(), hashlib.sha256).hexdigest()


def request_topic(cid: str) -> str:
    """Topic of a board's claim request."""
    return f"{PREFIX}/{cid}/request"


def response_topic(cid: str, nonce: str) -> str:
    """Topic of HQ's answer to one request."""
    return f"{PREFIX}/{cid}/{nonce}/response"


# ---------------------------------------------------------------------------
# the CA


def _private_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Authority:
    """HQ's directory: the CA and the claim codes."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)

    def _ensure_dir(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    @property
    def ca_cert_path(self) -> Path:
        """The CA certificate (give it to boards and to the HQ broker as its client CA)."""
        return self.dir / "ca.crt"

    def ca(self) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        """Return the CA key and certificate, making them on first use."""
        self._ensure_dir()
        key_path = self.dir / "ca.key"
        with contextlib.nullcontext() if key_path.exists() else self._locked():
            if not key_path.exists():
                key = ec.generate_private_key(ec.SECP256R1())
                name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "storegw HQ"),
                                  x509.NameAttribute(NameOID.COMMON_NAME, "storegw store CA")])
                cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                        .public_key(key.public_key()).serial_number(x509.random_serial_number())
                        .not_valid_before(_now() - dt.timedelta(minutes=5))
                        .not_valid_after(_now() + dt.timedelta(days=CA_DAYS))
                        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                     content_commitment=False, key_encipherment=False,
                                                     data_encipherment=False, key_agreement=False,
                                                     encipher_only=False, decipher_only=False), critical=True)
                        .sign(key, hashes.SHA256()))
                _private_write(key_path, key.private_bytes(serialization.Encoding.PEM,
                                                           serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
                self.ca_cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key, x509.load_pem_x509_certificate(self.ca_cert_path.read_bytes())

    def sign(self, csr_pem: str, store_id: str, *, days: float = CERT_DAYS,
             not_before: dt.datetime | None = None) -> str:
        """Sign a board's CSR for ``store_id`` (its CN must be the store id); return the certificate PEM.
        Valid from ``not_before`` (default: five minutes ago) for ``days``."""
        try:
            csr = x509.load_pem_x509_csr(csr_pem.encode())
        except ValueError as err:
            raise ClaimError(f"not a PEM certificate request: {err}") from None
        if not csr.is_signature_valid:
            raise ClaimError("the CSR's signature is not valid")
        cns = [a.value for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        if cns != [store_id]:
            raise ClaimError(f"the CSR is for {cns or 'no CN'}, not for store {store_id}")
        ca_key, ca_cert = self.ca()
        start = not_before or _now() - dt.timedelta(minutes=5)
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, store_id)]))
                .issuer_name(ca_cert.subject).public_key(csr.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(start)
                .not_valid_after(start + dt.timedelta(days=days))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        return cert.public_bytes(serialization.Encoding.PEM).decode()

    # -- claim codes

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self._ensure_dir()
        with open(self.dir / ".lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _claims(self) -> dict[str, Any]:
        path = self.dir / CLAIMS
        return json.loads(path.read_text()) if path.exists() else {}

    def issue(self, store_id: str, config: dict[str, Any], *, ttl: float = CODE_TTL) -> str:
        """Issue a single-use code for ``store_id`` carrying the store's ``config``; return the code."""
        self.ca()
        code = "".join(secrets.choice(ALPHABET) for _ in range(12))
        with self._locked():
            claims = {k: v for k, v in self._claims().items() if v["expires"] > time.time() - 86400}
            claims[claim_id(code)] = {"store": store_id, "code": code, "expires": time.time() + ttl,
                                      "issued": time.time(), "used": None, "config": config}
            _private_write(self.dir / CLAIMS, json.dumps(claims, indent=1).encode())
        return f"{code[:4]}-{code[4:8]}-{code[8:]}"

    def redeem(self, cid: str, nonce: str, given_proof: str, csr_pem: str) -> dict[str, Any]:
        """Check a request and, once only, answer it with the certificate, the CA and the config."""
        self.ca()  # made outside the claims lock (flock is not re-entrant)
        with self._locked():
            claims = self._claims()
            claim = claims.get(cid)
            if claim is None:
                raise ClaimError("unknown claim code: check it, or issue a new one (storegw hq claim)")
            if not hmac.compare_digest(proof(claim["code"], csr_pem, nonce), given_proof):
                raise ClaimError("wrong claim code")
            if claim["used"] is not None:
                raise ClaimError("this claim code was already used: issue a new one (storegw hq claim)")
            if claim["expires"] < time.time():
                raise ClaimError("this claim code has expired (15 minutes): issue a new one (storegw hq claim)")
            cert = self.sign(csr_pem, claim["store"])
            claim["used"] = time.time()
            _private_write(self.dir / CLAIMS, json.dumps(claims, indent=1).encode())
        return {"ok": True, "certificate": cert, "ca": self.ca_cert_path.read_text(), "config": claim["config"]}


def serve(authority: Authority, client: Any, *, count: int = 0, stop: threading.Event | None = None,
          log: Callable[[str], None] = print) -> int:
    """Answer claim requests on a paho ``client`` whose connect() was called until ``count`` answers or ``stop``; return
    the number answered. Each answer, refusal included, goes to the requester's response topic."""
    answered = 0
    done = stop or threading.Event()
    lock = threading.Lock()

    def on_message(c: Any, userdata: Any, msg: Any) -> None:
        nonlocal answered
        cid = msg.topic.split("/")[-2]
        try:
            req = json.loads(msg.payload)
            nonce = str(req["nonce"])
            if not (nonce.isalnum() and 16 <= len(nonce) <= 64):
                raise ClaimError("bad nonce")
            answer = authority.redeem(cid, nonce, str(req["proof"]), str(req["csr"]))
            log(f"claim {cid}: certificate issued for store {answer['config'].get('store', {}).get('id', '?')}")
        except (ValueError, KeyError, TypeError):
            log(f"claim {cid}: malformed request ignored")
            return
        except ClaimError as err:
            answer = {"ok": False, "error": str(err)}
            log(f"claim {cid}: refused: {err}")
        except Exception as err:  # noqa: BLE001 - paho would swallow it; the board must hear
            answer = {"ok": False, "error": "HQ failed to answer; try again or ask HQ to check its log"}
            log(f"claim {cid}: failed: {err!r}")
        c.publish(response_topic(cid, nonce), json.dumps(answer), qos=1)
        with lock:
            answered += 1
            if count and answered >= count:
                done.set()

    def on_connect(c: Any, userdata: Any, flags: Any, rc: Any, props: Any = None) -> None:
        if not getattr(rc, "is_failure", False):
            c.subscribe(f"{PREFIX}/+/request", qos=1)  # again after each reconnect

    client.on_message = on_message
    client.on_connect = on_connect
    client.loop_start()
    try:
        while not done.wait(0.5):
            pass
    finally:
        time.sleep(0.3)  # let the last answer go out
        client.loop_stop()
    return answered
