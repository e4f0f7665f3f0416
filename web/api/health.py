"""GET /api/v1/health: no auth, no personal data (C5)."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from web.kit import services_of

bp = Blueprint("health", __name__, url_prefix="/api/v1")


@bp.get("/health")
def health():  # noqa: ANN201
    """Return status, version, uptime, db, uplink, outbox per lane, ingest and device states."""
    doc = services_of(current_app).health()
    resp = jsonify(doc)
    resp.headers["Cache-Control"] = "no-store"
    if doc.get("status") == "failing":
        resp.status_code = 503
    return resp
