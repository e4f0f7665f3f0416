"""Fixtures for stock and store health: an in-process gateway with the sample menu, and a stock document."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "ordering"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ordhelpers import Diner, gw, make_gw, svc  # noqa: E402,F401 - the ordering tests' fixtures

from web import create_app  # noqa: E402


@pytest.fixture
def stock(gw: Any) -> Any:
    return gw.services["stock"]


@pytest.fixture
def client(gw: Any) -> Any:
    return create_app(gw, {"TESTING": True}).test_client()


@pytest.fixture
def diner_factory(client: Any, svc: Any) -> Any:
    return lambda table, d="phone01": Diner(client, svc, table, d)
