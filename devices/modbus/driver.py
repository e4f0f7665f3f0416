"""Modbus RTU equipment on RS-485: polled with pymodbus's serial client, readings join the telemetry path.

Every ``interval`` the driver reads the configured registers (grouped into as few requests as
possible) and delivers one :class:`~gateway.core.models.Reading` with the decoded metrics, exactly as an
MQTT device's telemetry message would arrive. A slave that does not answer, answers with a bad CRC
or times out counts as a failure; ``max_failures`` failed polls in a row make the device
unavailable, the next good answer makes it available again. A port that disappears (unplugged
adapter) makes it unavailable at once and is reopened with backoff.

pymodbus and pyserial exceptions end here: ``ConnectionException`` becomes DeviceUnavailable,
other ``ModbusException`` a counted failure.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from pymodbus.client import ModbusSerialClient
from pymodbus.exceptions import ConnectionException, ModbusException

from devices.modbus.registers import ReadBlock, Register, parse_map, plan
from devices.transport import Backoff, DriverStats, Presence, port_path
from gateway.core.errors import DeviceUnavailable
from gateway.core.models import EventSink, Reading, now_ms

_LOGGER = logging.getLogger(__name__)


class ModbusDriver(Presence):
    """Poll a set of Modbus RTU slaves on one serial port and report their registers as readings."""

    def __init__(self, device_id: str, port: str, registers: Sequence[Register], *, baudrate: int = 9600,
                 parity: str = "N", stopbits: int = 1, interval: float = 10.0, timeout: float = 0.5,
                 max_failures: int = 3, word_order: str = "big") -> None:
        super().__init__(device_id)
        self.port = port
        self.registers = tuple(registers)
        self.blocks = plan(self.registers)
        self.interval = interval
        self.max_failures = max(1, max_failures)
        self.word_order = word_order
        self.stats = DriverStats()
        self._client = ModbusSerialClient(port, baudrate=baudrate, parity=parity, stopbits=stopbits,
                                          timeout=timeout, retries=0, name=f"storegw-{device_id}")
        read = self._client.read_holding_registers
        # pymodbus 3.10 renamed the unit keyword from ``slave`` to ``device_id``.
        self._unit_kw = "device_id" if "device_id" in inspect.signature(read).parameters else "slave"
        self._failures = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_options(cls, device_id: str, port: str, options: Mapping[str, Any]) -> ModbusDriver:
        """Build from validated ``[[devices]]`` options (the register map is parsed here)."""
        registers = parse_map(options["registers"], f"devices.{device_id}.options.registers")
        return cls(device_id, port, registers, baudrate=options["baudrate"], parity=options["parity"],
                   stopbits=options["stopbits"], interval=options["interval"], timeout=options["timeout"],
                   max_failures=options["max_failures"], word_order=options["word_order"])

    # -- Driver protocol
    def start(self, sink: EventSink) -> None:
        """Start the poll thread; returns at once."""
        if self._thread is not None:
            return
        self._sink = sink
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"storegw-dev-{self.device_id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling, close the port and join the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5 + self._client.comm_params.timeout_connect)
            self._thread = None

    # -- the thread
    def _run(self) -> None:
        backoff = Backoff()
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    self._open()
                    self.poll()
                except DeviceUnavailable as err:
                    self._client.close()
                    self.stats.disconnects += 1
                    self.set_available(False, str(err))
                    self._stop.wait(backoff.next())
                    continue
                backoff.reset()
                self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))
        finally:
            self._client.close()

    def _open(self) -> None:
        path = port_path(self.port)
        if path is not None and not os.path.exists(path):
            raise DeviceUnavailable(f"{self.port} does not exist (unplugged?)")
        if self._client.connected:
            return
        if not self._client.connect():
            raise DeviceUnavailable(f"cannot open {self.port}")
        self.stats.opens += 1
        self._failures = 0

    def poll(self) -> Reading | None:
        """Read every block once; deliver and return the reading (None if no slave answered)."""
        metrics: dict[str, float] = {}
        answered = failed = 0
        reason = ""
        for block in self.blocks:
            try:
                words = self._read(block)
            except ModbusException as err:
                failed += 1
                reason = str(err)
                continue
            answered += 1
            if words is None:
                continue  # an exception response: the slave is there, the map is wrong
            for reg in block.registers:
                offset = reg.address - block.address
                metrics[reg.metric] = reg.decode(words[offset: offset + reg.count], self.word_order)
        if answered:
            self._failures = 0
            self.set_available(True)
        elif failed:
            self._failures += 1
            _LOGGER.debug("Device %s: poll failed (%d in a row)", self.device_id, self._failures)
            if self._failures >= self.max_failures:
                self.set_available(False, f"no valid answer from the Modbus slave(s) on {self.port} "
                                          f"{self._failures} times in a row (timeout or CRC error): "
                                          f"{reason[:120]}")
        if not metrics:
            return None
        ts = now_ms()
        payload = json.dumps(metrics, sort_keys=True, separators=(",", ":")).encode()
        reading = Reading(self.device_id, ts, metrics, hashlib.blake2b(payload, digest_size=8).hexdigest())
        self.stats.events += 1
        if self._sink is not None:
            self._sink.reading(reading)
        return reading

    def _read(self, block: ReadBlock) -> list[int] | None:
        """Return the block's register words, None for an exception response; raise on no answer."""
        client = self._client
        read = client.read_holding_registers if block.function == 3 else client.read_input_registers
        try:
            resp = read(block.address, count=block.count, **{self._unit_kw: block.slave})
        except ConnectionException as err:
            raise DeviceUnavailable(f"{self.port} stopped answering: {err}") from err
        if resp.isError():
            self.stats.protocol_errors += 1
            _LOGGER.debug("Device %s: slave %d refused a read at %#06x: %s", self.device_id, block.slave,
                          block.address, resp)
            return None
        words = list(resp.registers)
        if len(words) < block.count:
            raise ModbusException(f"slave {block.slave} returned {len(words)} of {block.count} registers")
        return words
