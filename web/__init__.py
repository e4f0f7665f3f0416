"""The local web app: diner, staff and technician pages and the JSON API (Flask app factory)."""

from __future__ import annotations

from typing import Any

from flask import Flask

from web.api import health
from web.diner import member_views as diner_members
from web.diner import queue_views as diner_queue
from web.diner import views as diner
from web.kit import AsciiIntConverter, allowed_hosts, same_origin_location
from web.portal import views as portal
from web.staff import equipment_views as staff_equipment
from web.staff import frontdesk
from web.staff import member_views as staff_members
from web.staff import views as staff
from web.tech import views as tech

# The pages of this build, registered in this order; each module has ``bp`` and may have ``init_app``.
BLUEPRINTS = (health, diner, staff, tech, portal)
# Modules that add routes to a blueprint above (the diner queue pages are on the diner blueprint).
_ROUTES_ON_BLUEPRINTS = (diner_queue, diner_members, staff_members, frontdesk, staff_equipment)


def create_app(services: Any, test_config: dict[str, Any] | None = None) -> Flask:
    """Create the Flask app around the gateway's services (``services.health()``, ``services.services``)."""
    app = Flask(__name__)
    app.config.update(
        MAX_CONTENT_LENGTH=64 * 1024,
        JSON_SORT_KEYS=False,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
    )
    if test_config:
        app.config.update(test_config)
    app.extensions["storegw"] = services
    app.url_map.converters["int"] = AsciiIntConverter  # before any rule is added
    for module in BLUEPRINTS:
        app.register_blueprint(module.bp)
        init = getattr(module, "init_app", None)
        if init is not None:
            init(app)

    @app.after_request
    def _security_headers(resp: Any) -> Any:
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "no-referrer")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        location = resp.headers.get("Location")
        if location is not None:
            resp.headers["Location"] = same_origin_location(location, allowed_hosts(services))
        return resp

    return app
