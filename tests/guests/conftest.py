"""Fixtures for guest registration: an in-process gateway with ``[guests] enabled = true``."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.app import build
from gateway.staff import accounts

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "ordering"))  # ordhelpers, run on its own too

PIN = "246813"


@pytest.fixture
def make_gw(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Build and start in-process gateways with guests on; staff lin (cashier), wang (waiter) and boss
    (manager, password + TOTP: ``gw.boss.code()``)."""
    from guestkit import PASSWORD, Authenticator, guests_config

    started: list[Any] = []

    def make(extra: str = "", *, web: bool = False, devices: bool = False, **kw: Any) -> Any:
        cfg = guests_config(tmp_path, extra, **kw)
        gw = build(cfg)
        gw.start(web=web, devices=devices)
        started.append(gw)
        for name, role in (("lin", "cashier"), ("wang", "waiter")):
            gw.store.writer.call(lambda c, n=name, r=role: accounts.add_staff(c, n, r, PIN))
        cipher = gw.privacy.cipher
        gw.boss = Authenticator(gw.store.writer.call(lambda c: accounts.enrol(c, "boss", "manager", PASSWORD,
                                                                               cipher=cipher)))
        return gw

    yield make
    for gw in started:
        gw.stop()


@pytest.fixture
def gw(make_gw: Callable[..., Any]) -> Any:
    """A running gateway with guests on and automatic sending off (the tests drive the outbox)."""
    return make_gw("auto_send = false")


@pytest.fixture
def svc(gw: Any) -> Any:
    """The guest service with a test clock (``svc.clock.advance``)."""
    from guestkit import Clock

    from gateway.core.models import now_ms

    s = gw.services["guests"]
    s.clock = Clock(now_ms())
    return s
