"""What another domain may add to a bill: the bill hook protocol (members implements it).

Ordering never imports the domains that use it: a service above ordering on the floors (members)
registers a hook with ``OrderingService.add_bill_hook`` when it is built. Every method runs inside
ordering's own transaction (the writer's), so what a hook writes commits or rolls back with the
payment, the void or the refund that caused it; a hook raising ``OrderingError`` refuses the action.
"""

from __future__ import annotations

from typing import Any, Protocol

from gateway.store.db import Connection


class BillHook(Protocol):
    """Adjustments to a bill and reactions to its payment, changes and close."""

    def adjustments(self, conn: Connection, session_id: int, base: dict[str, Any]) -> list[dict[str, Any]]:
        """Lines to add below the bill's subtotal: ``{"kind", "label_zh", "label_en", "amount"}`` with
        ``amount`` in cents taken off the total (0 for an information line). ``base`` has ``subtotal``,
        ``service`` and ``lines``."""
        ...

    def on_paid(self, conn: Connection, session_id: int, table_id: str, bill: dict[str, Any], who: str) -> None:
        """The bill was paid (same transaction as the payment)."""
        ...

    def on_changed(self, conn: Connection, session_id: int, bill: dict[str, Any], who: str) -> None:
        """A line was voided or comped, or the bill refunded; ``bill`` is the bill after the change."""
        ...

    def on_closed(self, conn: Connection, session_id: int, paid: bool, who: str) -> None:
        """The table was cleared (``paid``: whether the bill had been paid)."""
        ...

    def on_merge(self, conn: Connection, src_session: int, dst_session: int) -> None:
        """Two bills are about to be merged; raise OrderingError to refuse."""
        ...
