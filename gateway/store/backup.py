"""Backups of the encrypted database, and restoring one.

A backup is a consistent copy (one read transaction, so the outbox and the data that caused it
agree) made with SQLCipher's ``sqlcipher_export`` into a new file encrypted with the same key,
while storegw keeps running (WAL: the writer is not held up). It is written to a temporary name,
synced, checked (it opens with the key and passes ``quick_check``) and only then renamed into
place, with a key check beside it. A backup is as unreadable as the database without the key, so
keep the key somewhere else too (docs/operations.md).

Restoring never deletes: the current database (with its WAL and key check) is moved aside as
``storegw.db.before-restore-STAMP`` first, and only a backup that opens with the current key and
passes its check is put in place.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from gateway.core.errors import StoreError, WrongKeyError
from gateway.core.models import utcnow
from gateway.store.db import DB_NAME, KEYCHECK_SUFFIX, Key, connect, key_matches, rekey, write_keycheck

_LOGGER = logging.getLogger(__name__)

BACKUP_DIR = "backups"
PREFIX = "storegw-"
SUFFIX = ".db"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def verify(path: Path, key: Key) -> None:
    """Raise unless ``path`` opens with ``key`` and passes SQLite's quick check."""
    if key_matches(path, key) is False:
        raise WrongKeyError(f"{path} was made with another key than the one from {key.source}")
    conn = connect(path, key, readonly=True)
    try:
        result = conn.execute("PRAGMA quick_check").fetchone()[0]
    finally:
        conn.close()
    if result != "ok":
        raise StoreError(f"{path} fails its integrity check: {result}")


def list_backups(dest: Path) -> list[Path]:
    """Return the backups in ``dest``, oldest first."""
    return sorted(p for p in dest.glob(f"{PREFIX}*{SUFFIX}") if p.is_file())


def make_backup(data_dir: Path, key: Key, dest: Path | None = None, keep: int = 7) -> Path:
    """Write a checked backup of the database into ``dest`` (default DATA_DIR/backups); keep the
    ``keep`` newest backups there (0: keep all); return the new backup's path."""
    src = data_dir / DB_NAME
    if not src.exists():
        raise StoreError(f"there is no database at {src} to back up")
    dest = dest or data_dir / BACKUP_DIR
    dest.mkdir(parents=True, exist_ok=True)
    os.chmod(dest, 0o700)
    stamp = utcnow().strftime("%Y%m%dT%H%M%S%fZ")
    final = dest / f"{PREFIX}{stamp}{SUFFIX}"
    tmp = dest / f".{final.name}.tmp"
    conn = connect(src, key)
    try:
        # The key is 64 hex digits from our own Key: safe to write into the statement.
        conn.execute(f"ATTACH DATABASE ? AS backup KEY \"x'{key.raw.hex()}'\"", (str(tmp),))
        try:
            conn.execute("BEGIN")  # one snapshot of every table
            conn.execute("SELECT sqlcipher_export('backup')").fetchall()
            conn.execute("COMMIT")
        finally:
            conn.execute("DETACH DATABASE backup")
    except Exception:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        conn.close()
    os.chmod(tmp, 0o600)
    _fsync_file(tmp)
    try:
        verify(tmp, key)
    except Exception:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, final)
    write_keycheck(final, key)
    _fsync_dir(dest)
    if keep > 0:
        for old in list_backups(dest)[:-keep]:
            old.unlink(missing_ok=True)
            old.with_name(old.name + KEYCHECK_SUFFIX).unlink(missing_ok=True)
    _LOGGER.info("Backup written to %s", final)
    return final


def restore(data_dir: Path, key: Key, backup: Path, *, old_keys: Sequence[Key] = ()) -> Path | None:
    """Put ``backup`` in place of the database (storegw must be stopped); return where the current
    database was moved aside (None if there was none).

    A backup made before a key rotation opens with one of ``old_keys`` (the keyring keeps retired
    database keys for this): it is copied, re-encrypted under ``key`` and checked before it goes
    in place, so the database always opens with the current key.
    """
    if not backup.is_file():
        raise StoreError(f"no backup at {backup}")
    opened_with = key
    try:
        verify(backup, key)
    except StoreError as err:
        for old in old_keys:
            try:
                verify(backup, old)
            except StoreError:
                continue
            opened_with = old
            break
        else:
            raise err
    data_dir.mkdir(parents=True, exist_ok=True)
    db = data_dir / DB_NAME
    tmp = data_dir / f".{DB_NAME}.restore.tmp"
    shutil.copyfile(backup, tmp)
    os.chmod(tmp, 0o600)
    if opened_with is not key:
        conn = connect(tmp, opened_with)
        try:
            rekey(conn, tmp, key)
            conn.execute("PRAGMA journal_mode = DELETE")  # fold the WAL back in: one file to rename
        finally:
            conn.close()
        with_name = tmp.with_name(tmp.name + KEYCHECK_SUFFIX)
        with_name.unlink(missing_ok=True)
        try:
            verify(tmp, key)
        except Exception:
            tmp.unlink(missing_ok=True)
            raise
        _LOGGER.info("The backup was made under an older database key (%s); re-encrypted under the current one",
                     opened_with.source)
    _fsync_file(tmp)
    aside = None
    if db.exists():
        stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
        aside = db.with_name(f"{DB_NAME}.before-restore-{stamp}")
        for suffix in ("", "-wal", "-shm", KEYCHECK_SUFFIX):
            part = db.with_name(DB_NAME + suffix)
            if part.exists():
                os.replace(part, aside.with_name(aside.name + suffix))
    os.replace(tmp, db)
    write_keycheck(db, key)
    _fsync_dir(data_dir)
    _LOGGER.info("Restored %s from %s%s", db, backup, f"; the previous database is {aside}" if aside else "")
    return aside
