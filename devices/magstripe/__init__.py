"""Magnetic stripe readers (ISO/IEC 7813 tracks 1 and 2): membership and loyalty stripes.

``protocol.py`` parses swipes and recognises payment cards, ``driver.py`` turns member numbers into
``card_ref`` and refuses payment cards (masked PAN only), ``simulator.py`` is a reader on a pty.
"""

from __future__ import annotations

from typing import Any

from devices.base import DriverSpec
from gateway.core.options import DeviceConfig, OptionSpec

OPTIONS = {
    "baudrate": OptionSpec("int", 9600, help="Serial speed (ignored by USB-CDC readers)."),
    "idle_timeout": OptionSpec(
        "duration", "200ms",
        help="Silence that ends a swipe when the reader sends no CR/LF after it."),
}


def build(cfg: DeviceConfig) -> Any:
    """Build the magstripe driver for one ``[[devices]]`` entry (options already validated)."""
    from devices.magstripe.driver import MagstripeDriver

    return MagstripeDriver.from_options(cfg.id, cfg.port, cfg.options)


def simulator() -> Any:
    """Return the simulator class (imported only when a simulator is wanted)."""
    from devices.magstripe.simulator import MagstripeSimulator

    return MagstripeSimulator


SPEC = DriverSpec(
    kind="magstripe",
    description="Magnetic stripe reader: membership cards as card_ref; payment cards refused (masked PAN only)",
    factory=build,
    options=OPTIONS,
    simulator=simulator,
)
