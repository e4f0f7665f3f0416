"""Queue numbers (取号) and pre-order while queueing (预点餐) through the Flask test client."""

from __future__ import annotations

import re
import time

import pytest
from ordhelpers import Diner, phone_address, run_cli

from gateway.ordering import queue
from gateway.staff import accounts as staffops

JSON = {"Accept": "application/json", "X-Requested-With": "js"}


class Waiter:
    """A phone in the queue, driven through the no-JS forms of /q/{token}."""

    def __init__(self, client, svc, d="queuephone0001", lang="en"):
        self.client, self.svc, self.d, self.lang = client, svc, d, lang
        self.token = queue.store_token(svc.secret, svc.store_id)
        self.env = {"REMOTE_ADDR": phone_address(d)}  # on the store Wi-Fi every phone has its own address

    def get(self, *args, **kw):
        return self.client.get(*args, environ_base=self.env, **kw)

    def post(self, *args, **kw):
        return self.client.post(*args, environ_base=self.env, **kw)

    @property
    def base(self):
        return f"/q/{self.token}"

    def page(self):
        return self.get(f"{self.base}?d={self.d}&lang={self.lang}")

    def form(self, **fields):
        return {"csrf": self.svc.form_token(self.token), "d": self.d, "lang": self.lang, **fields}

    def take(self, party=2, nickname="", **extra):
        return self.post(f"{self.base}/take", data=self.form(party=str(party), nickname=nickname, **extra))

    def add(self, item, qty=1, note="", extra=None, **opts):
        data = self.form(item=item, qty=str(qty), note=note, **(extra or {}))
        for group, choice in opts.items():
            data[f"opt_{group}"] = choice
        return self.post(f"{self.base}/add", data=data)

    def state(self):
        return self.get(f"{self.base}/state.json?d={self.d}").get_json()


def login(client, name="wang", pin="246813"):
    page = client.get("/staff/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    r = client.post("/staff/login", data={"name": name, "pin": pin, "csrf_token": token})
    assert r.status_code == 303
    html = client.get("/staff/").get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


@pytest.fixture
def staff_client(gw, svc):
    from web import create_app

    svc.writer.call(lambda c: staffops.add_staff(c, "wang", "waiter", "246813"))
    c = create_app(gw, {"TESTING": True}).test_client()
    c.csrf = login(c)
    return c


def staff_post(sc, path, **data):
    return sc.post(path, data={"csrf_token": sc.csrf, **data})


def test_store_qr_page_redirects_and_refuses_forged_codes(client, svc):
    w = Waiter(client, svc)
    r = client.get(w.base)
    assert r.status_code == 303 and "d=" in r.headers["Location"]
    html = client.get(r.headers["Location"].replace("lang=zh", "lang=en")).get_data(as_text=True)
    assert "Take a number" in html and 'name="party"' in html
    assert 'name="phone"' not in html
    assert client.get("/q/q1.forgedsignature").status_code == 404
    table_token = svc.token_for("A1")  # a table token is not the store's queue code
    assert client.get(f"/q/{table_token}?d=queuephone0001").status_code == 404


def test_take_number_is_idempotent_per_phone_with_position_and_estimate(client, svc):
    a = Waiter(client, svc, d="queuephone0001")
    r = a.take(party=2, nickname="Window")
    assert r.status_code == 303 and "taken=1" in r.headers["Location"]
    assert "Your number: A001" in client.get(r.headers["Location"]).get_data(as_text=True)
    again = a.post(f"{a.base}/take", data=a.form(party="3"), headers=JSON).get_json()
    assert again["ok"] and again["number"] == "A001" and again["duplicate"] is True
    b = Waiter(client, svc, d="queuephone0002")
    assert b.post(f"{b.base}/take", data=b.form(party="3"), headers=JSON).get_json()["number"] == "A002"
    big = Waiter(client, svc, d="queuephone0003")
    assert big.post(f"{big.base}/take", data=big.form(party="6"), headers=JSON).get_json()["number"] == "B001"
    qa, qb, qbig = a.state()["queue"], b.state()["queue"], big.state()["queue"]
    assert (qa["position"], qa["ahead"], qa["status"]) == (1, 0, "waiting")
    assert (qb["position"], qb["ahead"]) == (2, 1)
    assert qbig["position"] == 1  # B numbers are a line of their own
    assert qb["wait_min"] > qa["wait_min"] > 0
    html = b.page().get_data(as_text=True)
    assert "A002" in html and "1 ahead of you" in html and "Estimated wait" in html
    assert svc.gw.store.read().execute("SELECT count(*) FROM ord_queue").fetchone()[0] == 3


def test_preorder_cart_uses_server_prices_and_cannot_be_sent(client, svc):
    w = Waiter(client, svc)
    w.take(party=2)
    r = w.add("h01", qty=2, spice="hot", staple="rice", extra={"price": "0.01", "unit_cents": "1"})
    assert r.status_code == 303 and "added=1" in r.headers["Location"]
    st = w.state()
    assert len(st["cart"]) == 1 and st["cart"][0]["amount"] == 2 * (4800 + 300)
    assert st["cart_total"] == 10200
    html = w.page().get_data(as_text=True)
    assert "Kung Pao chicken" in html and "Your pre-order" in html and "Hide dishes containing" in html
    assert 'name="idem"' not in html  # no "send to kitchen" while queueing
    assert client.post(f"/q/{w.token}/submit", data=w.form(idem="abcdefghijk")).status_code in (404, 405)
    assert svc.gw.store.read().execute("SELECT count(*) FROM ord_rounds").fetchone()[0] == 0
    # remove then re-add; another phone cannot touch this number's lines
    other = Waiter(client, svc, d="queuephone0009")
    other.take(party=1)
    line = st["cart"][0]["id"]
    r = other.post(f"{other.base}/cart/{line}", data=other.form(remove="1"))
    assert r.status_code == 404
    assert w.post(f"{w.base}/cart/{line}", data=w.form(remove="1")).status_code == 303
    assert w.state()["cart"] == []
    # the required option and unknown choices are checked exactly as at a table
    assert w.add("h01", spice="nuclear").status_code == 400


def test_call_shows_called_live_and_skip_drops_the_number(client, svc, staff_client):
    w = Waiter(client, svc)
    w.take(party=2)
    w.add("c01")
    etag = w.get(f"{w.base}/live?d={w.d}&lang=en").headers["ETag"]
    sc = staff_client
    html = sc.get("/staff/queue").get_data(as_text=True)
    assert "A001" in html and "1 dishes" in html
    entry_id = w.state()["queue"]["id"]
    assert staff_post(sc, f"/staff/queue/{entry_id}/call").status_code == 303
    r = w.get(f"{w.base}/live?d={w.d}&lang=en", headers={"If-None-Match": etag})
    assert r.status_code == 200 and "please come to the desk" in r.get_data(as_text=True)
    assert w.state()["queue"]["status"] == "called"
    assert staff_post(sc, f"/staff/queue/{entry_id}/skip").status_code == 303
    assert w.state()["queue"]["status"] == "skipped"
    html = w.page().get_data(as_text=True)
    assert "was skipped" in html and 'name="party"' in html
    assert w.add("c01").status_code == 409  # no pre-order on a skipped number
    # the phone may take a new number; the old one is not reused
    assert w.post(f"{w.base}/take", data=w.form(party="2"), headers=JSON).get_json()["number"] == "A002"
    r = staff_post(sc, f"/staff/queue/{entry_id}/call")
    assert r.status_code == 303  # refused with a flash message, not an error page
    assert "already skipped" in sc.get("/staff/queue").get_data(as_text=True)


def test_diner_leaves_the_queue_from_their_own_page(client, svc, staff_client):
    w = Waiter(client, svc)
    other = Waiter(client, svc, d="queuephone0002")
    w.take(party=2)
    w.add("c01")
    other.take(party=2)
    html = w.page().get_data(as_text=True)
    assert "Leave the queue A001" in html
    # another phone has its own number: leaving takes that one, never A001
    body = other.post(f"{other.base}/leave", data=other.form(), headers=JSON).get_json()
    assert (body["ok"], body["number"], body["status"]) == (True, "A002", "left")
    assert w.state()["queue"]["status"] == "waiting"
    r = w.post(f"{w.base}/leave", data=w.form())
    assert r.status_code == 303 and "left=1" in r.headers["Location"]
    st = w.state()
    assert st["queue"]["status"] == "left" and st["cart"] == []
    html = w.page().get_data(as_text=True)
    assert "You left the queue (A001)" in html and 'name="party"' in html
    assert w.post(f"{w.base}/leave", data=w.form()).status_code == 409  # once is enough
    assert w.post(f"{w.base}/leave", data={**w.form(), "csrf": "forged"}).status_code == 400
    assert "Left 已取消" in staff_client.get("/staff/queue").get_data(as_text=True)
    # a new number is a new number
    assert w.post(f"{w.base}/take", data=w.form(party="2"), headers=JSON).get_json()["number"] == "A003"


def test_seat_turns_the_preorder_into_the_table_cart_sent_as_round_1(client, svc, staff_client):
    w = Waiter(client, svc)
    w.take(party=3, nickname="Auntie")
    w.add("h01", qty=1, spice="mild", staple="rice")
    w.add("c01")
    entry_id = w.state()["queue"]["id"]
    r = staff_post(staff_client, f"/staff/queue/{entry_id}/seat", table="A2")
    assert r.status_code == 303
    assert staff_post(staff_client, f"/staff/queue/{entry_id}/seat", table="A2").status_code == 303  # no-op
    q = w.state()["queue"]
    assert q["status"] == "seated" and q["table"] == "A2"
    html = w.page().get_data(as_text=True)
    table_token = svc.token_for("A2")
    assert "Seated at table A2" in html and f"/t/{table_token}" in html
    at_table = Diner(client, svc, "A2", d=w.d)
    st = at_table.state()
    assert st["open"] and len(st["cart"]) == 2 and st["rounds"] == []  # not sent yet: still editable
    assert {c["diner"] for c in st["cart"]} == {"Auntie"}
    assert client.post(f"/t/{table_token}/cart/{st['cart'][1]['id']}",
                       data=at_table.form(qty="2")).status_code == 303
    r = at_table.send()
    assert r.status_code == 303 and "sent=1" in r.headers["Location"]
    st = at_table.state()
    assert st["cart"] == [] and st["rounds"][0]["no"] == 1
    covers = svc.gw.store.read().execute(
        "SELECT covers FROM ord_sessions WHERE table_id = 'A2' AND closed_ms IS NULL").fetchone()[0]
    assert covers == 3
    assert w.add("c01").status_code == 409  # the queue page no longer edits a seated party's order
    assert "A001" in staff_client.get("/staff/queue").get_data(as_text=True)  # listed as seated


def test_seat_at_an_open_table_moves_the_lines_into_its_cart(client, svc, staff_client):
    at_table = Diner(client, svc, "B1", d="tablephone01")
    at_table.add("d01", ice="warm")
    w = Waiter(client, svc)
    w.take(party=2)
    w.add("c01")
    entry_id = w.state()["queue"]["id"]
    assert staff_post(staff_client, f"/staff/queue/{entry_id}/seat", table="B1").status_code == 303
    assert len(at_table.state()["cart"]) == 2
    open_pseudo = svc.gw.store.read().execute(
        "SELECT count(*) FROM ord_sessions WHERE table_id LIKE '~q%' AND closed_ms IS NULL").fetchone()[0]
    assert open_pseudo == 0


def test_hostile_input_is_escaped_or_refused_and_nothing_personal_is_stored(client, svc, staff_client):
    w = Waiter(client, svc)
    r = w.take(party=2, nickname="x" * 25)
    assert r.status_code == 400 and "too long" in r.get_data(as_text=True)
    assert w.take(party=1000).status_code == 400
    assert w.take(party="two").status_code == 400
    r = w.post(f"{w.base}/take", data={"d": w.d, "party": "2"})  # no anti-forgery value
    assert r.status_code == 400
    assert svc.gw.store.read().execute("SELECT count(*) FROM ord_queue").fetchone()[0] == 0
    r = w.take(party=2, nickname="<script>x</script>", phone="13800138000", name="Zhang San")
    assert r.status_code == 303
    html = w.page().get_data(as_text=True)
    staff_html = staff_client.get("/staff/queue").get_data(as_text=True)
    for page in (html, staff_html):
        assert "<script>x</script>" not in page and "&lt;script&gt;" in page
    conn = svc.gw.store.read()
    cols = [r[1] for r in conn.execute("PRAGMA table_info(ord_queue)")]
    assert "name" not in cols and not any("phone_number" in c or "mobile" in c for c in cols)
    row = dict(zip(cols, conn.execute("SELECT * FROM ord_queue").fetchone(), strict=True))
    assert w.d not in str(row)  # the phone's page id is kept only as a MAC
    for table in ("ord_queue", "ord_diners", "ord_sessions", "audit_log"):
        dump = str(conn.execute(f"SELECT * FROM {table}").fetchall())
        assert "13800138000" not in dump and "Zhang San" not in dump
    # a short, guessable page id is not accepted as the key to a number
    r = w.get(f"{w.base}?d=abc123")
    assert r.status_code == 303 and "d=abc123" not in r.headers["Location"]


def test_taking_numbers_is_rate_limited(make_gw):
    from web import create_app

    gw = make_gw('[ordering]\nsubmit_rate = 4\n')
    svc = gw.services["ordering"]
    client = create_app(gw, {"TESTING": True}).test_client()
    codes = []
    for _ in range(6):  # the same phone taking, being skipped, taking again...
        w = Waiter(client, svc, d="ratephone00001")
        r = w.post(f"{w.base}/take", data=w.form(party="2"), headers=JSON)
        codes.append(r.status_code)
        if r.status_code == 200:
            entry = queue.for_phone(svc.gw.store.read(), queue.phone_key(svc.secret, w.d),
                                    queue.day_of(int(time.time() * 1000)))
            svc.queue_skip(entry.id, "test")
    assert 429 in codes and codes[0] == 200


def test_cli_prints_the_queue_url(tmp_path):
    from ordhelpers import gateway_config

    from gateway.cli import ordering as cli

    config = tmp_path / "storegw.toml"
    cfg = gateway_config(tmp_path)
    config.write_text(f'[store]\nid = "sh-001"\ndata_dir = "{cfg.data_path.as_posix()}"\n'
                      '[uplink]\nenabled = false\n[web]\npublic_host = "order.test"\n')
    url = run_cli(cli.tables, "queue-url", "--config", str(config)).strip()
    assert re.fullmatch(r"http://order\.test/q/q1\.[A-Za-z0-9_-]+", url)
