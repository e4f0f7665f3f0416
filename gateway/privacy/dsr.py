"""Data-subject requests (issue 10, item 8) and the tombstones that keep an erasure erased.

``export(conn, inventory, "staff:NAME")`` gathers what every domain holds about one person through
the subject hooks declared with the inventory; ``erase`` deletes or blanks it and says, per PIPL
Art. 47(2), what the law makes us keep ("retained by legal obligation until DATE; processing
stopped"). Both are audited by the caller's ``audit(conn, who, action, target, reason)`` with a
reference (``dsr:KIND-<keyed hash>``), never the value.

**Tombstones.** An erasure first appends a keyed hash of ``KIND:VALUE`` to
``DATA_DIR/privacy/tombstones.jsonl`` (fsynced), a file beside the database that a restore does not
replace; ``meta`` records how many tombstones the database has had applied. After ``storegw
restore`` of an older backup, and at start when the database has had fewer applied than the file
holds, every subject value the hooks list is hashed and each match is erased again: a restored
backup does not bring an erased person back. The file holds no value, only HMAC-SHA256 under a key
derived from the keyring (``Keyring.index_key("tombstone")``, outside the data dir), so a copy of the
data dir cannot test a guessed name against it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.core.errors import GatewayError
from gateway.core.inventory import Inventory
from gateway.core.models import iso_ms
from gateway.store.db import Connection

TOMBSTONE_DIR = "privacy"
APPLIED_KEY = "privacy:tombstones-applied"

Audit = Callable[[Connection, str, str, str, str], None]


class SubjectError(GatewayError):
    """A subject that is not KIND:VALUE, or a kind no domain answers for."""

    exit_code = 2


def parse(inventory: Inventory, subject: str) -> tuple[str, str]:
    """Split and normalise ``KIND:VALUE`` (refusing kinds no domain declares)."""
    kind, sep, value = subject.partition(":")
    kind = kind.strip().lower()
    if not sep or not value.strip():
        raise SubjectError(f"subject {subject!r}: expected KIND:VALUE, e.g. staff:wang or queue:A12")
    hooks = inventory.subjects(kind)
    if not hooks:
        kinds = ", ".join(inventory.kinds())
        raise SubjectError(f"no domain answers for subject kind {kind!r} (kinds: {kinds}; phone: and id: come with "
                           f"field encryption's blind indexes)")
    return kind, hooks[0].normalise(value)


class Tombstones:
    """The keyed hashes of erased subjects, outside the database."""

    def __init__(self, data_dir: Path, key: bytes | None = None) -> None:
        self.dir = data_dir / TOMBSTONE_DIR
        self.path = self.dir / "tombstones.jsonl"
        self.key_path = self.dir / "tombstone.key"
        self._ring_key = key

    def _key(self) -> bytes:
        # The keyring's (``Keyring.index_key("tombstone")``, outside the data dir) when given; a key
        # file beside the tombstones only where no keyring exists (tests, a board not yet migrated).
        if self._ring_key is not None:
            return self._ring_key
        if self.key_path.is_file():
            return bytes.fromhex(self.key_path.read_text().strip())
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        fd = os.open(self.key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        return self._key()

    def hash(self, kind: str, value: str) -> str:
        """HMAC-SHA256 of ``kind:value`` under the tombstone key (hex)."""
        return hmac.new(self._key(), f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()

    def entries(self) -> list[dict[str, Any]]:
        """Every tombstone, oldest first."""
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def add(self, kind: str, value: str, ts_ms: int) -> dict[str, Any]:
        """Append (and fsync) the tombstone of one subject; return it."""
        self.dir.mkdir(parents=True, exist_ok=True)
        entry = {"seq": len(self.entries()) + 1, "kind": kind, "h": self.hash(kind, value), "ts": iso_ms(ts_ms)}
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as fh:
            fh.write(json.dumps(entry, separators=(",", ":")) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        return entry

    def record_run(self, run_ms: int) -> None:
        """Remember, outside the database, when retention last ran (a restored database is older)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        run_ms = max(run_ms, self.last_run_ms() or 0)
        tmp = self.dir / ".state.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"last_retention_ms": run_ms}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.dir / "state.json")

    def last_run_ms(self) -> int | None:
        """When retention last ran, by the file beside the database."""
        path = self.dir / "state.json"
        return int(json.loads(path.read_text())["last_retention_ms"]) if path.is_file() else None

    def restored(self, conn: Connection) -> bool:
        """Whether this database is older than the erasures or retention runs recorded beside it."""
        from gateway.privacy.retention import last_run_ms

        file_run, db_run = self.last_run_ms(), last_run_ms(conn)
        return self.pending(conn) or (file_run is not None and (db_run is None or db_run < file_run))

    def pending(self, conn: Connection) -> bool:
        """Whether this database has had fewer tombstones applied than the file holds (a restore)."""
        return applied(conn) < len(self.entries())

    def reapply(self, conn: Connection, inventory: Inventory, now_ms: int) -> dict[str, int]:
        """Erase again every subject whose keyed hash is a tombstone; return subjects erased per kind."""
        entries = self.entries()
        wanted: dict[str, set[str]] = {}
        for e in entries:
            wanted.setdefault(e["kind"], set()).add(e["h"])
        done: dict[str, int] = {}
        for kind, hashes in wanted.items():
            hooks = inventory.subjects(kind)
            values = {h.normalise(v) for hook in hooks for v in hook.values(conn) for h in hooks[:1]}
            for value in sorted(values):
                if self.hash(kind, value) in hashes:
                    for hook in hooks:
                        hook.erase(conn, value, now_ms)
                    done[kind] = done.get(kind, 0) + 1
        _set_applied(conn, len(entries))
        return done


def applied(conn: Connection) -> int:
    """How many tombstones this database has had applied."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (APPLIED_KEY,)).fetchone()
    return int(row[0]) if row else 0


def _set_applied(conn: Connection, n: int) -> None:
    conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                 (APPLIED_KEY, str(n)))


def reference(tombstones: Tombstones, kind: str, value: str) -> str:
    """What the audit log names the subject by: the kind and a prefix of its keyed hash."""
    return f"dsr:{kind}-{tombstones.hash(kind, value)[:16]}"


def export(conn: Connection, inventory: Inventory, tombstones: Tombstones, subject: str, *, who: str, now_ms: int,
           audit: Audit) -> dict[str, Any]:
    """Everything held about one subject, by table; audited (inside the caller's transaction)."""
    kind, value = parse(inventory, subject)
    data: dict[str, list[dict[str, Any]]] = {}
    for hook in inventory.subjects(kind):
        for table, rows in hook.export(conn, value).items():
            data.setdefault(table, []).extend(rows)
    declared = {t: [c.name for c in inventory.table(t).columns if c.personal] for t in data if t in inventory.tables}
    ref = reference(tombstones, kind, value)
    audit(conn, who, "privacy.export", ref, "data-subject access request")
    return {"subject": {"kind": kind, "reference": ref}, "generated": iso_ms(now_ms),
            "erased_before": tombstones.hash(kind, value) in {e["h"] for e in tombstones.entries()},
            "tables": data,
            "inventory": {t: {"personal_columns": cols, "description": inventory.table(t).description}
                          for t, cols in declared.items()}}


def erase(conn: Connection, inventory: Inventory, tombstones: Tombstones, subject: str, *, who: str, reason: str,
          now_ms: int, audit: Audit) -> dict[str, Any]:
    """Erase one subject everywhere (the tombstone first, so a crash before the commit is re-applied
    at start); return what was erased and what is retained by legal obligation, until when."""
    kind, value = parse(inventory, subject)
    if not reason.strip():
        raise SubjectError("an erasure needs a reason (--reason)")
    ref = reference(tombstones, kind, value)
    # Audit before the erasure: the hooks may delete the rows the audit helper resolves names from.
    audit(conn, who, "privacy.erase", ref, reason)
    tombstones.add(kind, value, now_ms)
    erased: dict[str, int] = {}
    retained: list[dict[str, Any]] = []
    for hook in inventory.subjects(kind):
        result = hook.erase(conn, value, now_ms)
        for table, n in result.erased.items():
            erased[table] = erased.get(table, 0) + n
        retained.extend(result.retained)
    _set_applied(conn, len(tombstones.entries()))
    answer = "erased"
    if retained:
        until = max(r["until"] for r in retained)
        answer = f"retained by legal obligation until {until[:10]}; processing stopped"
    return {"subject": {"kind": kind, "reference": ref}, "erased": erased, "retained": retained, "answer": answer}
