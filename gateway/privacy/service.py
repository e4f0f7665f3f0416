"""Key rotation and the background re-wrap, in the running gateway and offline.

Database key rotation, in this order, each step durable before the next (a crash at any point
leaves a database that opens, tests/privacy/test_rotation.py kills it after each):

1. a new key is written to the keyring as **pending**;
2. the writer pauses between transactions and runs ``PRAGMA rekey`` on its own connection (one
   transaction: before its commit the file is under the old key, after it under the new one), then
   checkpoints and truncates the WAL; read statements wait at the store's gate meanwhile;
3. the key check beside the database is rewritten for the new key;
4. the pending key is promoted to primary and the old one is kept as **retired** (older backups
   still restore with it); an old board's ``db.key`` file is deleted.

At open (``keys.database_key``) the key check says which key to try first, and a database that
opens only with the pending key finishes step 4. Field keys: a new version becomes primary (new
writes use it) and the re-wrap job re-encrypts older ciphertexts in small batches through the
writer; a version with no rows left is retired.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.config import Config
from gateway.core.errors import GatewayError
from gateway.privacy import control
from gateway.privacy.fields import FIELDS, NORMALISERS, FieldCipher, migrate_legacy, rewrap_batch, rows_per_version
from gateway.privacy.keys import (
    ACTIVE,
    CONTROL_SOCKET,
    DB,
    FIELD,
    KIND_FILE,
    PENDING,
    PRIMARY,
    RETIRED,
    Keyring,
    KeyringError,
    daemon_running,
    database_key,
    legacy_db_key,
    remove_legacy_key_file,
)
from gateway.store import Store
from gateway.store.db import DB_NAME, Connection, Key, connect, rekey

_LOGGER = logging.getLogger(__name__)

CRASH_ENV = "STOREGW_TEST_CRASH_AFTER"  # tests: SIGKILL this process right after the named step


def crash_point(step: str) -> None:
    """Die here if a crash test asked for it (``$STOREGW_TEST_CRASH_AFTER=<step>``)."""
    if os.environ.get(CRASH_ENV) == step:
        _LOGGER.warning("crash test: killing this process after step %s", step)
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(10)


def rotate_db_key(ring: Keyring, current: Key, do_rekey: Callable[[Key, Callable[[str], None]], None],
                  data_dir: Path, key_file: str = "") -> Key:
    """Steps 1-4 above; ``do_rekey(new_key, step)`` performs 2 and 3. Returns the new key."""
    legacy = current if ring.db_version(current) is None else None
    new = ring.add_pending_db_key()
    crash_point("pending")
    do_rekey(new, crash_point)
    ring.promote_db_key(ring.db_version(new) or 0, previous=legacy)
    crash_point("promoted")
    remove_legacy_key_file(data_dir, key_file, legacy)
    _LOGGER.info("Database key rotated: now %s", ring.db_key(PRIMARY).source)  # type: ignore[union-attr]
    return ring.db_key(PRIMARY) or new


def retire_empty(ring: Keyring, conn: Connection) -> list[int]:
    """Retire every non-primary field-key version that no ciphertext uses any more."""
    counts = rows_per_version(conn)
    retired = []
    for e in ring.entries(FIELD):
        if e.status == ACTIVE and counts.get(e.version, 0) == 0:
            ring.retire_field_version(e.version)
            retired.append(e.version)
    if retired:
        _LOGGER.info("Field key version(s) %s retired: no rows left", ", ".join(map(str, retired)))
    return retired


@dataclass(frozen=True)
class Job:
    """A periodic job for the scheduler (the shape of ``gateway.spine.context.Periodic``)."""

    id: str
    every_s: float
    fn: Callable[[], None]


class KeyService:
    """The running gateway's keys: field cipher, re-wrap job, control channel for rotation."""

    def __init__(self, cfg: Config, ring: Keyring, store: Store) -> None:
        self.cfg = cfg
        self.ring = ring
        self.store = store
        self.cipher = FieldCipher(ring)
        self._control: control.ControlServer | None = None
        self.rotations = 0
        self.rewrapped = 0

    def start(self) -> None:
        """Move values of the staff package's interim seal under the field keys; serve the control socket."""
        moved = self.store.writer.call(lambda c: migrate_legacy(c, self.cipher))
        if moved:
            _LOGGER.info("%d interim-sealed value(s) moved under field key version %d", moved,
                         self.cipher.primary_version)
        self._control = control.ControlServer(self.ring.dir / CONTROL_SOCKET, self.handle)
        try:
            self._control.start()
        except OSError as err:
            _LOGGER.error("Cannot serve the key control socket %s (%s): `storegw keys rotate` will not reach "
                          "this gateway", self.ring.dir / CONTROL_SOCKET, err)
            self._control = None

    def stop(self) -> None:
        """Stop the control socket."""
        if self._control is not None:
            self._control.stop()
            self._control = None

    def close(self) -> None:
        """Release the keys directory (after the store is closed)."""
        self.ring.release()

    def periodic(self) -> list[Job]:
        """The background re-wrap."""
        return [Job("privacy-rewrap", self.cfg.keys.rewrap_every, self.rewrap_tick)]

    def versions(self, conn: Connection) -> dict[str, Any]:
        """Key versions for the privacy report (``report.key_versions``): no key material."""
        from gateway.privacy import report

        counts = rows_per_version(conn)
        primary = [e.version for e in self.ring.entries(DB) if e.status == PRIMARY]
        fields = [{"version": e.version, "status": e.status, "rows": counts.get(e.version, 0)}
                  for e in self.ring.entries(FIELD)]
        return report.key_versions(primary[-1] if primary else None, fields, self.ring.signer().key_id)

    def health(self) -> dict[str, Any]:
        """Key versions for the health document (no key material)."""
        return {"field_key": self.cipher.primary_version, "rotations": self.rotations, "rewrapped": self.rewrapped}

    # -- work
    def rewrap_tick(self) -> int:
        """Re-encrypt one batch of older ciphertexts (and any interim-sealed value); retire versions left
        with no rows."""
        if not any(e.status == ACTIVE for e in self.ring.entries(FIELD)):
            moved = self.store.writer.call(lambda c: migrate_legacy(c, self.cipher))
            self.rewrapped += moved
            return moved
        n = self.store.writer.call(lambda c: rewrap_batch(c, self.cipher, self.cfg.keys.rewrap_batch), timeout=120)
        self.rewrapped += n
        if n == 0:
            self.store.writer.call(lambda c: retire_empty(self.ring, c))
        return n

    def rotate(self, *, db: bool = True, fields: bool = True) -> dict[str, Any]:
        """Rotate while running: the database key through the writer, the field key by a new version."""
        out: dict[str, Any] = {"ok": True, "mode": "online"}
        if db:
            current = self.store.key
            new = rotate_db_key(self.ring, current, lambda k, step: self.store.rekey(k, step),
                                self.cfg.data_path, self.cfg.store.key_file)
            out["db_version"] = self.ring.db_version(new)
        if fields:
            out["field_version"] = self.ring.add_field_version()
            crash_point("field-version")
        self.rotations += 1
        return out

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """Serve one control request."""
        op = request.get("op")
        if op == "rotate":
            return self.rotate(db=bool(request.get("db", True)), fields=bool(request.get("fields", True)))
        if op == "rewrap":  # tests and impatient technicians: run the re-wrap now, to the end
            total = 0
            while (n := self.rewrap_tick()) > 0:
                total += n
            return {"ok": True, "rewrapped": total}
        if op == "ping":
            return {"ok": True}
        return {"ok": False, "error": f"unknown op {op!r}"}


# ---------------------------------------------------------------------------
# the CLI side: online through the control socket, else offline


def rotate(cfg: Config, *, db: bool = True, fields: bool = True) -> dict[str, Any]:
    """Rotate through the running gateway, or offline when it is not running."""
    keys_dir = cfg.keys_path
    reply = control.request(keys_dir / CONTROL_SOCKET, {"op": "rotate", "db": db, "fields": fields})
    if reply is not None:
        if not reply.get("ok"):
            raise GatewayError(f"the running gateway could not rotate: {reply.get('error')}")
        return reply
    if daemon_running(keys_dir):
        raise GatewayError(f"storegw is running on these keys but does not answer on "
                           f"{keys_dir / CONTROL_SOCKET}; see its log, or stop it and rotate offline")
    return rotate_offline(cfg, db=db, fields=fields)


def rotate_offline(cfg: Config, *, db: bool = True, fields: bool = True) -> dict[str, Any]:
    """Rotate with storegw stopped: rekey the file, make a new field version and re-wrap everything."""
    ring = Keyring.open(cfg.keys_path)
    out: dict[str, Any] = {"ok": True, "mode": "offline"}
    with ring.exclusive_use():
        data_dir = cfg.data_path
        path = data_dir / DB_NAME
        if not path.exists():
            raise GatewayError(f"there is no database at {path} yet: start storegw once (the keyring is ready "
                               f"at {ring.path})")
        current = database_key(ring, data_dir, cfg.store.key_file, create=False)
        if db:
            def do_rekey(new: Key, step: Callable[[str], None]) -> None:
                conn = connect(path, current)
                try:
                    rekey(conn, path, new, step)
                finally:
                    conn.close()

            new = rotate_db_key(ring, current, do_rekey, data_dir, cfg.store.key_file)
            out["db_version"] = ring.db_version(new)
            current = new
        if fields:
            out["field_version"] = ring.add_field_version()
            crash_point("field-version")
        cipher = FieldCipher(ring)
        conn = connect(path, current)
        try:
            total = 0
            while True:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    n = rewrap_batch(conn, cipher, cfg.keys.rewrap_batch)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                total += n
                if n == 0:
                    break
            out["rewrapped"] = total
            out["retired_field_versions"] = retire_empty(ring, conn)
        finally:
            conn.close()
    return out


def status(cfg: Config) -> dict[str, Any]:
    """What ``storegw keys status`` prints: sources, versions, rows per version; never key material."""
    from gateway.privacy.keys import KEYRING_NAME

    keys_dir = cfg.keys_path
    doc: dict[str, Any] = {"keys_dir": str(keys_dir), "keyring": str(keys_dir / KEYRING_NAME),
                           "running": daemon_running(keys_dir)}
    if not (keys_dir / KEYRING_NAME).exists():
        legacy = legacy_db_key(cfg.data_path, cfg.store.key_file)
        doc.update(kek=None, database={"key": legacy.source if legacy else None, "in_keyring": False},
                   fields=None, note="no keyring yet: storegw makes one on its next start")
        return doc
    ring = Keyring.open(keys_dir, create=False)
    doc["kek"] = {"source": ring.kek.source, "kind": ring.kek.kind, "id": ring.kek_id,
                  "better_available": ring.better_kek.source if ring.better_kek else None,
                  "warning": kek_warning(ring)}
    dbs = ring.entries(DB)
    primary = [e.version for e in dbs if e.status == PRIMARY]
    legacy = legacy_db_key(cfg.data_path, cfg.store.key_file) if not primary else None
    doc["database"] = {
        "path": str(cfg.data_path / DB_NAME),
        "in_keyring": bool(primary),
        "primary": primary[-1] if primary else None,
        "legacy_source": legacy.source if legacy else None,
        "pending": [e.version for e in dbs if e.status == PENDING],
        "retired": [e.version for e in dbs if e.status == RETIRED],
    }
    counts: dict[int, int] | None = None
    path = cfg.data_path / DB_NAME
    if path.exists():
        try:
            key = database_key(ring, cfg.data_path, cfg.store.key_file, create=False, finish=False)
            conn = connect(path, key, readonly=True)
            try:
                counts = rows_per_version(conn)
            finally:
                conn.close()
            doc["database"]["opens_with"] = ring.db_version(key) if ring.db_version(key) is not None else key.source
        except (GatewayError, KeyringError) as err:
            doc["database"]["error"] = str(err)
    doc["fields"] = {
        "encrypted_columns": [f"{f.table}.{f.column}" for f in FIELDS],
        "versions": [{"version": e.version, "status": e.status, "created": e.created,
                      "rows": None if counts is None else counts.get(e.version, 0)} for e in ring.entries(FIELD)],
        "pending_rewrap": None if counts is None else sum(n for v, n in counts.items()
                                                          if v != ring.field_keys()[0]),
    }
    kinds = sorted({f.kind for f in FIELDS if f.kind} | set(NORMALISERS))
    doc["blind_indexes"] = {kind: ring.index_key_id(kind) for kind in kinds}
    signer = ring.signer()
    doc["signing"] = {"key_id": signer.key_id, "public_key": signer.public_key_b64}
    return doc


def kek_warning(ring: Keyring) -> str:
    """The warning for a KEK kept in a plain key file (empty for a credential or a board secret)."""
    if ring.better_kek is not None:
        return (f"a better key-encryption key is available ({ring.better_kek.source}) than the one sealing the "
                f"keyring ({ring.kek.source}): run `storegw keys rotate --config CFG` to re-seal it, then delete "
                f"{ring.dir / 'kek'}")
    if ring.kek.kind != KIND_FILE:
        return ""
    return (f"the key-encryption key is a plain file ({ring.dir / 'kek'}): anyone with a copy of {ring.dir} and "
            f"the data directory reads everything, field-encrypted data included. Move it into a systemd "
            f"credential sealed to this board (TPM2 where present): systemd-creds encrypt --name=kek "
            f"{ring.dir / 'kek'} /etc/storegw/credentials/kek, add LoadCredentialEncrypted=kek:/etc/storegw/"
            f"credentials/kek to storegw.service, restart, run `storegw keys rotate --config CFG`, then "
            f"delete {ring.dir / 'kek'} (docs/operations.md, \"Keys\")")
