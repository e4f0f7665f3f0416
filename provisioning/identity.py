"""`storegw provision init`: the board's identity, keys and config, made on the board.

What it makes (each only if missing; ``--force`` moves the old one aside first, never deletes it):

* the systemd credentials, in ``CONFIG_DIR/credentials`` (0700, root): ``kek`` (the keyring's
  key-encryption key), ``hq-key`` (the ECDSA P-256 key of the board's MQTT client certificate) and
  ``mqtt-local`` (the gateway's password on the store's broker). ``storegw install`` seals them with
  ``systemd-creds`` where the board supports it;
* the keyring (database key, field keys, index key, signing key; gateway/privacy/keys.py) sealed with
  that KEK, and the database with its table-token secret;
* ``hq.csr`` for HQ to sign (``storegw hq sign``), or the imported certificate ``hq.crt`` and HQ's CA
  ``hq-ca.crt``; with a claim code, both come back from HQ over MQTT and only the CSR leaves the board;
* ``storegw.toml``, merged into the existing file (devices and every other key kept) and validated
  by ``gateway.config.parse`` before it is written.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import secrets
import shutil
import subprocess
import threading
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.core.credentials import VAR, credential_path
from gateway.core.errors import ConfigError, GatewayError

KEK, HQ_KEY, MQTT_LOCAL = "kek", "hq-key", "mqtt-local"
CREDENTIALS = (KEK, HQ_KEY, MQTT_LOCAL)
GATEWAY_USER = "storegw"


class ProvisionError(GatewayError):
    """Provisioning cannot go on; the message says what to do."""


@dataclass
class Layout:
    """Where one board's files go: ``config`` and ``data_dir`` are paths on the board (what the config
    says); with ``root`` (a staging directory) they are written under it."""

    config: Path
    data_dir: Path
    root: Path = Path("/")

    def at(self, board: Path) -> Path:
        """The real path of a board path."""
        return self.root / str(board).lstrip("/")

    @property
    def etc(self) -> Path:
        """The config file's directory (board path)."""
        return self.config.parent

    @property
    def config_file(self) -> Path:
        """The config file (real path)."""
        return self.at(self.config)

    @property
    def credentials(self) -> Path:
        """The secrets given to the service as systemd credentials (real path)."""
        return self.at(self.etc / "credentials")

    @property
    def data(self) -> Path:
        """The data directory (real path)."""
        return self.at(self.data_dir)

    @property
    def keys_dir(self) -> Path:
        """The keyring directory, beside the data dir as keys.dir's default (real path)."""
        data = Path(os.path.abspath(self.data_dir))
        return self.at(data.with_name(f"{data.name}-keys"))

    @property
    def csr(self) -> Path:
        """The certificate request for HQ (real path)."""
        return self.at(self.etc / "hq.csr")

    @property
    def cert(self) -> Path:
        """The board's client certificate from HQ (real path)."""
        return self.at(self.etc / "hq.crt")

    @property
    def ca(self) -> Path:
        """HQ's CA certificate (real path)."""
        return self.at(self.etc / "hq-ca.crt")


@dataclass
class Answers:
    """What the technician says (flags or prompts); claim answers from HQ override them."""

    store_id: str = ""
    hq_host: str = ""
    timezone: str = ""
    store_name: str = ""
    hq_port: int = 8883
    hq_tls: bool = True
    topic_prefix: str = "storegw/v1"
    local_port: int = 1883
    web_listen: str = "0.0.0.0:8080"
    public_host: str = ""
    time_server: str = "pool.ntp.org"
    extra: dict[str, Any] = field(default_factory=dict)


def _stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def backup(path: Path, log: Callable[[str], None]) -> None:
    """Move ``path`` aside as PATH.bak-STAMP (never delete a key)."""
    if path.exists():
        aside = path.with_name(f"{path.name}.bak-{_stamp()}")
        path.rename(aside)
        log(f"moved {path} aside to {aside}")


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


@contextlib.contextmanager
def credentials_env(cred_dir: Path) -> Iterator[None]:
    """Let this process see ``cred_dir`` as the service will see its credentials."""
    old = os.environ.get(VAR)
    os.environ[VAR] = str(cred_dir)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(VAR, None)
        else:
            os.environ[VAR] = old


def _have(cred: Path, name: str) -> bool:
    return (cred / name).exists() or (cred / f"{name}.cred").exists()


def _service_view(cred: Path) -> contextlib.AbstractContextManager[Any]:
    """The credentials as the service sees them: the plain files, or once sealed, the installed unit's."""
    from provisioning.credentials import borrowed

    if all((cred / name).exists() for name in CREDENTIALS):
        return credentials_env(cred)
    return borrowed()


@contextlib.contextmanager
def _keep_owner(*dirs: Path) -> Iterator[None]:
    """Run as root on an installed board, leave every file of ``dirs`` to their owner (the storegw
    user): a WAL or lock file left to root would keep the service from opening its database."""
    owners = {d: (d.stat().st_uid, d.stat().st_gid) for d in dirs if d.exists()}
    try:
        yield
    finally:
        for d, (uid, gid) in owners.items():
            if uid != os.geteuid():
                for p in [d, *d.rglob("*")]:
                    with contextlib.suppress(OSError):
                        os.chown(p, uid, gid)


def make_keys(layout: Layout, *, force: bool, log: Callable[[str], None]) -> list[str]:
    """Make every missing key of the board; with ``force`` move the old ones aside and make new ones.
    Return the names of what was made."""
    from gateway import domains
    from gateway.ordering import tables
    from gateway.privacy.keys import Keyring, database_key
    from gateway.store import migrations
    from gateway.store.db import DB_NAME, connect, open_database

    cred = layout.credentials
    etc = layout.at(layout.etc)
    etc.mkdir(parents=True, exist_ok=True)
    os.chmod(etc, 0o755)  # the service (user storegw) reads the config and certificates; credentials stay 0700
    if force:
        for name in CREDENTIALS:
            backup(cred / name, log)
            backup(cred / f"{name}.cred", log)
        # a new database key cannot open the old database: both go aside together
        backup(layout.keys_dir, log)
        backup(layout.data, log)
    cred.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(cred, 0o700)
    made = []
    if not _have(cred, KEK):
        _write_private(cred / KEK, (secrets.token_hex(32) + "\n").encode())
        made.append("key-encryption key (credential kek)")
    if not _have(cred, HQ_KEY):
        key = ec.generate_private_key(ec.SECP256R1())
        _write_private(cred / HQ_KEY, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
        made.append("MQTT client key (credential hq-key)")
    if not _have(cred, MQTT_LOCAL):
        _write_private(cred / MQTT_LOCAL, (secrets.token_urlsafe(24) + "\n").encode())
        made.append("local broker password (credential mqtt-local)")
    with _service_view(cred), _keep_owner(layout.data, layout.keys_dir):
        fresh = not (layout.keys_dir / "keyring.json").exists()
        ring = Keyring.open(layout.keys_dir, create=True)
        if ring.kek.kind != "credential":
            raise ProvisionError(f"the keyring {ring.path} is sealed with the {ring.kek.source}, not with the "
                                 f"credential {cred / KEK}: it was made before; keep it, or start over with --force")
        if fresh:
            made.append("keyring (field keys, index key, signing key)")
        had_db = (layout.data / DB_NAME).exists()
        key = database_key(ring, layout.data, create=True)
        opened = open_database(layout.data, key)
        conn = connect(opened.path, key)
        try:
            migrations.apply(conn, domains.SCHEMAS)
            conn.execute("BEGIN IMMEDIATE")
            tables.ensure_secret(conn)
            conn.execute("COMMIT")
        finally:
            conn.close()
        if not had_db:
            made.append("database key, database and table-token secret")
    return made


def mqtt_key(layout: Layout) -> ec.EllipticCurvePrivateKey:
    """The board's MQTT client key (made by :func:`make_keys`)."""
    from provisioning.credentials import ENCRYPTED, read_credential

    path = layout.credentials / HQ_KEY
    sealed = path.with_name(f"{HQ_KEY}.cred")  # after `storegw install` sealed it
    try:
        pem = path.read_bytes() if path.exists() or not sealed.exists() else read_credential(ENCRYPTED, HQ_KEY, sealed)
        key = serialization.load_pem_private_key(pem, password=None)
    except (OSError, ValueError, subprocess.SubprocessError) as err:
        raise ProvisionError(f"cannot read the MQTT client key {path}: {err}; run `storegw provision init` "
                             "again (as root)") from err
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ProvisionError(f"{path} is not an EC key")
    return key


def make_csr(layout: Layout, store_id: str) -> str:
    """Write and return a CSR for ``store_id`` (CN = store id) signed with the board's MQTT key."""
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, store_id)]))
           .sign(mqtt_key(layout), hashes.SHA256()))
    pem = csr.public_bytes(serialization.Encoding.PEM).decode()
    layout.csr.write_text(pem)
    os.chmod(layout.csr, 0o644)
    return pem


def import_cert(layout: Layout, cert_pem: str, ca_pem: str | None, store_id: str) -> x509.Certificate:
    """Check a certificate from HQ against the board's key and store id, then install it (and the CA)."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
    except ValueError as err:
        raise ProvisionError(f"not a PEM certificate: {err}") from None
    mine = mqtt_key(layout).public_key().public_bytes(serialization.Encoding.DER,
                                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    theirs = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if mine != theirs:
        raise ProvisionError("this certificate is not for this board's key (it was made from another CSR); "
                             f"send HQ {layout.csr} and import what comes back")
    cns = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if cns != [store_id]:
        raise ProvisionError(f"this certificate is for {cns}, not for store {store_id}")
    if ca_pem is not None:
        ca = x509.load_pem_x509_certificate(ca_pem.encode())
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, Exception) as err:  # noqa: BLE001 - InvalidSignature and friends
            raise ProvisionError(f"the certificate is not signed by the CA given: {err or type(err).__name__}") \
                from None
        layout.ca.write_text(ca_pem)
        os.chmod(layout.ca, 0o644)
    layout.cert.write_text(cert_pem)
    os.chmod(layout.cert, 0o644)
    return cert


def claim(layout: Layout, code: str, store_hint: str, *, host: str, port: int, tls: bool, ca_file: str = "",
          timeout: float = 30.0) -> dict[str, Any]:
    """Trade a claim code and a CSR for the certificate, the CA and the store's config (over MQTT)."""
    from gateway.hq import claims
    from gateway.spine.mqtt import configure_auth, describe_rc, new_client

    cid = claims.claim_id(code)
    nonce = secrets.token_hex(16)
    # The CSR's CN must be the store id HQ holds for this code: `storegw hq claim` prints both.
    csr = make_csr(layout, store_hint)
    got: list[dict[str, Any]] = []
    ready, done = threading.Event(), threading.Event()
    errors: list[str] = []
    client = new_client(f"storegw-claim-{nonce[:8]}", clean=True)
    configure_auth(client, tls=tls, ca_file=ca_file, section="uplink")

    def on_connect(c: Any, u: Any, flags: Any, rc: Any, props: Any = None) -> None:
        if getattr(rc, "is_failure", False):
            errors.append(f"HQ broker refused the connection: {describe_rc(rc)}")
            done.set()
            return
        c.subscribe(claims.response_topic(cid, nonce), qos=1)

    def on_subscribe(c: Any, u: Any, mid: Any, codes: Any, props: Any = None) -> None:
        ready.set()

    def on_message(c: Any, u: Any, msg: Any) -> None:
        with contextlib.suppress(ValueError):
            got.append(json.loads(msg.payload))
        done.set()

    client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
    try:
        client.connect(host, port, keepalive=30)
    except OSError as err:
        raise ProvisionError(f"cannot reach HQ's broker {host}:{port} for the claim: {err}; check --hq-host/"
                             "--hq-port and the store's internet") from err
    client.loop_start()
    try:
        if not ready.wait(timeout) and not errors:
            raise ProvisionError(f"HQ's broker {host}:{port} did not answer within {timeout:g}s")
        if not errors:
            client.publish(claims.request_topic(cid), json.dumps({
                "nonce": nonce, "proof": claims.proof(code, csr, nonce), "csr": csr}), qos=1)
            if not done.wait(timeout):
                raise ProvisionError(f"no answer from HQ within {timeout:g}s: is the HQ provisioner running "
                                     "(storegw hq provisioner)? is the code for this HQ?")
    finally:
        client.disconnect()
        client.loop_stop()
    if errors:
        raise ProvisionError(errors[0])
    if not got:
        raise ProvisionError("HQ answered with something that is not JSON")
    answer = got[0]
    if not answer.get("ok"):
        raise ProvisionError(f"HQ refused the claim: {answer.get('error', 'no reason given')}")
    return answer


def _merge(doc: dict[str, Any], section: str, values: dict[str, Any]) -> None:
    doc.setdefault(section, {}).update({k: v for k, v in values.items() if v is not None})


def write_config(layout: Layout, a: Answers, *, have_cert: bool) -> dict[str, Any]:
    """Merge the answers into the config file (creating it), validate the result, write it atomically."""
    import tomli_w

    from gateway.config import parse

    doc: dict[str, Any] = {}
    if layout.config_file.exists():
        try:
            doc = tomllib.loads(layout.config_file.read_text())
        except tomllib.TOMLDecodeError as err:
            raise ProvisionError(f"{layout.config_file} is not valid TOML ({err}); fix or move it, then run again") \
                from None
    _merge(doc, "store", {"id": a.store_id, "name": a.store_name or None, "timezone": a.timezone,
                          "data_dir": str(layout.data_dir), "time_server": a.time_server})
    _merge(doc, "local_mqtt", {"host": "127.0.0.1", "port": a.local_port, "username": GATEWAY_USER,
                               "password_file": credential_path(MQTT_LOCAL)})
    _merge(doc, "uplink", {
        "enabled": have_cert or not a.hq_tls, "host": a.hq_host, "port": a.hq_port, "tls": a.hq_tls,
        "topic_prefix": a.topic_prefix,
        "ca_file": str(layout.etc / layout.ca.name) if layout.ca.exists() else None,
        "cert_file": str(layout.etc / layout.cert.name) if have_cert else None,
        "key_file": credential_path(HQ_KEY) if have_cert else None,
    })
    _merge(doc, "web", {"listen": a.web_listen, "public_host": a.public_host or None})
    for section, values in a.extra.items():
        _merge(doc, section, values)
    try:
        parse(doc, source=str(layout.config))
    except ConfigError as err:
        raise ProvisionError(f"the config would not be valid, nothing written: {err}") from None
    text = ("# storegw configuration, written by `storegw provision init` (docs/configuration.md).\n"
            "# Secrets are systemd credentials (${CREDENTIALS_DIRECTORY}/...), never in this file.\n"
            + tomli_w.dumps(doc))
    real = layout.config_file
    real.parent.mkdir(parents=True, exist_ok=True)
    tmp = real.with_name(real.name + ".tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o644)
    if real.exists():
        shutil.copy2(real, real.with_name(real.name + ".before-provision"))
    os.replace(tmp, real)
    return doc
