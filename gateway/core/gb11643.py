"""GB 11643-1999 citizen identity numbers (公民身份号码): validate, describe, upgrade 15 → 18 digits.

18 characters: 6-digit region code (GB/T 2260), birth date YYYYMMDD, 3-digit sequence (odd = male,
even = female) and an ISO 7064 MOD 11-2 check character (``X`` for 10). Region codes are retired and
re-used over time, so only the province part is checked against a table; a full county table would
go stale and reject real people.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from gateway.core.errors import ProtocolError
from gateway.core.masking import mask_id_number

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARS = "10X98765432"  # indexed by S mod 11
# Province-level prefixes of GB/T 2260 (plus 81/82/83 used by HK/Macau/Taiwan residence permits).
PROVINCES: dict[str, str] = {
    "11": "北京市", "12": "天津市", "13": "河北省", "14": "山西省", "15": "内蒙古自治区", "21": "辽宁省",
    "22": "吉林省", "23": "黑龙江省", "31": "上海市", "32": "江苏省", "33": "浙江省", "34": "安徽省",
    "35": "福建省", "36": "江西省", "37": "山东省", "41": "河南省", "42": "湖北省", "43": "湖南省",
    "44": "广东省", "45": "广西壮族自治区", "46": "海南省", "50": "重庆市", "51": "四川省", "52": "贵州省",
    "53": "云南省", "54": "西藏自治区", "61": "陕西省", "62": "甘肃省", "63": "青海省",
    "64": "宁夏回族自治区", "65": "新疆维吾尔自治区", "71": "台湾省", "81": "香港特别行政区",
    "82": "澳门特别行政区", "83": "台湾地区(居住证)",
}
EARLIEST_BIRTH_YEAR = 1800  # the standard's own example is born in 1880


class IdNumberError(ProtocolError):
    """A string that is not a valid GB 11643 citizen identity number."""


def check_char(first17: str) -> str:
    """Return the MOD 11-2 check character for the first 17 digits."""
    if len(first17) != 17 or not first17.isascii() or not first17.isdigit():
        raise IdNumberError("need exactly 17 digits to compute the check character")
    total = sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True))
    return _CHECK_CHARS[total % 11]


@dataclass(frozen=True, slots=True)
class IdNumber:
    """A validated 18-character identity number and what it encodes."""

    number: str = field(repr=False)
    birth_date: dt.date = field(repr=False)

    @property
    def region_code(self) -> str:
        """Return the 6-digit region (address) code."""
        return self.number[:6]

    @property
    def province(self) -> str:
        """Return the province-level name of the region code."""
        return PROVINCES[self.number[:2]]

    @property
    def sequence(self) -> str:
        """Return the 3-digit sequence number."""
        return self.number[14:17]

    @property
    def sex(self) -> str:
        """Return ``male`` (odd sequence) or ``female`` (even sequence)."""
        return "male" if int(self.number[16]) % 2 else "female"

    @property
    def masked(self) -> str:
        """Return the masked number (``110105********002X``)."""
        return mask_id_number(self.number)

    def as_dict(self, *, reveal: bool = False) -> dict[str, Any]:
        """Return JSON-ready fields; the number itself only with ``reveal``."""
        out: dict[str, Any] = {"id_number_masked": self.masked, "region_code": self.region_code,
                               "province": self.province, "birth_date": self.birth_date.isoformat(),
                               "sex": self.sex, "check_char": self.number[17],
                               "check_char_expected": self.number[17], "checksum_ok": True,
                               "birth_date_ok": True}
        if reveal:
            out.update(id_number=self.number, sequence=self.sequence)
        return out


def parse(number: str, *, today: dt.date | None = None) -> IdNumber:
    """Validate an 18-character number (lower-case ``x`` accepted) or raise :class:`IdNumberError`.

    ``today``, when given, also rejects a birth date in the future (this module reads no clock).
    """
    number = number.strip().upper()
    if len(number) != 18:
        raise IdNumberError(f"an ID number has 18 characters, got {len(number)}")
    if not (number[:17].isascii() and number[:17].isdigit()) or number[17] not in "0123456789X":
        raise IdNumberError("bad format: 17 digits and a final digit or X expected")
    if number[:2] not in PROVINCES:
        raise IdNumberError(f"region code {number[:6]} has no valid province prefix")
    if number[2:4] == "00" and number[:2] not in ("81", "82", "83"):
        raise IdNumberError(f"region code {number[:6]} is not a city or county code")
    try:
        birth = dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError as err:
        raise IdNumberError(f"birth date {number[6:14]} is not a calendar date") from err
    if birth.year < EARLIEST_BIRTH_YEAR or (today is not None and birth > today):
        raise IdNumberError(f"birth date {number[6:14]} is out of range")
    expected = check_char(number[:17])
    if number[17] != expected:
        # Naming the expected character helps spot a typo; the number itself is not echoed.
        raise IdNumberError(f"check character is {number[17]}, expected {expected}")
    return IdNumber(number, birth)


def is_valid(number: str) -> bool:
    """Return whether ``number`` is a valid 18-character identity number."""
    try:
        parse(number)
    except IdNumberError:
        return False
    return True


def upgrade_15(number: str) -> str:
    """Convert a legacy 15-digit (GB 11643-1989) number to 18 characters (born 19xx)."""
    number = number.strip()
    if len(number) != 15 or not number.isascii() or not number.isdigit():
        raise IdNumberError("a legacy ID number has 15 digits")
    first17 = number[:6] + "19" + number[6:]
    return first17 + check_char(first17)
