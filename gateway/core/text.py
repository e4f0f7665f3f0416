"""One cleaner for every string a diner or a member of staff types, and one parser for numbers in URLs.

Stdlib only. ``clean`` is applied before anything typed is stored (notes, nicknames, names, reasons,
references, labels): what is stored is what pages, tickets and HQ show, so nothing invisible or
direction-changing reaches a page or paper.

- NFC first, so a letter and its accent are one character where Unicode has one.
- Dropped: categories Cf (format: zero-width space U+200B, word joiner U+2060, BOM U+FEFF, soft
  hyphen U+00AD, bidi embeddings/overrides U+202A-202E and isolates U+2066-2069, tag characters
  U+E0000-E007F, ...), Co (private use), Cs (lone surrogates) and Cn (unassigned).
- Dropped too: the default-ignorable characters Unicode gives a letter or mark category, which
  render as nothing (Hangul fillers U+115F, U+1160, U+3164, U+FFA0, the combining grapheme joiner
  U+034F, the Khmer inherent vowels U+17B4-17B5): a name made of them looks empty or impersonates
  another. The braille blank U+2800 (a symbol that paints nothing) counts as a space.
- Replaced by a space: Cc (C0/C1 controls: ESC/POS commands start with ESC, GS, DLE) and the line and
  paragraph separators; then runs of whitespace collapse to one space and the ends are trimmed.
- Combining marks (Mn, Me) after one base character are capped at ``MAX_MARKS`` (a "zalgo" run of
  hundreds of marks paints over the lines around it).
"""

from __future__ import annotations

import hmac
import re
import unicodedata
from typing import Any

from gateway.core import pii
from gateway.core.errors import CardNumberRefused

MAX_MARKS = 3  # combining marks kept after one base character (Vietnamese, Thai and Devanagari need <= 3)
_DROP = frozenset({"Cf", "Co", "Cs", "Cn"})
_SPACE = frozenset({"Cc", "Zl", "Zp"})
_MARKS = frozenset({"Mn", "Me"})
# Default_Ignorable_Code_Point characters outside Cf (Unicode DerivedCoreProperties.txt), variation
# selectors excepted (an emoji needs U+FE0F; they are marks, capped like any other).
_INVISIBLE = frozenset("\u034f\u115f\u1160\u17b4\u17b5\u3164\uffa0")
_BLANK = frozenset("\u2800")
_URL_INT_MAX_DIGITS = 18


def clean(value: Any, limit: int, *, max_marks: int = MAX_MARKS) -> str:
    """Return typed text safe for storage, pages and tickets: visible characters only, one-line, bounded."""
    if not isinstance(value, str):
        return ""
    # Bound the work before normalising: anything longer than this is cut anyway.
    text = unicodedata.normalize("NFC", value[: max(0, limit) * 4 + 64])
    out: list[str] = []
    marks = 0
    for ch in text:
        cat = unicodedata.category(ch)
        if cat in _DROP or ch in _INVISIBLE:
            continue
        if cat in _SPACE or ch in _BLANK:
            out.append(" ")
            marks = 0
            continue
        if cat in _MARKS:
            if not out or out[-1].isspace() or marks >= max_marks:
                continue
            marks += 1
        else:
            marks = 0
        out.append(ch)
    return " ".join("".join(out).split())[:limit].rstrip()


def _ascii_digits(text: str) -> str:
    """Write every decimal digit of any script (full-width １, Arabic-Indic ١...) as its ASCII digit."""
    return re.sub(r"\d", lambda m: str(unicodedata.digit(m.group())) if not m.group().isascii() else m.group(),
                  text)


def free_text(value: Any, limit: int, *, allow: frozenset[str] | set[str] = frozenset()) -> str:
    """Return typed free text (a nickname, note, reason, reference, name...) cleaned and tripwired.

    The one function every diner- and staff-typed free-text field passes before storage:
    ``clean`` first, then ``gateway.core.pii``'s recognisers. A payment card number is refused
    (:class:`CardNumberRefused`, a bilingual message fit to show; PCI DSS: never stored, printed or
    shown); ID numbers, mobile numbers and MRZ lines are masked (``138****5678``), unless the field's
    ``allow`` names their kind (``"id_number"``, ``"mobile"``, ``"mrz"``; no field allows any today).
    The recognisers also look a little past ``limit``, so a number cut by the limit is not half-kept.
    """
    text = clean(value, limit)
    if not text:
        return text
    if not text.isascii():
        # Digits of any script (full-width １３８, Arabic-Indic ١٣٨...) are stored as ASCII digits, so a
        # number typed in them is recognised, masked or refused like any other.
        text = _ascii_digits(text)
        value = _ascii_digits(clean(value, limit + 24))
    # Checked with some text past the limit, so a number cut in half by the limit is still seen whole.
    wide = clean(value, limit + 24) if len(text) >= limit - 24 else text
    if not pii.find(wide):
        return text
    return _tripwire(wide, limit, allow)


def _tripwire(text: str, limit: int, allow: frozenset[str] | set[str]) -> str:
    hits = pii.find(text)
    if any(h.kind == "card" for h in hits):
        pii.count({"card": sum(h.kind == "card" for h in hits)})
        raise CardNumberRefused()
    masked, _ = pii.redact(text, keep=frozenset(allow))
    return masked[:limit].rstrip()


def parse_uint(text: Any, *, max_digits: int = _URL_INT_MAX_DIGITS) -> int:
    """Parse a non-negative integer written in ASCII digits only, as it appears in a URL; raise ValueError.

    Refused: an empty string, signs, spaces, underscores, leading zeros ("01"), and digits that are not
    ASCII ("²", "١", "１"), which ``str.isdigit`` accepts and ``int`` may or may not.
    """
    if not isinstance(text, str) or not 0 < len(text) <= max_digits or not text.isascii() or not text.isdigit():
        raise ValueError(f"not a number: {text!r}")
    if len(text) > 1 and text[0] == "0":
        raise ValueError(f"leading zero: {text!r}")
    return int(text)


def parse_uint_or(text: Any, default: int | None = None, *, max_digits: int = _URL_INT_MAX_DIGITS) -> int | None:
    """``parse_uint`` that returns ``default`` instead of raising."""
    try:
        return parse_uint(text, max_digits=max_digits)
    except ValueError:
        return default


def form_uint(value: Any, default: int | None = None) -> int | None:
    """A whole number typed into a form (a quantity, a party size): ``default`` when nothing was sent,
    else ASCII digits (``parse_uint``; spaces around them allowed); None when it is not one.

    An ``int`` (a caller in the code, not a form) passes as it is. ``int()`` would also take "９",
    "٩" and "1_0", which is not what anyone typed as a quantity.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if value is None or value == "":
        return default
    return parse_uint_or(value.strip(" ") if isinstance(value, str) else value)


def same_secret(sent: Any, expected: str) -> bool:
    """Compare what a client sent with the expected token or signature in constant time.

    False for anything that is not a non-empty string. Compares bytes: ``compare_digest`` raises
    TypeError on a str with non-ASCII characters, which a hostile client can always send.
    """
    if not isinstance(sent, str) or not sent:
        return False
    return hmac.compare_digest(sent.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass"))
