"""What a registration must hold, per document type (data-anchors B.1), and how reader events become
form values. Pure functions: no store, no clock (``today`` is passed in).

Document types and the fields each must have before it can be saved:

=================  ===========================================================================
``resident_id``    name, sex, ethnicity, birth date, ID number (GB 11643), card address, issuer,
                   validity (from, to), chip photo
``hmt_residence``  港澳台居民居住证 (SAM, card type J): name, sex, birth date, ID number (region
                   81/82/83), address, issuer, validity, chip photo
``passport``       Latin name, sex, birth date, nationality, passport number, expiry; for a
                   foreign passport also the visa/stay type and its validity (typed in: not in the MRZ)
``hk_mo_permit``   港澳居民来往内地通行证: name, sex, birth date, permit number, expiry
``tw_permit``      台湾居民来往大陆通行证: name, sex, birth date, permit number, expiry
=================  ===========================================================================

Every type also needs the stay (room, check-in, expected checkout) and the staff's confirmation
that the person matches the document photo. A minor (younger than ``guests.minor_age`` on the
check-in date) also needs a guardian's name, contact and relationship to each adult in the room
(未成年人保护法 Art. 57). Refusals name every missing field in Chinese and English.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from gateway.core import gb11643
from gateway.core.errors import GuestError
from gateway.core.masking import mask_address, mask_document_number, mask_id_number, mask_name
from gateway.core.text import free_text

DOC_TYPES: dict[str, tuple[str, str]] = {
    "resident_id": ("Resident ID card", "居民身份证"),
    "hmt_residence": ("HK/Macau/Taiwan residence permit", "港澳台居民居住证"),
    "passport": ("Passport", "护照"),
    "hk_mo_permit": ("HK/Macau travel permit", "港澳居民来往内地通行证"),
    "tw_permit": ("Taiwan travel permit", "台湾居民来往大陆通行证"),
}

# (English, 中文) label of every field a form may hold.
LABELS: dict[str, tuple[str, str]] = {
    "doc_type": ("Document type", "证件类型"),
    "name": ("Name", "姓名"),
    "sex": ("Sex", "性别"),
    "ethnicity": ("Ethnicity", "民族"),
    "birth_date": ("Date of birth", "出生日期"),
    "doc_number": ("Document number", "证件号码"),
    "address": ("Address on the card", "证件地址"),
    "issuer": ("Issuing authority", "签发机关"),
    "valid_from": ("Valid from", "有效期起"),
    "valid_to": ("Valid until", "有效期至"),
    "nationality": ("Nationality", "国籍"),
    "expiry": ("Document expiry", "证件有效期"),
    "visa_type": ("Visa or stay type", "签证/停留类型"),
    "visa_valid_to": ("Visa or stay valid until", "签证/停留有效期至"),
    "photo": ("Chip photo (read the card on the reader)", "证件芯片照片（请在读卡器上读卡）"),
    "photo_match": ("Photo match confirmed", "人证核验一致"),
    "room": ("Room", "房号"),
    "check_in": ("Check-in", "入住时间"),
    "expected_out": ("Expected checkout", "预计离店时间"),
    "guardian_name": ("Guardian's name", "监护人姓名"),
    "guardian_contact": ("Guardian's contact", "监护人联系方式"),
    "relationship": ("Relationship to the adults in the room", "与同住成年人关系"),
    "guardian_confirmed": ("Guardian contacted (no adult in the room)", "已联系监护人（无同住成年人）"),
}

_IDENTITY = ("name", "sex", "birth_date", "doc_number")
REQUIRED: dict[str, tuple[str, ...]] = {
    "resident_id": (*_IDENTITY, "ethnicity", "address", "issuer", "valid_from", "valid_to", "photo"),
    "hmt_residence": (*_IDENTITY, "address", "issuer", "valid_from", "valid_to", "photo"),
    "passport": (*_IDENTITY, "nationality", "expiry"),
    "hk_mo_permit": (*_IDENTITY, "expiry"),
    "tw_permit": (*_IDENTITY, "expiry"),
}
VISA = ("visa_type", "visa_valid_to")
STAY = ("room", "check_in", "expected_out")
GUARDIAN = ("guardian_name", "guardian_contact")
# Values kept in the encrypted details (everything but name, number and photo).
DETAIL_KEYS = ("sex", "ethnicity", "birth_date", "address", "issuer", "valid_from", "valid_to", "nationality",
               "expiry", "visa_type", "visa_valid_to")
OVERSEAS_TYPES = ("hk_mo_permit", "tw_permit", "hmt_residence")
HOME = "CHN"
SEX = {"1": "M", "2": "F", "M": "M", "F": "F"}
MAX_LEN = {"name": 80, "address": 120, "issuer": 60, "visa_type": 40, "guardian_name": 40,
           "guardian_contact": 40, "relationship": 60, "room": 16, "ethnicity": 16, "nationality": 3}


def label(name: str) -> str:
    """``Visa or stay type 签证/停留类型``: a field's name in both languages."""
    en, zh = LABELS.get(name, (name, name))
    return f"{zh} {en}"


def missing_error(names: list[str]) -> GuestError:
    """The refusal naming every missing field, in Chinese and English."""
    zh = "、".join(LABELS.get(n, (n, n))[1] for n in names)
    en = ", ".join(LABELS.get(n, (n, n))[0] for n in names)
    return GuestError(f"缺少必填项：{zh}。Missing required field: {en}.", code="missing_field",
                      fields=tuple(names))


def invalid(name: str, why_en: str, why_zh: str) -> GuestError:
    """A refusal for one field's wrong value (the value itself is never echoed)."""
    en, zh = LABELS.get(name, (name, name))
    return GuestError(f"{zh}：{why_zh}。{en}: {why_en}.", code="invalid_field", fields=(name,))


def parse_date(value: str) -> dt.date | None:
    """``YYYY-MM-DD`` or ``YYYYMMDD`` → a date, else None."""
    text = value.strip().replace("-", "").replace("/", "").replace(".", "")
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        return dt.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def age_on(birth: dt.date, day: dt.date) -> int:
    """Completed years on ``day``."""
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def mrz_date(yymmdd: str, *, birth: bool, today: dt.date) -> str:
    """An MRZ YYMMDD as YYYY-MM-DD: birth dates never in the future; expiry dates 20YY (pivot at 70)."""
    if len(yymmdd) != 6 or not yymmdd.isascii() or not yymmdd.isdigit():
        return ""
    yy = int(yymmdd[:2])
    pivot_ok = 2000 + yy <= today.year if birth else yy < 70
    year = 2000 + yy if pivot_ok else 1900 + yy
    d = parse_date(f"{year}{yymmdd[2:]}")
    return d.isoformat() if d else ""


def _iso(yyyymmdd: str) -> str:
    d = parse_date(yyyymmdd)
    return d.isoformat() if d else yyyymmdd  # 长期 (long-term) stays as it is


def from_idcard(sensitive: Mapping[str, Any]) -> dict[str, Any]:
    """Form values from an ID reader event's ``sensitive`` fields (decoded by devices/idcard)."""
    doc_type = "hmt_residence" if sensitive.get("card_type") == "hk_mo_tw_residence_permit" else "resident_id"
    out: dict[str, Any] = {
        "doc_type": doc_type, "name": sensitive.get("name", ""), "sex": SEX.get(str(sensitive.get("gender")), ""),
        "birth_date": _iso(str(sensitive.get("birth", ""))), "doc_number": sensitive.get("id_number", ""),
        "address": sensitive.get("address", ""), "issuer": sensitive.get("authority", ""),
        "valid_from": _iso(str(sensitive.get("valid_from", ""))),
        "valid_to": _iso(str(sensitive.get("valid_to", ""))), "nationality": HOME,
    }
    if doc_type == "resident_id":
        out["ethnicity"] = str(sensitive.get("nation", ""))
    photo = sensitive.get("photo_wlt")
    if isinstance(photo, (bytes, bytearray)) and photo:
        out["photo"] = bytes(photo)
    return out


_MRZ_TYPES = {"CR": "hk_mo_permit", "CT": "tw_permit"}  # card permits with an MRZ (document codes)


def from_mrz(sensitive: Mapping[str, Any], today: dt.date) -> dict[str, Any]:
    """Form values from an MRZ reader event's ``sensitive`` fields. Names have no check digit in
    TD2/TD3 line 1, so staff confirm (and may correct) them on the form."""
    code = str(sensitive.get("document_code", ""))
    doc_type = _MRZ_TYPES.get(code, "passport")
    surname = str(sensitive.get("surname", "")).strip()
    given = str(sensitive.get("given_names", "")).strip()
    sex = str(sensitive.get("sex", ""))
    return {
        "doc_type": doc_type, "name": f"{surname}, {given}".strip(", ") if given else surname,
        "sex": sex if sex in ("M", "F") else "", "nationality": str(sensitive.get("nationality", "")),
        "birth_date": mrz_date(str(sensitive.get("birth_date", "")), birth=True, today=today),
        "expiry": mrz_date(str(sensitive.get("expiry_date", "")), birth=False, today=today),
        "doc_number": str(sensitive.get("document_number", "")), "issuer": str(sensitive.get("issuing_state", "")),
    }


def masked_number(doc_type: str, number: str) -> str:
    """110105********002X for resident and residence-permit numbers; the last 3 for travel documents."""
    if doc_type in ("resident_id", "hmt_residence"):
        return mask_id_number(number)
    return mask_document_number(number)


def masked_name(name: str) -> str:
    """张* / E******** A*** M****."""
    return mask_name(name.replace(",", ""))


def masked_address(address: str) -> str:
    """Province and city, then a fixed-width tail."""
    return mask_address(address)


def overseas(doc_type: str, nationality: str) -> bool:
    """A guest the 24 h report rule covers: a foreign passport, or a HK/Macau/Taiwan document."""
    if doc_type == "passport":
        return nationality.upper() != HOME
    return doc_type in OVERSEAS_TYPES


# The recognisers (gateway.core.pii) mask ID and mobile numbers in free text; these fields hold them.
ALLOW: dict[str, frozenset[str]] = {"doc_number": frozenset({"id_number"}),
                                    "guardian_contact": frozenset({"mobile"})}


def _text(values: Mapping[str, Any], name: str) -> str:
    raw = values.get(name, "")
    return free_text(raw, MAX_LEN.get(name, 40), allow=ALLOW.get(name, frozenset())) if isinstance(raw, str) else ""


def check_guest(values: Mapping[str, Any], *, check_in: dt.date, minor_age: int,
                adults: list[int]) -> dict[str, Any]:
    """Validate one guest's values; return the normalised record or raise a GuestError naming the
    missing (or wrong) fields.

    ``adults``: the ids of the adults already in the stay (a minor needs a relationship to each,
    given as ``relationship_<id>``; with none, a guardian-contacted confirmation).
    """
    doc_type = values.get("doc_type", "")
    if doc_type not in DOC_TYPES:
        raise missing_error(["doc_type"])
    rec: dict[str, Any] = {"doc_type": doc_type}
    for key in ("name", *DETAIL_KEYS):
        rec[key] = _text(values, key)
    rec["doc_number"] = re.sub(r"[\s-]+", "", _text(values, "doc_number")).upper()
    rec["sex"] = SEX.get(rec["sex"].upper(), "") if rec["sex"] else ""
    rec["nationality"] = rec["nationality"].upper()
    photo = values.get("photo")
    rec["photo"] = photo if isinstance(photo, bytes) and photo else None
    need = list(REQUIRED[doc_type])
    if doc_type == "passport" and rec["nationality"] and rec["nationality"] != HOME:
        need += VISA
    missing = [n for n in need if not rec.get(n)]
    if values.get("photo_match") not in ("1", "on", "yes", True):
        missing.append("photo_match")
    birth = parse_date(rec["birth_date"]) if rec["birth_date"] else None
    minor = birth is not None and age_on(birth, check_in) < minor_age
    if minor:
        rec["guardian_name"] = _text(values, "guardian_name")
        rec["guardian_contact"] = _text(values, "guardian_contact")
        missing += [n for n in GUARDIAN if not rec[n]]
        rel = {str(a): _text(values, f"relationship_{a}") for a in adults}
        if adults and not all(rel.values()):
            missing.append("relationship")
        if not adults and values.get("guardian_confirmed") not in ("1", "on", "yes", True):
            missing.append("guardian_confirmed")
        rec["relationships"] = rel
    if missing:
        raise missing_error(missing)
    _check_values(rec, birth, check_in)
    rec["minor"] = minor
    rec["under14"] = birth is not None and age_on(birth, check_in) < 14
    rec["overseas"] = overseas(doc_type, rec["nationality"])
    return rec


def _check_values(rec: dict[str, Any], birth: dt.date | None, check_in: dt.date) -> None:
    if birth is None or birth > check_in:
        raise invalid("birth_date", "not a valid date (YYYY-MM-DD)", "日期无效（年-月-日）")
    doc_type, number = rec["doc_type"], rec["doc_number"]
    if doc_type in ("resident_id", "hmt_residence"):
        try:
            parsed = gb11643.parse(number, today=check_in)
        except gb11643.IdNumberError:
            raise invalid("doc_number", "not a valid GB 11643 number (check character)", "号码校验不通过") from None
        if parsed.birth_date != birth:
            raise invalid("birth_date", "does not match the ID number", "与证件号码不符")
        hmt = number[:2] in ("81", "82", "83")
        if hmt != (doc_type == "hmt_residence"):
            raise invalid("doc_number", "region code does not fit the document type", "地区码与证件类型不符")
    elif not re.fullmatch(r"[A-Z0-9<]{5,20}", number):
        raise invalid("doc_number", "5-20 letters and digits", "应为5-20位字母或数字")
    if rec["sex"] not in ("M", "F"):
        raise invalid("sex", "M or F", "应为男或女")
    for key in ("valid_from", "expiry", "visa_valid_to"):
        if rec.get(key) and parse_date(rec[key]) is None:
            raise invalid(key, "not a valid date (YYYY-MM-DD)", "日期无效（年-月-日）")
    if rec.get("valid_to") and rec["valid_to"] != "长期" and parse_date(rec["valid_to"]) is None:
        raise invalid("valid_to", "not a valid date (YYYY-MM-DD or 长期)", "日期无效")
    if rec.get("nationality") and not re.fullmatch(r"[A-Z<]{1,3}", rec["nationality"]):
        raise invalid("nationality", "an ICAO 3-letter code such as GBR", "应为三位国家代码")


def parse_local(value: str, tz: dt.tzinfo) -> int | None:
    """``YYYY-MM-DDTHH:MM`` (an ``<input type=datetime-local>``) in the store's zone → epoch ms."""
    try:
        d = dt.datetime.fromisoformat(value.strip())
    except (ValueError, AttributeError):
        return None
    if d.tzinfo is None:
        d = d.replace(tzinfo=tz)
    return int(d.timestamp() * 1000)


def check_stay(values: Mapping[str, Any], tz: dt.tzinfo) -> tuple[str, int, int]:
    """The room, check-in and expected checkout of a new stay, or a GuestError naming what is missing."""
    room = _text(values, "room")
    check_in = parse_local(str(values.get("check_in", "")), tz)
    out = parse_local(str(values.get("expected_out", "")), tz)
    missing = [n for n, v in (("room", room), ("check_in", check_in), ("expected_out", out)) if not v]
    if missing:
        raise missing_error(missing)
    if out is None or check_in is None or out <= check_in:
        raise invalid("expected_out", "must be after check-in", "须晚于入住时间")
    return room, check_in, out
