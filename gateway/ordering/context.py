"""What the ordering helpers (kitchen, queue, staff, summary) read from the ordering service.

They take this small, read-mostly view instead of importing the service, so the service imports
them and never the other way round.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from gateway.config import Config, OrderingConfig
    from gateway.ordering.hooks import BillHook
    from gateway.ordering.menu import Menu
    from gateway.ordering.tables import Table
    from gateway.printing.service import PrintService


class OrderingContext(Protocol):
    """The ordering state a helper may read while it writes in the caller's transaction."""

    cfg: Config
    ocfg: OrderingConfig
    store_id: str
    secret: bytes
    menu: Menu
    tables: dict[str, Table]
    sold_out: set[str]
    stock_svc: Any  # gateway.stock's StockService, or None in a build without stock
    printing: PrintService
    bill_hooks: list[BillHook]
