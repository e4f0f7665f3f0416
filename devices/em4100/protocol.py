"""EM4100 125 kHz readers with ASCII serial output (RDM6300/RDM630, ID-12/ID-20): bytes → card reads.

Frame: ``STX | 10 ASCII-hex data | 2 ASCII-hex checksum | [CR LF] | ETX``; the checksum is the XOR
of the 5 data bytes. The 40 data bits are an 8-bit version/customer id and a 32-bit id. The numbers
printed on cards are a vendor convention: the 10-digit number is the low 32 bits in decimal, the
"3+5" (Wiegand-26) number is facility = bits 23..16 and card = bits 15..0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.core.errors import ProtocolError
from gateway.core.masking import mask_tag

STX, ETX = 0x02, 0x03
_HEX = frozenset(b"0123456789ABCDEFabcdef")
FORMAT_RDM6300 = "RDM6300/RDM630 (STX data chk ETX, 14 bytes)"
FORMAT_ID12 = "ID-12/ID-20 (STX data chk CR LF ETX, 16 bytes)"
MAX_FRAME = 16


class EM4100Error(ProtocolError):
    """Bytes that are not a valid EM4100 reader frame."""


@dataclass(frozen=True, slots=True)
class EM4100Card:
    """A 40-bit EM4100 card id with the number forms printed on cards."""

    id40: int

    @classmethod
    def from_hex(cls, text: str) -> EM4100Card:
        """Build from the 10 hex digits a reader sends."""
        if len(text) != 10 or not set(text.encode()) <= _HEX:
            raise EM4100Error("card id must be 10 hex digits")
        return cls(int(text, 16))

    @property
    def data_hex(self) -> str:
        """Return the 10-hex-digit id, upper case."""
        return f"{self.id40:010X}"

    @property
    def version_or_customer_id(self) -> int:
        """Return the leading 8 bits (version or customer id)."""
        return self.id40 >> 32

    @property
    def id32(self) -> int:
        """Return the low 32 bits (the number most readers print)."""
        return self.id40 & 0xFFFFFFFF

    @property
    def printed_10_digit(self) -> str:
        """Return the 10-digit printed number (low 32 bits in decimal, zero-padded)."""
        return f"{self.id32:010d}"

    @property
    def wiegand26(self) -> tuple[int, int]:
        """Return (facility, card) as Wiegand-26 carries them: bits 23..16 and 15..0."""
        return (self.id32 >> 16) & 0xFF, self.id32 & 0xFFFF

    @property
    def printed_8_digit(self) -> str:
        """Return the "3+5" printed form ``fff,ccccc``."""
        facility, card = self.wiegand26
        return f"{facility:03d},{card:05d}"

    def as_dict(self) -> dict[str, Any]:
        """Return the id and its number forms as JSON-ready fields."""
        facility, card = self.wiegand26
        return {"data_hex": self.data_hex, "version_or_customer_id": self.version_or_customer_id,
                "id32": self.id32, "id40": self.id40, "printed_10_digit": self.printed_10_digit,
                "wiegand26_facility": facility, "wiegand26_card": card,
                "printed_8_digit": self.printed_8_digit}


def wiegand26_from_printed_10(number: str) -> tuple[int, int]:
    """Return (facility, card) for a printed 10-digit number (``0013961168`` → (213, 2000))."""
    if not number.isascii() or not number.isdigit() or int(number) > 0xFFFFFFFF:
        raise EM4100Error("a printed 10-digit number is at most 4294967295")
    return EM4100Card(int(number)).wiegand26


@dataclass(frozen=True, slots=True)
class EM4100Read:
    """One valid frame from the reader: the card and the frame format it came in."""

    card: EM4100Card
    checksum: int
    format: str

    def as_dict(self, *, reveal: bool = False) -> dict[str, Any]:
        """Return the read as JSON-ready fields; the tag id in every form only with ``reveal``.

        A member's tag id identifies the member wherever it is read, so without ``reveal`` only the
        last 2 characters of the hex id and of the printed number are shown (``********05``).
        """
        out: dict[str, Any] = {"format": self.format, "data_hex_masked": mask_tag(self.card.data_hex),
                               "printed_10_digit_masked": mask_tag(self.card.printed_10_digit),
                               "checksum_ok": True}
        if reveal:
            out.update(self.card.as_dict(), checksum=f"{self.checksum:02X}",
                       checksum_expected=f"{self.checksum:02X}")
        return out


def parse_frame(frame: bytes) -> EM4100Read:
    """Parse exactly one complete frame (14 or 16 bytes) or raise :class:`EM4100Error`."""
    if len(frame) not in (14, 16) or frame[0] != STX or frame[-1] != ETX:
        raise EM4100Error("expected STX, 12 hex digits, optional CR LF, ETX (14 or 16 bytes); "
                          f"got {len(frame)} bytes")
    if len(frame) == 16 and frame[13:15] != b"\r\n":
        raise EM4100Error("16-byte frame must have CR LF before ETX")
    body = frame[1:13]
    if not set(body) <= _HEX:
        raise EM4100Error("non-hex ASCII in card data or checksum")
    data = bytes.fromhex(body[:10].decode())
    wire = int(body[10:12], 16)
    expected = data[0] ^ data[1] ^ data[2] ^ data[3] ^ data[4]
    if wire != expected:
        raise EM4100Error(f"checksum mismatch: frame has {wire:02X}, data gives {expected:02X}")
    return EM4100Read(EM4100Card(int.from_bytes(data, "big")), wire,
                      FORMAT_RDM6300 if len(frame) == 14 else FORMAT_ID12)


class EM4100Protocol:
    """Cut reader bytes into frames at STX/ETX; resynchronise on the next STX after garbage."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def data_received(self, data: bytes) -> list[EM4100Read | EM4100Error]:
        """Feed bytes; return the card reads (and errors for rejected frames) completed by them."""
        self._buf += data
        out: list[EM4100Read | EM4100Error] = []
        while True:
            start = self._buf.find(STX)
            if start < 0:
                self._discard(len(self._buf), out)
                return out
            if start:
                self._discard(start, out)
            end = self._frame_end()
            if end is None:
                return out  # wait for the rest of the frame
            if end < 0:
                # Not a frame: drop this STX only, so a real frame that follows is still found.
                nxt = self._buf.find(STX, 1)
                cut = nxt if nxt > 0 else max(1, -end)
                out.append(EM4100Error(f"malformed frame ({cut} bytes) discarded"))
                del self._buf[:cut]
                continue
            frame = bytes(self._buf[:end])
            del self._buf[:end]
            try:
                out.append(parse_frame(frame))
            except EM4100Error as err:
                out.append(err)

    def flush(self) -> list[EM4100Read | EM4100Error]:
        """Drop a partial frame after an idle gap, reporting it."""
        out: list[EM4100Read | EM4100Error] = []
        if self._buf:
            out.append(EM4100Error(f"incomplete frame ({len(self._buf)} bytes) discarded"))
            self._buf.clear()
        return out

    def _discard(self, n: int, out: list[EM4100Read | EM4100Error]) -> None:
        # Line ends some readers send after ETX are not worth an error.
        if self._buf[:n].strip(b"\r\n "):
            out.append(EM4100Error(f"{n} bytes outside a frame discarded"))
        del self._buf[:n]

    def _frame_end(self) -> int | None:
        """Return the frame length at the buffer start, None to wait, or -n for garbage of n bytes."""
        buf = self._buf
        for i in range(1, min(len(buf), MAX_FRAME)):
            b = buf[i]
            if i <= 12:
                if b not in _HEX:
                    return -(i + 1) if b != STX else -i
            elif i == 13:
                if b == ETX:
                    return 14
                if b != 0x0D:
                    return -(i + 1) if b != STX else -i
            elif i == 14:
                if b != 0x0A:
                    return -(i + 1) if b != STX else -i
            elif b == ETX:
                return 16
            else:
                return -(i + 1) if b != STX else -i
        return None
