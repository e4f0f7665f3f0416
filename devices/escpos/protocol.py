"""ESC/POS printer status (DLE EOT real-time replies and ASB blocks) and safe, width-aware ticket text.

``DLE EOT n`` (``10 04 n``, n = 1..4) is answered with one byte ``0xx1xx10``; Automatic Status Back
(enabled by ``GS a n``) sends 4-byte blocks whose first byte is ``0xx1xx00``, so bit 1 tells the two
apart in one reply stream. Sending the bytes is the printer driver's job; this module only decodes.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field, fields, replace
from typing import Any

from gateway.core.errors import ProtocolError

DLE_EOT = b"\x10\x04"
GS_A = b"\x1d\x61"
# Named bits (bit number → name) of each DLE EOT n reply; the names are the vectors' keys.
STATUS_BITS: dict[int, dict[int, str]] = {
    1: {2: "drawer_pin3_high", 3: "offline", 5: "waiting_online_recovery", 6: "feed_button_pressed"},
    2: {2: "cover_open", 3: "paper_fed_by_button", 5: "paper_end_stop", 6: "error"},
    3: {2: "mechanical_or_recoverable_error", 3: "autocutter_error", 5: "unrecoverable_error",
        6: "auto_recoverable_error"},
}


class EscPosError(ProtocolError):
    """Bytes that are not a valid printer status reply."""


@dataclass(frozen=True, slots=True)
class PrinterStatus:
    """What a status reply says; None means that reply does not tell (unknown, not false)."""

    online: bool | None = None
    cover_open: bool | None = None
    paper_near_end: bool | None = None
    paper_end: bool | None = None
    error: bool | None = None
    source: str = ""
    bits: dict[str, Any] = field(default_factory=dict, compare=False)

    def merge(self, newer: PrinterStatus) -> PrinterStatus:
        """Return this status updated with what ``newer`` knows (e.g. replies to n=1, 2 and 4)."""
        flags = [f.name for f in fields(self)[:5]]
        known = {name: getattr(newer, name) for name in flags if getattr(newer, name) is not None}
        return replace(self, **known, source=newer.source, bits={**self.bits, **newer.bits})

    def as_dict(self, *, reveal: bool = False) -> dict[str, Any]:
        """Return the summary flags and the named bits as JSON-ready fields."""
        return {"source": self.source, "online": self.online, "cover_open": self.cover_open,
                "paper_near_end": self.paper_near_end, "paper_end": self.paper_end, "error": self.error,
                **self.bits}


def _bit(value: int, n: int) -> bool:
    return bool(value >> n & 1)


def parse_status(n: int, response: bytes) -> PrinterStatus:
    """Decode the reply to ``DLE EOT n``; raise :class:`EscPosError` unless it is one valid byte."""
    if n not in (1, 2, 3, 4):
        raise EscPosError(f"DLE EOT n must be 1..4, got {n}")
    if len(response) != 1:
        raise EscPosError(f"DLE EOT reply must be exactly 1 byte, got {len(response)}")
    b = response[0]
    if b & 0x93 != 0x12:
        raise EscPosError(f"DLE EOT reply {b:02x} does not match the fixed pattern 0xx1xx10")
    bits: dict[str, Any] = {"n": n, "fixed_bits_ok": True, "python_escpos_valid_response": True}
    if n == 4:
        bits.update(paper_near_end=b & 0x0C == 0x0C, paper_end=b & 0x60 == 0x60)
        # python-escpos paper_status(): 0 no paper, 1 near end, 2 adequate (its masks, kept for parity).
        bits["python_escpos_paper_status"] = 0 if b & 0x72 == 0x72 else 1 if b & 0x1E == 0x1E else 2
        return PrinterStatus(paper_near_end=bits["paper_near_end"], paper_end=bits["paper_end"],
                             source="DLE EOT 4", bits=bits)
    bits.update({name: _bit(b, pos) for pos, name in STATUS_BITS[n].items()})
    if n == 1:
        bits["python_escpos_is_online"] = not bits["offline"]
        return PrinterStatus(online=not bits["offline"], source="DLE EOT 1", bits=bits)
    if n == 2:
        return PrinterStatus(cover_open=bits["cover_open"], paper_end=bits["paper_end_stop"],
                             error=bits["error"], source="DLE EOT 2", bits=bits)
    error = any(bits[name] for name in STATUS_BITS[3].values())
    return PrinterStatus(error=error, source="DLE EOT 3", bits=bits)


def asb_header_ok(block: bytes) -> bool:
    """Return whether 4 bytes have the fixed bits of an ASB block."""
    return (len(block) == 4 and block[0] & 0x93 == 0x10
            and all(b & 0x90 == 0 for b in block[1:]))


def parse_asb(block: bytes) -> PrinterStatus:
    """Decode a 4-byte Automatic Status Back block."""
    if len(block) != 4:
        raise EscPosError(f"ASB status is 4 bytes, got {len(block)}")
    if not asb_header_ok(block):
        raise EscPosError("ASB block does not match the fixed bits (byte 1 0xx1xx00, bytes 2-4 0xx0xxxx)")
    b1, b2, b3 = block[0], block[1], block[2]
    bits = {"header_ok": True, "drawer_pin3_high": _bit(b1, 2), "offline": _bit(b1, 3),
            "cover_open": _bit(b1, 5), "feed_button": _bit(b1, 6), "mechanical_error": _bit(b2, 2),
            "autocutter_error": _bit(b2, 3), "unrecoverable_error": _bit(b2, 5),
            "auto_recoverable_error": _bit(b2, 6), "paper_near_end": b3 & 0x03 != 0,
            "paper_end": b3 & 0x0C != 0}
    error = bits["mechanical_error"] or bits["autocutter_error"] or bits["unrecoverable_error"] \
        or bits["auto_recoverable_error"]
    return PrinterStatus(online=not bits["offline"], cover_open=bits["cover_open"],
                         paper_near_end=bits["paper_near_end"], paper_end=bits["paper_end"], error=error,
                         source="ASB", bits=bits)


def parse_exchange(data: bytes) -> PrinterStatus:
    """Decode a request followed by its reply: ``10 04 n`` + 1 byte, ``1D 61 n`` + 4 bytes, or 4 ASB bytes."""
    if data.startswith(DLE_EOT) and len(data) >= 3:
        return parse_status(data[2], data[3:])
    if data.startswith(GS_A) and len(data) >= 3:
        return parse_asb(data[3:])
    if len(data) == 4:
        return parse_asb(data)
    raise EscPosError("expected DLE EOT n (10 04 0n) + reply byte, GS a n (1d 61 n) + 4 ASB bytes, "
                      "or a 4-byte ASB block")


class StatusProtocol:
    """Split a printer's reply stream into DLE EOT replies (for the queries sent) and ASB blocks."""

    def __init__(self) -> None:
        self._pending: list[int] = []
        self._buf = bytearray()

    def expect(self, n: int) -> None:
        """Record that ``DLE EOT n`` was just sent, so the next reply byte is decoded for it."""
        if n not in (1, 2, 3, 4):
            raise ValueError("n must be 1..4")
        self._pending.append(n)

    def data_received(self, data: bytes) -> list[PrinterStatus | EscPosError]:
        """Feed reply bytes; return the statuses (and errors for unexpected bytes) they complete."""
        self._buf += data
        out: list[PrinterStatus | EscPosError] = []
        while self._buf:
            b = self._buf[0]
            if b & 0x93 == 0x12 and self._pending:
                del self._buf[:1]
                out.append(parse_status(self._pending.pop(0), bytes((b,))))
            elif b & 0x93 == 0x10:
                if len(self._buf) < 4:
                    break
                block = bytes(self._buf[:4])
                if asb_header_ok(block):
                    del self._buf[:4]
                    out.append(parse_asb(block))
                else:
                    del self._buf[:1]
                    out.append(EscPosError(f"unexpected status byte {b:02x} discarded"))
            elif b in (0x11, 0x13):
                del self._buf[:1]  # XON/XOFF flow control from the printer, not status
            else:
                del self._buf[:1]
                out.append(EscPosError(f"unexpected status byte {b:02x} discarded"))
        return out

    def flush(self) -> list[PrinterStatus | EscPosError]:
        """Forget unanswered queries and partial blocks after a timeout, reporting them."""
        out: list[PrinterStatus | EscPosError] = []
        if self._buf or self._pending:
            out.append(EscPosError(f"no complete reply ({len(self._pending)} query(ies) unanswered)"))
        self._buf.clear()
        self._pending.clear()
        return out


def sanitize_text(text: str) -> str:
    """Remove control characters (C0 except newline, DEL, C1) so text cannot inject printer commands."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch == "\n":
            out.append(ch)
        elif ch == "\t":
            out.append(" ")
        elif code < 0x20 or 0x7F <= code <= 0x9F:
            continue
        else:
            out.append(ch)
    return "".join(out)


def char_width(ch: str, *, ambiguous_wide: bool = False) -> int:
    """Return the printed width of one character: 2 for CJK wide/full-width, 0 for combining marks."""
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    eaw = unicodedata.east_asian_width(ch)
    return 2 if eaw in ("W", "F") or (ambiguous_wide and eaw == "A") else 1


def display_width(text: str, *, ambiguous_wide: bool = False) -> int:
    """Return how many printer columns ``text`` takes (CJK characters take two)."""
    return sum(char_width(ch, ambiguous_wide=ambiguous_wide) for ch in text)


def truncate(text: str, width: int) -> str:
    """Return the longest prefix of ``text`` that fits in ``width`` columns (never splits a wide char)."""
    used, out = 0, []
    for ch in text:
        w = char_width(ch)
        if used + w > width:
            break
        out.append(ch)
        used += w
    return "".join(out)
