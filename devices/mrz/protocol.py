"""ICAO Doc 9303 machine-readable zones (TD1, TD2, TD3, MRV-A, MRV-B): text lines → checked documents.

Document readers send the 2 or 3 MRZ lines as ASCII with a vendor-specific separator (CR, LF, CRLF,
sometimes STX/ETX around them). Every check digit is verified, including the composite. OCR-confusable
letters (O I B S Z G) are corrected to digits only in numeric fields (dates, check digits) and only
when the check digit then confirms the reading; every correction made is reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.core.errors import ProtocolError
from gateway.core.masking import mask_document_number, mask_name
from gateway.core.pii import mrz_check_digit

_CHARSET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789<")
_OCR_DIGITS = {"O": "0", "I": "1", "B": "8", "S": "5", "Z": "2", "G": "6"}
_GEOMETRIES = {(3, 30): "TD1", (2, 36): "TD2", (2, 44): "TD3"}
_MASKED_NAMES = ("surname", "given_names")
_MASKED_NUMBERS = ("document_number", "personal_number", "optional_data", "optional_data_1",
                   "optional_data_2")
_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # YY cannot tell 1900 from 2000: allow 29 Feb


class MrzError(ProtocolError):
    """Text that is not a valid machine-readable zone."""


def check_digit(text: str) -> str:
    """Return the 7-3-1 check digit of ``text`` (digits, A-Z = 10-35, ``<`` = 0): ``gateway.core.pii``'s."""
    try:
        return mrz_check_digit(text)
    except ValueError as err:
        raise MrzError(str(err)) from None


def _date_ok(yymmdd: str) -> bool:
    if "<" in yymmdd:  # ICAO allows an unknown day or month written as fillers
        return all(c.isdigit() or c == "<" for c in yymmdd)
    if not yymmdd.isdigit():
        return False
    month, day = int(yymmdd[2:4]), int(yymmdd[4:6])
    return 1 <= month <= 12 and 1 <= day <= _DAYS[month - 1]


@dataclass(frozen=True, slots=True)
class Correction:
    """One OCR correction: a field and its text before and after."""

    field: str
    before: str
    after: str


@dataclass(frozen=True)
class Mrz:
    """A parsed MRZ: its format, field values, check results and OCR corrections."""

    format: str
    values: dict[str, str] = field(repr=False)
    checks: dict[str, bool]
    corrections: tuple[Correction, ...] = ()

    @property
    def all_check_digits_ok(self) -> bool:
        """Return whether every check digit (composite included) verifies."""
        return all(ok for name, ok in self.checks.items() if name.endswith("check_ok"))

    @property
    def valid(self) -> bool:
        """Return whether all check digits, dates and the sex field are valid."""
        return all(self.checks.values())

    def problems(self) -> list[str]:
        """Return the names of the checks that failed."""
        return [name for name, ok in self.checks.items() if not ok]

    def as_dict(self, *, reveal: bool = False) -> dict[str, Any]:
        """Return JSON-ready fields; names and document/personal numbers masked unless ``reveal``."""
        out: dict[str, Any] = {"format": self.format}
        for key, value in self.values.items():
            if reveal or not value:
                out[key] = value
            elif key in _MASKED_NAMES:
                out[f"{key}_masked"] = mask_name(value)
            elif key in _MASKED_NUMBERS:
                out[f"{key}_masked"] = mask_document_number(value)
            else:
                out[key] = value
        out.update(self.checks)
        out["all_check_digits_ok"] = self.all_check_digits_ok
        out["corrections"] = [{"field": c.field, "from": c.before, "to": c.after} for c in self.corrections]
        return out


class _Zone:
    """Mutable lines plus the bookkeeping of one parse."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = [list(line) for line in lines]
        self.values: dict[str, str] = {}
        self.checks: dict[str, bool] = {}
        self.corrections: list[Correction] = []

    def get(self, line: int, start: int, end: int) -> str:
        return "".join(self.lines[line][start:end])

    def correct(self, name: str, line: int, start: int, end: int, check_pos: int | None,
                data: str | None = None) -> None:
        """Correct confusable letters in a numeric field and/or its check digit if the check confirms."""
        positions = list(range(start, end)) if data is None else []
        if check_pos is not None:
            positions.append(check_pos)
        row = self.lines[line]
        if not any(row[p] in _OCR_DIGITS for p in positions):
            return
        trial = list(row)
        for p in positions:
            trial[p] = _OCR_DIGITS.get(trial[p], trial[p])
        if check_pos is None:
            return  # nothing could confirm the reading, so it is left as read
        text = data if data is not None else "".join(trial[start:end])
        if check_digit(text) != trial[check_pos]:
            return
        if data is None and "".join(row[start:end]) != text:
            self.corrections.append(Correction(name, "".join(row[start:end]), text))
        if row[check_pos] != trial[check_pos]:
            self.corrections.append(Correction(f"{name}_check", row[check_pos], trial[check_pos]))
        self.lines[line] = trial

    def checked(self, name: str, text: str, check: str, *, empty_filler_ok: bool = False) -> None:
        self.values[f"{name}_check"] = check
        ok = check == check_digit(text)
        if empty_filler_ok and not text.strip("<"):
            ok = check in ("<", "0")  # an empty optional field may carry < instead of 0
        self.checks[f"{name}_check_ok"] = ok


def _clean(code: str) -> str:
    return code.replace("<", " ").strip()


def _names(zone: _Zone, text: str) -> None:
    surname, _, given = text.strip("<").partition("<<")
    zone.values["surname"] = surname.replace("<", " ").strip()
    zone.values["given_names"] = given.replace("<", " ").strip()


def _document_number(zone: _Zone, line: int, start: int, opt_start: int, opt_end: int) -> str:
    """Read the document number (with a TD1/TD2 long-number overflow) and return the optional data left."""
    number = zone.get(line, start, start + 9)
    check = zone.lines[line][start + 9]
    optional = zone.get(line, opt_start, opt_end)
    if check == "<" and optional[:1] != "<" and "<" in optional:
        # More than 9 characters: the rest and the real check digit open the optional data (Part 5 4.2.4).
        end = optional.index("<")
        zone.correct("document_number", line, opt_start, opt_start + end - 1, opt_start + end - 1,
                     data=number.rstrip("<") + optional[: end - 1])
        optional = zone.get(line, opt_start, opt_end)
        number, check, optional = number + optional[: end - 1], optional[end - 1], optional[end + 1:]
    else:
        zone.correct("document_number", line, start, start + 9, start + 9, data=number)
        check = zone.lines[line][start + 9]
    number = number.rstrip("<")
    zone.values["document_number"] = number
    zone.checked("document_number", number, check)
    return optional


def _dates_and_sex(zone: _Zone, line: int, birth: int, sex: int, expiry: int) -> None:
    for name, pos in (("birth_date", birth), ("expiry_date", expiry)):
        zone.correct(name, line, pos, pos + 6, pos + 6)
        value = zone.get(line, pos, pos + 6)
        zone.values[name] = value
        zone.checked(name, value, zone.lines[line][pos + 6])
        zone.checks[f"{name}_ok"] = _date_ok(value)
    zone.values["sex"] = zone.lines[line][sex]
    zone.checks["sex_ok"] = zone.values["sex"] in ("M", "F", "<", "X")


def _composite(zone: _Zone, line: int, pos: int, parts: list[tuple[int, int, int]]) -> None:
    data = "".join(zone.get(ln, a, b) for ln, a, b in parts)
    zone.correct("composite", line, pos, pos, pos, data=data)
    zone.checked("composite", data, zone.lines[line][pos])


def _parse_td1(zone: _Zone) -> None:
    zone.values["document_code"] = _clean(zone.get(0, 0, 2))
    zone.values["issuing_state"] = _clean(zone.get(0, 2, 5))
    optional_1 = _document_number(zone, 0, 5, 15, 30)
    zone.values["optional_data_1"] = optional_1.strip("<")
    _dates_and_sex(zone, 1, 0, 7, 8)
    zone.values["nationality"] = _clean(zone.get(1, 15, 18))
    zone.values["optional_data_2"] = zone.get(1, 18, 29).strip("<")
    _composite(zone, 1, 29, [(0, 5, 30), (1, 0, 7), (1, 8, 15), (1, 18, 29)])
    _names(zone, zone.get(2, 0, 30))


def _parse_two_line(zone: _Zone, width: int, visa: bool) -> None:
    zone.values["document_code"] = _clean(zone.get(0, 0, 2))
    zone.values["issuing_state"] = _clean(zone.get(0, 2, 5))
    _names(zone, zone.get(0, 5, width))
    opt_end = width if visa else width - 1
    if width == 44 and not visa:
        # TD3 has its own personal-number check digit and no long-number overflow.
        zone.correct("document_number", 1, 0, 9, 9, data=zone.get(1, 0, 9))
        number = zone.get(1, 0, 9).rstrip("<")
        zone.values["document_number"] = number
        zone.checked("document_number", number, zone.lines[1][9])
    else:
        optional = _document_number(zone, 1, 0, 28, opt_end)
    zone.values["nationality"] = _clean(zone.get(1, 10, 13))
    _dates_and_sex(zone, 1, 13, 20, 21)
    if visa:
        zone.values["optional_data"] = optional.strip("<")
        return
    if width == 44:
        zone.correct("personal_number", 1, 42, 42, 42, data=zone.get(1, 28, 42))
        zone.values["personal_number"] = zone.get(1, 28, 42).strip("<")
        zone.checked("personal_number", zone.get(1, 28, 42), zone.lines[1][42], empty_filler_ok=True)
    else:
        zone.values["optional_data"] = optional.strip("<")
    _composite(zone, 1, width - 1, [(1, 0, 10), (1, 13, 20), (1, 21, width - 1)])


def parse_mrz(text: str, *, strict: bool = True) -> Mrz:
    """Parse 2 or 3 MRZ lines; with ``strict`` raise :class:`MrzError` unless every check passes."""
    lines = [ln.strip(" \t\x02\x03") for ln in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    lines = [ln for ln in lines if ln]
    geometry = _GEOMETRIES.get((len(lines), len(lines[0]) if lines else 0))
    if geometry is None or any(len(ln) != len(lines[0]) for ln in lines):
        shape = "x".join(str(len(ln)) for ln in lines) or "empty"
        raise MrzError(f"unrecognised geometry ({len(lines)} lines, lengths {shape}); "
                       "expected 3x30 (TD1), 2x36 (TD2/MRV-B) or 2x44 (TD3/MRV-A)")
    for ln in lines:
        if not set(ln) <= _CHARSET:
            raise MrzError("MRZ lines may contain only A-Z, 0-9 and <")
    zone = _Zone(lines)
    visa = lines[0][0] == "V"
    if geometry == "TD1":
        _parse_td1(zone)
        fmt = "TD1"
    else:
        width = len(lines[0])
        _parse_two_line(zone, width, visa)
        fmt = ("MRV-A" if width == 44 else "MRV-B") if visa else geometry
    mrz = Mrz(fmt, zone.values, zone.checks, tuple(zone.corrections))
    if strict and not mrz.valid:
        raise MrzError(f"{fmt} MRZ failed: {', '.join(mrz.problems())}")
    return mrz


class MrzProtocol:
    """Group reader lines into MRZs (by line length) and parse them; ``flush()`` ends an idle zone."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._lines: list[str] = []

    def data_received(self, data: bytes) -> list[Mrz | MrzError]:
        """Feed bytes; return the documents (and errors for rejected zones) completed by them."""
        self._buf += data
        out: list[Mrz | MrzError] = []
        while (cut := min((i for i in (self._buf.find(b"\r"), self._buf.find(b"\n")) if i >= 0),
                          default=-1)) >= 0:
            line = bytes(self._buf[:cut])
            del self._buf[: cut + 1]
            self._line(line, out)
        if len(self._buf) > 256:
            self._buf.clear()
            out.append(MrzError("no line end within 256 bytes; data discarded"))
        return out

    def flush(self) -> list[Mrz | MrzError]:
        """Finish after an idle gap: take an unterminated last line, report an incomplete zone."""
        out: list[Mrz | MrzError] = []
        line = bytes(self._buf)
        self._buf.clear()
        self._line(line, out)
        if self._lines:
            out.append(MrzError(f"incomplete MRZ ({len(self._lines)} line(s)) discarded"))
            self._lines = []
        return out

    def _line(self, raw: bytes, out: list[Mrz | MrzError]) -> None:
        line = raw.decode("latin-1").strip(" \t\x02\x03")
        if not line:
            return
        if len(line) not in (30, 36, 44) or not set(line) <= _CHARSET:
            out.append(MrzError(f"line of {len(line)} characters is not an MRZ line"))
            self._lines = []
            return
        if self._lines and len(self._lines[0]) != len(line):
            out.append(MrzError(f"incomplete MRZ ({len(self._lines)} line(s)) discarded"))
            self._lines = []
        self._lines.append(line)
        if len(self._lines) == (3 if len(line) == 30 else 2):
            lines, self._lines = self._lines, []
            try:
                out.append(parse_mrz("\n".join(lines)))
            except MrzError as err:
                out.append(err)
                # The first line may have been a stray one: the rest may still open a good zone.
                self._lines = lines[1:]
