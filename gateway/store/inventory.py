"""The store's own tables in the data inventory (``gateway/core/inventory.py``).

None of them holds personal data by design: device ids, metrics, windows, alerts and the outbox
carry ids, states, numbers and counts (the tripwires keep a phone number used as a device id out of
them). They are declared all the same, so the schema test can tell a new column from a mistake.
"""

from __future__ import annotations

from gateway.core.inventory import Column, Declaration, Table, after, managed, ops, until

_FOREVER = until("for the life of the database")
_RAW = managed("telemetry.raw_retention (7d by default) after the reading's time", "telemetry retention (hourly)",
               days=7, clock="ts_ms")
_WINDOWS = managed("telemetry.raw_retention after the window starts, once sent", "telemetry retention (hourly)",
                   days=7, clock="wstart_ms")
_OUTBOX = managed("until HQ acknowledges it (PUBACK); over uplink.budget raw first, then summaries coarsened",
                  "uplink and outbox budget")
_SENT = managed("uplink.resend_keep (48h by default) after HQ's broker acknowledged it", "uplink manifest (hourly)",
                days=2, clock="acked_ms")
_SENT_ITEMS = managed("with their outbox_sent row", "uplink manifest (hourly)")
_DEVICE = until("while the device is known to this store")
_ALERT_LOG = after(365, "ts_ms", "1 year after the event")

DECLARATION = Declaration("store", (
    Table("meta", "Key/value settings and secrets of the store (card-ref, table-link and interim signing keys)",
          (Column("key", "system.operations", "name of the setting", "not personal data", _FOREVER),
           Column("value", "system.authentication", "settings and random secrets", "not personal data", _FOREVER,
                  mask="hidden")),),
    Table("_migrations", "Schema migrations applied", ops("name applied_ms", _FOREVER, "schema history")),
    Table("devices", "Equipment seen (MQTT device ids)",
          ops("id name kind first_seen_ms last_seen_ms", _DEVICE, "equipment inventory"), created="first_seen_ms"),
    Table("metrics", "Metric names", ops("id name", _FOREVER, "equipment telemetry")),
    Table("readings", "Raw equipment readings", ops("device_id ts_ms digest received_ms metrics", _RAW,
                                                    "equipment telemetry"), created="ts_ms"),
    Table("windows", "Summary windows per device and metric",
          ops("device_id metric_id wstart_ms window_s is_bool count true_count min max sum last last_ts_ms rev dirty",
              _WINDOWS, "equipment telemetry"), created="wstart_ms"),
    Table("outbox", "Messages waiting for HQ's acknowledgement (schema-checked, no personal data)",
          ops("seq lane topic msg_id kind payload size retain created_ms", _OUTBOX, "store-and-forward to HQ"),
          created="created_ms"),
    Table("outbox_sent", "Messages HQ's broker acknowledged, kept for gap repair (manifest, P/cmd/resend)",
          ops("seq lane topic msg_id kind payload retain acked_ms", _SENT, "store-and-forward to HQ"),
          created="acked_ms"),
    Table("outbox_sent_items", "Ids and revs of the items of each acknowledged message (the manifest)",
          ops("item_id rev seq", _SENT_ITEMS, "store-and-forward to HQ")),
    Table("alerts_active", "Alerts raised and not yet cleared",
          ops("key episode kind rule device severity value raised_ms",
              until("while the alert is active"), "equipment alerts"), created="raised_ms"),
    Table("alert_log", "Alert history", ops("id episode state kind rule device severity value ts_ms", _ALERT_LOG,
                                            "equipment alerts"), created="ts_ms"),
    Table("rule_state", "Alert rules' pending timers and last-seen times per (rule, device) series",
          ops("key rule device since_ms value seen_ms", until("while the rule and the device are known"),
              "equipment alerts"), created="seen_ms"),
    Table("device_events", "Device events (reserved; nothing writes it yet)",
          ops("id device kind ts_ms data", after(30, "ts_ms", "30d after the event"), "device events"),
          created="ts_ms"),
))
