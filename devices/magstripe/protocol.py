"""Magnetic stripe readers (ISO/IEC 7813 tracks 1 and 2, ISO 7811-2 LRC): bytes → swipes.

Readers send ``%…?`` (track 1) and ``;…?`` (track 2), sometimes each followed by its LRC character,
usually ending the swipe with CR/LF (else the driver calls :meth:`MagstripeProtocol.flush` on idle).

Payment cards are cardholder data under PCI DSS: a swipe that is (or looks like) a payment card is
flagged, its PAN appears only masked in :meth:`Swipe.as_dict` unless ``reveal``, and no full track is
ever part of the public output. Only membership/loyalty stripes are meant to be used locally.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.core.errors import ProtocolError
from gateway.core.masking import mask_name, mask_pan, mask_tag
from gateway.core.pii import luhn_ok

_T1_CHARS = frozenset(chr(c) for c in range(0x20, 0x60)) - {"%", "?"}
_T2_CHARS = frozenset("0123456789:<=>")
MAX_SWIPE_BYTES = 512
# (prefix range low, high, allowed lengths) of payment-card IINs: Visa, Mastercard, Amex, Diners,
# Discover, JCB, UnionPay, Maestro, Mir, RuPay. Deliberately broad: a false "payment" only masks.
_IIN_RANGES: tuple[tuple[int, int, range], ...] = (
    (4, 4, range(13, 20)), (51, 55, range(16, 17)), (2221, 2720, range(16, 17)), (34, 34, range(15, 16)),
    (37, 37, range(15, 16)), (300, 305, range(14, 20)), (36, 36, range(14, 20)), (38, 39, range(14, 20)),
    (6011, 6011, range(16, 20)), (644, 649, range(16, 20)), (65, 65, range(16, 20)),
    (3528, 3589, range(16, 20)), (62, 62, range(16, 20)), (81, 82, range(16, 20)),
    (50, 50, range(12, 20)), (56, 69, range(12, 20)), (2200, 2204, range(16, 20)),
)


class MagstripeError(ProtocolError):
    """Reader output that is not a valid ISO/IEC 7813 swipe."""


def payment_iin(pan: str) -> bool:
    """Return whether a PAN's prefix and length belong to a payment-card scheme."""
    if not pan.isascii() or not pan.isdigit():
        return False
    return any(len(pan) in lengths and low <= int(pan[: len(str(low))]) <= high
               for low, high, lengths in _IIN_RANGES)


def _looks_like_pan(field: str) -> bool:
    digits = field[: len(field) - len(field.lstrip("0123456789"))]
    return 12 <= len(digits) <= 19 and payment_iin(digits) and luhn_ok(digits)


def lrc(track: str) -> str:
    """Return the LRC character of a track from its start sentinel to its end sentinel inclusive."""
    offset, mask = (0x20, 0x3F) if track.startswith("%") else (0x30, 0x0F)
    value = 0
    for ch in track:
        value ^= (ord(ch) - offset) & mask
    return chr(value + offset)


@dataclass(frozen=True, slots=True)
class Track1:
    """Track 1 (IATA): format code, primary account number, name, expiry, service code."""

    format_code: str
    pan: str = field(repr=False)
    name: str = field(repr=False)
    expiry_yymm: str | None = field(repr=False)
    service_code: str | None
    discretionary: str = field(repr=False)
    lrc_char: str = field(repr=False)
    lrc_present: bool = False

    @property
    def surname(self) -> str:
        """Return the surname (before ``/``)."""
        return self.name.split("/", 1)[0].strip()

    @property
    def given_name(self) -> str:
        """Return the given name(s) (after ``/``)."""
        return self.name.split("/", 1)[1].strip() if "/" in self.name else ""

    def as_dict(self) -> dict[str, Any]:
        """Return every field (unmasked: for ``reveal`` only)."""
        return {"format_code": self.format_code, "pan": self.pan, "name": self.name,
                "surname": self.surname, "given_name": self.given_name, "expiry_yymm": self.expiry_yymm,
                "service_code": self.service_code, "discretionary": self.discretionary,
                "luhn_ok": luhn_ok(self.pan), "lrc_char_if_on_stripe": self.lrc_char,
                "lrc_present": self.lrc_present}


@dataclass(frozen=True, slots=True)
class Track2:
    """Track 2 (ABA): primary account number, expiry, service code, discretionary data."""

    pan: str = field(repr=False)
    expiry_yymm: str | None = field(repr=False)
    service_code: str | None
    discretionary: str = field(repr=False)
    lrc_char: str = field(repr=False)
    lrc_present: bool = False
    separated: bool = False  # the PAN is followed by "=" (financial layout)

    def as_dict(self) -> dict[str, Any]:
        """Return every field (unmasked: for ``reveal`` only)."""
        return {"pan": self.pan, "expiry_yymm": self.expiry_yymm, "service_code": self.service_code,
                "discretionary": self.discretionary, "luhn_ok": luhn_ok(self.pan),
                "lrc_char_if_on_stripe": self.lrc_char, "lrc_present": self.lrc_present}


@dataclass(frozen=True, slots=True)
class Swipe:
    """One card swipe: the tracks read and whether it carries payment-card data."""

    track1: Track1 | None
    track2: Track2 | None
    extra_tracks: int = 0

    @property
    def pan(self) -> str:
        """Return the primary account (or member) number, track 2 first."""
        return self.track2.pan if self.track2 else self.track1.pan if self.track1 else ""

    @property
    def payment_card(self) -> bool:
        """Return whether this is a payment card: financial layout, payment IIN/length, Luhn-valid."""
        financial = (self.track1 is not None and self.track1.format_code == "B") or (
            self.track2 is not None and self.track2.separated and self.track2.expiry_yymm is not None
            and self.track2.service_code is not None)
        return financial and payment_iin(self.pan) and luhn_ok(self.pan)

    @property
    def cardholder_data(self) -> bool:
        """Return whether to treat the swipe as payment-card data (never kept, PAN masked)."""
        # Broader than payment_card on purpose: a format-B track or a payment-looking PAN is masked
        # even when Luhn fails, because a misread digit must not put a real PAN in the logs.
        if self.payment_card or (self.track1 is not None and self.track1.format_code == "B"):
            return True
        if self.track2 is not None and self.track2.separated and payment_iin(self.pan):
            return True
        # A damaged or unusual layout must not turn a real PAN into a "member number".
        return any(_looks_like_pan(t.pan) for t in (self.track1, self.track2) if t is not None)

    @property
    def member_number(self) -> str | None:
        """Return the membership number of a non-payment card, else None."""
        return None if self.cardholder_data or not self.pan else self.pan

    def as_dict(self, *, reveal: bool = False) -> dict[str, Any]:
        """Return JSON-ready fields; payment PAN masked and names masked unless ``reveal``."""
        tracks = [n for n, t in ((1, self.track1), (2, self.track2)) if t is not None]
        out: dict[str, Any] = {"payment_card": self.payment_card, "cardholder_data": self.cardholder_data,
                               "tracks": tracks, "luhn_ok": luhn_ok(self.pan)}
        if self.cardholder_data:
            out["pan_masked"] = mask_pan(self.pan)
        else:
            # A member card's number identifies a person: masked like an RFID tag unless revealed.
            out["member_number_masked"] = mask_tag(self.member_number or "")
            if reveal:
                out["member_number"] = self.member_number
            if self.track1 is not None and self.track1.name.strip():
                out["name_masked"] = mask_name(self.track1.name.strip())
        if reveal:
            out["pan"] = self.pan
            if self.track1 is not None:
                out["track1"] = self.track1.as_dict()
            if self.track2 is not None:
                out["track2"] = self.track2.as_dict()
        return out


def _parse_track1(body: str, lrc_char: str, lrc_present: bool) -> Track1:
    if body == "E":
        raise MagstripeError("reader reported a read error on track 1; swipe again")
    if not body or not set(body) <= _T1_CHARS:
        raise MagstripeError("track 1 characters must be ASCII 0x20-0x5F (upper case)")
    code, rest = body[0], body[1:]
    if code != "B":
        # Non-financial layouts: the first field is the account/member number.
        primary, _, remainder = rest.partition("^")
        name, _, disc = remainder.partition("^")
        return Track1(code, primary.strip(), name, None, None, disc, lrc_char, lrc_present)
    parts = rest.split("^", 2)
    if len(parts) != 3:
        raise MagstripeError("track 1 format B must be PAN^NAME^DATA")
    pan, name, data = parts
    if not (1 <= len(pan) <= 19 and pan.isdigit()):
        raise MagstripeError("track 1 PAN must be 1-19 digits")
    if not 2 <= len(name) <= 26:
        raise MagstripeError("track 1 name must be 2-26 characters")
    expiry, data = _take(data, 4, "track 1 expiry YYMM")
    service, data = _take(data, 3, "track 1 service code")
    return Track1(code, pan, name, expiry, service, data, lrc_char, lrc_present)


def _take(data: str, n: int, what: str) -> tuple[str | None, str]:
    # An absent field is written as a single separator ("^" on track 1, "=" on track 2).
    if data[:1] in ("^", "="):
        return None, data[1:]
    if len(data) < n or not data[:n].isdigit():
        raise MagstripeError(f"{what} must be {n} digits")
    return data[:n], data[n:]


def _parse_track2(body: str, lrc_char: str, lrc_present: bool) -> Track2:
    if body == "E":
        raise MagstripeError("reader reported a read error on track 2; swipe again")
    if not body or not set(body) <= _T2_CHARS:
        raise MagstripeError("track 2 character set is 0-9 : ; < = > ? only")
    if len(body) > 37:
        raise MagstripeError("track 2 is longer than 40 characters")
    if "=" not in body:
        return Track2(body, None, None, "", lrc_char, lrc_present)
    pan, data = body.split("=", 1)
    if not (1 <= len(pan) <= 19 and pan.isdigit()):
        raise MagstripeError("track 2 PAN must be 1-19 digits")
    expiry, data = _take(data, 4, "track 2 expiry YYMM")
    service, data = _take(data, 3, "track 2 service code")
    return Track2(pan, expiry, service, data, lrc_char, lrc_present, separated=True)


def parse_swipe(text: str) -> Swipe:
    """Parse one swipe (``%…?`` and/or ``;…?``, optional LRCs, optional CR/LF) or raise."""
    track1: Track1 | None = None
    track2: Track2 | None = None
    extra = 0
    i = 0
    while i < len(text):
        start = text[i]
        if start in " \r\n\t":
            i += 1
            continue
        if start not in "%;":
            raise MagstripeError(f"unexpected {start!r} outside a track (tracks start with % or ;)")
        end = text.find("?", i + 1)
        if end < 0:
            raise MagstripeError(f"track starting with {start} has no end sentinel ?")
        body = text[i + 1: end]
        expected = lrc(text[i: end + 1])
        i = end + 1
        present = False
        if i < len(text) and text[i] not in " \r\n\t":
            nxt, after = text[i], text[i + 1: i + 2]
            # An LRC may itself be "%" or ";": it is the LRC when no track data follows it directly.
            if nxt == expected and (nxt not in "%;" or after in ("", "%", ";", " ", "\r", "\n", "\t")):
                present, i = True, i + 1
            elif nxt not in "%;":
                raise MagstripeError(f"LRC after track {'1' if start == '%' else '2'} does not match")
        if start == "%":
            if track1 is not None:
                raise MagstripeError("two track 1 blocks in one swipe")
            track1 = _parse_track1(body, expected, present)
        elif track2 is None:
            track2 = _parse_track2(body, expected, present)
        else:
            extra += 1  # track 3 (ISO 4909) also starts with ";": counted, never decoded
    if track1 is None and track2 is None:
        raise MagstripeError("no track data in swipe")
    return Swipe(track1, track2, extra)


class MagstripeProtocol:
    """Split reader bytes into swipes at CR/LF (or idle ``flush()``); garbage lines become errors."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def data_received(self, data: bytes) -> list[Swipe | MagstripeError]:
        """Feed bytes; return the swipes (and errors for rejected input) completed by them."""
        self._buf += data
        out: list[Swipe | MagstripeError] = []
        while True:
            cut = min((i for i in (self._buf.find(b"\r"), self._buf.find(b"\n")) if i >= 0), default=-1)
            if cut < 0:
                break
            line = bytes(self._buf[:cut])
            del self._buf[: cut + 1]
            self._emit(line, out)
        if len(self._buf) > MAX_SWIPE_BYTES:
            self._buf.clear()
            out.append(MagstripeError(f"no line end within {MAX_SWIPE_BYTES} bytes; data discarded"))
        return out

    def flush(self) -> list[Swipe | MagstripeError]:
        """End the pending swipe after an idle gap."""
        line = bytes(self._buf)
        self._buf.clear()
        out: list[Swipe | MagstripeError] = []
        self._emit(line, out)
        return out

    @staticmethod
    def _emit(line: bytes, out: list[Swipe | MagstripeError]) -> None:
        text = line.decode("latin-1").strip()
        if not text:
            return
        start = min((i for i in (text.find("%"), text.find(";")) if i >= 0), default=-1)
        if start != 0:
            # Resynchronise on the first start sentinel; what came before is reported, never shown.
            skipped = len(text) if start < 0 else start
            out.append(MagstripeError(f"{skipped} characters outside a track discarded"))
            if start < 0:
                return
            text = text[start:]
        try:
            out.append(parse_swipe(text))
        except MagstripeError as err:
            out.append(err)
