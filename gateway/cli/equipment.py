"""``storegw equipment``: the store's equipment (registry, maintenance; broker accounts for MQTT equipment).

``import`` and ``export`` open the gateway's database directly (creating and migrating it if this is
the first run), so they work with or without a running gateway; a running gateway's next equipment
check (``equipment.check_every``) uses what was imported.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from gateway.cli.db import database
from gateway.clikit import CONFIG, handle_errors, load_config
from gateway.core.errors import GatewayError
from gateway.store.db import immediate

FORMATS = click.Choice(["json", "csv"])


def _format(path: str, fmt: str | None) -> str:
    if fmt:
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix in (".json", ".csv"):
        return suffix[1:]
    raise GatewayError(f"cannot tell the format of {path!r}: name it .json or .csv, or give --format json|csv")


@click.group("equipment")
def equipment() -> None:
    """The store's equipment: registry, maintenance plans and broker accounts.

    \b
    Examples:
      storegw equipment import equipment.json --config /etc/storegw/storegw.toml
      storegw equipment export --format csv -o equipment.csv --config /etc/storegw/storegw.toml
    """


@equipment.command("import")
@click.argument("path", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--format", "fmt", type=FORMATS, help="json (records and plans) or csv (records); default: the "
              "file's suffix.")
@click.option("--dry-run", is_flag=True, help="Check the file and say what would be imported; write nothing.")
@CONFIG
@handle_errors
def import_cmd(path: str, fmt: str | None, dry_run: bool, config_path: str) -> None:
    """Import equipment records (brand, model, serial, location, purchase date, service life, warranty end)
    and maintenance plans. All or nothing: any bad row imports nothing, and every bad row and field is named.

    \b
    Example:
      storegw equipment import equipment.json --config /etc/storegw/storegw.toml
      storegw equipment import assets.csv --dry-run --config /etc/storegw/storegw.toml
    """
    from zoneinfo import ZoneInfo

    from gateway.core.models import now_ms
    from gateway.equipment import registry

    cfg = load_config(config_path)
    if path == "-":
        text, fmt = sys.stdin.read(), fmt or "json"
    else:
        fmt = _format(path, fmt)
        try:
            text = Path(path).read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as err:
            raise GatewayError(f"cannot read {path}: {err}") from err
    rows = registry.parse_import(text, fmt)
    if dry_run:
        valid = registry.validate_rows(rows)
        click.echo(f"{path}: ok, {len(valid)} devices and {sum(len(p) for _, p in valid)} plans would be imported")
        return
    with database(cfg) as conn:
        counts = immediate(conn, lambda c: registry.import_rows(c, rows, now_ms(), None, ZoneInfo(cfg.store.timezone)))
    click.echo(f"imported {counts['devices']} devices and {counts['plans']} maintenance plans")


@equipment.command("export")
@click.option("--format", "fmt", type=FORMATS, default="json", show_default=True,
              help="json (records and plans, the import's form) or csv (records only).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to this file (default: stdout).")
@CONFIG
@handle_errors
def export_cmd(fmt: str, output: str | None, config_path: str) -> None:
    """Export the equipment registry (and, as JSON, the maintenance plans) in the form `import` reads.

    \b
    Example:
      storegw equipment export --config /etc/storegw/storegw.toml > equipment.json
      storegw equipment export --format csv -o equipment.csv --config /etc/storegw/storegw.toml
    """
    from zoneinfo import ZoneInfo

    from gateway.equipment import registry

    cfg = load_config(config_path)
    with database(cfg) as conn:
        if fmt == "csv":
            text = registry.export_csv(conn)
        else:
            text = json.dumps(registry.export_doc(conn, ZoneInfo(cfg.store.timezone)), ensure_ascii=False,
                              indent=2) + "\n"
    if output:
        Path(output).write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)


@equipment.command("add")
@click.argument("device_id")
@CONFIG
@click.option("--replace", is_flag=True, help="Issue a new password for an existing account.")
@handle_errors
def equipment_add(device_id: str, config_path: str, replace: bool) -> None:
    """Create a broker account for one piece of equipment and print what to put into it.

    The device may publish only devices/DEVICE_ID/# on the store broker; the ACL is regenerated
    and a running Mosquitto reloads it. The password is shown once: type it into the device.

    \b
    Example:
      storegw equipment add fridge-1 --config /etc/storegw/storegw.toml
    """
    from provisioning import mosquitto

    cfg = load_config(config_path)
    password = mosquitto.add_account(cfg, device_id, replace=replace)
    lm = cfg.local_mqtt
    click.echo(f"""Account for {device_id} ({mosquitto.reload_broker()}). Put into the device:
  MQTT broker    {cfg.web.public_host.split(':')[0] or 'THIS-BOARD-IP'}:{lm.port}   (the board's store-LAN address)
  client id      {device_id}
  username       {device_id}
  password       {password}
  publish to     devices/{device_id}/telemetry  (JSON readings, QoS 1)
                 devices/{device_id}/status     (retained online/offline, as its last will)
It may publish nothing else. The password is not stored in clear anywhere: note it now.
Equipment on the store network needs the broker listening there: the `listener 1883 <LAN address>`
line of /etc/mosquitto/conf.d/storegw.conf (docs/operations.md, "Mosquitto").""")


@equipment.command("remove")
@click.argument("device_id")
@CONFIG
@handle_errors
def equipment_remove(device_id: str, config_path: str) -> None:
    """Delete one piece of equipment's broker account (the broker then refuses it).

    \b
    Example:
      storegw equipment remove fridge-1 --config /etc/storegw/storegw.toml
    """
    from provisioning import mosquitto

    mosquitto.remove_account(load_config(config_path), device_id)
    click.echo(f"removed the account of {device_id} ({mosquitto.reload_broker()})")
