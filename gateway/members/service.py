"""The members facade: what the staff and diner pages and the CLI call.

Every write runs in the gateway's single writer; a write that touches a bill runs in one
transaction with ordering's bill read on the same connection (``OrderingService.bill_on``), and
ordering's payment runs this domain's ``BillHook`` inside its own transaction. Members sits above
ordering on the floors and registers its hook at build (docs/members.md explains the direction).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import threading
from dataclasses import asdict
from typing import Any
from zoneinfo import ZoneInfo

from gateway.core.models import now_ms
from gateway.core.text import free_text, same_secret
from gateway.members import benefits, bills, feedback, ledger, registry, summary, tiers
from gateway.members.ledger import MembersError
from gateway.privacy.fields import FieldCipher
from gateway.spine.context import Periodic, ServiceContext
from gateway.staff.accounts import audit
from gateway.store import ensure_secret
from gateway.store.db import Connection

_LOGGER = logging.getLogger(__name__)
CARD_FRESH_MS = 60_000  # a card tap is used for the next action within this long


_REQUEST_ID = re.compile(r"[A-Za-z0-9_.:-]{8,64}")


def request_id(idem: Any) -> str:
    """A caller's request id (idempotency key): 8-64 of A-Z a-z 0-9 _ . : - (nobody types it)."""
    if not isinstance(idem, str) or not _REQUEST_ID.fullmatch(idem):
        raise MembersError("A request id (8-64 letters, digits, _ . : -) is required.", code="idem_required")
    return idem


def build(ctx: ServiceContext) -> MembersService:
    """Build the members service (gateway.domains.SERVICES), after ordering."""
    return MembersService(ctx)


class MembersService:
    """Membership of one store: registration, consents, tiers, points, benefits, feedback."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.gw = ctx
        self.cfg = ctx.cfg
        self.mcfg = ctx.cfg.members
        self.store_id = ctx.cfg.store.id
        self.tz = ZoneInfo(ctx.cfg.store.timezone)
        self.alerts = ctx.alerts
        self.writer = ctx.store.writer
        self.ordering = ctx.services["ordering"]  # built before members (gateway.domains)
        self.secret = b""
        self.clock = now_ms  # tests move it forward
        self.hook = bills.BillHook(self, lambda: self.clock())
        self._card: tuple[str, int, str] | None = None  # (card_ref, ts, device) of the last tap
        self._card_lock = threading.Lock()
        self.counters = {"registered": 0, "duplicates": 0, "refused": 0}

    @property
    def cipher(self) -> FieldCipher:
        """The field cipher (phone, allergies)."""
        if self.gw.privacy is None:
            raise MembersError("Field encryption is not available; members cannot be stored.", code="no_keys",
                               status=503)
        return self.gw.privacy.cipher

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Load the members secret (member QR tokens), hook into bills and the card readers."""
        self.secret = self.writer.call(lambda c: ensure_secret(c, "secret:members"))
        if self.mcfg.enabled:
            self.ordering.add_bill_hook(self.hook)
        self.gw.hub.subscribe("card", self._on_card)

    def stop(self) -> None:
        """Nothing runs in the background."""

    def periodic(self) -> tuple[Periodic, ...]:
        """Expiry of lots and coupons, tier reviews, birthday perks, alerts, the HQ summary."""
        return (Periodic("members-tick", 60.0, self.tick),)

    def health(self) -> dict[str, Any]:
        """Counts for /api/v1/health (no personal data)."""
        row = self.gw.store.read().execute("SELECT count(*) FROM mem_members").fetchone()
        return {"members": row[0], **self.counters}

    def tick(self) -> dict[str, int]:
        """One housekeeping pass (the scheduler runs it every minute)."""
        now = self.clock()

        def write(c: Connection) -> dict[str, int]:
            out = {"lots_expired": ledger.expire_due(c, now), "coupons_expired": benefits.expire_due(c, now)}
            changed = 0
            for mid in tiers.due_for_review(c, now):
                old, new = tiers.evaluate(self, c, mid, now, "hold ended")
                changed += old != new
            out["tiers_changed"] = changed
            _, _, month, _ = benefits.month_bounds(self.tz, now)
            for mid, bday in c.execute("SELECT id, birthday FROM mem_members WHERE state = 'active' "
                                       "AND substr(birthday, 1, 2) = ?", (month,)).fetchall():
                benefits.ensure_birthday(self, c, mid, bday, registry.has_consent(c, mid, "birthday"), now)
            feedback.clear_old_alerts(self, c, now)
            out["summaries"] = summary.tick(self, c, now)
            return out
        return self.writer.call(write)

    def _on_card(self, event: Any) -> None:
        """A membership card was read (hub dispatch thread): remember its ref for the next counter action."""
        ref = str(event.data.get("card_ref", ""))
        if ref:
            with self._card_lock:
                self._card = (ref, self.clock(), str(event.device))

    def last_card(self) -> str | None:
        """The ref of a card tapped within the last minute, or None."""
        with self._card_lock:
            card = self._card
        if card is None or self.clock() - card[1] > CARD_FRESH_MS:
            return None
        return card[0]

    def take_card(self) -> str:
        """The fresh card tap, used up (a refusal when there is none)."""
        with self._card_lock:
            card, self._card = self._card, None
        if card is None or self.clock() - card[1] > CARD_FRESH_MS:
            raise MembersError("Tap the member card on the reader first. 请先在读卡器上刷会员卡。", code="no_card",
                               status=409)
        return card[0]

    def _read(self) -> Connection:
        return self.gw.store.read()

    def _write(self, fn: Any) -> Any:
        return self.writer.call(fn)

    # ------------------------------------------------------------------ registration and lookup
    def register(self, *, nickname: Any, phone: Any, birthday: Any = "", preferences: Any = "", allergies: Any = "",
                 consents: dict[str, bool], channel: str, who: str = "", use_card: bool = False) -> dict[str, Any]:
        """Register a member (counter or diner); returns ``{"id", "no", "token"}``."""
        card = self.take_card() if use_card else None
        now = self.clock()
        mid = self._write(lambda c: registry.register(
            self, c, nickname=nickname, phone=phone, birthday=birthday, preferences=preferences, allergies=allergies,
            consents=consents, channel=channel, who=who, now=now, card_ref=card))
        self.counters["registered"] += 1
        return self.token_of(mid)

    def token_of(self, member_id: int) -> dict[str, Any]:
        """A member's number and QR / own-page token."""
        row = self._read().execute("SELECT member_no, qr_version FROM mem_members WHERE id = ?",
                                   (member_id,)).fetchone()
        if row is None:
            raise MembersError("No such member. 没有该会员。", code="no_member", status=404)
        return {"id": member_id, "no": row[0], "token": registry.qr_token(self.secret, row[0], row[1])}

    def identify(self, query: str) -> int | None:
        """A member from a mobile number, a member QR (or its URL) or a member number."""
        return registry.identify(self, self._read(), query)

    def identify_card(self) -> int | None:
        """The member whose card was just tapped (None: an unknown card; a refusal: no tap)."""
        return registry.by_card(self._read(), self.take_card())

    def by_token(self, token: str) -> int | None:
        """The member of an own-page token (None when forged or revoked)."""
        return registry.by_token(self, self._read(), token)

    def member(self, member_id: int) -> dict[str, Any]:
        """Everything the staff member page and the member's own page show."""
        conn = self._read()
        now = self.clock()
        m = registry.get(self, conn, member_id)
        if m is None:
            raise MembersError("No such member. 没有该会员。", code="no_member", status=404)
        m["tier_zh"], m["tier_en"] = tiers.name(self, m["tier"], "zh"), tiers.name(self, m["tier"], "en")
        m["discount_pct"] = self.mcfg.tier_discount_pct[m["tier"]]
        m["progress"] = tiers.progress(self, conn, member_id, m["tier"], now)
        m["consents"] = registry.consents(conn, member_id)
        m["lots"] = ledger.lots(conn, member_id, now)
        m["spendable"] = ledger.spendable(conn, member_id, now)
        m["history"] = ledger.history(conn, member_id)
        m["benefits"] = benefits.of_member(conn, member_id, now)
        m["usable"] = [b for b in m["benefits"] if b["state"] == "issued" and b["valid_from_ms"] <= now
                       < b["valid_to_ms"]]
        m["requests"] = registry.requests(conn, member_id=member_id)
        m["token"] = registry.qr_token(self.secret, m["no"], m["qr_version"])
        return m

    def link_card(self, member_id: int, who: str) -> None:
        """Give a member the card just tapped; audited."""
        card = self.take_card()
        self._write(lambda c: registry.link_card(c, member_id, card, who))

    def set_consent(self, member_id: int, purpose: str, granted: bool, channel: str, who: str = "",
                    birthday: str = "") -> None:
        """Give or withdraw one purpose's consent (with the current text version); audited."""
        now = self.clock()
        self._write(lambda c: registry.set_consent(c, member_id, purpose, granted, channel, who, now, birthday))

    def consent_texts(self) -> dict[str, tuple[str, str, str]]:
        """purpose -> (version, zh, en) of the consent texts shown."""
        return dict(registry.CONSENTS)

    def request(self, member_id: int, kind: str, who: str = "") -> int:
        """Record an export or erasure request (staff complete it); audited."""
        now = self.clock()
        return self._write(lambda c: registry.request(c, member_id, kind, now, who))

    def requests(self, open_only: bool = True) -> list[dict[str, Any]]:
        """Export and erasure requests for the staff page."""
        return registry.requests(self._read(), open_only=open_only)

    def finish_request(self, request_id: int, state: str, note: str, who: str) -> None:
        """Mark a request done or refused (with the reason); audited."""
        now = self.clock()
        self._write(lambda c: registry.finish_request(c, request_id, state, note, who, now))

    # ------------------------------------------------------------------ points and coupons without a bill
    def points(self, member_id: int, op: str, points: int, idem: str, who: str, ref: str = "") -> dict[str, Any]:
        """Earn (a manual credit) or redeem (a gift exchange) points once per request id ``idem``;
        a replay returns the first answer with ``duplicate: true``."""
        key = request_id(idem)
        if op not in ("earn", "redeem"):
            raise MembersError("op must be earn or redeem")
        now = self.clock()
        req = ledger.digest(op, member_id, points)
        note = free_text(ref, 60)

        def write(c: Connection) -> ledger.Posted:
            if c.execute("SELECT state FROM mem_members WHERE id = ?", (member_id,)).fetchone() is None:
                raise MembersError("No such member. 没有该会员。", code="no_member", status=404)
            if op == "earn":
                posted = ledger.credit(c, member_id, points, f"api:{key}", now, kind="adjust",
                                       expiry_ms=int(self.mcfg.points_expiry * 1000), req=req, ref=note, who=who)
            else:
                posted = ledger.debit(c, member_id, points, f"api:{key}", now, req=req, ref=note, who=who)
            if not posted.duplicate:
                audit(c, who, f"points-{op}", f"member:{member_id}", str(points))
            return posted
        posted = self._write(write)
        if posted.duplicate:
            self.counters["duplicates"] += 1
        return asdict(posted)

    def issue_coupon(self, member_id: int, title_zh: str, title_en: str, cents: int, days: int, idem: str,
                     who: str, min_spend: int = 0) -> int:
        """A campaign coupon for one member (a manager), once per request id; audited."""
        now = self.clock()
        key = request_id(idem)
        if not 1 <= days <= 366:
            raise MembersError("Valid for 1-366 days.")
        return self._write(lambda c: benefits.issue(
            self, c, member_id, kind="campaign", issue_key=f"campaign:{key}", title_zh=title_zh or "活动券",
            title_en=title_en or "Campaign coupon", value_kind="amount", value=cents, now=now, who=who,
            min_spend=min_spend, valid_to=now + days * 86_400_000))

    # ------------------------------------------------------------------ at the counter: the bill
    def _bill_write(self, table_id: str, fn: Any) -> Any:
        def write(c: Connection) -> Any:
            return fn(c, self.ordering.bill_on(c, table_id))
        out = self._write(write)
        self.ordering.after_write(table_id)
        return out

    def attach(self, table_id: str, member_id: int, who: str) -> None:
        """Put a member on the table's open bill; audited."""
        now = self.clock()

        def fn(c: Connection, bill: dict[str, Any]) -> None:
            bills.attach(self, c, bill, table_id, member_id, who, now)
            audit(c, who, "member-attach", f"table:{table_id}", f"member:{member_id}")
        self._bill_write(table_id, fn)

    def detach(self, table_id: str, who: str) -> None:
        """Take the member off the table's bill (nothing redeemed on it); audited."""
        def fn(c: Connection, bill: dict[str, Any]) -> None:
            bills.detach(c, bill, who)
            audit(c, who, "member-detach", f"table:{table_id}")
        self._bill_write(table_id, fn)

    def redeem_points(self, table_id: str, points: int, idem: str, who: str) -> dict[str, Any]:
        """Pay part of the bill with points, once per request id; audited."""
        key = request_id(idem)
        now = self.clock()

        def fn(c: Connection, bill: dict[str, Any]) -> ledger.Posted:
            posted = bills.redeem_points(self, c, bill, points, key, who, now)
            if not posted.duplicate:
                audit(c, who, "points-redeem", f"table:{table_id}", str(points))
            return posted
        return asdict(self._bill_write(table_id, fn))

    def apply_coupon(self, table_id: str, code: str, who: str) -> dict[str, Any]:
        """Apply a coupon of the bill's member to the bill (single use under concurrency); audited."""
        now = self.clock()

        def fn(c: Connection, bill: dict[str, Any]) -> dict[str, Any]:
            sid = bills._open_bill(bill)
            v = bills.visit(c, sid)
            if v is None:
                raise MembersError("Put a member on the bill first. 请先识别会员。", code="no_member", status=409)
            return benefits.apply(c, code, v[0], sid, bill["subtotal"], who, now)
        try:
            return self._bill_write(table_id, fn)
        except MembersError:
            self.counters["refused"] += 1
            raise

    def remove_coupon(self, table_id: str, benefit_id: int, who: str) -> None:
        """Take a coupon off the bill; audited."""
        now = self.clock()

        def fn(c: Connection, bill: dict[str, Any]) -> None:
            benefits.remove(c, benefit_id, bills._open_bill(bill), who, now)
        self._bill_write(table_id, fn)

    def bill_panel(self, table_id: str) -> dict[str, Any] | None:
        """The member on a table's bill for the staff bill page: tier, balance, usable benefits, allergies."""
        conn = self._read()
        b = self.ordering.bill_on(conn, table_id)
        v = bills.visit(conn, b["session"])
        if v is None:
            return None
        m = self.member(v[0])
        m["points_on_bill"] = bills.points_on_bill(conn, b["session"])
        m["bill_coupons"] = benefits.on_bill(conn, b["session"])
        m["paid"] = v[1] is not None
        m["redeem_cap"] = (b["subtotal"] + b["service"]) * self.mcfg.redeem_max_pct // 100
        m["redeem_step"] = self.mcfg.redeem_points_per_yuan
        return m

    # ------------------------------------------------------------------ feedback and complaints
    def rate(self, table_id: str, diner: str, rating: Any, comment: Any) -> int:
        """A diner rates the visit after the bill (one per phone and bill)."""
        now = self.clock()
        return self._bill_write(table_id, lambda c, b: feedback.rate(c, b, table_id, diner, rating, comment, now))

    def complain(self, table_id: str, line_id: int | None, category: str, note: Any, who: str) -> int:
        """Staff log a complaint against a dish of the table's bill; a surge raises an alert."""
        now = self.clock()
        return self._bill_write(table_id, lambda c, b: feedback.complain(self, c, b, table_id, line_id, category,
                                                                         note, who, now))

    def complaints_per_day(self, first_day: str, last_day: str) -> dict[str, dict[str, int]]:
        """Complaints per business day (YYYY-MM-DD, inclusive range) and category (store health's baseline)."""
        out: dict[str, dict[str, int]] = {}
        for day, category, n in self._read().execute(
                "SELECT day, category, count(*) FROM mem_complaints WHERE day >= ? AND day <= ? GROUP BY day, category",
                (first_day, last_day)):
            out.setdefault(day, {})[category] = int(n)
        return out

    def complaints_today(self) -> dict[str, Any]:
        """Today's complaints per category and the ratings so far."""
        return feedback.today(self, self._read(), self.clock())

    def rated(self, table_id: str, diner: str) -> int | None:
        """The rating this phone gave the table's current bill, if any."""
        conn = self._read()
        b = self.ordering.table_paid(table_id)
        if b["session"] is None:
            return None
        row = conn.execute("SELECT rating FROM mem_feedback WHERE session_id = ? AND diner = ?",
                           (b["session"], diner)).fetchone()
        return int(row[0]) if row else None

    # ------------------------------------------------------------------ member pages (diner side)
    def form_token(self, token: str) -> str:
        """The anti-forgery value of a member page's forms (stateless: a MAC of the page token)."""
        return hmac.new(self.secret, f"member-form:{token}".encode("utf-8", "surrogatepass"),
                        hashlib.sha256).hexdigest()[:32]

    def check_form(self, token: str, value: Any) -> None:
        """Refuse a member page form without its anti-forgery value."""
        if not same_secret(value, self.form_token(token)):
            raise MembersError("The form expired; please reload the page. 页面已过期，请刷新。", code="csrf")

    # ------------------------------------------------------------------ checks
    def check(self) -> list[dict[str, Any]]:
        """Members whose cached balance differs from their ledger (``storegw members check``)."""
        return ledger.check(self._read())
