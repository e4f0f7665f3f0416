"""The local web app: diner, staff and technician pages and the JSON API (Flask app factory)."""

from __future__ import annotations

import importlib
from typing import Any

from flask import Flask

# Blueprints that exist in this build; each module exposes ``bp`` (a Blueprint).
BLUEPRINTS = (
    "web.api.health",
    "web.diner.views",
    "web.staff.views",
    "web.tech.views",
    "web.portal.views",
)


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
    for name in BLUEPRINTS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name and name.startswith(err.name):
                continue
            raise
        app.register_blueprint(module.bp)
        init = getattr(module, "init_app", None)
        if init is not None:
            init(app)

    @app.after_request
    def _security_headers(resp: Any) -> Any:
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "no-referrer")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        return resp

    return app


def services_of(app: Flask) -> Any:
    """Return the gateway services the app was created with."""
    return app.extensions["storegw"]
