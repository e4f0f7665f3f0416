"""Load and validate the TOML configuration once, into frozen objects.

Every section is a frozen dataclass whose fields carry their own type and help text
(``field(metadata=...)``): one source for validation, ``config show`` and the docs test.
Errors name the dotted key, what was expected, what was found and the fix, the way
ESPHome's config validation does.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from devices import registry
from gateway.core.errors import ConfigError
from gateway.core.models import DEVICE_ID_RE
from gateway.core.options import (
    DeviceConfig,
    OptionSpec,
    check_str,
    opt,
    parse_duration,
    parse_size,
    type_name,
    unknown_key,
    validate_options,
    validate_value,
)

__all__ = ["Config", "DeviceConfig", "OptionSpec", "load", "parse", "parse_duration", "parse_size",
           "validate_options"]

# ---------------------------------------------------------------------------
# the sections


@dataclass(frozen=True)
class StoreConfig:
    """[store]: who this gateway is and where it keeps its data."""

    id: str = opt("store_id", help="Store id, 1-32 of a-z 0-9 '-'; used in upstream topics.")
    data_dir: str = opt("path", "/var/lib/storegw", help="Directory for the encrypted database, key file and backups.")
    key_file: str = opt("path", "", help="Database key file when neither systemd credential `db-key` nor "
                        "$STOREGW_DB_KEY is set; default DATA_DIR/db.key (generated, mode 0600).")
    name: str = opt("str", "", help="Human-readable store name shown on pages and tickets.")
    timezone: str = opt("str", "Asia/Shanghai", help="IANA time zone used to show local times and cut business days.")
    time_server: str = opt("str", "", help="NTP server `storegw doctor` compares the board's clock with (SNTP, "
                           "UDP 123), e.g. \"pool.ntp.org\"; \"\" = only ask timedatectl.")


@dataclass(frozen=True)
class LocalMqttConfig:
    """[local_mqtt]: the store's broker, where equipment publishes."""

    host: str = opt("str", "127.0.0.1", help="Broker host.")
    port: int = opt("port", 1883, help="Broker port.")
    embedded: bool = opt("bool", False, help="Start the built-in pure-Python broker on host:port (dev/demo only).")
    client_id: str = opt("str", "", help="MQTT client id of the gateway; default storegw-STORE_ID-local "
                         "(stable, so the broker keeps the persistent session); must differ from "
                         "uplink.client_id when both use one broker.")
    username: str = opt("str", "", help="Username on the local broker.")
    password_file: str = opt("path", "", help="File holding the local broker password (never in this file).",
                             secret=True)
    broker_passwd_file: str = opt("path", "/etc/mosquitto/storegw.passwd", help="Mosquitto password file of the "
                                  "store broker's accounts (the gateway's and one per device), written by "
                                  "`storegw provision mosquitto` and `storegw equipment add`.")
    broker_acl_file: str = opt("path", "/etc/mosquitto/storegw.acl", help="Mosquitto ACL generated from those "
                               "accounts: each device writes only devices/ID/#, the gateway reads them all.")


@dataclass(frozen=True)
class UplinkConfig:
    """[uplink]: the HQ broker and how the outbox drains to it."""

    enabled: bool = opt("bool", True, help="Connect to HQ at all (false: keep everything in the outbox).")
    host: str = opt("str", "localhost", help="HQ broker host.")
    port: int = opt("port", 8883, help="HQ broker port.")
    tls: bool = opt("bool", True, help="Use TLS to HQ.")
    ca_file: str = opt("path", "", help="CA bundle to verify HQ's certificate (default: system CAs).")
    cert_file: str = opt("path", "", help="Client certificate for mutual TLS.")
    key_file: str = opt("path", "", help="Client private key for mutual TLS.", secret=True)
    username: str = opt("str", "", help="Username at HQ.")
    password_file: str = opt("path", "", help="File holding the HQ password (never in this file).", secret=True)
    protocol: str = opt("enum:3.1.1|5", "3.1.1", help="MQTT protocol version to HQ: \"3.1.1\" or \"5\".")
    client_id: str = opt("str", "", help="MQTT client id at HQ; default storegw-STORE_ID.")
    topic_prefix: str = opt("str", "storegw/v1", help="Upstream topics are PREFIX/STORE_ID/...")
    keepalive: float = opt("duration", "30s", help="MQTT keepalive to HQ.")
    max_inflight: int = opt("int", 20, help="Unacknowledged QoS 1 messages in flight at once.")
    drain_rate: float = opt("float", 200.0, help="Upper bound on messages per second sent to HQ (0 = no limit).")
    batch: int = opt("int", 100, help="Summaries or raw readings packed into one upstream message at most.")
    budget: int = opt("size", "256MB", help="Disk budget of the outbox; over it raw is dropped first, then old "
                      "summaries are coarsened; alerts are never dropped.")
    backlog_alert_after: float = opt("duration", "1h", help="Raise a gateway alert when the oldest unsent "
                                     "message is older than this.")
    reconnect_min: float = opt("duration", "1s", help="Smallest reconnect delay (decorrelated jitter: each delay is "
                               "uniform between this and 3 × the previous one).")
    manifest_every: float = opt("duration", "1h", help="Publish P/manifest (the ids and revs HQ's broker "
                                "acknowledged) this often, so HQ can ask for what it lost; 0 = never.")
    resend_keep: float = opt("duration", "48h", help="Keep acknowledged messages this long to answer HQ's "
                             "P/cmd/resend.")
    reconnect_max: float = opt("duration", "30s", help="Largest reconnect delay; a broker that says it is busy "
                               "(MQTT 5 quota exceeded, server busy) gets 1–2 × this.")


@dataclass(frozen=True)
class WebConfig:
    """[web]: the local HTTP server (diner, staff and technician pages, health)."""

    listen: str = opt("listen", "0.0.0.0:8080", help="HOST:PORT to listen on.")
    public_host: str = opt("str", "", help="Host (and :port) that table QR codes point at, "
                           "e.g. order.example-store.cn.")
    threads: int = opt("int", 16, help="Worker threads of the HTTP server.")
    connections_per_address: int = opt("int", 64, help="Open connections one client address may hold; more are "
                                       "closed at once, so one phone cannot take every connection (addresses "
                                       "in ordering.nat_addresses, and 127.0.0.1 and ::1 where a TLS "
                                       "terminator in front connects from, are exempt).")


@dataclass(frozen=True)
class TelemetryConfig:
    """[telemetry]: ingest and summaries of equipment readings."""

    summary_window: float = opt("duration", "60s", help="Tumbling window of the summaries sent to HQ.")
    summary_grace: float = opt("duration", "5s", help="Wait this long after a window closes before sending it; "
                               "later readings re-send it with rev+1.")
    raw_retention: float = opt("duration", "7d", help="How long raw readings are kept locally.")
    forward_raw: tuple[str, ...] = opt("list[str]", (), help="Device globs whose every reading also goes to HQ "
                                       "(P/telemetry/raw, bulk lane).")
    max_payload: int = opt("size", "64KiB", help="Largest accepted telemetry payload.")


@dataclass(frozen=True)
class AlertRule:
    """[[alerts.rules]]: a threshold on one metric of matching devices."""

    name: str = opt("str", help="Rule name, unique; part of the alert id.")
    metric: str = opt("str", help="Metric name in the telemetry payload, e.g. temp_c.")
    devices: str = opt("str", "*", help="Glob on device id, e.g. \"fridge-*\".")
    above: float | None = opt("float", None, help="Raise when the value is above this (use above or below).")
    below: float | None = opt("float", None, help="Raise when the value is below this.")
    for_: float = opt("duration", "0s", help="Condition must hold this long before raising (TOML key `for`).")
    clear_below: float | None = opt("float", None, help="Hysteresis for above-rules: clear only below this "
                                    "(default: the threshold).")
    clear_above: float | None = opt("float", None, help="Hysteresis for below-rules: clear only above this.")
    severity: str = opt("enum:critical|major|minor|warning", "major", help="critical, major, minor or warning.")
    no_data: float | None = opt("duration", None, help="No value of the metric from a device that is otherwise "
                                "online for this long is the rule's no-data state (its own alert, not an alarm); "
                                "\"0s\": never. Default: alerts.no_data_after.")

    def matches(self, device: str) -> bool:
        """Return whether the rule applies to a device id."""
        return fnmatch.fnmatchcase(device, self.devices)


@dataclass(frozen=True)
class AlertsConfig:
    """[alerts]: device-fault alerting."""

    device_offline_after: float = opt("duration", "2m", help="A device silent this long is offline (alert).")
    rules: tuple[AlertRule, ...] = opt("rules", (), help="Threshold rules, see [[alerts.rules]].")
    no_data_after: float = opt("duration", "15m", help="Default no-data time of a rule: a device that stays online "
                               "but sends no value of the rule's metric this long raises the rule's no-data alert "
                               "(\"0s\": never). After a start every known series gets this long again (no storm).")
    pending_resume: float = opt("duration", "15m", help="A rule's pending `for` timer survives a restart when its "
                                "last breaching reading is at most this old; older, the breach starts over.")


@dataclass(frozen=True)
class OrderingConfig:
    """[ordering]: diner ordering on the store's captive page."""

    require_open_table: bool = opt("bool", False, help="Accept orders only after staff open the table (开台).")
    portal: bool = opt("bool", False, help="Answer OS captive-portal probes so phones open the landing page.")
    portal_api_path: str = opt("str", "/captive-portal/api", help="Path of the RFC 8908 captive portal API.")
    currency: str = opt("str", "CNY", help="ISO 4217 currency of menu prices.")
    service_charge_pct: float = opt("float", 0.0, help="Service charge added to bills, in percent.")
    max_items_per_round: int = opt("int", 50, help="Largest number of items in one round sent to the kitchen.")
    submit_rate: int = opt("int", 10, help="Diner submits allowed per table per minute.")
    staff_session: float = opt("duration", "12h", help="Idle staff sessions end after this.")
    staff_session_max: float = opt("duration", "16h", help="Staff sessions end this long after sign-in, "
                                   "however busy.")
    cart_rate: int = opt("int", 240, help="Diner cart changes and requests allowed per table per minute; "
                         "one client (address, or address and device cookie behind NAT) gets a quarter of it "
                         "for all its writes.")
    https: bool = opt("bool", False, help="Table QR URLs use https:// (a certificate for web.public_host is "
                      "served in front of the gateway).")
    kds_warn: float = opt("duration", "10m", help="KDS tickets older than this turn amber.")
    kds_late: float = opt("duration", "20m", help="KDS tickets older than this turn red (late).")
    live_streams: int = opt("int", 0, help="Live (SSE) streams served at once; others poll. "
                            "0: half of web.threads.")
    staff_streams: int = opt("int", 0, help="Of live_streams, how many are kept for signed-in staff screens (KDS, "
                             "table map); diner streams never take them. 0: a quarter, at least 2.")
    queue_per_client: int = opt("int", 2, help="Open queue numbers (waiting or called) one client may hold at "
                                "once; a client is its source address (see nat_addresses).")
    cart_lines_per_client: int = opt("int", 20, help="Lines one client may have in a table's shared cart "
                                     "(the cart holds 60), so one phone cannot fill it alone.")
    nat_addresses: tuple[str, ...] = opt("list[str]", (), help="Source addresses or networks (CIDR) that are NAT "
                                         "routers with many phones behind them: there a client is the address "
                                         "plus a signed per-device cookie.")


@dataclass(frozen=True)
class StaffConfig:
    """[staff]: staff sign-in (PINs for floor staff; password + TOTP for managers, technicians, auditors)."""

    clock_sync_files: tuple[str, ...] = opt("list[str]", ("/run/systemd/timesync/synchronized",),
                                            help="Files whose presence proves the clock is synchronised; TOTP "
                                            "is refused while none exists, unless a technician ran `storegw staff "
                                            "trust-clock` since boot.")


@dataclass(frozen=True)
class WifiConfig:
    """[wifi]: the diners' access point and captive portal (`storegw provision wifi`, docs/operations.md)."""

    interface: str = opt("str", "wlan0", help="Interface of the diners' access point (its own subnet).")
    ssid: str = opt("str", "", help="Network name diners see; \"\" = the store's name.")
    address: str = opt("str", "10.42.0.1/24", help="The gateway's address and prefix on the diners' subnet.")
    uplink: str = opt("str", "", help="Interface to the internet (eth0); diners are never routed to it.")
    staff_networks: tuple[str, ...] = opt("list[str]", (), help="Staff subnets (CIDR) diners must never reach, "
                                          "besides everything behind the uplink.")
    country: str = opt("str", "CN", help="Regulatory country code of the radio (hostapd country_code).")
    channel: int = opt("int", 6, help="2.4 GHz channel of the access point.")
    lease: float = opt("duration", "2h", help="DHCP lease time on the diners' subnet.")


@dataclass(frozen=True)
class BackupConfig:
    """[backup]: a daily backup of the database made by storegw itself (off until ``at`` is set)."""

    at: str = opt("clock", "", help='Local time (store.timezone) of the daily backup, e.g. "03:30"; "" = none '
                  "(run `storegw backup` by hand or from a timer).")
    dir: str = opt("path", "", help="Directory for backups; default DATA_DIR/backups (another disk is better).")
    keep: int = opt("int", 7, help="Backups kept in that directory; older ones are deleted (0 = keep all).")


@dataclass(frozen=True)
class KeysConfig:
    """[keys]: the keyring (key-encryption key, database key, field keys), kept outside the data dir."""

    dir: str = opt("path", "", help="Directory of the keyring (0700); default: a sibling of store.data_dir "
                   "named DATA_DIR-keys, e.g. /var/lib/storegw-keys. Never inside the data dir.")
    rewrap_every: float = opt("duration", "10s", help="How often the background re-wrap re-encrypts a batch of "
                              "fields still under an older field key.")
    rewrap_batch: int = opt("int", 200, help="Fields re-encrypted per re-wrap run (one write transaction).")

@dataclass(frozen=True)
class AuditConfig:
    """[audit]: the tamper-evident audit chain and its signed checkpoints to HQ."""

    checkpoint_every: float = opt("duration", "5m", help="How often a signed checkpoint of the audit chain goes "
                                  "to HQ (P/audit/checkpoint) when the chain grew (hourly when it did not).")
    checkpoint_entries: int = opt("int", 500, help="A checkpoint also goes after this many new entries "
                                  "(0: only the periodic one).")


@dataclass(frozen=True)
class GuestsConfig:
    """[guests]: hotel guest registration at the front desk (off unless enabled); docs/guests.md."""

    enabled: bool = opt("bool", False, help="Turn on guest registration (front-desk page, ID/MRZ readers, "
                        "authority reports).")
    minor_age: int = opt("int", 18, help="Guests younger than this (from the date of birth) are minors and need a "
                         "guardian's name, contact and relationship to the adults in the room.")
    keep_identity: float = opt("duration", "365d", help="Names, document numbers and document details are deleted "
                               "this long after checkout (the guest-record practice: 1 year; set longer where "
                               "provincial rules say so, e.g. \"1095d\").")
    keep_photo: float = opt("duration", "365d", help="The chip photo is deleted this long after checkout.")
    keep_contact: float = opt("duration", "365d", help="A minor's guardian name, contact and relationships are "
                              "deleted this long after checkout.")
    keep_room: float = opt("duration", "24h", help="The room number of a stay is deleted this long after checkout.")
    report_all: bool = opt("bool", True, help="Report every stay to the police system (false: only stays with an "
                           "overseas guest).")
    report_within: float = opt("duration", "24h", help="Deadline of the authority report of a stay with an overseas "
                               "guest (passport or HK/Macau/Taiwan document), from check-in.")
    report_alert_before: float = opt("duration", "2h", help="Raise an alert this long before an unsent report's "
                                     "deadline lapses.")
    adapter: str = opt("enum:file", "file", help="How reports reach the local police system: \"file\" drops one "
                       "file per report into drop_dir (0600).")
    drop_dir: str = opt("path", "", help="Directory the police system's uploader reads; default a sibling of the "
                        "data dir, DATA_DIR-authority (0700). Never inside the data dir.")
    ack_dir: str = opt("path", "", help="Where the uploader writes REPORT_ID.ack or REPORT_ID.err; default "
                       "DROP_DIR/ack.")
    auto_send: bool = opt("bool", True, help="Hand due reports to the adapter automatically (false: a manager "
                          "sends each from the reports page).")
    retry_every: float = opt("duration", "5m", help="How often a failed report is handed to the adapter again.")
    scan_ttl: float = opt("duration", "10m", help="How long a document read at the desk stays available to "
                          "pre-fill the form (in memory only; never stored unless saved).")


@dataclass(frozen=True)
class MembersConfig:
    """[members]: membership (会员): consent, tiers, points, coupons, feedback (docs/members.md)."""

    enabled: bool = opt("bool", True, help="Offer membership at the counter and on the diner pages.")
    tier_names: tuple[str, ...] = opt("list[str]", ("普通", "银卡", "金卡", "白金"),
                                      help="Tier names (Chinese), lowest first; 1-6 tiers.")
    tier_names_en: tuple[str, ...] = opt("list[str]", ("Regular", "Silver", "Gold", "Platinum"),
                                         help="Tier names (English), one per tier.")
    tier_basis: str = opt("enum:points|spend", "points", help="What qualifies for a tier: points earned or money "
                          "spent (yuan) within tier_period.")
    tier_thresholds: tuple[int, ...] = opt("list[int]", (0, 1000, 5000, 20000),
                                           help="Qualifying value per tier (points or yuan), ascending, first 0.")
    tier_discount_pct: tuple[int, ...] = opt("list[int]", (0, 2, 5, 8),
                                             help="Discount in percent of the bill's subtotal per tier (0-50).")
    tier_period: float = opt("duration", "365d", help="Rolling window over which points or spend qualify.")
    tier_hold: float = opt("duration", "365d", help="An upgrade holds at least this long (保级期) before a "
                           "downgrade is considered.")
    downgrade: str = opt("enum:none|one|recalc", "one", help="After the hold, a member who no longer qualifies: "
                         "none = keeps the tier, one = drops one tier per hold period, recalc = drops to the tier "
                         "qualified for.")
    tier_perk_cents: tuple[int, ...] = opt("list[int]", (0, 0, 2000, 5000),
                                           help="A coupon (cents off) issued once on reaching each tier (0: none).")
    points_per_yuan: int = opt("int", 1, help="Points earned per whole yuan paid (after discounts).")
    points_expiry: float = opt("duration", "365d", help="Each lot of earned points expires this long after it was "
                               "earned; lots are spent first-expiring-first.")
    redeem_points_per_yuan: int = opt("int", 100, help="Points worth one yuan off a bill.")
    redeem_max_pct: int = opt("int", 50, help="At most this share (percent) of a bill may be paid with points.")
    birthday_coupon_cents: int = opt("int", 3000, help="Birthday perk: cents off, usable in the birthday month, "
                                     "once a year (0: none). Needs the birthday-perks consent.")
    coupon_days: float = opt("duration", "90d", help="How long tier and campaign coupons stay valid.")
    active_window: float = opt("duration", "90d", help="A member with a paid visit within this is active "
                               "(P/members/summary).")
    complaint_alert_per_day: int = opt("int", 5, help="Complaints of one category in one business day that raise "
                                       "the complaint-surge alert (0: never).")
    feedback_text_upstream: bool = opt("bool", False, help="Send feedback and complaint text to HQ in "
                                       "P/members/summary (redacted: digit runs and ID-like strings masked). "
                                       "Off: only counts leave the store.")
    summary_every: float = opt("duration", "1h", help="How often P/members/summary is sent (one per window).")


@dataclass(frozen=True)
class StockConfig:
    """[stock]: ingredients and recipes; 估清 by stock (docs/store-health.md)."""

    low_portions: int = opt("int", 5, help="An item whose recipe can make this many portions or fewer (but more "
                            "than 0) is shown as low, with the count left, on the diner and staff pages.")


@dataclass(frozen=True)
class HealthConfig:
    """[health]: sales and complaint anomalies, and the daily report at close (docs/store-health.md)."""

    report_at: str = opt("clock", "23:30", help='Local time (store.timezone) of the daily report at close, e.g. '
                         '"22:30"; the report covers the business day that is ending. "" = no scheduled report.')
    report_printer: str = opt("str", "", help="Device id of the receipt printer for the report's summary "
                              '("" = the store\'s only ESC/POS printer, or none when there are several).')
    anomaly_every: float = opt("duration", "5m", help="How often sales and complaints are checked against "
                               "their baselines.")
    baseline_weeks: int = opt("int", 8, help="Weeks of history in the same-weekday x hour sales baseline.")
    sales_floor: int = opt("int", 10, help="Dishes per hour a slot's baseline median must reach to be checked "
                           "at all (the volume floor: a quiet afternoon is never an alarm).")
    sales_z: float = opt("float", 4.0, help="Robust z (median/MAD, with Poisson noise) beyond which an hour's "
                         "sales raise the sales-anomaly alert; it clears under half of it.")
    complaint_p: float = opt("float", 0.001, help="A day's complaints raise complaint-anomaly when a count this "
                             "high has at most this probability under the Poisson baseline.")


@dataclass(frozen=True)
class PrivacyConfig:
    """[privacy]: the daily retention run (docs/privacy.md)."""

    retention_at: str = opt("clock", "04:15", help='Local time (store.timezone) of the daily retention run, e.g. '
                            '"04:15"; it deletes what the data inventory says is past its rule and sends HQ a '
                            "signed receipt. It cannot be switched off.")


@dataclass(frozen=True)
class EquipmentConfig:
    """[equipment]: maintenance plans, end of life, meters and drift (docs/equipment.md)."""

    check_every: float = opt("duration", "1m", help="How often meters are updated from telemetry and maintenance, "
                             "end-of-life and drift alerts are evaluated.")
    due_soon_pct: float = opt("float", 10.0, help="A plan is due soon when any trigger is within this percent of "
                              "its interval from its due point (10: 9 days of a 90-day plan, 50 h of 500 h).")
    eol_warn: float = opt("duration", "90d", help="Raise end-of-life this long before a device's purchase date plus "
                          "its expected service life.")
    running_metric: str = opt("str", "running", help="Telemetry metric (boolean, or 0/1) saying a device runs; its "
                              "share of each summary window adds to the device's hours-running meter.")
    cycles_metric: str = opt("str", "cycles", help="Telemetry metric a device counts its cycles in (a counter; a "
                             "drop is taken as a reset); it drives the cycles meter.")
    drift_metrics: tuple[str, ...] = opt("list[str]", (), help="Globs of metric names watched for drift from the "
                                         "device's own weekly profile (median/MAD per weekday x hour), e.g. "
                                         "[\"temp_c\", \"power_w\"]. Empty: no drift alerts.")
    drift_z: float = opt("float", 6.0, help="Raise metric-drift when an hour's mean is this many robust deviations "
                         "(MAD x 1.4826) from the median of the same weekday and hour, two hours running.")
    drift_clear_z: float = opt("float", 3.0, help="Clear metric-drift when an hour is back within this many robust "
                               "deviations (hysteresis).")
    drift_weeks: int = opt("int", 3, help="Weeks of the same weekday and hour needed before drift is judged "
                           "(8 are kept).")


@dataclass(frozen=True)
class Config:
    """The whole validated configuration."""

    store: StoreConfig
    local_mqtt: LocalMqttConfig = field(default_factory=LocalMqttConfig)
    uplink: UplinkConfig = field(default_factory=UplinkConfig)
    web: WebConfig = field(default_factory=WebConfig)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    ordering: OrderingConfig = field(default_factory=OrderingConfig)
    backup: BackupConfig = field(default_factory=BackupConfig)
    keys: KeysConfig = field(default_factory=KeysConfig)
    guests: GuestsConfig = field(default_factory=GuestsConfig)
    members: MembersConfig = field(default_factory=MembersConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    stock: StockConfig = field(default_factory=StockConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    staff: StaffConfig = field(default_factory=StaffConfig)
    equipment: EquipmentConfig = field(default_factory=EquipmentConfig)
    wifi: WifiConfig = field(default_factory=WifiConfig)
    devices: tuple[DeviceConfig, ...] = ()
    source: str = ""

    @property
    def data_path(self) -> Path:
        """Return the data directory as a Path."""
        return Path(self.store.data_dir)

    @property
    def backup_path(self) -> Path:
        """Return where backups go: backup.dir, else DATA_DIR/backups."""
        return Path(self.backup.dir) if self.backup.dir else self.data_path / "backups"

    @property
    def keys_path(self) -> Path:
        """Return the keyring directory: keys.dir, else DATA_DIR-keys beside the data dir."""
        if self.keys.dir:
            return Path(self.keys.dir)
        data = Path(os.path.abspath(self.data_path))
        return data.with_name(f"{data.name}-keys")

    @property
    def authority_path(self) -> Path:
        """Return where authority reports are dropped: guests.drop_dir, else DATA_DIR-authority."""
        if self.guests.drop_dir:
            return Path(self.guests.drop_dir)
        data = Path(os.path.abspath(self.data_path))
        return data.with_name(f"{data.name}-authority")

    @property
    def prefix(self) -> str:
        """Return the upstream topic prefix ``P`` = {topic_prefix}/{store.id}."""
        return f"{self.uplink.topic_prefix.rstrip('/')}/{self.store.id}"


SECTIONS: dict[str, type] = {
    "store": StoreConfig,
    "local_mqtt": LocalMqttConfig,
    "uplink": UplinkConfig,
    "web": WebConfig,
    "telemetry": TelemetryConfig,
    "alerts": AlertsConfig,
    "ordering": OrderingConfig,
    "backup": BackupConfig,
    "keys": KeysConfig,
    "guests": GuestsConfig,
    "members": MembersConfig,
    "audit": AuditConfig,
    "privacy": PrivacyConfig,
    "stock": StockConfig,
    "health": HealthConfig,
    "staff": StaffConfig,
    "equipment": EquipmentConfig,
    "wifi": WifiConfig,
}

# Defaults that cannot live in the dataclass because they are duration/size strings.
def _field_key(f: dataclasses.Field) -> str:
    return "for" if f.name == "for_" else f.name


def _default_of(f: dataclasses.Field, dotted: str) -> Any:
    if f.default is not dataclasses.MISSING:
        default = f.default
    elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    else:
        raise ConfigError(f"{dotted} is required: {f.metadata.get('help', '')}", key=dotted)
    type_ = f.metadata["type"]
    if isinstance(default, str) and type_ in ("duration", "size"):
        return validate_value(type_, default, dotted)
    return default


def _build(cls: type, raw: Any, section: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"[{section}] must be a table, found {type_name(raw)}", key=section)
    fields = [f for f in dataclasses.fields(cls) if "type" in f.metadata]
    known = {_field_key(f): f for f in fields}
    for key in raw:
        if key not in known:
            raise unknown_key(section, key, list(known))
    values: dict[str, Any] = {}
    for key, f in known.items():
        dotted = f"{section}.{key}"
        type_ = f.metadata["type"]
        if key not in raw:
            values[f.name] = _default_of(f, dotted)
        elif type_ == "rules":
            values[f.name] = _build_rules(raw[key], dotted)
        elif type_ == "float" and raw[key] is None:
            values[f.name] = None
        else:
            values[f.name] = validate_value(type_, raw[key], dotted)
    return cls(**values)


def _build_rules(raw: Any, dotted: str) -> tuple[AlertRule, ...]:
    if not isinstance(raw, list):
        raise ConfigError(f"{dotted}: expected [[alerts.rules]] tables, found {type_name(raw)}", key=dotted)
    rules: list[AlertRule] = []
    for i, item in enumerate(raw):
        where = f"{dotted}[{i}]"
        rule = _build(AlertRule, item, where)
        if (rule.above is None) == (rule.below is None):
            raise ConfigError(f"{where}: give exactly one of `above` or `below` (rule \"{rule.name}\")",
                              key=f"{where}.above")
        if rule.above is not None and rule.clear_below is not None and rule.clear_below > rule.above:
            raise ConfigError(f"{where}.clear_below: must be at or below `above` ({rule.above}) for hysteresis, "
                              f"found {rule.clear_below}", key=f"{where}.clear_below")
        if rule.below is not None and rule.clear_above is not None and rule.clear_above < rule.below:
            raise ConfigError(f"{where}.clear_above: must be at or above `below` ({rule.below}), "
                              f"found {rule.clear_above}", key=f"{where}.clear_above")
        if any(r.name == rule.name for r in rules):
            raise ConfigError(f"{where}.name: rule name \"{rule.name}\" is used twice; names must be unique",
                              key=f"{where}.name")
        rules.append(rule)
    return tuple(rules)


def _build_devices(raw: Any) -> tuple[DeviceConfig, ...]:
    if not isinstance(raw, list):
        raise ConfigError(f"devices: expected [[devices]] tables, found {type_name(raw)}", key="devices")
    out: list[DeviceConfig] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        where = f"devices[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: expected a table", key=where)
        for required in ("id", "kind"):
            if required not in item:
                raise ConfigError(f"{where}.{required} is required (e.g. id = \"scanner-bar\", kind = \"scanner\")",
                                  key=f"{where}.{required}")
        dev_id = check_str(item["id"], f"{where}.id")
        if not DEVICE_ID_RE.match(dev_id):
            raise ConfigError(f"{where}.id: expected [A-Za-z0-9_.-]{{1,64}} (not \".\" or \"..\"), "
                              f"found \"{dev_id}\"", key=f"{where}.id")
        if dev_id in seen:
            raise ConfigError(f"{where}.id: device id \"{dev_id}\" is used twice", key=f"{where}.id")
        seen.add(dev_id)
        options = {k: v for k, v in item.items() if k not in ("id", "kind", "port", "options")}
        nested = item.get("options", {})
        if not isinstance(nested, dict):
            raise ConfigError(f"{where}.options: expected a table of family options", key=f"{where}.options")
        options.update(nested)  # [devices.options] tables and inline keys are the same thing
        out.append(DeviceConfig(
            id=dev_id,
            kind=check_str(item["kind"], f"{where}.kind"),
            port=check_str(item.get("port", ""), f"{where}.port"),
            options=MappingProxyType(options),
        ))
    # Each family types its options and checks what spans its devices (devices.registry).
    return registry.validate_devices([registry.validate_device(dev, f"devices[{i}]") for i, dev in enumerate(out)])


def parse(data: Mapping[str, Any], source: str = "") -> Config:
    """Validate an already-parsed TOML document into a Config."""
    known = [*SECTIONS, "devices"]
    for key in data:
        if key not in known:
            raise unknown_key("", key, known)
    if "store" not in data or "id" not in data.get("store", {}):
        raise ConfigError("store.id is required: add [store] id = \"sh-001\" (a-z, 0-9, '-')", key="store.id")
    sections = {name: _build(cls, data.get(name, {}), name) for name, cls in SECTIONS.items()}
    cfg = Config(**sections, devices=_build_devices(data.get("devices", [])), source=source)
    _cross_checks(cfg)
    return cfg


def _cross_checks(cfg: Config) -> None:
    import ipaddress

    for i, net in enumerate(cfg.ordering.nat_addresses):
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise ConfigError(f"ordering.nat_addresses[{i}]: expected an address or network such as "
                              f"\"192.168.8.1\" or \"10.0.0.0/24\", found \"{net}\"",
                              key="ordering.nat_addresses") from None
    if cfg.web.connections_per_address < 1:
        raise ConfigError("web.connections_per_address: must be at least 1 (a browser opens up to 6 per host)",
                          key="web.connections_per_address")
    for key in ("queue_per_client", "cart_lines_per_client"):
        if getattr(cfg.ordering, key) < 1:
            raise ConfigError(f"ordering.{key}: must be at least 1", key=f"ordering.{key}")
    up = cfg.uplink
    if bool(up.cert_file) != bool(up.key_file):
        raise ConfigError("uplink.cert_file and uplink.key_file go together for mutual TLS; set both or neither",
                          key="uplink.cert_file")
    keys, data = cfg.keys_path.absolute(), cfg.data_path.absolute()
    if keys == data or data in keys.parents:
        raise ConfigError(f"keys.dir: {keys} is inside store.data_dir ({data}); a copy of the data dir would "
                          "take the keys with it. Put it beside the data dir (the default, DATA_DIR-keys)",
                          key="keys.dir")
    drop, data = cfg.authority_path.absolute(), cfg.data_path.absolute()
    if drop == data or data in drop.parents:
        raise ConfigError(f"guests.drop_dir: {drop} is inside store.data_dir ({data}); backups of the data dir "
                          "would copy reports. Put it beside the data dir (the default, DATA_DIR-authority)",
                          key="guests.drop_dir")
    if not 1 <= cfg.guests.minor_age <= 21:
        raise ConfigError("guests.minor_age: must be between 1 and 21", key="guests.minor_age")
    if cfg.keys.rewrap_batch < 1:
        raise ConfigError("keys.rewrap_batch: must be at least 1", key="keys.rewrap_batch")
    if cfg.telemetry.summary_window < 1:
        raise ConfigError("telemetry.summary_window: must be at least \"1s\"", key="telemetry.summary_window")
    _check_members(cfg)
    eq = cfg.equipment
    if not 0 <= eq.due_soon_pct < 100:
        raise ConfigError(f"equipment.due_soon_pct: 0-99, found {eq.due_soon_pct}", key="equipment.due_soon_pct")
    if eq.check_every < 1:
        raise ConfigError('equipment.check_every: at least "1s"', key="equipment.check_every")
    if not 0 < eq.drift_clear_z < eq.drift_z:
        raise ConfigError(f"equipment.drift_clear_z: must be above 0 and below equipment.drift_z ({eq.drift_z}) "
                          f"for hysteresis, found {eq.drift_clear_z}", key="equipment.drift_clear_z")
    if not 2 <= eq.drift_weeks <= 8:
        raise ConfigError(f"equipment.drift_weeks: 2-8, found {eq.drift_weeks}", key="equipment.drift_weeks")
    _check_health(cfg)
    _check_wifi(cfg)
    lm = cfg.local_mqtt
    local_id = lm.client_id or f"storegw-{cfg.store.id}-local"
    if (lm.host, lm.port) == (up.host, up.port) and local_id == (up.client_id or f"storegw-{cfg.store.id}"):
        # One broker drops a session when another connects with its id: the two would take turns forever.
        raise ConfigError(f"local_mqtt.client_id: {local_id!r} is also the uplink's client id on the same broker "
                          f"{up.host}:{up.port}; the broker would keep disconnecting one for the other. "
                          "Give them different ids (or leave both unset)", key="local_mqtt.client_id")


def _check_health(cfg: Config) -> None:
    h = cfg.health
    if not 3 <= h.baseline_weeks <= 52:
        raise ConfigError(f"health.baseline_weeks: expected 3-52 weeks, found {h.baseline_weeks}",
                          key="health.baseline_weeks")
    if not 1.0 <= h.sales_z <= 10.0:
        raise ConfigError(f"health.sales_z: expected 1-10 (4 is a good start), found {h.sales_z}", key="health.sales_z")
    if not 0.0 < h.complaint_p < 0.5:
        raise ConfigError(f"health.complaint_p: expected a probability between 0 and 0.5 (e.g. 0.001), "
                          f"found {h.complaint_p}", key="health.complaint_p")
    if h.sales_floor < 1:
        raise ConfigError("health.sales_floor: expected at least 1 dish an hour", key="health.sales_floor")
    if cfg.stock.low_portions < 0:
        raise ConfigError("stock.low_portions: expected 0 or more", key="stock.low_portions")


def _check_wifi(cfg: Config) -> None:
    import ipaddress

    w = cfg.wifi
    try:
        iface = ipaddress.ip_interface(w.address)
    except ValueError:
        raise ConfigError(f"wifi.address: expected the gateway's address with a prefix such as \"10.42.0.1/24\", "
                          f"found \"{w.address}\"", key="wifi.address") from None
    if iface.version != 4 or iface.network.prefixlen > 29 or iface.ip == iface.network.network_address:
        raise ConfigError(f"wifi.address: an IPv4 host address in a /29 or larger subnet, e.g. \"10.42.0.1/24\"; "
                          f"found \"{w.address}\"", key="wifi.address")
    for i, net in enumerate(w.staff_networks):
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise ConfigError(f"wifi.staff_networks[{i}]: expected a subnet such as \"192.168.10.0/24\", "
                              f"found \"{net}\"", key="wifi.staff_networks") from None
    if w.uplink and w.uplink == w.interface:
        raise ConfigError(f"wifi.uplink: \"{w.uplink}\" is also wifi.interface; the diners' AP needs its own "
                          "interface (use Ethernet or a second Wi-Fi adapter for the uplink)", key="wifi.uplink")
    if not 1 <= w.channel <= 14:
        raise ConfigError("wifi.channel: a 2.4 GHz channel, 1-14", key="wifi.channel")
    if len(w.ssid.encode()) > 32:
        raise ConfigError("wifi.ssid: at most 32 bytes (UTF-8)", key="wifi.ssid")


def _check_members(cfg: Config) -> None:
    m = cfg.members
    n = len(m.tier_names)
    if not 1 <= n <= 6:
        raise ConfigError(f"members.tier_names: 1-6 tiers, found {n}", key="members.tier_names")
    for key in ("tier_names_en", "tier_thresholds", "tier_discount_pct", "tier_perk_cents"):
        if len(getattr(m, key)) != n:
            raise ConfigError(f"members.{key}: one value per tier ({n}, as members.tier_names), "
                              f"found {len(getattr(m, key))}", key=f"members.{key}")
    t = m.tier_thresholds
    if t[0] != 0 or any(b <= a for a, b in zip(t, t[1:], strict=False)):
        raise ConfigError(f"members.tier_thresholds: must start at 0 and rise, found {list(t)}",
                          key="members.tier_thresholds")
    if any(not 0 <= p <= 50 for p in m.tier_discount_pct):
        raise ConfigError("members.tier_discount_pct: each 0-50", key="members.tier_discount_pct")
    for key in ("points_per_yuan", "redeem_points_per_yuan"):
        if getattr(m, key) < 1:
            raise ConfigError(f"members.{key}: must be at least 1", key=f"members.{key}")
    if not 0 <= m.redeem_max_pct <= 100:
        raise ConfigError("members.redeem_max_pct: 0-100", key="members.redeem_max_pct")
    if m.summary_every < 60:
        raise ConfigError('members.summary_every: at least "1m"', key="members.summary_every")


def load(path: str | Path) -> Config:
    """Read and validate a TOML config file; raise ConfigError naming the problem and the fix."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {p} does not exist; create it from docs/configuration.md "
                          f"or run `storegw demo` to see one") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read config file {p}: {err}") from err
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{p}: not valid TOML: {err}") from err
    return parse(data, source=str(p))


def iter_keys() -> list[tuple[str, dataclasses.Field]]:
    """List every documented key as (dotted name, field), for `config show` and the docs test."""
    out: list[tuple[str, dataclasses.Field]] = []
    for name, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            if "type" not in f.metadata:
                continue
            out.append((f"{name}.{_field_key(f)}", f))
    for f in dataclasses.fields(AlertRule):
        out.append((f"alerts.rules.{_field_key(f)}", f))
    for f in dataclasses.fields(DeviceConfig):
        if f.name != "options":
            out.append((f"devices.{f.name}", f))
    return out


def to_display(cfg: Config) -> dict[str, Any]:
    """Return the config as plain data with secrets masked (for `storegw config show`)."""
    def section(obj: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(obj):
            if "type" not in f.metadata:
                continue
            value = getattr(obj, f.name)
            if f.metadata.get("secret") and value:
                value = "***"
            elif isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0]):
                value = [section(v) for v in value]
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Mapping):
                value = {k: ("***" if "password" in k or "secret" in k or k.endswith("key") else v)
                         for k, v in value.items()}
            out[_field_key(f)] = value
        return out

    data = {name: section(getattr(cfg, name)) for name in SECTIONS}
    data["devices"] = [dict(section(d), **dict(d.options)) for d in cfg.devices]
    return data
