"""The menu: validation of the import format, storage, an in-memory snapshot, server-side prices.

Import format (JSON, also what ``storegw menu export`` prints)::

    {"currency": "CNY",
     "stations": [{"id": "hot", "name_zh": "热菜", "name_en": "Hot", "printer": "", "backup": "", "kds": true}],
     "categories": [{"id": "hot", "name_zh": "热菜", "name_en": "Hot dishes", "station": "hot",
        "items": [{"id": "h01", "name_zh": "宫保鸡丁", "name_en": "Kung Pao chicken", "price": 48,
                   "allergens": ["peanut"], "stock": null, "station": "", "photo": "",
                   "options": [{"id": "spice", "name_zh": "辣度", "name_en": "Spice", "required": true,
                                "max": 1, "choices": [{"id": "mild", "name_zh": "微辣", "name_en": "Mild",
                                                        "price": 0, "default": true, "station": ""}]}]}]}]}

Routing: a choice's ``station`` wins over the item's, which wins over the category's.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from gateway.core import text as textclean
from gateway.core.errors import CardNumberRefused, OrderingError
from gateway.store.db import Connection

ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
DEFAULT_STATION = "kitchen"

# EU-14 style list plus what Chinese kitchens flag most; stores may use their own ids too.
ALLERGENS: dict[str, tuple[str, str]] = {
    "gluten": ("麸质", "Gluten"), "crustacean": ("甲壳类", "Crustaceans"), "egg": ("蛋", "Egg"),
    "fish": ("鱼", "Fish"), "peanut": ("花生", "Peanut"), "soy": ("大豆", "Soy"), "milk": ("乳", "Milk"),
    "nuts": ("坚果", "Tree nuts"), "celery": ("芹菜", "Celery"), "mustard": ("芥末", "Mustard"),
    "sesame": ("芝麻", "Sesame"), "sulphite": ("亚硫酸盐", "Sulphites"), "lupin": ("羽扇豆", "Lupin"),
    "mollusc": ("软体动物", "Molluscs"), "pork": ("猪肉", "Pork"), "alcohol": ("酒精", "Alcohol"),
}


def allergen_name(code: str, lang: str) -> str:
    """Return an allergen's display name (the code itself when unknown)."""
    names = ALLERGENS.get(code)
    if names is None:
        return code
    return names[0] if lang == "zh" else names[1]


@dataclass(frozen=True)
class Choice:
    """One choice of an option group, with its price delta in cents."""

    id: str
    name_zh: str
    name_en: str
    delta: int = 0
    default: bool = False
    station: str = ""


@dataclass(frozen=True)
class Group:
    """An option/modifier group of an item (required or optional, up to ``max`` choices)."""

    id: str
    name_zh: str
    name_en: str
    required: bool
    max: int
    choices: tuple[Choice, ...]

    def choice(self, cid: str) -> Choice | None:
        """Return the choice with this id."""
        return next((c for c in self.choices if c.id == cid), None)


@dataclass(frozen=True)
class Item:
    """A menu item as the server prices it."""

    id: str
    category_id: str
    name_zh: str
    name_en: str
    price: int
    allergens: tuple[str, ...] = ()
    groups: tuple[Group, ...] = ()
    desc_zh: str = ""
    desc_en: str = ""
    photo: str = ""
    station: str = ""
    active: bool = True


@dataclass(frozen=True)
class Category:
    """A menu category with its items in order."""

    id: str
    name_zh: str
    name_en: str
    station: str
    items: tuple[Item, ...]


@dataclass(frozen=True)
class Station:
    """A kitchen station: its printer, backup printer and whether it has a KDS screen."""

    id: str
    name_zh: str
    name_en: str
    printer: str = ""
    backup: str = ""
    kds: bool = True


@dataclass
class Menu:
    """An immutable-ish snapshot of the menu plus live stock (replaced on every menu change)."""

    currency: str = "CNY"
    categories: tuple[Category, ...] = ()
    stations: dict[str, Station] = field(default_factory=dict)
    items: dict[str, Item] = field(default_factory=dict)
    version: int = 0

    def station_for(self, item: Item, choices: list[tuple[Group, Choice]]) -> str:
        """Route an ordered line: modifier station, else item, else category, else the default."""
        for _, ch in choices:
            if ch.station:
                return ch.station
        if item.station:
            return item.station
        for cat in self.categories:
            if cat.id == item.category_id and cat.station:
                return cat.station
        return DEFAULT_STATION

    def station(self, sid: str) -> Station:
        """Return a station (a KDS-only default when the menu does not define it)."""
        return self.stations.get(sid) or Station(sid, sid, sid)


def price_line(item: Item, selected: dict[str, list[str]]) -> tuple[int, list[tuple[Group, Choice]]]:
    """Validate a selection of choices against the item's groups; return unit price and choices."""
    chosen: list[tuple[Group, Choice]] = []
    known = {g.id for g in item.groups}
    for gid in selected:
        if gid not in known:
            raise OrderingError(f"unknown option group {gid!r}", code="bad_option")
    for g in item.groups:
        ids = [c for c in dict.fromkeys(selected.get(g.id, [])) if c]
        if not ids and g.required:
            ids = [c.id for c in g.choices if c.default][:1]
        if not ids and g.required:
            raise OrderingError(f"choose {g.name_en} / 请选择{g.name_zh}", code="option_required")
        if len(ids) > g.max:
            raise OrderingError(f"choose at most {g.max} for {g.name_en}", code="bad_option")
        for cid in ids:
            ch = g.choice(cid)
            if ch is None:
                raise OrderingError(f"unknown choice {cid!r}", code="bad_option")
            chosen.append((g, ch))
    unit = item.price + sum(ch.delta for _, ch in chosen)
    return max(0, unit), chosen


# ---------------------------------------------------------------------------- import / export

def _cents(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise OrderingError(f"{where}: expected a price in yuan such as 38 or 12.5, found {value!r}")
    return round(value * 100)


def _text(obj: dict[str, Any], key: str, where: str, *, required: bool = True, limit: int = 80) -> str:
    value = obj.get(key, "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise OrderingError(f"{where}.{key}: expected a non-empty string")
    if len(value) > limit:
        raise OrderingError(f"{where}.{key}: longer than {limit} characters")
    try:
        text = textclean.free_text(value, limit)
    except CardNumberRefused as err:
        raise OrderingError(f"{where}.{key}: {err}", code=err.code) from None
    if required and not text:
        raise OrderingError(f"{where}.{key}: expected visible text")
    return text


def _id(obj: dict[str, Any], where: str) -> str:
    value = obj.get("id")
    if not isinstance(value, str) or not ID_RE.fullmatch(value):
        raise OrderingError(f"{where}.id: expected 1-32 of A-Z a-z 0-9 _ -, found {value!r}")
    return value


def parse_menu(doc: Any) -> Menu:
    """Validate an import document into a Menu (raises OrderingError naming the bad field)."""
    if not isinstance(doc, dict):
        raise OrderingError("menu: expected a JSON object with \"categories\"")
    stations: dict[str, Station] = {}
    for i, s in enumerate(doc.get("stations", [])):
        where = f"stations[{i}]"
        sid = _id(s, where)
        stations[sid] = Station(sid, _text(s, "name_zh", where), _text(s, "name_en", where),
                                printer=_text(s, "printer", where, required=False),
                                backup=_text(s, "backup", where, required=False), kds=bool(s.get("kds", True)))
    cats: list[Category] = []
    items: dict[str, Item] = {}
    if not isinstance(doc.get("categories"), list) or not doc["categories"]:
        raise OrderingError("menu.categories: expected a non-empty list")
    for ci, c in enumerate(doc["categories"]):
        cw = f"categories[{ci}]"
        cid = _id(c, cw)
        cstation = _text(c, "station", cw, required=False)
        citems = []
        for ii, it in enumerate(c.get("items", [])):
            iw = f"{cw}.items[{ii}]"
            iid = _id(it, iw)
            if iid in items:
                raise OrderingError(f"{iw}.id: item id {iid!r} is used twice")
            groups = []
            for gi, g in enumerate(it.get("options", [])):
                gw = f"{iw}.options[{gi}]"
                choices = []
                for hi, h in enumerate(g.get("choices", [])):
                    hw = f"{gw}.choices[{hi}]"
                    choices.append(Choice(_id(h, hw), _text(h, "name_zh", hw), _text(h, "name_en", hw),
                                          _cents(h.get("price", 0), f"{hw}.price"), bool(h.get("default")),
                                          _text(h, "station", hw, required=False)))
                if not choices:
                    raise OrderingError(f"{gw}.choices: expected at least one choice")
                gmax = g.get("max", 1)
                if not isinstance(gmax, int) or gmax < 1:
                    raise OrderingError(f"{gw}.max: expected a whole number >= 1")
                groups.append(Group(_id(g, gw), _text(g, "name_zh", gw), _text(g, "name_en", gw),
                                    bool(g.get("required")), gmax, tuple(choices)))
            allergens = it.get("allergens", [])
            if not isinstance(allergens, list) or not all(isinstance(a, str) and ID_RE.fullmatch(a) for a in allergens):
                raise OrderingError(f"{iw}.allergens: expected a list of allergen ids such as [\"peanut\"]")
            item = Item(iid, cid, _text(it, "name_zh", iw), _text(it, "name_en", iw),
                        _cents(it.get("price"), f"{iw}.price"), tuple(allergens), tuple(groups),
                        _text(it, "desc_zh", iw, required=False, limit=200),
                        _text(it, "desc_en", iw, required=False, limit=200),
                        _text(it, "photo", iw, required=False, limit=200),
                        _text(it, "station", iw, required=False), bool(it.get("active", True)))
            items[iid] = item
            citems.append(item)
        cats.append(Category(cid, _text(c, "name_zh", cw), _text(c, "name_en", cw), cstation, tuple(citems)))
    return Menu(str(doc.get("currency", "CNY")), tuple(cats), stations, items)


def stock_of(doc: dict[str, Any]) -> dict[str, int | None]:
    """Return the counted stock declared in an import document (item id -> count or None)."""
    out: dict[str, int | None] = {}
    for c in doc.get("categories", []):
        for it in c.get("items", []):
            stock = it.get("stock")
            if stock is not None and (isinstance(stock, bool) or not isinstance(stock, int) or stock < 0):
                raise OrderingError(f"item {it.get('id')}: stock must be a whole number >= 0 or null")
            out[it["id"]] = stock
    return out


def sample_document() -> dict[str, Any]:
    """Return the bilingual sample menu shipped with the package (the demo's menu)."""
    text = resources.files("gateway.ordering").joinpath("sample_menu.json").read_text(encoding="utf-8")
    return json.loads(text)


def _choice_doc(ch: Choice) -> dict[str, Any]:
    out: dict[str, Any] = {"id": ch.id, "name_zh": ch.name_zh, "name_en": ch.name_en, "price": ch.delta / 100}
    if ch.default:
        out["default"] = True
    if ch.station:
        out["station"] = ch.station
    return out


def write_menu(conn: Connection, menu: Menu, stock: dict[str, int | None]) -> None:
    """Replace the stored menu (inside the caller's transaction)."""
    conn.execute("DELETE FROM ord_stations")
    conn.execute("DELETE FROM ord_categories")
    conn.execute("DELETE FROM ord_items")
    for pos, s in enumerate(menu.stations.values()):
        conn.execute("INSERT INTO ord_stations (id, pos, name_zh, name_en, printer, backup, kds) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?)", (s.id, pos, s.name_zh, s.name_en, s.printer, s.backup, int(s.kds)))
    for cpos, c in enumerate(menu.categories):
        conn.execute("INSERT INTO ord_categories (id, pos, name_zh, name_en, station) VALUES (?, ?, ?, ?, ?)",
                     (c.id, cpos, c.name_zh, c.name_en, c.station))
        for ipos, it in enumerate(c.items):
            groups = [{"id": g.id, "name_zh": g.name_zh, "name_en": g.name_en, "required": g.required, "max": g.max,
                       "choices": [_choice_doc(ch) for ch in g.choices]} for g in it.groups]
            stk = stock.get(it.id)
            conn.execute(
                "INSERT INTO ord_items (id, category_id, pos, name_zh, name_en, desc_zh, desc_en, price_cents, "
                "allergens, options, photo, station, active, sold_out, stock) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (it.id, c.id, ipos, it.name_zh, it.name_en, it.desc_zh, it.desc_en, it.price,
                 json.dumps(list(it.allergens)), json.dumps(groups, ensure_ascii=False), it.photo, it.station,
                 int(it.active), int(stk == 0), stk))
    conn.execute("INSERT INTO ord_meta (key, value) VALUES ('currency', ?) "
                 "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (menu.currency,))


def export_document(conn: Connection) -> dict[str, Any]:
    """Return the stored menu (with stock) in the import format."""
    cur = conn.execute("SELECT value FROM ord_meta WHERE key = 'currency'").fetchone()
    doc: dict[str, Any] = {"currency": cur[0] if cur else "CNY", "stations": [], "categories": []}
    for sid, zh, en, printer, backup, kds in conn.execute(
            "SELECT id, name_zh, name_en, printer, backup, kds FROM ord_stations ORDER BY pos"):
        doc["stations"].append({"id": sid, "name_zh": zh, "name_en": en, "printer": printer, "backup": backup,
                                "kds": bool(kds)})
    for cid, zh, en, station in conn.execute(
            "SELECT id, name_zh, name_en, station FROM ord_categories ORDER BY pos").fetchall():
        items = []
        for row in conn.execute(
                "SELECT id, name_zh, name_en, desc_zh, desc_en, price_cents, allergens, options, photo, station, "
                "active, sold_out, stock FROM ord_items WHERE category_id = ? ORDER BY pos", (cid,)):
            it: dict[str, Any] = {"id": row[0], "name_zh": row[1], "name_en": row[2], "price": row[5] / 100,
                                  "allergens": json.loads(row[6]), "options": json.loads(row[7])}
            for key, value in (("desc_zh", row[3]), ("desc_en", row[4]), ("photo", row[8]), ("station", row[9])):
                if value:
                    it[key] = value
            if not row[10]:
                it["active"] = False
            if row[12] is not None:
                it["stock"] = row[12]
            elif row[11]:
                it["stock"] = 0
            items.append(it)
        doc["categories"].append({"id": cid, "name_zh": zh, "name_en": en, "station": station, "items": items})
    return doc


def load_menu(conn: Connection) -> tuple[Menu, dict[str, int | None], set[str]]:
    """Load the stored menu; return it with counted stock and the sold-out (估清) item ids."""
    doc = export_document(conn)
    if not doc["categories"]:
        return Menu(doc["currency"]), {}, set()
    menu = parse_menu(doc)
    stock: dict[str, int | None] = {}
    sold_out: set[str] = set()
    for iid, so, stk in conn.execute("SELECT id, sold_out, stock FROM ord_items"):
        stock[iid] = stk
        if so or stk == 0:
            sold_out.add(iid)
    return menu, stock, sold_out
