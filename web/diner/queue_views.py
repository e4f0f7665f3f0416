"""The queue page (``/q/{store token}``): take a number (取号), see position and wait, pre-order (预点餐).

Like the table page: server-rendered forms that work without JavaScript, enhanced by diner.js
(its ``data-base`` points it at ``/q/{token}``). The phone is identified by ``d`` (a random page id,
at least 12 characters here because it is the only key to its number); nothing personal is asked.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from flask import Response, redirect, render_template, request, url_for

from gateway.core.errors import OrderingError
from gateway.ordering import queue
from gateway.ordering import tables as tbl
from gateway.ordering.menu import ALLERGENS
from gateway.ordering.service import TableCtx
from web.diner.i18n import t
from web.diner.views import bp, client_key, error_page, lang_of, ordering, sse, wants_json
from web.kit import json_error, url_int


def _d() -> str:
    d = request.values.get("d", "")
    return d if d.isalnum() and 12 <= len(d) <= 16 else ""


def _entry(svc: Any, d: str) -> queue.Entry | None:
    return svc.queue_entry(d)


def _ctx(entry: queue.Entry, token: str) -> TableCtx:
    return TableCtx(tbl.Table(entry.pseudo_table, entry.label, 0), token)


def _channels(entry: queue.Entry | None) -> tuple[str, ...]:
    return (f"table:{entry.pseudo_table}", "menu", queue.CHANNEL) if entry else (queue.CHANNEL, "menu")


def _live_context(svc: Any, token: str, d: str, lang: str, entry: queue.Entry) -> dict[str, Any]:
    q = svc.queue_entry_view(entry)
    view = dict(svc.table_view(entry.pseudo_table), can_order=entry.active)
    table_url = ""
    if q["table"]:
        table_url = url_for("diner.table", token=svc.token_for(q["table"]), d=d[:16], lang=lang)
    return {"q": q, "view": view, "table_url": table_url, "version": svc.notifier.version(*_channels(entry)),
            "form_token": svc.form_token(token), "token": token, "d": d, "lang": lang, "svc": svc}


def _render(svc: Any, token: str, d: str, lang: str, *, error: str = "", ok: str = "", status: int = 200) -> Response:
    request._storegw_lang = lang  # type: ignore[attr-defined]
    entry = _entry(svc, d)
    kw: dict[str, Any] = {"token": token, "d": d, "lang": lang, "svc": svc, "form_token": svc.form_token(token),
                          "version": svc.notifier.version(*_channels(entry)),
                          "view": {"cart": [], "sold_out": [], "can_order": False}}
    if entry is not None:
        kw.update(_live_context(svc, token, d, lang, entry))
    used = sorted({a for it in svc.menu.items.values() for a in it.allergens})
    hide = [a for a in request.args.getlist("hide") if a in ALLERGENS]
    html = render_template(
        "diner/queue.html", entry=entry, menu=svc.menu, hide=hide,
        used_allergens=used, sold_out=set(svc.sold_out), stock=svc.stock, error=error, ok=ok,
        ep="diner.queue_", cart_key="preorder_cart", party_max=queue.PARTY_MAX, nick_max=queue.NICK_MAX,
        other_lang="en" if lang == "zh" else "zh", **kw)
    return Response(html, status=status, mimetype="text/html")


def _check_token(svc: Any, token: str) -> None:
    svc.queue_check_token(token)


@bp.get("/q/<token>")
def queue_table(token: str) -> Any:
    """The queue page: the take-a-number form, else the number's status, pre-order cart and the menu."""
    svc = ordering()
    lang = lang_of()
    try:
        _check_token(svc, token)
    except OrderingError as err:
        return error_page(err, lang)
    d = _d()
    if not d:
        return redirect(url_for("diner.queue_table", token=token, d=secrets.token_hex(8), lang=lang), code=303)
    ok = ""
    if request.args.get("taken"):
        entry = _entry(svc, d)
        ok = t("q_taken", lang, n=entry.label) if entry else ""
    elif request.args.get("added"):
        ok = t("preorder_saved", lang)
    return _render(svc, token, d, lang, ok=ok)


def _act(token: str, fn: Any, *, need_entry: bool = True) -> Any:
    """Run a queue POST: verify the code and form value, find the phone's number, call ``fn``."""
    svc = ordering()
    lang = lang_of()
    d = _d()

    def fail(err: OrderingError, page: bool) -> Any:
        if wants_json():
            return json_error(err)
        if not page:
            return error_page(err, lang)
        return _render(svc, token, d, lang, error=str(err), status=err.status)
    try:
        _check_token(svc, token)
    except OrderingError as err:
        return fail(err, False)
    try:
        svc.check_form(token, request.form.get("csrf", ""))
        if not d:
            raise OrderingError("Please reload the page. 请刷新页面。", code="no_diner")
        entry = _entry(svc, d)
        if need_entry and (entry is None or not entry.active):
            raise OrderingError("Your number is no longer in the queue. 您的号码已不在队列中。", code="not_queued",
                                status=409)
        result, extra = fn(svc, entry, d)
    except OrderingError as err:
        return fail(err, err.code not in ("csrf", "rate_limited", "no_diner"))
    if wants_json():
        return {"ok": True, **(result or {}), "version": svc.notifier.version(*_channels(_entry(svc, d)))}
    return redirect(url_for("diner.queue_table", token=token, d=d, lang=lang, **extra), code=303)


@bp.post("/q/<token>/take")
def queue_take(token: str) -> Any:
    """Take a number: party size and an optional nickname; the same phone gets the same number back."""
    def fn(svc: Any, entry: Any, d: str) -> Any:
        if entry is not None and entry.active:  # idempotent without spending a rate-limit token
            return {"number": entry.label, "duplicate": True}, {"taken": 1}
        # limits keyed on the address (plus a device cookie behind NAT), not the page id ``d`` it chooses
        got = svc.queue_take(d, request.form.get("party"), request.form.get("nickname", ""), client_key())
        return {"number": got.label, "duplicate": False}, {"taken": 1}
    return _act(token, fn, need_entry=False)


@bp.post("/q/<token>/leave")
def queue_leave(token: str) -> Any:
    """Leave the queue (取消排队): only this phone's own number; its pre-order is dropped."""
    def fn(svc: Any, entry: Any, d: str) -> Any:
        got = svc.queue_leave(entry.id)
        return {"number": got.label, "status": got.status}, {"left": 1}
    return _act(token, fn)


def _selected(form: Any) -> dict[str, list[str]]:
    return {k[4:]: [v for v in form.getlist(k) if v][:10] for k in form if k.startswith("opt_")}


@bp.post("/q/<token>/add")
def queue_add(token: str) -> Any:
    """Add a dish to this number's pre-order cart (prices decided on the server)."""
    def fn(svc: Any, entry: Any, d: str) -> Any:
        f = request.form
        line = svc.add_to_cart(_ctx(entry, token), f.get("item", ""), _selected(f), f.get("qty", "1"),
                               f.get("note", ""), d, client_key())
        return {"line": line}, {"added": 1, "_anchor": "cart"}
    return _act(token, fn)


@bp.post("/q/<token>/cart/<int:line_id>")
def queue_cart_line(token: str, line_id: int) -> Any:
    """Change or remove a pre-order line (only lines of this phone's number)."""
    def fn(svc: Any, entry: Any, d: str) -> Any:
        qty = 0 if request.form.get("remove") else url_int(request.form, "qty", -1)
        svc.update_cart(_ctx(entry, token), line_id, qty)
        return {}, {"_anchor": "cart"}
    return _act(token, fn)


def _etag(svc: Any, entry: queue.Entry | None, extra: str, make: Any, mimetype: str) -> Response:
    version = svc.notifier.version(*_channels(entry))
    etag = f'"q{version}-{extra}"'
    resp = Response(status=304) if request.headers.get("If-None-Match") == etag else Response(make(), mimetype=mimetype)
    resp.headers["ETag"] = etag
    resp.headers["Cache-Control"] = "no-cache"
    resp.headers["X-View-Version"] = str(version)
    return resp


def _get_entry(token: str) -> tuple[Any, queue.Entry | None, str]:
    svc = ordering()
    _check_token(svc, token)
    d = _d()
    return svc, _entry(svc, d), d


@bp.get("/q/<token>/live")
def queue_live(token: str) -> Any:
    """The live part of the queue page (status, pre-order cart) as an HTML fragment; 304 when unchanged."""
    lang = lang_of()
    try:
        svc, entry, d = _get_entry(token)
    except OrderingError as err:
        return json_error(err)
    if entry is None:
        return {"ok": False, "error": "no queue number", "code": "not_queued"}, 404
    request._storegw_lang = lang  # type: ignore[attr-defined]

    def make() -> str:
        return render_template("diner/_queue_live.html", **_live_context(svc, token, d, lang, entry))
    return _etag(svc, entry, f"{lang}-{d}-{entry.status}", make, "text/html")


@bp.get("/q/<token>/state.json")
def queue_state(token: str) -> Any:
    """This phone's number (status, position, estimated wait) and pre-order cart as JSON for polling."""
    try:
        svc, entry, d = _get_entry(token)
    except OrderingError as err:
        return json_error(err)
    if entry is None:
        return {"ok": True, "queue": None}

    def make() -> str:
        view = svc.table_view(entry.pseudo_table) if entry.active else {"cart": [], "cart_total": 0}
        return json.dumps({"ok": True, "queue": svc.queue_entry_view(entry), "cart": view["cart"],
                           "cart_total": view["cart_total"]}, ensure_ascii=False)
    return _etag(svc, entry, f"j-{d}-{entry.status}", make, "application/json")


@bp.get("/q/<token>/events")
def queue_events(token: str) -> Any:
    """Server-sent events: the queue page's version whenever the number, the queue or the cart changes."""
    try:
        _, entry, _ = _get_entry(token)
    except OrderingError as err:
        return json_error(err)
    return sse(_channels(entry), url_int(request.args, "v", 0), "diner")
