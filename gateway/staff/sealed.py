"""STOPGAP field encryption for the staff package, until ``gateway/privacy/fields.py`` (branch
``keys``) lands: AES-256-GCM under a random key from ``gateway.store.ensure_secret`` (the ``meta``
table, key ``secret:staff-fields``), with the table, column and row bound into the AAD and a
version byte in front, the format ``fields.py`` uses.

Limitation, on purpose temporary: this key lives *inside* the SQLCipher database, so it protects
against someone reading a column dump, not against someone holding the database and its key. The
swap is this module only: ``seal`` and ``unseal`` become ``FieldCipher.encrypt`` and
``FieldCipher.decrypt`` with the keyring's field keys (kept outside the database), and the
columns sealed here (``ord_staff.totp_sealed``) are re-encrypted by the keys branch's re-wrap.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.core.errors import GatewayError
from gateway.store import ensure_secret
from gateway.store.db import Connection

SECRET_NAME = "secret:staff-fields"
_FORMAT = b"\x53"  # "S": the stopgap format, told apart from fields.py's ciphertexts
_NONCE = 12


class SealError(GatewayError):
    """A sealed value cannot be opened (altered, moved to another row, or another key)."""


def _aad(table: str, column: str, ref: str | int) -> bytes:
    return b"storegw-staff-sealed\x00" + f"{table}\x00{column}\x00{ref}".encode()


def _key(conn: Connection) -> bytes:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (SECRET_NAME,)).fetchone()
    if row is not None:
        return bytes.fromhex(row[0])
    return ensure_secret(conn, SECRET_NAME)  # first use: a write connection (the writer, or the CLI)


def seal(conn: Connection, table: str, column: str, ref: str | int, value: bytes) -> bytes:
    """Encrypt ``value`` for ``table.column`` of the row ``ref``."""
    nonce = os.urandom(_NONCE)
    return _FORMAT + nonce + AESGCM(_key(conn)).encrypt(nonce, value, _aad(table, column, ref))


def unseal(conn: Connection, table: str, column: str, ref: str | int, blob: bytes) -> bytes:
    """Decrypt what ``seal`` made for the same place."""
    if not isinstance(blob, bytes) or len(blob) < 1 + _NONCE + 16 or blob[:1] != _FORMAT:
        raise SealError(f"{table}.{column}: not a sealed value")
    try:
        return AESGCM(_key(conn)).decrypt(blob[1:1 + _NONCE], blob[1 + _NONCE:], _aad(table, column, ref))
    except InvalidTag:
        raise SealError(f"{table}.{column}: the sealed value was altered or belongs elsewhere") from None
