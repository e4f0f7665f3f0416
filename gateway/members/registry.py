"""Registration with consent, member numbers, lookups (phone, card, member QR, number), consents, requests.

The mobile number is field-encrypted with a 13-bit blind index (``gateway/privacy/fields.py``) and
shown 3 + 4 (``138****5678``); allergies are field-encrypted too (health-related). A membership card
is kept only as its HMAC ``card_ref`` (``devices/cardref.py``). Consent is separate per purpose,
explicit (no box is ticked for the member), recorded with its time and the version of the text
shown, and withdrawable; each change is a new row of ``mem_consents``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import TYPE_CHECKING, Any

from gateway.core import masking
from gateway.core.text import free_text, same_secret
from gateway.members.ledger import MembersError
from gateway.privacy.fields import normalise_phone
from gateway.staff.accounts import audit
from gateway.store.db import Connection, IntegrityError

if TYPE_CHECKING:
    from gateway.members.context import MembersContext

# purpose -> (text version, zh, en). A new wording is a new version: members are asked again.
CONSENTS: dict[str, tuple[str, str, str]] = {
    "benefits": ("benefits-2025-01",
                 "我同意本店保存我的昵称、手机号和消费积分，用于会员积分、等级和优惠（必选，可随时退出会员）。",
                 "I agree that this store keeps my nickname, mobile number and points for membership points, tiers "
                 "and offers (required; I can leave at any time)."),
    "marketing": ("marketing-2025-01",
                  "我同意接收本店的活动和优惠信息（可选，可随时撤回）。",
                  "I agree to receive news and offers from this store (optional; I can withdraw at any time)."),
    "birthday": ("birthday-2025-01",
                 "我同意本店保存我的生日（月-日），用于生日月优惠（可选，撤回后生日即删除）。",
                 "I agree that this store keeps my birthday (month-day) for a birthday-month perk (optional; "
                 "withdrawing deletes it)."),
}
PURPOSES = tuple(CONSENTS)
CHANNELS = ("counter", "diner")
NICK_MAX = 24
PREF_MAX = 140
ALLERGY_MAX = 140
_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_MOBILE = re.compile(r"^1[3-9][0-9]{9}$")
_BIRTHDAY = re.compile(r"^(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")


# ------------------------------------------------------------------------------------------- numbers

def check_char(body: str) -> str:
    """The Luhn mod 36 check character of ``body`` (0-9 A-Z): catches any single wrong character and
    any swap of two neighbours."""
    factor, total = 2, 0
    for ch in reversed(body):
        addend = factor * _ALNUM.index(ch)
        factor = 1 if factor == 2 else 2
        total += addend // 36 + addend % 36
    return _ALNUM[(36 - total % 36) % 36]


def store_code(store_id: str) -> str:
    """The store part of member numbers: the store id, upper case, without dashes (store ids are unique
    in the chain, so member numbers are too)."""
    return re.sub(r"[^0-9A-Z]", "", store_id.upper())


def member_no(store_id: str, seq: int) -> str:
    """``SH001-0000042-7``: store code, sequence, check character."""
    body = f"{store_code(store_id)}{seq:07d}"
    return f"{store_code(store_id)}-{seq:07d}-{check_char(body)}"


def valid_member_no(text: str) -> str | None:
    """The canonical member number if ``text`` is one with a right check character, else None."""
    parts = text.strip().upper().split("-")
    if len(parts) != 3 or not parts[0].isalnum() or not parts[1].isdigit() or len(parts[2]) != 1:
        return None
    if not parts[0].isascii() or not parts[1].isascii():
        return None
    return "-".join(parts) if check_char(parts[0] + parts[1]) == parts[2] else None


def mask_phone(phone: str) -> str:
    """Mobile numbers are shown 3 + 4: ``138****5678``."""
    return masking.mask_phone(normalise_phone(phone))


def qr_token(secret: bytes, number: str, version: int) -> str:
    """The member's QR / own-page token: the number and a MAC over it and its version (bump to revoke)."""
    mac = hmac.new(secret, f"member-qr:{number}:{version}".encode(), hashlib.sha256).hexdigest()[:20]
    return f"{number}.{mac}"


# ------------------------------------------------------------------------------------------- validation

def clean_phone(phone: Any) -> str:
    """A mainland mobile number (digits; +86 allowed) or a refusal."""
    digits = normalise_phone(str(phone or ""))
    if not _MOBILE.match(digits):
        raise MembersError("Enter an 11-digit mobile number. 请输入11位手机号。", code="bad_phone")
    return digits


def clean_birthday(text: Any) -> str:
    """``MM-DD`` (month and day only), '' for none."""
    value = str(text or "").strip()
    if not value:
        return ""
    if not _BIRTHDAY.match(value):
        raise MembersError("Birthday as MM-DD, e.g. 05-21. 生日格式为 月-日，如 05-21。", code="bad_birthday")
    return value


# ------------------------------------------------------------------------------------------- rows

_COLS = ("id, member_no, nickname, phone_ct, birthday, preferences, allergies_ct, card_ref, qr_version, tier, "
         "tier_since_ms, tier_hold_until_ms, points, state, channel, created_ms, last_visit_ms")


def _row(ctx: MembersContext, r: Any) -> dict[str, Any]:
    cipher = ctx.cipher
    phone = cipher.decrypt_text("mem_members", "phone_ct", bytes(r[3]), r[1]) if r[3] is not None else ""
    allergies = cipher.decrypt_text("mem_members", "allergies_ct", bytes(r[6]), r[1]) if r[6] is not None else ""
    return {"id": r[0], "no": r[1], "nickname": r[2], "phone_masked": mask_phone(phone) if phone else "",
            "birthday": r[4], "preferences": r[5], "allergies": allergies, "has_card": r[7] is not None,
            "qr_version": r[8], "tier": r[9], "tier_since_ms": r[10], "tier_hold_until_ms": r[11], "points": r[12],
            "state": r[13], "channel": r[14], "created_ms": r[15], "last_visit_ms": r[16]}


def get(ctx: MembersContext, conn: Connection, member_id: int) -> dict[str, Any] | None:
    """A member by id (phone masked, allergies decrypted for the staff serving them)."""
    r = conn.execute(f"SELECT {_COLS} FROM mem_members WHERE id = ?", (member_id,)).fetchone()  # noqa: S608
    return _row(ctx, r) if r else None


def by_phone(ctx: MembersContext, conn: Connection, phone: str) -> int | None:
    """The member with this mobile number: blind-index candidates (2-3 per value), decrypted and compared."""
    digits = normalise_phone(phone)
    idx = ctx.cipher.blind_index("phone", digits)
    for mid, number, ct in conn.execute("SELECT id, member_no, phone_ct FROM mem_members WHERE phone_bidx = ?",
                                        (idx,)).fetchall():
        if ct is not None and ctx.cipher.decrypt_text("mem_members", "phone_ct", bytes(ct), number) == digits:
            return int(mid)
    return None


def by_card(conn: Connection, card_ref: str) -> int | None:
    """The member holding the card with this ref."""
    row = conn.execute("SELECT id FROM mem_members WHERE card_ref = ?", (card_ref,)).fetchone()
    return int(row[0]) if row else None


def by_number(conn: Connection, number: str) -> int | None:
    """The member with this member number (check character verified)."""
    canon = valid_member_no(number)
    if canon is None:
        return None
    row = conn.execute("SELECT id FROM mem_members WHERE member_no = ?", (canon,)).fetchone()
    return int(row[0]) if row else None


def by_token(ctx: MembersContext, conn: Connection, token: str) -> int | None:
    """The member whose QR / own-page token this is (wrong MAC or a revoked version: None)."""
    token = token.strip()
    if "/m/" in token:  # a scanned QR holds the member page URL
        token = token.rsplit("/m/", 1)[1].split("?")[0]
    number, _, mac = token.partition(".")
    canon = valid_member_no(number)
    if canon is None or not mac:
        return None
    row = conn.execute("SELECT id, qr_version FROM mem_members WHERE member_no = ?", (canon,)).fetchone()
    if row is None:
        return None
    good = qr_token(ctx.secret, canon, row[1])
    if not same_secret(f"{canon}.{mac}", good):
        return None
    return int(row[0])


def identify(ctx: MembersContext, conn: Connection, query: str) -> int | None:
    """Find a member from what the counter typed or scanned: a mobile number, a member QR or a number."""
    q = str(query or "").strip()[:200]  # looked up, never stored
    if not q:
        return None
    if "." in q:
        return by_token(ctx, conn, q)
    digits = normalise_phone(q)
    if _MOBILE.match(digits) and not any(ch.isalpha() for ch in q):
        return by_phone(ctx, conn, digits)
    return by_number(conn, q)


# ------------------------------------------------------------------------------------------- registration

def register(ctx: MembersContext, conn: Connection, *, nickname: Any, phone: Any, birthday: Any = "",
             preferences: Any = "", allergies: Any = "", consents: dict[str, bool], channel: str, who: str,
             now: int, card_ref: str | None = None) -> int:
    """Register a member; return the id. The benefits consent is required; the others are optional."""
    if channel not in CHANNELS:
        raise MembersError("unknown channel")
    nick = free_text(nickname, NICK_MAX)
    if not nick:
        raise MembersError("Enter a nickname or name. 请输入昵称或姓名。", code="bad_nickname")
    if not consents.get("benefits"):
        raise MembersError("Membership needs the membership-benefits consent. 注册会员需同意会员权益条款。",
                           code="consent_required")
    digits = clean_phone(phone)
    bday = clean_birthday(birthday) if consents.get("birthday") else ""  # no consent: not even kept
    if by_phone(ctx, conn, digits) is not None:
        raise MembersError("This mobile number is already a member; look it up instead. 该手机号已是会员。",
                           code="already_member", status=409)
    if card_ref is not None and by_card(conn, card_ref) is not None:
        raise MembersError("This card already belongs to a member. 该会员卡已被使用。", code="card_taken", status=409)
    seq = int(conn.execute("SELECT coalesce(max(id), 0) + 1 FROM mem_members").fetchone()[0])
    number = member_no(ctx.store_id, seq)
    cipher = ctx.cipher
    allergy_text = free_text(allergies, ALLERGY_MAX)
    try:
        mid = int(conn.execute(
            "INSERT INTO mem_members (id, member_no, nickname, phone_ct, phone_bidx, birthday, preferences, "
            "allergies_ct, card_ref, tier_since_ms, channel, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (seq, number, nick, cipher.encrypt("mem_members", "phone_ct", digits, number),
             cipher.blind_index("phone", digits), bday, free_text(preferences, PREF_MAX),
             cipher.encrypt("mem_members", "allergies_ct", allergy_text, number) if allergy_text else None,
             card_ref, now, channel, now)).lastrowid)
    except IntegrityError as err:
        raise MembersError("Could not register; try again. 注册失败，请重试。", code="conflict", status=409) from err
    for purpose in PURPOSES:
        _consent_row(conn, mid, purpose, bool(consents.get(purpose)), channel, who, now)
    audit(conn, who or "system", "member-register", f"member:{number}", channel)
    return mid


def _consent_row(conn: Connection, member_id: int, purpose: str, granted: bool, channel: str, who: str,
                 now: int) -> None:
    conn.execute("INSERT INTO mem_consents (member_id, purpose, granted, text_version, channel, by, ts_ms) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?)",
                 (member_id, purpose, int(granted), CONSENTS[purpose][0], channel, who[:40], now))


def consents(conn: Connection, member_id: int) -> dict[str, dict[str, Any]]:
    """The current state of each purpose (the latest row), with its time and text version."""
    out: dict[str, dict[str, Any]] = {p: {"granted": False, "ts_ms": None, "version": "", "current": CONSENTS[p][0]}
                                      for p in PURPOSES}
    for purpose, granted, version, ts in conn.execute(
            "SELECT purpose, granted, text_version, ts_ms FROM mem_consents WHERE member_id = ? ORDER BY id",
            (member_id,)):
        if purpose in out:
            out[purpose].update(granted=bool(granted), ts_ms=ts, version=version)
    return out


def has_consent(conn: Connection, member_id: int, purpose: str) -> bool:
    """Whether the member's latest answer for ``purpose`` is yes."""
    row = conn.execute("SELECT granted FROM mem_consents WHERE member_id = ? AND purpose = ? ORDER BY id DESC "
                       "LIMIT 1", (member_id, purpose)).fetchone()
    return bool(row and row[0])


def set_consent(conn: Connection, member_id: int, purpose: str, granted: bool, channel: str, who: str, now: int,
                birthday: str = "") -> None:
    """Give or withdraw one purpose's consent. Withdrawing birthday deletes the birthday; withdrawing
    benefits suspends the membership (no earning or redeeming) until it is given again."""
    if purpose not in CONSENTS:
        raise MembersError("unknown purpose", code="bad_purpose")
    if has_consent(conn, member_id, purpose) == granted and not (granted and birthday):
        return
    _consent_row(conn, member_id, purpose, granted, channel, who, now)
    if purpose == "birthday":
        conn.execute("UPDATE mem_members SET birthday = ? WHERE id = ?",
                     (clean_birthday(birthday) if granted else "", member_id))
    if purpose == "benefits":
        conn.execute("UPDATE mem_members SET state = ? WHERE id = ?", ("active" if granted else "suspended",
                                                                        member_id))
    number = conn.execute("SELECT member_no FROM mem_members WHERE id = ?", (member_id,)).fetchone()[0]
    audit(conn, who or "system", "consent-" + ("give" if granted else "withdraw"), f"member:{number}",
          purpose)


def link_card(conn: Connection, member_id: int, card_ref: str, who: str) -> None:
    """Give a member a membership card (its ref only); a card already linked elsewhere is refused."""
    other = by_card(conn, card_ref)
    if other is not None and other != member_id:
        raise MembersError("This card already belongs to another member. 该卡已属于其他会员。", code="card_taken",
                           status=409)
    conn.execute("UPDATE mem_members SET card_ref = ? WHERE id = ?", (card_ref, member_id))
    number = conn.execute("SELECT member_no FROM mem_members WHERE id = ?", (member_id,)).fetchone()[0]
    audit(conn, who, "member-card", f"member:{number}")


def request(conn: Connection, member_id: int, kind: str, now: int, who: str = "") -> int:
    """Record an export or erasure request (staff complete it with ``storegw privacy export|erase``);
    an open request of the same kind is reused."""
    if kind not in ("export", "erase"):
        raise MembersError("unknown request", code="bad_request")
    row = conn.execute("SELECT id FROM mem_requests WHERE member_id = ? AND kind = ? AND state = 'open'",
                       (member_id, kind)).fetchone()
    if row:
        return int(row[0])
    rid = int(conn.execute("INSERT INTO mem_requests (member_id, kind, created_ms) VALUES (?, ?, ?)",
                           (member_id, kind, now)).lastrowid)
    number = conn.execute("SELECT member_no FROM mem_members WHERE id = ?", (member_id,)).fetchone()[0]
    audit(conn, who or "system", f"request-{kind}", f"member:{number}")
    return rid


def requests(conn: Connection, *, member_id: int | None = None, open_only: bool = False) -> list[dict[str, Any]]:
    """Export and erasure requests, newest first."""
    where, args = [], []
    if member_id is not None:
        where.append("r.member_id = ?")
        args.append(member_id)
    if open_only:
        where.append("r.state = 'open'")
    cond = (" WHERE " + " AND ".join(where)) if where else ""
    sql = ("SELECT r.id, m.member_no, r.kind, r.state, r.created_ms, r.done_ms, r.done_by, r.note "  # noqa: S608
           f"FROM mem_requests r JOIN mem_members m ON m.id = r.member_id{cond} ORDER BY r.id DESC LIMIT 200")
    return [{"id": i, "member": n, "kind": k, "state": s, "created_ms": c, "done_ms": d, "done_by": b, "note": note}
            for i, n, k, s, c, d, b, note in conn.execute(sql, tuple(args))]


def finish_request(conn: Connection, request_id: int, state: str, note: Any, who: str, now: int) -> None:
    """Mark a request done (after `storegw privacy export|erase` ran) or refused (with the reason); audited."""
    if state not in ("done", "refused"):
        raise MembersError("state must be done or refused")
    text = free_text(note, 200)
    if state == "refused" and not text:
        raise MembersError("Give the reason (e.g. retained by legal obligation until ...). 请填写原因。",
                           code="reason_required")
    cur = conn.execute("UPDATE mem_requests SET state = ?, done_ms = ?, done_by = ?, note = ? WHERE id = ? "
                       "AND state = 'open'", (state, now, who, text, request_id))
    if cur.rowcount != 1:
        raise MembersError("No such open request. 没有该待办请求。", code="no_request", status=404)
    audit(conn, who, f"request-{state}", f"request:{request_id}", text)
