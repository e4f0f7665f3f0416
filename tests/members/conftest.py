"""Fixtures for members: an in-process gateway (sample menu, tables A1 A2 B1, staff) and helpers."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "ordering"))

from ordhelpers import TABLES, gateway_config  # noqa: E402

from gateway.app import build  # noqa: E402


@pytest.fixture
def make_gw(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Build and start in-process gateways (web off) with the sample menu and tables."""
    started: list[Any] = []

    def make(extra: str = "", *, sub: str = "gw") -> Any:
        cfg = gateway_config(tmp_path / sub, extra)
        gw = build(cfg)
        gw.start(web=False, devices=False)
        started.append(gw)
        svc = gw.services["ordering"]
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
    return make_gw()


@pytest.fixture
def svc(gw: Any) -> Any:
    return gw.services["ordering"]


@pytest.fixture
def mem(gw: Any) -> Any:
    return gw.services["members"]


