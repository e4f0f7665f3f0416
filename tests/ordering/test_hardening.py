"""Issue 9: what a hostile diner on the store Wi-Fi found, rerun against the real app over a real store.

Live slots taken by anonymous streams, Unicode digits in URLs,
CR/LF in redirects, off-site redirects, invisible characters, `..` as a device id, one phone
filling the shared cart, inline styles against the CSP.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from ordhelpers import PASSWORD, Diner, add_privileged, phone_address, staff_login

from gateway.staff import accounts as staffops

JSON = {"Accept": "application/json", "X-Requested-With": "js"}
ROOT = Path(__file__).resolve().parents[2]
PIN = "246813"


# ---------------------------------------------------------------------------- 3. live slots per class

def _staff_client(gw, svc, name="chef", role="kitchen"):
    from web import create_app

    c = create_app(gw, {"TESTING": True}).test_client()
    if staffops.matrix.needs_totp(role):  # managers sign in with a password and TOTP
        auth = add_privileged(svc, name, role)
        assert staff_login(c, name, PASSWORD, auth.code()).status_code == 303
        return c
    svc.writer.call(lambda c: staffops.add_staff(c, name, role, PIN))
    page = c.get("/staff/login").get_data(as_text=True)
    tok = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    assert c.post("/staff/login", data={"name": name, "pin": PIN, "csrf_token": tok}).status_code == 303
    return c


def test_three_hundred_anonymous_streams_leave_the_kds_streaming(gw, svc):
    from web import create_app

    app = create_app(gw, {"TESTING": True})
    kds = app.test_client()
    page = kds.get("/staff/login").get_data(as_text=True)
    tok = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    svc.writer.call(lambda c: staffops.add_staff(c, "chef", "kitchen", PIN))
    assert kds.post("/staff/login", data={"name": "chef", "pin": PIN, "csrf_token": tok}).status_code == 303
    diner = app.test_client()
    token = svc.token_for("A1")
    held = []
    try:
        for i in range(300):
            held.append(diner.get(f"/t/{token}/events", buffered=False,
                                  environ_base={"REMOTE_ADDR": f"10.0.{i // 250}.{i % 250 + 1}"}))
        busy = sum(b"data: busy" in next(iter(r.response), b"") for r in held)
        assert busy > 250  # the diners' share is full
        for station in ("hot", "bar"):
            r = kds.get(f"/staff/events?ch=kds:{station}", buffered=False)
            first = next(iter(r.response))
            assert b"busy" not in first and first.startswith(b"retry: 1500"), first
            held.append(r)
    finally:
        for r in held:
            r.close()
    # every slot came back
    from web.diner.views import LiveSlots

    slots = app.extensions["storegw-sse"]
    assert isinstance(slots, LiveSlots) and slots.free() == slots.sizes


def test_one_phone_cannot_take_every_diner_stream(gw, svc):
    """bench/attack.py: one address held every diner slot; the other diners' pages fell back to polling."""
    from web import create_app

    app = create_app(gw, {"TESTING": True})
    phone = app.test_client()
    token = svc.token_for("A1")
    held = []
    try:
        for _ in range(6):
            held.append(phone.get(f"/t/{token}/events", buffered=False, environ_base={"REMOTE_ADDR": "10.0.0.5"}))
        first = [next(iter(r.response), b"") for r in held]
        assert sum(b"busy" not in f for f in first) == 2, first
        other = app.test_client().get(f"/t/{token}/events", buffered=False, environ_base={"REMOTE_ADDR": "10.0.0.6"})
        held.append(other)
        assert next(iter(other.response)).startswith(b"retry: 1500")
    finally:
        for r in held:
            r.close()
    slots = app.extensions["storegw-sse"]
    assert slots.free() == slots.sizes
    again = phone.get(f"/t/{token}/events", buffered=False, environ_base={"REMOTE_ADDR": "10.0.0.5"})
    assert next(iter(again.response)).startswith(b"retry: 1500")  # its share came back
    again.close()


# ---------------------------------------------------------------------------- 4. the two 500s and URL numbers

@pytest.mark.parametrize("version", ["²", "01", "١", "１", "+1", " 1", "1_0", "0x1", ""])
def test_token_versions_must_be_plain_ascii_digits(client, svc, version):
    good = svc.token_for("A1")
    table, _, sig = good.split(".")
    forged = f"{table}.{version}.{sig}"
    for path in (f"/t/{forged}/state.json", f"/t/{forged}?d=abcdef12", f"/t/{forged}/live", f"/t/{forged}/events"):
        r = client.get(path)
        assert r.status_code == 404, (path, r.status_code)
    assert client.get(f"/t/{good}/state.json").status_code == 200


@pytest.mark.parametrize("number", ["١", "１", "01", "²"])
def test_numbers_in_routes_are_ascii_digits(client, svc, number):
    d = Diner(client, svc, "A1")
    d.add("c01")
    r = client.post(f"/t/{d.token}/cart/{number}", data=d.form(remove="1"))
    assert r.status_code == 404
    assert len(d.state()["cart"]) == 1
    r = client.get(f"/t/{d.token}/events?v={number}", buffered=False)
    assert r.status_code == 200
    r.close()


def test_login_next_with_crlf_is_not_a_500(gw, svc):
    from web import create_app

    auth = add_privileged(svc, "wang", "manager")
    c = create_app(gw, {"TESTING": True}).test_client()
    tok = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/staff/login").get_data(as_text=True)).group(1)
    r = c.post("/staff/login?next=/staff/%0D%0ASet-Cookie:%20x=1", data={"name": "wang", "pin": PASSWORD,
                                                                        "code": auth.code(), "csrf_token": tok})
    assert r.status_code == 303
    assert r.headers["Location"] in ("/staff/", "http://localhost/staff/") and "Set-Cookie: x" not in str(r.headers)


# ---------------------------------------------------------------------------- 6. redirects

def test_merge_slashes_redirect_stays_on_this_host(client, svc):
    for path in ("/t//x", f"/t//{svc.token_for('A1')}", "/staff"):
        r = client.get(path, headers={"Host": "evil.example"})
        loc = r.headers.get("Location", "")
        assert "evil.example" not in loc, (path, r.status_code, loc)


def test_staff_back_field_only_goes_to_same_origin_paths(gw, svc, client):
    staff = _staff_client(gw, svc, "boss", "manager")
    d = Diner(client, svc, "A1")
    d.add("c01")
    d.send()
    client.post(f"/t/{d.token}/request", data=d.form(kind="waiter"))
    home = staff.get("/staff/").get_data(as_text=True)
    task = re.search(r"/staff/tasks/(\d+)/ack", home).group(1)
    tok = re.search(r'name="csrf_token" value="([^"]+)"', home).group(1)
    for back in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)",
                 "/staff/\r\nSet-Cookie: a=b", "http://order.test.evil.example/"):
        r = staff.post(f"/staff/tasks/{task}/ack", data={"csrf_token": tok, "back": back})
        assert r.status_code == 303, back
        loc = r.headers["Location"]
        assert "evil" not in loc and "\n" not in loc and "javascript" not in loc, (back, loc)
    r = staff.post(f"/staff/tasks/{task}/ack", data={"csrf_token": tok, "back": "/staff/tables/A1"})
    assert r.headers["Location"].endswith("/staff/tables/A1")


# ---------------------------------------------------------------------------- 6. one text cleaner

INVISIBLE = ["\u202e", "\u200b", "\u2060", "\ufeff", "\u00ad", "\U000e0041\U000e007f", "\u2066", "\u202a",
             "\ue000", "\u200e",
             # invisible but not Cf (bench/attack.py found them on pages and paper): Hangul fillers, the
             # combining grapheme joiner, Khmer inherent vowels
             "\u3164", "\u115f", "\u1160", "\uffa0", "\u034f", "\u17b4"]


def test_invisible_and_direction_characters_never_reach_storage(client, svc, gw):
    d = Diner(client, svc, "A1")
    evil = "ab" + "".join(INVISIBLE) + "x" + "\u0301" * 50 + "d"
    client.post(f"/t/{d.token}/name", data=d.form(nickname=evil))
    d.add("c01", note=evil)
    nick = svc.nickname(d.d)
    note = d.state()["cart"][0]["note"]
    for text in (nick, note):
        assert not any(ch in text for ch in "".join(INVISIBLE)), ascii(text)
        assert text.count("\u0301") <= 3 and text.startswith("abx") and text.endswith("d"), ascii(text)
    # staff-typed text goes through the same cleaner
    svc.writer.call(lambda c: staffops.add_staff(c, "\u202eevil\u200b", "waiter", PIN))
    names = [r[0] for r in gw.store.read().execute("SELECT name FROM ord_staff")]
    assert "evil" in names


def test_the_cleaner_keeps_ordinary_text():
    from gateway.core.text import clean

    assert clean("  少辣，不要香菜  please\tno  MSG ", 140) == "少辣，不要香菜 please no MSG"
    assert clean("Phở bò (Việt)", 40) == "Phở bò (Việt)"
    assert clean("less salt\x1b\x40\x1d\x56\x00 please", 40) == "less salt @ V please"
    assert clean("👍🏽 ok", 10) == "👍🏽 ok"
    assert clean("❤️ 한국어", 10) == "❤️ 한국어"  # a variation selector after its emoji stays
    assert clean("\u2800\u2800a\u2800b\u3164", 10) == "a b"  # the braille blank is a space, fillers go


# ---------------------------------------------------------------------------- 6. device ids

@pytest.mark.parametrize("device", [".", "..", "a\n"])
def test_dot_device_ids_are_refused(device):
    from gateway.core.models import DEVICE_ID_RE
    from gateway.spine.payload import InvalidPayload, parse, parse_status

    assert not DEVICE_ID_RE.match(device)
    with pytest.raises(InvalidPayload):
        parse(device, b'{"t": 1}', 1_700_000_000_000)
    with pytest.raises(InvalidPayload):
        parse_status(device, b'{"state": "offline"}')


def test_ordinary_device_ids_still_pass():
    from gateway.core.models import DEVICE_ID_RE

    for ok in ("fridge-1", "a.b", "...x", "v1.2"):
        assert DEVICE_ID_RE.match(ok), ok


# ---------------------------------------------------------------------------- 6. styles in the stylesheet

def test_no_inline_style_in_templates_or_rendered_kds(gw, svc, client):
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "web" / "templates").rglob("*.html")
                 if re.search(r"\sstyle=", p.read_text(encoding="utf-8"))]
    assert not offenders, offenders
    d = Diner(client, svc, "A1")
    d.add("h01")
    d.send()
    staff = _staff_client(gw, svc, "boss", "manager")
    for path in ("/staff/kds/hot", "/staff/kds/hot/live", "/staff/"):
        r = staff.get(path)
        assert "style-src 'self'" in r.headers["Content-Security-Policy"]
        assert not re.search(r"\sstyle=", r.get_data(as_text=True)), path


# ---------------------------------------------------------------------------- 6. a share of the table cart

def test_one_phone_cannot_fill_the_shared_cart(make_gw):
    from web import create_app

    gw = make_gw("[ordering]\ncart_lines_per_client = 20\n")
    svc = gw.services["ordering"]
    app = create_app(gw, {"TESTING": True})
    hog = Diner(app.test_client(), svc, "A1", d="hogphone1")
    codes = [hog.client.post(f"/t/{hog.token}/add", data=hog.form(item="c01", d=f"hog{i:05d}"),
                             environ_base={"REMOTE_ADDR": "10.0.0.66"}).status_code for i in range(60)]
    assert codes.count(303) == 20 and set(codes[20:]) == {409}
    other = Diner(app.test_client(), svc, "A1", d="friend01")
    r = other.client.post(f"/t/{other.token}/add", data=other.form(item="c04"),
                          environ_base={"REMOTE_ADDR": phone_address("friend01")})
    assert r.status_code == 303
    r = other.client.post(f"/t/{other.token}/submit", data=other.form(idem=other.idem()),
                          environ_base={"REMOTE_ADDR": phone_address("friend01")})
    assert r.status_code == 303 and len(other.state()["rounds"][0]["lines"]) == 21




@pytest.mark.parametrize("sent", ["é", "\udcff", "１２３", "", None, 12, "abc"])
def test_secrets_from_clients_compare_without_raising(sent):
    from gateway.core.text import same_secret

    assert same_secret(sent, "abd") is False  # never a TypeError (a 500), whatever the client sends
    assert same_secret("abd", "abd") is True


# ---------------------------------------------------------------------------- a client's share of its table's budget

def test_one_phone_cannot_use_up_its_tables_write_budget(gw, svc):
    """bench/attack.py: 260 writes from one phone (fresh page ids, lines that do not exist) spent the
    table's whole `ordering.cart_rate`; the friend at the table was refused, and 260 nicknames were stored."""
    from web import create_app

    app = create_app(gw, {"TESTING": True})
    hog = Diner(app.test_client(), svc, "B1", d="budgethog")
    hog_addr = {"REMOTE_ADDR": "10.0.0.77"}
    codes = [hog.client.post(f"/t/{hog.token}/name", data=hog.form(nickname=f"n{i}", d=f"bh{i:08d}"),
                             headers=JSON, environ_base=hog_addr).status_code for i in range(130)]
    codes += [hog.client.post(f"/t/{hog.token}/cart/999999", data=hog.form(qty="1"), headers=JSON,
                              environ_base=hog_addr).status_code for _ in range(130)]
    assert codes.count(429) >= 260 - 70, codes  # about a quarter of cart_rate (240/min) gets through
    stored = gw.store.read().execute("SELECT count(*) FROM ord_diners WHERE id LIKE 'bh%'").fetchone()[0]
    assert stored <= 70
    friend = Diner(app.test_client(), svc, "B1", d="budgetfr1")
    at = {"REMOTE_ADDR": phone_address("budgetfr1")}
    r = friend.client.post(f"/t/{friend.token}/add", data=friend.form(item="c01"), environ_base=at)
    assert r.status_code == 303
    r = friend.client.post(f"/t/{friend.token}/request", data=friend.form(kind="waiter"), environ_base=at)
    assert r.status_code == 303


# ---------------------------------------------------------------------------- numbers typed into forms

@pytest.mark.parametrize("qty", ["９", "٩", "1_0", "²", "-1", "1.5", "abc"])
def test_quantities_are_ascii_digits(client, svc, qty):
    """bench/attack.py: int() took "９", "٩" and "1_0" as quantities 9, 9 and 10."""
    d = Diner(client, svc, "A1")
    r = client.post(f"/t/{d.token}/add", data=d.form(item="c01", qty=qty), headers=JSON)
    assert r.status_code == 400 and r.get_json()["code"] == "bad_qty", (qty, r.status_code)
    assert d.state()["cart"] == []
    r = client.post(f"/t/{d.token}/add", data=d.form(item="c01", qty=" 2 "), headers=JSON)
    assert r.status_code == 200 and d.state()["cart"][0]["qty"] == 2


@pytest.mark.parametrize("party", ["１", "٢", "1_0", "²"])
def test_party_sizes_are_ascii_digits(client, svc, party):
    from gateway.ordering import queue

    token = queue.store_token(svc.secret, svc.store_id)
    r = client.post(f"/q/{token}/take", data={"csrf": svc.form_token(token), "d": "partyphone0001", "party": party},
                    headers=JSON)
    assert r.status_code == 400 and r.get_json()["code"] == "bad_party", (party, r.status_code)


@pytest.mark.parametrize("stay", ["²", "１", "1_0"])
def test_front_desk_stay_numbers_are_ascii_digits(make_gw, stay):
    """bench/attack.py: GET /staff/frontdesk?stay=² and a registration with stay=² answered 500."""
    gw = make_gw("[guests]\nenabled = true\n")
    svc = gw.services["ordering"]
    staff = _staff_client(gw, svc, "boss", "manager")
    assert staff.get(f"/staff/frontdesk?stay={stay}").status_code == 200
    tok = re.search(r'name="csrf_token" value="([^"]+)"', staff.get("/staff/frontdesk").get_data(as_text=True)).group(1)
    r = staff.post("/staff/frontdesk/register", data={"csrf_token": tok, "stay": stay})
    assert r.status_code == 400  # the form comes back with what is missing


def test_form_uint():
    from gateway.core.text import form_uint

    assert [form_uint(v, 1) for v in ("", None, "3", " 3 ", 7)] == [1, 1, 3, 3, 7]
    assert [form_uint(v, 1) for v in ("３", "٣", "3_0", "+3", "3.0", "03", True, [3])] == [None] * 8


# ---------------------------------------------------------------------------- one rating per client

def test_one_phone_rates_a_bill_once_whatever_page_ids_it_uses(gw, svc, client):
    """bench/attack.py: ratings were one per page id (``d``, chosen by the client): one phone that joined
    the party under five ids rated the visit five times."""
    at = {"REMOTE_ADDR": "10.0.0.88"}
    phones = [Diner(client, svc, "A1", d=f"rater{i:04d}") for i in range(5)]
    phones[0].add("c01")
    phones[0].send()
    for p in phones:  # each page id acts at the open table, so it counts as one of the party
        assert client.post(f"/t/{p.token}/name", data=p.form(nickname="x"), environ_base=at).status_code == 303
    svc.pay("A1", "cash", "", "boss")
    for p in phones:
        client.post(f"/t/{p.token}/feedback", data={**p.form(), "rating": "1"}, environ_base=at)
    rows = gw.store.read().execute("SELECT rating FROM mem_feedback").fetchall()
    assert [r[0] for r in rows] == [1]
    r = client.post(f"/t/{phones[0].token}/feedback", data={**phones[0].form(), "rating": "５"}, environ_base=at)
    assert r.status_code == 400
    friend = {"REMOTE_ADDR": "10.0.0.89"}  # another phone of the party rates too
    r = client.post(f"/t/{phones[1].token}/feedback", data={**phones[1].form(), "rating": "5"}, environ_base=friend)
    assert r.status_code == 303, r.get_data(as_text=True)[-400:]
    assert sorted(r[0] for r in gw.store.read().execute("SELECT rating FROM mem_feedback")) == [1, 5]
