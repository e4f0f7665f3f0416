"""``storegw devices``: find the serial and USB devices plugged into this board, test one, add it to the config."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

import click

from gateway.clikit import CONFIG, handle_errors, load_config
from gateway.core.errors import ConfigError, GatewayError

# Test roots (a fake /sys and /dev with ptys behind them, devices/usbsim.py); hidden from --help.
SYS_ROOT = click.option("--sys-root", type=click.Path(file_okay=False), default=None, hidden=True,
                        help="Read sysfs under this directory instead of pyserial's /sys (tests).")
DEV_ROOT = click.option("--dev-root", type=click.Path(file_okay=False), default=None, hidden=True,
                        help="Read device nodes and /dev/serial links under this directory (tests).")


@click.group("devices")
def devices() -> None:
    """Find, test and add the store's serial and USB devices (docs/devices.md)."""


def _configured(config_path: str | None) -> list[tuple[str, str]]:
    if not config_path:
        return []
    return [(d.id, d.port) for d in load_config(config_path).devices if d.port]


def _format(found: list[Any]) -> str:
    from devices.scan import toml_entry

    if not found:
        return "No USB serial devices found. Plug one in, wait two seconds, and scan again."
    lines = []
    for f in found:
        p = f.port
        lines.append(f"{p.device}  {p.usb_id or '-':9}  {f.known.label}")
        lines.append(f"    {p.manufacturer or '?'} / {p.product or '?'}  serial {p.serial_number or '(none)'}"
                     f"  at USB {p.location or '?'}")
        lines.append(f"    stable path: {p.by_id or '(none: no by-id link; the node name may change on replug)'}")
        state = f"confirmed {f.probe.kind}" if f.probe.kind else (
            f"candidates {', '.join(f.known.kinds)}" if len(f.known.kinds) > 1 else f"likely {f.kind}")
        lines.append(f"    {state}: {f.probe.detail}")
        if f.configured_as:
            lines.append(f"    configured as \"{f.configured_as}\"")
        elif f.proposal:
            lines.append("    proposed entry (storegw devices add writes it after a live test):")
            lines += ["      " + line for line in toml_entry(f.proposal).splitlines()]
    return "\n".join(lines)


@devices.command("scan")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="The gateway's config: ports already configured are shown with their device id.")
@click.option("--listen", type=float, default=3.0, show_default=True,
              help="Seconds to listen on each possible scanner (scan any barcode meanwhile).")
@click.option("--timeout", type=float, default=0.5, show_default=True, help="Seconds to wait for each probe's answer.")
@click.option("--passive", is_flag=True, help="Only listen; send no probe bytes to any device.")
@click.option("--no-probe", is_flag=True, help="Only list and recognise, open no port.")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@SYS_ROOT
@DEV_ROOT
@handle_errors
def scan_cmd(config_path: str | None, listen: float, timeout: float, passive: bool, no_probe: bool, as_json: bool,
             sys_root: str | None, dev_root: str | None) -> None:
    """List USB serial devices, recognise and probe them, and propose a [[devices]] entry for each.

    Shows VID:PID, manufacturer, product, serial number, the USB socket and the stable
    /dev/serial/by-id path; recognises USB-serial bridges (CH340, FTDI, CP210x, Prolific),
    scanners, ID card readers, ESC/POS printers and RS-485 Modbus adapters from a table, then
    confirms what it can: listening for a scan, ESC/POS DLE EOT status, the SAM reader's status
    command, a Modbus read of slave 1. Ports of a running gateway are busy: stop it first
    (systemctl stop storegw) or use --no-probe.

    \b
    Example:
      storegw devices scan --config /etc/storegw/storegw.toml --listen 5
    """
    from devices.scan import scan

    found = scan(sys_root=sys_root, dev_root=dev_root, configured=_configured(config_path), listen=listen,
                 timeout=timeout, active=not passive, do_probe=not no_probe)
    if as_json:
        click.echo(json.dumps([f.as_dict() for f in found], ensure_ascii=False, indent=2))
    else:
        click.echo(_format(found))


def _parse_option(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"--option {text!r}: expected KEY=VALUE (a TOML value: 9600, \"CR\", [\"1:0:uint16:1:t\"])")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word is a string
    return key.strip(), value


def append_device(config_path: str, entry: dict[str, Any]) -> None:
    """Append ``entry`` to the config file after checking the whole new file; atomic, keeps comments."""
    from devices.scan import toml_entry
    from gateway import config as config_mod

    path = Path(config_path)
    text = path.read_text(encoding="utf-8")
    new = text + ("" if text.endswith("\n") or not text else "\n") + "\n" + toml_entry(entry)
    try:
        config_mod.parse(tomllib.loads(new), source=str(path))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"the new entry would make {path} invalid TOML: {err}") from err
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(new, encoding="utf-8")
    os.chmod(tmp, path.stat().st_mode & 0o7777)
    os.replace(tmp, path)


@devices.command("add")
@click.argument("port")
@CONFIG
@click.option("--kind", default=None, help="Device family (default: what the probe of PORT confirms).")
@click.option("--id", "device_id", default=None, help="Device id (default: kind + the USB serial number).")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE", help="A family option (repeatable).")
@click.option("--timeout", type=float, default=30.0, show_default=True,
              help="Seconds to wait for the live test (a scan, a card, a reading).")
@click.option("--skip-test", is_flag=True, help="Write the entry without a live test (a device not here yet).")
@SYS_ROOT
@DEV_ROOT
@handle_errors
def add_cmd(port: str, config_path: str, kind: str | None, device_id: str | None, options: tuple[str, ...],
            timeout: float, skip_test: bool, sys_root: str | None, dev_root: str | None) -> None:
    """Test a device live and add it to the config as a [[devices]] entry.

    PORT is the stable /dev/serial/by-id/... path `storegw devices scan` shows (or any pyserial
    URL). The live test prints a test page on a printer, or waits for a scan, a card or a
    Modbus reading; only then is the entry appended to the config (comments kept, the whole
    file checked first). Restart storegw to start the device.

    \b
    Example:
      storegw devices add /dev/serial/by-id/usb-Newland_NLS-HR22_C1234-if00 --config /etc/storegw/storegw.toml
      storegw devices add /dev/serial/by-id/usb-FTDI_USB-RS485_A5XK3RJT-if00-port0 --kind modbus \\
          --option 'registers=["1:0x0000:int16:0.1:temp_c"]' --config /etc/storegw/storegw.toml
    """
    from devices import registry
    from devices.scan import list_ports, live_test, probe, proposed_id, recognise
    from gateway.core.options import DeviceConfig

    cfg = load_config(config_path)
    taken = {d.id: d.port for d in cfg.devices}
    same = [d.id for d in cfg.devices
            if d.port and (d.port == port or os.path.realpath(d.port) == os.path.realpath(port))]
    if same:
        raise ConfigError(f"{port} is already configured as \"{same[0]}\"; remove that entry first to replace it")
    listed = {p.by_id: p for p in list_ports(sys_root, dev_root)}
    listed.update({p.device: p for p in listed.values()})
    known = listed.get(port)
    if kind is None:
        candidates = recognise(known).kinds if known is not None else ("scanner", "escpos", "idcard", "modbus")
        found = probe(port, candidates, listen=min(timeout, 10.0))
        if not found.kind:
            raise GatewayError(f"could not tell what {port} is ({'; '.join(found.tried) or found.detail}); "
                               f"give --kind (one of {', '.join(registry.KINDS)})")
        kind = found.kind
        click.echo(f"{port}: {found.detail}")
    if device_id is None:
        from devices.scan import Port

        device_id = proposed_id(kind, known or Port(device=port, name=Path(port).name, by_id=port))
    if device_id in taken:
        raise ConfigError(f"device id \"{device_id}\" is already in {config_path}; give another with --id")
    opts = dict(_parse_option(o) for o in options)
    dev = registry.validate_device(DeviceConfig(id=device_id, kind=kind, port=port, options=opts),
                                   f"devices[{len(cfg.devices)}]")
    if not skip_test:
        click.echo(f"live test of {device_id} ({kind}) on {port} ...")
        click.echo(f"  ok: {live_test(dev, timeout)}")
    entry: dict[str, Any] = {"id": device_id, "kind": kind, "port": port}
    if opts:
        entry["options"] = opts
    append_device(config_path, entry)
    click.echo(f"added [[devices]] \"{device_id}\" to {config_path}; restart storegw to start it "
               f"(systemctl restart storegw)")
