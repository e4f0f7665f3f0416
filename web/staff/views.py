"""Staff pages: PIN login with roles, table map (open/clear/move/merge), orders (void/comp), bill and
payment, tasks, ticket reprint, the kitchen display (KDS) and the manager's menu page.

Sessions are signed cookies (key derived from the store secret in the database) that end after
``ordering.staff_session`` idle; every POST carries the session's CSRF token.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from functools import wraps
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    g,
    get_flashed_messages,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from gateway.core.errors import OrderingError
from gateway.ordering import kitchen, queue
from gateway.ordering import staff as staffops
from gateway.ordering.live import RateLimiter
from gateway.ordering.tables import qr_bytes
from web.diner.views import CSP, lang_of, ordering, sse
from web.kit import services_of

bp = Blueprint("staff", __name__, url_prefix="/staff")
LOGIN_ATTEMPTS_PER_MINUTE = 10  # per client address, per app


def init_app(app: Any) -> None:
    """Key the staff session cookie with the store secret; name and scope the cookie."""
    app.extensions["storegw_login_limit"] = RateLimiter(LOGIN_ATTEMPTS_PER_MINUTE, 60.0)
    gw = services_of(app)
    svc = getattr(gw, "services", {}).get("ordering")
    if svc is not None and svc.secret:
        app.secret_key = hmac.new(svc.secret, b"staff-session", hashlib.sha256).hexdigest()
    elif not app.secret_key:
        app.secret_key = secrets.token_hex(32)
    app.config.setdefault("SESSION_COOKIE_NAME", "storegw_staff")
    app.config["SESSION_COOKIE_NAME"] = "storegw_staff"
    app.config["SESSION_COOKIE_SAMESITE"] = "Strict"
    if gw.cfg.ordering.https:
        app.config["SESSION_COOKIE_SECURE"] = True
    app.config.setdefault("SEND_FILE_MAX_AGE_DEFAULT", 3600)


@bp.after_request
def _headers(resp: Response) -> Response:
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers.setdefault("Cache-Control", "no-store")
    return resp


def csrf_token() -> str:
    """Return (creating) the session's CSRF token."""
    tok = session.get("csrf")
    if not tok:
        tok = session["csrf"] = secrets.token_urlsafe(24)
    return tok


@bp.app_template_global("csrf_field")
def csrf_field() -> Any:
    """Template helper: the hidden CSRF input for staff forms."""
    from markupsafe import Markup, escape

    return Markup(f'<input type="hidden" name="csrf_token" value="{escape(csrf_token())}">')


@bp.before_request
def _guard() -> Any:
    request._storegw_lang = lang_of()  # type: ignore[attr-defined]
    if request.method == "POST":
        sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token", "")
        if not sent or not secrets.compare_digest(sent, session.get("csrf", "")):
            return Response("CSRF token missing or wrong; reload the page and try again.", status=400,
                            mimetype="text/plain")
    g.staff = None
    sid = session.get("staff")
    if sid is not None:
        timeout_ms = ordering().ocfg.staff_session * 1000
        now = int(time.time() * 1000)
        if now - int(session.get("seen", 0)) > timeout_ms:
            session.pop("staff", None)
        else:
            member = staffops.get_staff(services_of(current_app).store.read(), int(sid))
            if member is not None:
                g.staff = member
                if now - int(session.get("seen", 0)) > 30_000:
                    session["seen"] = now
    return None


def need(perm: str) -> Any:
    """Require a signed-in staff member whose role allows ``perm``."""
    def deco(fn: Any) -> Any:
        @wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if g.get("staff") is None:
                return redirect(url_for("staff.login", next=request.path))
            if not g.staff.can(perm):
                abort(403)
            return fn(*args, **kwargs)
        return wrapper
    return deco


def _done(target: str, err: OrderingError | None = None) -> Any:
    if request.headers.get("X-Requested-With") == "js":
        if err is not None:
            return {"ok": False, "error": str(err)}, err.status
        return {"ok": True}
    if err is not None:
        flash(str(err), "error")
    return redirect(target, code=303)


def _call(target: str, fn_name: str, *args: Any) -> Any:
    try:
        ordering().staff_call(fn_name, *args)
    except OrderingError as err:
        return _done(target, err)
    return _done(target)


def _render(template: str, **kw: Any) -> str:
    return render_template(template, staff=g.get("staff"), lang=request._storegw_lang,  # type: ignore[attr-defined]
                           messages=get_flashed_messages(with_categories=True), **kw)


# ---------------------------------------------------------------------------- login

@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    """Sign in with name and PIN."""
    error = ""
    if request.method == "POST":
        if not current_app.extensions["storegw_login_limit"].allow(request.remote_addr or "?"):
            error = "Too many attempts; wait a minute."
        else:
            member = staffops.verify(services_of(current_app).store.read(), request.form.get("name", "").strip(),
                                     request.form.get("pin", ""))
            if member is None:
                error = "Wrong name or PIN. 姓名或PIN错误。"
            else:
                session.clear()
                session["staff"] = member.id
                session["seen"] = int(time.time() * 1000)
                csrf_token()
                nxt = request.args.get("next", "")
                if not nxt.startswith("/staff/") or nxt.startswith("//"):
                    nxt = url_for("staff.home") if member.role != "kitchen" else url_for("staff.kds_index")
                return redirect(nxt, code=303)
    csrf_token()
    return Response(_render("staff/login.html", error=error), status=401 if error else 200)


@bp.post("/logout")
def logout() -> Any:
    """Sign out."""
    session.clear()
    return redirect(url_for("staff.login"), code=303)


# ---------------------------------------------------------------------------- table map and tasks

@bp.get("/")
@need("tasks")
def home() -> Any:
    """Table map and open diner requests."""
    svc = ordering()
    conn = services_of(current_app).store.read()
    return _render("staff/home.html", tables=staffops.table_map(svc, conn), tasks=staffops.open_tasks(conn),
                   stations=list(svc.menu.stations.values()), version=svc.notifier.version("staff"))


@bp.post("/tables/<table_id>/open")
@need("tables")
def open_table(table_id: str) -> Any:
    """开台."""
    covers = request.form.get("covers", type=int, default=0)
    return _call(url_for("staff.home"), "open_table", table_id, covers, g.staff.name)


@bp.post("/tables/<table_id>/clear")
@need("tables")
def clear_table(table_id: str) -> Any:
    """清台."""
    return _call(url_for("staff.home"), "clear_table", table_id, g.staff.name)


@bp.post("/tables/<table_id>/move")
@need("tables")
def move_table(table_id: str) -> Any:
    """Move the party to another table."""
    return _call(url_for("staff.home"), "move_table", table_id, request.form.get("to", ""), g.staff.name)


@bp.post("/tables/<table_id>/merge")
@need("tables")
def merge_table(table_id: str) -> Any:
    """并台: merge into another open table."""
    return _call(url_for("staff.home"), "merge_tables", table_id, request.form.get("into", ""), g.staff.name)


@bp.post("/tasks/<int:task_id>/ack")
@need("tasks")
def ack(task_id: int) -> Any:
    """Acknowledge a diner request."""
    return _call(request.form.get("back") or url_for("staff.home"), "ack_task", task_id, g.staff.name)


@bp.get("/events")
@need("tasks")
def events() -> Any:
    """SSE for staff pages: ``ch`` = staff or kds:STATION."""
    ch = request.args.get("ch", "staff")
    if ch != "staff" and not ch.startswith("kds:"):
        abort(400)
    return sse((ch,), request.args.get("v", type=int, default=0))


# ---------------------------------------------------------------------------- queue (取号 / 叫号 / 过号 / 入座)

@bp.get("/queue")
@need("tables")
def queue_list() -> Any:
    """Today's queue numbers with their pre-orders: call, skip, seat at a table."""
    svc = ordering()
    conn = services_of(current_app).store.read()
    return _render("staff/queue.html", queue=queue.staff_list(conn, queue.day_of(int(time.time() * 1000))),
                   tables=staffops.table_map(svc, conn), url=queue.store_url(svc),
                   version=svc.notifier.version("staff"))


def _queue_action(fn: Any, *args: Any) -> Any:
    back = url_for("staff.queue_list")
    try:
        ordering().kitchen_call(fn, *args)
    except OrderingError as err:
        return _done(back, err)
    return _done(back)


@bp.post("/queue/<int:entry_id>/call")
@need("tables")
def queue_call(entry_id: int) -> Any:
    """叫号: the diner's page shows "please come to the desk"."""
    return _queue_action(queue.call, entry_id, g.staff.name)


@bp.post("/queue/<int:entry_id>/skip")
@need("tables")
def queue_skip(entry_id: int) -> Any:
    """过号: skip the number (its pre-order is dropped)."""
    return _queue_action(queue.skip, entry_id, g.staff.name)


@bp.post("/queue/<int:entry_id>/seat")
@need("tables")
def queue_seat(entry_id: int) -> Any:
    """Seat the number at a table: the pre-order becomes the table's cart (not sent yet)."""
    return _queue_action(queue.seat, entry_id, request.form.get("table", ""), g.staff.name)


@bp.get("/queue/qr.svg")
@need("tables")
def queue_qr() -> Any:
    """The store's queue QR code (SVG) for the door or the desk."""
    return Response(qr_bytes(queue.store_url(ordering()), "svg"), mimetype="image/svg+xml")


# ---------------------------------------------------------------------------- orders, bill, payment

@bp.get("/tables/<table_id>")
@need("orders")
def table_detail(table_id: str) -> Any:
    """A table's orders with void/comp, its bill and payment, tickets to reprint."""
    svc = ordering()
    if table_id not in svc.tables:
        abort(404)
    conn = services_of(current_app).store.read()
    b = staffops.bill(svc, conn, table_id)
    tickets = conn.execute("SELECT id, round_no, station, state, printer, rerouted_from, reprints FROM ord_tickets "
                           "WHERE round_id IN (SELECT id FROM ord_rounds WHERE session_id = ?) ORDER BY id",
                           (b["session"] or -1,)).fetchall()
    return _render("staff/table.html", table=svc.tables[table_id], bill=b, tickets=tickets,
                   url=svc.url_for(table_id), methods=staffops.PAY_METHODS)


@bp.post("/lines/<int:line_id>/adjust")
@need("void")
def adjust_line(line_id: str) -> Any:
    """Void or comp a line, with a reason (audit-logged)."""
    back = request.form.get("back") or url_for("staff.home")
    return _call(back, "void_line", line_id, request.form.get("action", ""), request.form.get("reason", ""),
                 g.staff.name)


@bp.post("/tables/<table_id>/pay")
@need("bill")
def pay(table_id: str) -> Any:
    """Mark the bill paid (cash, card terminal, QR); no card data is ever entered here."""
    return _call(url_for("staff.table_detail", table_id=table_id), "pay", table_id, request.form.get("method", ""),
                 request.form.get("reference", ""), g.staff.name)


@bp.post("/tickets/<int:ticket_id>/reprint")
@need("reprint")
def reprint(ticket_id: int) -> Any:
    """Print a ticket again (marked REPRINT)."""
    back = request.form.get("back") or url_for("staff.home")
    try:
        ordering().kitchen_call(kitchen.reprint, ticket_id, g.staff.name)
    except OrderingError as err:
        return _done(back, err)
    return _done(back)


@bp.get("/tables/<table_id>/qr.svg")
@need("tables")
def table_qr(table_id: str) -> Any:
    """The table's QR code (SVG) for a replacement sticker."""
    svc = ordering()
    try:
        url = svc.url_for(table_id)
    except OrderingError:
        abort(404)
    return Response(qr_bytes(url, "svg"), mimetype="image/svg+xml")


# ---------------------------------------------------------------------------- KDS

@bp.get("/kds")
@need("kds")
def kds_index() -> Any:
    """Pick a station's screen."""
    svc = ordering()
    stations = list(svc.menu.stations.values())
    return _render("staff/kds_index.html", stations=stations)


def _kds_context(station: str) -> dict[str, Any]:
    svc = ordering()
    view = svc.kds_view(station)
    now = int(time.time() * 1000)
    warn, late = svc.ocfg.kds_warn * 1000, svc.ocfg.kds_late * 1000
    for t in view["tickets"]:
        age = now - t["created_ms"]
        t["sla"] = "late" if age >= late else "warn" if age >= warn else "ok"
        t["age_s"] = age // 1000
    return {"view": view, "station": svc.menu.station(station), "warn_s": int(svc.ocfg.kds_warn),
            "late_s": int(svc.ocfg.kds_late), "version": svc.notifier.version(f"kds:{station}")}


@bp.get("/kds/<station>")
@need("kds")
def kds(station: str) -> Any:
    """The station's kitchen display: live tickets with timers, bump, recall, scan-to-serve."""
    return _render("staff/kds.html", **_kds_context(station))


@bp.get("/kds/<station>/live")
@need("kds")
def kds_live(station: str) -> Any:
    """The KDS ticket grid as an HTML fragment (for the screen's script)."""
    return _render("staff/_kds_tickets.html", **_kds_context(station))


def _kds_action(station: str, fn: Any, *args: Any) -> Any:
    back = url_for("staff.kds", station=station)
    try:
        ordering().kitchen_call(fn, *args)
    except OrderingError as err:
        return _done(back, err)
    return _done(back)


@bp.post("/kds/<station>/start/<int:ticket_id>")
@need("kds")
def kds_start(station: str, ticket_id: int) -> Any:
    """Start cooking a ticket."""
    return _kds_action(station, kitchen.start_ticket, ticket_id)


@bp.post("/kds/<station>/bump/<int:ticket_id>")
@need("kds")
def kds_bump(station: str, ticket_id: int) -> Any:
    """Bump a whole ticket (every dish served)."""
    return _kds_action(station, kitchen.bump_ticket, ticket_id)


@bp.post("/kds/<station>/bump-line/<int:line_id>")
@need("kds")
def kds_bump_line(station: str, line_id: int) -> Any:
    """Bump one dish (served)."""
    return _kds_action(station, kitchen.bump_line, line_id)


@bp.post("/kds/<station>/recall")
@need("kds")
def kds_recall(station: str) -> Any:
    """Bring back the last bumped ticket."""
    return _kds_action(station, kitchen.recall, station)


@bp.post("/kds/<station>/scan")
@need("kds")
def kds_scan(station: str) -> Any:
    """Scan-to-serve (划菜) from a keyboard-wedge scanner or typed code."""
    return _kds_action(station, kitchen.serve_code, request.form.get("code", ""), g.staff.name)


# ---------------------------------------------------------------------------- manager: menu

@bp.get("/menu")
@need("menu")
def menu() -> Any:
    """Menu and stock: sold-out (估清), counted stock, prices; import a menu file."""
    svc = ordering()
    return _render("staff/menu.html", menu=svc.menu, stock=svc.stock, sold_out=svc.sold_out)


@bp.post("/menu/items/<item_id>")
@need("menu")
def menu_item(item_id: str) -> Any:
    """Change an item's stock, sold-out flag or price."""
    f = request.form
    stock_text = f.get("stock", "").strip()
    price_text = f.get("price", "").strip()
    try:
        stock = int(stock_text) if stock_text else None
        price = round(float(price_text) * 100) if price_text else None
    except ValueError:
        return _done(url_for("staff.menu"), OrderingError("stock and price must be numbers"))
    unlimited = f.get("unlimited") == "1"
    try:
        svc = ordering()
        if unlimited:
            svc.set_stock(item_id, stock=-1, sold_out=False, staff_name=g.staff.name)
        else:
            svc.set_stock(item_id, stock=stock, sold_out=(f.get("sold_out") == "1") if "sold_out" in f else None,
                          price=price, staff_name=g.staff.name)
    except OrderingError as err:
        return _done(url_for("staff.menu"), err)
    return _done(url_for("staff.menu"))


@bp.post("/menu/import")
@need("menu")
def menu_import() -> Any:
    """Replace the menu from pasted or uploaded JSON (the `storegw menu export` format)."""
    upload = request.files.get("file")
    text = upload.read().decode("utf-8", "replace") if upload else request.form.get("json", "")
    try:
        n = ordering().import_menu(json.loads(text))
    except (ValueError, OrderingError) as err:
        return _done(url_for("staff.menu"), OrderingError(f"import failed: {err}"))
    flash(f"Imported {n} items.", "ok")
    return _done(url_for("staff.menu"))
