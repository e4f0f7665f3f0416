"""The decode layer behind ``storegw decode KIND``: one input in, one JSON-ready dict out.

Each KIND is parsed by its family's sans-I/O protocol module; any failure becomes a
:class:`~gateway.core.errors.DecodeError` with a one-line message. Sensitive fields (payment PANs, ID
numbers, names, addresses, document numbers) are masked unless ``reveal`` is set.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from devices.em4100 import protocol as em4100
from devices.escpos import protocol as escpos
from devices.idcard import protocol as idcard
from devices.magstripe import protocol as magstripe
from devices.modbus import protocol as modbus
from devices.mrz import protocol as mrz
from devices.scanner import protocol as scanner
from gateway.core import gb11643
from gateway.core.errors import DecodeError, ProtocolError

KINDS = ("scanner", "em4100", "magstripe", "idcard", "gb11643", "mrz", "escpos-status", "modbus")
_BINARY_KINDS = frozenset({"em4100", "idcard", "escpos-status", "modbus"})
_HEX_TEXT = re.compile(rb"[0-9A-Fa-f\s]+")


def _text(data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DecodeError(f"input is not UTF-8 text (byte {err.start})") from err
    return text


def _scanner(data: bytes, reveal: bool) -> dict[str, Any]:
    return scanner.parse_scan(data, aim="required").as_dict(reveal=reveal)


def _em4100(data: bytes, reveal: bool) -> dict[str, Any]:
    # A trailing newline after ETX (from `echo` or a terminal) is not part of the frame.
    return em4100.parse_frame(data.rstrip(b"\r\n")).as_dict(reveal=reveal)


def _magstripe(data: bytes, reveal: bool) -> dict[str, Any]:
    return magstripe.parse_swipe(_text(data).strip()).as_dict(reveal=reveal)


def _idcard(data: bytes, reveal: bool) -> dict[str, Any]:
    if data.startswith(idcard.PREAMBLE):
        return idcard.parse_frame(data).as_dict(reveal=reveal)
    if len(data) == idcard.TEXT_LEN:
        info = idcard.parse_text_block(data)
        return {"text_block": True, "fields": info.as_dict(reveal=reveal),
                "gender_text": idcard.GENDERS.get(info.gender),
                "nation_text": idcard.NATIONS.get(info.nation)}
    raise idcard.IdCardError("expected a SAM frame (AA AA AA 96 69 ...) or a 256-byte text block")


def _gb11643(data: bytes, reveal: bool) -> dict[str, Any]:
    text = _text(data).strip()
    if len(text) == 15 and text.isdigit():
        # A legacy 15-digit number: describe it through its 18-character form.
        out = gb11643.parse(gb11643.upgrade_15(text)).as_dict(reveal=reveal)
        return {**out, "legacy_15": True}
    return {**gb11643.parse(text).as_dict(reveal=reveal), "legacy_15": False}


def _mrz(data: bytes, reveal: bool) -> dict[str, Any]:
    return mrz.parse_mrz(_text(data)).as_dict(reveal=reveal)


def _escpos(data: bytes, reveal: bool) -> dict[str, Any]:
    return escpos.parse_exchange(data).as_dict(reveal=reveal)


def _modbus(data: bytes, reveal: bool) -> dict[str, Any]:
    return modbus.parse_rtu(data).as_dict(reveal=reveal)


_DECODERS: dict[str, Callable[[bytes, bool], dict[str, Any]]] = {
    "scanner": _scanner, "em4100": _em4100, "magstripe": _magstripe, "idcard": _idcard,
    "gb11643": _gb11643, "mrz": _mrz, "escpos-status": _escpos, "modbus": _modbus,
}


def decode(kind: str, data: bytes, *, reveal: bool = False) -> dict[str, Any]:
    """Decode one input of ``kind`` into a JSON-serialisable dict, or raise :class:`DecodeError`."""
    decoder = _DECODERS.get(kind)
    if decoder is None:
        raise DecodeError(f"unknown kind {kind!r}; expected one of: {', '.join(KINDS)}")
    if not data or not data.strip(b" \t\r\n"):
        raise DecodeError(f"{kind}: no input")
    try:
        result = decoder(data, reveal)
    except ProtocolError as err:  # DecodeError included: every message names the kind
        hint = ""
        if kind in _BINARY_KINDS and _HEX_TEXT.fullmatch(data):
            hint = " (the input looks like hex text: pass --hex)"
        raise DecodeError(f"{kind}: {err}{hint}") from err
    return {"kind": kind, **result}
