"""Diner member pages (on the diner blueprint): join from the table page (optional), the member's own page
(tier, points with expiry, coupons, consents: withdraw or give; export / erasure requests), linking the
membership to the table's bill, and the visit rating after the bill (one per client and bill: its
address, or address and device cookie behind NAT; never per page id, which the client chooses).

Like the table page they work without JavaScript and without cookies: the member's own page is
``/m/<token>`` (the member number and a MAC, the same text as the member QR code the counter scans);
forms carry a MAC of that token. Ordering never requires membership.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Response, abort, current_app, redirect, render_template, request, url_for

from gateway.core.errors import OrderingError
from gateway.ordering.tables import qr_bytes
from web.diner.i18n import t
from web.diner.views import bp, client_key, diner_id, error_page, lang_of, ordering
from web.kit import services_of


def members() -> Any:
    """The members service (404 when this build or store has none)."""
    svc = services_of(current_app).services.get("members")
    if svc is None or not svc.mcfg.enabled:
        abort(404)
    return svc


def _date(ms: int | None) -> str:
    if not ms:
        return ""
    tz = members().tz
    return dt.datetime.fromtimestamp(ms / 1000, tz).strftime("%Y-%m-%d")


def _render(template: str, status: int = 200, **kw: Any) -> Response:
    lang = lang_of()
    request._storegw_lang = lang  # type: ignore[attr-defined]
    html = render_template(template, lang=lang, other_lang="en" if lang == "zh" else "zh", date=_date, **kw)
    return Response(html, status=status, mimetype="text/html")


@bp.get("/t/<token>/member")
def member_join(token: str) -> Any:
    """Join (optional) from the table page; with ``m`` (a member page token): link it to this bill."""
    svc, mem = ordering(), members()
    lang = lang_of()
    try:
        ctx = svc.resolve(token)
    except OrderingError as err:
        return error_page(err, lang)
    return _join_page(svc, mem, ctx, token)


def _join_page(svc: Any, mem: Any, ctx: Any, token: str, *, error: str = "", status: int = 200) -> Response:
    texts = mem.consent_texts()
    return _render("diner/member_join.html", status=status, token=token, ctx=ctx, d=diner_id(),
                   form_token=svc.form_token(token), texts=texts, error=error, form=request.form)


@bp.post("/t/<token>/member/join")
def member_join_post(token: str) -> Any:
    """Register from the diner page: every consent is a separate box the diner ticks (none ticked for them)."""
    svc, mem = ordering(), members()
    lang = lang_of()
    try:
        ctx = svc.resolve(token)
        svc.check_form(token, request.form.get("csrf", ""))
        svc.note_participant(ctx.table.id, diner_id())  # one of the party (may rate the visit once paid)
    except OrderingError as err:
        return error_page(err, lang)
    f = request.form
    try:
        out = mem.register(nickname=f.get("nickname", ""), phone=f.get("phone", ""), birthday=f.get("birthday", ""),
                           preferences=f.get("preferences", ""), allergies=f.get("allergies", ""),
                           consents={p: f.get(f"consent_{p}") == "1" for p in mem.consent_texts()}, channel="diner")
    except OrderingError as err:
        return _join_page(svc, mem, ctx, token, error=str(err), status=err.status)
    return redirect(url_for("diner.member_page", mtoken=out["token"], t=token, lang=lang, joined=1), code=303)


@bp.post("/t/<token>/member/attach")
def member_attach(token: str) -> Any:
    """Link the member of page ``m`` to the table's open bill (points and discount at payment)."""
    svc, mem = ordering(), members()
    lang = lang_of()
    mtoken = request.form.get("m", "")
    try:
        ctx = svc.resolve(token)
        mem.check_form(mtoken, request.form.get("csrf", ""))
        mid = mem.by_token(mtoken)
        if mid is None:
            raise OrderingError("This member link is not valid. 会员链接无效。", code="bad_member", status=404)
        mem.attach(ctx.table.id, mid, "diner")
    except OrderingError as err:
        return error_page(err, lang)
    return redirect(url_for("diner.member_page", mtoken=mtoken, t=token, lang=lang, attached=1), code=303)


def _member_or_404(mtoken: str) -> tuple[Any, int]:
    mem = members()
    mid = mem.by_token(mtoken)
    if mid is None:
        raise OrderingError("This member link is not valid or was replaced. 会员链接无效或已更换。", code="bad_member",
                            status=404)
    return mem, mid


@bp.get("/m/<mtoken>")
def member_page(mtoken: str) -> Any:
    """The member's own page: tier, points with expiry, coupons, consents, data requests, QR code."""
    lang = lang_of()
    try:
        mem, mid = _member_or_404(mtoken)
    except OrderingError as err:
        return error_page(err, lang)
    table_token = request.args.get("t", "")
    table = None
    if table_token:
        try:
            table = ordering().resolve(table_token)
        except OrderingError:
            table_token = ""
    m = mem.member(mid)
    ok = ""
    if request.args.get("joined"):
        ok = t("m_joined", lang, n=m["no"])
    elif request.args.get("attached"):
        ok = t("m_attached", lang)
    return _render("diner/member_page.html", m=m, mtoken=mtoken, form_token=mem.form_token(mtoken), ok=ok,
                   table=table, table_token=table_token, texts=mem.consent_texts(), mem=mem)


@bp.get("/m/<mtoken>/qr.svg")
def member_qr(mtoken: str) -> Any:
    """The member QR code (the member page URL) the counter scans."""
    try:
        _member_or_404(mtoken)
    except OrderingError:
        abort(404)
    svc = ordering()
    host = svc.cfg.web.public_host or svc.cfg.web.listen
    scheme = "https" if svc.ocfg.https else "http"
    return Response(qr_bytes(f"{scheme}://{host}/m/{mtoken}", "svg"), mimetype="image/svg+xml")


def _member_act(mtoken: str, fn: Any) -> Any:
    lang = lang_of()
    try:
        mem, mid = _member_or_404(mtoken)
        mem.check_form(mtoken, request.form.get("csrf", ""))
        fn(mem, mid)
    except OrderingError as err:
        return error_page(err, lang)
    extra = {"t": request.form["t"]} if request.form.get("t") else {}
    return redirect(url_for("diner.member_page", mtoken=mtoken, lang=lang, **extra), code=303)


@bp.post("/m/<mtoken>/consent")
def member_consent(mtoken: str) -> Any:
    """Give or withdraw one purpose's consent (withdrawing birthday deletes it)."""
    purpose = request.form.get("purpose", "")
    granted = request.form.get("granted") == "1"
    return _member_act(mtoken, lambda mem, mid: mem.set_consent(mid, purpose, granted, "diner",
                                                                birthday=request.form.get("birthday", "")))


@bp.post("/m/<mtoken>/request")
def member_request(mtoken: str) -> Any:
    """Ask for an export or erasure of one's data (staff complete it)."""
    kind = request.form.get("kind", "")
    return _member_act(mtoken, lambda mem, mid: mem.request(mid, kind))


@bp.post("/t/<token>/feedback")
def feedback(token: str) -> Any:
    """Rate the visit after the bill (stars and an optional comment that stays in the store)."""
    svc, mem = ordering(), members()
    lang = lang_of()
    d = diner_id()
    try:
        ctx = svc.resolve(token)
        svc.check_form(token, request.form.get("csrf", ""))
        if not d or svc.table_view_for(ctx.table.id, d).get("clearing"):
            raise OrderingError("Only the party at the table can rate this visit. 仅本桌用餐顾客可评价。",
                                code="not_party", status=403)
        # one rating per client (what it cannot choose), not per page id: fresh ids are free
        mem.rate(ctx.table.id, svc.origin_of(f"feedback:{client_key()}"), request.form.get("rating", ""),
                 request.form.get("comment", ""))
    except OrderingError as err:
        return error_page(err, lang)
    return redirect(url_for("diner.table", token=token, d=d, lang=lang, rated=1) + "#service", code=303)


@bp.app_template_global()
def member_rating(token: str, d: str) -> int | None:
    """Template helper: this phone's rating of the table's bill (None: none yet, or no members)."""
    svc = services_of(current_app).services.get("members")
    if svc is None or not svc.mcfg.enabled or not d:
        return None
    try:
        ctx = ordering().resolve(token)
    except OrderingError:
        return None
    return svc.rated(ctx.table.id, ordering().origin_of(f"feedback:{client_key()}"))


@bp.app_template_global()
def members_on() -> bool:
    """Template helper: whether this store offers membership."""
    svc = services_of(current_app).services.get("members")
    return bool(svc is not None and svc.mcfg.enabled)
