"""Captive portal: OS probes, the catch-all, and the RFC 8908 API."""

from __future__ import annotations

import pytest

from web import create_app


@pytest.fixture
def portal(make_gw):
    gw = make_gw('[ordering]\nportal = true\nportal_api_path = "/captive-portal/api"\n')
    return create_app(gw, {"TESTING": True}).test_client()


@pytest.mark.parametrize(("host", "path"), [
    ("connectivitycheck.gstatic.com", "/generate_204"), ("www.google.com", "/gen_204"),
    ("connect.rom.miui.com", "/generate_204"), ("connectivitycheck.platform.hicloud.com", "/generate_204"),
    ("captive.apple.com", "/hotspot-detect.html"), ("www.msftconnecttest.com", "/connecttest.txt"),
    ("www.msftncsi.com", "/ncsi.txt"), ("detectportal.firefox.com", "/canonical.html"),
    ("detectportal.firefox.com", "/success.txt"), ("some.vendor.example", "/whatever/probe"),
])
def test_probes_open_the_landing_page_until_released(portal, host, path):
    r = portal.get(path, headers={"Host": host})
    assert r.status_code == 302 and r.headers["Location"] == "http://order.test/portal"
    assert "no-store" in r.headers["Cache-Control"]


def test_release_answers_exactly_what_each_os_expects(portal):
    landing = portal.get("/portal", headers={"Host": "order.test", "Accept-Language": "en"})
    assert landing.status_code == 200 and "Scan the QR code on your table" in landing.get_data(as_text=True)
    assert portal.post("/portal/continue", headers={"Host": "order.test"}).status_code == 303
    r = portal.get("/generate_204", headers={"Host": "connectivitycheck.gstatic.com"})
    assert r.status_code == 204 and r.data == b""
    r = portal.get("/hotspot-detect.html", headers={"Host": "captive.apple.com"})
    assert r.data == b"<HTML><HEAD><TITLE>Success</TITLE></HEAD><BODY>Success</BODY></HTML>"
    assert portal.get("/connecttest.txt", headers={"Host": "www.msftconnecttest.com"}).data == b"Microsoft Connect Test"
    assert portal.get("/ncsi.txt", headers={"Host": "www.msftncsi.com"}).data == b"Microsoft NCSI"
    assert portal.get("/success.txt", headers={"Host": "detectportal.firefox.com"}).data == b"success\n"
    assert b"support.mozilla.org/kb/captive-portal" in portal.get(
        "/canonical.html", headers={"Host": "detectportal.firefox.com"}).data


def test_rfc8908_api(portal):
    r = portal.get("/captive-portal/api", headers={"Host": "order.test", "Accept": "application/captive+json"})
    assert r.status_code == 200 and r.mimetype == "application/captive+json"
    assert "no-store" in r.headers["Cache-Control"]
    body = r.get_json(force=True)
    assert body["captive"] is True and body["user-portal-url"] == "http://order.test/portal"
    portal.post("/portal/continue", headers={"Host": "order.test"})
    assert portal.get("/captive-portal/api", headers={"Host": "order.test"}).get_json(force=True)["captive"] is False


def test_portal_off_by_default(client):
    assert client.get("/generate_204", headers={"Host": "connectivitycheck.gstatic.com"}).status_code == 404


def test_diner_pages_still_work_in_portal_mode(make_gw):
    gw = make_gw('[ordering]\nportal = true\n', sub="p2")
    svc = gw.services["ordering"]
    c = create_app(gw, {"TESTING": True}).test_client()
    r = c.get(f"/t/{svc.token_for('A1')}?d=abcdef12", headers={"Host": "order.test"})
    assert r.status_code == 200
