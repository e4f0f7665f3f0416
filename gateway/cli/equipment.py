"""``storegw equipment``: the store's equipment (registry, maintenance; broker accounts for MQTT equipment)."""

from __future__ import annotations

import click


@click.group("equipment")
def equipment() -> None:
    """The store's equipment: registry, maintenance plans and broker accounts."""
