"""``storegw provision`` (init, csr, mosquitto, wifi), ``storegw install`` and ``storegw uninstall``:
from a blank board to a running store (docs/operations.md, "Provisioning a board")."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from gateway.clikit import CONFIG, handle_errors, load_config
from gateway.core.errors import ConfigError

DEFAULT_CONFIG = "/etc/storegw/storegw.toml"
ROOT = click.option("--root", type=click.Path(file_okay=False), default="/", show_default=True,
                    help="Staging root: write everything under this directory instead of the board (tests, images).")
CONFIG_PATH = click.option("--config", "config_path", default=DEFAULT_CONFIG, show_default=True,
                           type=click.Path(dir_okay=False), help="The gateway's config file (a path on the board).")


def _system_timezone() -> str:
    try:
        return Path("/etc/timezone").read_text().strip() or "Asia/Shanghai"
    except OSError:
        return "Asia/Shanghai"


def _existing(path: Path) -> dict[str, Any]:
    import tomllib

    try:
        return tomllib.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _check_timezone(tz: str) -> str:
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"--timezone: {tz!r} is not an IANA time zone (e.g. Asia/Shanghai, Europe/Paris)",
                          key="store.timezone") from None
    return tz


@click.group("provision")
def provision() -> None:
    """Set up this board: identity, keys and config (init), the store broker's accounts (mosquitto), the
    diners' Wi-Fi (wifi)."""


@provision.command("init")
@CONFIG_PATH
@ROOT
@click.option("--store-id", default="", help="Store id (a-z 0-9 -), e.g. sh-001.")
@click.option("--store-name", default="", help="Human-readable store name.")
@click.option("--timezone", default="", help="IANA time zone of the store (default: the board's, else Asia/Shanghai).")
@click.option("--hq-host", default="", help="HQ's MQTT broker host.")
@click.option("--hq-port", type=int, default=None, help="HQ's MQTT broker port [8883].")
@click.option("--hq-tls/--no-hq-tls", default=None, help="TLS to HQ [on; off only for tests].")
@click.option("--hq-ca", type=click.Path(dir_okay=False, exists=True), help="HQ's CA certificate (PEM).")
@click.option("--topic-prefix", default="", help="Upstream topic prefix [storegw/v1].")
@click.option("--claim", "claim_code", default="", help="Claim code from HQ (storegw hq claim): trade it for the "
              "certificate and the store's config.")
@click.option("--cert", "cert_file", type=click.Path(dir_okay=False, exists=True),
              help="Import the certificate HQ signed from this board's CSR.")
@click.option("--data-dir", default="", help="Data directory [/var/lib/storegw].")
@click.option("--local-port", type=int, default=None, help="Port of the store's Mosquitto [1883].")
@click.option("--web-listen", default="", help="HOST:PORT of the web pages [0.0.0.0:8080].")
@click.option("--public-host", default="", help="Host the table QR codes point at.")
@click.option("--time-server", default=None, help="NTP server doctor compares the clock with [pool.ntp.org]; "
              "\"\" = none.")
@click.option("--claim-timeout", type=float, default=30.0, show_default=True, help="Seconds to wait for HQ.")
@click.option("--force", is_flag=True, help="Make new keys (the old ones, and the data they open, are moved aside).")
@handle_errors
def init(config_path: str, root: str, store_id: str, store_name: str, timezone: str, hq_host: str,
         hq_port: int | None, hq_tls: bool | None, hq_ca: str | None, topic_prefix: str, claim_code: str,
         cert_file: str | None, data_dir: str, local_port: int | None, web_listen: str, public_host: str,
         time_server: str | None, claim_timeout: float, force: bool) -> None:
    """Make this board's keys, identity and config (run as root, before `storegw install`).

    Generates, on the board, the keyring's key-encryption key, the database key, the field keys, the
    table-token secret, the gateway's broker password and an MQTT client key; then either trades a
    claim code with HQ for the board's certificate and the store's config (only the CSR leaves the
    board), imports a certificate HQ signed, or writes a CSR for HQ to sign. Asks for what is
    missing on a terminal; with stdin not a terminal, flags only. Safe to run again: existing keys
    are kept (--force moves them aside and makes new ones).

    \b
    Example:
      storegw provision init --store-id sh-001 --hq-host hq.example.com --claim K7QX-93MD-WA2F
      storegw provision init --store-id sh-001 --hq-host hq.example.com --timezone Asia/Shanghai
      storegw provision init --cert /media/usb/sh-001.crt --hq-ca /media/usb/hq-ca.crt
    """
    from provisioning import identity

    rootp = Path(root)
    old = _existing(rootp / config_path.lstrip("/"))
    data_dir = data_dir or old.get("store", {}).get("data_dir", "/var/lib/storegw")
    layout = identity.Layout(Path(config_path), Path(data_dir), rootp)
    ask = sys.stdin.isatty()
    def given(value: Any, section: str, key: str, default: Any) -> Any:
        """The flag, else what the config says already (running again changes only what is given)."""
        return value if value not in (None, "") else old.get(section, {}).get(key, default)

    a = identity.Answers(
        store_id=given(store_id, "store", "id", ""), store_name=given(store_name, "store", "name", ""),
        timezone=given(timezone, "store", "timezone", ""), hq_host=given(hq_host, "uplink", "host", ""),
        hq_port=given(hq_port, "uplink", "port", 8883), hq_tls=given(hq_tls, "uplink", "tls", True),
        topic_prefix=given(topic_prefix, "uplink", "topic_prefix", "storegw/v1"),
        local_port=given(local_port, "local_mqtt", "port", 1883),
        web_listen=given(web_listen, "web", "listen", "0.0.0.0:8080"),
        public_host=given(public_host, "web", "public_host", ""),
        time_server=time_server if time_server is not None else old.get("store", {}).get("time_server",
                                                                                         "pool.ntp.org"))
    if ask:
        a.store_id = a.store_id or click.prompt("Store id (e.g. sh-001)")
        a.hq_host = a.hq_host or click.prompt("HQ broker host")
        if not claim_code and not cert_file and not timezone and not a.timezone:
            a.timezone = click.prompt("Time zone", default=_system_timezone())
    for value, flag in ((a.store_id, "--store-id"), (a.hq_host, "--hq-host")):
        if not value:
            raise ConfigError(f"{flag} is required (stdin is not a terminal, so nothing is asked)")
    a.timezone = _check_timezone(a.timezone or _system_timezone())

    for line in identity.make_keys(layout, force=force, log=click.echo):
        click.echo(f"made: {line}")
    have_cert = False
    if claim_code:
        answer = identity.claim(layout, claim_code, a.store_id, host=a.hq_host, port=a.hq_port, tls=a.hq_tls,
                                ca_file=hq_ca or "", timeout=claim_timeout)
        given = answer.get("config", {})
        store, up = given.get("store", {}), given.get("uplink", {})
        if store.get("id", a.store_id) != a.store_id:
            raise ConfigError(f"the claim code is for store {store.get('id')}, not {a.store_id}")
        a.store_name = store.get("name") or a.store_name
        a.timezone = _check_timezone(store.get("timezone") or a.timezone)
        a.hq_host, a.hq_port = up.get("host") or a.hq_host, int(up.get("port") or a.hq_port)
        a.hq_tls = bool(up.get("tls", a.hq_tls))
        a.topic_prefix = up.get("topic_prefix") or a.topic_prefix
        identity.import_cert(layout, answer["certificate"], answer.get("ca"), a.store_id)
        click.echo(f"claimed: HQ signed the certificate {layout.cert} for store {a.store_id}")
        have_cert = True
    elif cert_file:
        ca_pem = Path(hq_ca).read_text() if hq_ca else None
        cert = identity.import_cert(layout, Path(cert_file).read_text(), ca_pem, a.store_id)
        click.echo(f"imported {layout.cert}, valid until {cert.not_valid_after_utc:%Y-%m-%d}")
        have_cert = True
    else:
        if hq_ca:
            layout.ca.parent.mkdir(parents=True, exist_ok=True)
            layout.ca.write_text(Path(hq_ca).read_text())
        if layout.cert.exists():
            try:
                identity.import_cert(layout, layout.cert.read_text(), None, a.store_id)
                have_cert = True
            except identity.ProvisionError:
                have_cert = False
        if not have_cert:
            identity.make_csr(layout, a.store_id)
            click.echo(f"wrote {layout.csr}: HQ signs it (storegw hq sign {layout.csr.name} --store {a.store_id}); "
                       f"then: storegw provision init --config {config_path} --cert FILE --hq-ca HQ-CA")
    identity.write_config(layout, a, have_cert=have_cert)
    click.echo(f"wrote {layout.config_file} (checked). Next: storegw install --config {config_path}; "
               f"storegw doctor --config {config_path}")


@provision.command("csr")
@CONFIG_PATH
@ROOT
@handle_errors
def csr(config_path: str, root: str) -> None:
    """Write a new certificate request from this board's key (to renew the certificate) and print it.

    \b
    Example:
      storegw provision csr --config /etc/storegw/storegw.toml > /media/usb/sh-001.csr
    """
    from provisioning import identity

    layout = identity.Layout(Path(config_path), Path("/"), Path(root))
    cfg = load_config(str(layout.config_file))
    click.echo(identity.make_csr(layout, cfg.store.id), nl=False)


@provision.command("mosquitto")
@CONFIG_PATH
@handle_errors
def mosquitto_cmd(config_path: str) -> None:
    """Write the store broker's password file and ACL (gateway reads, each device writes its own topics).

    Keeps every equipment account; (re)hashes the gateway's password from its credential; the ACL
    is regenerated from the accounts, and a running Mosquitto reloads them.

    \b
    Example:
      storegw provision mosquitto --config /etc/storegw/storegw.toml
    """
    from provisioning import credentials, mosquitto

    cfg = load_config(config_path)
    with credentials.borrowed(plain_dir=Path(config_path).parent / "credentials"):
        devices = mosquitto.provision(cfg)
    click.echo(f"wrote {cfg.local_mqtt.broker_passwd_file} and {cfg.local_mqtt.broker_acl_file}: "
               f"{cfg.local_mqtt.username or 'storegw'} reads devices/#; {len(devices)} device account(s). "
               + mosquitto.reload_broker())


@click.command("install")
@CONFIG_PATH
@ROOT
@click.option("--exe", default="", help="The storegw executable the unit runs (default: this one).")
@handle_errors
def install(config_path: str, root: str, exe: str) -> None:
    """Install storegw as a hardened systemd service with its broker, user, credentials and logs (root).

    Creates the storegw user and its directories, installs storegw.service (systemd-analyze
    security 1.6 OK) with the secrets as systemd credentials (sealed with systemd-creds where the
    board supports it), Mosquitto's config, password file and ACL, the modules the devices need and
    a bounded journal, then enables (and under systemd starts) mosquitto and storegw. Run
    `storegw provision init` first.

    \b
    Example:
      storegw install --config /etc/storegw/storegw.toml
      storegw install --root /tmp/stage --config /etc/storegw/storegw.toml
    """
    from provisioning.install import Installer

    rootp = Path(root)
    cfg = load_config(str(rootp / config_path.lstrip("/")))
    written = Installer(cfg, Path(config_path), root=rootp, exe=exe, log=click.echo).install()
    click.echo(f"installed ({len(written)} files). Check it: storegw doctor --config {config_path}")


@click.command("uninstall")
@CONFIG_PATH
@ROOT
@click.option("--purge", is_flag=True, help="Also delete the config, the keys and all data (irreversible).")
@click.option("--yes", is_flag=True, help="Do not ask before --purge.")
@handle_errors
def uninstall(config_path: str, root: str, purge: bool, yes: bool) -> None:
    """Stop and remove the storegw service, its broker config and accounts; keep the data unless --purge.

    \b
    Example:
      storegw uninstall --config /etc/storegw/storegw.toml
      storegw uninstall --config /etc/storegw/storegw.toml --purge --yes
    """
    from provisioning.install import Installer

    rootp = Path(root)
    cfg = load_config(str(rootp / config_path.lstrip("/")))
    if purge and not yes:
        if not sys.stdin.isatty():
            raise ConfigError("--purge deletes the keys and all data: confirm with --yes")
        click.confirm(f"Delete {cfg.data_path}, {cfg.keys_path} and {Path(config_path).parent} for good?", abort=True)
    Installer(cfg, Path(config_path), root=rootp, log=click.echo).uninstall(purge=purge)


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
