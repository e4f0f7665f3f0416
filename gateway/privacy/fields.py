"""Field-level encryption on top of SQLCipher, blind indexes, and the registry of encrypted columns.

A ciphertext is ``0x01 ‖ key version (4 bytes, big-endian) ‖ nonce (12) ‖ AES-256-GCM(ciphertext ‖
tag)`` (Tink's prefix, so decryption picks exactly one key). The AAD binds it to its place:
``storegw-field ‖ 0 ‖ table ‖ 0 ‖ column ‖ 0 ‖ row reference`` (the row reference is a stable
column such as a member id, declared per field; empty when the row has none), so a ciphertext
copied into another column or row does not decrypt.

Exact lookups by phone or ID number go through a **blind index**: HMAC-SHA256 of the normalised
value under a per-kind key from the keyring, **truncated** to ``INDEX_BITS`` bits and stored as an
integer. CipherSweet's rule for R rows per index key is 2 ≤ C < √R with C = R / 2^bits: for a store
of ~20,000 rows, 2^bits ≤ 10,000, so 13 bits (8,192 values; C ≈ 2.4, well under √R ≈ 141). A lookup
returns about 2–3 candidate rows, which are decrypted and compared. Without the keyring, the index
of a guessed phone or ID cannot be computed, and even with the index key one index value stands for
≈ 2^19 of the 2^32 mobile numbers (≈ 2^24 of the 2^37 ID numbers), so the index alone confirms
nothing. docs/architecture.md, "Keys and rotation", has the arithmetic.

Which columns are encrypted is declared in ``FIELDS`` (one line each); the background re-wrap
(``gateway/privacy/service.py``) and ``storegw keys status`` walk it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.core.errors import GatewayError
from gateway.store.db import Connection

FORMAT_BYTE = 0x01
PREFIX_LEN = 5
NONCE_LEN = 12
INDEX_BITS = 13  # 2 <= C < sqrt(R) for R ~ 20,000 rows per store (see above)


class FieldCryptoError(GatewayError):
    """A field ciphertext cannot be decrypted (wrong place, unknown key version, altered)."""


# ---------------------------------------------------------------------------
# the registry of encrypted columns


@dataclass(frozen=True)
class EncryptedField:
    """One field-encrypted column.

    ``ref``: a stable column of the same row bound into the AAD (e.g. the member id), or None.
    ``index``: the column holding the blind index of this field, and ``kind`` its index kind
    (``phone``, ``id_number``...: the key and the normalisation).
    """

    table: str
    column: str
    ref: str | None = None
    index: str | None = None
    kind: str | None = None

    def __post_init__(self) -> None:
        for name in (self.table, self.column, self.ref, self.index):
            if name is not None and not name.isidentifier():
                raise ValueError(f"not an SQL identifier: {name!r}")
        if (self.index is None) != (self.kind is None):
            raise ValueError("give both index and kind, or neither")


# Every field-encrypted column, one line each, e.g.
#   EncryptedField("members", "phone_ct", ref="member_id", index="phone_bidx", kind="phone"),
FIELDS: list[EncryptedField] = [
    EncryptedField("mem_members", "phone_ct", ref="member_no", index="phone_bidx", kind="phone"),
    EncryptedField("mem_members", "allergies_ct", ref="member_no"),
    EncryptedField("guest_people", "name_ct", ref="ref"),
    EncryptedField("guest_people", "doc_number_ct", ref="ref", index="doc_bidx", kind="id_number"),
    EncryptedField("guest_people", "details_ct", ref="ref"),
    EncryptedField("guest_people", "photo_ct", ref="ref"),
    EncryptedField("guest_people", "guardian_ct", ref="ref"),
    EncryptedField("guest_reports", "payload_ct", ref="id"),
    EncryptedField("ord_staff", "totp_sealed", ref="id"),  # a manager's, technician's or auditor's TOTP secret
]


def declare(table: str, column: str, *, ref: str | None = None, index: str | None = None,
            kind: str | None = None) -> EncryptedField:
    """Declare a field-encrypted column from code that cannot edit ``FIELDS`` (tests); idempotent."""
    spec = EncryptedField(table, column, ref=ref, index=index, kind=kind)
    if spec not in FIELDS:
        FIELDS.append(spec)
    return spec


def undeclare(spec: EncryptedField) -> None:
    """Remove a declaration made with ``declare`` (tests)."""
    if spec in FIELDS:
        FIELDS.remove(spec)


def field(table: str, column: str) -> EncryptedField:
    """The declaration of one column (KeyError if it is not declared)."""
    for f in FIELDS:
        if (f.table, f.column) == (table, column):
            return f
    raise KeyError(f"{table}.{column} is not a declared encrypted field (gateway/privacy/fields.py FIELDS)")


# ---------------------------------------------------------------------------
# normalisation before indexing

_NON_DIGITS = re.compile(r"\D+")


def normalise_phone(value: str) -> str:
    """Digits only, the mainland prefix (+86, 0086, 86 before 11 digits) removed."""
    digits = _NON_DIGITS.sub("", value)
    for prefix in ("0086", "86"):
        if digits.startswith(prefix) and len(digits) - len(prefix) == 11:
            return digits[len(prefix):]
    return digits


def normalise_id(value: str) -> str:
    """Upper case, spaces and dashes removed (GB 11643 ends in X; passports are A-Z0-9)."""
    return re.sub(r"[\s-]+", "", value).upper()


NORMALISERS: dict[str, Callable[[str], str]] = {
    "phone": normalise_phone,
    "id_number": normalise_id,
    "passport": normalise_id,
}


# ---------------------------------------------------------------------------
# the cipher


def _aad(table: str, column: str, ref: str | int | None) -> bytes:
    return b"storegw-field\x00" + table.encode() + b"\x00" + column.encode() + b"\x00" + \
        ("" if ref is None else str(ref)).encode()


def version_of(blob: bytes) -> int:
    """The key version a ciphertext was made with."""
    if len(blob) < PREFIX_LEN + NONCE_LEN + 16 or blob[0] != FORMAT_BYTE:
        raise FieldCryptoError("not a storegw field ciphertext")
    return int.from_bytes(blob[1:PREFIX_LEN], "big")


def prefix(version: int) -> bytes:
    """The 5-byte prefix of ciphertexts under key ``version``."""
    return bytes([FORMAT_BYTE]) + version.to_bytes(4, "big")


class FieldCipher:
    """Encrypts and decrypts field values and computes blind indexes with a keyring's keys.

    Takes the keyring (``gateway.privacy.keys.Keyring``); follows its changes (a new primary
    version after ``keys rotate`` is used for the next write).
    """

    def __init__(self, ring: object) -> None:
        self._ring = ring
        self._mu = threading.Lock()
        self._load()
        ring.on_change(self._load)  # type: ignore[attr-defined]

    def _load(self) -> None:
        primary, keys = self._ring.field_keys()  # type: ignore[attr-defined]
        with self._mu:
            self._primary = primary
            self._aeads = {v: AESGCM(k) for v, k in keys.items()}
            self._index: dict[str, bytes] = {}

    @property
    def primary_version(self) -> int:
        """The version new ciphertexts are made with."""
        return self._primary

    @property
    def versions(self) -> list[int]:
        """Every field-key version the keyring holds."""
        return sorted(self._aeads)

    def encrypt(self, table: str, column: str, value: str | bytes, ref: str | int | None = None) -> bytes:
        """Encrypt ``value`` for ``table.column`` (of the row ``ref``) under the primary key."""
        data = value.encode() if isinstance(value, str) else value
        with self._mu:
            version, aead = self._primary, self._aeads[self._primary]
        nonce = os.urandom(NONCE_LEN)
        return prefix(version) + nonce + aead.encrypt(nonce, data, _aad(table, column, ref))

    def decrypt(self, table: str, column: str, blob: bytes, ref: str | int | None = None) -> bytes:
        """Decrypt a ciphertext of ``table.column`` (of the row ``ref``) with the key of its version."""
        version = version_of(blob)
        with self._mu:
            aead = self._aeads.get(version)
        if aead is None:
            raise FieldCryptoError(f"{table}.{column}: field key version {version} is not in the keyring")
        try:
            return aead.decrypt(blob[PREFIX_LEN:PREFIX_LEN + NONCE_LEN], blob[PREFIX_LEN + NONCE_LEN:],
                                _aad(table, column, ref))
        except InvalidTag:
            raise FieldCryptoError(f"{table}.{column}: the ciphertext does not belong here or was altered") from None

    def decrypt_text(self, table: str, column: str, blob: bytes, ref: str | int | None = None) -> str:
        """``decrypt`` for text values."""
        return self.decrypt(table, column, blob, ref).decode()

    def rewrap(self, table: str, column: str, blob: bytes, ref: str | int | None = None) -> bytes:
        """Re-encrypt a ciphertext under the primary key (unchanged if it already is)."""
        if version_of(blob) == self._primary:
            return blob
        return self.encrypt(table, column, self.decrypt(table, column, blob, ref), ref)

    def _index_key(self, kind: str) -> bytes:
        with self._mu:
            key = self._index.get(kind)
        if key is None:
            key = self._ring.index_key(kind)  # type: ignore[attr-defined]
            with self._mu:
                self._index[kind] = key
        return key

    def blind_index(self, kind: str, value: str, bits: int = INDEX_BITS) -> int:
        """The truncated keyed index of a value of ``kind`` (normalised first): an int < 2**bits."""
        normalise = NORMALISERS.get(kind, str.strip)
        mac = hmac.new(self._index_key(kind), normalise(value).encode(), hashlib.sha256).digest()
        return int.from_bytes(mac[:4], "big") >> (32 - bits)


# ---------------------------------------------------------------------------
# values of the staff package's interim seal (before field encryption existed)
#
# ``ord_staff.totp_sealed`` was once sealed with AES-256-GCM under a random key kept in the database's
# own ``meta`` table (``secret:staff-fields``; format byte 0x53 "S", AAD ``storegw-staff-sealed``): it
# protected a column dump, not a copy of the database with its key. Such values are read here only to
# move them under the keyring's field keys (``migrate_legacy``: at start, and by every re-wrap, so
# ``keys rotate`` moves them too); once none is left the interim key is deleted.

LEGACY_BYTE = 0x53
LEGACY_SECRET = "secret:staff-fields"
LEGACY_VERSION = 0  # how ``rows_per_version`` counts them: under no keyring version


def _legacy_open(conn: Connection, table: str, column: str, ref: str | int | None, blob: bytes) -> bytes:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (LEGACY_SECRET,)).fetchone()
    if row is None:
        raise FieldCryptoError(f"{table}.{column}: an interim-sealed value, but its key is gone")
    aad = b"storegw-staff-sealed\x00" + f"{table}\x00{column}\x00{'' if ref is None else ref}".encode()
    try:
        return AESGCM(bytes.fromhex(row[0])).decrypt(blob[1:1 + NONCE_LEN], blob[1 + NONCE_LEN:], aad)
    except InvalidTag:
        raise FieldCryptoError(f"{table}.{column}: the interim-sealed value was altered or belongs elsewhere") \
            from None


def migrate_legacy(conn: Connection, cipher: FieldCipher) -> int:
    """Re-encrypt every interim-sealed value of a declared column under the primary field key (in a
    write transaction); delete the interim key once none is left. Return how many were moved."""
    moved = 0
    for f in FIELDS:
        if not _exists(conn, f.table):
            continue
        ref = f.ref or "NULL"
        rows = conn.execute(f"SELECT rowid, {f.column}, {ref} FROM {f.table} "  # noqa: S608 - declared names
                            f"WHERE substr({f.column}, 1, 1) = ?", (bytes([LEGACY_BYTE]),)).fetchall()
        for rowid, blob, ref_value in rows:
            plain = _legacy_open(conn, f.table, f.column, ref_value, bytes(blob))
            conn.execute(f"UPDATE {f.table} SET {f.column} = ? WHERE rowid = ?",  # noqa: S608
                         (cipher.encrypt(f.table, f.column, plain, ref_value), rowid))
            moved += 1
    if _exists(conn, "meta"):
        conn.execute("DELETE FROM meta WHERE key = ?", (LEGACY_SECRET,))
    return moved


# ---------------------------------------------------------------------------
# the database side: rows per version, re-wrap in batches


def rows_per_version(conn: Connection, fields: list[EncryptedField] | None = None) -> dict[int, int]:
    """Count the ciphertexts of every declared column per key version (tables not yet made count 0;
    interim-sealed values count under ``LEGACY_VERSION``)."""
    counts: dict[int, int] = {}
    for f in FIELDS if fields is None else fields:
        if not _exists(conn, f.table):
            continue
        rows = conn.execute(f"SELECT substr({f.column}, 1, 5), count(*) FROM {f.table} "  # noqa: S608
                            f"WHERE {f.column} IS NOT NULL GROUP BY 1").fetchall()
        for head, n in rows:
            head = bytes(head) if head is not None else b""
            version = int.from_bytes(head[1:5], "big") if head[:1] == bytes([FORMAT_BYTE]) else LEGACY_VERSION
            counts[version] = counts.get(version, 0) + n
    return counts


def _exists(conn: Connection, table: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone() \
        is not None


def rewrap_batch(conn: Connection, cipher: FieldCipher, limit: int = 200) -> int:
    """Re-encrypt up to ``limit`` ciphertexts of older versions under the primary key (run it as a
    write, through the writer); return how many were re-encrypted."""
    done = migrate_legacy(conn, cipher)
    head = prefix(cipher.primary_version)
    for f in list(FIELDS):
        if done >= limit or not _exists(conn, f.table):
            continue
        ref = f.ref or "NULL"
        rows = conn.execute(f"SELECT rowid, {f.column}, {ref} FROM {f.table} "  # noqa: S608
                            f"WHERE {f.column} IS NOT NULL AND substr({f.column}, 1, 5) != ? LIMIT ?",
                            (head, limit - done)).fetchall()
        for rowid, blob, ref_value in rows:
            new = cipher.rewrap(f.table, f.column, bytes(blob), ref_value)
            conn.execute(f"UPDATE {f.table} SET {f.column} = ? WHERE rowid = ?", (new, rowid))  # noqa: S608
            done += 1
    return done
