"""A printer connection: open by port URL, send a whole job, ask DLE EOT status with a timeout.

Ports: ``tcp://HOST[:9100]`` (network), ``usb://VID:PID`` (python-escpos ``Usb``, needs pyusb),
``file:///dev/usb/lp0`` (python-escpos ``File``; write-only, so no status and no proof of delivery)
and anything else as a serial path or pyserial URL (``/dev/serial/by-id/...``, ``socket://``,
``rfc2217://``) opened with ``serial_for_url``.

Why not python-escpos for every transport: its ``Network`` reads a status with ``recv(16)`` on
a socket that still holds older replies and logs every open/close on the root logger, its
``Serial`` cannot open pyserial URLs, and ``query_status`` accepts anything (3.1 has no reply
validation). So TCP and serial are thin transports here; USB and file use python-escpos's
classes, whose value is the USB plumbing (kernel driver detach, endpoints). Every status read
flushes stale input first and accepts only bytes with the fixed DLE EOT pattern ``0xx1xx10``.

Every third-party exception leaves this module as :class:`DeviceUnavailable` (``from err``).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from devices.escpos import protocol
from gateway.core.errors import ConfigError, DeviceUnavailable

_LOGGER = logging.getLogger(__name__)

DEFAULT_TCP_PORT = 9100
_SLICE = 0.1  # how often a blocked read checks whether the caller is stopping


@dataclass(frozen=True, slots=True)
class StatusReport:
    """What DLE EOT 1, 2 and 4 said, as one condition; ``answered`` is False when the printer was silent."""

    answered: bool
    offline: bool = False
    cover_open: bool = False
    paper_out: bool = False
    paper_near_end: bool = False
    error: bool = False
    verified: bool = True  # False: the transport cannot read status (file://), assumed ready

    @property
    def condition(self) -> str:
        """Return one of ready, paper_out, cover_open, error, offline (in that precedence)."""
        if not self.answered:
            return "offline"
        if self.paper_out:
            return "paper_out"
        if self.cover_open:
            return "cover_open"
        if self.error:
            return "error"
        if self.offline:
            return "offline"
        return "ready"

    @property
    def ready(self) -> bool:
        """Whether a job sent now would print."""
        return self.condition == "ready"


SILENT = StatusReport(answered=False)
UNVERIFIED = StatusReport(answered=True, verified=False)


def report(*replies: protocol.PrinterStatus) -> StatusReport:
    """Combine decoded replies (DLE EOT 1, 2, 4): a flag any reply sets is set; unknown counts as fine."""
    def any_(name: str) -> bool:
        return any(getattr(r, name) for r in replies)

    return StatusReport(answered=True, offline=any(r.online is False for r in replies),
                        cover_open=any_("cover_open"), paper_out=any_("paper_end"),
                        paper_near_end=any_("paper_near_end"), error=any_("error"))


def _is_reply(b: int) -> bool:
    try:
        protocol.parse_status(1, bytes((b,)))
    except protocol.EscPosError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Port:
    """A parsed printer port."""

    scheme: str  # tcp, usb, file, serial
    target: str  # host, path or URL
    number: int = 0  # TCP port
    vid: int = 0
    pid: int = 0
    query: tuple[tuple[str, str], ...] = ()


def parse_port(port: str, key: str = "port") -> Port:
    """Parse a printer port URL, or raise a ConfigError that shows the accepted forms."""
    forms = "tcp://HOST:9100, usb://VID:PID, file:///dev/usb/lp0, a serial path or a pyserial URL"
    if not port:
        raise ConfigError(f"{key} is required for a printer: {forms}", key=key)
    parts = urlsplit(port)
    scheme = parts.scheme.lower()
    if scheme == "tcp":
        try:
            number = parts.port or DEFAULT_TCP_PORT
        except ValueError as err:
            raise ConfigError(f"{key}: bad TCP port in \"{port}\"; expected tcp://HOST:9100",
                              key=key) from err
        if not parts.hostname:
            raise ConfigError(f"{key}: no host in \"{port}\"; expected tcp://HOST:9100", key=key)
        return Port("tcp", parts.hostname, number)
    if scheme == "usb":
        vid, _, pid = parts.netloc.partition(":")
        try:
            v, p = int(vid, 16), int(pid, 16)
        except ValueError as err:
            raise ConfigError(f"{key}: expected usb://VID:PID in hex such as usb://0416:5011, "
                              f"found \"{port}\"", key=key) from err
        query = tuple((k, vals[-1]) for k, vals in parse_qs(parts.query).items())
        return Port("usb", parts.netloc, vid=v, pid=p, query=query)
    if scheme == "file":
        if not parts.path:
            raise ConfigError(f"{key}: expected file:///dev/usb/lp0, found \"{port}\"", key=key)
        return Port("file", parts.path)
    if scheme in ("http", "https", "ipp"):
        raise ConfigError(f"{key}: \"{port}\" is not a raw ESC/POS port; expected {forms}", key=key)
    return Port("serial", port)


class PrinterConnection:
    """One printer port: ``open``, ``write`` a whole job, ``status``; errors are DeviceUnavailable."""

    def __init__(self, port: str, *, status_timeout: float = 2.0, write_timeout: float = 30.0,
                 baudrate: int = 9600, verify: bool = True) -> None:
        self.port = parse_port(port)
        self.url = port
        self.verify = verify
        self.status_timeout = status_timeout
        self.write_timeout = write_timeout
        self.baudrate = baudrate
        self._conn: Any = None

    @property
    def can_read_status(self) -> bool:
        """Whether status is asked: not for file:// (write-only), nor with ``verify = false``."""
        return self.verify and self.port.scheme != "file"

    @property
    def keep_open(self) -> bool:
        """Whether to keep the port open between jobs (network printers often allow one socket)."""
        return self.port.scheme != "tcp"

    @property
    def is_open(self) -> bool:
        """Whether the port is open."""
        return self._conn is not None

    # -- lifecycle
    def open(self) -> None:
        """Open the port if it is not open."""
        if self._conn is not None:
            return
        scheme = self.port.scheme
        if scheme == "tcp":
            try:
                sock = socket.create_connection((self.port.target, self.port.number),
                                                timeout=self.status_timeout)
            except OSError as err:
                raise DeviceUnavailable(f"cannot connect to {self.url}: {err}") from err
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conn = sock
        elif scheme == "serial":
            from devices.transport import open_port

            self._conn = open_port(self.url, baudrate=self.baudrate, timeout=_SLICE,
                                   write_timeout=self.write_timeout)
        elif scheme == "usb":
            self._conn = self._open_usb()
        else:
            self._conn = self._open_file()

    def close(self) -> None:
        """Close the port (never raises)."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if self.port.scheme == "tcp":
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        except Exception:  # noqa: BLE001 - a port that fails to close is gone anyway
            _LOGGER.debug("Closing %s failed", self.url, exc_info=True)

    def abort(self) -> None:
        """Unblock a write or read in progress on another thread (network printers); never raises."""
        conn = self._conn
        if conn is not None and self.port.scheme == "tcp":
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def _open_usb(self) -> Any:
        try:
            import usb.core  # python-escpos needs pyusb for usb://
            from escpos.exceptions import Error as EscposError
            from escpos.printer import Usb
        except ImportError as err:
            raise DeviceUnavailable(f"{self.url}: USB printers need pyusb (pip install pyusb)") from err
        q = dict(self.port.query)
        try:
            # python-escpos passes timeout straight to pyusb: milliseconds, not seconds.
            printer = Usb(self.port.vid, self.port.pid, timeout=int(self.write_timeout * 1000),
                          in_ep=int(q.get("in_ep", "0x82"), 0), out_ep=int(q.get("out_ep", "0x01"), 0))
            printer.open()
        except usb.core.NoBackendError as err:
            raise DeviceUnavailable(f"cannot open {self.url}: libusb is missing "
                                    "(apt-get install libusb-1.0-0)") from err
        except (EscposError, ValueError, OSError) as err:
            raise DeviceUnavailable(f"cannot open {self.url}: {err}") from err
        return printer

    def _open_file(self) -> Any:
        from escpos.exceptions import Error as EscposError
        from escpos.printer import File

        try:
            printer = File(self.port.target)
            printer.open()
        except (EscposError, OSError) as err:
            raise DeviceUnavailable(f"cannot open {self.url}: {err}") from err
        return printer

    # -- I/O
    def write(self, data: bytes) -> None:
        """Send a whole job's bytes (opening the port if needed)."""
        self.open()
        conn = self._conn
        try:
            if self.port.scheme == "tcp":
                conn.settimeout(self.write_timeout)
                conn.sendall(data)
            elif self.port.scheme == "serial":
                conn.write(data)
                conn.flush()
            else:
                conn._raw(data)  # python-escpos: send prebuilt bytes (the Dummy recipe)
        except Exception as err:  # noqa: BLE001 - socket, pyserial, pyusb and file errors alike
            self.close()
            raise DeviceUnavailable(f"writing to {self.url} failed: {err}") from err

    def status(self, stop: threading.Event | None = None, timeout: float | None = None) -> StatusReport:
        """Ask DLE EOT 1, 2 and 4; SILENT if the printer does not answer within the timeout."""
        self.open()
        if not self.can_read_status:
            return UNVERIFIED
        replies = []
        for n in (1, 2, 4):
            reply = self._ask(n, stop, timeout)
            if reply is None:
                return SILENT
            replies.append(protocol.parse_status(n, bytes((reply,))))
        return report(*replies)

    def _ask(self, n: int, stop: threading.Event | None, timeout: float | None) -> int | None:
        """Send DLE EOT n and return the reply byte, or None after the timeout."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.status_timeout)
        try:
            self._drain()
            self._send(bytes((0x10, 0x04, n)))
            while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
                chunk = self._recv(min(_SLICE, max(0.0, deadline - time.monotonic())))
                # The last byte with the fixed pattern is the answer; anything else is stale or ASB.
                for b in reversed(chunk):
                    if _is_reply(b):
                        return b
        except DeviceUnavailable:
            self.close()
            raise
        except Exception as err:  # noqa: BLE001 - socket, pyserial and pyusb errors alike
            self.close()
            raise DeviceUnavailable(f"status request to {self.url} failed: {err}") from err
        return None

    def _send(self, data: bytes) -> None:
        if self.port.scheme == "tcp":
            self._conn.settimeout(self.write_timeout)
            self._conn.sendall(data)
        elif self.port.scheme == "serial":
            self._conn.write(data)
            self._conn.flush()
        else:
            self._conn._raw(data)

    def _recv(self, wait: float) -> bytes:
        scheme = self.port.scheme
        if scheme == "tcp":
            self._conn.settimeout(max(wait, 0.001))
            try:
                data = self._conn.recv(64)
            except TimeoutError:
                return b""
            if not data:
                raise DeviceUnavailable(f"{self.url} closed the connection")
            return data
        if scheme == "serial":
            self._conn.timeout = max(wait, 0.001)
            return self._conn.read(64)
        # usb: pyusb's read takes milliseconds and raises USBTimeoutError when nothing came
        import usb.core

        try:
            return bytes(self._conn.device.read(self._conn.in_ep, 64, max(1, int(wait * 1000))))
        except usb.core.USBTimeoutError:
            return b""

    def _drain(self) -> None:
        """Throw away bytes the printer sent earlier, so a stale reply is not taken for this one."""
        scheme = self.port.scheme
        if scheme == "serial":
            self._conn.reset_input_buffer()
            return
        for _ in range(64):
            if scheme == "tcp":
                self._conn.setblocking(False)
                try:
                    data = self._conn.recv(4096)
                except (BlockingIOError, InterruptedError):
                    return
                finally:
                    self._conn.setblocking(True)
                if not data:
                    raise DeviceUnavailable(f"{self.url} closed the connection")
            elif not self._recv(0.001):
                return
