"""Stock arithmetic, pure: quantities in milli-units, computable portions, the reorder rounding rule,
and the import document.

One rounding rule (docs/store-health.md, "Stock"):

- **portions** an ingredient can make are rounded **down** (``on_hand // per_portion``): a portion
  that cannot be cooked whole is never offered;
- a **reorder** suggestion, when ``on_hand <= min``, is ``max - on_hand`` rounded **up** to the next
  whole ``multiple`` (the pack size); it may pass ``max`` by less than one pack (Odoo 17 and 19
  round the same way: max 20, multiple 3, on hand 0 → 21).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from gateway.core.errors import OrderingError

UNITS = ("g", "ml", "pc")
MILLI = 1000
_QTY = re.compile(r"^\s*([0-9]{1,9})(?:\.([0-9]{1,3}))?\s*$")
_ID = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")


def parse_qty(value: Any, what: str = "quantity") -> int:
    """A quantity ("12", "0.5", 3, 2.25) in milli-units; at most 3 decimals, not negative."""
    if isinstance(value, bool):
        raise OrderingError(f"{what}: expected a number such as 250 or 0.5, found {value!r}")
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        text = f"{value:.3f}"
    else:
        text = str(value)
    m = _QTY.match(text)
    if not m:
        raise OrderingError(f"{what}: expected a number >= 0 with at most 3 decimals (e.g. 250 or 0.5), "
                            f"found {str(value)[:20]!r}")
    return int(m.group(1)) * MILLI + int((m.group(2) or "0").ljust(3, "0"))


def fmt_qty(milli: int) -> str:
    """Milli-units as a short decimal ("1.5", "250", "-3")."""
    sign = "-" if milli < 0 else ""
    whole, frac = divmod(abs(milli), MILLI)
    return f"{sign}{whole}" + (f".{frac:03d}".rstrip("0") if frac else "")


def portions(on_hand: dict[str, int], recipe: dict[str, int]) -> int | None:
    """Whole portions a recipe can make from what is on hand (rounded down); None without a recipe."""
    if not recipe:
        return None
    return max(0, min(on_hand.get(ing, 0) // qty for ing, qty in recipe.items()))


def reorder(on_hand: int, min_m: int, max_m: int, multiple_m: int) -> int:
    """The quantity to order (milli-units): 0 above ``min``; else up to ``max``, rounded up to ``multiple``."""
    if max_m <= 0 or on_hand > min_m:
        return 0
    need = max_m - on_hand
    if need <= 0:
        return 0
    if multiple_m > 0:
        need = -(-need // multiple_m) * multiple_m
    return need


@dataclass(frozen=True)
class Ingredient:
    """An ingredient as imported or edited (quantities in milli-units)."""

    id: str
    name_zh: str
    name_en: str
    unit: str
    safety_m: int = 0
    min_m: int = 0
    max_m: int = 0
    multiple_m: int = 0


@dataclass
class StockDoc:
    """A parsed stock document: ingredients, recipes (item, group, choice) → {ingredient: qty}, counts."""

    ingredients: list[Ingredient] = field(default_factory=list)
    recipes: dict[tuple[str, str, str], dict[str, int]] = field(default_factory=dict)
    on_hand: dict[str, int] = field(default_factory=dict)


def _check_id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise OrderingError(f"{what}: expected an id of letters, digits, '_', '-', '.' (1-40), found {value!r}")
    return value


def parse_doc(doc: Any) -> StockDoc:
    """Parse and validate a stock import document (format: docs/store-health.md); names what is wrong."""
    if not isinstance(doc, dict):
        raise OrderingError("stock document: expected a JSON object with \"ingredients\" and \"recipes\"")
    out = StockDoc()
    seen: set[str] = set()
    for n, ing in enumerate(doc.get("ingredients", [])):
        where = f"ingredients[{n}]"
        if not isinstance(ing, dict):
            raise OrderingError(f"{where}: expected an object")
        iid = _check_id(ing.get("id"), f"{where}.id")
        if iid in seen:
            raise OrderingError(f"{where}.id: {iid!r} is listed twice")
        seen.add(iid)
        unit = ing.get("unit")
        if unit not in UNITS:
            raise OrderingError(f"{where}.unit: expected one of {', '.join(UNITS)}, found {unit!r}")
        q = {k: parse_qty(ing.get(k, 0), f"{where}.{k}") for k in ("safety", "min", "max", "multiple")}
        if q["max"] and q["max"] < q["min"]:
            raise OrderingError(f"{where}.max: must be >= min ({fmt_qty(q['min'])}), found {fmt_qty(q['max'])}")
        name_zh = str(ing.get("name_zh") or iid)[:60]
        out.ingredients.append(Ingredient(iid, name_zh, str(ing.get("name_en") or name_zh)[:60], unit,
                                          q["safety"], q["min"], q["max"], q["multiple"]))
        if "on_hand" in ing:
            out.on_hand[iid] = parse_qty(ing["on_hand"], f"{where}.on_hand")
    for n, rec in enumerate(doc.get("recipes", [])):
        where = f"recipes[{n}]"
        if not isinstance(rec, dict):
            raise OrderingError(f"{where}: expected an object")
        item = rec.get("item", "*")
        if item != "*":
            _check_id(item, f"{where}.item")
        group, choice = rec.get("group", ""), rec.get("choice", "")
        if bool(group) != bool(choice):
            raise OrderingError(f"{where}: an option recipe names both \"group\" and \"choice\"")
        if group:
            _check_id(group, f"{where}.group")
            _check_id(choice, f"{where}.choice")
        elif item == "*":
            raise OrderingError(f"{where}.item: \"*\" (any item) is for option recipes only")
        uses = rec.get("uses")
        if not isinstance(uses, dict) or not uses:
            raise OrderingError(f"{where}.uses: expected {{\"ingredient id\": quantity per portion, ...}}")
        key = (item, group, choice)
        if key in out.recipes:
            raise OrderingError(f"{where}: a recipe for {'/'.join(k for k in key if k)} is listed twice")
        rec_out: dict[str, int] = {}
        for ing_id, qty in uses.items():
            if ing_id not in seen:
                raise OrderingError(f"{where}.uses: unknown ingredient {ing_id!r} (list it under \"ingredients\")")
            m = parse_qty(qty, f"{where}.uses.{ing_id}")
            if m <= 0:
                raise OrderingError(f"{where}.uses.{ing_id}: must be more than 0")
            rec_out[ing_id] = m
        out.recipes[key] = rec_out
    return out
