"""Chinese 2nd-generation resident ID card readers (SAM_V/SAM_A serial protocol), for guest registration.

``protocol.py`` frames SAM commands and answers and decodes the card text, ``gateway/core/gb11643.py`` checks the
citizen identity number, ``driver.py`` polls the reader, ``simulator.py`` is a reader on a pty.
"""

from __future__ import annotations

from typing import Any

from devices.base import DriverSpec
from gateway.core.options import DeviceConfig, OptionSpec

OPTIONS = {
    "baudrate": OptionSpec(
        "int", 115200, help="Serial speed of the SAM module (115200 unless changed with command 60 xx)."),
    "poll_interval": OptionSpec(
        "duration", "500ms", help="How often the reader is asked whether a card is on it (find, 20 01)."),
    "response_timeout": OptionSpec(
        "duration", "1s", help="How long to wait for the reader's answer to one command."),
    "max_failures": OptionSpec(
        "int", 3, help="Unanswered commands in a row after which the reader is reported unavailable."),
}


def build(cfg: DeviceConfig) -> Any:
    """Build the ID-card driver for one ``[[devices]]`` entry (options already validated)."""
    from devices.idcard.driver import IdCardDriver

    return IdCardDriver.from_options(cfg.id, cfg.port, cfg.options)


def simulator() -> Any:
    """Return the simulator class (imported only when a simulator is wanted)."""
    from devices.idcard.simulator import IdCardSimulator

    return IdCardSimulator


SPEC = DriverSpec(
    kind="idcard",
    description="Resident ID card reader (SAM): masked for staff, full fields for guest registration",
    factory=build,
    options=OPTIONS,
    simulator=simulator,
)
