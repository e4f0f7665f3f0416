"""Queue numbers (取号) and pre-orders while queueing (预点餐).

A diner without a table scans the store's queue QR (``/q/{store token}``), gives a party size (and
optionally a nickname: nothing else) and gets a number: ``A`` for parties up to ``LARGE_PARTY - 1``,
``B`` from ``LARGE_PARTY``, numbered per day. Taking a number is idempotent per phone (its random
page id, stored only as a MAC).

Each number holds a pre-order session on a pseudo table ``~q{id}`` (never a valid table id), so the
pre-order cart is an ordinary cart: same menu, options, allergen filter and server-side prices. It
can never be sent to the kitchen from the queue. Staff call (叫号), skip (过号) or seat a number at a
table: seating moves the session to the table (or its cart into the table's open session), so the
cart becomes the table's cart, not yet sent; the diners send it as round 1.

Write functions take ``(ctx, conn, ...)`` and return ``(result, channels)``; the service runs them in
the writer (``OrderingService.queue_take`` and the others).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.core.errors import OrderingError
from gateway.core.models import now_ms
from gateway.core.text import form_uint, free_text, same_secret
from gateway.ordering import tables as tbl
from gateway.staff.accounts import audit
from gateway.store.db import Connection

if TYPE_CHECKING:
    from gateway.ordering.context import OrderingContext

PSEUDO = "~q"            # pseudo table ids of pre-order sessions (``~`` is never in a table id)
CHANNEL = "queue"        # bumped on every queue change (positions move for everyone)
LARGE_PARTY = 5          # parties of this size and up get B numbers
PARTY_MAX = 30
NICK_MAX = 24
DEFAULT_TURN_MIN = 5     # minutes per number ahead until today's seatings give a better figure
TOKEN_VERSION = 1
STATUSES = ("waiting", "called", "seated", "skipped", "left")

_COLS = ("id, prefix, number, party, nickname, created_ms, called_ms, calls, skipped_ms, seated_ms, table_id, "
         "session_id, left_ms")


@dataclass(frozen=True)
class Entry:
    """One queue number."""

    id: int
    prefix: str
    number: int
    party: int
    nickname: str
    created_ms: int
    called_ms: int | None
    calls: int
    skipped_ms: int | None
    seated_ms: int | None
    table_id: str | None
    session_id: int | None
    left_ms: int | None = None

    @property
    def label(self) -> str:
        """The number as called out and shown: A023."""
        return f"{self.prefix}{self.number:03d}"

    @property
    def status(self) -> str:
        """waiting, called, seated, skipped or left."""
        if self.seated_ms is not None:
            return "seated"
        if self.skipped_ms is not None:
            return "skipped"
        if self.left_ms is not None:
            return "left"
        return "called" if self.called_ms is not None else "waiting"

    @property
    def active(self) -> bool:
        """Still in the queue (waiting or called): its pre-order cart may change."""
        return self.status in ("waiting", "called")

    @property
    def pseudo_table(self) -> str:
        """The pseudo table id holding this number's pre-order session."""
        return pseudo_table(self.id)


def pseudo_table(entry_id: int) -> str:
    """Return the pseudo table id of a queue number's pre-order session."""
    return f"{PSEUDO}{entry_id}"


def is_pseudo(table_id: str) -> bool:
    """Whether a table id is a queue pre-order (never sent to the kitchen)."""
    return table_id.startswith(PSEUDO)


def day_of(ms: int) -> str:
    """The store-local day of a timestamp (numbers restart every day)."""
    return time.strftime("%Y%m%d", time.localtime(ms / 1000))


def prefix_for(party: int) -> str:
    """A for small parties, B for large ones."""
    return "B" if party >= LARGE_PARTY else "A"


# ---------------------------------------------------------------------------- the store's queue QR

def store_token(secret: bytes, store: str) -> str:
    """Return the signed token in the store's queue QR code."""
    return f"q{TOKEN_VERSION}.{tbl.sign(secret, 'queue-qr', f'{store}|{TOKEN_VERSION}')}"


def check_store_token(secret: bytes, store: str, token: str) -> None:
    """Refuse a forged or foreign queue code (404)."""
    if len(token) > 64 or not same_secret(token, store_token(secret, store)):
        raise OrderingError("This queue code is not valid. 排队码无效。", code="bad_token", status=404)


def queue_url(public_host: str, token: str, *, https: bool = False) -> str:
    """Return the URL the store's queue QR code points at."""
    return f"{'https' if https else 'http'}://{public_host}/q/{token}"


def phone_key(secret: bytes, diner: str) -> str:
    """A MAC of the phone's random page id: the same phone finds its number, nothing is learnt from it."""
    return tbl.sign(secret, "queue-phone", diner)


# ---------------------------------------------------------------------------- reads

def _entry(row: Any) -> Entry:
    return Entry(*row)


def get(conn: Connection, entry_id: int) -> Entry | None:
    """Return a queue number by id."""
    row = conn.execute(f"SELECT {_COLS} FROM ord_queue WHERE id = ?", (entry_id,)).fetchone()  # noqa: S608
    return _entry(row) if row else None


def for_phone(conn: Connection, phone: str, day: str) -> Entry | None:
    """Return the phone's latest number of the day."""
    row = conn.execute(f"SELECT {_COLS} FROM ord_queue WHERE phone = ? AND day = ? "  # noqa: S608
                       "ORDER BY id DESC LIMIT 1", (phone, day)).fetchone()
    return _entry(row) if row else None


def turn_minutes(conn: Connection, prefix: str, day: str) -> int:
    """Minutes per number ahead: the mean gap between today's last seatings of this prefix."""
    seated = [r[0] for r in conn.execute(
        "SELECT seated_ms FROM ord_queue WHERE day = ? AND prefix = ? AND seated_ms IS NOT NULL "
        "ORDER BY seated_ms DESC LIMIT 6", (day, prefix))]
    if len(seated) < 3:
        return DEFAULT_TURN_MIN
    gaps = [a - b for a, b in zip(seated, seated[1:], strict=False)]
    return max(1, min(30, round(sum(gaps) / len(gaps) / 60000)))


def position(conn: Connection, entry: Entry, day: str) -> dict[str, int]:
    """Return ``{"ahead", "position", "wait_min"}`` for an active number (its prefix's line)."""
    if not entry.active:
        return {"ahead": 0, "position": 0, "wait_min": 0}
    ahead = conn.execute("SELECT count(*) FROM ord_queue WHERE day = ? AND prefix = ? AND id < ? "
                         "AND seated_ms IS NULL AND skipped_ms IS NULL", (day, entry.prefix, entry.id)).fetchone()[0]
    turn = turn_minutes(conn, entry.prefix, day)
    return {"ahead": ahead, "position": ahead + 1, "wait_min": 0 if entry.called_ms else (ahead + 1) * turn}


def entry_view(svc: OrderingContext, conn: Connection, entry: Entry) -> dict[str, Any]:
    """What the diner's queue page shows (no personal data beyond the nickname they chose)."""
    view = {"id": entry.id, "number": entry.label, "party": entry.party, "nickname": entry.nickname,
            "status": entry.status, "calls": entry.calls, "table": None, "table_label": None,
            **position(conn, entry, day_of(entry.created_ms))}
    if entry.status == "seated" and entry.table_id in svc.tables:
        view["table"] = entry.table_id
        view["table_label"] = svc.tables[entry.table_id].label
    return view


def staff_list(conn: Connection, day: str) -> dict[str, list[dict[str, Any]]]:
    """Today's numbers for the staff page: the active ones in order, then the last done ones."""
    carts = {sid: (n, total) for sid, n, total in conn.execute(
        "SELECT c.session_id, sum(c.qty), sum(c.qty * i.price_cents) FROM ord_cart c "
        "JOIN ord_items i ON i.id = c.item_id JOIN ord_queue q ON q.session_id = c.session_id "
        "WHERE q.day = ? GROUP BY c.session_id", (day,))}
    active: list[dict[str, Any]] = []
    done: list[dict[str, Any]] = []
    for row in conn.execute(f"SELECT {_COLS} FROM ord_queue WHERE day = ? ORDER BY id", (day,)):  # noqa: S608
        e = _entry(row)
        dishes, total = carts.get(e.session_id, (0, 0)) if e.active else (0, 0)
        item = {"id": e.id, "number": e.label, "prefix": e.prefix, "party": e.party, "nickname": e.nickname,
                "status": e.status, "calls": e.calls, "created_ms": e.created_ms, "table": e.table_id,
                "dishes": dishes or 0, "preorder_total": total or 0}
        (active if e.active else done).append(item)
    return {"active": active, "done": done[-10:][::-1]}


# ---------------------------------------------------------------------------- writes (in the writer)

def validate_take(party: Any, nickname: Any) -> tuple[int, str]:
    """Check a take-a-number form: party 1-PARTY_MAX, nickname optional and at most NICK_MAX characters."""
    n = form_uint(party, 0) or 0
    if not 1 <= n <= PARTY_MAX:
        raise OrderingError(f"Party size must be 1-{PARTY_MAX}. 人数须为1-{PARTY_MAX}。", code="bad_party")
    raw = nickname if isinstance(nickname, str) else ""
    if len(raw) > NICK_MAX:
        raise OrderingError(f"The nickname is too long (at most {NICK_MAX}). 昵称过长。", code="bad_nick")
    return n, free_text(raw, NICK_MAX)


def open_for_origin(c: Connection, origin: str, day: str) -> int:
    """How many numbers taken by this client (``origin``) are still in the queue today."""
    return int(c.execute("SELECT count(*) FROM ord_queue WHERE origin = ? AND day = ? AND seated_ms IS NULL "
                         "AND skipped_ms IS NULL AND left_ms IS NULL", (origin, day)).fetchone()[0])


def take(svc: OrderingContext, c: Connection, phone: str, diner: str, party: int,
         nickname: str, origin: str = "") -> tuple[Entry, list[str]]:
    """Take a number (or return this phone's number still in the queue) with its pre-order session.

    ``origin`` is a MAC of the client (its address, not the page id it chooses): one client holds at
    most ``ordering.queue_per_client`` open numbers.
    """
    ts = now_ms()
    day = day_of(ts)
    known = for_phone(c, phone, day)
    if known is not None and known.active:
        return known, []
    limit = svc.ocfg.queue_per_client
    if origin and open_for_origin(c, origin, day) >= limit:
        raise OrderingError(f"This phone already holds {limit} queue number(s); leave one first. "
                            f"此手机已取{limit}个号，请先取消一个。", code="queue_limit", status=429)
    prefix = prefix_for(party)
    number = c.execute("SELECT coalesce(max(number), 0) + 1 FROM ord_queue WHERE day = ? AND prefix = ?",
                       (day, prefix)).fetchone()[0]
    entry_id = int(c.execute(
        "INSERT INTO ord_queue (number, token, party, created_ms, prefix, day, phone, nickname, origin) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (number, f"{day}:{prefix}:{number}", party, ts, prefix, day, phone, nickname, origin)).lastrowid)
    sid = int(c.execute("INSERT INTO ord_sessions (table_id, opened_ms, opened_by, covers) VALUES (?, ?, 'queue', ?)",
                        (pseudo_table(entry_id), ts, party)).lastrowid)
    c.execute("UPDATE ord_queue SET session_id = ? WHERE id = ?", (sid, entry_id))
    if nickname and diner:
        c.execute("INSERT INTO ord_diners (id, nickname, created_ms) VALUES (?, ?, ?) "
                  "ON CONFLICT (id) DO UPDATE SET nickname = excluded.nickname", (diner, nickname, ts))
    entry = get(c, entry_id)
    assert entry is not None
    return entry, [CHANNEL, "staff"]


def _need(c: Connection, entry_id: int) -> Entry:
    entry = get(c, entry_id)
    if entry is None:
        raise OrderingError("no such queue number", code="no_queue", status=404)
    return entry


def call(svc: OrderingContext, c: Connection, entry_id: int, who: str) -> tuple[Entry, list[str]]:
    """叫号: call a waiting (or re-call a called) number; its page shows "please come to the desk"."""
    entry = _need(c, entry_id)
    if not entry.active:
        raise OrderingError(f"{entry.label} is already {entry.status}.", code="not_waiting", status=409)
    c.execute("UPDATE ord_queue SET called_ms = ?, calls = calls + 1 WHERE id = ?", (now_ms(), entry_id))
    audit(c, who, "queue-call", f"queue:{entry.label}")
    return _need(c, entry_id), [CHANNEL, "staff", f"table:{entry.pseudo_table}"]


def skip(svc: OrderingContext, c: Connection, entry_id: int, who: str) -> tuple[Entry, list[str]]:
    """过号: skip a number; its pre-order cart is dropped (the diner may take a new number)."""
    entry = _end(c, entry_id, "skipped_ms")
    audit(c, who, "queue-skip", f"queue:{entry.label}")
    return _need(c, entry_id), [CHANNEL, "staff", f"table:{entry.pseudo_table}"]


def leave(svc: OrderingContext, c: Connection, entry_id: int) -> tuple[Entry, list[str]]:
    """取消排队: the diner leaves the queue from their own page; the pre-order cart is dropped."""
    entry = _end(c, entry_id, "left_ms")
    return _need(c, entry_id), [CHANNEL, "staff", f"table:{entry.pseudo_table}"]


def _end(c: Connection, entry_id: int, column: str) -> Entry:
    """Take an active number out of the queue (skipped or left): drop its cart, close its session."""
    entry = _need(c, entry_id)
    if not entry.active:
        raise OrderingError(f"{entry.label} is already {entry.status}.", code="not_waiting", status=409)
    ts = now_ms()
    c.execute(f"UPDATE ord_queue SET {column} = ? WHERE id = ?", (ts, entry_id))  # noqa: S608 - a column name from code
    if entry.session_id is not None:
        c.execute("DELETE FROM ord_cart WHERE session_id = ?", (entry.session_id,))
        c.execute("UPDATE ord_sessions SET closed_ms = ? WHERE id = ? AND closed_ms IS NULL", (ts, entry.session_id))
    return entry


def seat(svc: OrderingContext, c: Connection, entry_id: int, table_id: str, who: str) -> tuple[Entry, list[str]]:
    """Seat a number at a table: its pre-order cart becomes the table's cart (not sent yet).

    A free table gets the pre-order session itself (opened, covers = party); a table that is
    already open receives the cart lines. Seating the same number at the same table again is a no-op.
    """
    entry = _need(c, entry_id)
    if entry.status == "seated":
        if entry.table_id == table_id:
            return entry, []
        raise OrderingError(f"{entry.label} is already seated at {entry.table_id}.", code="already_seated",
                            status=409)
    if not entry.active:
        raise OrderingError(f"{entry.label} was skipped; ask them to take a new number.", code="not_waiting",
                            status=409)
    if table_id not in svc.tables:
        raise OrderingError("no such table", code="no_table", status=404)
    ts = now_ms()
    row = c.execute("SELECT id FROM ord_sessions WHERE table_id = ? AND closed_ms IS NULL", (table_id,)).fetchone()
    qsid = entry.session_id
    if row is None and qsid is not None:
        c.execute("UPDATE ord_sessions SET table_id = ?, opened_ms = ?, opened_by = ?, covers = ? "
                  "WHERE id = ? AND closed_ms IS NULL", (table_id, ts, who, entry.party, qsid))
    elif row is None:
        qsid = c.execute("INSERT INTO ord_sessions (table_id, opened_ms, opened_by, covers) VALUES (?, ?, ?, ?)",
                         (table_id, ts, who, entry.party)).lastrowid
        # the party's table session: its tickets carry the queue number
        c.execute("UPDATE ord_queue SET session_id = ? WHERE id = ?", (qsid, entry_id))
    else:
        sid = int(row[0])
        if qsid is not None:
            c.execute("UPDATE ord_cart SET session_id = ? WHERE session_id = ?", (sid, qsid))
            c.execute("UPDATE ord_sessions SET closed_ms = ? WHERE id = ? AND closed_ms IS NULL", (ts, qsid))
        c.execute("UPDATE ord_sessions SET covers = CASE WHEN covers = 0 THEN ? ELSE covers END WHERE id = ?",
                  (entry.party, sid))
    c.execute("UPDATE ord_queue SET seated_ms = ?, table_id = ? WHERE id = ?", (ts, table_id, entry_id))
    audit(c, who, "queue-seat", f"queue:{entry.label}", f"table {table_id}")
    return _need(c, entry_id), [CHANNEL, "staff", f"table:{entry.pseudo_table}", f"table:{table_id}"]


def store_url(svc: OrderingContext) -> str:
    """Return the URL in the store's queue QR code (``storegw tables queue-url``)."""
    host = svc.cfg.web.public_host or svc.cfg.web.listen
    return queue_url(host, store_token(svc.secret, svc.store_id), https=svc.ocfg.https)
