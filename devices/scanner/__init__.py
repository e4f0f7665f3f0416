"""Barcode/QR scanners in serial mode (USB-CDC or RS-232): table QR codes and member/voucher codes.

``protocol.py`` frames and classifies scans (AIM ids, table URLs), ``driver.py`` runs the port,
``simulator.py`` is a scanner on a pseudo-terminal.
"""

from __future__ import annotations

from typing import Any

from devices.base import DriverSpec
from gateway.core.options import DeviceConfig, OptionSpec

OPTIONS = {
    "baudrate": OptionSpec("int", 9600, help="Serial speed (ignored by USB-CDC scanners)."),
    "terminator": OptionSpec(
        "enum:CR|LF|CRLF|TAB|none", "CR",
        help="Suffix the scanner is programmed to send after each code; \"none\" ends a scan after "
             "idle_timeout of silence."),
    "idle_timeout": OptionSpec(
        "duration", "100ms",
        help="Silence that ends a scan when terminator = \"none\"; with a terminator, unterminated bytes "
             "are discarded after it."),
    "debounce": OptionSpec(
        "duration", "1s", help="The same code seen again within this time is not reported again (0s: off)."),
    "aim": OptionSpec(
        "enum:required|optional|off", "optional",
        help="AIM symbology id (]Q1, ]E0, ...) before the data: \"required\" rejects scans without one, "
             "\"off\" treats a leading ] as data."),
    "table_hosts": OptionSpec(
        "list[str]", (),
        help="Hosts whose https://HOST/t/TOKEN URLs are this store's table codes (e.g. "
             "[\"order.example-store.cn\"]); empty: any host."),
}


def build(cfg: DeviceConfig) -> Any:
    """Build the scanner driver for one ``[[devices]]`` entry (options already validated)."""
    from devices.scanner.driver import ScannerDriver

    return ScannerDriver.from_options(cfg.id, cfg.port, cfg.options)


def simulator() -> Any:
    """Return the simulator class (imported only when a simulator is wanted)."""
    from devices.scanner.simulator import ScannerSimulator

    return ScannerSimulator


SPEC = DriverSpec(
    kind="scanner",
    description="Barcode/QR scanner on a serial port: table QR codes and member/voucher codes",
    factory=build,
    options=OPTIONS,
    simulator=simulator,
)
