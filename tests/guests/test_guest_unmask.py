"""Issue 11, item 9: a guest's full ID or passport number only through the audited unmask.

A manager (password + TOTP) reveals one guest's document number from the stay page with a typed
reason and a fresh authenticator code; the row's document type decides the page (ID numbers on
``/staff/unmask/id``, passports and travel permits on ``/staff/unmask/passport``) and the answer
names it. Refused and audited: no reason, no code, a replayed code, a role not allowed, the other
document page. The value is in the unmask answer only: never on the stay page, in the audit chain
or the attempts log. Identities: guestkit (vector ids from tests/devices/vectors).
"""

from __future__ import annotations

import re

import pytest
from guestkit import ADULT, PASSPORT, PASSWORD, id_card, mrz_zone
from guestkit import idcard_event as _idcard_event
from guestkit import mrz_event as _mrz_event
from guestkit import scan as _scan
from guestkit import stay_form as _stay_form

from web import create_app

FIELD = "guest_people.doc_number_ct"
PASSPORT_NO = "ZE000509"  # td3-can (mrz.json)
PIN = "246813"


@pytest.fixture
def desk(gw, svc):
    """A stay with a resident-ID guest and a passport guest; (stay id, ID guest id, passport guest id)."""
    card = id_card(*ADULT)
    stay_id, id_guest = svc.register(_stay_form(scan=_scan(svc, _idcard_event(card))), "lin")
    scan = _scan(svc, _mrz_event(PASSPORT))
    _, pp_guest = svc.register({"scan": scan, "photo_match": "1", "visa_type": "L", "visa_valid_to": "2027-01-01"},
                               "lin", stay_id)
    assert PASSPORT_NO in mrz_zone(PASSPORT)
    return stay_id, id_guest, pp_guest, card["id_number"]


def _signed_in(gw, name, secret, code=""):
    c = create_app(gw, {"TESTING": True}).test_client()
    page = c.get("/staff/login").get_data(as_text=True)
    tok = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    signed = c.post("/staff/login", data={"name": name, "pin": secret, "code": code, "csrf_token": tok})
    assert signed.status_code == 303
    c.csrf = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/staff/login").get_data(as_text=True)).group(1)
    return c


def _reveal(c, kind, ref, reason="", code=""):
    return c.post(f"/staff/unmask/{kind}", data={"field": FIELD, "ref": str(ref), "reason": reason, "code": code,
                                                 "csrf_token": c.csrf}, headers={"X-Requested-With": "js"})


def _audit(gw):
    return gw.store.read().execute("SELECT action, subject, why FROM audit_log WHERE action LIKE 'unmask%' "
                                   "ORDER BY seq").fetchall()


def test_a_manager_reveals_the_right_document_with_reason_and_a_fresh_code(gw, desk):
    stay_id, id_guest, pp_guest, id_number = desk
    boss = _signed_in(gw, "boss", PASSWORD, gw.boss.code())
    page = boss.get(f"/staff/frontdesk/stays/{stay_id}?lang=en").get_data(as_text=True)
    # the stay page: masked numbers, a Reveal link to the page of each guest's document type
    assert id_number not in page and PASSPORT_NO not in page
    assert f"/staff/unmask/id?field={FIELD}&amp;ref={id_guest}" in page
    assert f"/staff/unmask/passport?field={FIELD}&amp;ref={pp_guest}" in page
    r = _reveal(boss, "id", id_guest, "police asked about room 0801", gw.boss.code())
    assert r.status_code == 200 and r.get_json() == {"ok": True, "value": id_number, "document": "resident_id"}
    # a passport number is not revealed as an ID number (nor the other way round)
    r = _reveal(boss, "id", pp_guest, "police asked", gw.boss.code())
    assert r.status_code == 409 and r.get_json()["code"] == "other-kind"
    rows = _audit(gw)
    assert [(a, s) for a, s, _ in rows] == [("unmask", f"field:{FIELD}/{id_guest}"),
                                          ("unmask-refused", f"field:{FIELD}/{pp_guest}")]
    assert rows[1][2].startswith("id; other-kind;")
    db = gw.store.read()
    dump = repr(db.execute("SELECT * FROM audit_log").fetchall()) + repr(db.execute("SELECT * FROM staff_unmasks")
                                                                          .fetchall())
    assert id_number not in dump and PASSPORT_NO not in dump


def test_refusals_are_audited_and_a_replayed_code_is_refused(gw, desk):
    _, id_guest, pp_guest, id_number = desk
    boss = _signed_in(gw, "boss", PASSWORD, gw.boss.code())
    used = gw.boss.totp.generate_otp(gw.boss.step)  # the code boss signed in with
    causes = []
    for kind, ref, reason, code in (("id", id_guest, "", "123456"),                # no reason
                                    ("id", id_guest, "police", ""),                # no code
                                    ("passport", pp_guest, "police", used)):       # a replayed code
        r = _reveal(boss, kind, ref, reason, code)
        assert r.status_code in (400, 401) and id_number not in r.get_data(as_text=True)
        causes.append(r.get_json()["code"])
    assert causes == ["no-reason", "no-totp", "replayed-totp"]
    code = gw.boss.code()  # the passport page, as staff see it: the number and its document type
    html = boss.post("/staff/unmask/passport", data={"field": FIELD, "ref": str(pp_guest), "reason": "visa check",
                                                     "code": code, "csrf_token": boss.csrf})
    text = html.get_data(as_text=True)
    assert html.status_code == 200 and PASSPORT_NO in text and "Passport 护照" in text
    assert _reveal(boss, "passport", pp_guest, "again", code).get_json()["code"] == "replayed-totp"
    # the front desk's cashier may register guests but not reveal a number: no link, and refused
    lin = _signed_in(gw, "lin", PIN)
    stay_page = lin.get(f"/staff/frontdesk/stays/{desk[0]}").get_data(as_text=True)
    assert "/staff/unmask/" not in stay_page
    r = _reveal(lin, "id", id_guest, "curious")
    assert r.status_code == 403 and id_number not in r.get_data(as_text=True)
    actions = [(a, w.split(";")[1].strip()) for a, _, w in _audit(gw)]
    assert actions == [("unmask-refused", "no-reason"), ("unmask-refused", "no-totp"),
                       ("unmask-refused", "replayed-totp"), ("unmask", "granted"),
                       ("unmask-refused", "replayed-totp"), ("unmask-refused", "role")]
