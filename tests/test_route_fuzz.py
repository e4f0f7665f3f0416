"""No route answers 500: Hypothesis-generated paths, query strings, form bodies and headers against every
registered Flask route (diner, queue, staff, portal, API) of a real app over a real store.

Requests go out anonymous and as a signed-in manager (so the staff routes run past their login
check, with a valid CSRF token half of the time); path parameters are sometimes the real table and
queue tokens, stations and ids so requests reach deep. Every answer must be < 500 and nothing may be
logged at ERROR. With TESTING on, an exception in a view fails the test with its traceback.
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote_to_bytes, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent / "ordering"))

from ordhelpers import PASSWORD, TABLES, add_privileged, gateway_config  # noqa: E402

from gateway.ordering import queue  # noqa: E402

PIN = "246813"
FORM_KEYS = ("csrf", "csrf_token", "d", "lang", "item", "qty", "note", "idem", "kind", "line", "nickname", "party",
             "remove", "back", "covers", "to", "into", "action", "reason", "method", "reference", "code", "stock",
             "price", "unlimited", "sold_out", "json", "table", "name", "pin", "opt_spice", "opt_size",
             "password", "field", "ref")
QUERY_KEYS = ("d", "lang", "v", "sent", "added", "taken", "hide", "next", "ch", "left")
HEADER_KEYS = ("Accept", "X-Requested-With", "If-None-Match", "Last-Event-ID", "Accept-Language", "Host",
               "X-CSRF-Token", "Content-Type", "Cookie", "User-Agent")
NASTY = ["", "0", "01", "1", "-1", "²", "١", "１", "9" * 30, "1e9", "inf", "nan", "..", ".", "%", "%00", "\x00",
         "\r\n", "\u202e", "<script>", "'", '"', "//evil.example", "http://evil.example/", "/staff/\r\nX: y",
         "a" * 300, "kds:hot", "staff", "application/json", "js", "zh", "en", "h01", "c01", "A1", "hot", "bar",
         "void", "comp", "cash", "waiter", "rush", "bill", "L1", "T1", "{}", '{"categories": [1]}', "[]", "wang", PIN]

text = st.text(max_size=40)
value = st.one_of(st.sampled_from(NASTY), text)
header_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255, exclude_categories=("Cc",)),
                      max_size=40)


@pytest.fixture(scope="module")
def world(tmp_path_factory: Any) -> Any:
    """One gateway (portal on, sample menu, tables, a manager and an order) for every example."""
    from gateway.app import build
    from gateway.ordering.menu import sample_document
    from web import create_app

    cfg = gateway_config(tmp_path_factory.mktemp("fuzz"), "[ordering]\nportal = true\n")
    gw = build(cfg)
    gw.start(web=False, devices=False)
    svc = gw.services["ordering"]
    svc.import_menu(sample_document())
    for t in TABLES:
        svc.add_table(t)
    add_privileged(svc, "wang", "manager")
    app = create_app(gw, {"TESTING": True})
    yield {"gw": gw, "svc": svc, "app": app, "anon": app.test_client(), "staff": app.test_client(), "logins": 0}
    gw.stop()


def _signed_in(w: dict[str, Any]) -> str:
    """Make sure the manager client is signed in (a fuzzed sign-out or revoke may end it); return its CSRF."""
    c = w["staff"]
    html = c.get("/staff/accounts").get_data(as_text=True)
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    if "Signed in" in html and m:
        return m.group(1)
    w["logins"] += 1
    addr = {"REMOTE_ADDR": f"10.99.{w['logins'] // 250}.{w['logins'] % 250 + 1}"}
    auth = add_privileged(w["svc"], "wang", "manager")  # undo fuzzed changes (a new TOTP secret: fresh codes)
    page = c.get("/staff/login", environ_base=addr).get_data(as_text=True)
    tok = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    r = c.post("/staff/login", data={"name": "wang", "pin": PASSWORD, "code": auth.code(), "csrf_token": tok},
               environ_base=addr)
    assert r.status_code == 303, r.get_data(as_text=True)[:300]
    html = c.get("/staff/accounts").get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def _rules(app: Any) -> list[Any]:
    return sorted(app.url_map.iter_rules(), key=lambda r: r.rule)


def _good_values(w: dict[str, Any], name: str) -> list[str]:
    svc = w["svc"]
    if name == "token":
        good = svc.token_for("A1")
        table, _, sig = good.split(".")
        forged = [f"{table}.{v}.{sig}" for v in ("²", "١", "１", "01", "", "+1")]
        return [good, svc.token_for("B1"), queue.store_token(svc.secret, svc.store_id), *forged]
    if name in ("table_id",):
        return list(TABLES)
    if name == "station":
        return ["hot", "bar", "cold"]
    if name == "item_id":
        return ["h01", "c01", "d01"]
    if name == "filename":
        return ["app.css", "diner.js", "../app.py"]
    return ["1", "2", "3"]


@st.composite
def requests(draw: Any, w: dict[str, Any]) -> dict[str, Any]:
    rule = draw(st.sampled_from(_rules(w["app"])))
    path = rule.rule
    params: dict[str, str] = {}
    for arg in sorted(rule.arguments):
        conv = rule._converters[arg]
        good = _good_values(w, arg)
        if type(conv).__name__ == "AsciiIntConverter":
            raw = draw(st.one_of(st.integers(0, 10**6).map(str), st.sampled_from(good), value))
        else:
            raw = draw(st.one_of(st.sampled_from(good), value))
        params[arg] = raw
        path = re.sub(r"<(?:[^:<>]+:)?" + re.escape(arg) + r">", quote(raw, safe="") or "x", path)
    method = draw(st.sampled_from(sorted((rule.methods or {"GET"}) - {"OPTIONS"})))
    query = draw(st.dictionaries(st.one_of(st.sampled_from(QUERY_KEYS), text), value, max_size=4))
    form = draw(st.dictionaries(st.one_of(st.sampled_from(FORM_KEYS), text), value, max_size=8))
    headers = draw(st.dictionaries(st.sampled_from(HEADER_KEYS), st.one_of(st.sampled_from(NASTY[:30]), header_text),
                                   max_size=3))
    headers = {k: v for k, v in headers.items() if "\r" not in v and "\n" not in v and "\x00" not in v}
    return {"rule": rule.rule, "path": path, "params": params, "method": method, "query": query, "form": form,
            "headers": headers, "as_staff": draw(st.booleans()), "good_csrf": draw(st.booleans()),
            "addr": draw(st.sampled_from(["127.0.0.1", "10.0.0.7", "192.168.8.1", "::1"]))}


def _send(w: dict[str, Any], req: dict[str, Any]) -> int:
    svc = w["svc"]
    client = w["staff"] if req["as_staff"] else w["anon"]
    form = dict(req["form"])
    if req["good_csrf"]:
        if req["as_staff"]:
            form["csrf_token"] = _signed_in(w)
        token = req["params"].get("token")
        if token is not None:
            form["csrf"] = svc.form_token(token)
    url = req["path"] + ("?" + urlencode(req["query"]) if req["query"] else "")
    kw: dict[str, Any] = {"method": req["method"], "headers": req["headers"],
                          "environ_base": {"REMOTE_ADDR": req["addr"]}}
    if req["method"] in ("POST", "PUT", "PATCH", "DELETE"):
        kw["data"] = form
    resp = client.open(url, **kw)
    try:
        if resp.mimetype != "text/event-stream":
            resp.get_data()
        return resp.status_code
    finally:
        resp.close()  # an SSE stream gives its live slot back


@settings(max_examples=2500, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_no_route_answers_500_or_logs_an_error(world: dict[str, Any], caplog: Any, data: Any) -> None:
    caplog.clear()
    req = data.draw(requests(world))
    with caplog.at_level(logging.WARNING):
        status = _send(world, req)
    assert status < 500, req
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, (req, [r.getMessage() for r in errors])


@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
@given(segments=st.lists(value, min_size=1, max_size=5), method=st.sampled_from(["GET", "POST", "HEAD"]),
       host=st.one_of(st.sampled_from(["order.test", "evil.example", "localhost", "127.0.0.1:1"]), header_text))
def test_random_paths_never_answer_500_nor_redirect_off_site(world: dict[str, Any], caplog: Any, segments: list[str],
                                                            method: str, host: str) -> None:
    caplog.clear()
    path = "/" + "/".join(quote(s, safe="") for s in segments)
    # the raw path goes in PATH_INFO as a server would put it ("//x" is a path here, not a host)
    raw = unquote_to_bytes(path).decode("latin-1")
    resp = world["anon"].open("/", method=method, headers={"Host": host} if host else {},
                              environ_overrides={"PATH_INFO": raw})
    try:
        assert resp.status_code < 500, path
        loc = resp.headers.get("Location", "")
        assert not loc or loc.startswith("/") or loc.startswith(("http://order.test/", "https://order.test/")), loc
    finally:
        resp.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
