"""Stock with recipes: ingredients consumed at order commit (not at print), released on void, 估清 from
computable portions, low at a threshold, safety-stock alerts, one rounding rule, the race for the last
portion, the staff page (CSRF, roles)."""

from __future__ import annotations

import re
import threading
from typing import Any

import pytest
from ordhelpers import csrf, staff_login
from stockdocs import doc

from gateway.core.errors import OrderingError
from gateway.stock.model import fmt_qty, parse_doc, parse_qty, portions, reorder


def test_quantities_portions_and_the_rounding_rule() -> None:
    assert parse_qty("0.5") == 500 and parse_qty(250) == 250_000 and fmt_qty(1_500) == "1.5"
    for bad in ("-1", "1.2345", "abc", True):
        with pytest.raises(OrderingError):
            parse_qty(bad)
    assert portions({"a": 599_999}, {"a": 200_000}) == 2  # portions round down
    assert portions({"a": 10}, {}) is None
    # reorder: only at or under min; up to max, rounded UP to the pack multiple (may pass max by < 1 pack)
    assert reorder(on_hand=0, min_m=5, max_m=20, multiple_m=3) == 21
    assert reorder(on_hand=6, min_m=5, max_m=20, multiple_m=3) == 0
    assert reorder(on_hand=5, min_m=5, max_m=20, multiple_m=0) == 15
    with pytest.raises(OrderingError, match=r"recipes\[0\].uses: unknown ingredient 'x'"):
        parse_doc({"ingredients": [], "recipes": [{"item": "h01", "uses": {"x": 1}}]})
    with pytest.raises(OrderingError, match=r"ingredients\[0\].unit"):
        parse_doc({"ingredients": [{"id": "a", "unit": "kg"}]})


def _lines(svc: Any, table: str) -> list[tuple[int, str, str]]:
    sid = svc.bill(table)["session"]
    return svc.gw.store.read().execute("SELECT id, item_id, status FROM ord_lines WHERE session_id = ? ORDER BY id",
                                       (sid,)).fetchall()


def test_commit_consumes_void_releases_sold_out_and_low(gw: Any, svc: Any, stock: Any, diner_factory: Any) -> None:
    stock.import_doc(doc(chicken="600"))  # 3 portions of Kung Pao chicken
    assert stock.portions_of("h01") == 3 and "h01" in stock.low_items()
    assert svc.stock["h01"] == 3  # "3 left" on the diner page (low)
    a, b = diner_factory("A1", "phoneA"), diner_factory("A2", "phoneB")
    assert a.add("h01", qty=2, staple="rice").status_code in (200, 303)
    assert b.add("h01", qty=1).status_code in (200, 303)
    # in a cart nothing is consumed
    assert stock.on_hand["chicken"] == 600_000
    assert a.send().status_code in (200, 303)
    # consumed at commit: 2 x 200 g chicken, 2 x 30 g peanuts, 2 rice (the option's recipe)
    assert stock.on_hand["chicken"] == 200_000 and stock.on_hand["peanuts"] == 940_000
    assert stock.on_hand["rice"] == 98_000
    assert stock.portions_of("h01") == 1 and "h01" not in svc.sold_out
    assert b.send().status_code in (200, 303)
    assert stock.portions_of("h01") == 0 and "h01" in svc.sold_out
    assert "h01" in b.state()["sold_out"] and "h01" in a.state()["sold_out"]
    # sold out: a new cart line is refused
    r = a.add("h01")
    assert r.status_code == 409 or "Sold out" in r.get_data(as_text=True)
    # safety stock: chicken 200 g < 500 g -> one alert
    assert gw.alerts.is_active("stock:safety:chicken")
    # a void gives the ingredients back and lifts the 估清
    line = next(lid for lid, item, _ in _lines(svc, "A2") if item == "h01")
    svc.void_line(line, "void", "dropped on the floor", "mgr")
    assert stock.on_hand["chicken"] == 200_000 and stock.portions_of("h01") == 1 and "h01" not in svc.sold_out
    svc.void_line(line, "void", "again", "mgr")  # a second void releases nothing more
    assert stock.on_hand["chicken"] == 200_000
    # a delivery clears the safety alert once at 110 % of the safety stock
    stock.deliver("chicken", 1_000_000, "mgr")
    assert not gw.alerts.is_active("stock:safety:chicken")
    kinds = [r[0] for r in gw.store.read().execute("SELECT state FROM alert_log WHERE rule = 'stock-below-safety'")]
    assert kinds == ["raised", "cleared"]
    log = gw.store.read().execute("SELECT item_id, state FROM stk_soldout_log ORDER BY id").fetchall()
    assert log == [("h01", "out"), ("h01", "back")]


def test_two_tables_race_for_the_last_portion(gw: Any, svc: Any, stock: Any, diner_factory: Any) -> None:
    stock.import_doc(doc(chicken="200"))  # exactly one portion
    diners = [diner_factory(t, f"phone{t}") for t in ("A1", "A2", "B1")]
    for d in diners:
        d.add("h01")
    idems = [d.idem() for d in diners]
    results: list[int] = []
    barrier = threading.Barrier(len(diners))

    def go(d: Any, idem: str) -> None:
        ctx = svc.resolve(d.token)
        barrier.wait()
        try:
            svc.submit(ctx, idem, d.d, f"10.0.0.{len(results)}")
            results.append(200)
        except OrderingError as err:
            results.append(err.status)
    threads = [threading.Thread(target=go, args=(d, i)) for d, i in zip(diners, idems, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200, 409, 409]
    assert stock.on_hand["chicken"] == 0
    rounds = gw.store.read().execute("SELECT count(*) FROM ord_lines WHERE item_id = 'h01'").fetchone()[0]
    assert rounds == 1


def test_stock_page_count_delivery_roles_and_csrf(gw: Any, stock: Any, client: Any) -> None:
    from gateway.staff import accounts

    stock.import_doc(doc())
    gw.store.writer.call(lambda c: accounts.add_staff(c, "wang", "waiter", "246813"))
    gw.store.writer.call(lambda c: accounts.add_staff(c, "chef", "kitchen", "246813"))
    staff_login(client, "wang", "246813")
    assert client.get("/staff/stock").status_code == 403
    client.post("/staff/logout", data={"csrf_token": _csrf(client)})
    staff_login(client, "chef", "246813")
    page = client.get("/staff/stock?lang=en").get_data(as_text=True)
    assert "Chicken thigh" in page and "鸡腿肉" in page
    tok = _csrf(client)
    assert client.post("/staff/stock/chicken/count", data={"qty": "250"}).status_code == 400  # no CSRF token
    r = client.post("/staff/stock/chicken/count", data={"qty": "250", "csrf_token": tok})
    assert r.status_code == 303 and stock.on_hand["chicken"] == 250_000
    client.post("/staff/stock/chicken/delivery", data={"qty": "1.5", "csrf_token": tok})
    assert stock.on_hand["chicken"] == 251_500
    r = client.post("/staff/stock/chicken/delivery", data={"qty": "-3", "csrf_token": tok},
                    headers={"X-Requested-With": "js"})
    assert r.status_code == 400 and "expected a number" in r.get_json()["error"]
    moves = gw.store.read().execute("SELECT kind, delta_m FROM stk_moves WHERE ingredient_id = 'chicken' "
                                    "ORDER BY id").fetchall()
    assert moves[-2:] == [("count", 250_000 - 600_000), ("delivery", 1_500)]


def _csrf(client: Any) -> str:
    return csrf(client, "/staff/login")


def test_low_shows_what_is_left_and_a_refund_gives_everything_back(gw: Any, svc: Any, stock: Any,
                                                                   diner_factory: Any) -> None:
    stock.import_doc(doc(chicken="1000"))  # 5 portions: low at stock.low_portions = 5
    a = diner_factory("A1", "phoneA")
    html = a.page().get_data(as_text=True)
    item = html[html.index('id="item-h01"'):]
    assert re.search(r'class="stock">[^<]*5<', item[:item.index("</article>")])
    a.add("h01", qty=4)
    a.send()
    assert stock.portions_of("h01") == 1
    svc.pay("A1", "cash", "", "mgr")
    svc.refund("A1", "customer complaint", "mgr")
    assert stock.on_hand["chicken"] == 1_000_000 and stock.portions_of("h01") == 5
    kinds = gw.store.read().execute("SELECT kind, sum(delta_m) FROM stk_moves WHERE ingredient_id = 'chicken' "
                                    "AND line_id IS NOT NULL GROUP BY kind ORDER BY kind").fetchall()
    assert kinds == [("order", -800_000), ("void", 800_000)]
