"""Stock documents the stock and report tests share (sample menu item ids, docs/store-health.md format)."""

from __future__ import annotations

from typing import Any


def doc(chicken: str = "600", peanuts: str = "1000", tofu: str = "5000") -> dict[str, Any]:
    """Kung Pao chicken (h01) takes 200 g of chicken a portion, mapo tofu (h02) 250 g of tofu."""
    return {
        "ingredients": [
            {"id": "chicken", "name_zh": "鸡腿肉", "name_en": "Chicken thigh", "unit": "g", "on_hand": chicken,
             "safety": "500", "min": "1000", "max": "5000", "multiple": "1500"},
            {"id": "peanuts", "name_zh": "花生", "name_en": "Peanuts", "unit": "g", "on_hand": peanuts},
            {"id": "tofu", "name_zh": "豆腐", "name_en": "Tofu", "unit": "g", "on_hand": tofu, "safety": "1000"},
            {"id": "rice", "name_zh": "米饭", "name_en": "Rice", "unit": "pc", "on_hand": "100"},
        ],
        "recipes": [
            {"item": "h01", "uses": {"chicken": "200", "peanuts": "30"}},
            {"item": "h02", "uses": {"tofu": "250"}},
            {"item": "*", "group": "staple", "choice": "rice", "uses": {"rice": "1"}},
        ],
    }
