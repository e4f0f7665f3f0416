"""The technician page in-process: frames masked, raw bytes only with a reason and audited, refusals.

An in-process gateway (real SQLCipher store and writer); a device event is delivered to the hub as a
driver would (the Chromium test, tests/staff/test_tech_browser.py, drives real simulators).
"""

from __future__ import annotations

from ordhelpers import PASSWORD, add_privileged, csrf, staff_login
from realparts import wait_for

from gateway.core.models import DeviceEvent, now_ms

ID_FRAME = "张三 110102199101010078".encode("utf-16-le")


def _signed_in(app, gw, name="li", role="technician"):
    c = app.test_client()
    auth = add_privileged(gw.services["ordering"], name, role)
    r = staff_login(c, name, PASSWORD, auth.code())
    assert r.status_code == 303, r.get_data(as_text=True)[:300]
    return c


def _csrf(c, url="/tech/"):
    return csrf(c, url)


def test_frames_masked_and_raw_audited(make_gw):
    from web import create_app

    gw = make_gw('[[devices]]\nid = "front-id"\nkind = "idcard"\nport = "/dev/null-reader"\n')
    app = create_app(gw, {"TESTING": True})
    c = _signed_in(app, gw)
    page = c.get("/tech/").get_data(as_text=True)
    assert "front-id" in page and "Scan test" in page and 'style="' not in page
    gw.hub.event(DeviceEvent("front-id", "idcard", now_ms(), {"id_masked": "110102********0078", "gender": "1"},
                             {"id_number": "110102199101010078"}, raw=ID_FRAME))
    wait_for(lambda: gw.tech.frames("front-id"), timeout=5, what="the frame on the hub's dispatch thread")
    frames = c.get("/tech/device/front-id").get_data(as_text=True)
    assert "110102********0078" in frames and "110102199101010078" not in frames
    assert f"Show {len(ID_FRAME)} bytes" in frames
    token = _csrf(c, "/tech/device/front-id")
    n = gw.tech.frames("front-id")[0]["n"]
    r = c.post(f"/tech/device/front-id/raw/{n}", data={"csrf_token": token, "reason": ""})
    assert r.status_code == 303  # no reason: nothing shown
    assert not [e for e in gw.services["staff"].audit_log(50) if e["action"] == "tech-raw-view"]
    r = c.post(f"/tech/device/front-id/raw/{n}", data={"csrf_token": token, "reason": "reader garbles names"})
    assert r.status_code == 200 and ID_FRAME.hex(" ") in r.get_data(as_text=True)
    entries = [e for e in gw.services["staff"].audit_log(50) if e["action"] == "tech-raw-view"]
    assert len(entries) == 1 and entries[0]["subject"] == "device:front-id"
    assert entries[0]["why"] == "reader garbles names" and entries[0]["who"].endswith("/technician")
    assert "110102199101010078" not in repr(entries)
    # a frame no longer kept, a device that does not exist
    assert c.post("/tech/device/front-id/raw/999", data={"csrf_token": token, "reason": "look"}).status_code == 303
    assert c.get("/tech/device/nope").status_code == 404
    # no CSRF token: refused before anything runs
    assert c.post(f"/tech/device/front-id/raw/{n}", data={"reason": "no token"}).status_code == 400


def test_only_technicians(make_gw):
    from web import create_app

    gw = make_gw()
    app = create_app(gw, {"TESTING": True})
    manager = _signed_in(app, gw, "wang", "manager")
    assert manager.get("/tech/").status_code == 403
    anonymous = app.test_client()
    r = anonymous.get("/tech/")
    assert r.status_code == 302 and "/staff/login?next=/tech/" in r.headers["Location"]
    tech = _signed_in(app, gw)
    live = tech.get("/tech/live.json").get_json()
    assert live["devices"] == [] and "equipment" in live
    sheet = tech.get("/tech/stickers.svg")
    assert sheet.status_code == 200 and sheet.mimetype == "image/svg+xml"
    assert b"<svg" in sheet.data

