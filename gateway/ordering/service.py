"""The ordering service: tables and sessions, the shared cart, idempotent rounds, tasks.

Every write goes through the gateway's single writer (group commit); a diner is told "sent" only
after the transaction holding the round *and* its kitchen tickets (print jobs) committed. Prices
and stock are decided here, never by the client. Live pages follow ``notifier`` channels:
``table:ID`` (cart, rounds, statuses, tasks), ``menu`` (sold-out), ``kds:STATION`` and ``staff``.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

from gateway.core.errors import OrderingError
from gateway.core.models import now_ms
from gateway.core.text import clean, form_uint, free_text, same_secret
from gateway.ordering import floor, kitchen, queue, report, summary
from gateway.ordering import tables as tbl
from gateway.ordering.hooks import BillHook
from gateway.ordering.live import Notifier, RateLimiter
from gateway.ordering.menu import Menu, load_menu, parse_menu, price_line, stock_of, write_menu
from gateway.printing.service import PrintService
from gateway.spine.context import Periodic, ServiceContext
from gateway.staff.accounts import audit
from gateway.store.db import Connection

_LOGGER = logging.getLogger(__name__)

NOTE_MAX = 140
NICK_MAX = 24
MAX_QTY = 20
MAX_CART_LINES = 60
TASK_KINDS = ("waiter", "bill", "rush")


def build(gw: ServiceContext) -> OrderingService:
    """Build the ordering service for a gateway (gateway.domains.SERVICES)."""
    return OrderingService(gw)


@dataclass(frozen=True)
class TableCtx:
    """A verified table from a diner's URL token."""

    table: tbl.Table
    token: str


class OrderingService:
    """Diner ordering, kitchen tickets and staff operations of one store."""

    def __init__(self, gw: ServiceContext) -> None:
        self.gw = gw
        self.cfg = gw.cfg
        self.ocfg = gw.cfg.ordering
        self.store_id = gw.cfg.store.id
        self.writer = gw.store.writer
        self.printing: PrintService = gw.services["printing"]  # built before ordering (gateway.domains)
        # ingredients and recipes (gateway.stock, below ordering): a recipe item's stock is its ingredients
        self.stock_svc: Any = gw.services.get("stock")
        self.notifier = Notifier()
        self.menu = Menu()
        self.stock: dict[str, int | None] = {}  # what diners see left: counted stock, or portions when low
        self.counted: dict[str, int | None] = {}  # counted stock per item (ord_items.stock; the menu page)
        self.sold_out: set[str] = set()
        self._flag_out: set[str] = set()  # sold out by flag or counted stock (ord_items); the rest comes from stock
        self.tables: dict[str, tbl.Table] = {}
        self.secret = b""
        self._participants: dict[int, set[str]] = {}  # session id → diner ids that acted in it
        self.submit_limit = RateLimiter(self.ocfg.submit_rate, 60.0)
        self.client_limit = RateLimiter(max(2, self.ocfg.submit_rate // 2), 60.0)
        self.write_limit = RateLimiter(self.ocfg.cart_rate, 60.0)
        # each client's share of the diner writes: one phone cannot use up its table's budget (or write
        # unbounded rows, e.g. nicknames under fresh page ids) for everyone at the table
        self.diner_limit = RateLimiter(max(10, self.ocfg.cart_rate // 4), 60.0)
        self.counters = {"rounds": 0, "duplicates": 0, "refused": 0, "tickets": 0}
        # table → (view version, the view as JSON text, its paid_ms, session and sold_out): text, not the
        # dicts, so a long session's rounds cost a few KB per table (docs/architecture.md, Memory)
        self._views: dict[str, tuple[int, str, int | None, int, list[str]]] = {}
        self._seen_rev = ""
        self.bill_hooks: list[BillHook] = []  # added by services above ordering (members)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Load the secret, menu and tables; hook printing and the scanners."""
        self.secret = self.writer.call(tbl.ensure_secret)
        self._seen_rev = self._rev()
        self.reload()
        if self.stock_svc is not None:
            self.stock_svc.on_change(self._on_stock)
        self.printing.on_update(self._on_print_update)
        self.reconcile_prints()  # jobs that changed state before we listened (e.g. right after a restart)
        self.gw.hub.subscribe("code", self._on_scan)

    def stop(self) -> None:
        """Wake every live page so its stream ends."""
        self.notifier.bump("shutdown")

    def periodic(self) -> tuple[Periodic, ...]:
        """The housekeeping the gateway's scheduler runs for ordering."""
        return (Periodic("ordering-follow", 2.0, self.follow),
                Periodic("ordering-summary", 30.0, lambda: self.writer.submit(lambda c: summary.hourly(self, c))))

    def health(self) -> dict[str, Any]:
        """Counters for /api/v1/health (no personal data)."""
        return {**self.counters, "tables": len(self.tables), "menu_items": len(self.menu.items),
                "sold_out": len(self.sold_out), "live_waiters": self.notifier.waiting,
                "rate_limited": self.submit_limit.refused + self.client_limit.refused + self.write_limit.refused
                + self.diner_limit.refused}

    def follow(self) -> None:
        """Reload after `storegw menu import` / `tables rotate` ran beside us; catch up on print states."""
        rev = self._rev()
        if rev != self._seen_rev:
            self._seen_rev = rev
            self.reload()
        self.reconcile_prints(min_age_ms=3000)

    def _rev(self) -> str:
        row = self.gw.store.read().execute("SELECT value FROM ord_meta WHERE key = 'rev'").fetchone()
        return row[0] if row else ""

    def reload(self) -> None:
        """Reload menu, stock and tables from the database."""
        conn = self.gw.store.read()
        menu, stock, sold_out = load_menu(conn)
        menu.version = self.menu.version + 1
        self.menu, self.counted, self._flag_out = menu, stock, sold_out
        self._apply_stock()
        self.tables = {t.id: t for t in tbl.list_tables(conn)}
        self._views.clear()
        self.notifier.bump("menu", "staff")

    def _apply_stock(self) -> None:
        """Sold out = flagged or counted out (ord_items) or no portion left by ingredients; low items show
        what is left."""
        st = self.stock_svc
        if st is None:
            self.sold_out, self.stock = set(self._flag_out), dict(self.counted)
            return
        low = st.low_items()
        self.sold_out = set(self._flag_out) | st.sold_out_items()
        self.stock = {**self.counted, **{iid: low.get(iid) for iid in list(st.recipes)}}

    def _on_stock(self, changed: dict[str, int]) -> None:
        """Stock listener (writer thread, after commit): every open page learns the new sold-outs at once."""
        self._apply_stock()
        self.notifier.bump("menu", "staff")

    # ------------------------------------------------------------------ menu and tables (admin)
    def import_menu(self, doc: Any) -> int:
        """Replace the menu from an import document; return the number of items."""
        menu = parse_menu(doc)
        stock = stock_of(doc)
        self.writer.call(lambda c: write_menu(c, menu, stock))
        self.reload()
        return len(menu.items)

    def set_stock(self, item_id: str, *, stock: int | None = None, sold_out: bool | None = None,
                  price: int | None = None, staff_name: str = "") -> None:
        """Set an item's counted stock (-1: not counted), its sold-out (估清) flag, or its price (manager page)."""
        if item_id not in self.menu.items:
            raise OrderingError("no such item", code="no_item", status=404)

        def write(c: Connection) -> None:
            if stock is not None or sold_out is not None:
                if stock is not None and stock < -1:
                    raise OrderingError("stock must be >= 0 (or -1: not counted)")
                so = int(bool(sold_out)) if sold_out is not None else int(stock == 0)
                c.execute("UPDATE ord_items SET stock = ?, sold_out = ? WHERE id = ?",
                          (stock if stock is not None and stock >= 0 else None, so, item_id))
            if price is not None:
                if not 0 <= price <= 10_000_000:
                    raise OrderingError("price out of range")
                c.execute("UPDATE ord_items SET price_cents = ? WHERE id = ?", (price, item_id))
            audit(c, staff_name, "menu", f"item:{item_id}",
                        detail={"stock": stock, "sold_out": sold_out, "price": price})
        self.writer.call(write)
        self.reload()

    def add_table(self, table_id: str, label: str = "", area: str = "", seats: int = 4) -> tbl.Table:
        """Create or relabel a table."""
        self.writer.call(lambda c: tbl.upsert_table(c, table_id, label, area, seats))
        self.reload()
        return self.tables[table_id]

    def rotate(self, table_id: str) -> str:
        """Rotate a table's token (old QR stickers stop working); return the new token."""
        self.writer.call(lambda c: tbl.rotate(c, table_id))
        self.reload()
        return self.token_for(table_id)

    def token_for(self, table_id: str) -> str:
        """Return the current token of a table."""
        table = self.tables.get(table_id)
        if table is None:
            raise OrderingError(f"no table {table_id!r}", code="no_table", status=404)
        return tbl.make_token(self.secret, self.store_id, table)

    def url_for(self, table_id: str) -> str:
        """Return the URL printed in a table's QR code."""
        host = self.cfg.web.public_host or self.cfg.web.listen
        return tbl.table_url(host, self.token_for(table_id), https=self.ocfg.https)

    # ------------------------------------------------------------------ diner side
    def resolve(self, token: str) -> TableCtx:
        """Verify a diner's token; raise a clear OrderingError for forged, unknown or replaced codes."""
        table_id, version = tbl.parse_token(self.secret, self.store_id, token)
        table = self.tables.get(table_id)
        if table is None:
            raise OrderingError("This table code is not valid. 桌码无效。", code="bad_token", status=404)
        if version != table.version:
            raise OrderingError("This QR code has been replaced. Please scan the code on your table. "
                                "此二维码已更换，请扫描桌上的二维码。", code="token_replaced", status=410)
        return TableCtx(table, token)

    def origin_of(self, client: str) -> str:
        """A MAC of a client key (its address, plus its device cookie behind NAT): stored, never the address."""
        return tbl.sign(self.secret, "client-origin", client)

    def form_token(self, token: str) -> str:
        """Return the anti-forgery value diner forms of this table carry (stateless, no cookie)."""
        return tbl.sign(self.secret, "diner-form", token)

    def check_form(self, token: str, value: str) -> None:
        """Refuse a diner form without this table's anti-forgery value."""
        if not same_secret(value, self.form_token(token)):
            raise OrderingError("The form expired; please reload the page. 页面已过期，请刷新。",
                                code="csrf", status=400)

    # -- who may see a paid table's bill: the party's own phones, not the next party's
    DINER_MAX_SESSIONS = 2000  # sessions whose acting phones are remembered (in memory)

    def new_diner_id(self) -> str:
        """Return a fresh diner id for a phone's URL: its issue time (8 hex seconds) and a MAC of it."""
        stamp = f"{int(time.time()):08x}"
        return stamp + self._diner_mac(stamp)

    def _diner_mac(self, stamp: str) -> str:
        return tbl.sign(self.secret, "diner-id", stamp).encode().hex()[:8]

    def diner_since_ms(self, diner: str) -> int | None:
        """Return when a diner id was issued (ms), or None when it is not one this gateway issued."""
        if len(diner) != 16 or not diner.isascii():
            return None
        stamp, mac = diner[:8], diner[8:]
        if not secrets.compare_digest(mac, self._diner_mac(stamp)):
            return None
        try:
            return int(stamp, 16) * 1000
        except ValueError:
            return None

    def note_participant(self, table_id: str, diner: str) -> None:
        """Remember that this phone acted at the table's open session (ordered, named itself, called staff)."""
        if not diner:
            return
        row = self.gw.store.read().execute(
            "SELECT id FROM ord_sessions WHERE table_id = ? AND closed_ms IS NULL AND paid_ms IS NULL",
            (table_id,)).fetchone()
        if row is None:  # after the payment nobody joins the party
            return
        acted = self._participants.setdefault(int(row[0]), set())
        if len(acted) < 64:
            acted.add(diner)
        while len(self._participants) > self.DINER_MAX_SESSIONS:
            self._participants.pop(next(iter(self._participants)))

    def table_view_for(self, table_id: str, diner: str) -> dict[str, Any]:
        """Return what this phone may see of the table: the shared view, except after the bill is paid.

        Once paid (and until staff clear the table), a phone that was not part of the session (its id
        was issued after the payment, or it is not one this gateway issued and it never acted at the
        table) sees only "this table is being cleared": never the previous party's nicknames, notes
        and bill. The party's own phones still see their bill.
        """
        return json.loads(self.table_view_json_for(table_id, diner))

    def table_view_json_for(self, table_id: str, diner: str) -> str:
        """``table_view_for`` as JSON text (what a phone polls)."""
        version, text, paid_ms, session, sold_out = self._view_entry(table_id)
        if paid_ms is None:
            return text
        since = self.diner_since_ms(diner)
        # Issued in a whole second before the payment (ids carry seconds; the payment's own second is "after").
        acted = self._participants.get(session, ())
        if (since is not None and since + 1000 <= paid_ms) or diner in acted:
            return text
        return json.dumps({"open": True, "can_order": False, "clearing": True, "paid": True, "cart": [],
                           "cart_total": 0, "rounds": [], "tasks": [], "sold_out": sold_out, "version": version},
                          ensure_ascii=False)

    def new_idem_key(self) -> str:
        """Return a fresh idempotency key for a submit form."""
        return secrets.token_urlsafe(12)

    def channels(self, table_id: str) -> tuple[str, str]:
        """The live channels a diner page of this table follows."""
        return (f"table:{table_id}", "menu")

    def view_version(self, table_id: str) -> int:
        """Return the current version of a table's diner view."""
        return self.notifier.version(*self.channels(table_id))

    def nickname(self, diner: str) -> str:
        """Return a diner's nickname (a default derived from the id when none was set)."""
        if diner:
            row = self.gw.store.read().execute("SELECT nickname FROM ord_diners WHERE id = ?", (diner,)).fetchone()
            if row:
                return row[0]
        return f"#{diner[:3].upper()}" if diner else ""

    def set_nickname(self, diner: str, nickname: str) -> None:
        """Remember a diner's nickname (no personal data: a seat or alias)."""
        nick = free_text(nickname, NICK_MAX)
        if not diner or not nick:
            raise OrderingError("Enter a short nickname or seat. 请输入昵称或座位号。", code="bad_nick")
        self.writer.call(lambda c: c.execute(
            "INSERT INTO ord_diners (id, nickname, created_ms) VALUES (?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET nickname = excluded.nickname", (diner, nick, now_ms())))

    def _open_session(self, c: Connection, table_id: str, *, create: bool) -> int:
        row = c.execute("SELECT id FROM ord_sessions WHERE table_id = ? AND closed_ms IS NULL",
                        (table_id,)).fetchone()
        if row:
            return int(row[0])
        if self.ocfg.require_open_table or not create or queue.is_pseudo(table_id):
            raise OrderingError("This table is not open for ordering yet. Please ask a member of staff. "
                                "本桌尚未开台，请联系服务员。", code="table_closed", status=409)
        return int(c.execute("INSERT INTO ord_sessions (table_id, opened_ms, opened_by) VALUES (?, ?, 'diner')",
                             (table_id, now_ms())).lastrowid)

    def _committed(self, table_id: str, *extra: str) -> Any:
        def done(_: Any) -> None:
            self.notifier.bump(f"table:{table_id}", "staff", *extra)
        return done

    def check_client_rate(self, client: str) -> None:
        """Count one diner write (any POST of the diner, queue and member pages) against its client's share,
        a quarter of ``ordering.cart_rate`` a minute; raise ``rate_limited`` when it is used up.

        ``client`` is what the client cannot choose (its address, or address and signed device cookie
        behind NAT). Checked before the table's own budget, so refused writes do not spend it.
        """
        self._check_rate(self.diner_limit, f"w:{client}")

    def _check_rate(self, limiter: RateLimiter, key: str) -> None:
        if not limiter.allow(key):
            self.counters["refused"] += 1
            raise OrderingError("Too many requests; please wait a moment. 操作太频繁，请稍候。",
                                code="rate_limited", status=429)

    def add_to_cart(self, ctx: TableCtx, item_id: str, selected: dict[str, list[str]], qty: Any, note: Any,
                    diner: str, client: str) -> int:
        """Add a line to the table's shared cart; return its id (after commit)."""
        table_id = ctx.table.id
        self._check_rate(self.write_limit, f"t:{table_id}")
        item = self.menu.items.get(item_id)
        if item is None or not item.active:
            raise OrderingError("This dish is not on the menu. 菜单中没有此菜品。", code="no_item", status=404)
        if item_id in self.sold_out:
            raise OrderingError(f"Sold out: {item.name_en}. 已估清：{item.name_zh}", code="sold_out", status=409)
        n = form_uint(qty, 1)
        if n is None or not 1 <= n <= MAX_QTY:
            raise OrderingError(f"Quantity must be 1-{MAX_QTY}. 数量须为1-{MAX_QTY}。", code="bad_qty")
        _, chosen = price_line(item, selected)
        mods = [[g.id, ch.id] for g, ch in chosen]
        text = free_text(note, NOTE_MAX)
        nick = self.nickname(diner)

        origin = self.origin_of(client)
        share = self.ocfg.cart_lines_per_client

        def write(c: Connection) -> int:
            sid = self._open_session(c, table_id, create=True)
            count = c.execute("SELECT count(*) FROM ord_cart WHERE session_id = ?", (sid,)).fetchone()[0]
            if count >= MAX_CART_LINES:
                raise OrderingError("The cart is full; send it to the kitchen first. 购物车已满。", code="cart_full")
            mine = c.execute("SELECT count(*) FROM ord_cart WHERE session_id = ? AND origin = ?",
                             (sid, origin)).fetchone()[0]
            if mine >= share:
                raise OrderingError(f"You have {mine} dishes in the cart; send it first. "
                                    f"您已加入{mine}个菜品，请先下单。", code="cart_share", status=409)
            return int(c.execute(
                "INSERT INTO ord_cart (session_id, item_id, qty, mods, note, diner, created_ms, origin) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (sid, item_id, n, json.dumps(mods), text, nick, now_ms(), origin)).lastrowid)
        return self.writer.submit(write, on_commit=self._committed(table_id)).result(30)

    def update_cart(self, ctx: TableCtx, line_id: int, qty: int) -> None:
        """Change a cart line's quantity (0 removes it); only lines of this table's open session."""
        table_id = ctx.table.id
        self._check_rate(self.write_limit, f"t:{table_id}")
        if not 0 <= qty <= MAX_QTY:
            raise OrderingError(f"Quantity must be 0-{MAX_QTY}.", code="bad_qty")

        def write(c: Connection) -> None:
            sid = self._open_session(c, table_id, create=False)
            if qty == 0:
                cur = c.execute("DELETE FROM ord_cart WHERE id = ? AND session_id = ?", (line_id, sid))
            else:
                cur = c.execute("UPDATE ord_cart SET qty = ? WHERE id = ? AND session_id = ?", (qty, line_id, sid))
            if cur.rowcount != 1:
                raise OrderingError("That line is not in this table's cart. 该菜品不在本桌购物车中。",
                                    code="not_your_line", status=404)
        self.writer.submit(write, on_commit=self._committed(table_id)).result(30)

    def submit(self, ctx: TableCtx, idem_key: str, diner: str, client: str) -> dict[str, Any]:
        """Send the table's cart to the kitchen as one numbered round (idempotent on ``idem_key``).

        Returns ``{"round": n, "total": cents, "duplicate": bool, "lines": k}`` once the round, its
        stock changes and its tickets (print jobs) are committed together.
        """
        table_id = ctx.table.id
        if queue.is_pseudo(table_id):  # a pre-order goes to the kitchen only from the table it is seated at
            raise OrderingError("Pre-orders are sent once you are seated. 入座后才能下单。", code="queued", status=409)
        key = clean(idem_key, 64)  # a request key the page made, not free text
        if len(key) < 8:
            raise OrderingError("Missing request key; please reload the page. 请刷新页面。", code="no_idem")
        scoped = f"{table_id}:{key}"
        known = self.gw.store.read().execute(
            "SELECT round_no, total_cents FROM ord_rounds WHERE idem_key = ?", (scoped,)).fetchone()
        if known:
            self.counters["duplicates"] += 1
            return {"round": known[0], "total": known[1], "duplicate": True, "lines": 0}
        self._check_rate(self.submit_limit, f"t:{table_id}")
        self._check_rate(self.client_limit, f"c:{client}")  # the client, not the page id it chooses
        nick = self.nickname(diner)
        result: dict[str, Any] = {}

        def write(c: Connection) -> dict[str, Any]:
            row = c.execute("SELECT round_no, total_cents FROM ord_rounds WHERE idem_key = ?", (scoped,)).fetchone()
            if row:  # a retry that raced the first attempt into the same batch
                return {"round": row[0], "total": row[1], "duplicate": True, "lines": 0}
            sid = self._open_session(c, table_id, create=True)
            out = kitchen.make_round(self, c, ctx.table, sid, scoped, nick)
            result.update(out)
            return out

        def committed(out: dict[str, Any]) -> None:
            if out.get("duplicate"):
                self.counters["duplicates"] += 1
                return
            self.counters["rounds"] += 1
            self.counters["tickets"] += len(out.get("stations", ()))
            changed = False
            for iid, left in out.get("stock", {}).items():
                self.stock[iid] = self.counted[iid] = left
                if left == 0 and iid not in self.sold_out:
                    self._flag_out.add(iid)
                    self.sold_out.add(iid)
                    changed = True
            chans = [f"kds:{s}" for s in out.get("stations", ())]
            if changed:
                chans.append("menu")
            self.notifier.bump(f"table:{table_id}", "staff", *chans)
        out = self.writer.submit(write, on_commit=committed).result(30)
        return {k: out[k] for k in ("round", "total", "duplicate", "lines")}

    def request(self, ctx: TableCtx, kind: str, line_id: int | None = None) -> int:
        """Create a staff task (call waiter, bill, rush a dish); an identical open one is reused."""
        if kind not in TASK_KINDS:
            raise OrderingError("unknown request", code="bad_task")
        table_id = ctx.table.id
        if queue.is_pseudo(table_id):
            raise OrderingError("Please ask at the desk. 请到前台咨询。", code="queued", status=409)
        self._check_rate(self.write_limit, f"t:{table_id}")

        def write(c: Connection) -> int:
            sid = self._open_session(c, table_id, create=False)
            if line_id is not None and not c.execute(
                    "SELECT 1 FROM ord_lines WHERE id = ? AND session_id = ?", (line_id, sid)).fetchone():
                raise OrderingError("That dish is not on this table's order.", code="not_your_line", status=404)
            row = c.execute("SELECT id FROM ord_tasks WHERE session_id = ? AND kind = ? AND ack_ms IS NULL "
                            "AND coalesce(line_id, 0) = ?", (sid, kind, line_id or 0)).fetchone()
            if row:
                return int(row[0])
            return int(c.execute("INSERT INTO ord_tasks (session_id, table_id, kind, line_id, created_ms) "
                                 "VALUES (?, ?, ?, ?, ?)", (sid, table_id, kind, line_id, now_ms())).lastrowid)
        return self.writer.submit(write, on_commit=self._committed(table_id)).result(30)

    # ------------------------------------------------------------------ diner view (read side)
    def table_view(self, table_id: str) -> dict[str, Any]:
        """Return what every phone at the table sees: session, cart, rounds with statuses, tasks."""
        return json.loads(self._view_entry(table_id)[1])

    def _view_entry(self, table_id: str) -> tuple[int, str, int | None, int, list[str]]:
        version = self.view_version(table_id)
        cached = self._views.get(table_id)
        if cached and cached[0] == version:
            return cached
        view = self._build_view(table_id)
        view["version"] = version
        entry = (version, json.dumps(view, ensure_ascii=False), view.get("paid_ms"), view.get("session", -1),
                 view["sold_out"])
        self._views[table_id] = entry
        return entry

    def _build_view(self, table_id: str) -> dict[str, Any]:
        conn = self.gw.store.read()
        row = conn.execute("SELECT id, covers, paid_ms FROM ord_sessions WHERE table_id = ? AND closed_ms IS NULL",
                           (table_id,)).fetchone()
        can_order = row is not None or not self.ocfg.require_open_table
        view: dict[str, Any] = {"open": row is not None, "can_order": can_order, "cart": [], "cart_total": 0,
                                "rounds": [], "tasks": [], "sold_out": sorted(self.sold_out)}
        if row is None:
            return view
        sid = row[0]
        for lid, iid, qty, mods, note, diner in conn.execute(
                "SELECT id, item_id, qty, mods, note, diner FROM ord_cart WHERE session_id = ? ORDER BY id", (sid,)):
            item = self.menu.items.get(iid)
            if item is None:
                continue
            selected: dict[str, list[str]] = {}
            for gid, cid in json.loads(mods):
                selected.setdefault(gid, []).append(cid)
            try:
                unit, chosen = price_line(item, selected)
            except OrderingError:
                unit, chosen = item.price, []
            view["cart"].append({"id": lid, "item": iid, "name_zh": item.name_zh, "name_en": item.name_en,
                                 "qty": qty, "unit": unit, "amount": unit * qty, "note": note, "diner": diner,
                                 "mods": [{"zh": ch.name_zh, "en": ch.name_en} for _, ch in chosen],
                                 "sold_out": iid in self.sold_out})
            view["cart_total"] += unit * qty
        rounds: dict[int, dict[str, Any]] = {}
        for rid, no, created, total in conn.execute(
                "SELECT id, round_no, created_ms, total_cents FROM ord_rounds WHERE session_id = ? ORDER BY round_no",
                (sid,)):
            rounds[rid] = {"no": no, "created_ms": created, "total": total, "lines": []}
        for lid, rid, zh, en, qty, mods, note, diner, status, comp in conn.execute(
                "SELECT id, round_id, name_zh, name_en, qty, mods, note, diner, status, comp FROM ord_lines "
                "WHERE session_id = ? ORDER BY id", (sid,)):
            if rid in rounds:
                rounds[rid]["lines"].append({"id": lid, "name_zh": zh, "name_en": en, "qty": qty,
                                             "mods": [{"zh": m["zh"], "en": m["en"]} for m in json.loads(mods)],
                                             "note": note, "diner": diner, "status": status, "comp": bool(comp)})
        view["rounds"] = list(rounds.values())
        for kind, line_id, ack in conn.execute(
                "SELECT kind, line_id, ack_ms FROM ord_tasks WHERE session_id = ? ORDER BY id DESC LIMIT 10", (sid,)):
            view["tasks"].append({"kind": kind, "line": line_id, "acked": ack is not None})
        view["paid"] = row[2] is not None
        view["paid_ms"] = row[2]
        view["session"] = sid
        return view

    # ------------------------------------------------------------------ kitchen and staff (delegated)
    def _on_print_update(self, job_id: str, state: str, printer: str) -> None:
        """Print service callback (its thread): hand the state change to the writer."""
        try:
            self.writer.submit(lambda c: kitchen.print_update(self, c, job_id, state, printer),
                               on_commit=self._bump_many)
        except Exception:
            _LOGGER.exception("Could not record print job state")

    def reconcile_prints(self, min_age_ms: int = 0) -> int:
        """Apply print job states the callback may have missed; return how many tickets changed."""
        printing = self.printing
        rows = self.gw.store.read().execute(
            "SELECT job_id, state, printer FROM ord_tickets WHERE state IN ('queued', 'sent') AND job_id IS NOT NULL "
            "AND created_ms <= ?", (now_ms() - min_age_ms,)).fetchall()
        changed = 0
        for job_id, state, printer in rows:
            job = printing.job(job_id)
            if job and (job["state"] != state or job["printer"] != printer):
                self._on_print_update(job_id, job["state"], job["printer"])
                changed += 1
        return changed

    def _bump_many(self, channels: Any) -> None:
        if channels:
            self.notifier.bump(*channels)

    def _on_scan(self, event: Any) -> None:
        """Scanner event (hub dispatch thread): a ticket or line code marks dishes served (划菜)."""
        code = str(event.data.get("code", ""))
        try:
            self.serve_code(code, f"scanner:{event.device}")
        except OrderingError:
            _LOGGER.debug("Scanned code is not an order line")

    def _run(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(self, conn, *args) -> (result, channels)`` in the writer; bump the channels after commit."""
        def write(c: Connection) -> Any:
            return fn(self, c, *args)
        result, _ = self.writer.submit(write, on_commit=lambda r: self._bump_many(r[1])).result(30)
        return result

    # ------------------------------------------------------------------ kitchen (KDS, scan-to-serve, reprint)
    def serve_code(self, code: str, who: str) -> int:
        """Mark the line or ticket behind a scanned code served; return how many lines changed."""
        return self._run(kitchen.serve_code, code, who)

    def start_ticket(self, ticket_id: int) -> int:
        """Start cooking a ticket."""
        return self._run(kitchen.start_ticket, ticket_id)

    def bump_ticket(self, ticket_id: int) -> int:
        """Bump a whole ticket (every dish served)."""
        return self._run(kitchen.bump_ticket, ticket_id)

    def bump_line(self, line_id: int) -> int:
        """Bump one dish (served)."""
        return self._run(kitchen.bump_line, line_id)

    def recall(self, station: str) -> int | None:
        """Bring back a station's last bumped ticket."""
        return self._run(kitchen.recall, station)

    def reprint(self, ticket_id: int, who: str) -> str:
        """Print a ticket again (marked REPRINT); audited."""
        return self._run(kitchen.reprint, ticket_id, who)

    def kds_view(self, station: str) -> dict[str, Any]:
        """Return the open tickets of a station (and mark unseen ones received: shown on a KDS)."""
        view = kitchen.kds_view(self, self.gw.store.read(), station)
        unseen = [t["id"] for t in view["tickets"] if t["received_ms"] is None]
        if unseen:
            self.writer.submit(lambda c: kitchen.mark_shown(self, c, unseen), on_commit=self._bump_many)
        return view

    # ------------------------------------------------------------------ front of house (staff pages)
    def open_table(self, table_id: str, covers: int, who: str) -> int:
        """开台: open a table for a party."""
        return self._run(floor.open_table, table_id, covers, who)

    def clear_table(self, table_id: str, who: str) -> int | None:
        """清台: close the table's session."""
        return self._run(floor.clear_table, table_id, who)

    def move_table(self, src: str, dst: str, who: str) -> int:
        """Move the party at ``src`` to the free table ``dst``."""
        return self._run(floor.move_table, src, dst, who)

    def merge_tables(self, src: str, dst: str, who: str) -> int:
        """并台: merge ``src`` into the open table ``dst``."""
        return self._run(floor.merge_tables, src, dst, who)

    def ack_task(self, task_id: int, who: str) -> int:
        """Acknowledge a diner request (call waiter, bill, rush)."""
        return self._run(floor.ack_task, task_id, who)

    def void_line(self, line_id: int, action: str, reason: str, who: str) -> int:
        """Void or comp an order line, with a reason; audited."""
        return self._run(floor.void_line, line_id, action, reason, who)

    def pay(self, table_id: str, method: str, reference: str, who: str) -> int:
        """Mark the table's bill paid; audited; the bill summary goes to HQ."""
        return self._run(floor.pay, table_id, method, reference, who)

    def refund(self, table_id: str, reason: str, who: str) -> int:
        """Refund the paid bill of an open table (every line voided, a negative payment); audited."""
        return self._run(floor.refund, table_id, reason, who)

    def print_receipt(self, table_id: str, who: str) -> str:
        """Print the table's bill as a receipt (with its member lines) on the receipt printer."""
        return self._run(floor.print_receipt, table_id, who)

    def add_bill_hook(self, hook: BillHook) -> None:
        """Let a service above ordering adjust bills and follow payments (members); called at its build."""
        self.bill_hooks.append(hook)

    def bill_on(self, conn: Connection, table_id: str) -> dict[str, Any]:
        """The table's bill read on the caller's connection (a hook's service inside its own write)."""
        return floor.bill(self, conn, table_id)

    def after_write(self, table_id: str) -> None:
        """Tell the table's pages and the staff pages that something on the bill changed."""
        self.notifier.bump(f"table:{table_id}", "staff")

    def table_paid(self, table_id: str) -> dict[str, Any]:
        """The open session of a table and whether it is paid (for pages of other domains)."""
        b = self.bill(table_id)
        return {"session": b["session"], "paid": b["paid"] > 0}

    def report_facts(self, since_ms: int, until_ms: int) -> dict[str, Any]:
        """Sales, bills, covers, items and ticket times of a window (the daily report; gateway/ordering/report.py)."""
        return report.day_facts(self.gw.store.read(), since_ms, until_ms)

    def dishes_by_hour(self, since_ms: int, until_ms: int) -> dict[int, int]:
        """Dishes ordered per hour (hour start in epoch ms → count): the sales anomaly series."""
        return report.dishes_by_hour(self.gw.store.read(), since_ms, until_ms)

    def table_map(self) -> list[dict[str, Any]]:
        """Every table with its session state, for the staff home page."""
        return floor.table_map(self, self.gw.store.read())

    def open_tasks(self) -> list[dict[str, Any]]:
        """Diner requests not yet acknowledged."""
        return floor.open_tasks(self.gw.store.read())

    def bill(self, table_id: str) -> dict[str, Any]:
        """The table's bill: lines, voids and comps, service charge, total."""
        return floor.bill(self, self.gw.store.read(), table_id)

    def tickets_of(self, session_id: int | None) -> list[tuple[Any, ...]]:
        """A session's kitchen tickets (id, round, station, state, printer, rerouted from, reprints)."""
        return self.gw.store.read().execute(
            "SELECT id, round_no, station, state, printer, rerouted_from, reprints FROM ord_tickets "
            "WHERE round_id IN (SELECT id FROM ord_rounds WHERE session_id = ?) ORDER BY id",
            (session_id if session_id is not None else -1,)).fetchall()

    # ------------------------------------------------------------------ the queue (取号 / 叫号 / 过号 / 入座)
    def queue_url(self) -> str:
        """The URL in the store's queue QR code."""
        return queue.store_url(self)

    def queue_check_token(self, token: str) -> None:
        """Refuse a queue page URL that is not this store's."""
        queue.check_store_token(self.secret, self.store_id, token)

    def queue_staff_list(self) -> dict[str, list[dict[str, Any]]]:
        """Today's numbers for the staff page."""
        return queue.staff_list(self.gw.store.read(), queue.day_of(now_ms()))

    def queue_entry(self, d: str) -> queue.Entry | None:
        """Today's number of the phone whose page id is ``d``, if it has one."""
        if not d:
            return None
        return queue.for_phone(self.gw.store.read(), queue.phone_key(self.secret, d), queue.day_of(now_ms()))

    def queue_entry_view(self, entry: queue.Entry) -> dict[str, Any]:
        """What the diner's queue page shows: status, position, estimated wait."""
        return queue.entry_view(self, self.gw.store.read(), entry)

    def queue_take(self, d: str, party_text: Any, nickname: Any, client: str) -> queue.Entry:
        """Take a number for the phone ``d`` (limits keyed on ``client``, which the diner cannot choose)."""
        party, nick = queue.validate_take(party_text, nickname)
        self._check_rate(self.client_limit, f"q:{client}")
        self._check_rate(self.write_limit, "queue")
        return self._run(queue.take, queue.phone_key(self.secret, d), d, party, nick, self.origin_of(client))

    def queue_leave(self, entry_id: int) -> queue.Entry:
        """取消排队: the diner leaves; the pre-order is dropped."""
        return self._run(queue.leave, entry_id)

    def queue_call(self, entry_id: int, who: str) -> queue.Entry:
        """叫号: call a number."""
        return self._run(queue.call, entry_id, who)

    def queue_skip(self, entry_id: int, who: str) -> queue.Entry:
        """过号: skip a number (its pre-order is dropped)."""
        return self._run(queue.skip, entry_id, who)

    def queue_seat(self, entry_id: int, table_id: str, who: str) -> queue.Entry:
        """Seat a number at a table: its pre-order becomes the table's cart."""
        return self._run(queue.seat, entry_id, table_id, who)
