"""Equipment: registry, maintenance plans and device health on the board (docs/store-health.md)."""
