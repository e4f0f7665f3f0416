"""Tables of stock (ingredients, recipes, the stock ledger), migrations ``stock_…``.

Quantities are whole **milli-units** of the ingredient's unit (1 g = 1000, 0.5 pc = 500), so every
sum and comparison is exact; ``gateway/stock/model.py`` parses and prints them. Nothing here is
personal data: who counted or received stock is in the audit log (``gateway.staff.accounts.audit``).
"""

from __future__ import annotations

from gateway.core.inventory import Declaration, Table, after, managed, ops
from gateway.store.db import Connection
from gateway.store.migrations import migration, run_script


@migration("stock_0001_ingredients")
def _stock(conn: Connection) -> None:
    run_script(conn, """
        CREATE TABLE stk_ingredients (
            id TEXT PRIMARY KEY,
            name_zh TEXT NOT NULL,
            name_en TEXT NOT NULL,
            unit TEXT NOT NULL CHECK (unit IN ('g', 'ml', 'pc')),
            on_hand_m INTEGER NOT NULL DEFAULT 0,
            safety_m INTEGER NOT NULL DEFAULT 0,
            min_m INTEGER NOT NULL DEFAULT 0,
            max_m INTEGER NOT NULL DEFAULT 0,
            multiple_m INTEGER NOT NULL DEFAULT 0,
            updated_ms INTEGER NOT NULL
        );
        CREATE TABLE stk_recipes (
            item_id TEXT NOT NULL,                 -- a menu item id, or '*' for an option of any item
            group_id TEXT NOT NULL DEFAULT '',     -- '' and '': the item's own recipe (one portion)
            choice_id TEXT NOT NULL DEFAULT '',
            ingredient_id TEXT NOT NULL,
            qty_m INTEGER NOT NULL CHECK (qty_m > 0),
            PRIMARY KEY (item_id, group_id, choice_id, ingredient_id)
        );
        CREATE TABLE stk_moves (
            id INTEGER PRIMARY KEY,
            ts_ms INTEGER NOT NULL,
            ingredient_id TEXT NOT NULL,
            delta_m INTEGER NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('order', 'void', 'count', 'delivery', 'waste')),
            line_id INTEGER,                       -- ord_lines.id for order and void
            on_hand_m INTEGER NOT NULL             -- after the move
        );
        CREATE INDEX stk_moves_line ON stk_moves (line_id) WHERE line_id IS NOT NULL;
        CREATE INDEX stk_moves_ts ON stk_moves (ts_ms);
        CREATE TABLE stk_soldout_log (
            id INTEGER PRIMARY KEY,
            item_id TEXT NOT NULL,
            ts_ms INTEGER NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('out', 'back'))
        );
        CREATE INDEX stk_soldout_ts ON stk_soldout_log (ts_ms);
        CREATE TABLE stk_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)
    """)


_MOVES = after(400, "ts_ms", "400d after the move (a year of daily reports and their baselines)")

INVENTORY = Declaration("stock", (
    Table("stk_ingredients", "Ingredients: unit, count on hand, safety stock, min/max/multiple",
          ops("id name_zh name_en unit on_hand_m safety_m min_m max_m multiple_m updated_ms",
              managed("while the ingredient is on the store's list", "storegw stock import / the stock page"),
              "stock")),
    Table("stk_recipes", "Recipes (BOM): ingredients per portion of an item or option",
          ops("item_id group_id choice_id ingredient_id qty_m",
              managed("while the recipe is on the store's list", "storegw stock import"), "stock")),
    Table("stk_moves", "The stock ledger: orders, voids, counts, deliveries, waste",
          ops("id ts_ms ingredient_id delta_m kind line_id on_hand_m", _MOVES, "stock"), created="ts_ms"),
    Table("stk_soldout_log", "When an item became sold out (估清) or available again by stock",
          ops("id item_id ts_ms state", _MOVES, "stock"), created="ts_ms"),
    Table("stk_meta", "Stock settings revision (a running gateway reloads on change)",
          ops("key value", managed("kept", "the stock service"), "stock")),
))
