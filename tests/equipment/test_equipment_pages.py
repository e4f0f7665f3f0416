"""The manager's equipment pages through the test client: role check, CSRF, record, plan, service done,
sparklines present and CSP-clean (no inline style), the name of who did the service shown, their id stored."""

from __future__ import annotations

import time

import pytest
from ordhelpers import PASSWORD, add_privileged, staff_login
from ordhelpers import csrf as staff_csrf

from gateway.staff import accounts as staffops
from web import create_app


def csrf(client, path="/staff/equipment"):
    return staff_csrf(client, path)


@pytest.fixture
def app(gw):
    return create_app(gw, {"TESTING": True})


@pytest.fixture
def manager(gw, app):
    auth = add_privileged(gw.services["ordering"], "wang")
    c = app.test_client()
    assert staff_login(c, "wang", PASSWORD, auth.code()).status_code == 303
    c.csrf = csrf(c)
    return c


def test_floor_staff_may_not_open_the_equipment_pages(gw, app):
    gw.store.writer.call(lambda c: staffops.add_staff(c, "li", "cashier", "246813"))
    c = app.test_client()
    assert staff_login(c, "li", "246813").status_code == 303
    assert c.get("/staff/equipment").status_code == 403
    assert app.test_client().get("/staff/equipment").status_code == 302  # signed out: to the sign-in page


def test_manager_edits_a_record_adds_a_plan_and_records_a_service(gw, eq, manager):
    eq.import_rows([{"device_id": "fridge-1", "brand": "Haier"}])
    page = manager.get("/staff/equipment").get_data(as_text=True)
    assert 'class="spark"' in page and "<polyline" in page or "<circle" in page
    assert "style=" not in page and "<script" not in page
    assert "score 评分" in page
    # CSRF is required
    r = manager.post("/staff/equipment/fridge-1", data={"brand": "Midea"})
    assert r.status_code == 400
    r = manager.post("/staff/equipment/fridge-1", data={
        "csrf_token": manager.csrf, "kind": "mqtt", "brand": "Midea", "model": "BCD-520", "serial": "M-77",
        "location": "kitchen", "purchased": "2025-02-01", "life_years": "10", "warranty_end": "2027-02-01"})
    assert r.status_code == 303
    dev = eq.device("fridge-1")
    assert (dev["brand"], dev["life_years"], dev["end_of_life"]) == ("Midea", 10.0, "2035-02-01")
    assert gw.store.read().execute("SELECT updated_by FROM equipment_assets").fetchone()[0] is not None
    # a bad date is named
    r = manager.post("/staff/equipment/fridge-1", data={"csrf_token": manager.csrf, "purchased": "1/2/2025"},
                     headers={"X-Requested-With": "js"})
    assert r.status_code == 400 and "purchased: expected a date YYYY-MM-DD" in r.get_json()["error"]
    # a plan without a chosen mode is refused
    r = manager.post("/staff/equipment/fridge-1/plans", data={"csrf_token": manager.csrf, "task": "coil",
                                                              "every": "90d"}, headers={"X-Requested-With": "js"})
    assert r.status_code == 400 and "plans.mode" in r.get_json()["error"]
    r = manager.post("/staff/equipment/fridge-1/plans", data={"csrf_token": manager.csrf, "task": "coil",
                                                              "mode": "fixed", "every": "1s", "start": "2025-02-01"})
    assert r.status_code == 303
    eq.run_check()
    plan = eq.device("fridge-1")["plans"][0]
    assert plan["state"] == "overdue" and gw.alerts.is_active(f"maint:over:{plan['id']}")
    assert "maintenance-overdue" in manager.get("/staff/equipment/fridge-1").get_data(as_text=True)
    r = manager.post(f"/staff/equipment/plans/{plan['id']}/done", data={
        "csrf_token": manager.csrf, "device": "fridge-1", "what": "coil cleaned", "parts": "none"})
    assert r.status_code == 303
    html = manager.get("/staff/equipment/fridge-1").get_data(as_text=True)
    assert "coil cleaned" in html and "wang" in html  # the name is looked up; the store keeps the id
    who = gw.store.read().execute("SELECT who FROM equipment_done").fetchone()[0]
    assert isinstance(who, int)
    assert manager.get("/staff/equipment/no-such-device").status_code == 404
    # a plan is retired: its history stays, its alerts are cleared
    time.sleep(1.1)
    eq.run_check()
    assert gw.alerts.is_active(f"maint:over:{plan['id']}")  # every 1s: overdue again
    r = manager.post(f"/staff/equipment/plans/{plan['id']}/remove", data={"csrf_token": manager.csrf,
                                                                         "device": "fridge-1"})
    assert r.status_code == 303 and eq.device("fridge-1")["plans"] == []
    assert not gw.alerts.is_active(f"maint:over:{plan['id']}") and eq.device("fridge-1")["done"]
