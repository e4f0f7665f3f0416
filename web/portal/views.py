"""Captive portal: answer the OS connectivity probes so phones open the landing page, and the
RFC 8908 captive portal API (``application/captive+json``) at ``ordering.portal_api_path``.

Only active with ``ordering.portal = true``. A phone is "captive" until the diner taps Continue on
the landing page; from then on (24 h, keyed by IP: phones rotate MACs, and the mini-browser drops
cookies) its probes get the exact "online" answers so the OS stops nagging. Any request for a host
that is not the gateway's (wildcard DNS points every name here) is sent to the landing page.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from flask import Blueprint, Response, current_app, redirect, render_template, request, url_for

from web.diner.views import CSP, lang_of
from web.kit import services_of

bp = Blueprint("portal", __name__)

RELEASE_SECONDS = 24 * 3600
APPLE_SUCCESS = "<HTML><HEAD><TITLE>Success</TITLE></HEAD><BODY>Success</BODY></HTML>"
FIREFOX_SUCCESS = '<meta http-equiv="refresh" content="0;url=https://support.mozilla.org/kb/captive-portal"/>'
# path -> (status, body, content type) of the "online" answer each OS expects
PROBES: dict[str, tuple[int, str, str]] = {
    "/generate_204": (204, "", "text/plain"),
    "/gen_204": (204, "", "text/plain"),
    "/hotspot-detect.html": (200, APPLE_SUCCESS, "text/html"),
    "/library/test/success.html": (200, APPLE_SUCCESS, "text/html"),
    "/connecttest.txt": (200, "Microsoft Connect Test", "text/plain"),
    "/ncsi.txt": (200, "Microsoft NCSI", "text/plain"),
    "/redirect": (302, "", "text/plain"),
    "/canonical.html": (200, FIREFOX_SUCCESS, "text/html"),
    "/success.txt": (200, "success\n", "text/plain"),
}
NO_STORE = "private, no-cache, no-store, must-revalidate"


class Released:
    """Clients (by IP) that passed the landing page, for ``RELEASE_SECONDS``."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def add(self, ip: str) -> None:
        """Release a client."""
        with self._lock:
            now = time.monotonic()
            self._until = {k: v for k, v in self._until.items() if v > now}
            self._until[ip] = now + RELEASE_SECONDS

    def __contains__(self, ip: object) -> bool:
        return self._until.get(str(ip), 0) > time.monotonic()


def _cfg() -> Any:
    return services_of(current_app).cfg


def _released() -> Released:
    return current_app.extensions.setdefault("storegw-portal", Released())


def _own_hosts(cfg: Any) -> set[str]:
    hosts = {"localhost", "127.0.0.1", "[::1]"}
    for value in (cfg.web.public_host, cfg.web.listen):
        if value:
            hosts.add(value.lower())
            hosts.add(value.rpartition(":")[0].lower() if ":" in value else value.lower())
    return hosts


def portal_url(cfg: Any) -> str:
    """Absolute URL of the landing page (what probes redirect to)."""
    host = cfg.web.public_host or cfg.web.listen
    return f"{'https' if cfg.ordering.https else 'http'}://{host}/portal"


def init_app(app: Any) -> None:
    """Install the probe answers and the catch-all (only when ``ordering.portal`` is on)."""

    @app.before_request
    def _captive() -> Any:
        cfg = _cfg()
        if not cfg.ordering.portal:
            return None
        path = request.path
        if path == cfg.ordering.portal_api_path:
            return None
        ip = request.remote_addr or ""
        probe = PROBES.get(path)
        host = (request.host or "").lower()
        if probe is not None:
            if ip in _released() and path != "/redirect":
                status, body, ctype = probe
                resp = Response(body, status=status, mimetype=ctype)
            else:
                resp = redirect(portal_url(cfg), code=302)
            resp.headers["Cache-Control"] = NO_STORE
            return resp
        if host and host not in _own_hosts(cfg) and host.rpartition(":")[0] not in _own_hosts(cfg):
            resp = redirect(portal_url(cfg), code=302)
            resp.headers["Cache-Control"] = NO_STORE
            return resp
        return None

    path = app.extensions["storegw"].cfg.ordering.portal_api_path
    app.add_url_rule(path, "portal_api", captive_api)


def captive_api() -> Any:
    """RFC 8908: ``{"captive": ..., "user-portal-url": ...}`` as application/captive+json, uncacheable."""
    cfg = _cfg()
    host = cfg.web.public_host or cfg.web.listen
    scheme = "https" if cfg.ordering.https else "http"
    body = {"captive": (request.remote_addr or "") not in _released() if cfg.ordering.portal else False,
            "user-portal-url": f"{scheme}://{host}/portal", "venue-info-url": f"{scheme}://{host}/portal",
            "can-extend-session": False}
    import json

    resp = Response(json.dumps(body), mimetype="application/captive+json")
    resp.headers["Cache-Control"] = NO_STORE
    resp.headers["Vary"] = "Accept"
    return resp


@bp.after_request
def _headers(resp: Response) -> Response:
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["Cache-Control"] = NO_STORE
    return resp


@bp.get("/portal")
def landing() -> Any:
    """The captive landing page: what this Wi-Fi is for and how to order."""
    lang = lang_of()
    request._storegw_lang = lang  # type: ignore[attr-defined]
    cfg = _cfg()
    return render_template("portal/landing.html", lang=lang, store_name=cfg.store.name,
                           released=(request.remote_addr or "") in _released(),
                           other_lang="en" if lang == "zh" else "zh")


@bp.post("/portal/continue")
def accept() -> Any:
    """Mark this phone as through the portal (its probes now get the 'online' answers)."""
    _released().add(request.remote_addr or "")
    return redirect(url_for("portal.landing", lang=lang_of()), code=303)


@bp.get("/")
def root() -> Any:
    """The bare host goes to the landing page."""
    return redirect(url_for("portal.landing"), code=302)
