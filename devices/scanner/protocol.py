"""Barcode/QR scanners in serial mode: bytes → scans, classified as table QR or member/voucher code.

A serial scanner's only framing is its configured suffix (CR, LF, CRLF, TAB) or, with no suffix,
an idle gap that the driver detects and signals with :meth:`ScannerProtocol.flush`. An AIM
symbology identifier (``]cm``, ISO/IEC 15424) leads the data when the scanner is set up for it.
No I/O, no clock: repeat suppression is `devices.debounce.Debouncer`, fed with the driver's timestamps.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from gateway.core.errors import ProtocolError

TERMINATORS: dict[str, bytes] = {"CR": b"\r", "LF": b"\n", "CRLF": b"\r\n", "TAB": b"\t", "NONE": b""}
AimMode = Literal["required", "optional", "off"]

# ISO/IEC 15424 code characters (and the names the vectors use for them).
SYMBOLOGIES: dict[str, str] = {
    "A": "Code 39", "B": "Telepen", "C": "Code 128", "D": "Code One", "E": "UPC/EAN", "F": "Codabar",
    "G": "Code 93", "H": "Code 11", "I": "ITF", "K": "Code 16K", "L": "PDF417", "M": "MSI",
    "N": "Anker", "O": "Codablock", "P": "Plessey", "Q": "QR Code", "R": "Straight 2 of 5 (2-bar)",
    "S": "Discrete 2 of 5", "X": "other", "Z": "non-barcode", "c": "Channel Code", "d": "Data Matrix",
    "e": "GS1 DataBar", "h": "Han Xin", "z": "Aztec",
}
_MODIFIER_NAMES = {("C", "1"): "Code 128 / GS1-128"}
# AIM ids whose data is GS1 element strings (FNC1 in first position).
_GS1_IDS = frozenset({"]C1", "]e0", "]d2", "]Q3", "]z1"})

# A table QR code: http(s)://host/t/{token}, the URL `storegw tables url` prints.
_TABLE_URL = re.compile(r"https?://(?P<host>[A-Za-z0-9.-]+(?::\d{1,5})?)/t/(?P<token>[A-Za-z0-9_-]{1,128})/?")
MAX_SCAN_BYTES = 8192  # larger than any QR code (7,089 numeric characters at most)


class ScannerError(ProtocolError):
    """Scanner output that is not a valid scan for the configured format."""


@dataclass(frozen=True, slots=True)
class Scan:
    """One decoded barcode: its data, AIM identifier, and whether it is a table QR or a code."""

    data: str
    aim_id: str | None = None
    terminator: bytes = b""
    kind: Literal["table", "code"] = "code"
    table_token: str | None = None
    table_host: str | None = None

    @property
    def code_char(self) -> str | None:
        """Return the AIM code character (``Q`` for QR), or None without an AIM id."""
        return self.aim_id[1] if self.aim_id else None

    @property
    def modifier(self) -> str | None:
        """Return the AIM modifier character, or None without an AIM id."""
        return self.aim_id[2] if self.aim_id else None

    @property
    def symbology(self) -> str | None:
        """Return the symbology name from the AIM id, or None when unknown or absent."""
        if not self.aim_id:
            return None
        return _MODIFIER_NAMES.get((self.aim_id[1], self.aim_id[2])) or SYMBOLOGIES.get(self.aim_id[1])

    def as_dict(self, *, reveal: bool = False) -> dict[str, Any]:
        """Return the scan as JSON-ready fields (nothing here is personal data)."""
        out: dict[str, Any] = {"event": self.kind, "data": self.data, "aim_id": self.aim_id,
                               "code_char": self.code_char, "modifier": self.modifier,
                               "symbology": self.symbology, "gs1": self.aim_id in _GS1_IDS,
                               "terminator": self.terminator.hex()}
        if self.kind == "table":
            out.update(table_token=self.table_token, table_host=self.table_host)
        if self.code_char == "E" and self.data.isdigit():
            out["gtin_check_digit_ok"] = gtin_ok(self.data)
        return out


def gtin_ok(digits: str) -> bool:
    """Return whether a GTIN-8/12/13/14 (EAN/UPC) check digit is right."""
    if not digits.isascii() or not digits.isdigit() or len(digits) not in (8, 12, 13, 14):
        return False
    body, check = digits[:-1], int(digits[-1])
    # Weights 3,1,3,… from the digit next to the check digit, leftwards.
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10 == check


def classify(data: str, hosts: Iterable[str] | None = None) -> tuple[str, str | None, str | None]:
    """Return ``("table", token, host)`` for a table QR URL, else ``("code", None, None)``."""
    match = _TABLE_URL.fullmatch(data.strip())
    if match is None:
        return "code", None, None
    host = match["host"].lower()
    if hosts is not None and host not in {h.lower() for h in hosts}:
        # A table URL for another store (or a look-alike site) is just a code here.
        return "code", None, None
    return "table", match["token"], host


def parse_scan(raw: bytes, *, aim: AimMode = "required", hosts: Iterable[str] | None = None,
               terminator: bytes | None = None, encoding: str = "utf-8") -> Scan:
    """Parse one scanner message (one trailing CR/LF/CRLF/TAB is the terminator) into a :class:`Scan`."""
    if terminator is None:
        terminator = next((t for t in (b"\r\n", b"\r", b"\n", b"\t") if raw.endswith(t)), b"")
    body = raw[: len(raw) - len(terminator)] if terminator and raw.endswith(terminator) else raw
    if not body:
        raise ScannerError("empty scan")
    if len(body) > MAX_SCAN_BYTES:
        raise ScannerError(f"scan longer than {MAX_SCAN_BYTES} bytes")
    try:
        text = body.decode(encoding)
    except UnicodeDecodeError as err:
        raise ScannerError(f"scan is not valid {encoding} text (byte {err.start})") from err
    aim_id = None
    if aim != "off" and text.startswith("]"):
        aim_id, text = text[:3], text[3:]
        if len(aim_id) < 3 or not (aim_id[1].isascii() and aim_id[1].isalpha()) \
                or not (aim_id[2].isascii() and aim_id[2].isalnum()):
            raise ScannerError("AIM ID must be ] followed by a code letter and a modifier")
    elif aim == "required":
        raise ScannerError("AIM ID must start with ] (0x5D); enable AIM ID transmission on the scanner")
    if not text:
        raise ScannerError("scan has an AIM ID but no data")
    kind, token, host = classify(text, hosts)
    return Scan(text, aim_id, terminator, kind, token, host)  # type: ignore[arg-type]


class ScannerProtocol:
    """Split scanner bytes into scans at the configured terminator; ``flush()`` ends an idle message."""

    def __init__(self, terminator: str = "CR", *, aim: AimMode = "required",
                 hosts: Iterable[str] | None = None, encoding: str = "utf-8") -> None:
        if terminator.upper() not in TERMINATORS:
            raise ValueError(f"terminator must be one of {', '.join(TERMINATORS)}")
        self.terminator = TERMINATORS[terminator.upper()]
        self.aim: AimMode = aim
        self.hosts = tuple(hosts) if hosts is not None else None
        self.encoding = encoding
        self._buf = bytearray()

    def data_received(self, data: bytes) -> list[Scan | ScannerError]:
        """Feed bytes; return the scans (and errors for rejected messages) completed by them."""
        self._buf += data
        out: list[Scan | ScannerError] = []
        if self.terminator:
            while (idx := self._buf.find(self.terminator)) >= 0:
                message = bytes(self._buf[:idx])
                del self._buf[: idx + len(self.terminator)]
                self._emit(message, self.terminator, out)
        if len(self._buf) > MAX_SCAN_BYTES:
            # A missing terminator (or line noise) must not grow the buffer without bound.
            self._buf.clear()
            out.append(ScannerError(f"no terminator within {MAX_SCAN_BYTES} bytes; data discarded"))
        return out

    def flush(self) -> list[Scan | ScannerError]:
        """End the pending message after an idle gap (the only framing when terminator is NONE)."""
        message = bytes(self._buf)
        self._buf.clear()
        out: list[Scan | ScannerError] = []
        self._emit(message, b"", out)
        return out

    def _emit(self, message: bytes, terminator: bytes, out: list[Scan | ScannerError]) -> None:
        # A scanner set to CRLF while we expect CR (or the reverse) leaves a stray CR/LF at an edge.
        message = message.strip(b"\r\n")
        if not message:
            return
        try:
            out.append(parse_scan(message, aim=self.aim, hosts=self.hosts, terminator=terminator,
                                  encoding=self.encoding))
        except ScannerError as err:
            out.append(err)
