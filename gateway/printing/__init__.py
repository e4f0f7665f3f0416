"""Kitchen and receipt printing: a durable per-printer queue with proof of delivery.

``schema`` holds the tables, ``queue`` the SQL of the job state machine, ``service`` the
per-printer workers (status before and after each job, alerts, failover) and ``cli`` the
``storegw print`` / ``storegw jobs`` commands. See docs/devices-printers.md.
"""

from __future__ import annotations

from gateway.core.errors import GatewayError


class PrintError(GatewayError):
    """A print job that cannot be queued: unknown printer or station, or an invalid document."""
