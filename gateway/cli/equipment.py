"""``storegw equipment``: the store's equipment (registry, maintenance; broker accounts for MQTT equipment)."""

from __future__ import annotations

import click

from gateway.clikit import CONFIG, handle_errors, load_config


@click.group("equipment")
def equipment() -> None:
    """The store's equipment: registry, maintenance plans and broker accounts."""


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
