"""``storegw hq serve``: HQ's fleet page (server-rendered) and ``/metrics``, over HQ's database.

It reaches HQ's data only through ``gateway.hq.fleet.FleetView`` (the facade). Read-only, no forms,
so no CSRF surface; it binds to loopback unless told otherwise (put it behind HQ's own sign-in).
"""

from __future__ import annotations

import json
from typing import Any

from flask import Flask, Response, render_template

from gateway.hq.fleet import FleetView
from gateway.hq.sink import Sink


def create_app(sink: Sink, *, refresh: int = 2) -> Flask:
    """Build the fleet app over an open sink."""
    app = Flask(__name__)
    view = FleetView(sink)

    @app.after_request
    def _headers(resp: Response) -> Response:
        resp.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'self' 'unsafe-inline'"
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Cache-Control"] = "no-store"
        return resp

    @app.get("/")
    def fleet() -> str:
        stores = view.stores()
        online = sum(1 for s in stores if s.get("state") == "online")
        return render_template("fleet/fleet.html", stores=stores, online=online, alerts=view.alerts_by_severity(),
                               latest=view.latest(), counts=view.counts(), dead=view.dead_letters(),
                               refresh=max(1, refresh), brief=_brief)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(view.metrics(), mimetype="text/plain; version=0.0.4")

    return app


def _brief(payload: Any, limit: int = 160) -> str:
    """A short one-line rendering of a message for a table cell."""
    if isinstance(payload, list):
        payload = payload[-1] if payload else {}
    if isinstance(payload, dict):
        payload = {k: v for k, v in payload.items() if k not in ("id", "ts", "store")}
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= limit else text[:limit - 1] + "…"
