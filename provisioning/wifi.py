"""`storegw provision wifi`: the diners' access point, its DNS/DHCP and the firewall that keeps them off everything.

What it generates from the config (``[wifi]``, ``[web]``, ``[ordering]``):

* **NetworkManager** (current Raspberry Pi OS): an AP connection profile (``ipv4.method shared``,
  no security section = an open network) and a ``dnsmasq-shared.d`` snippet for the dnsmasq NM runs.
* **hostapd + dnsmasq** where NetworkManager is absent: ``hostapd.conf`` (``ap_isolate``: phones do
  not see each other), a complete dnsmasq config and an ifupdown stanza for the static address.
* In both: DNS answering every name (the OS captive-probe hosts and ``web.public_host`` included)
  with the gateway, the RFC 8910 DHCP option 114 carrying the RFC 8908 API URL the web app serves
  (``ordering.portal_api_path``), and an nftables table that drops everything diners send to be
  forwarded (the uplink and staff networks), lets them reach only DNS, DHCP and the web app on the
  gateway's own address, redirects port 80 (and hard-coded DNS servers) to the gateway and resets
  HTTPS at once instead of letting it time out.

Nothing here touches the system unless ``apply`` is asked for; tests load the generated dnsmasq and
nftables files in network namespaces (tests/test_wifi_netns.py).
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from gateway.config import Config
from gateway.core.errors import ConfigError, GatewayError

CONNECTION = "storegw-diners"
NFT_TABLE = "storegw_diners"
# The hosts phones and laptops ask to decide whether a network is captive (they get the gateway).
PROBE_HOSTS = (
    # Android (AOSP NetworkStack) and the big Chinese Android ROMs
    "connectivitycheck.gstatic.com", "www.gstatic.com", "clients3.google.com", "www.google.com",
    "connectivitycheck.android.com", "connect.rom.miui.com", "connectivitycheck.platform.hicloud.com",
    "conn1.oppomobile.com", "conn2.oppomobile.com", "wifi.vivo.com.cn",
    # Apple (iOS, macOS)
    "captive.apple.com", "www.apple.com", "www.appleiphonecell.com", "www.thinkdifferent.us",
    "www.airport.us", "www.ibook.info", "www.itools.info",
    # Windows (NCSI) and Firefox
    "www.msftconnecttest.com", "www.msftncsi.com", "detectportal.firefox.com",
)


@dataclass
class WifiPlan:
    """Everything derived from the config: addresses, ports, URLs and warnings."""

    interface: str
    ssid: str
    gateway: str
    network: ipaddress.IPv4Network
    web_port: int
    public_host: str
    api_url: str
    uplink: str
    staff_networks: tuple[str, ...]
    country: str
    channel: int
    lease_s: int
    https: bool
    warnings: list[str] = field(default_factory=list)

    @property
    def dhcp_range(self) -> tuple[str, str]:
        """First and last address handed out (the gateway's own address is never in it)."""
        hosts = [h for h in self.network.hosts() if str(h) != self.gateway]
        first = hosts[min(9, len(hosts) // 4)]
        return str(first), str(hosts[-1])


def plan(cfg: Config, *, interface: str | None = None, ssid: str | None = None) -> WifiPlan:
    """Check the config for a captive portal and derive the plan; ConfigError names the key to fix."""
    w = cfg.wifi
    iface = ipaddress.ip_interface(w.address)
    host, _, port = cfg.web.listen.rpartition(":")
    host = host.strip("[]")
    if host in ("127.0.0.1", "::1", "localhost"):
        raise ConfigError(f"web.listen is {cfg.web.listen}: diners could not reach the pages. Listen on all addresses "
                          f"(\"0.0.0.0:{port}\") or on the AP's ({iface.ip}:{port})", key="web.listen")
    if not cfg.ordering.portal:
        raise ConfigError("ordering.portal is false: set ordering.portal = true so the gateway answers the phones' "
                          "captive-portal probes", key="ordering.portal")
    public = cfg.web.public_host
    if not public:
        raise ConfigError("web.public_host is empty: give the name diners' phones use for the gateway, e.g. "
                          "\"wifi.example-store.cn\" (DNS on the AP answers it with the gateway)",
                          key="web.public_host")
    public_name = public.rpartition(":")[0] if public.count(":") == 1 else public
    out = WifiPlan(interface=interface or w.interface, ssid=ssid or w.ssid or cfg.store.name or cfg.store.id,
                   gateway=str(iface.ip), network=iface.network, web_port=int(port), public_host=public_name,
                   api_url=f"{'https' if cfg.ordering.https else 'http'}://{public}{cfg.ordering.portal_api_path}",
                   uplink=w.uplink, staff_networks=tuple(w.staff_networks), country=w.country, channel=w.channel,
                   lease_s=int(w.lease), https=cfg.ordering.https)
    try:
        ipaddress.ip_address(public_name)
        out.warnings.append("web.public_host is an IP address: RFC 8910 says the captive-portal URI should be a "
                            "name; phones then ignore the API and fall back to probing")
    except ValueError:
        pass
    if not cfg.ordering.https:
        out.warnings.append("ordering.https is false: phones use the RFC 8908 API only over HTTPS with a trusted "
                            "certificate; the OS probes still open the portal (docs/operations.md)")
    if len(out.api_url.encode()) > 255:
        raise ConfigError("the captive-portal API URL is longer than DHCP's 255 bytes: shorten web.public_host or "
                          "ordering.portal_api_path", key="ordering.portal_api_path")
    if not out.uplink:
        out.warnings.append("wifi.uplink is empty: the firewall drops every forwarded packet from diners anyway, "
                            "but name the uplink so doctor can check it")
    return out


# ---------------------------------------------------------------------------------------------- files

def dns_dhcp_options(p: WifiPlan) -> str:
    """What both modes add to dnsmasq: every name is the gateway, option 114, router and DNS = the gateway."""
    lines = [
        "# storegw: the diners' network (generated by `storegw provision wifi`; edit the config, not this file)",
        "# Every name resolves to the gateway: the OS captive-portal probe hosts and web.public_host included,",
        "# so a phone's probe reaches the portal; nothing is forwarded to an upstream resolver.",
        f"address=/#/{p.gateway}",
        f"address=/{p.public_host}/{p.gateway}",
        *(f"address=/{h}/{p.gateway}" for h in PROBE_HOSTS),
        "# RFC 8910: DHCP option 114 = the RFC 8908 captive portal API",
        f'dhcp-option=114,"{p.api_url}"',
    ]
    return "\n".join(lines) + "\n"


def dnsmasq_conf(p: WifiPlan) -> str:
    """The complete dnsmasq config of the hostapd mode (the AP interface only)."""
    first, last = p.dhcp_range
    return dns_dhcp_options(p) + "\n".join([
        "",
        f"interface={p.interface}",
        "bind-interfaces",
        "except-interface=lo",
        f"listen-address={p.gateway}",
        "no-resolv",
        "no-hosts",
        "domain-needed",
        "bogus-priv",
        "dhcp-authoritative",
        f"dhcp-range={first},{last},{p.network.netmask},{p.lease_s}",
        f"dhcp-option=option:router,{p.gateway}",
        f"dhcp-option=option:dns-server,{p.gateway}",
        "",
    ])


def nftables(p: WifiPlan) -> str:
    """The firewall: diners reach DNS, DHCP and the web app on the gateway, nothing else, and are never forwarded."""
    staff = ", ".join(p.staff_networks)
    https = (f'        iifname "{p.interface}" ip daddr {p.gateway} tcp dport 443 accept\n' if p.https else
             f'        iifname "{p.interface}" tcp dport 443 reject with tcp reset  # fail HTTPS at once\n')
    return f"""#!/usr/sbin/nft -f
# storegw: keep diners on the portal (generated by `storegw provision wifi`).
# Loading it again replaces the table (the create-then-delete idiom keeps the load atomic).
table inet {NFT_TABLE}
delete table inet {NFT_TABLE}

table inet {NFT_TABLE} {{
    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        # A phone with a hard-coded resolver (8.8.8.8) or an IP-literal probe still lands on the gateway.
        iifname "{p.interface}" udp dport 53 dnat ip to {p.gateway}:53
        iifname "{p.interface}" tcp dport 53 dnat ip to {p.gateway}:53
        iifname "{p.interface}" tcp dport 80 dnat ip to {p.gateway}:{p.web_port}
    }}

    chain input {{
        type filter hook input priority filter; policy accept;
        iifname "{p.interface}" ct state established,related accept
        iifname "{p.interface}" udp dport 67 accept  # DHCP (broadcast)
        iifname "{p.interface}" ip daddr {p.gateway} udp dport 53 accept
        iifname "{p.interface}" ip daddr {p.gateway} tcp dport 53 accept
        iifname "{p.interface}" ip daddr {p.gateway} tcp dport {p.web_port} accept
        iifname "{p.interface}" ip daddr {p.gateway} icmp type echo-request accept
{https}        iifname "{p.interface}" counter drop  # the broker, ssh, the gateway's other addresses
    }}

    chain forward {{
        # Diners are never routed: not to the uplink{f" ({p.uplink})" if p.uplink else ""}, not to the staff
        # networks, not to each other through the gateway. A drop here is final whatever other tables
        # (NetworkManager's shared-mode NAT) accept.
        type filter hook forward priority filter - 10; policy accept;
        iifname "{p.interface}" counter drop
        oifname "{p.interface}" counter drop
{f'        ip saddr {p.network} ip daddr {{ {staff} }} counter drop{chr(10)}' if staff else ''}    }}
}}
"""


def nft_unit() -> str:
    """A oneshot unit loading the firewall before the network comes up."""
    return f"""[Unit]
Description=storegw: keep diners off the uplink and staff networks (nftables)
DefaultDependencies=no
Before=network-pre.target
Wants=network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/sbin/nft -f /etc/storegw/diners.nft
ExecStop=/usr/sbin/nft delete table inet {NFT_TABLE}

[Install]
WantedBy=multi-user.target
"""


def hostapd_conf(p: WifiPlan, passphrase: str = "") -> str:
    """hostapd for an open (or WPA2) 2.4 GHz AP with client isolation."""
    lines = [
        "# storegw: the diners' access point (generated by `storegw provision wifi`)",
        "# ap_isolate: diners' phones cannot reach each other",
        f"interface={p.interface}", "driver=nl80211", f"ssid={p.ssid}", "utf8_ssid=1",
        f"country_code={p.country}", "ieee80211d=1", "hw_mode=g", f"channel={p.channel}", "ieee80211n=1",
        "wmm_enabled=1", "auth_algs=1", "ignore_broadcast_ssid=0",
        "ap_isolate=1",
    ]
    if passphrase:
        lines += ["wpa=2", "wpa_key_mgmt=WPA-PSK", "rsn_pairwise=CCMP", f"wpa_passphrase={passphrase}"]
    return "\n".join(lines) + "\n"


def nm_connection(p: WifiPlan, store_id: str, passphrase: str = "") -> str:
    """A NetworkManager keyfile: AP mode, shared IPv4 (NM's own dnsmasq), no security section = open."""
    conn_uuid = uuid.uuid5(uuid.NAMESPACE_DNS, f"{CONNECTION}.{store_id}.storegw")
    text = f"""[connection]
id={CONNECTION}
uuid={conn_uuid}
type=wifi
interface-name={p.interface}
autoconnect=true

[wifi]
mode=ap
ssid={p.ssid}
band=bg
channel={p.channel}

[ipv4]
method=shared
address1={p.gateway}/{p.network.prefixlen}

[ipv6]
method=disabled
"""
    if passphrase:
        text += f"\n[wifi-security]\nkey-mgmt=wpa-psk\npsk={passphrase}\n"
    return text


def ifupdown(p: WifiPlan) -> str:
    """The AP interface's static address where NetworkManager is absent (ifupdown)."""
    return (f"# storegw: the diners' access point address (hostapd mode)\nallow-hotplug {p.interface}\n"
            f"iface {p.interface} inet static\n    address {p.gateway}/{p.network.prefixlen}\n")


@dataclass(frozen=True)
class GeneratedFile:
    """One generated file: its name in the output directory, where it is installed, its mode, its text."""

    name: str
    target: str
    mode: int
    text: str


def generate(cfg: Config, mode: str, *, passphrase: str = "", interface: str | None = None,
             ssid: str | None = None) -> tuple[WifiPlan, list[GeneratedFile]]:
    """The plan and the files of ``mode`` (``nm`` or ``hostapd``)."""
    p = plan(cfg, interface=interface, ssid=ssid)
    files = [GeneratedFile("diners.nft", "/etc/storegw/diners.nft", 0o644, nftables(p)),
             GeneratedFile("storegw-diners-firewall.service", "/etc/systemd/system/storegw-diners-firewall.service",
                           0o644, nft_unit())]
    if mode == "nm":
        files += [GeneratedFile(f"{CONNECTION}.nmconnection",
                                f"/etc/NetworkManager/system-connections/{CONNECTION}.nmconnection", 0o600,
                                nm_connection(p, cfg.store.id, passphrase)),
                  GeneratedFile("dnsmasq-shared.conf", f"/etc/NetworkManager/dnsmasq-shared.d/{CONNECTION}.conf",
                                0o644, dns_dhcp_options(p))]
    elif mode == "hostapd":
        files += [GeneratedFile("hostapd.conf", f"/etc/hostapd/{CONNECTION}.conf", 0o600, hostapd_conf(p, passphrase)),
                  GeneratedFile("dnsmasq.conf", f"/etc/dnsmasq.d/{CONNECTION}.conf", 0o644, dnsmasq_conf(p)),
                  GeneratedFile("interfaces", f"/etc/network/interfaces.d/{CONNECTION}", 0o644, ifupdown(p))]
    else:
        raise ConfigError(f"--mode: expected nm, hostapd or auto; found \"{mode}\"")
    return p, files


def detect_mode() -> str:
    """``nm`` when NetworkManager runs here, else ``hostapd``."""
    if shutil.which("nmcli"):
        res = subprocess.run(["nmcli", "-t", "-f", "RUNNING", "general"], capture_output=True, text=True,
                             timeout=10, check=False)
        if res.returncode == 0 and res.stdout.strip() == "running":
            return "nm"
    return "hostapd"


def write(files: list[GeneratedFile], out: Path) -> list[Path]:
    """Write the files into ``out`` (a staging directory); return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for f in files:
        path = out / f.name
        path.write_text(f.text, encoding="utf-8")
        os.chmod(path, f.mode)
        paths.append(path)
    return paths


def apply(files: list[GeneratedFile], mode: str) -> list[str]:
    """Install the files where they belong and start the AP (root); return the commands run."""
    if os.geteuid() != 0:
        raise GatewayError("--apply installs system files: run it as root (sudo storegw provision wifi ...)")
    for f in files:
        target = Path(f.target)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(f.text, encoding="utf-8")
        os.chmod(tmp, f.mode)
        os.replace(tmp, target)
    commands = [["nft", "-f", "/etc/storegw/diners.nft"],
                ["systemctl", "daemon-reload"], ["systemctl", "enable", "storegw-diners-firewall.service"]]
    if mode == "nm":
        commands += [["nmcli", "connection", "reload"], ["nmcli", "connection", "up", CONNECTION]]
    else:
        commands += [["sed", "-i", f"s|^#\\?DAEMON_CONF=.*|DAEMON_CONF=/etc/hostapd/{CONNECTION}.conf|",
                      "/etc/default/hostapd"],
                     ["systemctl", "unmask", "hostapd"], ["systemctl", "enable", "--now", "hostapd", "dnsmasq"],
                     ["systemctl", "restart", "dnsmasq"]]
    done = []
    for cmd in commands:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
        done.append(" ".join(cmd))
        if res.returncode != 0:
            raise GatewayError(f"`{' '.join(cmd)}` failed: {(res.stderr or res.stdout).strip()[:300]}")
    return done
