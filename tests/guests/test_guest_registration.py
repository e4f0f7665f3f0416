"""Guest registration through the service and the front-desk pages (Flask test client).

Reader events are the drivers' own ``DeviceEvent`` shape, handed to the hub; the real serial path
(pty simulator → driver → hub → page) is in test_e2e_frontdesk.py. Identities: guestkit (vector ids).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import stat

import pytest
from guestkit import ADULT, ADULT_F, MINOR, PASSPORT, id_card
from guestkit import idcard_event as _idcard_event
from guestkit import mrz_event as _mrz_event
from guestkit import scan as _scan
from guestkit import stay_form as _stay_form
from ordhelpers import csrf as _csrf

from gateway.core.errors import GuestError
from gateway.guests import rules
from web import create_app


def test_resident_id_registered_encrypted_and_masked(svc, gw) -> None:
    card = id_card(*ADULT)
    scan = _scan(svc, _idcard_event(card))
    # the list of reads shows masked values only
    assert svc.scans()[0]["number"] == "360426********0071"
    assert svc.scans()[0]["name"] == "王**"
    stay_id, pid = svc.register(_stay_form(scan=scan), "lin")
    assert svc.scans() == []  # the read is consumed
    view = svc.stay(stay_id)
    assert view["room"] == "0801"
    (guest,) = view["guests"]
    assert guest["number"] == "360426********0071"
    assert guest["name"] == "王**"
    assert guest["photo"] is True
    # stored: every identity value is a field ciphertext, bound to its row
    row = gw.store.read().execute("SELECT ref, name_ct, doc_number_ct, details_ct, photo_ct FROM guest_people "
                                  "WHERE id = ?", (pid,)).fetchone()
    ref, *cts = row
    for ct in cts:
        assert bytes(ct)[0] == 0x01
        assert card["id_number"].encode() not in bytes(ct)
    cipher = svc.cipher
    assert cipher.decrypt_text("guest_people", "doc_number_ct", bytes(cts[1]), ref) == card["id_number"]
    assert cipher.decrypt("guest_people", "photo_ct", bytes(cts[3]), ref) == b"\x11" * 1024
    details = json.loads(cipher.decrypt_text("guest_people", "details_ct", bytes(cts[2]), ref))
    assert details["birth_date"] == "1991-01-01" and details["ethnicity"] == "01"
    # audited by reference, never a value
    audits = gw.store.read().execute("SELECT action, subject, why FROM audit_log "
                                     "WHERE action LIKE 'guest-%'").fetchall()
    assert audits == [("guest-register", f"stay:{stay_id}", f"guest:{pid} resident_id")]
    # checkout closes the stay
    svc.checkout(stay_id, "lin")
    assert svc.stays() == []
    with pytest.raises(GuestError, match="closed"):
        svc.checkout(stay_id, "lin")


@pytest.mark.parametrize(("doc_type", "drop", "named"), [
    ("resident_id", "ethnicity", "Ethnicity"),
    ("resident_id", "address", "Address on the card"),
    ("resident_id", "photo", "Chip photo"),
    ("passport", "visa_type", "Visa or stay type"),
    ("passport", "nationality", "Nationality"),
    ("passport", "expiry", "Document expiry"),
    ("hk_mo_permit", "expiry", "Document expiry"),
    ("tw_permit", "doc_number", "Document number"),
    ("hmt_residence", "issuer", "Issuing authority"),
])
def test_each_document_type_refuses_a_missing_legal_field_by_name(doc_type, drop, named) -> None:
    base = {"doc_type": doc_type, "name": "MARTIN, SARAH", "sex": "F", "birth_date": "1985-01-01",
            "doc_number": "ZE000509", "nationality": "CAN", "expiry": "2030-01-14", "visa_type": "L",
            "visa_valid_to": "2027-01-01", "photo_match": "1", "ethnicity": "01", "address": "x", "issuer": "y",
            "valid_from": "2020-01-01", "valid_to": "2040-01-01", "photo": b"\x01"}
    if doc_type == "resident_id":
        base.update(doc_number="360426199101010071", birth_date="1991-01-01", sex="M", nationality="CHN")
    if doc_type == "hmt_residence":
        base.update(doc_number="810000199408230021", birth_date="1994-08-23", sex="F")
    base.pop(drop)
    with pytest.raises(GuestError) as err:
        rules.check_guest(base, check_in=dt.date(2026, 11, 30), minor_age=18, adults=[])
    assert drop in err.value.fields
    assert named in str(err.value)
    assert rules.LABELS[drop][1] in str(err.value)  # and in Chinese


def test_minor_needs_guardian_and_relationship_to_each_adult(svc, gw) -> None:
    stay_id, adult = svc.register(_stay_form(scan=_scan(svc, _idcard_event(id_card(*ADULT)))), "lin")
    _, adult2 = svc.register({"scan": _scan(svc, _idcard_event(id_card(*ADULT_F))), "photo_match": "1"}, "lin",
                             stay_id)
    scan = _scan(svc, _idcard_event(id_card(*MINOR)))
    with pytest.raises(GuestError) as err:
        svc.register({"scan": scan, "photo_match": "1"}, "lin", stay_id)
    assert set(err.value.fields) == {"guardian_name", "guardian_contact", "relationship"}
    assert "Guardian's name" in str(err.value) and "监护人姓名" in str(err.value)
    with pytest.raises(GuestError) as err:  # one adult's relationship missing
        svc.register({"scan": scan, "photo_match": "1", "guardian_name": "王大明", "guardian_contact": "13800000000",
                      f"relationship_{adult}": "父子"}, "lin", stay_id)
    assert err.value.fields == ("relationship",)
    _, minor = svc.register({"scan": scan, "photo_match": "1", "guardian_name": "王大明",
                             "guardian_contact": "13800000000", f"relationship_{adult}": "父子",
                             f"relationship_{adult2}": "祖孙"}, "lin", stay_id)
    view = svc.stay(stay_id)
    assert [g["minor"] for g in view["guests"]] == [False, False, True]
    assert view["guests"][2]["under14"] and view["guests"][2]["guardian"]
    row = gw.store.read().execute("SELECT ref, guardian_ct FROM guest_people WHERE id = ?", (minor,)).fetchone()
    guardian = json.loads(svc.cipher.decrypt_text("guest_people", "guardian_ct", bytes(row[1]), row[0]))
    assert guardian["relationships"] == {str(adult): "父子", str(adult2): "祖孙"}


def test_minor_alone_needs_the_guardian_contacted_confirmation(svc) -> None:
    scan = _scan(svc, _idcard_event(id_card(*MINOR)))
    form = _stay_form(scan=scan, guardian_name="王大明", guardian_contact="13800000000")
    with pytest.raises(GuestError) as err:
        svc.register(form, "lin")
    assert err.value.fields == ("guardian_confirmed",)
    svc.register({**form, "guardian_confirmed": "1"}, "lin")


def test_reader_fields_cannot_be_overridden_by_the_form(svc, gw) -> None:
    card = id_card(*ADULT)
    scan = _scan(svc, _idcard_event(card))
    _, pid = svc.register(_stay_form(scan=scan, doc_number="11010519491231002X", name="Someone Else",
                                     birth_date="1949-12-31"), "lin")
    ref, name_ct, num_ct = gw.store.read().execute("SELECT ref, name_ct, doc_number_ct FROM guest_people WHERE id = ?",
                                                   (pid,)).fetchone()
    assert svc.cipher.decrypt_text("guest_people", "doc_number_ct", bytes(num_ct), ref) == card["id_number"]
    assert svc.cipher.decrypt_text("guest_people", "name_ct", bytes(name_ct), ref) == card["name"]


def test_manual_entry_checks_the_id_number_and_birth_date(svc) -> None:
    form = _stay_form(doc_type="resident_id", name="王小明", sex="M", ethnicity="01", birth_date="1991-01-01",
                      doc_number="36042619910102009X", address="x", issuer="y", valid_from="2020-01-01",
                      valid_to="长期")  # vector stdnum-invalid-checksum
    with pytest.raises(GuestError) as err:
        svc.register(form, "lin")
    assert err.value.fields == ("photo",)  # a resident ID needs the chip photo: only a reader gives it
    with pytest.raises(GuestError, match="check character"):
        rules.check_guest({**form, "photo": b"\x01"}, check_in=dt.date(2026, 11, 30), minor_age=18, adults=[])


def test_passport_from_mrz_is_overseas_with_a_24h_deadline(svc, gw) -> None:
    scan = _scan(svc, _mrz_event(PASSPORT))
    assert svc.scans()[0]["number"] == "*****509"
    with pytest.raises(GuestError) as err:
        svc.register(_stay_form(scan=scan), "lin")
    assert set(err.value.fields) == {"visa_type", "visa_valid_to"}
    stay_id, _ = svc.register(_stay_form(scan=scan, visa_type="L 旅游", visa_valid_to="2027-01-01"), "lin")
    view = svc.stay(stay_id)
    assert view["overseas"] and view["guests"][0]["overseas"]
    (report,) = svc.reports()
    check_in = rules.parse_local("2026-11-30T14:00", svc.tz)
    assert report["deadline_ms"] == check_in + 24 * 3_600_000
    assert report["state"] == "due"


def test_authority_outbox_file_drop_ack_discards_payload(svc, gw) -> None:
    stay_id, _ = svc.register(_stay_form(scan=_scan(svc, _mrz_event(PASSPORT)), visa_type="L",
                                         visa_valid_to="2027-01-01"), "lin")
    (report,) = svc.reports()
    assert svc.send_report(report["id"], "boss") == "sent"
    path = svc.drop_dir / f"sh-001-gr-{report['id']}.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(svc.drop_dir).st_mode) == 0o700
    doc = json.loads(path.read_text())
    assert doc["format"] == "storegw-guest-report/1"
    assert doc["stay"]["room"] == "0801"
    (g,) = doc["guests"]
    assert (g["doc_type"], g["doc_number"], g["nationality"], g["name"]) == ("passport", "ZE000509", "CAN",
                                                                             "MARTIN, SARAH")
    conn = gw.store.read()
    assert conn.execute("SELECT payload_ct IS NOT NULL, attempts FROM guest_reports").fetchone() == (1, 1)
    # the police system's uploader answers with an .ack file
    svc.ack_dir.mkdir(parents=True, exist_ok=True)
    (svc.ack_dir / f"sh-001-gr-{report['id']}.ack").write_text("ok")
    svc.tick()
    assert svc.reports()[0]["state"] == "acknowledged"
    assert conn.execute("SELECT payload_ct FROM guest_reports").fetchone() == (None,)
    assert not path.exists()
    assert list(svc.ack_dir.iterdir()) == []
    actions = [r[0] for r in conn.execute("SELECT action FROM audit_log WHERE subject = ?",
                                          (f"report:{report['id']}",))]
    assert actions == ["authority-send", "authority-ack"]
    with pytest.raises(GuestError):
        svc.ack_report(report["id"], "boss")  # acknowledged is final


def test_adapter_failure_counts_attempts_and_an_err_file_fails_a_report(svc, gw, tmp_path) -> None:
    svc.register(_stay_form(scan=_scan(svc, _mrz_event(PASSPORT)), visa_type="L", visa_valid_to="2027-01-01"), "lin")
    (report,) = svc.reports()
    svc.drop_dir.parent.mkdir(parents=True, exist_ok=True)
    svc.drop_dir.write_text("not a directory")  # the adapter cannot write
    assert svc.send_report(report["id"], "boss") == "failed"
    assert svc.reports()[0]["attempts"] == 1 and svc.reports()[0]["error"].startswith("adapter")
    svc.drop_dir.unlink()
    assert svc.send_report(report["id"], "boss") == "sent"
    svc.ack_dir.mkdir(parents=True, exist_ok=True)
    (svc.ack_dir / f"sh-001-gr-{report['id']}.err").write_text("证件号码格式错误")
    svc.tick()
    r = svc.reports()[0]
    assert (r["state"], r["attempts"]) == ("failed", 2)
    assert "证件号码格式错误" in r["error"]


def test_unsent_foreign_report_raises_the_alert_2h_before_and_late_after(svc, gw) -> None:
    svc.clock.ms = rules.parse_local("2026-11-30T14:05", svc.tz)
    svc.register(_stay_form(scan=_scan(svc, _mrz_event(PASSPORT)), visa_type="L", visa_valid_to="2027-01-01"), "lin")
    (report,) = svc.reports()
    rid = report["id"]
    svc.clock.advance(hours=21)  # 21h05 after check-in: nothing yet
    svc.tick()
    assert not gw.alerts.is_active(f"guests:report:{rid}")
    svc.clock.advance(hours=1)  # 22h05: within 2 h of the deadline, still not sent
    svc.tick()
    assert gw.alerts.is_active(f"guests:report:{rid}")
    assert not gw.alerts.is_active(f"guests:report-late:{rid}")
    svc.clock.advance(hours=2)  # 24h05: lapsed
    svc.tick()
    assert gw.alerts.is_active(f"guests:report-late:{rid}")
    assert svc.reports()[0]["overdue"]
    svc.send_report(rid, "boss")
    assert not gw.alerts.is_active(f"guests:report:{rid}") and not gw.alerts.is_active(f"guests:report-late:{rid}")
    assert svc.reports()[0]["on_time"] is False
    msgs = [json.loads(p) for (p,) in gw.store.read().execute("SELECT payload FROM outbox WHERE topic LIKE '%/alerts'")]
    assert [(m["rule"], m["state"]) for m in msgs if m["device"] == "guests"] == [
        ("guest-report-deadline", "raised"), ("guest-report-late", "raised"),
        ("guest-report-deadline", "cleared"), ("guest-report-late", "cleared")]
    assert all("ZE000509" not in json.dumps(m) and "MARTIN" not in json.dumps(m) for m in msgs)


def test_domestic_stays_are_reported_without_deadline_and_auto_sent(make_gw) -> None:
    gw = make_gw()  # auto_send on
    svc = gw.services["guests"]
    scan = _scan(svc, _idcard_event(id_card(*ADULT)))
    svc.register(_stay_form(scan=scan), "lin")
    (report,) = svc.reports()
    assert report["deadline_ms"] is None
    svc.tick()
    assert svc.reports()[0]["state"] == "sent"


def test_hourly_summary_has_counts_only(svc, gw) -> None:
    start = rules.parse_local("2026-11-30T14:00", svc.tz)
    svc.clock.ms = start + 60_000
    stay_id, _ = svc.register(_stay_form(scan=_scan(svc, _idcard_event(id_card(*ADULT)))), "lin")
    svc.checkout(stay_id, "lin")
    svc.clock.advance(hours=2)
    assert svc.send_summaries() >= 1
    rows = [json.loads(p) for (t, p) in gw.store.read().execute("SELECT topic, payload FROM outbox")
            if t.endswith("/guests/summary")]
    hour = next(m for m in rows if m["kind"] == "hour")
    assert (hour["guests_checked_in"], hour["guests_checked_out"], hour["stays_opened"]) == (1, 1, 1)
    text = json.dumps(rows, ensure_ascii=False)
    for secret in ("360426", "王小明", "0801"):
        assert secret not in text


# ---------------------------------------------------------------------------- pages (test client)

def _client(gw, name: str = "lin"):
    client = create_app(gw, {"TESTING": True}).test_client()
    page = client.get("/staff/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    from guestkit import PASSWORD

    secret, code = (PASSWORD, gw.boss.code()) if name == "boss" else ("246813", "")
    resp = client.post("/staff/login", data={"name": name, "pin": secret, "code": code, "csrf_token": token})
    assert resp.status_code == 303
    return client


def test_pages_role_gated_masked_and_bilingual(svc, gw) -> None:
    waiter = _client(gw, "wang")
    assert waiter.get("/staff/frontdesk").status_code == 403
    lin = _client(gw, "lin")
    assert lin.get("/staff/frontdesk/reports").status_code == 403  # managers only
    card = id_card(*ADULT)
    svc._on_document(_idcard_event(card))
    zh = lin.get("/staff/frontdesk?lang=zh").get_data(as_text=True)
    assert "前台登记" in zh and "用此证件登记" in zh
    en = lin.get("/staff/frontdesk?lang=en").get_data(as_text=True)
    assert "Front desk" in en and "Register this document" in en
    scan = svc.scans()[0]["id"]
    form = lin.get(f"/staff/frontdesk?lang=en&scan={scan}").get_data(as_text=True)
    assert "360426********0071" in form and card["id_number"] not in form
    assert card["address"] not in form
    token = _csrf(lin, "/staff/frontdesk")
    resp = lin.post("/staff/frontdesk/register?lang=en", data={"scan": scan, "csrf_token": token, "room": "0801",
                                                               "check_in": "2026-11-30T14:00",
                                                               "expected_out": "2026-12-01T12:00"})
    assert resp.status_code == 400
    assert "Missing required field: Photo match confirmed" in resp.get_data(as_text=True)
    resp = lin.post("/staff/frontdesk/register?lang=en", data={"scan": scan, "csrf_token": token, "room": "0801",
                                                               "check_in": "2026-11-30T14:00", "photo_match": "1",
                                                               "expected_out": "2026-12-01T12:00"})
    assert resp.status_code == 303
    stay = lin.get(resp.headers["Location"]).get_data(as_text=True)
    assert "360426********0071" in stay and card["id_number"] not in stay and card["name"] not in stay
    boss = _client(gw, "boss")
    reports = boss.get("/staff/frontdesk/reports?lang=zh").get_data(as_text=True)
    assert "治安上报" in reports and "待发送" in reports


def test_disabled_guests_have_no_pages_and_no_subscription(tmp_path) -> None:
    import dataclasses

    from guestkit import guests_config

    from gateway.app import build

    cfg = guests_config(tmp_path / "off")
    gw = build(dataclasses.replace(cfg, guests=dataclasses.replace(cfg.guests, enabled=False)))
    gw.start(web=False, devices=False)
    try:
        assert gw.services["guests"].health() == {"enabled": False}
        assert gw.services["guests"].periodic() == ()
        assert "idcard" not in gw.hub._subscribers
        client = create_app(gw, {"TESTING": True}).test_client()
        assert client.get("/staff/frontdesk").status_code in (302, 404)
    finally:
        gw.stop()
