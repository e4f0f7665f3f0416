"""`storegw provision wifi` without root: what each mode writes, and the config errors it names.

The files are exercised for real in network namespaces by tests/test_wifi_netns.py (root); here
the parts a namespace cannot show: the NetworkManager profile, hostapd, passphrases, refusals.
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from gateway.config import parse
from gateway.core.errors import ConfigError
from provisioning import wifi

ROOT = Path(__file__).resolve().parents[1]
BASE = """
[store]
id = "sh-001"
name = "测试店"
data_dir = "{data}"
[web]
listen = "0.0.0.0:8080"
public_host = "wifi.example-store.cn"
[ordering]
portal = true
https = true
[wifi]
interface = "wlan0"
uplink = "eth0"
address = "192.168.50.1/24"
staff_networks = ["192.168.10.0/24"]
"""


def _cfg(tmp_path: Path, **replace: str):
    text = BASE.format(data=(tmp_path / "data").as_posix())
    for old, new in replace.items():
        text = text.replace(old, new)
    return parse(tomllib.loads(text))


def test_nm_mode(tmp_path: Path) -> None:
    plan, files = wifi.generate(_cfg(tmp_path), "nm")
    by = {f.name: f for f in files}
    assert set(by) == {"diners.nft", "storegw-diners-firewall.service", "storegw-diners.nmconnection",
                       "dnsmasq-shared.conf"}
    profile = configparser.ConfigParser(interpolation=None)
    profile.read_string(by["storegw-diners.nmconnection"].text)
    assert profile["wifi"]["mode"] == "ap" and profile["wifi"]["ssid"] == "测试店"
    assert profile["ipv4"]["method"] == "shared" and profile["ipv4"]["address1"] == "192.168.50.1/24"
    assert "wifi-security" not in profile  # open: the portal is the door
    assert by["storegw-diners.nmconnection"].mode == 0o600
    shared = by["dnsmasq-shared.conf"].text
    assert 'dhcp-option=114,"https://wifi.example-store.cn/captive-portal/api"' in shared
    assert "address=/captive.apple.com/192.168.50.1" in shared and "address=/#/192.168.50.1" in shared
    assert "dhcp-range" not in shared  # NM's shared mode hands out the addresses
    nft = by["diners.nft"].text
    assert 'iifname "wlan0" counter drop' in nft
    assert "ip daddr { 192.168.10.0/24 }" in nft
    assert "tcp dport 443 accept" in nft  # https on: the gateway serves the API over TLS
    assert plan.dhcp_range == ("192.168.50.11", "192.168.50.254")
    assert plan.warnings == []


def test_hostapd_mode_and_passphrase(tmp_path: Path) -> None:
    _, files = wifi.generate(_cfg(tmp_path), "hostapd", passphrase="diners-secret-1", ssid="Store WiFi")
    by = {f.name: f for f in files}
    hostapd = by["hostapd.conf"].text
    assert "ssid=Store WiFi" in hostapd and "ap_isolate=1" in hostapd and "country_code=CN" in hostapd
    assert "wpa_passphrase=diners-secret-1" in hostapd and by["hostapd.conf"].mode == 0o600
    conf = by["dnsmasq.conf"].text
    assert "interface=wlan0" in conf and "dhcp-range=192.168.50.11,192.168.50.254,255.255.255.0,7200" in conf
    if shutil.which("dnsmasq"):
        (tmp_path / "dnsmasq.conf").write_text(conf)
        res = subprocess.run(["dnsmasq", "--test", "-C", str(tmp_path / "dnsmasq.conf")], capture_output=True,
                             text=True, check=False)
        assert res.returncode == 0, res.stderr


@pytest.mark.parametrize(("replace", "key"), [
    ({"portal = true": "portal = false"}, "ordering.portal"),
    ({'listen = "0.0.0.0:8080"': 'listen = "127.0.0.1:8080"'}, "web.listen"),
    ({'public_host = "wifi.example-store.cn"': 'public_host = ""'}, "web.public_host"),
])
def test_refusals_name_the_key(tmp_path: Path, replace: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        wifi.generate(_cfg(tmp_path, **replace), "nm")
    assert err.value.key == key


@pytest.mark.parametrize(("bad", "key"), [('address = "10.42.0.0/24"', "wifi.address"),
                                          ('address = "fd00::1/64"', "wifi.address"),
                                          ('address = "bogus"', "wifi.address"),
                                          ('staff_networks = ["nope"]', "wifi.staff_networks"),
                                          ('uplink = "wlan0"', "wifi.uplink")])
def test_wifi_config_errors(tmp_path: Path, bad: str, key: str) -> None:
    field = bad.split(" = ")[0]
    line = {"address": 'address = "192.168.50.1/24"', "staff_networks": 'staff_networks = ["192.168.10.0/24"]',
            "uplink": 'uplink = "eth0"'}[field]
    with pytest.raises(ConfigError) as err:
        _cfg(tmp_path, **{line: bad})
    assert err.value.key == key


def test_cli_writes_for_review(tmp_path: Path) -> None:
    cfg = tmp_path / "storegw.toml"
    cfg.write_text(BASE.format(data=(tmp_path / "data").as_posix()).replace("https = true", "https = false"))
    res = subprocess.run([sys.executable, "-m", "gateway", "provision", "wifi", "--config", str(cfg), "--mode", "nm",
                          "--out", str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT, check=False)
    assert res.returncode == 0, res.stderr
    assert "warning: ordering.https is false" in res.stdout
    assert (tmp_path / "out" / "storegw-diners.nmconnection").stat().st_mode & 0o777 == 0o600
    assert "--apply" in res.stdout
