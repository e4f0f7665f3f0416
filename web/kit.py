"""What every page module shares: the gateway the app was created with."""

from __future__ import annotations

from typing import Any

from flask import Flask


def services_of(app: Flask) -> Any:
    """Return the gateway the app was created with (``create_app(services)``)."""
    return app.extensions["storegw"]
