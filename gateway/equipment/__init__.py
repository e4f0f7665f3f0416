"""Equipment: registry, maintenance plans and device health on the board (docs/equipment.md)."""

from gateway.core.errors import OrderingError


class EquipmentError(OrderingError):
    """An equipment action that cannot be done (bad input, unknown plan), with a message fit to show."""
