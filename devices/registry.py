"""The device families and their specs; validates ``[[devices]]`` options at config load."""

from __future__ import annotations

import dataclasses
import difflib
import importlib

from devices.base import DriverSpec
from gateway.config import Config, validate_options
from gateway.errors import ConfigError

KINDS = ("scanner", "em4100", "magstripe", "idcard", "mrz", "escpos", "modbus", "camera")
# Families run by a domain service rather than as free-running drivers.
SERVICE_KINDS = frozenset({"escpos"})


def spec(kind: str) -> DriverSpec | None:
    """Return the family's DriverSpec, or None if the family has no driver in this build."""
    if kind not in KINDS:
        return None
    module = importlib.import_module(f"devices.{kind}")
    return getattr(module, "SPEC", None)


def validate(cfg: Config) -> Config:
    """Validate each device's kind, port and family options; return the config with typed options."""
    if cfg.devices_validated:
        return cfg
    devices = []
    for i, dev in enumerate(cfg.devices):
        where = f"devices[{i}]"
        if dev.kind not in KINDS:
            close = difflib.get_close_matches(dev.kind, KINDS, n=1)
            hint = f"; did you mean \"{close[0]}\"?" if close else ""
            raise ConfigError(f"{where}.kind: expected one of {', '.join(KINDS)}; found \"{dev.kind}\"{hint}",
                              key=f"{where}.kind")
        family = spec(dev.kind)
        if family is None:
            raise ConfigError(f"{where}.kind: the \"{dev.kind}\" family has no driver in this build",
                              key=f"{where}.kind")
        if family.needs_port and not dev.port:
            raise ConfigError(f"{where}.port is required for kind \"{dev.kind}\" (a /dev/serial/by-id/... path "
                              f"or a pyserial URL such as socket://10.0.0.5:4001)", key=f"{where}.port")
        options = validate_options(where, dev.options, family.options)
        check = family.extra.get("check")
        if check is not None:
            check(options, where)  # family-specific checks (e.g. a Modbus register map) at load time
        devices.append(dataclasses.replace(dev, options=options))
    return dataclasses.replace(cfg, devices=tuple(devices), devices_validated=True)
