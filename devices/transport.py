"""Serial ports as pyserial URLs, and the reader thread every serial family shares.

A port is always opened with ``serial.serial_for_url``: a ``/dev/serial/by-id/...`` path, a pty, or a
URL (``loop://``, ``socket://HOST:PORT``, ``rfc2217://HOST:PORT``). pyserial's exceptions end here:
they leave this module as :class:`~gateway.core.errors.DeviceUnavailable` (``from err``).

:class:`SerialDriver` owns one port in one thread. It feeds the family's protocol (the subclass's
``data_received``), survives unplugging (the port reports an error or its path disappears: the
device is reported unavailable once, then reopened with exponential backoff capped at
``BACKOFF_MAX`` so a replugged device is back within a few seconds), and never lets garbage, a
protocol error or a bug in a hook end the thread: those are counted.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import serial

from gateway.core.errors import DeviceUnavailable, ProtocolError
from gateway.core.models import Availability, DeviceEvent, EventSink, Reading, now_ms

_LOGGER = logging.getLogger(__name__)

BACKOFF_MIN = 0.1
BACKOFF_MAX = 2.0  # a replugged device is noticed within BACKOFF_MAX plus one open
RAW_KEEP = 4096  # DeviceEvent.raw: the newest bytes before an event
READ_INTERVAL = 0.05  # read timeout: how often the thread checks stop, idle, path and tick


def port_path(url: str) -> str | None:
    """Return the filesystem path a port refers to, or None for a URL such as ``socket://``."""
    if "://" in url:
        return None
    return url


def open_port(url: str, *, baudrate: int = 9600, timeout: float | None = READ_INTERVAL,
              **options: Any) -> serial.SerialBase:
    """Open a pyserial URL; raise DeviceUnavailable (with pyserial's reason) when it cannot be opened."""
    path = port_path(url)
    if path is not None and not os.path.exists(path):
        raise DeviceUnavailable(f"{url} does not exist (unplugged?)")
    if path is not None:
        # A lock, so a second gateway or a technician's terminal cannot silently steal half the bytes.
        options.setdefault("exclusive", True)
    try:
        return serial.serial_for_url(url, baudrate=baudrate, timeout=timeout, **options)
    except (serial.SerialException, OSError, ValueError) as err:
        raise DeviceUnavailable(f"cannot open {url}: {err}") from err


class Backoff:
    """Exponential reconnect delays: ``low``, doubling, capped at ``high``; ``reset()`` after success."""

    def __init__(self, low: float = BACKOFF_MIN, high: float = BACKOFF_MAX) -> None:
        self.low = low
        self.high = high
        self._next = low

    def next(self) -> float:
        """Return the delay before the next attempt and double the one after it."""
        delay = self._next
        self._next = min(self.high, self._next * 2)
        return delay

    def reset(self) -> None:
        """Start again from ``low``."""
        self._next = self.low


@dataclass
class DriverStats:
    """Counters a driver keeps (shown by tests, benches and the simulator CLI; no contents)."""

    bytes_in: int = 0
    events: int = 0
    suppressed: int = 0
    protocol_errors: int = 0
    hook_errors: int = 0
    opens: int = 0
    disconnects: int = 0


class Presence:
    """Report a device's availability to the sink once per change, and log it once per change."""

    def __init__(self, device_id: str) -> None:
        self.device_id = device_id
        self._sink: EventSink | None = None
        self._available: bool | None = None  # None: nothing reported yet
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        """Return whether the device is reachable right now."""
        return bool(self._available)

    def set_available(self, available: bool, reason: str = "") -> None:
        """Record the state; report and log it only if it changed."""
        with self._lock:
            if self._available is available:
                return
            first = self._available is None
            self._available = available
        if available:
            _LOGGER.info("Device %s is %s", self.device_id, "available" if first else "available again")
        else:
            _LOGGER.warning("Device %s is unavailable: %s", self.device_id, reason)
        if self._sink is not None:
            try:
                self._sink.availability(Availability(self.device_id, available, reason, now_ms()))
            except Exception:  # a sink must not raise; if it does, the device thread still lives
                _LOGGER.exception("Sink rejected availability of %s", self.device_id)


class SerialDriver(Presence):
    """Own one serial port in a reader thread: open, feed the protocol, reopen after unplugging.

    Subclasses implement the hooks, all called on the reader thread:
    ``connection_made()`` after every (re)open (reset the protocol), ``data_received(data, now)``,
    ``idle(now)`` once after ``idle_timeout`` seconds without bytes, ``tick(now)`` on every pass of
    the loop (masters send their commands here) and ``connection_lost()``. ``now`` is
    ``time.monotonic()``. A hook may raise ProtocolError (counted) or DeviceUnavailable (the port
    is closed and reopened); anything else is logged once and counted.

    A device that only talks when asked (a master/slave protocol) sets ``available_on_open = False``
    and calls ``set_available(True)`` on its first valid answer: an open port with nothing behind it
    is not an available device.
    """

    available_on_open = True

    def __init__(self, device_id: str, port: str, *, baudrate: int = 9600, idle_timeout: float = 0.0,
                 serial_options: Mapping[str, Any] | None = None,
                 backoff: tuple[float, float] = (BACKOFF_MIN, BACKOFF_MAX)) -> None:
        super().__init__(device_id)
        self.port = port
        self.baudrate = baudrate
        self.idle_timeout = idle_timeout
        self.serial_options = dict(serial_options or {})
        self.stats = DriverStats()
        self._backoff = Backoff(*backoff)
        self._serial: serial.SerialBase | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bug_logged = False
        self._raw = bytearray()  # bytes since the last event (DeviceEvent.raw), the newest RAW_KEEP

    # -- Driver protocol
    def start(self, sink: EventSink) -> None:
        """Start the reader thread; returns at once (the port is opened in the thread)."""
        if self._thread is not None:
            return
        self._sink = sink
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"storegw-dev-{self.device_id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Close the port and join the reader thread."""
        self._stop.set()
        ser = self._serial
        if ser is not None and hasattr(ser, "cancel_read"):
            try:
                ser.cancel_read()
            except (serial.SerialException, OSError):
                pass  # the thread closes the port itself
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    # -- for subclasses
    def write(self, data: bytes) -> None:
        """Send bytes to the device (reader thread only); DeviceUnavailable if the port is gone."""
        ser = self._serial
        if ser is None:
            raise DeviceUnavailable(f"{self.port} is not open")
        try:
            ser.write(data)
        except (serial.SerialException, OSError) as err:
            raise DeviceUnavailable(f"write to {self.port} failed: {err}") from err

    def emit(self, event: DeviceEvent) -> None:
        """Deliver an event to the sink, with the bytes received since the previous event (``raw``)."""
        self.stats.events += 1
        if self._raw and not event.raw:
            event = dataclasses.replace(event, raw=bytes(self._raw))
        self._raw.clear()
        if self._sink is not None:
            self._sink.event(event)

    def emit_reading(self, reading: Reading) -> None:
        """Deliver a telemetry reading to the sink."""
        self.stats.events += 1
        if self._sink is not None:
            self._sink.reading(reading)

    def protocol_error(self, err: Exception) -> None:
        """Count bytes the protocol rejected (never logged with their contents: they may be personal)."""
        self.stats.protocol_errors += 1
        _LOGGER.debug("Device %s: rejected input (%s)", self.device_id, type(err).__name__)

    def connection_made(self) -> None:
        """Reset per-connection state after the port was (re)opened."""

    def data_received(self, data: bytes, now: float) -> None:
        """Handle bytes from the device."""

    def idle(self, now: float) -> None:
        """Handle ``idle_timeout`` seconds of silence after some bytes (end of an unterminated message)."""

    def tick(self, now: float) -> None:
        """Do periodic work on the reader thread (e.g. send the next poll command)."""

    def connection_lost(self) -> None:
        """Forget per-connection state after the port closed."""

    # -- the thread
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._serial = open_port(self.port, baudrate=self.baudrate, timeout=self._read_timeout(),
                                         **self.serial_options)
            except DeviceUnavailable as err:
                self.set_available(False, str(err))
                delay = self._backoff.next()
                _LOGGER.debug("Device %s: next open attempt in %.1fs", self.device_id, delay)
                self._stop.wait(delay)
                continue
            self._backoff.reset()
            self.stats.opens += 1
            try:
                self._call(self.connection_made)
                if self.available_on_open:
                    self.set_available(True)
                self._read_loop(self._serial)
            except DeviceUnavailable as err:
                self.stats.disconnects += 1
                self.set_available(False, str(err))
            finally:
                self._close()
                self._call(self.connection_lost, reraise=False)
            if not self._stop.is_set():
                self._stop.wait(self._backoff.next())

    def _read_timeout(self) -> float:
        if self.idle_timeout > 0:
            return min(READ_INTERVAL, self.idle_timeout / 2)
        return READ_INTERVAL

    def _read_loop(self, ser: serial.SerialBase) -> None:
        path = port_path(self.port)
        last_data = 0.0
        pending = False
        while not self._stop.is_set():
            if path is not None and not os.path.exists(path):
                raise DeviceUnavailable(f"{self.port} disappeared (unplugged?)")
            try:
                data = ser.read(ser.in_waiting or 1)
                if data and ser.in_waiting:  # the rest of a burst that arrived while waiting for 1 byte
                    data += ser.read(ser.in_waiting)
            except (serial.SerialException, OSError, TypeError) as err:
                # TypeError: pyserial's posix read after a concurrent close (fd is None).
                if self._stop.is_set():
                    return
                raise DeviceUnavailable(f"{self.port} stopped answering: {err}") from err
            now = time.monotonic()
            if data:
                self.stats.bytes_in += len(data)
                self._raw += data
                del self._raw[:-RAW_KEEP]
                last_data, pending = now, True
                self._call(self.data_received, data, now)
            elif pending and self.idle_timeout > 0 and now - last_data >= self.idle_timeout:
                pending = False
                self._call(self.idle, now)
            self._call(self.tick, now)

    def _call(self, hook: Callable[..., None], *args: Any, reraise: bool = True) -> None:
        try:
            hook(*args)
        except DeviceUnavailable:
            if reraise:
                raise
        except ProtocolError as err:
            self.protocol_error(err)
        except Exception:  # a bug in a hook must not end the device thread
            self.stats.hook_errors += 1
            if not self._bug_logged:
                self._bug_logged = True
                _LOGGER.exception("Device %s: %s failed (further failures are only counted)",
                                  self.device_id, getattr(hook, "__name__", "hook"))

    def _close(self) -> None:
        ser, self._serial = self._serial, None
        if ser is not None:
            try:
                ser.close()
            except (serial.SerialException, OSError):
                pass  # closing a port that vanished
