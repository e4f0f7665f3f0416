"""The only place that opens the SQLCipher database.

A key comes from systemd credentials (``$CREDENTIALS_DIRECTORY/db-key``), then
``$STOREGW_DB_KEY``, then a key file generated on first run (mode 0600). A small sidecar
file holds a salted HMAC of the key, so a failure to open is told apart reliably:
the key is wrong (an error naming the fix; the file is never touched) or the file is damaged
(moved aside with a timestamp, a fresh database is created, an alert is raised).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlcipher3

from gateway.core.errors import CorruptDatabaseError, StoreError, WrongKeyError
from gateway.core.models import utcnow

_LOGGER = logging.getLogger(__name__)

DB_NAME = "storegw.db"
KEYCHECK_SUFFIX = ".keycheck"
_PBKDF2_ROUNDS = 200_000

Connection = sqlcipher3.Connection
DatabaseError = sqlcipher3.DatabaseError
IntegrityError = sqlcipher3.IntegrityError


@dataclass(frozen=True)
class Key:
    """A database key: 32 raw bytes and where it came from (for messages, never the key)."""

    raw: bytes
    source: str

    def __repr__(self) -> str:
        return f"Key(source={self.source!r})"


def immediate(conn: Connection, fn: Callable[[Connection], Any]) -> Any:
    """Run ``fn(conn)`` in one ``BEGIN IMMEDIATE`` transaction: committed, or rolled back on any error.

    For a connection of its own outside the writer thread (the CLI's commands beside a running
    gateway: SQLite serialises the two writers, the gateway's writer waits on its busy timeout).
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return result


def _raw_from_text(text: str) -> bytes:
    text = text.strip()
    try:
        if len(text) == 64:
            return bytes.fromhex(text)
    except ValueError:
        pass
    # A passphrase: stretch it once per process rather than on every connect.
    return hashlib.pbkdf2_hmac("sha256", text.encode(), b"storegw-db-key", _PBKDF2_ROUNDS)


def resolve_key(data_dir: Path, key_file: str = "", *, create: bool = True) -> Key:
    """Find the database key (credential, environment, key file) or generate the key file."""
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    if cred_dir and (Path(cred_dir) / "db-key").is_file():
        return Key(_raw_from_text((Path(cred_dir) / "db-key").read_text()), "systemd credential db-key")
    env = os.environ.get("STOREGW_DB_KEY")
    if env:
        return Key(_raw_from_text(env), "$STOREGW_DB_KEY")
    path = Path(key_file) if key_file else data_dir / "db.key"
    if path.is_file():
        return Key(_raw_from_text(path.read_text()), f"key file {path}")
    if not create:
        raise StoreError(f"no database key: {path} does not exist and neither $STOREGW_DB_KEY nor the systemd "
                         f"credential db-key is set")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    _LOGGER.info("Generated a new database key in %s (mode 0600)", path)
    return Key(_raw_from_text(path.read_text()), f"key file {path}")


def _keycheck(key: Key, salt: bytes) -> bytes:
    return hmac.new(key.raw, b"storegw-keycheck" + salt, hashlib.sha256).digest()


def _keycheck_path(path: Path) -> Path:
    return path.with_name(path.name + KEYCHECK_SUFFIX)


def write_keycheck(path: Path, key: Key) -> None:
    """Write the salted HMAC beside a database file that tells a wrong key from a damaged file
    (temp file, fsync, rename, directory fsync: a crash leaves the old check or the new one)."""
    salt = secrets.token_bytes(16)
    tmp = _keycheck_path(path).with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(salt + _keycheck(key, salt))
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, _keycheck_path(path))
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def key_matches(path: Path, key: Key) -> bool | None:
    """Return whether the key is the one the database was made with (None if unknown)."""
    check = _keycheck_path(path)
    if not check.is_file():
        return None
    blob = check.read_bytes()
    return hmac.compare_digest(blob[16:], _keycheck(key, blob[:16]))


# SQLite's heap in this process (every connection's page cache, schema, statements) stays about this
# size: past it, page caches reuse their pages instead of growing (docs/architecture.md, Memory).
SOFT_HEAP_LIMIT = 8 * 1024 * 1024


def private_files(path: Path) -> None:
    """Make the database file (created empty if missing) and any -wal/-shm/key check beside it 0600.

    Whichever process opens the database (``storegw run`` or a CLI command, whatever its umask):
    SQLite creates the -wal and -shm files with the database file's permissions, so a 0600 database
    keeps them 0600 too; files left 0644 by an older version are tightened here.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return  # e.g. a missing directory: sqlcipher3.connect reports it
    try:
        os.fchmod(fd, 0o600)
    except OSError:
        pass  # not ours to change (another user's file): opening it will tell
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm", KEYCHECK_SUFFIX):
        side = path.with_name(path.name + suffix)
        try:
            if side.stat().st_mode & 0o077:
                os.chmod(side, 0o600)
        except OSError:
            pass


def connect(path: str | Path, key: Key, *, readonly: bool = False, cache_kib: int = 2000) -> Connection:
    """Open the database with its key, WAL, foreign keys and a busy timeout; verify the key.

    ``cache_kib`` bounds this connection's page cache (each connection has its own).
    """
    path = Path(path)
    uri = f"file:{path}?mode=ro" if readonly else f"file:{path}"
    if not readonly:
        private_files(path)
    try:
        conn = sqlcipher3.connect(uri, uri=True, timeout=30.0, isolation_level=None, check_same_thread=False)
    except sqlcipher3.Error as err:
        raise StoreError(f"cannot open database {path}: {err}") from err
    try:
        conn.execute("PRAGMA cipher_log_level = NONE")
        conn.execute(f"PRAGMA key = \"x'{key.raw.hex()}'\"")
        conn.execute("PRAGMA cipher_memory_security = OFF")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        if not readonly:
            conn.execute("PRAGMA journal_mode = WAL")
        # FULL: a commit we acknowledged survives a power cut, not only a crash.
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("PRAGMA temp_store = MEMORY")
        # Deleted content is overwritten with zeros (cells and freed pages), so what retention or an
        # erasure deletes is not left in free space (gateway/privacy/retention.py).
        conn.execute("PRAGMA secure_delete = ON")
        conn.execute(f"PRAGMA cache_size = -{int(cache_kib)}")
        conn.execute(f"PRAGMA soft_heap_limit = {SOFT_HEAP_LIMIT}")
    except sqlcipher3.DatabaseError as err:
        conn.close()
        if key_matches(path, key) is False:
            raise WrongKeyError(
                f"the database key from {key.source} does not open {path}. The database was left untouched. "
                f"Fix: provide the key this database was created with (systemd credential db-key, "
                f"$STOREGW_DB_KEY or {path.parent / 'db.key'}), or restore from a backup.") from err
        if key_matches(path, key) is None and path.exists() and path.stat().st_size > 0:
            raise WrongKeyError(
                f"the database {path} cannot be opened with the key from {key.source} (wrong key or damaged "
                f"file; there is no key check to tell which). The database was left untouched. Fix: provide "
                f"the right key, or move the file aside to start a fresh database.") from err
        raise CorruptDatabaseError(f"database {path} is damaged: {err}") from err
    return conn


def rekey(conn: Connection, path: Path, new_key: Key, step: Callable[[str], None] | None = None) -> None:
    """Re-encrypt the open database ``conn`` (of ``path``) under ``new_key``, in place.

    ``PRAGMA rekey`` rewrites every page in one transaction; in WAL mode a crash before its commit
    frame leaves the database under the old key, after it under the new one (tests/privacy kill -9
    it). The WAL is then checkpointed and truncated, so no page under the old key stays in it, and
    the key check is rewritten. ``conn`` must be the only connection writing; run it between
    transactions. ``step(name)`` is called after "rekeyed" and "keycheck" (crash tests hook it).
    """
    if conn.in_transaction:
        raise StoreError("rekey must run between transactions")
    conn.execute(f"PRAGMA rekey = \"x'{new_key.raw.hex()}'\"")
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    if step:
        step("rekeyed")
    write_keycheck(path, new_key)
    if step:
        step("keycheck")


def opens(path: Path, key: Key) -> bool:
    """Return whether ``key`` opens the database at ``path`` (tried, not guessed from the key check)."""
    try:
        conn = connect(path, key)
    except StoreError:
        return False
    conn.close()
    return True


@dataclass
class OpenResult:
    """What ``open_database`` found: the path and whether a damaged file was moved aside."""

    path: Path
    quarantined: Path | None = None


def open_database(data_dir: Path, key: Key) -> OpenResult:
    """Make sure a usable database exists: create it, or quarantine a damaged one (never wipe)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    path = data_dir / DB_NAME
    fresh = not path.exists()
    try:
        conn = connect(path, key)
        try:
            if fresh:
                # Freed pages can then be given back to the file system (PRAGMA incremental_vacuum) by
                # the retention job, without a full VACUUM; only possible before the first table.
                conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
                conn.execute("VACUUM")  # an empty file: instant
            private_files(path)
            if fresh or key_matches(path, key) is None:
                write_keycheck(path, key)
            result = conn.execute("PRAGMA quick_check").fetchone()[0]
            if result != "ok":
                raise CorruptDatabaseError(f"database {path} failed its integrity check: {result}")
        finally:
            conn.close()
    except CorruptDatabaseError as err:
        stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
        aside = path.with_name(f"{DB_NAME}.corrupt-{stamp}")
        _LOGGER.error("%s; moving it aside to %s and starting a fresh database", err, aside.name)
        os.replace(path, aside)
        for suffix in ("-wal", "-shm"):
            side = path.with_name(DB_NAME + suffix)
            if side.exists():
                os.replace(side, aside.with_name(aside.name + suffix))
        conn = connect(path, key)
        conn.close()
        write_keycheck(path, key)
        return OpenResult(path, quarantined=aside)
    return OpenResult(path)
