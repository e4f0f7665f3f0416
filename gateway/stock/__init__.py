"""Stock: ingredients, recipes (BOM), stock counts and sold-out driven by ingredients (docs/store-health.md)."""
