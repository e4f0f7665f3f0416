"""The key hierarchy: a key-encryption key (KEK) from the best source the board has, and one keyring
file of keys wrapped by it, kept outside the data directory.

KEK sources, best first (``kek_sources``):

1. the systemd credential ``kek`` (``$CREDENTIALS_DIRECTORY/kek``: what ``LoadCredentialEncrypted=``
   provides, sealed to the board's TPM2 where it has one);
2. a board-bound secret: a Raspberry Pi's OTP customer private key (``rpi-otp-private-key``, else
   ``vcmailbox``) when it is programmed (not all zeros); the KEK is derived from it with HKDF;
3. a key file ``kek`` in the keys directory (generated, 0600). ``storegw doctor`` warns about it: a
   copy of the keys directory and the data directory together read everything.

The keyring (``KEYS_DIR/keyring.json``, 0600) holds, each wrapped with AES-256-GCM under the KEK with
AAD ``purpose:version``: the SQLCipher database keys (one primary, at most one pending during a
rotation, retired ones so older backups still restore), versioned field-encryption keys (one
primary), the blind-index root key (per-kind index keys are derived from it with HKDF) and the
Ed25519 signing key of audit checkpoints and receipts. It is written atomically (temp file, fsync,
rename, directory fsync) under an exclusive lock, re-read before every change, and always
re-wrapped under the best KEK available, so providing a credential and running
``storegw keys rotate`` moves a board off its key file. docs/operations.md, "Keys".
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import json
import logging
import os
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.core.errors import GatewayError, StoreError
from gateway.core.models import utcnow
from gateway.store.db import DB_NAME, Key, fsync_dir, key_matches, opens, resolve_key, write_keycheck

_LOGGER = logging.getLogger(__name__)

KEYRING_NAME = "keyring.json"
KEK_FILE = "kek"
KEK_CREDENTIAL = "kek"
LOCK_NAME = "keyring.lock"
DAEMON_LOCK = "daemon.lock"
CONTROL_SOCKET = "control.sock"
FORMAT = 1

# purposes
DB, FIELD, INDEX, SIGNING = "db", "field", "index", "signing"
# statuses
PRIMARY, PENDING, ACTIVE, RETIRED = "primary", "pending", "active", "retired"

KIND_CREDENTIAL, KIND_BOARD, KIND_FILE = "credential", "board", "file"


class KeyringError(GatewayError):
    """The keyring or its key-encryption key cannot be used; the message names the fix."""


def keys_dir_for(data_dir: Path, configured: str = "") -> Path:
    """Return the keys directory: ``keys.dir``, else a sibling of the data dir, ``<name>-keys``."""
    if configured:
        return Path(configured)
    data_dir = Path(os.path.abspath(data_dir))
    return data_dir.with_name(f"{data_dir.name}-keys")


# ---------------------------------------------------------------------------
# the key-encryption key


@dataclass(frozen=True)
class Kek:
    """A key-encryption key and where it came from (for messages, never the key)."""

    raw: bytes = field(repr=False)
    kind: str
    source: str

    @property
    def id(self) -> str:
        """A short fingerprint that tells which KEK sealed a keyring (not the key)."""
        return hmac.new(self.raw, b"storegw-kek-id", hashlib.sha256).hexdigest()[:16]


def _hkdf(material: bytes, info: bytes, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(material)


def _from_text(text: str, what: str) -> bytes:
    text = text.strip()
    if len(text) == 64:
        with contextlib.suppress(ValueError):
            return bytes.fromhex(text)
    if len(text) < 16:
        raise KeyringError(f"{what} is too short to be a key (64 hex digits expected)")
    return _hkdf(text.encode(), b"storegw-kek-passphrase")


def _credential_kek() -> Kek | None:
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    if not cred_dir:
        return None
    path = Path(cred_dir) / KEK_CREDENTIAL
    if not path.is_file():
        return None
    raw = path.read_bytes()
    material = _from_text(raw.decode(), f"the systemd credential {KEK_CREDENTIAL}") if _is_text(raw) else \
        _hkdf(raw, b"storegw-kek-credential")
    return Kek(material, KIND_CREDENTIAL, f"systemd credential {KEK_CREDENTIAL}")


def _is_text(raw: bytes) -> bool:
    try:
        raw.decode("ascii")
    except UnicodeDecodeError:
        return False
    return True


def _board_secret() -> tuple[bytes, str] | None:
    """The Raspberry Pi OTP customer private key, when programmed (32 bytes, not all zeros)."""
    tool = shutil.which("rpi-otp-private-key")
    if tool:
        try:
            out = subprocess.run([tool], capture_output=True, text=True, timeout=5, check=True).stdout
            raw = bytes.fromhex("".join(out.split()))
        except (OSError, subprocess.SubprocessError, ValueError):
            raw = b""
        if len(raw) >= 32 and any(raw):
            return raw, "Raspberry Pi OTP private key (rpi-otp-private-key)"
    tool = shutil.which("vcmailbox")
    if tool:
        # Tag 0x00030081: read the OTP customer private key, 8 words from row 0 (what rpi-otp-private-key does).
        try:
            out = subprocess.run([tool, "0x00030081", "40", "40", "0", "8"] + ["0"] * 8, capture_output=True,
                                 text=True, timeout=5, check=True).stdout
            words = out.split()[7:15]
            raw = b"".join(int(w, 16).to_bytes(4, "big") for w in words)
        except (OSError, subprocess.SubprocessError, ValueError):
            raw = b""
        if len(raw) == 32 and any(raw):
            return raw, "Raspberry Pi OTP private key (vcmailbox)"
    return None


def _board_kek() -> Kek | None:
    found = _board_secret()
    if found is None:
        return None
    raw, source = found
    return Kek(_hkdf(raw, b"storegw-kek-board"), KIND_BOARD, source)


def _file_kek(keys_dir: Path, *, create: bool) -> Kek | None:
    path = keys_dir / KEK_FILE
    if not path.is_file():
        if not create:
            return None
        _private_dir(keys_dir)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        fsync_dir(keys_dir)
        _LOGGER.warning("Generated a key-encryption key file %s: a systemd credential is better "
                        "(docs/operations.md, \"Keys\")", path)
    return Kek(_from_text(path.read_text(), str(path)), KIND_FILE, f"key file {path}")


def kek_sources(keys_dir: Path) -> list[Kek]:
    """Every KEK this board offers now, best first (the key file only if it exists)."""
    found = [_credential_kek(), _board_kek(), _file_kek(keys_dir, create=False)]
    return [k for k in found if k is not None]


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if os.stat(path).st_mode & 0o077:
        os.chmod(path, 0o700)


# ---------------------------------------------------------------------------
# the keyring


@dataclass
class Entry:
    """One key of the keyring (unwrapped in memory)."""

    purpose: str
    version: int
    status: str
    created: str
    raw: bytes = field(repr=False)
    note: str = ""

    @property
    def key_id(self) -> str:
        return f"{self.purpose}:{self.version}"


def _aad(purpose: str, version: int) -> bytes:
    return f"{purpose}:{version}".encode()


def _wrap(kek: Kek, e: Entry) -> dict[str, Any]:
    nonce = os.urandom(12)
    blob = nonce + AESGCM(kek.raw).encrypt(nonce, e.raw, _aad(e.purpose, e.version))
    out = {"purpose": e.purpose, "version": e.version, "status": e.status, "created": e.created,
           "wrapped": base64.b64encode(blob).decode()}
    if e.note:
        out["note"] = e.note
    return out


def _unwrap(kek: Kek, d: dict[str, Any]) -> Entry:
    blob = base64.b64decode(d["wrapped"])
    raw = AESGCM(kek.raw).decrypt(blob[:12], blob[12:], _aad(d["purpose"], int(d["version"])))
    return Entry(d["purpose"], int(d["version"]), d["status"], d.get("created", ""), raw, d.get("note", ""))


@dataclass(frozen=True)
class Signer:
    """Signs audit checkpoints and deletion receipts with the keyring's Ed25519 key."""

    _key: Ed25519PrivateKey = field(repr=False)
    key_id: str
    public_key_b64: str

    def sign(self, data: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of ``data``."""
        return self._key.sign(data)


def _ensure_base(entries: list[Entry]) -> None:
    """Add what every keyring has: a field key, an index root key, a signing key."""
    have = {e.purpose for e in entries}
    if FIELD not in have:
        entries.append(Entry(FIELD, 1, PRIMARY, _now(), os.urandom(32)))
    if INDEX not in have:
        entries.append(Entry(INDEX, 1, PRIMARY, _now(), os.urandom(32)))
    if SIGNING not in have:
        raw = Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                                         serialization.NoEncryption())
        entries.append(Entry(SIGNING, 1, PRIMARY, _now(), raw))


def _now() -> str:
    return utcnow().isoformat(timespec="seconds").replace("+00:00", "Z")


_HELD: dict[Path, list[Any]] = {}  # keys dir -> [open lock file, count] held by this process
_HELD_LOCK = threading.Lock()


class Keyring:
    """The keyring file of one board, unwrapped with its KEK. Open it with :meth:`open`."""

    def __init__(self, keys_dir: Path, kek: Kek, entries: list[Entry], *, kek_id: str,
                 better: Kek | None = None) -> None:
        self.dir = keys_dir
        self.path = keys_dir / KEYRING_NAME
        self.kek = kek
        self.kek_id = kek_id
        self.better_kek = better  # a better KEK is available than the one that sealed the keyring
        self._entries = entries
        self._mu = threading.RLock()
        self._listeners: list[Callable[[], None]] = []

    # -- opening
    @classmethod
    def open(cls, keys_dir: Path, *, create: bool = True) -> Keyring:
        """Read the keyring in ``keys_dir`` (making the directory, a KEK file if the board offers
        no better KEK, and a keyring with a field key, an index key and a signing key if needed)."""
        keys_dir = Path(keys_dir)
        path = keys_dir / KEYRING_NAME
        if not path.exists():
            if not create:
                raise KeyringError(f"there is no keyring at {path}: storegw makes one on its first start "
                                   f"(or run `storegw keys rotate --config CFG`)")
            _private_dir(keys_dir)
            with _file_lock(keys_dir / LOCK_NAME):
                if not path.exists():
                    sources = kek_sources(keys_dir)
                    kek = sources[0] if sources else _file_kek(keys_dir, create=True)
                    assert kek is not None
                    ring = cls(keys_dir, kek, [], kek_id=kek.id)
                    _ensure_base(ring._entries)
                    ring._write()
                    _LOGGER.info("Created the keyring %s (KEK: %s)", path, kek.source)
        ring = cls._load(keys_dir)
        if create and not all(ring._of(p) for p in (FIELD, INDEX, SIGNING)):
            ring.update(_ensure_base)
        return ring

    @classmethod
    def _load(cls, keys_dir: Path) -> Keyring:
        path = keys_dir / KEYRING_NAME
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise KeyringError(f"cannot read the keyring {path}: {err}. Fix: restore it (and its KEK) from "
                               f"your copy of the keys directory") from err
        if doc.get("format") != FORMAT:
            raise KeyringError(f"{path} has format {doc.get('format')!r}; this storegw reads format {FORMAT}")
        sources = kek_sources(keys_dir)
        kek = next((k for k in sources if k.id == doc.get("kek_id")), None)
        if kek is None:
            tried = ", ".join(k.source for k in sources) or "none"
            raise KeyringError(
                f"the key-encryption key that sealed {path} ({doc.get('kek_source', '?')}, id "
                f"{doc.get('kek_id')}) is not available (found: {tried}). Fix: provide it again: restore "
                f"{keys_dir / KEK_FILE} from your copy, or load the systemd credential {KEK_CREDENTIAL} "
                f"(LoadCredentialEncrypted=kek:...) that sealed it; docs/operations.md, \"Keys\"")
        try:
            entries = [_unwrap(kek, d) for d in doc.get("keys", [])]
        except (InvalidTag, KeyError, ValueError) as err:
            raise KeyringError(f"{path} does not unwrap with {kek.source}: it was altered or damaged. Fix: "
                               f"restore the keys directory from your copy") from err
        better = sources[0] if sources and sources[0].id != kek.id else None
        return cls(keys_dir, kek, entries, kek_id=kek.id, better=better)

    # -- writing
    def _write(self) -> None:
        kek = self.better_kek or self.kek
        doc = {"format": FORMAT, "kek_id": kek.id, "kek_source": kek.source, "kek_kind": kek.kind,
               "written": _now(), "keys": [_wrap(kek, e) for e in self._entries]}
        tmp = self.path.with_name(f".{KEYRING_NAME}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(doc, indent=1) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        fsync_dir(self.dir)
        if kek is not self.kek:
            _LOGGER.info("The keyring is now sealed with %s (was %s)", kek.source, self.kek.source)
        self.kek, self.kek_id, self.better_kek = kek, kek.id, None

    def update(self, change: Callable[[list[Entry]], Any]) -> Any:
        """Change the keyring under its file lock: re-read it, apply ``change(entries)``, write it
        atomically; every holder in this process sees the new keys. Returns what ``change`` returns."""
        with self._mu, _file_lock(self.dir / LOCK_NAME):
            fresh = Keyring._load(self.dir)
            self._entries = fresh._entries
            self.kek, self.kek_id, self.better_kek = fresh.kek, fresh.kek_id, fresh.better_kek
            result = change(self._entries)
            self._write()
        for fn in list(self._listeners):
            fn()
        return result

    def reload(self) -> None:
        """Re-read the keyring file (another process changed it)."""
        with self._mu:
            fresh = Keyring._load(self.dir)
            self._entries = fresh._entries
            self.kek, self.kek_id, self.better_kek = fresh.kek, fresh.kek_id, fresh.better_kek
        for fn in list(self._listeners):
            fn()

    def on_change(self, fn: Callable[[], None]) -> None:
        """Call ``fn()`` after every change of the keys (field ciphers drop their caches)."""
        self._listeners.append(fn)

    # -- reading
    def _of(self, purpose: str, status: str | None = None) -> list[Entry]:
        return sorted((e for e in self._entries if e.purpose == purpose and (status is None or e.status == status)),
                      key=lambda e: e.version)

    def entries(self, purpose: str | None = None) -> list[Entry]:
        """The keys (of one purpose), oldest first."""
        with self._mu:
            return [e for e in sorted(self._entries, key=lambda e: (e.purpose, e.version))
                    if purpose is None or e.purpose == purpose]

    def db_key(self, status: str = PRIMARY) -> Key | None:
        """The database key with that status (primary or pending), or None."""
        with self._mu:
            found = self._of(DB, status)
        return _db_key(found[-1]) if found else None

    def db_version(self, key: Key) -> int | None:
        """The version of a database key held in the keyring (None for a key from outside it)."""
        with self._mu:
            return next((e.version for e in self._of(DB) if hmac.compare_digest(e.raw, key.raw)), None)

    def retired_db_keys(self) -> list[Key]:
        """Database keys of earlier rotations, newest first (backups made before still open with them)."""
        with self._mu:
            return [_db_key(e) for e in reversed(self._of(DB, RETIRED))]

    def field_keys(self) -> tuple[int, dict[int, bytes]]:
        """(primary version, {version: key}) of the field-encryption keys."""
        with self._mu:
            keys = self._of(FIELD)
            primary = [e.version for e in keys if e.status == PRIMARY]
            return primary[-1], {e.version: e.raw for e in keys}

    def index_key(self, kind: str) -> bytes:
        """The blind-index key of one index kind (HKDF from the index root key; kinds need no new entry)."""
        with self._mu:
            root = self._of(INDEX, PRIMARY)[-1]
        return _hkdf(root.raw, b"storegw-blind-index:" + kind.encode())

    def index_key_id(self, kind: str) -> str:
        """A public id of that index key: which root version, and a fingerprint (not the key)."""
        with self._mu:
            root = self._of(INDEX, PRIMARY)[-1]
        fp = hmac.new(self.index_key(kind), b"storegw-key-id", hashlib.sha256).hexdigest()[:8]
        return f"index:{root.version}:{kind}:{fp}"

    def signer(self) -> Signer:
        """The Ed25519 signer of audit checkpoints and deletion receipts."""
        with self._mu:
            e = self._of(SIGNING, PRIMARY)[-1]
        key = Ed25519PrivateKey.from_private_bytes(e.raw)
        pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return Signer(key, f"ed25519:{hashlib.sha256(pub).hexdigest()[:16]}", base64.b64encode(pub).decode())

    # -- changes
    def add_pending_db_key(self) -> Key:
        """Make a new database key, pending (replacing a pending one left by an interrupted rotation)."""
        def change(entries: list[Entry]) -> Entry:
            entries[:] = [e for e in entries if not (e.purpose == DB and e.status == PENDING)]
            version = max((e.version for e in entries if e.purpose == DB), default=0) + 1
            new = Entry(DB, version, PENDING, _now(), os.urandom(32))
            entries.append(new)
            return new
        return _db_key(self.update(change))

    def promote_db_key(self, version: int, *, previous: Key | None = None) -> None:
        """Make pending database key ``version`` the primary; the primary before it (or ``previous``,
        a key from outside the keyring) becomes retired."""
        def change(entries: list[Entry]) -> None:
            target = next((e for e in entries if e.purpose == DB and e.version == version), None)
            if target is None:
                raise KeyringError(f"no database key version {version} in the keyring")
            if target.status == PRIMARY:
                return
            for e in entries:
                if e.purpose == DB and e.status == PRIMARY:
                    e.status = RETIRED
            known = {e.raw for e in entries if e.purpose == DB}
            if previous is not None and previous.raw not in known:
                entries.append(Entry(DB, 0, RETIRED, _now(), previous.raw, note=f"from {previous.source}"))
            target.status = PRIMARY
        self.update(change)

    def add_db_key(self) -> Key:
        """Make the first database key of a new board (primary)."""
        def change(entries: list[Entry]) -> Entry:
            found = [e for e in entries if e.purpose == DB and e.status == PRIMARY]
            if found:
                return found[-1]
            new = Entry(DB, max((e.version for e in entries if e.purpose == DB), default=0) + 1, PRIMARY, _now(),
                        os.urandom(32))
            entries.append(new)
            return new
        return _db_key(self.update(change))

    def add_field_version(self) -> int:
        """Make a new field key the primary (new writes use it; the old one stays active until re-wrapped)."""
        def change(entries: list[Entry]) -> int:
            version = max((e.version for e in entries if e.purpose == FIELD), default=0) + 1
            for e in entries:
                if e.purpose == FIELD and e.status == PRIMARY:
                    e.status = ACTIVE
            entries.append(Entry(FIELD, version, PRIMARY, _now(), os.urandom(32)))
            return version
        return self.update(change)

    def retire_field_version(self, version: int) -> None:
        """Mark a field key retired (it has no rows left; kept to read backups made before)."""
        def change(entries: list[Entry]) -> None:
            for e in entries:
                if e.purpose == FIELD and e.version == version and e.status == ACTIVE:
                    e.status = RETIRED
        self.update(change)

    # -- the daemon's lock
    @contextlib.contextmanager
    def exclusive_use(self, *, wait: float = 0) -> Iterator[None]:
        """Hold the keys directory's daemon lock: one process at a time may have the database open
        for writing with these keys and rotate them (the running gateway holds it; an offline
        rotation takes it). Raises KeyringError when another process holds it after ``wait`` s."""
        self.acquire(wait=wait)
        try:
            yield
        finally:
            self.release()

    def acquire(self, *, wait: float = 0) -> None:
        """Take the daemon lock (re-entrant within this process)."""
        key = self.dir.resolve()
        with _HELD_LOCK:
            held = _HELD.get(key)
            if held is not None:
                held[1] += 1
                return
        fh = open(self.dir / DAEMON_LOCK, "a+")  # noqa: SIM115 - held until release()
        os.chmod(fh.name, 0o600)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    fh.close()
                    raise KeyringError(f"another storegw process holds {self.dir / DAEMON_LOCK} (a running "
                                       f"gateway or a key rotation); stop it or wait for it") from None
                time.sleep(0.2)
        with _HELD_LOCK:
            _HELD[key] = [fh, 1]

    def release(self) -> None:
        """Release the daemon lock once (the last release unlocks)."""
        key = self.dir.resolve()
        with _HELD_LOCK:
            held = _HELD.get(key)
            if held is None:
                return
            held[1] -= 1
            if held[1] == 0:
                del _HELD[key]
                held[0].close()


def daemon_running(keys_dir: Path) -> bool:
    """Whether another process holds the daemon lock of ``keys_dir`` (a running gateway)."""
    path = keys_dir / DAEMON_LOCK
    if not path.exists():
        return False
    with _HELD_LOCK:
        if keys_dir.resolve() in _HELD:
            return False  # this process holds it
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    return False


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _db_key(e: Entry) -> Key:
    return Key(e.raw, f"keyring database key {e.version} ({e.status})")


# ---------------------------------------------------------------------------
# the database key, through the keyring


def legacy_db_key(data_dir: Path, key_file: str = "") -> Key | None:
    """The key of a board from before the keyring (credential db-key, $STOREGW_DB_KEY, key file)."""
    try:
        return resolve_key(data_dir, key_file, create=False)
    except StoreError:
        return None


def database_key(ring: Keyring, data_dir: Path, key_file: str = "", *, create: bool = True,
                 finish: bool = True) -> Key:
    """Return the key that opens the database in ``data_dir`` (or will create it).

    The keyring's primary key; on a board from before the keyring, its old key (until
    ``storegw keys rotate`` moves the database key into the keyring); on a new board, a new
    keyring key. When a rotation was interrupted after the rekey, the pending key is the one that
    opens the file: it is promoted now (``finish``: only the holder of the daemon lock), finishing
    the rotation. The key check beside the database says which key to try first; every candidate
    is tried before giving up.
    """
    path = data_dir / DB_NAME
    primary = ring.db_key(PRIMARY)
    pending = ring.db_key(PENDING)
    legacy = legacy_db_key(data_dir, key_file) if primary is None else None
    first = primary or legacy
    if first is None:
        if not create:
            raise StoreError(f"no database key: the keyring {ring.path} has none and neither the systemd "
                             f"credential db-key, $STOREGW_DB_KEY nor {key_file or data_dir / 'db.key'} exists")
        return ring.add_db_key()
    if not path.exists():
        return first
    candidates = [k for k in (first, pending) if k is not None]
    candidates.sort(key=lambda k: key_matches(path, k) is not True)
    for k in candidates:
        if opens(path, k):
            if k is pending and finish:
                _LOGGER.warning("A database key rotation was interrupted after the rekey; finishing it")
                if key_matches(path, k) is not True:
                    write_keycheck(path, k)
                ring.promote_db_key(ring.db_version(k) or 0, previous=legacy)
                remove_legacy_key_file(data_dir, key_file, legacy)
                return ring.db_key(PRIMARY) or k
            return k
    return first  # opening reports the wrong key or quarantines a damaged file


def remove_legacy_key_file(data_dir: Path, key_file: str, legacy: Key | None) -> None:
    """After the database key moved into the keyring, delete the old key file beside the database
    (its key stays in the keyring as retired, for older backups)."""
    if legacy is None or not legacy.source.startswith("key file "):
        return
    path = Path(legacy.source.removeprefix("key file "))
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
        _LOGGER.info("Deleted the old database key file %s (kept, retired, in the keyring)", path)


def current_db_key(data_dir: Path, keys_dir: Path, key_file: str = "", *, create: bool = False) -> Key:
    """The database key for a command that opens the database beside the gateway (backup, print,
    doctor, tests): through the keyring, or the old way on a board that has no keyring yet."""
    if not create and not (keys_dir / KEYRING_NAME).exists():
        return resolve_key(data_dir, key_file, create=False)
    ring = Keyring.open(keys_dir, create=create)
    return database_key(ring, data_dir, key_file, create=create, finish=False)
