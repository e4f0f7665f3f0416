"""What `storegw demo` adds for ordering: the sample menu, a few tables and a demo waiter.

Managers sign in with a password and an authenticator app (``storegw staff add NAME --role
manager``), so the demo's ready-made account is a waiter with a PIN: table map, orders, KDS.
"""

from __future__ import annotations

from typing import Any

from gateway.ordering.menu import sample_document
from gateway.staff.accounts import add_staff

DEMO_TABLES = ("A1", "A2", "A3", "B1")
DEMO_PIN = "246813"


def setup(svc: Any) -> list[str]:
    """Import the sample menu and tables into a fresh demo store; return lines to print."""
    svc.import_menu(sample_document())
    for table in DEMO_TABLES:
        svc.add_table(table)
    svc.writer.call(lambda c: add_staff(c, "demo", "waiter", DEMO_PIN))
    return [f"  order:  {svc.url_for(DEMO_TABLES[0])}   (table {DEMO_TABLES[0]}; "
            f"others: storegw tables list --config ...)",
            f"  staff:  http://{svc.cfg.web.public_host or svc.cfg.web.listen}/staff/  "
            f"(name demo, PIN {DEMO_PIN}: a waiter; KDS under /staff/kds; a manager: "
            f"storegw staff add NAME --role manager --config ...)"]
