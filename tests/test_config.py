"""Configuration: validated once, errors that teach (dotted key, expectation, found, fix)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gateway import config
from gateway.core.errors import ConfigError

MINIMAL = '[store]\nid = "sh-001"\ndata_dir = "/tmp/x"\n'


def _load(tmp_path, text: str):
    p = tmp_path / "c.toml"
    p.write_text(text)
    return config.load(p)


def test_minimal_config_gets_defaults(tmp_path):
    cfg = _load(tmp_path, MINIMAL)
    assert cfg.store.id == "sh-001"
    assert cfg.uplink.keepalive == 30.0
    assert cfg.telemetry.summary_window == 60.0
    assert cfg.telemetry.raw_retention == 7 * 86400
    assert cfg.uplink.budget == 256 * 1000**2
    assert cfg.prefix == "storegw/v1/sh-001"


def test_unknown_key_gets_did_you_mean(tmp_path):
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, MINIMAL + '[uplink]\nhots = "hq.example.com"\n')
    assert "did you mean `host`" in str(err.value)
    assert err.value.key == "uplink.hots"
    assert err.value.exit_code == 2


def test_unknown_section(tmp_path):
    with pytest.raises(ConfigError, match="did you mean `uplink`"):
        _load(tmp_path, MINIMAL + "[uplnk]\nhost = 'x'\n")


@pytest.mark.parametrize(("value", "message"), [
    ("60", "has no time unit! Did you mean \"60s\""),
    ('"60"', "Did you mean \"60s\""),
    ('"1 fortnight"', "expected a duration with a unit"),
    ("true", "expected a duration"),
])
def test_durations_need_a_unit(tmp_path, value, message):
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, MINIMAL + f"[telemetry]\nsummary_window = {value}\n")
    assert message in str(err.value)
    assert "telemetry.summary_window" in str(err.value)


def test_durations_parse():
    assert config.parse_duration("500ms", "k") == 0.5
    assert config.parse_duration("2m", "k") == 120
    assert config.parse_duration("7d", "k") == 7 * 86400


@pytest.mark.parametrize(("text", "fragment"), [
    ('[store]\nid = "SH 001"\n', 'try "sh-001"'),
    ("[store]\nname = 'x'\n", "store.id is required"),
    (MINIMAL + "[local_mqtt]\nport = 70000\n", "local_mqtt.port: expected a TCP port"),
    (MINIMAL + "[local_mqtt]\nembedded = 'yes'\n", "write true or false"),
    (MINIMAL + "[web]\nlisten = '8080'\n", "expected HOST:PORT"),
    (MINIMAL + "[uplink]\nprotocol = '5.0'\n", 'did you mean "5"'),
    (MINIMAL + "[uplink]\nbudget = 100\n", 'did you mean "100MB"'),
    (MINIMAL + "[uplink]\ncert_file = 'a.pem'\n", "go together"),
    (MINIMAL + "[[alerts.rules]]\nname = 'r'\nmetric = 't'\n", "exactly one of `above` or `below`"),
    (MINIMAL + "[[alerts.rules]]\nname = 'r'\nmetric = 't'\nabove = 8.0\nclear_below = 9.0\n", "hysteresis"),
    (MINIMAL + "[[alerts.rules]]\nname = 'r'\nmetric = 't'\nabove = 8.0\nfor = 30\n", 'Did you mean "30s"'),
    (MINIMAL + "[[devices]]\nkind = 'scanner'\n", "devices[0].id is required"),
    (MINIMAL + "[[devices]]\nid = 'a b'\nkind = 'scanner'\n", "devices[0].id: expected"),
    (MINIMAL + "[[devices]]\nid = 'a'\nkind = 'scanner'\n[[devices]]\nid = 'a'\nkind = 'scanner'\n", "used twice"),
    ("[store\nid=1", "not valid TOML"),
    (MINIMAL + "[backup]\nat = '3:30'\n", 'expected a local time "HH:MM"'),
    (MINIMAL + "[local_mqtt]\nclient_id = 'storegw-sh-001'\n[uplink]\nhost = '127.0.0.1'\nport = 1883\n",
     "the broker would keep disconnecting one for the other"),
])
def test_errors_name_the_key_and_the_fix(tmp_path, text, fragment):
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, text)
    assert fragment in str(err.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(tmp_path / "nope.toml")


def test_rules_parse(tmp_path):
    cfg = _load(tmp_path, MINIMAL + """
[[alerts.rules]]
name = "fridge-warm"
devices = "fridge-*"
metric = "temp_c"
above = 8.0
for = "2m"
clear_below = 6.0
severity = "major"
""")
    (rule,) = cfg.alerts.rules
    assert rule.for_ == 120
    assert rule.matches("fridge-3") and not rule.matches("freezer-1")


def test_config_show_masks_secrets(tmp_path):
    cfg = _load(tmp_path, MINIMAL + "[uplink]\nusername = 'u'\npassword_file = '/etc/storegw/hq-password'\n")
    shown = config.to_display(cfg)
    assert shown["uplink"]["password_file"] == "***"
    assert shown["uplink"]["username"] == "u"


def _cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway", *args], input=stdin, capture_output=True, timeout=60)


def test_cli_config_check_exit_codes(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text(MINIMAL)
    ok = _cli("config", "check", str(good))
    assert ok.returncode == 0, ok.stderr
    assert b"ok" in ok.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text(MINIMAL + "[uplink]\nhots = 'x'\n")
    res = _cli("config", "check", str(bad))
    assert res.returncode == 2
    assert b"did you mean `host`" in res.stderr
    assert b"Traceback" not in res.stderr
    run = _cli("run", "--config", str(bad))
    assert run.returncode == 2
    assert b"did you mean `host`" in run.stderr


def test_cli_config_show(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text(MINIMAL)
    res = _cli("config", "show", str(p))
    assert res.returncode == 0
    assert b'"keepalive": 30.0' in res.stdout


def test_device_options_are_typed_at_load_and_accept_a_nested_table(tmp_path):
    cfg = _load(tmp_path, MINIMAL + """
[[devices]]
id = "scanner-bar"
kind = "scanner"
port = "loop://"
debounce = "2s"

[[devices]]
id = "printer-hot"
kind = "escpos"
port = "tcp://127.0.0.1:9100"
[devices.options]
station = "hot"
""")
    scanner, printer = cfg.devices  # config.load types every family's options (devices.registry)
    assert scanner.options["debounce"] == 2.0
    assert printer.options["station"] == "hot"


def test_cli_config_check_reports_device_option_errors(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text(MINIMAL + '[[devices]]\nid = "s"\nkind = "scaner"\nport = "loop://"\n')
    res = _cli("config", "check", str(p))
    assert res.returncode == 2 and b'did you mean "scanner"' in res.stderr
    p.write_text(MINIMAL + '[[devices]]\nid = "s"\nkind = "scanner"\nport = "loop://"\ndebounce = 2\n')
    res = _cli("config", "check", str(p))
    assert res.returncode == 2 and b"devices[0].debounce" in res.stderr and b'"2s"' in res.stderr


def test_a_listen_port_in_other_digits_is_a_config_error():
    """"²".isdigit() is true and int("²") raises: a traceback instead of the key and the fix."""
    for port in ("８０８０", "²"):
        with pytest.raises(ConfigError, match="web.listen"):
            config.parse({"store": {"id": "sh-001", "data_dir": "/tmp/x"}, "web": {"listen": f"0.0.0.0:{port}"}})
