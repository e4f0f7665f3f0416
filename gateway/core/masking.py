"""Mask personal and cardholder data before it is shown, logged or forwarded.

One masking module for the whole product (devices, pages, tickets, the KDS, logs and what goes to HQ):
the masked forms follow the conventions people in a store recognise: a payment PAN keeps the
BIN (first 6) and last 4 digits (PCI DSS 3.4.1), a resident ID number keeps the region code and
the last 4 characters (``110105********002X``), a name keeps its first character (``张*``).
Masks never reveal more than the rule allows, even for short or malformed input.
"""

from __future__ import annotations

MASK = "*"


def mask_middle(value: str, head: int, tail: int) -> str:
    """Keep ``head`` leading and ``tail`` trailing characters and star the rest.

    When the value is too short to keep both ends *and* hide something, everything is starred:
    a rule that would reveal the whole value is never applied.
    """
    if len(value) <= head + tail:
        return MASK * len(value)
    end = value[len(value) - tail:] if tail else ""
    return value[:head] + MASK * (len(value) - head - tail) + end


def mask_pan(pan: str) -> str:
    """Mask a payment card number to first 6 / last 4 (``411111******1111``)."""
    digits = "".join(ch for ch in pan if not ch.isspace())
    if len(digits) >= 13:
        return mask_middle(digits, 6, 4)
    # Short "PANs" cannot keep the BIN without revealing most of the number.
    return mask_middle(digits, 0, 4)


def mask_id_number(number: str) -> str:
    """Mask a resident ID number to region code and last 4 (``110105********002X``)."""
    number = number.strip()
    if len(number) >= 15:
        return mask_middle(number, 6, 4)
    return mask_middle(number, 0, 2)


def mask_name(name: str) -> str:
    """Mask a person's name to the first character of each word (``张*``, ``A*** M****``)."""
    words = name.split(" ")
    out = []
    for word in words:
        if len(word) <= 1:
            # A one-character name would otherwise be shown whole.
            out.append(MASK * len(word))
        else:
            out.append(word[0] + MASK * (len(word) - 1))
    return " ".join(out)


def mask_address(address: str) -> str:
    """Mask an address to its first 6 characters (province and city) and a fixed-width tail."""
    address = address.strip()
    if len(address) <= 6:
        return MASK * 4 if address else ""
    # A fixed number of stars so the length of the street part is not revealed either.
    return address[:6] + MASK * 4


def mask_document_number(number: str) -> str:
    """Mask a travel-document or other identifying number to its last 3 characters."""
    number = number.strip()
    if len(number) <= 4:
        return MASK * len(number)
    return mask_middle(number, 0, 3)


def mask_phone(number: str) -> str:
    """Mask a mobile number to its first 3 and last 4 digits (``138****5678``); a +86/0086 prefix is dropped."""
    digits = "".join(ch for ch in number if ch.isdigit())
    if len(digits) == 13 and digits.startswith("86"):
        digits = digits[2:]
    elif len(digits) == 15 and digits.startswith("0086"):
        digits = digits[4:]
    if len(digits) == 11:
        return mask_middle(digits, 3, 4)
    return mask_middle(digits, 0, 4) if len(digits) > 8 else MASK * len(digits)


def mask_card(pan: str) -> str:
    """Mask a card number to its last 4 digits (``****1111``): what staff, pages and logs may show."""
    digits = "".join(ch for ch in pan if ch.isdigit())
    if len(digits) < 8:
        return MASK * 4
    return MASK * 4 + digits[-4:]


def mask_passport(number: str) -> str:
    """Mask a passport (travel-document) number to its last 3 characters (``******2C3``)."""
    return mask_document_number(number)


def mask_mrz(line: str) -> str:
    """Mask a whole machine-readable-zone line: names, numbers and dates are all personal (``<MRZ>``)."""
    return "<MRZ>" if line else ""


def mask_member_no(number: str) -> str:
    """Mask a member number to its store code, last 3 digits and check character (``SH001-****042-7``)."""
    parts = number.strip().split("-")
    if len(parts) != 3 or len(parts[1]) < 4:
        return MASK * len(number.strip())
    return f"{parts[0]}-{MASK * (len(parts[1]) - 3)}{parts[1][-3:]}-{parts[2]}"


def mask_tag(tag_id: str) -> str:
    """Mask an RFID tag id or a member card number to its last 2 characters (``********05``)."""
    tag_id = tag_id.strip()
    return mask_middle(tag_id, 0, 2) if len(tag_id) > 4 else MASK * len(tag_id)
