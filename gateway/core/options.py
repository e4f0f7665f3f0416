"""Option specs and value validators shared by the config and the device families (stdlib only).

A config section or a device family declares its options once, with a type, a default and help
text; these validators turn raw TOML values into typed ones, or raise a ConfigError that names the
dotted key, what was expected, what was found and the fix (ESPHome style).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from gateway.core.errors import ConfigError

# ---------------------------------------------------------------------------
# value validators


_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KiB|MiB|GiB)\s*$", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "kib": 1024, "mib": 1024**2, "gib": 1024**3}
STORE_ID_RE = re.compile(r"^[a-z0-9-]{1,32}$")


def type_name(value: Any) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "a list", dict: "a table"}.get(type(value), type(value).__name__)


def parse_duration(value: Any, key: str) -> float:
    """Return a duration string such as ``"30s"`` in seconds, or raise a teaching ConfigError."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ConfigError(f"{key}: expected a duration such as \"30s\", found {type_name(value)}", key=key)
    if isinstance(value, (int, float)):
        raise ConfigError(
            f"{key}: don't know what '{value}' means as it has no time unit! "
            f"Did you mean \"{value}s\"? (units: ms, s, m, h, d)", key=key)
    m = _DURATION_RE.match(value)
    if not m:
        hint = f" Did you mean \"{value.strip()}s\"?" if value.strip().replace(".", "", 1).isdigit() else ""
        raise ConfigError(
            f"{key}: expected a duration with a unit such as \"500ms\", \"30s\", \"2m\", \"7d\"; "
            f"found \"{value}\".{hint}", key=key)
    return float(m.group(1)) * _DURATION_UNITS[m.group(2)]


def parse_size(value: Any, key: str) -> int:
    """Return a size string such as ``"256MB"`` in bytes."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ConfigError(f"{key}: expected a size such as \"256MB\", found {type_name(value)}", key=key)
    if isinstance(value, int):
        raise ConfigError(f"{key}: '{value}' has no unit; did you mean \"{value}MB\"? (units: KB, MB, GB)",
                          key=key)
    m = _SIZE_RE.match(value)
    if not m:
        raise ConfigError(f"{key}: expected a size such as \"256MB\" or \"1GiB\", found \"{value}\"", key=key)
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])


def check_str(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected a string, found {type_name(value)} ({value!r})", key=key)
    return value


def _check_bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        hint = " (write true or false, without quotes)" if isinstance(value, str) else ""
        raise ConfigError(f"{key}: expected true or false, found {type_name(value)} ({value!r}){hint}", key=key)
    return value


def _check_int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key}: expected a whole number, found {type_name(value)} ({value!r})", key=key)
    return value


def _check_float(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{key}: expected a number, found {type_name(value)} ({value!r})", key=key)
    return float(value)


def _check_port(value: Any, key: str) -> int:
    port = _check_int(value, key)
    if not 1 <= port <= 65535:
        raise ConfigError(f"{key}: expected a TCP port 1-65535, found {port}", key=key)
    return port


def _check_store_id(value: Any, key: str) -> str:
    text = check_str(value, key)
    if not STORE_ID_RE.match(text):
        suggestion = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:32] or "sh-001"
        raise ConfigError(
            f"{key}: expected 1-32 characters of a-z, 0-9 and '-', found \"{text}\"; "
            f"try \"{suggestion}\"", key=key)
    return text


def _check_listen(value: Any, key: str) -> str:
    text = check_str(value, key)
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(f"{key}: expected HOST:PORT such as \"0.0.0.0:8080\", found \"{text}\"", key=key)
    return text


def _check_str_list(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{key}: expected a list of strings such as [\"fridge-*\"], found {value!r}", key=key)
    return tuple(value)


def _check_int_list(value: Any, key: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ConfigError(f"{key}: expected a list of whole numbers such as [0, 1000, 5000], found {value!r}", key=key)
    return tuple(value)


def _check_enum(choices: tuple[str, ...]) -> Callable[[Any, str], str]:
    def check(value: Any, key: str) -> str:
        text = check_str(value, key)
        if text not in choices:
            close = difflib.get_close_matches(text, choices, n=1, cutoff=0.4)
            hint = f"; did you mean \"{close[0]}\"?" if close else ""
            raise ConfigError(f"{key}: expected one of {', '.join(choices)}; found \"{text}\"{hint}", key=key)
        return text
    return check


_CLOCK_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def _check_clock(value: Any, key: str) -> str:
    text = check_str(value, key)
    if text and not _CLOCK_RE.match(text):
        raise ConfigError(f'{key}: expected a local time "HH:MM" such as "03:30" (or "" for none); found "{text}"',
                          key=key)
    return text


VALIDATORS: dict[str, Callable[[Any, str], Any]] = {
    "str": check_str,
    "path": check_str,
    "bool": _check_bool,
    "int": _check_int,
    "float": _check_float,
    "port": _check_port,
    "duration": parse_duration,
    "size": parse_size,
    "store_id": _check_store_id,
    "listen": _check_listen,
    "list[str]": _check_str_list,
    "list[int]": _check_int_list,
    "clock": _check_clock,
}


def validate_value(type_: str, value: Any, key: str) -> Any:
    """Validate one value of a declared type (``enum:a|b`` for choices)."""
    if type_.startswith("enum:"):
        return _check_enum(tuple(type_[5:].split("|")))(value, key)
    return VALIDATORS[type_](value, key)


def opt(type_: str, default: Any = dataclasses.MISSING, help: str = "", *, secret: bool = False) -> Any:  # noqa: A002
    """Declare a config field with its type, default and one-line help."""
    meta = {"type": type_, "help": help, "secret": secret}
    if isinstance(default, (list, dict)):
        raise TypeError("use tuples for list defaults")
    if default is dataclasses.MISSING:
        return field(metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class OptionSpec:
    """A device-family option: its type (as in ``opt``), default and help."""

    type: str
    default: Any = None
    help: str = ""
    required: bool = False


def unknown_key(section: str, key: str, known: list[str]) -> ConfigError:
    dotted = f"{section}.{key}" if section else key
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    where = f"[{section}] " if section else ""
    hint = f"; did you mean `{close[0]}`?" if close else f"; valid keys: {', '.join(sorted(known))}"
    return ConfigError(f"`{where}{key}` is not an option{hint}", key=dotted)


def validate_options(section: str, raw: Mapping[str, Any], specs: Mapping[str, OptionSpec]) -> Mapping[str, Any]:
    """Validate a table of device options against its specs; return a read-only mapping."""
    out: dict[str, Any] = {}
    for key in raw:
        if key not in specs:
            raise unknown_key(section, key, list(specs))
    for key, spec in specs.items():
        dotted = f"{section}.{key}"
        if key in raw:
            out[key] = validate_value(spec.type, raw[key], dotted)
        elif spec.required:
            raise ConfigError(f"{dotted} is required: {spec.help}", key=dotted)
        elif spec.type in ("duration",) and isinstance(spec.default, str):
            out[key] = parse_duration(spec.default, dotted)
        else:
            out[key] = spec.default
    return MappingProxyType(out)


@dataclass(frozen=True)
class DeviceConfig:
    """[[devices]]: one staff device or piece of serial equipment."""

    id: str = opt("str", help="Device id, [A-Za-z0-9_.-]{1,64}; unique.")
    kind: str = opt("str", help="Family: scanner, em4100, magstripe, idcard, mrz, escpos, modbus, camera.")
    port: str = opt("str", "", help="pyserial URL or path (/dev/serial/by-id/..., socket://, rfc2217://, loop://); "
                    "printers also tcp://HOST:9100, usb://VID:PID, file:///dev/usb/lp0.")
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}),
                                       metadata={"type": "table", "help": "Family options (docs/devices.md).",
                                                 "secret": False})
