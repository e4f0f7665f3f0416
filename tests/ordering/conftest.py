"""Fixtures for ordering: an in-process gateway with the sample menu and a Flask test client."""

from __future__ import annotations

from typing import Any

import pytest
from ordhelpers import Diner, gw, make_gw, svc  # noqa: F401 - fixtures

from web import create_app

# make_gw, gw and svc come from ordhelpers (members and staff tests use the same ones).


@pytest.fixture
def client(gw: Any) -> Any:
    """A Flask test client around the gateway."""
    app = create_app(gw, {"TESTING": True})
    return app.test_client()


@pytest.fixture
def diner(client: Any, svc: Any) -> Diner:
    """A diner at table A1."""
    return Diner(client, svc, "A1")
