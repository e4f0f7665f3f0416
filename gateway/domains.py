"""The domain services of this build, listed explicitly: their schemas and how to build them.

Adding a domain (members, guests, store health...) is one package under ``gateway/`` plus one line
in each list below; docs/architecture.md ("Adding a domain") walks through it. Nothing is found by
name at run time, so a missing module is an ImportError at start, never a silent skip.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.core.inventory import Inventory
from gateway.equipment import schema as equipment_schema
from gateway.equipment import service as equipment
from gateway.guests import schema as guests_schema
from gateway.guests import service as guests
from gateway.members import schema as members_schema
from gateway.members import service as members
from gateway.ordering import schema as ordering_schema
from gateway.ordering import service as ordering
from gateway.printing import schema as printing_schema
from gateway.printing import service as printing
from gateway.privacy import schema as privacy_schema
from gateway.staff import schema as staff_schema
from gateway.staff import service as staff
from gateway.store import inventory as store_inventory

# Migrations after the store's own, in this order (gateway.store.migrations).
SCHEMAS = (privacy_schema, printing_schema, ordering_schema, staff_schema, members_schema, guests_schema,
           equipment_schema)

# The data inventory: the store's own tables, then each domain's (gateway/core/inventory.py).
INVENTORY = Inventory((store_inventory.DECLARATION, privacy_schema.INVENTORY, printing_schema.INVENTORY,
                       ordering_schema.INVENTORY, staff_schema.INVENTORY,
                       members_schema.INVENTORY, guests_schema.INVENTORY, equipment_schema.INVENTORY))

# Built and started in this order; a later service may use an earlier one.
SERVICES: tuple[tuple[str, Callable[[Any], Any]], ...] = (
    ("printing", printing.build),
    ("staff", staff.build),
    ("ordering", ordering.build),
    ("members", members.build),  # adds its bill hook to ordering (members sits above ordering)
    ("guests", guests.build),
    ("equipment", equipment.build),
)
