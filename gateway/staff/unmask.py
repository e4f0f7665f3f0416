"""Audited unmask: reveal one masked sensitive value to a staff member who may see it.

Everything outside this module shows sensitive values masked. A domain that stores one (members'
phones, guests' ID and passport numbers) declares it here in one line, ``Unmaskable(table,
column, kind, roles, ref=...)``; the staff page ``/staff/unmask/<kind>`` and
``StaffService.unmask`` then reveal one value of one subject at a time, when:

- the role may unmask that kind (``gateway/staff/matrix.py``: ``unmask-phone``, ``unmask-id``,
  ``unmask-passport``) and the field's own ``roles`` include it;
- the member has made fewer than ``PER_HOUR`` attempts (granted or refused) in the last hour;
- a reason is typed (``gateway.core.text.free_text``: cleaned, 1-200 characters, ID and phone
  numbers in it masked, a card number refused);
- for ID and passport numbers, a fresh TOTP code is given while the clock is trusted: a code of
  a time step after the last one the account used (at sign-in or an earlier unmask), so a
  replayed code is refused.

A column that holds more than one kind (``guest_people.doc_number_ct``: resident ID numbers and
passport or travel-permit numbers) names the column that tells them apart (``kind_column``) and
what each of its values is (``kinds``): the row decides, so a passport number is revealed only on
the passport page and shown with its document type.

Values are field-encrypted (``gateway/privacy/fields.py``): ``open_value`` decrypts with the
keyring's cipher, the AAD bound to the row's reference column declared there.

Every attempt, refused or granted, is recorded in ``staff_unmasks`` (for the limit and the
privacy report) and audited with ``accounts.audit``: who, which field, which subject (its
reference, never the value), the outcome and the reason.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from gateway.core.errors import CardNumberRefused
from gateway.core.text import free_text
from gateway.privacy.fields import FieldCipher, FieldCryptoError, field
from gateway.staff import matrix, totp
from gateway.staff.accounts import StaffMember, accept_step, audit, totp_secret
from gateway.staff.clock import ClockState
from gateway.store.db import Connection

KINDS = ("phone", "id", "passport")
TOTP_KINDS = frozenset({"id", "passport"})
PER_HOUR = 20
_REF_RE = re.compile(r"[A-Za-z0-9_.-]{1,40}")


@dataclass(frozen=True)
class Unmaskable:
    """One sensitive column that staff may unmask; ``ref`` is the column that names the subject."""

    table: str
    column: str
    kind: str
    roles: frozenset[str]
    ref: str = "id"
    kind_column: str | None = None  # a column of the row whose value decides the kind ...
    kinds: tuple[tuple[str, str], ...] = ()  # ... (value, kind) pairs; other values are not unmaskable

    def __post_init__(self) -> None:
        for name in (self.table, self.column, self.ref, self.kind_column or "x"):
            if not name.isidentifier():
                raise ValueError(f"not an SQL identifier: {name!r}")
        if self.kind not in KINDS or any(k not in KINDS for _, k in self.kinds):
            raise ValueError(f"kind must be one of {KINDS}")
        if (self.kind_column is None) != (not self.kinds):
            raise ValueError("give both kind_column and kinds, or neither")
        unknown = set(self.roles) - set(matrix.ROLES)
        if unknown:
            raise ValueError(f"unknown roles {sorted(unknown)}")

    @property
    def key(self) -> str:
        """How pages and the audit name the field: ``table.column``."""
        return f"{self.table}.{self.column}"

    def offers(self, kind: str) -> bool:
        """Whether values of ``kind`` can be revealed from this column."""
        return kind == self.kind if not self.kinds else any(k == kind for _, k in self.kinds)

    def kind_of(self, value: object) -> str | None:
        """The kind of a row whose ``kind_column`` holds ``value`` (the declared kind without one)."""
        if not self.kinds:
            return self.kind
        return dict(self.kinds).get(str(value))


# Every unmaskable field, one line each, e.g.
#   Unmaskable("members", "phone_ct", "phone", frozenset({"manager", "cashier"}), ref="member_id"),
_DOCS = (("resident_id", "id"), ("hmt_residence", "id"),  # GB 11643 numbers
         ("passport", "passport"), ("hk_mo_permit", "passport"), ("tw_permit", "passport"))  # travel documents
UNMASKABLE: list[Unmaskable] = [
    Unmaskable("guest_people", "doc_number_ct", "id", frozenset({"manager"}), kind_column="doc_type", kinds=_DOCS),
    Unmaskable("mem_members", "phone_ct", "phone", frozenset({"manager"})),
]


def declare(spec: Unmaskable) -> Unmaskable:
    """Declare a field from code that cannot edit ``UNMASKABLE`` (tests); idempotent.

    A field is declared once: another declaration of the same ``table.column`` is a ValueError.
    """
    if any(u.key == spec.key and u != spec for u in UNMASKABLE):
        raise ValueError(f"{spec.key} is already declared unmaskable")
    if spec not in UNMASKABLE:
        UNMASKABLE.append(spec)
    return spec


def undeclare(spec: Unmaskable) -> None:
    """Remove a declaration made with ``declare``."""
    if spec in UNMASKABLE:
        UNMASKABLE.remove(spec)


def lookup(key: str) -> Unmaskable | None:
    """The declared field named ``table.column``, or None."""
    return next((u for u in UNMASKABLE if u.key == key), None)


def find(conn: Connection, spec: Unmaskable, ref: str) -> tuple[bytes, object, str] | None:
    """The row ``ref`` of a field: (ciphertext, the value its AAD is bound to, the value of its
    ``kind_column`` or ""), or None."""
    aad_ref = field(spec.table, spec.column).ref or "NULL"
    kind = spec.kind_column or "NULL"
    row = conn.execute(f"SELECT {spec.column}, {aad_ref}, {kind} FROM {spec.table} "  # noqa: S608 - declared names
                       f"WHERE {spec.ref} = ?", (ref,)).fetchone()
    if row is None or row[0] is None:
        return None
    return bytes(row[0]), row[1], "" if row[2] is None else str(row[2])


def open_value(cipher: FieldCipher, spec: Unmaskable, blob: bytes, aad_ref: object) -> str:
    """Decrypt a stored value (``gateway/privacy/fields.py``)."""
    return cipher.decrypt_text(spec.table, spec.column, blob, aad_ref)  # type: ignore[arg-type]


# cause -> HTTP status of the refusal
REFUSALS = {
    "role": 403, "unknown-field": 404, "rate": 429, "no-reason": 400, "clock": 503, "no-totp": 401,
    "bad-totp": 401, "replayed-totp": 401, "no-subject": 404, "cannot-open": 409, "other-kind": 409,
}
MESSAGES = {
    "role": "Your role may not reveal this field.",
    "unknown-field": "No such field to reveal.",
    "rate": f"At most {PER_HOUR} reveals an hour; try later.",
    "no-reason": "Type why you need to see it.",
    "clock": "The board's clock is not trusted, so codes cannot be checked: ask a technician.",
    "no-totp": "Enter a code from your authenticator app.",
    "bad-totp": "That code is wrong.",
    "replayed-totp": "That code was already used; wait for the next one.",
    "no-subject": "No such record.",
    "cannot-open": "The stored value cannot be decrypted.",
    "other-kind": "That record holds another kind of document: reveal it from that document's page.",
}


@dataclass(frozen=True)
class Outcome:
    """What an attempt gave: the value, or the cause of the refusal."""

    value: str | None
    cause: str = ""
    label: str = ""  # what the value is, e.g. the document type of a guest's number

    @property
    def status(self) -> int:
        return 200 if not self.cause else REFUSALS[self.cause]

    @property
    def message(self) -> str:
        return MESSAGES.get(self.cause, "")


def attempt(conn: Connection, member: StaffMember, kind: str, key: str, ref: str, reason: str, code: str,
            clock: ClockState, cipher: FieldCipher, now_ms: int | None = None) -> Outcome:
    """Check, record and audit one unmask attempt (inside a write, so the record always commits)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    key, ref = _typed(key, 80), _typed(ref, 40)
    try:
        why = free_text(str(reason), 200).strip()  # cleaned and tripwired like every typed reason
    except CardNumberRefused:
        why = "[a card number was typed]"
        reason_refused = True
    else:
        reason_refused = False
    spec = lookup(key)
    cause, value = "", None
    action = f"unmask-{kind}" if kind in KINDS else ""
    recent = conn.execute("SELECT count(*) FROM staff_unmasks WHERE staff_id = ? AND ts_ms > ?",
                          (member.id, now_ms - 3600_000)).fetchone()[0]
    if not action or not matrix.allowed(member.role, action, mfa=member.mfa) or (
            spec is not None and member.role not in spec.roles):
        cause = "role"
    elif spec is None or not spec.offers(kind):
        cause = "unknown-field"
    elif recent >= PER_HOUR:
        cause = "rate"
    elif not why or reason_refused:
        cause = "no-reason"
    elif kind in TOTP_KINDS:
        cause = _fresh_totp(conn, member, code, clock, now_ms, cipher)
    label = ""
    if not cause and spec is not None:
        found = find(conn, spec, ref)
        if found is None:
            cause = "no-subject"
        elif spec.kind_of(found[2]) != kind:
            cause = "other-kind"
        else:
            try:
                value = open_value(cipher, spec, found[0], found[1])
            except FieldCryptoError:
                cause = "cannot-open"
            label = found[2]
    conn.execute("INSERT INTO staff_unmasks (ts_ms, staff_id, field, ref, granted, cause) VALUES (?, ?, ?, ?, ?, ?)",
                 (now_ms, member.id, key, ref, int(not cause), cause))
    audit(conn, member.name, "unmask" if not cause else "unmask-refused", subject_of(key, ref),
          f"{kind}; {cause or 'granted'}; {why}",
          {"kind": kind if kind in KINDS else "other", "outcome": cause or "granted"})
    return Outcome(None if cause else value, cause, "" if cause else label)


def _typed(value: object, limit: int) -> str:
    """A typed field name or record reference, through the tripwires ("" when it was a card number)."""
    try:
        return free_text(str(value), limit)
    except CardNumberRefused:
        return ""


def subject_of(key: str, ref: str) -> str:
    """The audit chain's subject of an attempt: ``field:TABLE.COLUMN/REF`` (a reference, never the value);
    an undeclared field is ``unknown``, a reference that is not a plain id ``invalid``."""
    field = key if lookup(key) is not None else "unknown"
    return f"field:{field}/{ref if _REF_RE.fullmatch(ref) else 'invalid'}"


def _fresh_totp(conn: Connection, member: StaffMember, code: str, clock: ClockState, now_ms: int,
                cipher: FieldCipher) -> str:
    if not clock.trusted:
        return "clock"
    if not isinstance(code, str) or not code.strip():
        return "no-totp"
    secret = totp_secret(conn, member.id, cipher)
    step = totp.match(secret, code, now_ms / 1000) if secret else None
    if step is None:
        return "bad-totp"
    if not accept_step(conn, member.id, step):
        return "replayed-totp"
    return ""


def counts_this_week(conn: Connection, now_ms: int | None = None) -> list[tuple[str, int, int]]:
    """(staff name, granted, refused) over the last 7 days, for the privacy report."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    return [(n or f"#{sid}", g, r) for sid, n, g, r in conn.execute(
        "SELECT u.staff_id, m.name, sum(u.granted), sum(1 - u.granted) FROM staff_unmasks u "
        "LEFT JOIN ord_staff m ON m.id = u.staff_id WHERE u.ts_ms > ? GROUP BY u.staff_id ORDER BY m.name",
        (now_ms - 7 * 86400_000,))]
