"""Fixtures for equipment: in-process gateways (tests/ordering/ordhelpers.py) and the equipment service."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "ordering"))

from ordhelpers import gw, make_gw, svc  # noqa: E402,F401 - the ordering tests' fixtures


@pytest.fixture
def eq(gw: Any) -> Any:
    """The equipment service of a running in-process gateway."""
    return gw.services["equipment"]
