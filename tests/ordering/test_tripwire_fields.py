"""Issue 10: every free-text field refuses a card number and masks ID and mobile numbers (diner page, KDS,
tickets, staff pages, the database); after a paid bill a new phone does not see the previous party."""

from __future__ import annotations

import json
import re
import time

import pytest
from ordhelpers import PASSWORD, Diner, add_privileged, staff_login
from ordhelpers import csrf as _csrf

from gateway.core.errors import CardNumberRefused
from gateway.staff import accounts as staffops

ID = "11010519491231002X"  # gb-std-beijing-chaoyang (tests/devices/vectors/gb11643.json)
MOBILE = "13912345678"
CARD = "4242424242424242"  # luhn-4242424242424242 (tests/devices/vectors/magstripe.json)
MRZ2 = "L898902C36UTO7408122F1204159ZE184226B<<<<<10"  # td3-icao-specimen line 2 (mrz.json)
PLANTED = (ID, MOBILE, CARD, "ZE184226B", "L898902C3")


def _staff(gw, svc, name="wang", role="manager"):
    from web import create_app

    c = create_app(gw, {"TESTING": True}).test_client()
    if staffops.matrix.needs_totp(role):  # managers sign in with a password and TOTP
        assert staff_login(c, name, PASSWORD, add_privileged(svc, name, role).code()).status_code == 303
        return c
    svc.writer.call(lambda c: staffops.add_staff(c, name, role, "246813"))
    page = c.get("/staff/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    assert c.post("/staff/login", data={"name": name, "pin": "246813", "csrf_token": token}).status_code == 303
    return c


def _everything(gw) -> str:
    """Every row of every table as text: what the database holds (decrypted)."""
    conn = gw.store.read()
    out = []
    for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
        for row in conn.execute(f"SELECT * FROM {table}"):  # noqa: S608
            out.append(repr(row))
    return "\n".join(out)


def _assert_clean(text: str) -> None:
    for secret in PLANTED:
        assert secret not in text, secret


def test_diner_fields_refuse_cards_and_mask_ids_and_phones(gw, svc, client):
    d = Diner(client, svc, "A1")
    r = client.post(f"/t/{d.token}/add", data=d.form(item="h01", note=f"card {CARD}"))
    assert r.status_code == 400
    html = r.get_data(as_text=True)
    assert "card numbers" in html and "银行卡号" in html and CARD not in html
    r = client.post(f"/t/{d.token}/add", data=d.form(item="h01", note=f"card {CARD}"),
                    headers={"Accept": "application/json", "X-Requested-With": "js"})
    assert r.status_code == 400 and r.get_json()["code"] == "card_number"
    client.post(f"/t/{d.token}/name", data=d.form(nickname=f"Li {MOBILE}"))
    d.add("h01", note=f"for {ID}, {MRZ2}")
    d.send()
    page = d.page().get_data(as_text=True)
    assert "139****5678" in page and "110105********002X" in page
    _assert_clean(page)
    _assert_clean(json.dumps(d.state(), ensure_ascii=False))
    # The kitchen ticket (print_jobs.doc) and the KDS.
    staff = _staff(gw, svc)
    kds = staff.get("/staff/kds/hot").get_data(as_text=True)
    assert "110105********002X" in kds
    _assert_clean(kds)
    _assert_clean(staff.get("/staff/tables/A1").get_data(as_text=True))
    _assert_clean(_everything(gw))


def test_queue_nickname(gw, svc, client):
    from ordhelpers import phone_address

    from gateway.ordering import queue

    token = queue.store_token(svc.secret, svc.store_id)
    env = {"REMOTE_ADDR": phone_address("queuephone0001")}
    form = {"csrf": svc.form_token(token), "d": "queuephone0001", "lang": "en", "party": "2"}
    r = client.post(f"/q/{token}/take", data={**form, "nickname": CARD}, environ_base=env)
    assert r.status_code == 400 and CARD not in r.get_data(as_text=True)
    client.post(f"/q/{token}/take", data={**form, "nickname": f"Wu {MOBILE}"}, environ_base=env)
    page = client.get(f"/q/{token}?d=queuephone0001&lang=en", environ_base=env).get_data(as_text=True)
    assert "139****5678" in page
    _assert_clean(_everything(gw))


def test_staff_fields_reasons_references_and_names(gw, svc, client):
    staff = _staff(gw, svc)
    d = Diner(client, svc, "A1")
    d.add("h01", qty=2)
    d.add("c01")
    d.send()
    lines = d.state()["rounds"][0]["lines"]
    token = _csrf(staff, "/staff/tables/A1")
    staff.post(f"/staff/lines/{lines[0]['id']}/adjust",
               data={"action": "void", "reason": f"guest {ID} paid by {CARD}", "csrf_token": token})
    assert d.state()["rounds"][0]["lines"][0]["status"] == "sent"  # refused: nothing changed
    staff.post(f"/staff/lines/{lines[0]['id']}/adjust",
               data={"action": "comp", "reason": f"owner's friend {MOBILE}", "csrf_token": token})
    staff.post("/staff/tables/A1/pay", data={"method": "qr", "reference": f"T{MOBILE}", "csrf_token": token})
    page = staff.get("/staff/tables/A1").get_data(as_text=True)
    _assert_clean(page)
    # Staff names (the CLI and the staff page both end in add_staff).
    svc.writer.call(lambda c: staffops.add_staff(c, f"Zhao {MOBILE}", "waiter", "246813"))
    names = [r[0] for r in gw.store.read().execute("SELECT name FROM ord_staff")]
    assert "Zhao 139****5678" in names
    member, why = staffops.check_login(gw.store.read(), svc.writer.call, f"Zhao {MOBILE}", "246813")
    assert member is not None, why  # signs in with what they typed
    with pytest.raises(CardNumberRefused):
        svc.writer.call(lambda c: staffops.add_staff(c, CARD, "waiter", "246813"))
    _assert_clean(_everything(gw))


def test_new_phone_after_payment_sees_only_that_the_table_is_being_cleared(gw, svc, client):
    party = Diner(client, svc, "A1", d=svc.new_diner_id())
    client.post(f"/t/{party.token}/name", data=party.form(nickname="Grandma Chen"))
    party.add("h01", note="no coriander for Chen")
    party.send()
    early = svc.new_diner_id()  # a phone of the party that only looked at the page
    unsigned = Diner(client, svc, "A1", d="phone02")  # a phone that ordered, with an older-style id
    unsigned.add("c01")
    unsigned.send()
    time.sleep(1.05)  # diner ids carry whole seconds; one issued in the payment's second counts as after
    svc.pay("A1", "cash", "", "wang")

    # A new phone scans the table QR: it gets a fresh id and sees only "being cleared".
    r = client.get(f"/t/{party.token}?lang=en")
    assert r.status_code == 303
    new_d = re.search(r"d=([0-9a-f]{16})", r.headers["Location"]).group(1)
    newcomer = Diner(client, svc, "A1", d=new_d)
    for text in (newcomer.page().get_data(as_text=True),
                 client.get(f"/t/{party.token}/live?d={new_d}&lang=en").get_data(as_text=True),
                 json.dumps(newcomer.state(), ensure_ascii=False),
                 client.get(f"/t/{party.token}/state.json").get_data(as_text=True)):  # no id at all
        assert "Grandma" not in text and "coriander" not in text
    assert "being cleared" in newcomer.page().get_data(as_text=True)
    assert newcomer.state()["clearing"] is True
    # Joining after the payment (naming itself) does not make it part of the party.
    client.post(f"/t/{party.token}/name", data=newcomer.form(nickname="Nosy"))
    assert "coriander" not in json.dumps(newcomer.state(), ensure_ascii=False)
    # A forged id (a plausible time with a wrong MAC) is not part of the party either.
    forged = Diner(client, svc, "A1", d=early[:8] + "00000000")
    assert "coriander" not in json.dumps(forged.state(), ensure_ascii=False)

    # The party's own phones still see their bill.
    for own in (party, Diner(client, svc, "A1", d=early), unsigned):
        st = own.state()
        assert st["paid"] and not st.get("clearing")
        assert any(line["note"] == "no coriander for Chen" for r in st["rounds"] for line in r["lines"])
    # Once staff clear the table, the next party starts fresh.
    svc.clear_table("A1", "wang")
    assert newcomer.state()["rounds"] == []
