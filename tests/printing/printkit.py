"""Real parts for the printing tests: virtual printers on loopback TCP and in-process gateways.

Test modules import the fixtures they use from here (``tests/printing`` has no conftest.py, so
``from conftest import ...`` elsewhere keeps meaning the top-level one). Each fixture function is
``<name>_fixture`` registered as ``<name>``, so importing it does not shadow the test argument.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from realparts import free_port  # noqa: F401 - re-exported to the printing tests
from realparts import wait_for as _wait_for

from devices.escpos.simulator import VirtualPrinter

# Short intervals so faults are noticed quickly; every wait in the tests is still bounded, never timed.
FAST = {"poll": "100ms", "status_timeout": "500ms", "confirm_timeout": "3s", "status_interval": "300ms"}


def wait_for(pred: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Bounded wait with the printing tests' default timeout (see realparts.wait_for)."""
    return _wait_for(pred, timeout, what)


def device_toml(device_id: str, port: str, **options: Any) -> str:
    """Return one ``[[devices]]`` printer entry (with the FAST intervals unless overridden)."""
    lines = ["[[devices]]", f'id = "{device_id}"', 'kind = "escpos"', f'port = "{port}"']
    for key, value in {**FAST, **options}.items():
        lines.append(f"{key} = {_toml(value)}")
    return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return f'"{value}"'


def config_text(data_dir: Path, mqtt_port: int, devices: str) -> str:
    """Return a gateway config: the test broker, no uplink, no web server needed."""
    return f"""\
[store]
id = "sh-001"
data_dir = "{data_dir.as_posix()}"

[local_mqtt]
host = "127.0.0.1"
port = {mqtt_port}

[uplink]
enabled = false
host = "127.0.0.1"
port = {mqtt_port}
tls = false

[web]
listen = "127.0.0.1:{free_port()}"

{devices}
"""


def ticket_doc(n: int, note: str = "") -> list[dict[str, Any]]:
    """Return a small kitchen ticket whose first and last lines name job ``n``."""
    doc: list[dict[str, Any]] = [{"t": "text", "text": f"JOB {n}", "size": "double", "bold": True},
                                 {"t": "columns", "left": f"宫保鸡丁 Kung Pao {n}", "right": "x1"}]
    if note:
        doc.append({"t": "text", "text": note})
    doc += [{"t": "rule"}, {"t": "text", "text": f"END {n}"}, {"t": "cut"}]
    return doc


@pytest.fixture(name="printer_factory")
def printer_factory_fixture() -> Iterator[Callable[..., VirtualPrinter]]:
    """Start virtual network printers; all are stopped after the test."""
    started: list[VirtualPrinter] = []

    def make(**kw: Any) -> VirtualPrinter:
        vp = VirtualPrinter(**kw).start()
        started.append(vp)
        return vp

    yield make
    for vp in started:
        vp.stop()


@pytest.fixture(name="vprinter")
def vprinter_fixture(printer_factory: Callable[..., VirtualPrinter]) -> VirtualPrinter:
    """One virtual network printer."""
    return printer_factory()


@pytest.fixture(name="printing_config")
def printing_config_fixture(tmp_path: Path, broker: Any) -> Callable[..., Path]:
    """Write a gateway config with the given ``[[devices]]`` text; return its path."""
    def write(devices: str, name: str = "storegw.toml") -> Path:
        path = tmp_path / name
        path.write_text(config_text(tmp_path / "data", broker.port, devices))
        return path
    return write


@pytest.fixture(name="gateway_factory")
def gateway_factory_fixture(printing_config: Callable[..., Path]) -> Iterator[Callable[..., Any]]:
    """Build and start in-process gateways (no web server); every one is stopped after the test."""
    from gateway import app, config

    running: list[Any] = []

    def make(devices: str, *, start: bool = True) -> Any:
        gw = app.build(config.load(printing_config(devices)))  # build() validates the device options
        if start:
            gw.start(web=False)
        running.append(gw)
        return gw

    yield make
    for gw in running:
        gw.stop()
