"""Helpers for the members tests (a module of its own: `conftest` names clash across folders)."""

from __future__ import annotations

from typing import Any

CONSENT_ALL = {"benefits": True, "marketing": False, "birthday": True}


def order(gw: Any, table: str, items: dict[str, int]) -> int:
    """Put dishes on a table's bill directly (diner flow is tested in ordering); return the session id."""
    svc = gw.services["ordering"]
    ctx = svc.resolve(svc.token_for(table))
    for item, qty in items.items():
        svc.add_to_cart(ctx, item, {}, qty, "", "", f"10.0.0.{len(table)}")
    svc.submit(ctx, f"idem-{table}-{len(items)}-{sorted(items)}", "", "10.0.0.9")
    return svc.bill(table)["session"]


def register(mem: Any, phone: str = "13812345678", nickname: str = "Lin", **kw: Any) -> dict[str, Any]:
    kw.setdefault("consents", dict(CONSENT_ALL))
    kw.setdefault("channel", "counter")
    return mem.register(nickname=nickname, phone=phone, who="boss", **kw)


MANAGER_PASSWORD = "a long manager password"


def enrol_manager(config: Any, tmp_path: Any, name: str = "boss") -> Any:
    """Add a manager (password + TOTP) through `storegw staff add`; return their pyotp TOTP."""
    from ordhelpers import enrol_cli

    return enrol_cli(config, tmp_path, name, "manager", MANAGER_PASSWORD)


def fresh_code(totp: Any) -> str:
    """A code of the current step, not at the edge of it."""
    import time

    if time.time() % 30 > 28.5:
        time.sleep(1.6)
    return totp.now()


def trust_clock(config: Any) -> None:
    """`storegw staff trust-clock` (a test board's clock is not known to be right)."""
    from ordhelpers import run_cli

    from gateway.cli import ordering as cli

    run_cli(cli.staff, "trust-clock", "--by", "tester", "--config", str(config))
