"""The stock service: ingredients, recipes (BOM), consumption at order commit, 估清 from stock.

Ordering sits above and calls this facade **inside its own write** (``consume`` when a round is
committed, ``release`` when a line is voided), so the round and its ingredients commit or fail
together: two tables racing for the last portion are two savepoints of the single writer, and the
second reads what the first left. After every commit that changed stock, the listeners
(``on_change``; ordering's live pages) get the items whose computable portions changed.

State in memory (on hand, portions) changes only on the writer thread, inside the transaction,
and registers its undo with ``gateway.store.writer.on_rollback``, so memory follows the database.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable
from typing import Any

from gateway.core.errors import OrderingError
from gateway.core.models import now_ms
from gateway.spine.context import Periodic, ServiceContext
from gateway.stock.model import Ingredient, StockDoc, fmt_qty, parse_doc, portions, reorder
from gateway.store.db import Connection
from gateway.store.writer import on_rollback

_LOGGER = logging.getLogger(__name__)

SAFETY_PREFIX = "stock:safety:"
CLEAR_AT_PCT = 110  # a safety-stock alert clears at 110 % of the safety stock (hysteresis)

# One consumed line: (line id, item id, quantity, [(option group, choice), ...])
Line = tuple[int, str, int, list[tuple[str, str]]]


def build(gw: ServiceContext) -> StockService:
    """Build the stock service (gateway.domains.SERVICES)."""
    return StockService(gw)


def bump_rev(conn: Connection) -> None:
    """Tell a running gateway that ingredients or recipes changed (it reloads within seconds)."""
    conn.execute("INSERT INTO stk_meta (key, value) VALUES ('rev', ?) ON CONFLICT (key) DO UPDATE SET "
                 "value = excluded.value", (secrets.token_hex(8),))


def write_doc(conn: Connection, doc: StockDoc, *, replace_recipes: bool = True) -> None:
    """Store an import document: ingredients upserted, recipes replaced, counts set (a 'count' move)."""
    ts = now_ms()
    for ing in doc.ingredients:
        conn.execute(
            "INSERT INTO stk_ingredients (id, name_zh, name_en, unit, safety_m, min_m, max_m, multiple_m, updated_ms) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET name_zh = excluded.name_zh, "
            "name_en = excluded.name_en, unit = excluded.unit, safety_m = excluded.safety_m, min_m = excluded.min_m, "
            "max_m = excluded.max_m, multiple_m = excluded.multiple_m, updated_ms = excluded.updated_ms",
            (ing.id, ing.name_zh, ing.name_en, ing.unit, ing.safety_m, ing.min_m, ing.max_m, ing.multiple_m, ts))
    if replace_recipes:
        conn.execute("DELETE FROM stk_recipes")
    for (item, group, choice), uses in doc.recipes.items():
        for ing_id, qty in uses.items():
            conn.execute("INSERT OR REPLACE INTO stk_recipes (item_id, group_id, choice_id, ingredient_id, qty_m) "
                         "VALUES (?, ?, ?, ?, ?)", (item, group, choice, ing_id, qty))
    for ing_id, qty in doc.on_hand.items():
        old = conn.execute("SELECT on_hand_m FROM stk_ingredients WHERE id = ?", (ing_id,)).fetchone()[0]
        conn.execute("UPDATE stk_ingredients SET on_hand_m = ?, updated_ms = ? WHERE id = ?", (qty, ts, ing_id))
        conn.execute("INSERT INTO stk_moves (ts_ms, ingredient_id, delta_m, kind, on_hand_m) "
                     "VALUES (?, ?, ?, 'count', ?)", (ts, ing_id, qty - old, qty))
    bump_rev(conn)


def export_doc(conn: Connection) -> dict[str, Any]:
    """The stored ingredients (with counts) and recipes in the import format."""
    ings = []
    for iid, zh, en, unit, on, saf, mn, mx, mult in conn.execute(
            "SELECT id, name_zh, name_en, unit, on_hand_m, safety_m, min_m, max_m, multiple_m FROM stk_ingredients "
            "ORDER BY id"):
        ings.append({"id": iid, "name_zh": zh, "name_en": en, "unit": unit, "on_hand": fmt_qty(on),
                     "safety": fmt_qty(saf), "min": fmt_qty(mn), "max": fmt_qty(mx), "multiple": fmt_qty(mult)})
    recipes: dict[tuple[str, str, str], dict[str, str]] = {}
    for item, group, choice, ing, qty in conn.execute(
            "SELECT item_id, group_id, choice_id, ingredient_id, qty_m FROM stk_recipes ORDER BY 1, 2, 3, 4"):
        recipes.setdefault((item, group, choice), {})[ing] = fmt_qty(qty)
    out = []
    for (item, group, choice), uses in recipes.items():
        rec: dict[str, Any] = {"item": item}
        if group:
            rec.update(group=group, choice=choice)
        rec["uses"] = uses
        out.append(rec)
    return {"ingredients": ings, "recipes": out}


class StockService:
    """Ingredients and recipes of one store; consumption and release inside ordering's writes."""

    def __init__(self, gw: ServiceContext) -> None:
        self.gw = gw
        self.scfg = gw.cfg.stock
        self.writer = gw.store.writer
        self.alerts = gw.alerts
        self.ingredients: dict[str, Ingredient] = {}
        self.on_hand: dict[str, int] = {}
        self.recipes: dict[str, dict[str, int]] = {}          # item → {ingredient: per portion}
        self.options: dict[tuple[str, str, str], dict[str, int]] = {}  # (item|*, group, choice) → uses
        self.users: dict[str, set[str]] = {}                   # ingredient → items whose recipe uses it
        self.portions: dict[str, int] = {}                     # item → whole portions now
        self._published: dict[str, int] = {}
        self._dirty = False
        self._seen_rev = ""
        self._listeners: list[Callable[[dict[str, int]], None]] = []
        self.counters = {"consumed_lines": 0, "released_lines": 0, "refused": 0}

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Load ingredients and recipes; follow every commit for live sold-out changes."""
        self.writer.add_post_commit_hook(self._after_commit)
        self.writer.call(self._load)

    def stop(self) -> None:
        """Nothing to stop: stock has no thread of its own."""

    def periodic(self) -> tuple[Periodic, ...]:
        """Reload after `storegw stock import` ran beside us."""
        return (Periodic("stock-follow", 2.0, self.follow),)

    def health(self) -> dict[str, Any]:
        """Counters for /api/v1/health (no personal data)."""
        return {**self.counters, "ingredients": len(self.ingredients), "recipes": len(self.recipes),
                "sold_out": len(self.sold_out_items()), "below_safety": len(self.below_safety())}

    def follow(self) -> None:
        """Reload when the stock revision changed (a CLI import)."""
        row = self.gw.store.read().execute("SELECT value FROM stk_meta WHERE key = 'rev'").fetchone()
        rev = row[0] if row else ""
        if rev != self._seen_rev:
            self.writer.call(self._load)

    def on_change(self, fn: Callable[[dict[str, int]], None]) -> None:
        """Call ``fn({item: portions})`` (writer thread, after commit) when items' portions change."""
        self._listeners.append(fn)

    def _load(self, c: Connection) -> None:
        row = c.execute("SELECT value FROM stk_meta WHERE key = 'rev'").fetchone()
        self._seen_rev = row[0] if row else ""
        self.ingredients, self.on_hand = {}, {}
        for iid, zh, en, unit, on, saf, mn, mx, mult in c.execute(
                "SELECT id, name_zh, name_en, unit, on_hand_m, safety_m, min_m, max_m, multiple_m "
                "FROM stk_ingredients"):
            self.ingredients[iid] = Ingredient(iid, zh, en, unit, saf, mn, mx, mult)
            self.on_hand[iid] = on
        self.recipes, self.options, self.users = {}, {}, {}
        for item, group, choice, ing, qty in c.execute(
                "SELECT item_id, group_id, choice_id, ingredient_id, qty_m FROM stk_recipes"):
            if group:
                self.options.setdefault((item, group, choice), {})[ing] = qty
            else:
                self.recipes.setdefault(item, {})[ing] = qty
                self.users.setdefault(ing, set()).add(item)
        self.portions = {item: portions(self.on_hand, rec) or 0 for item, rec in self.recipes.items()}
        self._dirty = True
        for ing in self.ingredients:
            self._check_safety(c, ing)

    def _after_commit(self) -> None:
        """Writer thread, after a commit: tell the listeners which items' portions changed."""
        if not self._dirty:
            return
        self._dirty = False
        changed = {i: p for i, p in self.portions.items() if self._published.get(i) != p}
        changed.update({i: -1 for i in self._published if i not in self.portions})  # no recipe any more
        self._published = dict(self.portions)
        if not changed:
            return
        for fn in self._listeners:
            try:
                fn(changed)
            except Exception:
                _LOGGER.exception("stock listener failed")

    # ------------------------------------------------------------------ what ordering reads
    def has_recipe(self, item_id: str) -> bool:
        """Whether an item's availability is driven by its ingredients."""
        return item_id in self.recipes

    def portions_of(self, item_id: str) -> int | None:
        """Whole portions the item's recipe can still make (None: no recipe)."""
        return self.portions.get(item_id)

    def sold_out_items(self) -> set[str]:
        """Items with a recipe and 0 computable portions (估清 by stock)."""
        return {i for i, p in self.portions.items() if p <= 0}

    def low_items(self) -> dict[str, int]:
        """Items with a recipe at or under ``stock.low_portions`` (but not sold out): item → portions."""
        low = self.scfg.low_portions
        return {i: p for i, p in self.portions.items() if 0 < p <= low}

    # ------------------------------------------------------------------ inside ordering's write
    def consume(self, c: Connection, lines: Iterable[Line], names: dict[str, str] | None = None) -> dict[str, int]:
        """Take the ingredients of committed order lines, or raise a 409 ``sold_out`` naming the dish.

        Runs in the caller's transaction (ordering's round). Returns {item: portions} of the items
        whose portions changed.
        """
        per_line: list[tuple[int, str, dict[str, int]]] = []
        need: dict[str, int] = {}
        for line_id, item, qty, choices in lines:
            uses: dict[str, int] = {}
            for ing, q in self.recipes.get(item, {}).items():
                uses[ing] = uses.get(ing, 0) + q * qty
            for group, choice in choices:
                opt = self.options.get((item, group, choice)) or self.options.get(("*", group, choice)) or {}
                for ing, q in opt.items():
                    uses[ing] = uses.get(ing, 0) + q * qty
            if uses:
                per_line.append((line_id, item, uses))
                for ing, q in uses.items():
                    need[ing] = need.get(ing, 0) + q
        if not need:
            return {}
        have = {ing: self._on_hand_db(c, ing) for ing in need}
        short = [ing for ing, q in need.items() if have[ing] < q]
        if short:
            self.counters["refused"] += 1
            item = next(it for _, it, uses in per_line if any(i in uses for i in short))
            left = portions(have, self.recipes.get(item, {}))
            label = (names or {}).get(item, item)
            raise OrderingError(f"Not enough left for {label} (ingredients for {left or 0} more). Remove it or "
                                f"order fewer and send again. {label}库存不足，请减少数量后再下单。",
                                code="sold_out", status=409)
        ts = now_ms()
        for line_id, _item, uses in per_line:
            for ing, q in uses.items():
                have[ing] -= q
                c.execute("INSERT INTO stk_moves (ts_ms, ingredient_id, delta_m, kind, line_id, on_hand_m) "
                          "VALUES (?, ?, ?, 'order', ?, ?)", (ts, ing, -q, line_id, have[ing]))
        self.counters["consumed_lines"] += len(per_line)
        return self._apply(c, have, ts)

    def release(self, c: Connection, line_ids: Iterable[int]) -> dict[str, int]:
        """Give back what voided lines consumed (once per line, whatever was given back already)."""
        ts = now_ms()
        have: dict[str, int] = {}
        for line_id in line_ids:
            for ing, net in c.execute("SELECT ingredient_id, -sum(delta_m) FROM stk_moves WHERE line_id = ? "
                                      "GROUP BY ingredient_id", (line_id,)).fetchall():
                if net <= 0:
                    continue
                if ing not in have:
                    have[ing] = self._on_hand_db(c, ing)
                have[ing] += net
                c.execute("INSERT INTO stk_moves (ts_ms, ingredient_id, delta_m, kind, line_id, on_hand_m) "
                          "VALUES (?, ?, ?, 'void', ?, ?)", (ts, ing, net, line_id, have[ing]))
                self.counters["released_lines"] += 1
        return self._apply(c, have, ts) if have else {}

    @staticmethod
    def _on_hand_db(c: Connection, ing: str) -> int:
        row = c.execute("SELECT on_hand_m FROM stk_ingredients WHERE id = ?", (ing,)).fetchone()
        return int(row[0]) if row else 0

    def _apply(self, c: Connection, have: dict[str, int], ts: int) -> dict[str, int]:
        """Write new on-hand values; update memory (undone on rollback), the sold-out log and safety alerts."""
        old_hand = {ing: self.on_hand.get(ing) for ing in have}
        items = {item for ing in have for item in self.users.get(ing, ())}
        old_portions = {item: self.portions.get(item) for item in items}

        def undo() -> None:
            for ing, v in old_hand.items():
                if v is None:
                    self.on_hand.pop(ing, None)
                else:
                    self.on_hand[ing] = v
            for item, p in old_portions.items():
                if p is None:
                    self.portions.pop(item, None)
                else:
                    self.portions[item] = p
        on_rollback(undo)
        for ing, v in have.items():
            c.execute("UPDATE stk_ingredients SET on_hand_m = ?, updated_ms = ? WHERE id = ?", (v, ts, ing))
            self.on_hand[ing] = v
        changed = {}
        for item in items:
            p = portions(self.on_hand, self.recipes[item]) or 0
            before = self.portions.get(item)
            self.portions[item] = p
            if p != before:
                changed[item] = p
                if (p <= 0) != (before is not None and before <= 0):
                    c.execute("INSERT INTO stk_soldout_log (item_id, ts_ms, state) VALUES (?, ?, ?)",
                              (item, ts, "out" if p <= 0 else "back"))
        for ing in have:
            self._check_safety(c, ing)
        self._dirty = True
        return changed

    def _check_safety(self, c: Connection, ing_id: str) -> None:
        """Raise ``stock-below-safety`` under the safety stock; clear at 110 % of it (hysteresis)."""
        ing = self.ingredients.get(ing_id)
        if ing is None:
            return
        key = SAFETY_PREFIX + ing_id
        on = self.on_hand.get(ing_id, 0)
        if ing.safety_m > 0 and on < ing.safety_m:
            self.alerts.raise_(c, key, kind="store-health", rule="stock-below-safety", device="stock",
                               severity="major" if on <= 0 else "minor", value=on / 1000,
                               text=f"{ing.name_en} ({ing_id}) below safety stock: {fmt_qty(on)} {ing.unit} "
                                    f"< {fmt_qty(ing.safety_m)} {ing.unit}")
        elif self.alerts.is_active(key) and (ing.safety_m <= 0 or on * 100 >= ing.safety_m * CLEAR_AT_PCT):
            self.alerts.clear(c, key, value=on / 1000)

    # ------------------------------------------------------------------ staff page and CLI
    def import_doc(self, doc: Any) -> int:
        """Replace ingredients and recipes from an import document; return the number of ingredients."""
        parsed = parse_doc(doc)
        self.writer.call(lambda c: (write_doc(c, parsed), self._load(c)))
        return len(parsed.ingredients)

    def _move(self, ing_id: str, kind: str, qty_m: int, who: str) -> None:
        if ing_id not in self.ingredients:
            raise OrderingError(f"no ingredient {ing_id!r}", code="no_ingredient", status=404)

        def write(c: Connection) -> None:
            old = self._on_hand_db(c, ing_id)
            new = qty_m if kind == "count" else old + qty_m if kind == "delivery" else old - qty_m
            if new < 0:
                raise OrderingError(f"only {fmt_qty(old)} {self.ingredients[ing_id].unit} on hand",
                                    code="negative")
            ts = now_ms()
            c.execute("INSERT INTO stk_moves (ts_ms, ingredient_id, delta_m, kind, on_hand_m) VALUES (?, ?, ?, ?, ?)",
                      (ts, ing_id, new - old, kind, new))
            self._audit(c, who, f"stock-{kind}", f"ingredient:{ing_id}", {"qty": fmt_qty(qty_m), "was": fmt_qty(old)})
            self._apply(c, {ing_id: new}, ts)
        self.writer.call(write)

    def _audit(self, c: Connection, who: str, action: str, target: str, detail: dict[str, Any]) -> None:
        staff = self.gw.services.get("staff")  # built before stock (gateway.domains); a sibling, so no import
        if staff is not None:
            staff.audit(c, who, action, target, detail=detail)

    def count(self, ing_id: str, qty_m: int, who: str) -> None:
        """Stock-take (盘点): the counted quantity replaces what is on hand."""
        self._move(ing_id, "count", qty_m, who)

    def deliver(self, ing_id: str, qty_m: int, who: str) -> None:
        """A delivery (入库) adds to what is on hand."""
        self._move(ing_id, "delivery", qty_m, who)

    def waste(self, ing_id: str, qty_m: int, who: str) -> None:
        """Waste or spoilage (报损) takes from what is on hand."""
        self._move(ing_id, "waste", qty_m, who)

    def set_levels(self, ing_id: str, safety_m: int, min_m: int, max_m: int, multiple_m: int, who: str) -> None:
        """Change an ingredient's safety stock and min/max/multiple (reorder rule)."""
        ing = self.ingredients.get(ing_id)
        if ing is None:
            raise OrderingError(f"no ingredient {ing_id!r}", code="no_ingredient", status=404)
        if max_m and max_m < min_m:
            raise OrderingError("max must be at least min 最大值不得小于最小值", code="bad_levels")

        def write(c: Connection) -> None:
            c.execute("UPDATE stk_ingredients SET safety_m = ?, min_m = ?, max_m = ?, multiple_m = ?, updated_ms = ? "
                      "WHERE id = ?", (safety_m, min_m, max_m, multiple_m, now_ms(), ing_id))
            self._audit(c, who, "stock-levels", f"ingredient:{ing_id}",
                        {"safety": fmt_qty(safety_m), "min": fmt_qty(min_m), "max": fmt_qty(max_m),
                         "multiple": fmt_qty(multiple_m)})
            self._load(c)
        self.writer.call(write)

    def rows(self) -> list[dict[str, Any]]:
        """Every ingredient with its state and reorder suggestion, for the staff page and the report."""
        out = []
        for iid, ing in sorted(self.ingredients.items()):
            on = self.on_hand.get(iid, 0)
            state = "out" if on <= 0 else "below" if on < ing.safety_m else "ok"
            out.append({"id": iid, "name_zh": ing.name_zh, "name_en": ing.name_en, "unit": ing.unit,
                        "on_hand": fmt_qty(on), "on_hand_m": on, "safety": fmt_qty(ing.safety_m),
                        "min": fmt_qty(ing.min_m), "max": fmt_qty(ing.max_m), "multiple": fmt_qty(ing.multiple_m),
                        "reorder": fmt_qty(reorder(on, ing.min_m, ing.max_m, ing.multiple_m)), "state": state,
                        "items": sorted(self.users.get(iid, ()))})
        return out

    def below_safety(self) -> list[dict[str, Any]]:
        """Ingredients under their safety stock now (ids, quantities in their unit)."""
        return [{"id": r["id"], "name_zh": r["name_zh"], "name_en": r["name_en"], "unit": r["unit"],
                 "on_hand": r["on_hand"], "safety": r["safety"]} for r in self.rows() if r["state"] != "ok"
                and self.ingredients[r["id"]].safety_m > 0]

    def sold_out_between(self, since_ms: int, until_ms: int) -> list[str]:
        """Items that became sold out by stock in [since, until)."""
        return [r[0] for r in self.gw.store.read().execute(
            "SELECT DISTINCT item_id FROM stk_soldout_log WHERE state = 'out' AND ts_ms >= ? AND ts_ms < ? "
            "ORDER BY item_id", (since_ms, until_ms))]
