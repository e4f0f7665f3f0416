"""Issue 10, item 6: the role x action matrix, exhaustively. For every registered staff route and
every role, signed in as that role, the route answers 403 exactly when gateway/staff/matrix.py says
so; a route without a declared permission fails."""

from __future__ import annotations

import re

import pytest
from ordhelpers import PASSWORD, add_privileged, staff_login

from gateway.staff import accounts as staffops
from gateway.staff import matrix
from web.staff.views import PUBLIC

PIN = "246813"
# a value for each path parameter: real enough to reach the view, never a real row (no side effects)
PARAMS = {"table_id": "ZZ9", "station": "hot", "task_id": 999999, "entry_id": 999999, "line_id": 999999,
          "ticket_id": 999999, "staff_id": 999999, "session_id": 999999, "item_id": "nope", "member_id": 999999,
          "request_id": 999999, "benefit_id": 999999,
          "stay_id": 999999, "report_id": 999999, "action": "send",
          "device_id": "nope", "n": 999999, "plan_id": 999999}  # guests: the front desk (off: 404); tech; equipment


def _staff_rules(app):
    return sorted((r for r in app.url_map.iter_rules() if r.endpoint.startswith(("staff.", "tech."))),
                  key=lambda r: (r.rule, sorted(r.methods)))


def test_every_staff_route_declares_a_permission_of_the_matrix(app):
    missing, unknown = [], []
    for rule in _staff_rules(app):
        perm = getattr(app.view_functions[rule.endpoint], "storegw_perm", None)
        if perm is None:
            missing.append(rule.rule)
        elif perm != PUBLIC and perm not in matrix.ACTIONS:
            unknown.append((rule.rule, perm))
    assert not missing, f"staff routes without need(...) or @public: {missing}"
    assert not unknown
    public = {r.rule for r in _staff_rules(app) if app.view_functions[r.endpoint].storegw_perm == PUBLIC}
    assert public == {"/staff/login", "/staff/logout"}


def test_the_matrix_covers_every_role_and_the_auditor_sees_nothing_unmasked():
    assert set(matrix.MATRIX) == set(matrix.ROLES) == set(staffops.ROLES)
    assert "auditor" in matrix.ROLES
    assert matrix.allowed("auditor", "audit-read") and matrix.allowed("auditor", "privacy-report")
    assert not any(matrix.allowed("auditor", a) for a in matrix.ACTIONS if a.startswith("unmask-"))
    assert not any(matrix.allowed(r, "unmask-id") for r in matrix.FLOOR_ROLES)
    with pytest.raises(KeyError):
        matrix.allowed("manager", "no-such-action")
    # a privileged role without TOTP keeps only floor actions
    assert matrix.allowed("manager", "bill", mfa=False) and not matrix.allowed("manager", "menu", mfa=False)


def _signed_in(app, svc, role):
    c = app.test_client()
    name = f"m-{role}"
    if matrix.needs_totp(role):
        auth = add_privileged(svc, name, role)
        r = staff_login(c, name, PASSWORD, auth.code(), addr=f"10.77.0.{matrix.ROLES.index(role) + 1}")
    else:
        svc.writer.call(lambda conn: staffops.add_staff(conn, name, role, PIN))
        r = staff_login(c, name, PIN, addr=f"10.77.0.{matrix.ROLES.index(role) + 1}")
    assert r.status_code == 303, (role, r.get_data(as_text=True)[:300])
    home = {"kitchen": "/staff/kds", "technician": "/tech/", "auditor": "/staff/audit"}.get(role, "/staff/")
    assert r.headers["Location"].endswith(home), (role, r.headers["Location"])  # each role lands on a page it may open
    return c


@pytest.mark.parametrize("role", matrix.ROLES)
def test_each_route_answers_403_exactly_when_the_matrix_says_no(app, svc, role):
    c = _signed_in(app, svc, role)
    page = c.get("/staff/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    wrong = []
    checked = 0
    for rule in _staff_rules(app):
        perm = app.view_functions[rule.endpoint].storegw_perm
        if perm == PUBLIC:
            continue
        url = rule.rule
        for arg in rule.arguments:
            url = url.replace(f"<{arg}>", str(PARAMS[arg])).replace(f"<int:{arg}>", str(PARAMS[arg]))
        assert "<" not in url, url
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            get = method == "GET"
            r = c.get(url, query_string={"ch": "staff"}) if get else c.post(url, data={"csrf_token": token})
            status = r.status_code
            r.close()
            checked += 1
            assert status != 302, (role, method, url, "signed out during the sweep")
            assert status < 500, (role, method, url, status)
            if (status == 403) == matrix.allowed(role, perm, mfa=True):
                wrong.append((method, url, perm, status))
    assert not wrong, f"{role}: {wrong}"
    assert checked >= 40
