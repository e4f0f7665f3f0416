"""Staff stock page (on the staff blueprint): ingredients with their state (ok, below safety, out),
the reorder suggestion, stock-take (盘点), deliveries (入库) and waste (报损), and the safety and
reorder levels (managers). Every change is audited by the stock service."""

from __future__ import annotations

from typing import Any

from flask import abort, current_app, g, request, url_for

from gateway.core.errors import OrderingError
from gateway.stock.model import parse_qty
from web.kit import services_of
from web.staff.views import _done, _render, bp, need


def stock_service() -> Any:
    """The stock service (404 in a build without one)."""
    svc = services_of(current_app).services.get("stock")
    if svc is None:
        abort(404)
    return svc


@bp.get("/stock")
@need("stock")
def stock_home() -> Any:
    """Ingredients: on hand, safety stock, min/max/multiple and what to order; the items each one limits."""
    svc = stock_service()
    ordering = services_of(current_app).services.get("ordering")
    menu = ordering.menu.items if ordering is not None else {}
    items = [{"id": iid, "name_zh": menu[iid].name_zh if iid in menu else iid,
              "name_en": menu[iid].name_en if iid in menu else iid, "portions": p}
             for iid, p in sorted(svc.portions.items())]
    return _render("staff/stock.html", rows=svc.rows(), items=items, low=svc.scfg.low_portions)


_MOVES = {"count": "count", "delivery": "deliver", "waste": "waste"}


@bp.post("/stock/<ingredient_id>/<kind>")
@need("stock")
def stock_move(ingredient_id: str, kind: str) -> Any:
    """A stock-take count, a delivery or waste of one ingredient (quantity in its unit)."""
    back = url_for("staff.stock_home")
    if kind not in _MOVES:
        abort(404)
    try:
        qty = parse_qty(request.form.get("qty", ""), "quantity 数量")
        getattr(stock_service(), _MOVES[kind])(ingredient_id, qty, g.staff.name)
    except OrderingError as err:
        return _done(back, err)
    return _done(back)


@bp.post("/stock/<ingredient_id>/levels")
@need("menu")
def stock_levels(ingredient_id: str) -> Any:
    """Safety stock and the reorder rule (min, max, pack multiple) of one ingredient (managers)."""
    f = request.form
    try:
        levels = [parse_qty(f.get(k, "0") or "0", k) for k in ("safety", "min", "max", "multiple")]
        stock_service().set_levels(ingredient_id, *levels, g.staff.name)
    except OrderingError as err:
        return _done(url_for("staff.stock_home"), err)
    return _done(url_for("staff.stock_home"))
