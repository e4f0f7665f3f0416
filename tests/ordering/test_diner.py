"""The diner flow through the Flask test client: menu, shared cart, idempotent rounds, prices, stock."""

from __future__ import annotations

import json

from ordhelpers import Diner


def test_page_renders_menu_and_redirects_to_a_diner_id(client, svc):
    token = svc.token_for("A1")
    r = client.get(f"/t/{token}", headers={"Accept-Language": "en-US,en;q=0.9"})
    assert r.status_code == 303
    assert "d=" in r.headers["Location"] and "lang=en" in r.headers["Location"]
    page = client.get(r.headers["Location"])
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Kung Pao chicken" in html and "Table" in html
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    zh = client.get(f"/t/{token}?d=abcdef12", headers={"Accept-Language": "zh-CN,zh;q=0.9"}).get_data(as_text=True)
    assert "宫保鸡丁" in zh and "加入" in zh


def test_add_send_round_with_server_prices(diner, svc):
    r = diner.add("h01", qty=2, spice="hot", staple="rice",
                   extra={"price": "0.01", "unit_cents": "1", "total": "1"})
    assert r.status_code == 303
    st = diner.state()
    assert len(st["cart"]) == 1
    assert st["cart"][0]["amount"] == 2 * (4800 + 300)  # the client's "price" fields are ignored
    r = diner.send()
    assert r.status_code == 303 and "sent=1" in r.headers["Location"]
    st = diner.state()
    assert st["cart"] == []
    assert st["rounds"][0]["no"] == 1 and st["rounds"][0]["total"] == 10200
    line = st["rounds"][0]["lines"][0]
    assert line["status"] == "sent" and [m["en"] for m in line["mods"]] == ["Extra hot", "With rice"]


def test_idempotent_submit(diner, svc):
    diner.add("c01")
    key = diner.idem()
    first = diner.send(key)
    again = diner.send(key)  # a double tap or a retried request
    assert first.status_code == again.status_code == 303
    st = diner.state()
    assert len(st["rounds"]) == 1
    n = svc.gw.store.read().execute("SELECT count(*) FROM ord_rounds").fetchone()[0]
    assert n == 1


def test_required_option_and_unknown_choice(diner):
    r = diner.add("h01", spice="nuclear")
    assert r.status_code == 400
    assert diner.state()["cart"] == []


def test_counted_stock_is_enforced_and_pushed(diner, client, svc):
    other = type(diner)(client, svc, "A2", d="phone02")
    v0 = other.state()["version"]
    diner.add("t04", qty=5)  # old duck soup: 5 in stock
    other.add("t04", qty=1)
    assert diner.send().status_code == 303
    st = other.state()
    assert "t04" in st["sold_out"] and st["version"] > v0
    r = other.send()
    assert r.status_code == 409
    assert "Sold out" in r.get_data(as_text=True)
    assert svc.stock["t04"] == 0


def test_shared_cart_is_attributed(client, svc):
    a = Diner(client, svc, "A1", d="phoneaa")
    b = Diner(client, svc, "A1", d="phonebb")
    r = client.post(f"/t/{a.token}/name", data=a.form(nickname="Seat 1"))
    assert r.status_code == 303
    a.add("c01")
    b.add("d01", ice="warm")
    cart = b.state()["cart"]
    assert [c["diner"] for c in cart] == ["Seat 1", "#PHO"]
    # b may remove a's line (shared cart) but never a line of another table
    other = Diner(client, svc, "A2", d="phonecc")
    other.add("c01")
    r = client.post(f"/t/{other.token}/cart/{cart[0]['id']}", data=other.form(remove="1"))
    assert r.status_code == 404
    assert len(a.state()["cart"]) == 2


def test_requests_create_tasks(diner, client, svc):
    diner.add("c01")
    diner.send()
    r = client.post(f"/t/{diner.token}/request", data=diner.form(kind="waiter"))
    assert r.status_code == 303
    client.post(f"/t/{diner.token}/request", data=diner.form(kind="waiter"))  # same open task
    tasks = diner.state()["tasks"]
    assert tasks == [{"kind": "waiter", "line": None, "acked": False}]


def test_json_api_for_the_script(diner, client):
    diner.add("c01")
    r = client.post(f"/t/{diner.token}/submit", data=diner.form(idem="abcdefghijk"),
                    headers={"Accept": "application/json", "X-Requested-With": "js"})
    body = r.get_json()
    assert body["ok"] and body["round"] == 1 and not body["duplicate"]
    r = client.post(f"/t/{diner.token}/submit", data=diner.form(idem="abcdefghijk"),
                    headers={"Accept": "application/json", "X-Requested-With": "js"})
    assert r.get_json()["duplicate"] is True
    etag = client.get(f"/t/{diner.token}/state.json").headers["ETag"]
    assert client.get(f"/t/{diner.token}/state.json", headers={"If-None-Match": etag}).status_code == 304
    assert json.loads(client.get(f"/t/{diner.token}/state.json").data)["rounds"][0]["no"] == 1
