"""Passport and ID-document readers that send the ICAO 9303 machine-readable zone (TD1/TD2/TD3, visas).

``protocol.py`` groups lines into zones and checks every check digit, ``driver.py`` runs the port and
masks what staff see, ``simulator.py`` is a document reader on a pseudo-terminal.
"""

from __future__ import annotations

from typing import Any

from devices.base import DriverSpec
from gateway.core.options import DeviceConfig, OptionSpec

OPTIONS = {
    "baudrate": OptionSpec("int", 9600, help="Serial speed (ignored by USB-CDC readers)."),
    "idle_timeout": OptionSpec(
        "duration", "300ms", help="Silence that ends a zone whose last line has no line end."),
    "debounce": OptionSpec(
        "duration", "3s", help="The same document read again within this time is not reported again."),
}


def build(cfg: DeviceConfig) -> Any:
    """Build the MRZ driver for one ``[[devices]]`` entry (options already validated)."""
    from devices.mrz.driver import MrzDriver

    return MrzDriver.from_options(cfg.id, cfg.port, cfg.options)


def simulator() -> Any:
    """Return the simulator class (imported only when a simulator is wanted)."""
    from devices.mrz.simulator import MrzSimulator

    return MrzSimulator


SPEC = DriverSpec(
    kind="mrz",
    description="Passport/ID document reader (ICAO 9303 MRZ): masked for staff, full fields for registration",
    factory=build,
    options=OPTIONS,
    simulator=simulator,
)
