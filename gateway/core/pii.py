"""Recognisers for the personal data that must never leave a store by accident: a tripwire, not a control.

Stdlib only (the bottom floor), so the text cleaner, the log filter, the upstream filter and the
ingest can all use it. Four kinds, each confirmed by its own check digits so ordinary numbers are
not taken for personal data:

- ``id_number``: a GB 11643 citizen identity number, 18 characters (optionally written 6-8-4 with
  spaces or dashes), valid province prefix, calendar birth date and ISO 7064 MOD 11-2 check
  character (``gateway.core.gb11643``). Legacy 15-digit numbers have no check digit and are not
  recognised (too many ordinary numbers would match).
- ``mobile``: a mainland mobile number ``1[3-9]x xxxx xxxx`` with an optional ``+86``/``0086``/``86``
  prefix, spaces or dashes between the groups, not inside a longer run of digits.
- ``card``: 13-19 digits (spaces or dashes allowed between them) that pass the Luhn check and start
  with a payment major-industry digit 2-6 or UnionPay's 81/82. Epoch-millisecond timestamps
  (13 digits starting 1) and most store member numbers (8..., 9...) are thus not cards.
- ``mrz``: a machine-readable-zone line of a passport, ID card or visa (ICAO 9303): 30 or more
  characters of ``A-Z 0-9 <`` that contain ``<<`` (every line 1, and padding), or exactly 30, 36 or
  44 whose check digits (7-3-1) are right for a TD1, TD2 or TD3 line 2.

``scan(text)`` returns the hits by kind; ``redact(text)`` returns the text with every hit replaced by
its mask (``gateway.core.masking``) and the counts; every redaction is also counted process-wide
(``redacted_counts()``, shown in ``/api/v1/health`` as ``privacy.redacted``; kinds and numbers,
never values). ``pseudonym(value)`` is a stable keyed stand-in for an identifier that looks like
personal data (a device id that is a phone number).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from gateway.core import gb11643
from gateway.core.masking import mask_card, mask_id_number, mask_mrz, mask_phone

KINDS = ("id_number", "mobile", "card", "mrz")

# Cheap first look: nothing can be a hit without a run of 11+ digits (separators allowed) or "<<"
# or a long run of MRZ characters. Most strings (metric names, enums, prose) fail this at C speed.
_PREFILTER = re.compile(r"\d(?:[ \-]?\d){10}|<<|[A-Z0-9<]{30}")
_ID_RE = re.compile(r"(?<![0-9])(\d{6})[ \-]?(\d{8})[ \-]?(\d{3}[0-9Xx])(?![0-9A-Za-z])")
_MOBILE_RE = re.compile(r"(?<![0-9+])(?:(?:\+|00)?86[ \-]?)?(1[3-9]\d)[ \-]?(\d{4})[ \-]?(\d{4})(?![0-9])")
_CARD_RE = re.compile(r"(?<![0-9])\d(?:[ \-]?\d){12,18}(?![0-9])")
_MRZ_RE = re.compile(r"(?<![A-Z0-9<])[A-Z0-9<]{30,}(?![A-Z0-9<])")
_MRZ_LENGTHS = (30, 36, 44)


def luhn_ok(digits: str) -> bool:
    """Return whether a digit string passes the Luhn (mod 10) check."""
    if not digits or not digits.isascii() or not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def mrz_check_digit(text: str) -> str:
    """Return the ICAO 9303 7-3-1 check digit of ``text`` (digits, A-Z = 10-35, ``<`` = 0); ValueError otherwise."""
    total = 0
    for i, ch in enumerate(text):
        if "0" <= ch <= "9":
            value = ord(ch) - 48
        elif "A" <= ch <= "Z":
            value = ord(ch) - 55
        elif ch == "<":
            value = 0
        else:
            raise ValueError(f"character {ch!r} is not allowed in an MRZ")
        total += value * (7, 3, 1)[i % 3]
    return str(total % 10)


def is_card_number(digits: str) -> bool:
    """Return whether a digit string is taken for a payment card number (see the module doc)."""
    return (13 <= len(digits) <= 19 and (digits[0] in "23456" or digits[:2] in ("81", "82"))
            and luhn_ok(digits))


def _check(field: str, digit: str) -> bool:
    try:
        return mrz_check_digit(field) == digit
    except ValueError:
        return False


def is_mrz_line(line: str) -> bool:
    """Return whether a string is one line of a machine-readable zone (see the module doc)."""
    if len(line) < 30 or not all("A" <= c <= "Z" or "0" <= c <= "9" or c == "<" for c in line):
        return False
    if "<<" in line:  # filler: every line 1, most lines 2 and 3, and over-long (mis-scanned) lines
        return True
    if len(line) not in _MRZ_LENGTHS:
        return False
    if len(line) == 44 or len(line) == 36:  # TD3 / TD2 line 2: number, birth date, expiry
        return _check(line[0:9], line[9]) and _check(line[13:19], line[19]) and _check(line[21:27], line[27])
    return _check(line[0:6], line[6]) and _check(line[8:14], line[14])  # TD1 line 2: birth date, expiry


@dataclass(frozen=True, slots=True)
class Hit:
    """One recognised value: its kind and where it is (``text[start:end]``)."""

    kind: str
    start: int
    end: int


def _id_hits(text: str) -> Iterable[Hit]:
    for m in _ID_RE.finditer(text):
        if gb11643.is_valid(m.group(1) + m.group(2) + m.group(3)):
            yield Hit("id_number", m.start(), m.end())


def _card_hits(text: str) -> Iterable[Hit]:
    for m in _CARD_RE.finditer(text):
        digits = m.group().replace(" ", "").replace("-", "")
        if is_card_number(digits):
            yield Hit("card", m.start(), m.end())


def _mobile_hits(text: str) -> Iterable[Hit]:
    for m in _MOBILE_RE.finditer(text):
        yield Hit("mobile", m.start(), m.end())


def _mrz_hits(text: str) -> Iterable[Hit]:
    for m in _MRZ_RE.finditer(text):
        if is_mrz_line(m.group()):
            yield Hit("mrz", m.start(), m.end())


# In order of precedence where two overlap: an ID number is also a run of digits.
_FINDERS: tuple[Callable[[str], Iterable[Hit]], ...] = (_mrz_hits, _id_hits, _card_hits, _mobile_hits)


def find(text: str) -> list[Hit]:
    """Return the non-overlapping hits in ``text``, in order of position."""
    if not text or not _PREFILTER.search(text):
        return []
    taken: list[Hit] = []
    for finder in _FINDERS:
        for hit in finder(text):
            if not any(hit.start < t.end and t.start < hit.end for t in taken):
                taken.append(hit)
    return sorted(taken, key=lambda h: h.start)


def scan(text: str) -> dict[str, int]:
    """Return how many values of each kind ``text`` holds (kinds with no hit are left out)."""
    return dict(Counter(h.kind for h in find(text)))


def mask(kind: str, value: str) -> str:
    """Return the masked form of one recognised value of ``kind``."""
    if kind == "id_number":
        return mask_id_number(value.replace(" ", "").replace("-", "").upper())
    if kind == "mobile":
        return mask_phone(value)
    if kind == "card":
        return mask_card(value)
    return mask_mrz(value)


# -- process-wide counter of redactions (health: privacy.redacted)
_lock = threading.Lock()
_counts: Counter[str] = Counter()


def count(kinds: dict[str, int]) -> None:
    """Add redactions to the process-wide counter."""
    if kinds:
        with _lock:
            _counts.update(kinds)


def redacted_counts() -> dict[str, int]:
    """Return the redactions so far, by kind, with every kind present (0 when none)."""
    with _lock:
        return {kind: _counts.get(kind, 0) for kind in KINDS}


def redact(text: str, *, keep: frozenset[str] = frozenset(), tally: bool = True) -> tuple[str, dict[str, int]]:
    """Return ``text`` with every hit (of a kind not in ``keep``) masked, and the counts by kind.

    ``tally`` adds the counts to the process-wide counter (health); the input tripwire and the
    filters do, a check that only looks does not.
    """
    hits = [h for h in find(text) if h.kind not in keep]
    if not hits:
        return text, {}
    out: list[str] = []
    pos = 0
    counts: Counter[str] = Counter()
    for h in hits:
        out.append(text[pos:h.start])
        out.append(mask(h.kind, text[h.start:h.end]))
        pos = h.end
        counts[h.kind] += 1
    out.append(text[pos:])
    result = dict(counts)
    if tally:
        count(result)
    return "".join(out), result


# -- keyed pseudonyms for identifiers (device ids, metric names) that look like personal data
_key_lock = threading.Lock()
_pseudonym_key: bytes | None = None


def use_pseudonym_key(key: bytes | None) -> None:
    """Set the key of ``pseudonym`` (the running gateway's stored secret, so names are stable across restarts)."""
    global _pseudonym_key
    with _key_lock:
        _pseudonym_key = key


def _key() -> bytes:
    global _pseudonym_key
    with _key_lock:
        if _pseudonym_key is None:
            _pseudonym_key = secrets.token_bytes(32)  # tools without a gateway: stable for this process
        return _pseudonym_key


def pseudonym(value: str) -> str:
    """Return ``redacted-`` and 8 hex digits of an HMAC of ``value``: stable, distinct, irreversible."""
    return "redacted-" + hmac.new(_key(), value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:8]


def pseudonymize(value: str) -> str:
    """Return ``value`` unchanged, or its pseudonym (counted) when it holds anything personal."""
    hits = scan(value)
    if not hits:
        return value
    count(hits)
    return pseudonym(value)


# -- the log filter
class RedactingFilter(logging.Filter):
    """Redact recogniser hits in every record's formatted message (arguments included) and in its traceback.

    Installed on the handlers by every ``storegw`` command (``gateway.cli``), so whatever a module
    logs, and whichever logger it uses, reaches stderr and journald redacted.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError, KeyError):  # a bad format string: the handler reports it
            return True
        clean, hits = redact(message)
        if hits:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)[0]
        if record.stack_info:
            record.stack_info = redact(record.stack_info)[0]
        return True


def install_log_filter(handlers: Iterable[logging.Handler] | None = None) -> RedactingFilter:
    """Add one ``RedactingFilter`` to each handler (the root logger's by default); return it."""
    flt = RedactingFilter()
    for handler in handlers if handlers is not None else logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(flt)
    return flt


def redact_strings(obj: Any, *, tally: bool = True) -> Any:
    """Return a copy of a JSON-like value with every string (keys included) redacted."""
    if isinstance(obj, str):
        return redact(obj, tally=tally)[0]
    if isinstance(obj, dict):
        return {redact_strings(k, tally=tally): redact_strings(v, tally=tally) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact_strings(v, tally=tally) for v in obj]
    return obj
