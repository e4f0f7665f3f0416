"""Store health: sales and complaint anomalies and the daily report at close (docs/store-health.md)."""
