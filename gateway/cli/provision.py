"""``storegw provision``: set up this board for a store (the diners' Wi-Fi and captive portal)."""

from __future__ import annotations

from pathlib import Path

import click

from gateway.clikit import CONFIG, handle_errors, load_config
from gateway.core.errors import ConfigError


@click.group("provision")
def provision() -> None:
    """Set up this board for its store (docs/operations.md)."""


@provision.command("wifi")
@CONFIG
@click.option("--mode", type=click.Choice(["auto", "nm", "hostapd"]), default="auto", show_default=True,
              help="NetworkManager profile (nm) or hostapd + dnsmasq (hostapd); auto: nm when NetworkManager runs.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="storegw-wifi", show_default=True,
              help="Directory the files are written to (always, for review).")
@click.option("--interface", default=None, help="AP interface (default: wifi.interface).")
@click.option("--ssid", default=None, help="Network name (default: wifi.ssid, else the store's name).")
@click.option("--passphrase-file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="A WPA2 passphrase (first line of this file); default: an open network, as captive portals are.")
@click.option("--apply", "do_apply", is_flag=True,
              help="Also install the files in /etc, load the firewall and start the AP (root).")
@handle_errors
def wifi(config_path: str, mode: str, out_dir: str, interface: str | None, ssid: str | None,
         passphrase_file: str | None, do_apply: bool) -> None:
    """Generate the diners' access point, DNS/DHCP and firewall; with --apply, install and start them.

    Writes a NetworkManager AP profile (or hostapd + dnsmasq configs where NetworkManager is
    absent), DNS that answers every name (the phones' captive-portal probe hosts and
    web.public_host) with the gateway, DHCP option 114 (RFC 8910) pointing at the RFC 8908 API the
    web app serves at ordering.portal_api_path, and nftables rules that keep diners off the uplink
    and staff networks. Needs ordering.portal = true, web.public_host, and web.listen reachable
    from the AP.

    \b
    Example:
      storegw provision wifi --config /etc/storegw/storegw.toml --out /tmp/wifi   # review
      sudo storegw provision wifi --config /etc/storegw/storegw.toml --apply
    """
    from provisioning import wifi as wifi_mod

    cfg = load_config(config_path)
    passphrase = ""
    if passphrase_file:
        passphrase = Path(passphrase_file).read_text(encoding="utf-8").splitlines()[0].strip() if Path(
            passphrase_file).stat().st_size else ""
        if not 8 <= len(passphrase) <= 63:
            raise ConfigError("--passphrase-file: a WPA2 passphrase has 8 to 63 characters")
    chosen = wifi_mod.detect_mode() if mode == "auto" else mode
    plan, files = wifi_mod.generate(cfg, chosen, passphrase=passphrase, interface=interface, ssid=ssid)
    paths = wifi_mod.write(files, Path(out_dir))
    click.echo(f"diners' Wi-Fi \"{plan.ssid}\" on {plan.interface}, gateway {plan.gateway} ({plan.network}), "
               f"mode {chosen}")
    click.echo(f"  DHCP {plan.dhcp_range[0]}-{plan.dhcp_range[1]}, option 114 = {plan.api_url}")
    click.echo(f"  portal: http://{plan.public_host}/portal (port 80 -> {plan.web_port})")
    for warning in plan.warnings:
        click.echo(f"  warning: {warning}")
    for f, path in zip(files, paths, strict=True):
        click.echo(f"  wrote {path}  (installs to {f.target})")
    if do_apply:
        for cmd in wifi_mod.apply(files, chosen):
            click.echo(f"  ran: {cmd}")
        click.echo("the access point is up; check it with: storegw doctor --config " + config_path)
    else:
        click.echo("review the files, then run again with --apply as root (docs/operations.md, \"Diners' Wi-Fi\")")
