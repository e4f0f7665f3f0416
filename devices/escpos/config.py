"""A printer's validated settings, and the checks across printers (backup references).

Run by ``devices.registry`` when the config loads, so `storegw config check` catches a bad port,
width or backup before anything starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from devices.escpos.driver import parse_port
from gateway.core.errors import ConfigError
from gateway.core.options import DeviceConfig


@dataclass(frozen=True)
class PrinterConfig:
    """One printer's validated settings."""

    id: str
    port: str
    station: str
    backup: str
    failover_after: float
    encoding: str
    width: int
    cut: bool
    status_timeout: float
    confirm_timeout: float
    poll: float
    status_interval: float
    max_attempts: int
    baudrate: int
    verify: bool

    @classmethod
    def from_device(cls, dev: DeviceConfig, where: str) -> PrinterConfig:
        """Build from a validated ``[[devices]]`` entry; check what the option types cannot."""
        o = dev.options  # validated against SPEC's options: every key is present, with its default
        parse_port(dev.port, f"{where}.port")
        width = int(o["width"])
        if not 16 <= width <= 96:
            raise ConfigError(f"{where}.width: expected 16-96 characters (48 for 80 mm paper, 32 for "
                              f"58 mm), found {width}", key=f"{where}.width")
        if int(o["max_attempts"]) < 1:
            raise ConfigError(f"{where}.max_attempts: expected at least 1", key=f"{where}.max_attempts")
        return cls(id=dev.id, port=dev.port, station=str(o["station"]), backup=str(o["backup"]),
                   failover_after=float(o["failover_after"]), encoding=str(o["encoding"]), width=width,
                   cut=bool(o["cut"]), status_timeout=float(o["status_timeout"]),
                   confirm_timeout=float(o["confirm_timeout"]), poll=float(o["poll"]),
                   status_interval=float(o["status_interval"]), max_attempts=int(o["max_attempts"]),
                   baudrate=int(o["baudrate"]), verify=bool(o["verify"]))


def validate_printers(devices: Sequence[DeviceConfig]) -> dict[str, PrinterConfig]:
    """Return every printer's settings; check ports, widths and backup references (ConfigError)."""
    printers: dict[str, PrinterConfig] = {}
    for i, dev in enumerate(devices):
        if dev.kind == "escpos":
            printers[dev.id] = PrinterConfig.from_device(dev, f"devices[{i}]")
    for i, dev in enumerate(devices):
        backup = printers[dev.id].backup if dev.id in printers else ""
        if backup and (backup not in printers or backup == dev.id):
            others = ", ".join(p for p in printers if p != dev.id) or "none"
            raise ConfigError(f"devices[{i}].backup: \"{backup}\" is not another printer; printers: {others}",
                              key=f"devices[{i}].backup")
    return printers
