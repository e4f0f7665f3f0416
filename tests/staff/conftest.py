"""Fixtures for staff authentication: a real in-process gateway (SQLCipher store, writer) and its web app."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "ordering"))

from ordhelpers import gw, make_gw, svc  # noqa: E402,F401 - the ordering tests' fixtures


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
