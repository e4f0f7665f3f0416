"""Fixtures for members: an in-process gateway (sample menu, tables A1 A2 B1, staff) and helpers."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "ordering"))

from ordhelpers import gw, make_gw, svc  # noqa: E402,F401 - the ordering tests' fixtures


@pytest.fixture
def mem(gw: Any) -> Any:
    return gw.services["members"]


