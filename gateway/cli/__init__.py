"""The `storegw` command: a thin click layer over the library.

Each command parses, calls one function, and turns a GatewayError into one line on stderr and
an exit code (0 ok, 1 failure, 2 invalid config or usage). Tracebacks only with --verbose.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from typing import Any

import click

from devices.cli import simulate
from gateway import __version__
from gateway.cli import audit, devices, equipment, hq, members, ordering, printing, privacy, provision, stock
from gateway.cli.keys import keys_group
from gateway.clikit import CONFIG, get_health, handle_errors, health_url, load_config
from gateway.core import pii
from gateway.core.errors import GatewayError
from provisioning.doctor import doctor


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("apscheduler", "waitress", "amqtt", "transitions"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # pymodbus logs an ERROR per timeout; the Modbus driver logs each state change once itself
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    # Every handler redacts ID numbers, mobiles, card numbers and MRZ lines (docs/privacy.md).
    pii.install_log_filter()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="storegw")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging and tracebacks.")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """storegw: the store gateway.

    \b
    Examples:
      storegw demo                          # try everything on this machine
      storegw config check /etc/storegw/storegw.toml
      storegw run --config /etc/storegw/storegw.toml
      storegw status --config /etc/storegw/storegw.toml
    """
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose
    os.umask(0o077)  # whatever any command creates (database, WAL, keys, backups, exports) is this user's only
    _setup_logging(verbose)


@main.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="The TOML configuration file.")
@handle_errors
def run(config_path: str) -> None:
    """Run the gateway in the foreground (what systemd starts).

    \b
    Example:
      storegw run --config /etc/storegw/storegw.toml
    """
    from gateway import memory

    memory.tune_malloc()  # before the gateway's modules are imported (docs/architecture.md, Memory)
    memory.install_tracemalloc()  # only with $STOREGW_TRACEMALLOC (docs/operations.md, benchmarks)
    from gateway.app import build

    cfg = load_config(config_path)
    gw = build(cfg)
    stop = threading.Event()

    def _signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _signal)
    signal.signal(signal.SIGINT, _signal)
    try:
        gw.start()
        while not stop.wait(0.5):  # a timed wait: the main thread then runs the handler whichever thread got the signal
            pass
    finally:
        logging.getLogger(__name__).info("Stopping")
        gw.stop()


@main.command()
@click.option("--duration", type=float, default=0, help="Stop after this many seconds (0: until Ctrl-C).")
@click.option("--web-port", type=int, default=0, help="Port of the local web pages (0: a free one).")
@click.option("--no-status", is_flag=True, help="Do not print the live status line.")
@handle_errors
def demo(duration: float, web_port: int, no_status: bool) -> None:
    """Run a complete store on this machine: built-in broker, simulated equipment and devices.

    A fresh temporary data directory, a built-in MQTT broker (the uplink points at it too),
    simulated fridges, a freezer and a fryer publishing once a second, one fridge drifting into a
    fault so an alert is raised and later cleared, and a live status line until Ctrl-C.

    \b
    Example:
      storegw demo
      storegw demo --duration 60 --web-port 8080
    """
    from gateway import memory

    memory.tune_malloc()
    from gateway.demo import run_demo

    run_demo(duration=duration, web_port=web_port, status=not no_status)


@main.group()
def config() -> None:
    """Check or show a configuration file."""


@config.command("check")
@click.argument("path", type=click.Path(dir_okay=False))
@handle_errors
def config_check(path: str) -> None:
    """Validate a config file; exit 2 with the key, the expectation and the fix if invalid.

    \b
    Example:
      storegw config check /etc/storegw/storegw.toml
    """
    cfg = load_config(path)
    click.echo(f"{path}: ok (store {cfg.store.id}, {len(cfg.devices)} devices, "
               f"{len(cfg.alerts.rules)} alert rules)")


@config.command("show")
@click.argument("path", type=click.Path(dir_okay=False))
@handle_errors
def config_show(path: str) -> None:
    """Print the effective config (defaults filled in, secrets masked) as JSON.

    \b
    Example:
      storegw config show /etc/storegw/storegw.toml
    """
    from gateway.config import to_display

    click.echo(json.dumps(to_display(load_config(path)), indent=2, ensure_ascii=False))


def _health_url(config_path: str | None, url: str | None) -> str:
    if url:
        return url.rstrip("/") + "/api/v1/health"
    if not config_path:
        raise GatewayError("give --config FILE (to find [web] listen) or --url http://HOST:PORT")
    return health_url(load_config(config_path))


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="The gateway's config file.")
@click.option("--url", help="Base URL of the gateway instead of --config, e.g. http://127.0.0.1:8080.")
@click.option("--json", "as_json", is_flag=True, help="Print the raw health document.")
@handle_errors
def status(config_path: str | None, url: str | None, as_json: bool) -> None:
    """Show the running gateway's health (db, uplink, outbox, ingest, devices).

    \b
    Example:
      storegw status --config /etc/storegw/storegw.toml
    """
    target = _health_url(config_path, url)
    try:
        doc = get_health(target)
    except OSError as err:
        raise GatewayError(f"the gateway is not answering at {target}: {getattr(err, 'reason', err)}; "
                           f"is `storegw run` running? (systemctl status storegw)") from err
    if as_json:
        click.echo(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        click.echo(format_status(doc))
    if doc.get("status") == "failing":
        sys.exit(1)


def _answering(target: str) -> bool:
    try:
        get_health(target, timeout=3)
    except ValueError:
        return True  # something answers there: take it for a running gateway
    except OSError:
        return False
    return True


@main.command()
@CONFIG
@click.option("--to", "dest", type=click.Path(file_okay=False), help="Directory for the backup "
              "(default: backup.dir, else DATA_DIR/backups; better: another disk).")
@click.option("--keep", type=int, help="Backups kept in that directory, 0 = all (default: backup.keep, 7).")
@handle_errors
def backup(config_path: str, dest: str | None, keep: int | None) -> None:
    """Write a consistent, checked, encrypted backup of the database (storegw may keep running).

    The backup uses the database's key: keep the key somewhere else as well, a backup is useless
    without it. Prints the backup's path.

    \b
    Example:
      sudo -u storegw storegw backup --config /etc/storegw/storegw.toml --to /mnt/usb/storegw
    """
    from pathlib import Path

    from gateway.clikit import db_key
    from gateway.store.backup import make_backup

    cfg = load_config(config_path)
    key = db_key(cfg)
    path = make_backup(cfg.data_path, key, Path(dest) if dest else cfg.backup_path,
                       cfg.backup.keep if keep is None else keep)
    click.echo(f"{path}  ({path.stat().st_size // 1024} KiB, checked)")


@main.command()
@CONFIG
@click.argument("backup_file", type=click.Path(dir_okay=False, exists=True))
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@handle_errors
def restore(config_path: str, backup_file: str, yes: bool) -> None:
    """Put a backup in place of the database (stop storegw first).

    The backup must open with the current key, or with a database key retired by `storegw keys
    rotate` (it is then re-encrypted under the current key), and pass its check; the current
    database is moved aside as storegw.db.before-restore-STAMP, never deleted. Whatever the gateway stored after the
    backup (readings, orders, the outbox) is only in that moved-aside copy.

    \b
    Example:
      systemctl stop storegw
      cd /var/lib/storegw/backups
      sudo -u storegw storegw restore --config /etc/storegw/storegw.toml storegw-20261123T020000000000Z.db
      systemctl start storegw
    """
    from pathlib import Path

    from gateway.clikit import db_key
    from gateway.privacy.keys import KEYRING_NAME, Keyring, legacy_db_key
    from gateway.store.backup import restore as do_restore

    cfg = load_config(config_path)
    if _answering(health_url(cfg)):
        raise GatewayError("storegw is running on this config; stop it first (systemctl stop storegw)")
    if not yes:
        if not sys.stdin.isatty():
            raise GatewayError("restore replaces the database: confirm with --yes")
        click.confirm(f"Replace {cfg.data_path / 'storegw.db'} with {backup_file}?", abort=True)
    key = db_key(cfg)
    old_keys = []  # a backup from before a key rotation opens with a retired key (re-encrypted on restore)
    if (cfg.keys_path / KEYRING_NAME).exists():
        old_keys = Keyring.open(cfg.keys_path, create=False).retired_db_keys()
        legacy = legacy_db_key(cfg.data_path, cfg.store.key_file)
        old_keys += [legacy] if legacy else []
    aside = do_restore(cfg.data_path, key, Path(backup_file), old_keys=old_keys)
    click.echo(f"restored from {backup_file}" + (f"; the previous database is now {aside}" if aside else ""))
    # Erasures made since the backup, and the retention rules, hold for the restored data too.
    again = privacy.after_restore(cfg)
    click.echo(f"re-applied erasures ({sum(again['erased_again'].values())} subjects) and retention "
               f"({sum(again['retention_rows'].values())} rows)")


def format_status(doc: dict[str, Any]) -> str:
    """Render the health document as a few human lines."""
    lines = [f"storegw {doc['version']}  store {doc['store']}  status {doc['status'].upper()}  "
             f"up {doc['uptime_s']:.0f}s"]
    up = doc["uplink"]
    lines.append(f"uplink   {'connected' if up['connected'] else 'NOT connected'}  sent {up['sent']}  "
                 f"acked {up['acked']}" + (f"  ({up['last_error']})" if up.get("last_error") else ""))
    lanes = "  ".join(f"{k} {v['depth']}" + (f" (oldest {v['oldest_age_s']:.0f}s)" if v["oldest_age_s"] else "")
                      for k, v in doc["outbox"].items())
    lines.append(f"outbox   {lanes}")
    ing = doc["ingest"]
    lines.append(f"ingest   {ing['rate_per_s']}/s  committed {ing['committed']}  duplicates {ing['duplicates']}  "
                 f"invalid {ing['invalid_total']}")
    al = doc["alerts"]
    lines.append(f"alerts   active {al['active']}  raised {al['raised']}  cleared {al['cleared']}")
    for d in doc.get("devices", []):
        lines.append(f"device   {d['id']:<20} {d['kind']:<10} {'available' if d['available'] else 'UNAVAILABLE'}"
                     f"  events {d['events']}")
    return "\n".join(lines)


@main.command()
@click.argument("kind")
@click.option("--hex", "as_hex", is_flag=True, help="Input is hex text (whitespace ignored).")
@click.option("--reveal", is_flag=True,
              help="Show sensitive fields (ID numbers, names, card and member numbers, tag ids) unmasked.")
@handle_errors
def decode(kind: str, as_hex: bool, reveal: bool) -> None:
    """Decode what a device sent (stdin) and print one JSON object; exit 1 on invalid input.

    KIND: scanner, em4100, magstripe, idcard, gb11643, mrz, escpos-status, modbus.

    \b
    Examples:
      printf '\\x0201000B7E9BEF\\r\\n\\x03' | storegw decode em4100
      echo 'AA AA AA 96 69 00 03 20 01 22' | storegw decode idcard --hex
      echo 11010519491231002X | storegw decode gb11643 --reveal
    """
    from devices.decode import KINDS
    from devices.decode import decode as do_decode
    from gateway.core.errors import ConfigError

    if kind not in KINDS:
        raise ConfigError(f"unknown KIND \"{kind}\"; expected one of {', '.join(KINDS)}")
    data = sys.stdin.buffer.read()
    if as_hex:
        text = b"".join(data.split()).decode("ascii", "replace")
        try:
            data = bytes.fromhex(text)
        except ValueError as err:
            raise GatewayError(f"--hex input is not hex: {err}") from None
    result = do_decode(kind, data, reveal=reveal)
    click.echo(json.dumps(result, ensure_ascii=False))


# The command groups of the domains, the devices and provisioning: one line each.
for _command in (printing.print_cmd, printing.jobs_cmd, ordering.tables, ordering.menu, ordering.staff,
                 members.members, hq.hq, equipment.equipment, simulate, devices.devices, provision.provision,
                 doctor, keys_group, audit.audit, privacy.privacy, provision.install, provision.uninstall,
                 stock.stock):
    main.add_command(_command)


def entry() -> None:
    """The ``storegw`` command (console script and ``python -m gateway``): the daemons (``run``,
    ``demo``) first re-execute themselves once with glibc's malloc tunables (gateway/memory.py,
    docs/architecture.md, Memory), then the command line is parsed."""
    from gateway import memory

    memory.exec_tuned()
    main()
