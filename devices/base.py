"""What every device family provides: a driver spec, option specs and the driver interface."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.core.models import EventSink
from gateway.core.options import DeviceConfig, OptionSpec


class Driver(Protocol):
    """A running device: owns its port or process, reports to a sink, never raises from threads."""

    device_id: str

    def start(self, sink: EventSink) -> None:
        """Open the device in the background and begin reporting; returns at once."""

    def stop(self) -> None:
        """Close the device and join its threads."""

    @property
    def available(self) -> bool:
        """Whether the device is reachable right now."""


@dataclass(frozen=True)
class DriverSpec:
    """How a family is configured and built: ``[[devices]] kind = <kind>``."""

    kind: str
    description: str
    factory: Callable[[DeviceConfig], Driver] | None  # None: a domain service runs these devices
    options: Mapping[str, OptionSpec] = field(default_factory=dict)
    needs_port: bool = True
    extra: Mapping[str, Any] = field(default_factory=dict)
    # Checks across every device of this family (e.g. printer backup references), after each is valid.
    check_all: Callable[[Sequence[DeviceConfig]], Any] | None = None
    # Returns the family's simulator class (`storegw simulate KIND`), imported lazily.
    simulator: Callable[[], type] | None = None
