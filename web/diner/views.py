"""Diner pages: the table page (menu, shared cart, rounds), its live fragment, SSE and polling.

Everything works without JavaScript (forms + redirects); ``/static/diner.js`` only enhances it.
State lives on the server and is keyed by the table token in the URL, plus ``d`` (this phone's
random diner id, for the nickname) because captive mini-browsers drop cookies.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)

from gateway.core.errors import OrderingError
from gateway.ordering.menu import ALLERGENS, allergen_name
from web.diner.i18n import money, pick, t
from web.kit import services_of

bp = Blueprint("diner", __name__)

CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
       "font-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'")
SSE_SECONDS = 25.0


def ordering() -> Any:
    """Return the ordering service (404 when this build has none)."""
    svc = services_of(current_app).services.get("ordering")
    if svc is None:
        abort(404)
    return svc


def lang_of() -> str:
    """Pick the page language: ?lang=, else Accept-Language, else Chinese."""
    lang = request.values.get("lang", "")
    if lang in ("zh", "en"):
        return lang
    best = request.accept_languages.best_match(["zh-CN", "zh", "en"], default="zh")
    return "en" if best == "en" else "zh"


def diner_id() -> str:
    """Return this phone's diner id from the URL (``d``), or '' when it has none yet."""
    d = request.values.get("d", "")
    return d if d.isalnum() and 6 <= len(d) <= 16 else ""


def wants_json() -> bool:
    """Whether the request came from the enhancing script (JSON instead of redirects)."""
    return "application/json" in request.headers.get("Accept", "") and request.headers.get("X-Requested-With") == "js"


def client_key() -> str:
    """Return the rate-limit key of the requesting client."""
    return request.remote_addr or "?"


@bp.app_template_global()
def tr(key: str, **kw: Any) -> str:
    """Template helper: translate for the current page language."""
    return t(key, _page_lang(), **kw)


def _page_lang() -> str:
    return getattr(request, "_storegw_lang", None) or lang_of()


@bp.app_template_filter("money")
def money_filter(cents: int) -> str:
    """Format cents as money."""
    return money(int(cents))


@bp.app_template_global()
def bi(obj: Any, key: str = "name") -> str:
    """Template helper: the zh or en variant of ``obj.<key>_zh`` / ``obj['<key>_zh']``."""
    lang = _page_lang()
    if isinstance(obj, dict):
        return pick(obj.get(f"{key}_zh", ""), obj.get(f"{key}_en", ""), lang)
    return pick(getattr(obj, f"{key}_zh", ""), getattr(obj, f"{key}_en", ""), lang)


@bp.app_template_global()
def allergen(code: str) -> str:
    """Template helper: an allergen's name in the page language."""
    return allergen_name(code, _page_lang())


@bp.after_request
def _headers(resp: Response) -> Response:
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers.setdefault("Cache-Control", "no-store")
    return resp


def _ctx(token: str) -> Any:
    return ordering().resolve(token)


def _page_url(token: str, d: str, lang: str, **extra: Any) -> str:
    return url_for("diner.table", token=token, d=d, lang=lang, **extra)


def _render_table(svc: Any, ctx: Any, d: str, lang: str, *, error: str = "", ok: str = "",
                  status: int = 200) -> Response:
    request._storegw_lang = lang  # type: ignore[attr-defined]
    hide = [a for a in request.args.getlist("hide") if a in ALLERGENS]
    view = svc.table_view(ctx.table.id)
    used = sorted({a for it in svc.menu.items.values() for a in it.allergens})
    html = render_template(
        "diner/table.html", svc=svc, menu=svc.menu, ctx=ctx, token=ctx.token, d=d, lang=lang, view=view,
        form_token=svc.form_token(ctx.token), idem=svc.new_idem_key(), hide=hide, used_allergens=used,
        nickname=svc.nickname(d), error=error, ok=ok, sold_out=set(view["sold_out"]), stock=svc.stock,
        other_lang="en" if lang == "zh" else "zh")
    return Response(html, status=status, mimetype="text/html")


@bp.get("/t/<token>")
def table(token: str) -> Any:
    """The table page: menu by category, shared cart, rounds and their statuses."""
    svc = ordering()
    lang = lang_of()
    try:
        ctx = _ctx(token)
    except OrderingError as err:
        return error_page(err, lang)
    d = diner_id()
    if not d:
        return redirect(_page_url(token, secrets.token_hex(4), lang), code=303)
    ok = ""
    if request.args.get("sent"):
        ok = t("sent_ok", lang, n=request.args.get("sent", type=int) or 0)
    elif request.args.get("added"):
        ok = t("added_ok", lang)
    return _render_table(svc, ctx, d, lang, ok=ok)


def error_page(err: OrderingError, lang: str) -> Response:
    """Render a clear, bilingual refusal with the error's status code."""
    request._storegw_lang = lang  # type: ignore[attr-defined]
    html = render_template("diner/error.html", message=str(err), code=err.code, lang=lang)
    return Response(html, status=err.status, mimetype="text/html")


def _act(token: str, fn: Any) -> Any:
    """Run a diner POST: verify token and form value, call ``fn``, answer JSON or redirect."""
    svc = ordering()
    lang = lang_of()
    d = diner_id()
    try:
        ctx = _ctx(token)
    except OrderingError as err:
        if wants_json():
            return {"ok": False, "error": str(err), "code": err.code}, err.status
        return error_page(err, lang)
    try:
        svc.check_form(token, request.form.get("csrf", ""))
        result, extra = fn(svc, ctx, d)
    except OrderingError as err:
        if wants_json():
            return {"ok": False, "error": str(err), "code": err.code}, err.status
        if err.code in ("csrf", "rate_limited"):
            return error_page(err, lang)
        return _render_table(svc, ctx, d, lang, error=str(err), status=err.status)
    if wants_json():
        return {"ok": True, **(result or {}), "version": svc.view_version(ctx.table.id), "idem": svc.new_idem_key()}
    return redirect(_page_url(token, d, lang, **extra), code=303)


def _selected(form: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key in form:
        if key.startswith("opt_"):
            out[key[4:]] = [v for v in form.getlist(key) if v][:10]
    return out


@bp.post("/t/<token>/add")
def add(token: str) -> Any:
    """Add a dish (with options, quantity and a note) to the table's shared cart."""
    def fn(svc: Any, ctx: Any, d: str) -> Any:
        f = request.form
        line = svc.add_to_cart(ctx, f.get("item", ""), _selected(f), f.get("qty", "1"), f.get("note", ""), d,
                               client_key())
        return {"line": line}, {"added": 1, "_anchor": "cart"}
    return _act(token, fn)


@bp.post("/t/<token>/cart/<int:line_id>")
def cart_line(token: str, line_id: int) -> Any:
    """Change a cart line's quantity (0 or the remove button deletes it)."""
    def fn(svc: Any, ctx: Any, d: str) -> Any:
        qty = 0 if request.form.get("remove") else request.form.get("qty", type=int, default=0)
        svc.update_cart(ctx, line_id, qty)
        return {}, {"_anchor": "cart"}
    return _act(token, fn)


@bp.post("/t/<token>/submit")
def submit(token: str) -> Any:
    """Send the shared cart to the kitchen as a numbered round (idempotent on the form's key)."""
    def fn(svc: Any, ctx: Any, d: str) -> Any:
        out = svc.submit(ctx, request.form.get("idem", ""), d, client_key())
        return out, {"sent": out["round"], "_anchor": "rounds"}
    return _act(token, fn)


@bp.post("/t/<token>/request")
def service_request(token: str) -> Any:
    """Call a waiter, ask for the bill, or rush a dish (催菜): a staff task the diner sees acknowledged."""
    def fn(svc: Any, ctx: Any, d: str) -> Any:
        line = request.form.get("line", type=int)
        task = svc.request(ctx, request.form.get("kind", ""), line)
        return {"task": task}, {"_anchor": "service"}
    return _act(token, fn)


@bp.post("/t/<token>/name")
def nickname(token: str) -> Any:
    """Set this phone's nickname or seat (shown next to its dishes)."""
    def fn(svc: Any, ctx: Any, d: str) -> Any:
        svc.set_nickname(d, request.form.get("nickname", ""))
        return {}, {}
    return _act(token, fn)


def _etag_response(svc: Any, table_id: str, extra: str, make: Any, mimetype: str) -> Response:
    version = svc.view_version(table_id)
    etag = f'"{version}-{extra}"'
    fresh = request.headers.get("If-None-Match") == etag
    resp = Response(status=304) if fresh else Response(make(), mimetype=mimetype)
    resp.headers["ETag"] = etag
    resp.headers["Cache-Control"] = "no-cache"
    resp.headers["X-View-Version"] = str(version)
    return resp


@bp.get("/t/<token>/live")
def live(token: str) -> Any:
    """The live part of the page (cart, rounds, service) as an HTML fragment; 304 when unchanged."""
    svc = ordering()
    lang = lang_of()
    try:
        ctx = _ctx(token)
    except OrderingError as err:
        return {"ok": False, "error": str(err), "code": err.code}, err.status
    d = diner_id()
    request._storegw_lang = lang  # type: ignore[attr-defined]

    def make() -> str:
        view = svc.table_view(ctx.table.id)
        return render_template("diner/_live.html", svc=svc, ctx=ctx, token=token, d=d, lang=lang, view=view,
                               form_token=svc.form_token(token), idem=svc.new_idem_key(),
                               nickname=svc.nickname(d))
    return _etag_response(svc, ctx.table.id, f"{lang}-{d}", make, "text/html")


@bp.get("/t/<token>/state.json")
def state(token: str) -> Any:
    """The table's state as JSON for polling clients; send If-None-Match to get a cheap 304."""
    svc = ordering()
    try:
        ctx = _ctx(token)
    except OrderingError as err:
        return {"ok": False, "error": str(err), "code": err.code}, err.status
    return _etag_response(svc, ctx.table.id, "j", lambda: json.dumps(svc.table_view(ctx.table.id),
                                                                      ensure_ascii=False), "application/json")


class StreamSlots:
    """Bounds how many SSE streams hold a server thread at once (the rest poll)."""

    def __init__(self, n: int) -> None:
        self.sem = threading.BoundedSemaphore(max(1, n))

    def take(self) -> bool:
        """Try to take a slot."""
        return self.sem.acquire(blocking=False)

    def give(self) -> None:
        """Return a slot."""
        self.sem.release()


def stream_slots() -> StreamSlots:
    """Return the app's stream slots (sized from ordering.live_streams or half of web.threads)."""
    slots = current_app.extensions.get("storegw-sse")
    if slots is None:
        gw = services_of(current_app)
        n = gw.cfg.ordering.live_streams or max(1, gw.cfg.web.threads // 2)
        slots = current_app.extensions.setdefault("storegw-sse", StreamSlots(n))
    return slots


def sse(channels: tuple[str, ...], since: int) -> Response:
    """Stream version numbers of ``channels`` for ~25 s, then end with a retry hint (frees the thread)."""
    svc = ordering()
    slots = stream_slots()
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    if not slots.take():
        return Response("retry: 5000\nevent: poll\ndata: busy\n\n", mimetype="text/event-stream", headers=headers)

    def gen() -> Any:
        try:
            yield "retry: 1500\n\n"
            deadline = time.monotonic() + SSE_SECONDS
            v = since
            current = svc.notifier.version(*channels)
            if current != v:
                v = current
                yield f"id: {v}\ndata: {v}\n\n"
            while (remaining := deadline - time.monotonic()) > 0:
                nv = svc.notifier.wait(channels, v, min(remaining, 10.0))
                if nv != v:
                    v = nv
                    yield f"id: {v}\ndata: {v}\n\n"
                else:
                    yield ": keepalive\n\n"
        finally:
            slots.give()
    return Response(stream_with_context(gen()), mimetype="text/event-stream", headers=headers)


@bp.get("/t/<token>/events")
def events(token: str) -> Any:
    """Server-sent events: the table view's version whenever it changes (cart, statuses, sold-out)."""
    svc = ordering()
    try:
        ctx = _ctx(token)
    except OrderingError as err:
        return {"ok": False, "error": str(err), "code": err.code}, err.status
    since = request.args.get("v", type=int, default=None)
    if since is None:
        since = int(request.headers.get("Last-Event-ID", "0") or 0) if request.headers.get(
            "Last-Event-ID", "").isdigit() else 0
    return sse(svc.channels(ctx.table.id), since)
