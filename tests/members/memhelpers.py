"""Helpers for the members tests (a module of its own: `conftest` names clash across folders)."""

from __future__ import annotations

from typing import Any

CONSENT_ALL = {"benefits": True, "marketing": False, "birthday": True}


def order(gw: Any, table: str, items: dict[str, int]) -> int:
    """Put dishes on a table's bill directly (diner flow is tested in ordering); return the session id."""
    svc = gw.services["ordering"]
    ctx = svc.resolve(svc.token_for(table))
    for item, qty in items.items():
        svc.add_to_cart(ctx, item, {}, qty, "", "", f"10.0.0.{len(table)}")
    svc.submit(ctx, f"idem-{table}-{len(items)}-{sorted(items)}", "", "10.0.0.9")
    return svc.bill(table)["session"]


def register(mem: Any, phone: str = "13812345678", nickname: str = "Lin", **kw: Any) -> dict[str, Any]:
    kw.setdefault("consents", dict(CONSENT_ALL))
    kw.setdefault("channel", "counter")
    return mem.register(nickname=nickname, phone=phone, who="boss", **kw)
