"""``storegw simulate``: run a simulated serial device on a pseudo-terminal, for technicians and demos."""

from __future__ import annotations

import sys
import threading
from typing import Any

import click

from devices.registry import FAMILIES
from gateway.core.errors import ConfigError, GatewayError

# The families that ship a serial simulator (their SPEC.simulator).
SIMULATORS = {kind: spec.simulator for kind, spec in FAMILIES.items() if spec.simulator is not None}


def make_simulator(kind: str, link: str | None) -> Any:
    """Return the (unplugged) simulator of a device family."""
    if kind not in SIMULATORS:
        raise ConfigError(f"unknown KIND \"{kind}\"; expected one of {', '.join(SIMULATORS)}")
    return SIMULATORS[kind]()(link)


def run(kind: str, link: str | None, every: float, count: int, out: Any = click.echo) -> None:
    """Plug a simulator, print its port, send samples every ``every`` s (or on Enter) until done."""
    sim = make_simulator(kind, link)
    try:
        port = sim.plug()
    except OSError as err:
        raise GatewayError(f"cannot create the simulated port{f' at {link}' if link else ''}: {err}") from err
    stop = threading.Event()
    try:
        out(f"{kind} simulator on {port}" + (f" (-> {sim.slave_name})" if link else ""))
        out(f"configure: port = \"{port}\"   (Ctrl-C to stop)")
        if not every:
            out("press Enter to send a sample")
        sent = 0
        while not count or sent < count:
            if every:
                if stop.wait(every):
                    break
            elif not sys.stdin.readline():
                break  # end of input
            out(f"sent {sim.sample()}")
            sent += 1
        if every and count:
            stop.wait(every)  # let the gateway take the last sample (a placed card, a register) too
    except KeyboardInterrupt:
        pass
    finally:
        sim.unplug()


@click.command("simulate")
@click.argument("kind", type=click.Choice(sorted(SIMULATORS)), metavar="KIND")
@click.option("--link", type=click.Path(dir_okay=False), default=None,
              help="Stable path (a symlink to the pty) to put in the config, like /dev/serial/by-id/...; "
                   "kept the same when the simulator is restarted.")
@click.option("--every", type=float, default=0.0, show_default=True,
              help="Send a sample every N seconds (0: on each Enter).")
@click.option("--count", type=int, default=0, show_default=True,
              help="Stop after N samples (0: until Ctrl-C).")
def simulate(kind: str, link: str | None, every: float, count: int) -> None:
    """Run a simulated KIND device on a pseudo-terminal speaking the real protocol.

    KIND: scanner, em4100, magstripe, idcard, mrz, modbus.

    Prints the port to configure, then sends a sample (a scan, a card, a swipe, a document; the
    ID-card reader places a card and answers the gateway's polls; the Modbus slave changes a
    register) every N seconds or on Enter. The samples are the protocol test vectors.

    \b
    Examples:
      storegw simulate scanner --link /tmp/scanner --every 2
      storegw simulate idcard --link /tmp/idreader          # Enter places the next card
      storegw simulate modbus --link /tmp/rs485 --every 5
    """
    try:
        run(kind, link, every, count)
    except GatewayError as err:
        click.echo(f"storegw: error: {err}", err=True)
        sys.exit(err.exit_code)
