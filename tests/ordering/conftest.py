"""Fixtures for ordering: an in-process gateway with the sample menu and a Flask test client."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ordhelpers import TABLES, Diner, gateway_config

from gateway.app import build
from web import create_app


@pytest.fixture
def make_gw(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Build and start in-process gateways (web off) with the sample menu and tables A1, A2, B1."""
    started: list[Any] = []

    def make(extra: str = "", *, sample: bool = True, sub: str = "gw") -> Any:
        cfg = gateway_config(tmp_path / sub, extra)
        gw = build(cfg)
        gw.start(web=False, devices=False)
        started.append(gw)
        svc = gw.services["ordering"]
        if sample:
            from gateway.ordering.menu import sample_document

            svc.import_menu(sample_document())
            for t in TABLES:
                svc.add_table(t)
        return gw

    yield make
    for gw in started:
        gw.stop()


@pytest.fixture
def gw(make_gw: Callable[..., Any]) -> Any:
    """A running gateway with the sample menu (require_open_table = false)."""
    return make_gw()


@pytest.fixture
def svc(gw: Any) -> Any:
    """The ordering service."""
    return gw.services["ordering"]


@pytest.fixture
def client(gw: Any) -> Any:
    """A Flask test client around the gateway."""
    app = create_app(gw, {"TESTING": True})
    return app.test_client()


@pytest.fixture
def diner(client: Any, svc: Any) -> Diner:
    """A diner at table A1."""
    return Diner(client, svc, "A1")
