"""Tables of the equipment registry, maintenance and device health (migrations ``equipment_…``)."""

from __future__ import annotations

from gateway.core.inventory import EMPLOYMENT, HIDDEN, REDACT, Column, Declaration, Table, after, ops, until
from gateway.store.db import Connection
from gateway.store.migrations import migration, run_script


@migration("equipment_0500_registry")
def _registry(conn: Connection) -> None:
    run_script(conn, """
        CREATE TABLE equipment_assets (
            device_id TEXT PRIMARY KEY,
            kind TEXT NOT NULL DEFAULT '',
            brand TEXT NOT NULL DEFAULT '',
            model TEXT NOT NULL DEFAULT '',
            serial TEXT NOT NULL DEFAULT '',
            location TEXT NOT NULL DEFAULT '',
            purchased TEXT NOT NULL DEFAULT '',
            life_years REAL,
            warranty_end TEXT NOT NULL DEFAULT '',
            updated_ms INTEGER NOT NULL,
            updated_by INTEGER
        );
        CREATE TABLE equipment_plans (
            id INTEGER PRIMARY KEY,
            device_id TEXT NOT NULL,
            task TEXT NOT NULL,
            mode TEXT NOT NULL CHECK (mode IN ('fixed', 'floating')),
            every_s REAL,
            every_hours REAL,
            every_cycles REAL,
            start_ms INTEGER NOT NULL,
            start_hours REAL NOT NULL DEFAULT 0,
            start_cycles REAL NOT NULL DEFAULT 0,
            active INTEGER NOT NULL DEFAULT 1,
            created_ms INTEGER NOT NULL,
            UNIQUE (device_id, task)
        );
        CREATE TABLE equipment_done (
            id INTEGER PRIMARY KEY,
            plan_id INTEGER NOT NULL REFERENCES equipment_plans (id),
            device_id TEXT NOT NULL,
            done_ms INTEGER NOT NULL,
            hours REAL,
            cycles REAL,
            who INTEGER,
            what TEXT NOT NULL DEFAULT '',
            parts TEXT NOT NULL DEFAULT '',
            recorded_ms INTEGER NOT NULL
        );
        CREATE INDEX equipment_done_plan ON equipment_done (plan_id, done_ms);
        CREATE TABLE equipment_meters (
            device_id TEXT NOT NULL,
            meter TEXT NOT NULL CHECK (meter IN ('hours', 'cycles')),
            value REAL NOT NULL DEFAULT 0,
            last_raw REAL,
            upto_ms INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (device_id, meter)
        ) WITHOUT ROWID;
        CREATE TABLE equipment_hourly (
            device_id TEXT NOT NULL,
            metric TEXT NOT NULL,
            hour_ms INTEGER NOT NULL,
            mean REAL NOT NULL,
            count INTEGER NOT NULL,
            PRIMARY KEY (device_id, metric, hour_ms)
        );
        CREATE INDEX equipment_hourly_age ON equipment_hourly (hour_ms)
    """)  # equipment_hourly keeps its rowid: the retention job deletes by rowid


_ASSET = until("while the device is in the registry (deleted with it)")
_HISTORY = until("for the life of the device's maintenance history (kept for warranty and safety records)")
_WHO = ("the staff account id of who recorded the service (an id, never a name; the name stays in the staff "
        "account)")

INVENTORY = Declaration("equipment", (
    Table("equipment_assets", "The equipment registry: brand, model, serial, location, purchase and service life",
          ops("device_id kind brand model serial location purchased life_years warranty_end updated_ms", _ASSET,
              "equipment registry")
          + (Column("updated_by", "user.unique_id.pseudonymous", _WHO, EMPLOYMENT, _ASSET, mask=HIDDEN),),
          created="updated_ms"),
    Table("equipment_plans", "Maintenance plans (calendar, hours running, cycles; fixed or floating)",
          ops("id device_id task mode every_s every_hours every_cycles start_ms start_hours start_cycles active "
              "created_ms", _ASSET, "maintenance planning"), created="created_ms"),
    Table("equipment_done", "Maintenance done: when, the meters then, who (staff id), what and which parts",
          ops("id plan_id device_id done_ms hours cycles recorded_ms", _HISTORY, "maintenance history")
          + (Column("who", "user.unique_id.pseudonymous", _WHO, EMPLOYMENT, _HISTORY, mask=HIDDEN),
             Column("what", "user.content.free_text", "what was done, as typed by staff (shown to managers)",
                    EMPLOYMENT, _HISTORY, mask=REDACT),
             Column("parts", "user.content.free_text", "parts used, as typed by staff", EMPLOYMENT, _HISTORY,
                    mask=REDACT)),
          created="recorded_ms"),
    Table("equipment_meters", "Hours-running and cycle meters per device, built from telemetry windows",
          ops("device_id meter value last_raw upto_ms", _ASSET, "maintenance meters")),
    Table("equipment_hourly", "Hourly means of drift-watched metrics (the weekly profile)",
          ops("device_id metric hour_ms mean count", after(63, "hour_ms", "9 weeks after the hour"),
              "drift detection"), created="hour_ms"),
))
