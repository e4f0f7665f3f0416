"""Issue 9, items 2 and 5: server-side staff sessions (revoked on sign-out, PIN reset, role change,
disable; idle and absolute expiry; a manager's page) and the per-account PIN back-off and lock."""

from __future__ import annotations

import re

import pytest
from ordhelpers import PASSWORD, add_privileged
from ordhelpers import csrf as _csrf

from gateway.staff import accounts as staffops

PIN = "246813"
AUTHENTICATORS = {}  # the managers' authenticator apps (managers sign in with a password and TOTP)


def _add_manager(svc, name="wang"):
    AUTHENTICATORS[name] = add_privileged(svc, name, "manager")


# ---------------------------------------------------------------------------- 2. server-side staff sessions

def _login(c, name, pin=PIN, addr="10.20.0.1"):
    code = ""
    if name in AUTHENTICATORS:
        pin, code = PASSWORD, AUTHENTICATORS[name].code()
    page = c.get("/staff/login", environ_base={"REMOTE_ADDR": addr}).get_data(as_text=True)
    tok = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    return c.post("/staff/login", data={"name": name, "pin": pin, "code": code, "csrf_token": tok},
                  environ_base={"REMOTE_ADDR": addr})


def _copy(app, c):
    """A second browser holding a saved copy of ``c``'s staff cookie."""
    thief = app.test_client()
    thief.set_cookie("storegw_staff", c.get_cookie("storegw_staff").value)
    return thief


@pytest.fixture
def staff_app(gw, svc):
    from web import create_app

    _add_manager(svc)
    return create_app(gw, {"TESTING": True})


def test_the_cookie_is_only_a_random_id_and_the_store_keeps_its_hash(staff_app, gw):
    c = staff_app.test_client()
    assert _login(c, "wang").status_code == 303
    value = c.get_cookie("storegw_staff").value
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", value)
    import hashlib

    rows = gw.store.read().execute("SELECT token_hash FROM ord_staff_sessions WHERE ended_ms IS NULL").fetchall()
    assert rows == [(hashlib.sha256(value.encode()).hexdigest(),)]


def test_a_saved_cookie_is_refused_after_logout(staff_app):
    c = staff_app.test_client()
    assert _login(c, "wang").status_code == 303
    thief = _copy(staff_app, c)
    assert thief.get("/staff/menu").status_code == 200
    token = _csrf(c)
    thief_token = _csrf(thief, "/staff/menu")
    assert c.post("/staff/logout", data={"csrf_token": token}).status_code == 303
    assert thief.get("/staff/menu").status_code == 302  # to the sign-in page
    r = thief.post("/staff/menu/items/h01", data={"price": "1", "csrf_token": thief_token})
    assert r.status_code in (302, 400)
    assert c.get("/staff/").status_code == 302


@pytest.mark.parametrize("change", ["pin-reset", "role-change", "disable"])
def test_a_saved_cookie_is_refused_after_pin_reset_role_change_or_disable(staff_app, svc, change):
    svc.writer.call(lambda c: staffops.add_staff(c, "li", "cashier", PIN))
    c = staff_app.test_client()
    assert _login(c, "li").status_code == 303
    thief = _copy(staff_app, c)
    assert thief.get("/staff/").status_code == 200
    if change == "pin-reset":  # what `storegw staff add li --role cashier` does
        svc.writer.call(lambda conn: staffops.add_staff(conn, "li", "cashier", "975312"))
    elif change == "role-change":
        svc.writer.call(lambda conn: staffops.set_role(conn, "li", "waiter", "wang"))
    else:
        svc.writer.call(lambda conn: staffops.set_active(conn, "li", False, "wang"))
    assert thief.get("/staff/").status_code == 302
    assert c.get("/staff/").status_code == 302


def test_idle_and_absolute_expiry(make_gw):
    from web import create_app

    gw = make_gw('[ordering]\nstaff_session = "1s"\nstaff_session_max = "3s"\n')
    svc = gw.services["ordering"]
    _add_manager(svc)
    c = create_app(gw, {"TESTING": True}).test_client()
    assert _login(c, "wang").status_code == 303
    import time

    time.sleep(1.3)
    assert c.get("/staff/").status_code == 302  # idle
    assert _login(c, "wang").status_code == 303
    # keep it busy: seen_ms is written at most once a minute, so touch it by hand like a busy screen would
    deadline = time.monotonic() + 3.3
    while time.monotonic() < deadline:
        svc.writer.call(lambda conn: conn.execute("UPDATE ord_staff_sessions SET seen_ms = ?",
                                                  (int(time.time() * 1000),)))
        time.sleep(0.2)
    assert c.get("/staff/").status_code == 302  # absolute


def test_a_manager_lists_and_revokes_sessions(staff_app, svc):
    svc.writer.call(lambda c: staffops.add_staff(c, "chef", "kitchen", PIN))
    boss, chef = staff_app.test_client(), staff_app.test_client()
    assert _login(boss, "wang").status_code == 303
    assert _login(chef, "chef", addr="10.20.0.9").status_code == 303
    html = boss.get("/staff/accounts").get_data(as_text=True)
    assert "chef" in html and "10.20.0.9" in html
    sid = re.search(r"/staff/sessions/(\d+)/revoke", html).group(1)
    assert chef.get("/staff/kds").status_code == 200
    assert boss.post(f"/staff/sessions/{sid}/revoke", data={"csrf_token": _csrf(boss)}).status_code == 303
    assert chef.get("/staff/kds").status_code == 302
    assert chef.get("/staff/accounts").status_code == 302
    assert _login(chef, "chef").status_code == 303
    assert chef.get("/staff/accounts").status_code == 403  # kitchen staff do not manage accounts


# ---------------------------------------------------------------------------- 5. per-account PIN limit

def test_wrong_pins_spread_over_ten_addresses_lock_the_account(staff_app, svc, gw):
    svc.writer.call(lambda c: staffops.add_staff(c, "li", "cashier", PIN))
    attackers = [staff_app.test_client() for _ in range(10)]
    for i in range(150):
        c = attackers[i % 10]
        assert _login(c, "li", f"{100000 + i}", addr=f"10.66.0.{i % 10 + 1}").status_code == 401
    row = gw.store.read().execute("SELECT failures, locked_ms FROM ord_staff WHERE name = 'li'").fetchone()
    assert row[0] >= staffops.LOCK_AFTER and row[1] is not None
    r = _login(staff_app.test_client(), "li", addr="10.30.0.1")  # the right PIN from a fresh address
    assert r.status_code == 401 and "locked" in r.get_data(as_text=True)
    # a manager unlocks it on the staff page; then the right PIN works
    boss = staff_app.test_client()
    assert _login(boss, "wang", addr="10.30.0.2").status_code == 303
    html = boss.get("/staff/accounts").get_data(as_text=True)
    uid = re.search(r"/staff/accounts/(\d+)/unlock", html).group(1)
    assert boss.post(f"/staff/accounts/{uid}/unlock", data={"csrf_token": _csrf(boss)}).status_code == 303
    assert _login(staff_app.test_client(), "li", addr="10.30.0.3").status_code == 303


def test_the_account_backs_off_before_the_lock(staff_app, svc, gw):
    svc.writer.call(lambda c: staffops.add_staff(c, "li", "cashier", PIN))
    for i in range(staffops.FREE_FAILURES + 1):
        _login(staff_app.test_client(), "li", "000000", addr=f"10.67.0.{i + 1}")
    r = _login(staff_app.test_client(), "li", addr="10.67.1.1")  # right PIN, but inside the back-off
    assert r.status_code == 401 and "wait a moment" in r.get_data(as_text=True)


def test_cli_unlocks_and_new_pins_need_six_digits(tmp_path, staff_app, svc, gw):
    with pytest.raises(Exception, match="6-12 digits"):
        svc.writer.call(lambda c: staffops.add_staff(c, "short", "waiter", "2468"))
    # an account made before the rule (a 4-digit PIN hash in the store) still signs in
    digest = staffops._hash("2468")
    svc.writer.call(lambda c: c.execute("INSERT INTO ord_staff (name, role, pin_hash, created_ms) "
                                        "VALUES ('old', 'waiter', ?, 0)", (digest,)))
    assert _login(staff_app.test_client(), "old", "2468").status_code == 303
    svc.writer.call(lambda c: c.execute("UPDATE ord_staff SET failures = 100, locked_ms = 1 WHERE name = 'old'"))
    assert _login(staff_app.test_client(), "old", "2468").status_code == 401
    from click.testing import CliRunner

    from gateway.cli import ordering as cli

    config = tmp_path / "cli.toml"
    cfg = gw.cfg
    config.write_text(f'[store]\nid = "{cfg.store.id}"\ndata_dir = "{cfg.data_path.as_posix()}"\n'
                      '[uplink]\nenabled = false\n')
    res = CliRunner().invoke(cli.staff, ["unlock", "old", "--config", str(config)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert _login(staff_app.test_client(), "old", "2468").status_code == 303
    res = CliRunner().invoke(cli.staff, ["add", "x", "--role", "waiter", "--pin-stdin", "--config", str(config)],
                             input="2468\n")
    assert res.exit_code != 0 and "6-12 digits" in res.output
