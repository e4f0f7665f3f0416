"""Staff pages: PIN login with roles, table map (open/clear/move/merge), orders (void/comp), bill and
payment, tasks, ticket reprint, the kitchen display (KDS) and the manager's menu page.

Sessions live in the encrypted store (``ord_staff_sessions``): the ``storegw_staff`` cookie holds
only a random id, the store only its SHA-256. A session ends on sign-out, PIN reset, role change,
account disable or a manager's revoke, after ``ordering.staff_session`` idle and after
``ordering.staff_session_max`` in all; a copy of the cookie is refused from then on. Every POST
carries a CSRF token derived from the cookie's id (so it changes at sign-in).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections import OrderedDict
from functools import wraps
from typing import Any

import segno
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
from markupsafe import Markup

from gateway.core.errors import OrderingError
from gateway.core.models import now_ms
from gateway.core.text import parse_uint_or, same_secret
from gateway.guests.rules import DOC_TYPES
from gateway.ordering.floor import PAY_METHODS
from gateway.ordering.live import RateLimiter
from gateway.ordering.tables import qr_bytes
from gateway.staff.matrix import ACTIONS
from web.diner.views import CSP, lang_of, ordering, sse
from web.kit import client_address, json_error, safe_path, services_of, url_int

bp = Blueprint("staff", __name__, url_prefix="/staff")
LOGIN_ATTEMPTS_PER_MINUTE = 10  # per client address, per app (the account has its own back-off and lock)
COOKIE = "storegw_staff"
TOUCH_MS = 60_000  # a session's last-seen time is written at most once a minute


def init_app(app: Any) -> None:
    """Key the CSRF tokens with the store secret; the cookie itself carries only a random id."""
    app.extensions["storegw_login_limit"] = RateLimiter(LOGIN_ATTEMPTS_PER_MINUTE, 60.0)
    app.extensions["storegw_flashes"] = Flashes()
    svc = services_of(app).services.get("ordering")
    if svc is not None and svc.secret:
        key = hmac.new(svc.secret, b"staff-csrf", hashlib.sha256).digest()
    else:
        key = secrets.token_bytes(32)
    app.extensions["storegw_staff_key"] = key
    if not app.secret_key:
        app.secret_key = secrets.token_hex(32)  # Flask's own session is not used by these pages
    app.config.setdefault("SEND_FILE_MAX_AGE_DEFAULT", 3600)


class Flashes:
    """One-time messages for the next staff page, per session id, in memory (bounded; lost on restart)."""

    def __init__(self, max_keys: int = 2000) -> None:
        self._by_key: OrderedDict[str, list[tuple[str, str]]] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_keys

    def add(self, key: str, category: str, message: str) -> None:
        with self._lock:
            items = self._by_key.pop(key, [])
            self._by_key[key] = [*items, (category, message)][-5:]
            while len(self._by_key) > self._max:
                self._by_key.popitem(last=False)

    def pop(self, key: str) -> list[tuple[str, str]]:
        with self._lock:
            return self._by_key.pop(key, [])


def _token_ok(token: str) -> bool:
    return 40 <= len(token) <= 64 and token.isascii() and all(ch.isalnum() or ch in "-_" for ch in token)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _new_cookie() -> str:
    """Give this browser a fresh random id (anonymous until a sign-in records it)."""
    token = secrets.token_urlsafe(32)
    g.staff_token = g.staff_new_cookie = token
    return token


@bp.after_request
def _headers(resp: Response) -> Response:
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers.setdefault("Cache-Control", "no-store")
    token = g.get("staff_new_cookie")
    if token:
        resp.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/",
                        secure=services_of(current_app).cfg.ordering.https)
    return resp


def csrf_token() -> str:
    """Return the CSRF token of this browser's session id (an HMAC of it: nothing more is stored)."""
    token = g.get("staff_token") or _new_cookie()
    return hmac.new(current_app.extensions["storegw_staff_key"], token.encode(), hashlib.sha256).hexdigest()[:43]


def flash(message: str, category: str = "message") -> None:
    """Show ``message`` on this browser's next staff page."""
    current_app.extensions["storegw_flashes"].add(_hash(g.get("staff_token") or _new_cookie()), category, message)


def get_flashed_messages() -> list[tuple[str, str]]:
    """Take this browser's pending messages."""
    token = g.get("staff_token")
    return current_app.extensions["storegw_flashes"].pop(_hash(token)) if token else []


@bp.app_template_global("csrf_field")
def csrf_field() -> Any:
    """Template helper: the hidden CSRF input for staff forms."""
    from markupsafe import Markup, escape

    return Markup(f'<input type="hidden" name="csrf_token" value="{escape(csrf_token())}">')


@bp.before_request
def _guard() -> Any:
    request._storegw_lang = lang_of()  # type: ignore[attr-defined]
    g.staff = None
    g.staff_session = None
    token = request.cookies.get(COOKIE, "")
    if _token_ok(token):
        g.staff_token = token
    else:
        token = _new_cookie()
    if request.method == "POST":
        sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token", "")
        if not same_secret(sent, csrf_token()):
            return Response("CSRF token missing or wrong; reload the page and try again.", status=400,
                            mimetype="text/plain")
    if g.get("staff_new_cookie"):
        return None  # a fresh id has no session
    found = staff().session(_hash(token))
    if found is not None:
        g.staff, g.staff_session, seen = found
        if now_ms() - seen > TOUCH_MS:
            staff().touch(g.staff_session)
    return None


def staff() -> Any:
    """Return the staff service (sign-in, sessions, accounts)."""
    return services_of(current_app).services["staff"]


PUBLIC = "public"  # the declared permission of the sign-in and sign-out routes


def public(fn: Any) -> Any:
    """Mark a route as open to anyone (sign-in, sign-out); every other staff route uses ``need``."""
    fn.storegw_perm = PUBLIC
    return fn


def need(perm: str, *, on_refused: Any = None) -> Any:
    """Require a signed-in staff member whose role allows ``perm`` (``gateway/staff/matrix.py``).

    ``on_refused()`` runs before the 403 (the unmask routes audit refused attempts). The
    permission is recorded on the view (``storegw_perm``), where ``tests/staff/test_matrix.py``
    finds it for every registered route.
    """
    if perm not in ACTIONS:
        raise KeyError(f"need({perm!r}): not an action of gateway/staff/matrix.py")

    def deco(fn: Any) -> Any:
        @wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if g.get("staff") is None:
                return redirect(url_for("staff.login", next=request.path))
            if not g.staff.can(perm):
                if on_refused is not None:
                    on_refused()
                abort(403)
            return fn(*args, **kwargs)
        wrapper.storegw_perm = perm  # type: ignore[attr-defined]
        return wrapper
    return deco


def landing(member: Any) -> str:
    """The first page a member's role may open: the table map, the KDS (first for the kitchen), the technician
    page (first for technicians) or the audit log."""
    pages = [("tasks", "staff.home"), ("kds", "staff.kds_index"), ("audit-read", "staff.audit_log")]
    if member.role == "kitchen":
        pages.reverse()
    if member.role == "technician":
        pages.insert(0, ("tech", "tech.page"))
    for perm, endpoint in pages:
        if member.can(perm):
            return url_for(endpoint)
    return url_for("staff.login")


def _back(default: str) -> str:
    """The form's ``back`` page when it is a same-origin staff path, else ``default``."""
    return safe_path(request.form.get("back"), default, prefix="/staff/")


def _done(target: str, err: OrderingError | None = None) -> Any:
    if request.headers.get("X-Requested-With") == "js":
        if err is not None:
            return json_error(err)
        return {"ok": True}
    if err is not None:
        flash(str(err), "error")
    return redirect(target, code=303)


def _act(target: str, fn: Any, *args: Any) -> Any:
    """Run a service method for a staff form; answer with a redirect (or JSON for the page's script)."""
    try:
        fn(*args)
    except OrderingError as err:
        return _done(target, err)
    return _done(target)


def _render(template: str, **kw: Any) -> str:
    return render_template(template, staff=g.get("staff"), lang=request._storegw_lang,  # type: ignore[attr-defined]
                           messages=get_flashed_messages(), **kw)


# ---------------------------------------------------------------------------- login

LOGIN_ERRORS = {
    "locked": "This account is locked after too many wrong tries; ask a manager to unlock it. "
              "账号已锁定，请联系经理解锁。",
    "wait": "Too many wrong tries; wait a moment and try again. 错误次数过多，请稍候。",
    "code": "This account signs in with a password and the 6-digit code from its authenticator app. "
            "请输入密码和验证器中的6位验证码。",
    "clock": "The board's clock is not trusted, so authenticator codes cannot be checked. A technician can fix it: "
             "set the time, then run `storegw staff trust-clock`. PIN sign-in for floor staff still works. "
             "系统时钟未校准，暂不能验证验证码，请联系技术员。",
    "replay": "That code was already used; wait for the next code and try again. 验证码已使用过，请等下一个。",
}
ENROL_MESSAGE = ("Managers, technicians and auditors now sign in with a password and an authenticator app. Until "
                 "you enrol you can do floor work only. Ask a technician to run `storegw staff add {name} --role "
                 "{role}` or another manager to reset your sign-in on the Staff page. "
                 "经理、技术员和审计员需改用密码加验证器登录；登记前只能做前厅操作。")


@bp.route("/login", methods=["GET", "POST"])
@public
def login() -> Any:
    """Sign in with name and PIN (floor staff) or name, password and TOTP code (managers, technicians, auditors)."""
    error = ""
    if request.method == "POST":
        if not current_app.extensions["storegw_login_limit"].allow(client_address()):
            error = "Too many attempts; wait a minute."
        else:
            member, why = staff().check_login(request.form.get("name", ""), request.form.get("pin", ""),
                                              request.form.get("code", ""))
            if member is None:
                error = LOGIN_ERRORS.get(why, "Wrong name, PIN, password or code. 姓名、PIN、密码或验证码错误。")
            else:
                _end_current("signed-in-again")
                token = _new_cookie()  # a new id at sign-in: an id planted before it is worth nothing
                staff().start_session(member.id, _hash(token), client_address(), request.headers.get("User-Agent", ""))
                if member.must_enrol:
                    flash(ENROL_MESSAGE.format(name=member.name, role=member.role), "error")
                back = request.args.get("next")  # a staff page or the technician page (/tech/)
                return redirect(safe_path(back, safe_path(back, landing(member), prefix="/staff/"), prefix="/tech/"),
                                code=303)
    return Response(_render("staff/login.html", error=error), status=401 if error else 200)


def _end_current(why: str) -> None:
    if g.get("staff_session") is not None:
        staff().end_session(g.staff_session, why)
        g.staff, g.staff_session = None, None


@bp.post("/logout")
@public
def logout() -> Any:
    """Sign out: the session ends in the store (a saved copy of the cookie is refused), the browser gets a new id."""
    _end_current("signed-out")
    _new_cookie()
    return redirect(url_for("staff.login"), code=303)


# ---------------------------------------------------------------------------- table map and tasks

@bp.get("/")
@need("tasks")
def home() -> Any:
    """Table map and open diner requests."""
    svc = ordering()
    return _render("staff/home.html", tables=svc.table_map(), tasks=svc.open_tasks(),
                   stations=list(svc.menu.stations.values()), version=svc.notifier.version("staff"))


@bp.post("/tables/<table_id>/open")
@need("tables")
def open_table(table_id: str) -> Any:
    """开台."""
    covers = url_int(request.form, "covers", 0)
    return _act(url_for("staff.home"), ordering().open_table, table_id, covers, g.staff.name)


@bp.post("/tables/<table_id>/clear")
@need("tables")
def clear_table(table_id: str) -> Any:
    """清台."""
    return _act(url_for("staff.home"), ordering().clear_table, table_id, g.staff.name)


@bp.post("/tables/<table_id>/move")
@need("tables")
def move_table(table_id: str) -> Any:
    """Move the party to another table."""
    return _act(url_for("staff.home"), ordering().move_table, table_id, request.form.get("to", ""), g.staff.name)


@bp.post("/tables/<table_id>/merge")
@need("tables")
def merge_table(table_id: str) -> Any:
    """并台: merge into another open table."""
    return _act(url_for("staff.home"), ordering().merge_tables, table_id, request.form.get("into", ""),
                g.staff.name)


@bp.post("/tasks/<int:task_id>/ack")
@need("tasks")
def ack(task_id: int) -> Any:
    """Acknowledge a diner request."""
    return _act(_back(url_for("staff.home")), ordering().ack_task, task_id, g.staff.name)


@bp.get("/events")
@need("tasks")
def events() -> Any:
    """SSE for staff pages: ``ch`` = staff or kds:STATION."""
    ch = request.args.get("ch", "staff")
    if ch != "staff" and not ch.startswith("kds:"):
        abort(400)
    return sse((ch,), url_int(request.args, "v", 0), "staff")  # signed in: the staff's own live slots


# ---------------------------------------------------------------------------- queue (取号 / 叫号 / 过号 / 入座)

@bp.get("/queue")
@need("tables")
def queue_list() -> Any:
    """Today's queue numbers with their pre-orders: call, skip, seat at a table."""
    svc = ordering()
    return _render("staff/queue.html", queue=svc.queue_staff_list(), tables=svc.table_map(), url=svc.queue_url(),
                   version=svc.notifier.version("staff"))


@bp.post("/queue/<int:entry_id>/call")
@need("tables")
def queue_call(entry_id: int) -> Any:
    """叫号: the diner's page shows "please come to the desk"."""
    return _act(url_for("staff.queue_list"), ordering().queue_call, entry_id, g.staff.name)


@bp.post("/queue/<int:entry_id>/skip")
@need("tables")
def queue_skip(entry_id: int) -> Any:
    """过号: skip the number (its pre-order is dropped)."""
    return _act(url_for("staff.queue_list"), ordering().queue_skip, entry_id, g.staff.name)


@bp.post("/queue/<int:entry_id>/seat")
@need("tables")
def queue_seat(entry_id: int) -> Any:
    """Seat the number at a table: the pre-order becomes the table's cart (not sent yet)."""
    return _act(url_for("staff.queue_list"), ordering().queue_seat, entry_id, request.form.get("table", ""),
                g.staff.name)


@bp.get("/queue/qr.svg")
@need("tables")
def queue_qr() -> Any:
    """The store's queue QR code (SVG) for the door or the desk."""
    return Response(qr_bytes(ordering().queue_url(), "svg"), mimetype="image/svg+xml")


# ---------------------------------------------------------------------------- orders, bill, payment

@bp.get("/tables/<table_id>")
@need("orders")
def table_detail(table_id: str) -> Any:
    """A table's orders with void/comp, its bill and payment, tickets to reprint."""
    svc = ordering()
    if table_id not in svc.tables:
        abort(404)
    b = svc.bill(table_id)
    mem = services_of(current_app).services.get("members")
    on = mem is not None and mem.mcfg.enabled
    return _render("staff/table.html", table=svc.tables[table_id], bill=b, tickets=svc.tickets_of(b["session"]),
                   url=svc.url_for(table_id), methods=PAY_METHODS, members_on=on,
                   panel=mem.bill_panel(table_id) if on and b["session"] else None,
                   card=on and mem.last_card() is not None, idem=secrets.token_urlsafe(12),
                   complaint_categories=_complaint_categories() if on else {})


def _complaint_categories() -> dict[str, tuple[str, str]]:
    from gateway.members.feedback import CATEGORIES

    return CATEGORIES


@bp.post("/lines/<int:line_id>/adjust")
@need("void")
def adjust_line(line_id: str) -> Any:
    """Void or comp a line, with a reason (audit-logged)."""
    back = _back(url_for("staff.home"))
    return _act(back, ordering().void_line, line_id, request.form.get("action", ""), request.form.get("reason", ""),
                g.staff.name)


@bp.post("/tables/<table_id>/pay")
@need("bill")
def pay(table_id: str) -> Any:
    """Mark the bill paid (cash, card terminal, QR); no card data is ever entered here."""
    return _act(url_for("staff.table_detail", table_id=table_id), ordering().pay, table_id,
                request.form.get("method", ""), request.form.get("reference", ""), g.staff.name)


@bp.post("/tickets/<int:ticket_id>/reprint")
@need("reprint")
def reprint(ticket_id: int) -> Any:
    """Print a ticket again (marked REPRINT)."""
    return _act(_back(url_for("staff.home")), ordering().reprint, ticket_id, g.staff.name)


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
    now = now_ms()
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
    return _act(url_for("staff.kds", station=station), fn, *args)


@bp.post("/kds/<station>/start/<int:ticket_id>")
@need("kds")
def kds_start(station: str, ticket_id: int) -> Any:
    """Start cooking a ticket."""
    return _kds_action(station, ordering().start_ticket, ticket_id)


@bp.post("/kds/<station>/bump/<int:ticket_id>")
@need("kds")
def kds_bump(station: str, ticket_id: int) -> Any:
    """Bump a whole ticket (every dish served)."""
    return _kds_action(station, ordering().bump_ticket, ticket_id)


@bp.post("/kds/<station>/bump-line/<int:line_id>")
@need("kds")
def kds_bump_line(station: str, line_id: int) -> Any:
    """Bump one dish (served)."""
    return _kds_action(station, ordering().bump_line, line_id)


@bp.post("/kds/<station>/recall")
@need("kds")
def kds_recall(station: str) -> Any:
    """Bring back the last bumped ticket."""
    return _kds_action(station, ordering().recall, station)


@bp.post("/kds/<station>/scan")
@need("kds")
def kds_scan(station: str) -> Any:
    """Scan-to-serve (划菜) from a keyboard-wedge scanner or typed code."""
    return _kds_action(station, ordering().serve_code, request.form.get("code", ""), g.staff.name)


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
    stock = -1 if stock_text == "-1" else parse_uint_or(stock_text, max_digits=7) if stock_text else None
    price = _cents(price_text) if price_text else None
    if (stock_text and stock is None) or (price_text and price is None):
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
    except (ValueError, TypeError, AttributeError, KeyError, OrderingError) as err:  # a malformed document
        return _done(url_for("staff.menu"), OrderingError(f"import failed: {err}"))
    flash(f"Imported {n} items.", "ok")
    return _done(url_for("staff.menu"))


def _cents(text: str) -> int | None:
    """A price typed in yuan ("38", "12.5", "12.50"), ASCII digits only, as cents; None if it is not one."""
    m = re.fullmatch(r"([0-9]{1,7})(?:\.([0-9]{1,2}))?", text)
    return int(m[1]) * 100 + int((m[2] or "0").ljust(2, "0")) if m else None


# ---------------------------------------------------------------------------- manager: accounts and sessions

@bp.get("/accounts")
@need("staff")
def accounts() -> Any:
    """Staff accounts (locked ones to unlock) and signed-in sessions (to revoke)."""
    data = staff().accounts()
    for sess in data["sessions"]:
        for key in ("created_ms", "seen_ms"):
            sess[key[:-3]] = time.strftime("%m-%d %H:%M", time.localtime(sess[key] / 1000))
    return _render("staff/accounts.html", people=data["staff"], sessions=data["sessions"],
                   current=g.get("staff_session"))


def _account_action(fn: Any, *args: Any) -> Any:
    return _act(url_for("staff.accounts"), fn, *args)


def _name_of(staff_id: int) -> str:
    name = staff().name_of(staff_id)
    if name is None:
        abort(404)
    return name


@bp.post("/accounts/<int:staff_id>/unlock")
@need("staff")
def account_unlock(staff_id: int) -> Any:
    """Unlock an account locked after too many wrong PINs."""
    return _account_action(staff().unlock, _name_of(staff_id), g.staff.name)


@bp.post("/accounts/<int:staff_id>/disable")
@need("staff")
def account_disable(staff_id: int) -> Any:
    """Disable an account: its sessions end at once."""
    if staff_id == g.staff.id:
        return _done(url_for("staff.accounts"), OrderingError("You cannot disable your own account."))
    return _account_action(staff().set_active, _name_of(staff_id), False, g.staff.name)


@bp.post("/accounts/<int:staff_id>/enable")
@need("staff")
def account_enable(staff_id: int) -> Any:
    """Enable a disabled account again."""
    return _account_action(staff().set_active, _name_of(staff_id), True, g.staff.name)


@bp.post("/sessions/<int:session_id>/revoke")
@need("sessions")
def session_revoke(session_id: int) -> Any:
    """End a signed-in session (a lost tablet, a shared phone)."""
    return _account_action(staff().revoke, session_id, g.staff.name)


@bp.post("/accounts/<int:staff_id>/reset")
@need("staff")
def account_reset(staff_id: int) -> Any:
    """Reset a manager's, technician's or auditor's sign-in (a lost phone, a forgotten password, a PIN
    account enrolling): a new password typed by the manager, a new TOTP secret shown once as a QR code."""
    if staff_id == g.staff.id:
        return _done(url_for("staff.accounts"), OrderingError("Another manager (or storegw staff add) resets your "
                                                              "own sign-in."))
    name = _name_of(staff_id)
    role = next((p["role"] for p in staff().accounts()["staff"] if p["id"] == staff_id), "")
    try:
        secret, uri = staff().enrol(name, role, request.form.get("password", ""), g.staff.name)
    except OrderingError as err:
        return _done(url_for("staff.accounts"), err)
    svg = segno.make(uri, error="m").svg_inline(scale=4)
    return _render("staff/enrolled.html", name=name, role=role, secret=secret, uri=uri, qr=Markup(svg))


# ---------------------------------------------------------------------------- audit log, audited unmask

@bp.get("/audit")
@need("audit-read")
def audit_log() -> Any:
    """The newest audit entries (who did what to what, and why; never a sensitive value)."""
    return _render("staff/audit.html", rows=staff().audit_log(300))


@bp.get("/privacy")
@need("privacy-report")
def privacy_report() -> Any:
    """The privacy report (``storegw privacy report``): what is held per category and since when, the next
    retention run, the last deletion receipt, unmasks this week by staff reference, key versions. Counts,
    dates and references only: the auditor's page shows no personal value."""
    return _render("staff/privacy.html", doc=services_of(current_app).privacy_report())


def _unmask(kind: str) -> Any:
    """Run one unmask attempt of ``kind`` (refused or granted, the service records and audits it)."""
    f = request.form
    out = staff().unmask(g.staff, kind, f.get("field", ""), f.get("ref", ""), f.get("reason", ""), f.get("code", ""))
    if request.headers.get("X-Requested-With") == "js" or request.accept_mimetypes.best == "application/json":
        if out.cause:
            return {"ok": False, "error": out.message, "code": out.cause}, out.status
        return {"ok": True, "value": out.value, **({"document": out.label} if out.label else {})}
    en, zh = DOC_TYPES.get(out.label, (out.label, out.label))
    return Response(_render("staff/unmask.html", kind=kind, fields=staff().unmaskable(kind), value=out.value,
                            error=out.message, field=f.get("field", ""), ref=f.get("ref", ""),
                            document=f"{en} {zh}" if out.label else ""),
                    status=out.status)


def _unmask_refused(kind: str) -> Any:
    """For ``need``: a POST by a role that may not unmask is still recorded and audited."""
    def hook() -> None:
        if request.method == "POST":
            _unmask(kind)
    return hook


def _unmask_form(kind: str) -> Any:
    return _render("staff/unmask.html", kind=kind, fields=staff().unmaskable(kind), value=None, error="",
                   field=request.args.get("field", ""), ref=request.args.get("ref", ""), document="")


@bp.route("/unmask/phone", methods=["GET", "POST"])
@need("unmask-phone", on_refused=_unmask_refused("phone"))
def unmask_phone() -> Any:
    """Reveal one masked phone number: a reason; audited; at most 20 reveals an hour per member."""
    return _unmask("phone") if request.method == "POST" else _unmask_form("phone")


@bp.route("/unmask/id", methods=["GET", "POST"])
@need("unmask-id", on_refused=_unmask_refused("id"))
def unmask_id() -> Any:
    """Reveal one masked ID-card number: a reason and a fresh authenticator code; audited."""
    return _unmask("id") if request.method == "POST" else _unmask_form("id")


@bp.route("/unmask/passport", methods=["GET", "POST"])
@need("unmask-passport", on_refused=_unmask_refused("passport"))
def unmask_passport() -> Any:
    """Reveal one masked passport number: a reason and a fresh authenticator code; audited."""
    return _unmask("passport") if request.method == "POST" else _unmask_form("passport")
