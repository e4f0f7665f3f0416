"""Diner pages: the table page (menu, shared cart, rounds), its live fragment, SSE and polling.

Everything works without JavaScript (forms + redirects); ``/static/diner.js`` only enhances it.
State lives on the server and is keyed by the table token in the URL, plus ``d`` (this phone's
random diner id, for the nickname) because captive mini-browsers drop cookies.
"""

from __future__ import annotations

import ipaddress
import secrets
import threading
import time
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    url_for,
)

from gateway.core.errors import OrderingError
from gateway.core.text import same_secret
from gateway.ordering import tables as tbl
from gateway.ordering.live import RateLimiter
from gateway.ordering.menu import ALLERGENS, allergen_name
from web.diner.i18n import money, pick, t
from web.kit import client_address, json_error, services_of, url_int

bp = Blueprint("diner", __name__)

CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
       "font-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'")
SSE_SECONDS = 25.0
DEVICE_COOKIE = "storegw_dev"
DEVICE_COOKIES_PER_MINUTE = 10  # new device cookies one NAT address may be given


def ordering() -> Any:
    """Return the ordering service (404 when this build has none)."""
    svc = services_of(current_app).services.get("ordering")
    if svc is None:
        abort(404)
    return svc


@bp.before_request
def _client_share() -> Any:
    """Every diner POST counts against its client's share first (``OrderingService.check_client_rate``)."""
    if request.method != "POST":
        return None
    try:
        ordering().check_client_rate(client_key())
    except OrderingError as err:
        return json_error(err) if wants_json() else error_page(err, lang_of())
    return None


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
    """Return the key of the requesting client for limits: what it cannot choose.

    On the store's Wi-Fi every phone has its own address, so the key is the address. From an
    address listed in ``ordering.nat_addresses`` (a router with many phones behind it) the key is
    the address plus a signed per-device cookie; new cookies are handed out at most
    ``DEVICE_COOKIES_PER_MINUTE`` a minute per address, so minting fresh ones buys little.
    """
    addr = client_address()
    if not _behind_nat(addr):
        return addr
    svc = ordering()
    device = _device_from_cookie(svc)
    if device is None:
        limiter = current_app.extensions.setdefault("storegw-device-mint", RateLimiter(DEVICE_COOKIES_PER_MINUTE, 60.0))
        if not limiter.allow(addr):
            return f"{addr}|shared"  # one bucket for every cookieless client of this address
        device = secrets.token_hex(8)
        g.storegw_new_device = f"{device}.{tbl.sign(svc.secret, 'device-cookie', device)}"
    return f"{addr}|{device}"


def _behind_nat(addr: str) -> bool:
    nets = current_app.extensions.get("storegw-nat")
    if nets is None:
        nets = tuple(ipaddress.ip_network(n, strict=False)
                     for n in services_of(current_app).cfg.ordering.nat_addresses)
        current_app.extensions["storegw-nat"] = nets
    if not nets:
        return False
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return any(ip in net for net in nets)


def _device_from_cookie(svc: Any) -> str | None:
    device, _, sig = request.cookies.get(DEVICE_COOKIE, "").partition(".")
    if len(device) == 16 and device.isascii() and device.isalnum() and same_secret(
            sig, tbl.sign(svc.secret, "device-cookie", device)):
        return device
    return None


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
    new_device = g.get("storegw_new_device")
    if new_device:
        resp.set_cookie(DEVICE_COOKIE, new_device, max_age=7 * 86400, httponly=True, samesite="Lax",
                        secure=services_of(current_app).cfg.ordering.https)
    return resp


def _ctx(token: str) -> Any:
    return ordering().resolve(token)


def _page_url(token: str, d: str, lang: str, **extra: Any) -> str:
    return url_for("diner.table", token=token, d=d, lang=lang, **extra)


def _render_table(svc: Any, ctx: Any, d: str, lang: str, *, error: str = "", ok: str = "",
                  status: int = 200) -> Response:
    request._storegw_lang = lang  # type: ignore[attr-defined]
    hide = [a for a in request.args.getlist("hide") if a in ALLERGENS]
    view = svc.table_view_for(ctx.table.id, d)
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
        return redirect(_page_url(token, svc.new_diner_id(), lang), code=303)
    ok = ""
    if request.args.get("sent"):
        ok = t("sent_ok", lang, n=url_int(request.args, "sent", 0))
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
            return json_error(err)
        return error_page(err, lang)
    try:
        svc.check_form(token, request.form.get("csrf", ""))
        svc.note_participant(ctx.table.id, d)
        result, extra = fn(svc, ctx, d)
    except OrderingError as err:
        if wants_json():
            return json_error(err)
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
        qty = 0 if request.form.get("remove") else url_int(request.form, "qty", -1)
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
        line = url_int(request.form, "line")
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
        return json_error(err)
    d = diner_id()
    request._storegw_lang = lang  # type: ignore[attr-defined]

    def make() -> str:
        view = svc.table_view_for(ctx.table.id, d)
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
        return json_error(err)
    d = diner_id()
    return _etag_response(svc, ctx.table.id, f"j-{d}", lambda: svc.table_view_json_for(ctx.table.id, d),
                          "application/json")


class LiveSlots:
    """Bounds how many SSE streams hold a server thread at once (the rest poll), per class.

    Anonymous diner streams share what is left after ``staff`` slots are set aside; signed-in staff
    screens (KDS, table map) take their own slots first and may also use free diner slots, so diner
    streams can never starve a kitchen display.
    """

    PER_CLIENT = 2  # diner streams one client may hold (a phone with two tabs)

    def __init__(self, total: int, staff: int) -> None:
        total = max(2, total)
        staff = max(1, min(staff, total - 1))
        self.sizes = {"staff": staff, "diner": total - staff}
        self._free = dict(self.sizes)
        self._held: dict[str, int] = {}  # client key -> its diner streams
        self._lock = threading.Lock()

    def take(self, cls: str, client: str = "") -> str | None:
        """Take a slot for a stream of class ``staff`` or ``diner``; return the pool it came from or None.

        A diner ``client`` (its key: what it cannot choose) holds at most ``PER_CLIENT`` streams, so one
        phone cannot take every diner slot.
        """
        order = ("staff", "diner") if cls == "staff" else ("diner",)
        with self._lock:
            if client and self._held.get(client, 0) >= self.PER_CLIENT:
                return None
            for pool in order:
                if self._free[pool] > 0:
                    self._free[pool] -= 1
                    if client:
                        self._held[client] = self._held.get(client, 0) + 1
                    return pool
        return None

    def give(self, pool: str, client: str = "") -> None:
        """Return a slot to its pool (and to its client's share)."""
        with self._lock:
            self._free[pool] = min(self.sizes[pool], self._free[pool] + 1)
            if client in self._held:
                self._held[client] -= 1
                if self._held[client] <= 0:
                    del self._held[client]

    def free(self) -> dict[str, int]:
        """Free slots per pool."""
        with self._lock:
            return dict(self._free)


def stream_slots() -> LiveSlots:
    """Return the app's live slots: ordering.live_streams (0: half of web.threads), a quarter of them
    (at least 2) kept for staff screens unless ordering.staff_streams says how many."""
    slots = current_app.extensions.get("storegw-sse")
    if slots is None:
        gw = services_of(current_app)
        total = gw.cfg.ordering.live_streams or max(2, gw.cfg.web.threads // 2)
        staff = gw.cfg.ordering.staff_streams or max(2, total // 4)
        slots = current_app.extensions.setdefault("storegw-sse", LiveSlots(total, staff))
    return slots


class _Stream:
    """The body of one SSE response; closing it (the client went away, or the server is done with it)
    returns its slot exactly once, even when it was never iterated."""

    def __init__(self, notifier: Any, channels: tuple[str, ...], since: int, slots: LiveSlots, pool: str,
                 client: str = "") -> None:
        self.notifier, self.channels, self.since = notifier, channels, since
        self.slots, self.pool, self.client = slots, pool, client
        self._closed = False
        self._gen = self._run()

    def __iter__(self) -> Any:
        return self

    def __next__(self) -> str:
        return next(self._gen)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._gen.close()
            self.slots.give(self.pool, self.client)

    def _run(self) -> Any:
        try:
            yield "retry: 1500\n\n"
            deadline = time.monotonic() + SSE_SECONDS
            v = self.since
            current = self.notifier.version(*self.channels)
            if current != v:
                v = current
                yield f"id: {v}\ndata: {v}\n\n"
            while (remaining := deadline - time.monotonic()) > 0:
                nv = self.notifier.wait(self.channels, v, min(remaining, 10.0))
                if nv != v:
                    v = nv
                    yield f"id: {v}\ndata: {v}\n\n"
                else:
                    yield ": keepalive\n\n"
        finally:
            if not self._closed:
                self._closed = True
                self.slots.give(self.pool, self.client)


def sse(channels: tuple[str, ...], since: int, cls: str = "diner") -> Response:
    """Stream version numbers of ``channels`` for ~25 s, then end with a retry hint (frees the thread).

    ``cls`` is ``staff`` only for signed-in staff (the caller checked the session), else ``diner``:
    a diner's client (``client_key``) holds at most ``LiveSlots.PER_CLIENT`` streams.
    """
    svc = ordering()
    slots = stream_slots()
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    client = client_key() if cls == "diner" else ""
    pool = slots.take(cls, client)
    if pool is None:
        return Response("retry: 5000\nevent: poll\ndata: busy\n\n", mimetype="text/event-stream", headers=headers)
    return Response(_Stream(svc.notifier, channels, since, slots, pool, client), mimetype="text/event-stream",
                    headers=headers)


@bp.get("/t/<token>/events")
def events(token: str) -> Any:
    """Server-sent events: the table view's version whenever it changes (cart, statuses, sold-out)."""
    svc = ordering()
    try:
        ctx = _ctx(token)
    except OrderingError as err:
        return json_error(err)
    since = url_int(request.args, "v")
    if since is None:
        since = url_int(request.headers, "Last-Event-ID", 0)
    return sse(svc.channels(ctx.table.id), since, "diner")
