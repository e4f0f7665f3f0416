"""Issue 9, item 1: queue numbers are limited per client (its address, or address and device cookie
behind NAT), not per page id the client chooses."""

from __future__ import annotations

from ordhelpers import phone_address  # noqa: F401

from gateway.ordering import queue

JSON = {"Accept": "application/json", "X-Requested-With": "js"}


def _take(client, svc, d, addr, party="2"):
    token = queue.store_token(svc.secret, svc.store_id)
    return client.post(f"/q/{token}/take", data={"csrf": svc.form_token(token), "d": d, "party": party},
                       headers=JSON, environ_base={"REMOTE_ADDR": addr})


# ---------------------------------------------------------------------------- 1. queue flooding

def test_fresh_page_ids_from_one_address_get_at_most_the_configured_open_numbers(make_gw):
    from web import create_app

    gw = make_gw("[ordering]\nqueue_per_client = 2\n")
    svc = gw.services["ordering"]
    client = create_app(gw, {"TESTING": True}).test_client()
    statuses = [_take(client, svc, f"flood{i:010d}", "10.9.9.9").status_code for i in range(250)]
    conn = gw.store.read()
    assert conn.execute("SELECT count(*) FROM ord_queue").fetchone()[0] == 2
    assert statuses[:2] == [200, 200] and set(statuses[2:]) == {429}
    # a real diner with their own phone (address) still gets a number, and it is third in line
    r = _take(client, svc, "realdiner00001", "10.1.2.3")
    assert r.status_code == 200 and r.get_json()["number"] == "A003"
    token = queue.store_token(svc.secret, svc.store_id)
    st = client.get(f"/q/{token}/state.json?d=realdiner00001").get_json()
    assert st["queue"]["ahead"] == 2 and st["queue"]["wait_min"] <= 3 * queue.DEFAULT_TURN_MIN


def test_a_number_left_or_seated_frees_the_place(make_gw):
    import time

    from web import create_app

    gw = make_gw("[ordering]\nqueue_per_client = 1\n")
    svc = gw.services["ordering"]
    client = create_app(gw, {"TESTING": True}).test_client()
    assert _take(client, svc, "leaver00000001", "10.7.7.7").status_code == 200
    r = _take(client, svc, "leaver00000002", "10.7.7.7")
    assert r.status_code == 429 and r.get_json()["code"] == "queue_limit"
    first = queue.for_phone(gw.store.read(), queue.phone_key(svc.secret, "leaver00000001"),
                            queue.day_of(int(time.time() * 1000)))
    svc.queue_leave(first.id)
    assert _take(client, svc, "leaver00000002", "10.7.7.7").status_code == 200


def test_behind_nat_the_device_cookie_separates_phones_and_minting_them_is_bounded(make_gw):
    from web import create_app

    gw = make_gw('[ordering]\nqueue_per_client = 1\nnat_addresses = ["192.168.8.0/24"]\n')
    svc = gw.services["ordering"]
    app = create_app(gw, {"TESTING": True})
    phones = [app.test_client() for _ in range(3)]
    for i, phone in enumerate(phones):  # three phones behind one router, each with its cookie
        assert _take(phone, svc, f"natphone{i:06d}", "192.168.8.1").status_code == 200
        assert phone.get_cookie("storegw_dev") is not None
    # the same phone (cookie) with a fresh page id is still one client
    assert _take(phones[0], svc, "natphone999999", "192.168.8.1").status_code == 429
    # a client that throws its cookie away every time gets few new ones: the rest share one key
    flood = [_take(app.test_client(), svc, f"natflood{i:06d}", "192.168.8.1").status_code for i in range(40)]
    assert flood.count(200) <= 11
