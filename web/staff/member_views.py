"""Staff member pages (on the staff blueprint): find or register a member at the counter (phone, member QR,
member number, or the card just tapped on a reader), the member page, the member panel of the bill
(tier, balance, usable benefits, allergies; points and coupons against the bill), complaints, refunds
and receipts, and the export / erasure requests staff complete.

Every action is audited by the members service; the JSON answers (``X-Requested-With: js``) carry the
same refusals as the pages show.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from flask import Response, abort, current_app, g, redirect, request, url_for

from gateway.core.errors import OrderingError
from gateway.core.text import parse_uint_or
from gateway.members.feedback import CATEGORIES
from web.kit import json_error, services_of, url_int
from web.staff.views import _act, _done, _render, bp, flash, need, ordering


def members() -> Any:
    """The members service (404 when this build or store has none)."""
    svc = services_of(current_app).services.get("members")
    if svc is None or not svc.mcfg.enabled:
        abort(404)
    return svc


def _date(ms: int | None, fmt: str = "%Y-%m-%d") -> str:
    return dt.datetime.fromtimestamp(ms / 1000, members().tz).strftime(fmt) if ms else ""


def _js() -> bool:
    return request.headers.get("X-Requested-With") == "js"


def new_idem() -> str:
    """A request id for a form (a retry of the same form is the same request)."""
    return secrets.token_urlsafe(12)


@bp.get("/members")
@need("members")
def members_home() -> Any:
    """Find or register a member; today's complaints; open data requests."""
    mem = members()
    return _render("staff/members.html", texts=mem.consent_texts(), requests=mem.requests(),
                   today=mem.complaints_today(), categories=CATEGORIES, card=mem.last_card() is not None,
                   date=_date)


@bp.post("/members/find")
@need("members")
def members_find() -> Any:
    """Look a member up by phone, member QR or number (``card=1``: the card just tapped)."""
    mem = members()
    try:
        mid = mem.identify_card() if request.form.get("card") == "1" else mem.identify(request.form.get("q", ""))
    except OrderingError as err:
        return _done(url_for("staff.members_home"), err)
    if mid is None:
        return _done(url_for("staff.members_home"), OrderingError("No member found. 未找到会员。", code="not_found",
                                                                  status=404))
    if _js():
        return {"ok": True, "member": mid}
    return redirect(url_for("staff.member_detail", member_id=mid), code=303)


@bp.post("/members/register")
@need("members")
def members_register() -> Any:
    """Register at the counter; the consents are the member's own answers, asked one by one."""
    mem = members()
    f = request.form
    try:
        out = mem.register(nickname=f.get("nickname", ""), phone=f.get("phone", ""), birthday=f.get("birthday", ""),
                           preferences=f.get("preferences", ""), allergies=f.get("allergies", ""),
                           consents={p: f.get(f"consent_{p}") == "1" for p in mem.consent_texts()},
                           channel="counter", who=g.staff.name, use_card=f.get("card") == "1")
        table = f.get("table", "")
        if table:
            mem.attach(table, out["id"], g.staff.name)
    except OrderingError as err:
        return _done(url_for("staff.members_home"), err)
    if _js():
        return {"ok": True, **out}
    flash(f"Registered 已注册 {out['no']}", "ok")
    return redirect(url_for("staff.member_detail", member_id=out["id"]), code=303)


@bp.get("/members/<int:member_id>")
@need("members")
def member_detail(member_id: int) -> Any:
    """A member: tier, points and lots, benefits, allergies, consents, requests."""
    mem = members()
    try:
        m = mem.member(member_id)
    except OrderingError:
        abort(404)
    return _render("staff/member.html", m=m, date=_date, idem=new_idem(), card=mem.last_card() is not None,
                   tables=[t for t in ordering().table_map() if t["open"]])


@bp.post("/members/<int:member_id>/card")
@need("members")
def member_card(member_id: int) -> Any:
    """Give the member the card just tapped on a reader (its ref only)."""
    return _act(url_for("staff.member_detail", member_id=member_id), members().link_card, member_id, g.staff.name)


@bp.post("/members/<int:member_id>/points")
@need("members")
def member_points(member_id: int) -> Any:
    """Earn (manual credit, managers) or redeem (gift exchange) points once per request id ``idem``.

    JSON for scripts and devices: ``{"ok", "entry_id", "points", "balance", "duplicate"}``.
    """
    op = request.form.get("op", "")
    if op == "earn" and not g.staff.can("members-admin"):
        abort(403)
    points = parse_uint_or(request.form.get("points", ""), 0, max_digits=7)
    target = url_for("staff.member_detail", member_id=member_id)
    try:
        out = members().points(member_id, op, points, request.form.get("idem", ""), g.staff.name,
                               request.form.get("ref", ""))
    except OrderingError as err:
        return _done(target, err)
    if _js():
        return {"ok": True, **out}
    return redirect(target, code=303)


@bp.post("/members/<int:member_id>/coupon")
@need("members-admin")
def member_coupon(member_id: int) -> Any:
    """Issue a campaign coupon to the member (managers)."""
    f = request.form
    cents = (parse_uint_or(f.get("yuan", ""), 0, max_digits=5) or 0) * 100
    days = parse_uint_or(f.get("days", ""), 30, max_digits=3) or 30
    return _act(url_for("staff.member_detail", member_id=member_id), members().issue_coupon, member_id,
                f.get("title_zh", ""), f.get("title_en", ""), cents, days, f.get("idem", ""), g.staff.name)


@bp.post("/members/<int:member_id>/request")
@need("members")
def member_request(member_id: int) -> Any:
    """Record an export or erasure request made at the counter."""
    return _act(url_for("staff.member_detail", member_id=member_id), members().request, member_id,
                request.form.get("kind", ""), g.staff.name)


@bp.get("/members/requests")
@need("members-admin")
def member_requests() -> Any:
    """Export and erasure requests: run `storegw privacy export|erase`, then mark them done (or refused)."""
    return _render("staff/member_requests.html", requests=members().requests(open_only=False), date=_date)


@bp.post("/members/requests/<int:request_id>")
@need("members-admin")
def member_request_finish(request_id: int) -> Any:
    """Mark a request done or refused (with the reason)."""
    return _act(url_for("staff.member_requests"), members().finish_request, request_id,
                request.form.get("state", ""), request.form.get("note", ""), g.staff.name)


# ---------------------------------------------------------------------------- the bill's member panel

def _table_back(table_id: str) -> str:
    return url_for("staff.table_detail", table_id=table_id)


@bp.post("/tables/<table_id>/member")
@need("members")
def table_member(table_id: str) -> Any:
    """Identify the member on this bill: phone, member QR, number, or the card just tapped."""
    mem = members()
    back = _table_back(table_id)
    try:
        mid = mem.identify_card() if request.form.get("card") == "1" else mem.identify(request.form.get("q", ""))
        if mid is None:
            raise OrderingError("No member found. 未找到会员。", code="not_found", status=404)
        mem.attach(table_id, mid, g.staff.name)
    except OrderingError as err:
        return _done(back, err)
    return _done(back)


@bp.post("/tables/<table_id>/member/detach")
@need("members")
def table_member_detach(table_id: str) -> Any:
    """Take the member off the bill."""
    return _act(_table_back(table_id), members().detach, table_id, g.staff.name)


@bp.post("/tables/<table_id>/member/points")
@need("bill")
def table_member_points(table_id: str) -> Any:
    """Pay part of the bill with points (once per request id)."""
    points = parse_uint_or(request.form.get("points", ""), 0, max_digits=7) or 0
    back = _table_back(table_id)
    try:
        out = members().redeem_points(table_id, points, request.form.get("idem", ""), g.staff.name)
    except OrderingError as err:
        return _done(back, err)
    if _js():
        return {"ok": True, **out}
    return redirect(back, code=303)


@bp.post("/tables/<table_id>/member/coupon")
@need("bill")
def table_member_coupon(table_id: str) -> Any:
    """Apply a coupon of the bill's member; two tills, one coupon: exactly one succeeds."""
    back = _table_back(table_id)
    try:
        b = members().apply_coupon(table_id, request.form.get("code", ""), g.staff.name)
    except OrderingError as err:
        if _js():
            return json_error(err)
        return _done(back, err)
    if _js():
        return {"ok": True, "benefit": b["id"]}
    return redirect(back, code=303)


@bp.post("/tables/<table_id>/member/coupon/<int:benefit_id>/remove")
@need("bill")
def table_member_coupon_remove(table_id: str, benefit_id: int) -> Any:
    """Take a coupon off the bill."""
    return _act(_table_back(table_id), members().remove_coupon, table_id, benefit_id, g.staff.name)


@bp.post("/tables/<table_id>/complaint")
@need("orders")
def table_complaint(table_id: str) -> Any:
    """Log a complaint against a dish of this bill (counted per day and category)."""
    return _act(_table_back(table_id), members().complain, table_id, url_int(request.form, "line"),
                request.form.get("category", ""), request.form.get("note", ""), g.staff.name)


@bp.post("/tables/<table_id>/refund")
@need("void")
def table_refund(table_id: str) -> Any:
    """Refund the paid bill (every line voided; points earned on it reversed, redeemed ones given back)."""
    return _act(_table_back(table_id), ordering().refund, table_id, request.form.get("reason", ""), g.staff.name)


@bp.post("/tables/<table_id>/receipt")
@need("bill")
def table_receipt(table_id: str) -> Any:
    """Print the bill as a receipt (with the member's discount lines)."""
    return _act(_table_back(table_id), ordering().print_receipt, table_id, g.staff.name)


@bp.get("/tables/<table_id>/receipt")
@need("bill")
def table_receipt_view(table_id: str) -> Any:
    """The receipt as a page (what the printer prints)."""
    svc = ordering()
    if table_id not in svc.tables:
        abort(404)
    return Response(_render("staff/receipt.html", table=svc.tables[table_id], bill=svc.bill(table_id),
                            store_name=svc.cfg.store.name), mimetype="text/html")
