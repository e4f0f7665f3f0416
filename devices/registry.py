"""The device families, imported explicitly, and the validation of their ``[[devices]]`` options.

Adding a family is one folder (``devices/<kind>/`` with ``protocol.py``, ``driver.py``,
``simulator.py`` and a ``SPEC`` in ``__init__.py``) plus one line in ``FAMILIES`` below; see
docs/architecture.md ("Adding a device family").
"""

from __future__ import annotations

import dataclasses
import difflib

from devices import camera, em4100, escpos, idcard, magstripe, modbus, mrz, scanner
from devices.base import DriverSpec
from gateway.core.errors import ConfigError
from gateway.core.options import DeviceConfig, validate_options

FAMILIES: dict[str, DriverSpec] = {
    spec.kind: spec
    for spec in (scanner.SPEC, em4100.SPEC, magstripe.SPEC, idcard.SPEC, mrz.SPEC, escpos.SPEC, modbus.SPEC,
                 camera.SPEC)
}
KINDS = tuple(FAMILIES)


def spec(kind: str) -> DriverSpec | None:
    """Return the family's DriverSpec, or None for an unknown kind."""
    return FAMILIES.get(kind)


def validate_device(dev: DeviceConfig, where: str) -> DeviceConfig:
    """Validate one device's kind, port and family options; return it with typed options."""
    family = FAMILIES.get(dev.kind)
    if family is None:
        close = difflib.get_close_matches(dev.kind, KINDS, n=1)
        hint = f"; did you mean \"{close[0]}\"?" if close else ""
        raise ConfigError(f"{where}.kind: expected one of {', '.join(KINDS)}; found \"{dev.kind}\"{hint}",
                          key=f"{where}.kind")
    if family.needs_port and not dev.port:
        raise ConfigError(f"{where}.port is required for kind \"{dev.kind}\" (a /dev/serial/by-id/... path "
                          f"or a pyserial URL such as socket://10.0.0.5:4001)", key=f"{where}.port")
    options = validate_options(where, dev.options, family.options)
    check = family.extra.get("check")
    if check is not None:
        check(options, where)  # family-specific checks (e.g. a Modbus register map) at load time
    return dataclasses.replace(dev, options=options)


def validate_devices(devices: list[DeviceConfig]) -> tuple[DeviceConfig, ...]:
    """Run each family's checks across its devices (after ``validate_device`` on each)."""
    for family in FAMILIES.values():
        if family.check_all is not None:
            family.check_all(devices)
    return tuple(devices)
