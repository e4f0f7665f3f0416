"""`storegw doctor`: what is wrong with this board's storegw, and how to fix it.

Read-only checks, each ending in ``ok``, ``warn`` or ``FAIL`` with the fix: the configuration, the
data directory and its disk, the database key and the database, the local broker (connect and
subscribe with the gateway's credentials), HQ (name, TCP, TLS, MQTT login), every configured
device's port, the newest backup, the clock, whether systemd starts storegw at boot and whether
it is running. It never changes anything, and it
connects with its own client ids so a running gateway's sessions are left alone.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from gateway.clikit import CONFIG, get_health, handle_errors, health_url, load_config
from gateway.config import Config
from provisioning import checks as provisioned
from provisioning.credentials import borrowed
from provisioning.findings import FAIL, OK, WARN, Finding

MIN_FREE = 200 * 1024 * 1024
SYSTEMD_RUN = Path("/run/systemd/system")  # present when systemd is the init system


def check_data_dir(cfg: Config) -> list[Finding]:
    """The data directory: present, private, on a disk with room for the outbox budget."""
    d = cfg.data_path
    if not d.exists():
        parent = next((p for p in d.parents if p.exists()), Path("/"))
        if not os.access(parent, os.W_OK):
            return [Finding("data dir", FAIL, f"{d} does not exist and {parent} is not writable",
                            f"create it: install -d -m 0700 -o storegw {d}")]
        return [Finding("data dir", OK, f"{d} will be created on first start")]
    out = []
    mode = stat.S_IMODE(d.stat().st_mode)
    if mode & 0o077:
        out.append(Finding("data dir", WARN, f"{d} is readable by others (mode {mode:o})", f"chmod 700 {d}"))
    if not os.access(d, os.W_OK):
        out.append(Finding("data dir", FAIL, f"{d} is not writable by this user",
                           f"chown -R storegw: {d}, or run doctor as the storegw user"))
    free = shutil.disk_usage(d).free
    need = cfg.uplink.budget + MIN_FREE
    if free < MIN_FREE:
        out.append(Finding("disk", FAIL, f"{free // 2**20} MiB free on {d}", "free disk space (journal, old backups)"))
    elif free < need:
        out.append(Finding("disk", WARN, f"{free // 2**20} MiB free, less than the outbox budget "
                           f"({cfg.uplink.budget // 2**20} MiB) plus 200 MiB",
                           "free disk space or lower uplink.budget"))
    else:
        out.append(Finding("disk", OK, f"{free // 2**20} MiB free"))
    return out or [Finding("data dir", OK, str(d))]


def check_keys(cfg: Config) -> list[Finding]:
    """The keyring: its KEK's source (a plain key file is a warning with the way out), that it can be
    read and unwrapped, private files, old key sources no longer used, fields waiting for the re-wrap."""
    from gateway.core.errors import GatewayError
    from gateway.privacy.keys import KEK_FILE, KEYRING_NAME, KIND_FILE, Keyring, kek_sources, legacy_db_key
    from gateway.privacy.service import kek_warning, status

    kd = cfg.keys_path
    how = "docs/operations.md, \"Keys\""
    if not (kd / KEYRING_NAME).exists():
        sources = kek_sources(kd) if kd.exists() else []
        if sources and sources[0].kind != KIND_FILE:
            return [Finding("keys", OK, f"no keyring yet ({kd}); storegw makes one on first start, sealed with "
                            f"the {sources[0].source}")]
        return [Finding("keys", WARN, f"no keyring yet ({kd}); on first start its key-encryption key will be a "
                        f"plain key file {kd / KEK_FILE} (no systemd credential kek, no board secret)",
                        f"provide the systemd credential kek before the first start ({how})")]
    out: list[Finding] = []
    for path in (kd, kd / KEYRING_NAME, kd / KEK_FILE):
        if path.exists() and stat.S_IMODE(path.stat().st_mode) & 0o077:
            mode = stat.S_IMODE(path.stat().st_mode)
            out.append(Finding("keys", FAIL, f"{path} is readable by others (mode {mode:o})",
                               f"chmod {'700' if path.is_dir() else '600'} {path}"))
    try:
        ring = Keyring.open(kd, create=False)
    except GatewayError as err:
        return [*out, Finding("keys", FAIL, str(err), how)]
    if ring.kek.kind == KIND_FILE or ring.better_kek is not None:
        out.append(Finding("keys", WARN, f"keyring {ring.path} sealed with the {ring.kek.source}", kek_warning(ring)))
    else:
        out.append(Finding("keys", OK, f"keyring {ring.path} sealed with the {ring.kek.source}"))
        if (kd / KEK_FILE).exists():
            out.append(Finding("keys", WARN, f"{kd / KEK_FILE} is still on disk although the keyring is sealed with "
                               f"the {ring.kek.source}", f"shred -u {kd / KEK_FILE}"))
    if ring.db_key() is not None:
        legacy = legacy_db_key(cfg.data_path, cfg.store.key_file)
        if legacy is not None:
            out.append(Finding("keys", WARN, f"the database key is in the keyring; the old {legacy.source} is no "
                               "longer used", "remove it (the keyring keeps it, retired, for older backups)"))
    try:
        doc = status(cfg)
    except GatewayError as err:
        return [*out, Finding("keys", FAIL, f"cannot read the key status: {err}", how)]
    versions = doc["fields"]["versions"]
    primary = next((v["version"] for v in versions if v["status"] == "primary"), None)
    waiting = doc["fields"]["pending_rewrap"]
    if doc["database"].get("error"):
        out.append(Finding("keys", FAIL, doc["database"]["error"], how))
    if waiting:
        out.append(Finding("keys", WARN, f"{waiting} field(s) still under an older field key (primary is version "
                           f"{primary})", "the running gateway re-wraps them in the background; or stop it and "
                           "run `storegw keys rotate --config CFG --fields`"))
    else:
        out.append(Finding("keys", OK, f"field key version {primary} is primary"
                           + ("" if waiting is None else "; no field waits for the re-wrap")))
    return out


def check_database(cfg: Config) -> list[Finding]:
    """The key (where it comes from), and that it opens an undamaged, migrated database."""
    from gateway import domains
    from gateway.core.errors import GatewayError, StoreError
    from gateway.privacy.keys import KEYRING_NAME, current_db_key
    from gateway.store import migrations
    from gateway.store.db import DB_NAME, connect, key_matches

    d = cfg.data_path
    db = d / DB_NAME
    out = [Finding("database", WARN, f"damaged database moved aside earlier: {p.name}",
                   "look at it with support, then delete it")
           for p in sorted(d.glob(f"{DB_NAME}.corrupt-*"))] if d.exists() else []
    try:
        key = current_db_key(d, cfg.keys_path, cfg.store.key_file)
    except StoreError:
        if db.exists():
            return [*out, Finding("db key", FAIL, f"{db} exists but no key was found",
                                  f"restore the keys directory {cfg.keys_path} (with its KEK), or the old key: "
                                  f"the systemd credential db-key, $STOREGW_DB_KEY or "
                                  f"{cfg.store.key_file or d / 'db.key'}")]
        return [*out, Finding("db key", OK, f"none yet: storegw makes one in the keyring "
                              f"{cfg.keys_path / KEYRING_NAME} on first start")]
    except GatewayError as err:  # the keyring cannot be read: check_keys says why
        return [*out, Finding("db key", FAIL, f"the keyring does not give the database key: {err}",
                              "see the keys finding above")]
    out.append(Finding("db key", OK, f"from the {key.source}"))
    if key.source.startswith("key file"):
        path = Path(key.source.removeprefix("key file "))
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            out.append(Finding("db key", FAIL, f"{path} is readable by others (mode {mode:o})", f"chmod 600 {path}"))
    if not db.exists():
        return [*out, Finding("database", OK, "none yet: created on first start")]
    if key_matches(db, key) is False:
        return [*out, Finding("database", FAIL, f"the key ({key.source}) does not open {db}",
                              "use the key this database was made with; storegw will not start with this one")]
    try:
        conn = connect(db, key, readonly=True)
        try:
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
            todo = migrations.pending(conn, domains.SCHEMAS)
        finally:
            conn.close()
    except Exception as err:  # noqa: BLE001 - any failure to read is the finding
        return [*out, Finding("database", FAIL, f"cannot read {db}: {err}",
                              "storegw moves a damaged database aside and starts fresh; the outbox in it is lost")]
    if check != "ok":
        return [*out, Finding("database", FAIL, f"{db} is damaged ({check})",
                              "storegw moves it aside on start and begins a fresh one")]
    if todo:
        out.append(Finding("database", OK, f"readable; {len(todo)} migration(s) will run on start: {', '.join(todo)}"))
    else:
        out.append(Finding("database", OK, "readable, undamaged, up to date"))
    return out


def _mqtt_try(host: str, port: int, client_id: str, setup: Callable[[Any], None], timeout: float,
              subscribe: list[tuple[str, int]] | None = None) -> tuple[str, str]:
    """Connect (and subscribe); return ("ok"|error kind, text)."""
    from gateway.spine.mqtt import describe_rc, new_client

    client = new_client(client_id, clean=True)
    setup(client)
    done = threading.Event()
    result: list[tuple[str, str]] = []

    def on_connect(c: Any, u: Any, flags: Any, rc: Any, props: Any = None) -> None:
        if getattr(rc, "is_failure", False):
            result.append(("refused", describe_rc(rc)))
            done.set()
        elif subscribe:
            c.subscribe(subscribe)
        else:
            result.append((OK, "connected"))
            done.set()

    def on_subscribe(c: Any, u: Any, mid: Any, codes: Any, props: Any = None) -> None:
        bad = [str(rc) for rc in codes if getattr(rc, "is_failure", False)]
        result.append(("denied", ", ".join(bad)) if bad else (OK, "connected and subscribed"))
        done.set()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    try:
        client.connect(host, port, keepalive=10)
    except ssl.SSLCertVerificationError as err:
        return "tls", err.verify_message or str(err)
    except ssl.SSLError as err:
        return "tls", str(err)
    except OSError as err:
        return "tcp", err.strerror or str(err)
    client.loop_start()
    try:
        if not done.wait(timeout):
            return "timeout", f"no answer within {timeout:g}s"
        return result[0]
    finally:
        client.disconnect()
        client.loop_stop()


def check_local_broker(cfg: Config, timeout: float) -> list[Finding]:
    """Connect and subscribe as the gateway does, so the ACL is checked too; when the gateway is running,
    ask it instead.

    The shipped Mosquitto configuration ties a client's id to its user name (``use_username_as_clientid``),
    so signing in as the gateway's user while it runs would take over its connection, and a clean
    session would discard the messages queued for it.
    """
    from gateway.spine.ingest import TOPICS
    from gateway.spine.mqtt import configure_auth

    lm = cfg.local_mqtt
    where = f"{lm.host}:{lm.port}"
    if lm.embedded:
        return [Finding("local broker", OK, f"built-in broker on {where}, started by storegw (development only)")]
    try:
        running = get_health(health_url(cfg), timeout=min(timeout, 3.0))
    except (OSError, ValueError):
        running = None
    if isinstance(running, dict) and isinstance(running.get("local_mqtt"), dict):
        if running["local_mqtt"].get("connected"):
            return [Finding("local broker", OK, f"{where}: the running gateway is connected and subscribed")]
        return [Finding("local broker", FAIL, f"{where}: the running gateway is not connected",
                        "journalctl -u storegw -n 50 names the broker's answer; check Mosquitto "
                        "(systemctl status mosquitto), local_mqtt.username and local_mqtt.password_file")]
    try:
        kind, text = _mqtt_try(lm.host, lm.port, f"storegw-doctor-{os.getpid()}",
                               lambda c: configure_auth(c, tls=False, username=lm.username,
                                                        password_file=lm.password_file, section="local_mqtt"),
                               timeout, subscribe=TOPICS)
    except Exception as err:  # noqa: BLE001 - e.g. an unreadable password file
        return [Finding("local broker", FAIL, str(err), "see local_mqtt in docs/configuration.md")]
    fixes = {
        "tcp": "start Mosquitto: systemctl enable --now mosquitto (docs/operations.md), or fix local_mqtt.host/port",
        "refused": "check local_mqtt.username and the password in local_mqtt.password_file against "
                   f"{lm.broker_passwd_file}: storegw provision mosquitto --config CFG re-hashes it",
        "denied": "the ACL must let the gateway's user read devices/+/telemetry and devices/+/status "
                  "(storegw provision mosquitto --config CFG writes it)",
        "timeout": "is something else listening on that port?",
    }
    if kind == OK:
        return [Finding("local broker", OK, f"{where}: {text}")]
    return [Finding("local broker", FAIL, f"{where}: {text}", fixes.get(kind, ""))]


def check_hq(cfg: Config, timeout: float) -> list[Finding]:
    """Name, TCP, TLS and MQTT login at HQ, with the gateway's credentials and a doctor client id."""
    from gateway.spine.mqtt import configure_auth

    up = cfg.uplink
    where = f"{up.host}:{up.port}"
    if not up.enabled:
        return [Finding("HQ", WARN, "uplink.enabled = false: everything stays in the outbox",
                        "set uplink.enabled = true once HQ is ready")]
    try:
        socket.getaddrinfo(up.host, up.port)
    except OSError as err:
        return [Finding("HQ", FAIL, f"cannot resolve {up.host}: {err}",
                        "check uplink.host and the board's DNS (offline stores queue until HQ is back)")]
    try:
        kind, text = _mqtt_try(up.host, up.port, f"storegw-{cfg.store.id}-doctor",
                               lambda c: configure_auth(c, tls=up.tls, ca_file=up.ca_file, cert_file=up.cert_file,
                                                        key_file=up.key_file, username=up.username,
                                                        password_file=up.password_file),
                               timeout)
    except Exception as err:  # noqa: BLE001 - unreadable certificate or password file
        return [Finding("HQ", FAIL, str(err), "see uplink in docs/configuration.md")]
    fixes = {
        "tcp": "HQ unreachable from here: check uplink.host/port and the store's firewall; meanwhile the "
               "outbox keeps everything",
        "tls": "check uplink.ca_file (HQ's CA), the board's clock, and uplink.cert_file/key_file for mutual TLS",
        "refused": "check uplink.username and uplink.password_file (or the client certificate) with HQ",
        "timeout": "is it an MQTT broker? with TLS? (uplink.tls)",
    }
    if kind == OK:
        return [Finding("HQ", OK, f"{where}: {text}{' (TLS)' if up.tls else ''}")]
    level = WARN if kind == "tcp" else FAIL
    return [Finding("HQ", level, f"{where}: {text}", fixes.get(kind, ""))]


def check_devices(cfg: Config, timeout: float) -> list[Finding]:
    """Each device's port: the serial device exists and is ours to open; network printers answer."""
    out = []
    for dev in cfg.devices:
        name = f"device {dev.id}"
        port = dev.port
        if port.startswith(("tcp://", "socket://")):
            host, _, p = port.split("://", 1)[1].partition(":")
            try:
                socket.create_connection((host, int(p or 9100)), timeout=timeout).close()
                out.append(Finding(name, OK, f"{port} answers"))
            except OSError as err:
                out.append(Finding(name, WARN, f"{port}: {err.strerror or err}",
                                   "is it switched on and on the store network? (its alert clears when it is)"))
        elif port.startswith("/") or port.startswith("file:///"):
            path = Path(port.removeprefix("file://"))
            if not path.exists():
                out.append(Finding(name, FAIL, f"{path} does not exist",
                                   "plugged in? `ls -l /dev/serial/by-id/` shows the stable names to use"))
            elif not os.access(path, os.R_OK | os.W_OK):
                out.append(Finding(name, FAIL, f"{path}: no permission for this user",
                                   "the storegw user needs the dialout group (the unit has SupplementaryGroups="
                                   "dialout); run doctor as that user to be sure"))
            else:
                out.append(Finding(name, OK, f"{path} ({dev.kind})"))
        elif port:
            out.append(Finding(name, OK, f"{port} ({dev.kind}; not checked)"))
        else:
            out.append(Finding(name, OK, f"{dev.kind}; no port"))
    return out


def check_backups(cfg: Config) -> list[Finding]:
    """The newest backup in backup.dir (or DATA_DIR/backups) and its age."""
    from gateway.store.backup import list_backups

    dest = cfg.backup_path
    newest = list_backups(dest)[-1:] if dest.is_dir() else []
    how = f'[backup] at = "{cfg.backup.at}"' if cfg.backup.at else "no [backup] at"
    if not newest:
        return [Finding("backups", WARN, f"none in {dest} ({how})",
                        'set [backup] at = "03:30" (another disk in backup.dir is better) or run storegw backup '
                        "from a timer; keep the key elsewhere too")]
    age_h = (time.time() - newest[0].stat().st_mtime) / 3600
    if cfg.backup.at and age_h > 48:
        return [Finding("backups", WARN, f"the newest, {newest[0].name}, is {age_h:.0f} h old although {how}",
                        "look for backup-failed in the journal (journalctl -u storegw | grep -i backup)")]
    return [Finding("backups", OK, f"newest {newest[0].name}, {age_h:.1f} h old ({how})")]


def check_clock() -> list[Finding]:
    """The clock: summaries and alerts carry times, TLS needs it right."""
    year = time.gmtime().tm_year
    if year < 2024:
        return [Finding("clock", FAIL, f"the clock says {year}", "enable time sync: timedatectl set-ntp true")]
    if shutil.which("timedatectl"):
        res = subprocess.run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"], capture_output=True,
                             text=True, timeout=5, check=False)
        if res.returncode == 0 and res.stdout.strip() == "no":
            return [Finding("clock", WARN, "not synchronised (NTP)", "timedatectl set-ntp true; check the network")]
    return [Finding("clock", OK, time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))]


def check_staff(cfg: Config) -> list[Finding]:
    """Staff sign-in: managers, technicians and auditors still on a PIN; whether TOTP can be checked now."""
    from gateway import domains
    from gateway.clikit import db_key
    from gateway.core.errors import GatewayError
    from gateway.staff import accounts, clock
    from gateway.store import migrations
    from gateway.store.db import DB_NAME, connect, key_matches

    db = cfg.data_path / DB_NAME
    if not db.exists():
        return []
    try:
        key = db_key(cfg)
    except GatewayError:
        return []  # the database check says what is wrong
    if key_matches(db, key) is False:
        return []
    conn = connect(db, key, readonly=True)
    try:
        if "0400_staff_totp_unmask" in migrations.pending(conn, domains.SCHEMAS):
            return [Finding("staff sign-in", WARN, "managers, technicians and auditors will need a password and an "
                            "authenticator app after the next start (until then: floor work only)",
                            "storegw staff add NAME --role manager --config CFG for each (docs/operations.md)")]
        out = []
        pending = accounts.pending_enrolment(conn)
        if pending:
            names = ", ".join(f"{n} ({r})" for n, r in pending)
            out.append(Finding("staff sign-in", WARN, f"not enrolled for password + TOTP, floor work only: {names}",
                               "storegw staff add NAME --role ROLE --config CFG, or Reset sign-in on the Staff page"))
        state = clock.assess(conn, clock.ClockPolicy(sync_files=tuple(cfg.staff.clock_sync_files)))
    finally:
        conn.close()
    if state.trusted:
        out.append(Finding("staff clock", OK, f"TOTP sign-in possible: {state.why}"))
    else:
        out.append(Finding("staff clock", WARN, f"manager sign-in (TOTP) refused: {state.why}",
                           "enable time sync (timedatectl set-ntp true), or set the time and run "
                           "storegw staff trust-clock --config CFG"))
    return out


def check_unit() -> list[Finding]:
    """Whether systemd starts storegw at boot (after a power cut nobody is there to start it)."""
    if not shutil.which("systemctl") or not SYSTEMD_RUN.is_dir():
        return []  # not a systemd system (a container, a dev machine)
    res = subprocess.run(["systemctl", "is-enabled", "storegw"], capture_output=True, text=True, timeout=10,
                         check=False)
    state = res.stdout.strip() or "not installed"
    if state == "enabled":
        return [Finding("boot", OK, "storegw.service is enabled")]
    return [Finding("boot", FAIL, f"storegw.service is {state}: it will not start after a reboot or power cut",
                    "storegw install --config CFG (or, with the unit in place: systemctl enable --now storegw)")]


def check_running(cfg: Config) -> list[Finding]:
    """Whether storegw answers on web.listen, and what its health says."""
    url = health_url(cfg)
    try:
        doc = get_health(url, timeout=3)
    except (OSError, ValueError):
        return [Finding("service", WARN, f"storegw is not answering at {url}",
                        "systemctl status storegw; journalctl -u storegw -n 50")]
    level = FAIL if doc.get("status") == "failing" else OK
    return [Finding("service", level, f"running, status {doc.get('status')} (storegw status for more)",
                    "journalctl -u storegw -n 50" if level == FAIL else "")]


def run_checks(cfg: Config, timeout: float = 5.0) -> list[Finding]:
    """Run every check; a check that crashes is itself a finding."""
    checks: list[tuple[str, Callable[[], list[Finding]]]] = [
        ("data dir", lambda: check_data_dir(cfg)),
        ("keys", lambda: check_keys(cfg)),
        ("database", lambda: check_database(cfg)),
        ("local broker", lambda: check_local_broker(cfg, timeout)),
        ("HQ", lambda: check_hq(cfg, timeout)),
        ("devices", lambda: check_devices(cfg, timeout)),
        ("backups", lambda: check_backups(cfg)),
        ("clock", check_clock),
        ("staff sign-in", lambda: check_staff(cfg)),
        ("boot", check_unit),
        *provisioned.checks(cfg, timeout),  # certificate, broker ACL, unit hardening, clock skew
        ("service", lambda: check_running(cfg)),
    ]
    out: list[Finding] = []
    for name, fn in checks:
        try:
            out += fn()
        except Exception as err:  # noqa: BLE001 - report and go on with the other checks
            out.append(Finding(name, FAIL, f"the check itself failed: {err!r}", "report this with the output"))
    return out


@click.command()
@CONFIG
@click.option("--timeout", type=float, default=5.0, show_default=True, help="Seconds to wait for each broker.")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@handle_errors
def doctor(config_path: str, timeout: float, as_json: bool) -> None:
    """Check this board's storegw and say what is wrong and how to fix it.

    Checks the config, data directory and disk, the keyring (where its key-encryption key comes
    from), the database key and database, local broker (login and
    subscription), HQ (DNS, TCP, TLS, login), each device's port, the newest backup, the clock,
    the systemd unit and the running service. Changes
    nothing. Exit code 0 when nothing failed (warnings allowed), 1 when something did, 2 when the
    config itself is invalid.

    \b
    Example:
      sudo -u storegw storegw doctor --config /etc/storegw/storegw.toml
    """
    cfg = load_config(config_path)
    with borrowed():  # as root: the credentials the installed unit gives the service
        findings = run_checks(cfg, timeout)
    failed = [f for f in findings if f.level == FAIL]
    if as_json:
        click.echo(json.dumps({"store": cfg.store.id, "ok": not failed, "findings": [asdict(f) for f in findings]},
                              ensure_ascii=False, indent=2))
    else:
        click.echo(f"storegw doctor: store {cfg.store.id}, config {config_path}")
        for f in findings:
            click.echo(f"  {f.level:<5} {f.check:<14} {f.text}")
            if f.fix and f.level != OK:
                click.echo(f"  {'':<5} {'':<14} fix: {f.fix}")
        warned = sum(1 for f in findings if f.level == WARN)
        click.echo(f"{len(failed)} problem(s), {warned} warning(s)." if failed or warned else "All good.")
    if failed:
        raise SystemExit(1)
