"""The spine: local MQTT ingest, telemetry summaries, alert rules, the device hub and the uplink to HQ.

Above the store and the config, below the domain services; see docs/architecture.md ("Floors").
"""
