"""EM4100 125 kHz membership-card readers with ASCII serial output (RDM6300/RDM630, ID-12/ID-20).

``protocol.py`` frames and checks reads, ``driver.py`` runs the port and turns card ids into
``card_ref`` (never plain ids), ``simulator.py`` is a reader on a pseudo-terminal.
"""

from __future__ import annotations

from typing import Any

from devices.base import DriverSpec
from gateway.core.options import DeviceConfig, OptionSpec

OPTIONS = {
    "baudrate": OptionSpec("int", 9600, help="Serial speed; RDM6300 and ID-12 readers send at 9600."),
    "debounce": OptionSpec(
        "duration", "1s",
        help="A card held on the reader repeats its frame; it is reported again only after the reader "
             "was silent about it this long."),
}


def build(cfg: DeviceConfig) -> Any:
    """Build the EM4100 driver for one ``[[devices]]`` entry (options already validated)."""
    from devices.em4100.driver import EM4100Driver

    return EM4100Driver.from_options(cfg.id, cfg.port, cfg.options)


def simulator() -> Any:
    """Return the simulator class (imported only when a simulator is wanted)."""
    from devices.em4100.simulator import EM4100Simulator

    return EM4100Simulator


SPEC = DriverSpec(
    kind="em4100",
    description="EM4100 125 kHz card reader (RDM6300, ID-12/ID-20): membership cards as card_ref",
    factory=build,
    options=OPTIONS,
    simulator=simulator,
)
