"""Fixtures for staff authentication: a real in-process gateway (SQLCipher store, writer) and its web app."""

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
    """Build and start in-process gateways (web off) with the sample menu and tables A1, A2, B1."""
    started: list[Any] = []

    def make(extra: str = "", *, sub: str = "gw") -> Any:
        gw = build(gateway_config(tmp_path / sub, extra))
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
    """The ordering service (its ``writer`` runs writes in the gateway's writer)."""
    return gw.services["ordering"]


@pytest.fixture
def app(gw: Any) -> Any:
    from web import create_app

    return create_app(gw, {"TESTING": True})


@pytest.fixture
def cli_config(gw: Any, tmp_path: Path) -> Path:
    """A config file for the CLI naming the running gateway's data dir and clock evidence."""
    cfg = gw.cfg
    path = tmp_path / "cli.toml"
    files = ", ".join(f'"{f}"' for f in cfg.staff.clock_sync_files)
    path.write_text(f'[store]\nid = "{cfg.store.id}"\ndata_dir = "{cfg.data_path.as_posix()}"\n'
                    f'[uplink]\nenabled = false\n[staff]\nclock_sync_files = [{files}]\n')
    return path
