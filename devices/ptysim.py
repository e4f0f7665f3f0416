"""A simulated serial device on a pseudo-terminal, with a stable path that can be unplugged and replugged.

The simulator holds the pty's master side and gives the driver the slave side as its port: the
slave's own name (``/dev/pts/N``) or, with ``link``, a symlink that stays the same across
``unplug()``/``replug()`` the way ``/dev/serial/by-id/...`` does for a USB adapter. Unplugging closes
the pty (the driver's reads fail) and removes the symlink; replugging makes a new pty behind the
same link. Simulators that answer commands (ID-card SAM, Modbus slave) override :meth:`received`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import threading
import tty
from pathlib import Path
from typing import Any

_LOGGER = logging.getLogger(__name__)


class PtyDevice:
    """One simulated device: a pty whose slave path (or stable symlink) is the driver's port."""

    def __init__(self, link: str | os.PathLike[str] | None = None) -> None:
        self.link = Path(link) if link is not None else None
        self.received_bytes = bytearray()
        self._master: int | None = None
        self._slave: int | None = None
        self._slave_name = ""
        self._reader: threading.Thread | None = None
        self._stop = threading.Event()
        self._write_lock = threading.Lock()

    # -- lifecycle
    @property
    def port(self) -> str:
        """Return the path a driver should open (the stable link when there is one)."""
        return str(self.link) if self.link is not None else self._slave_name

    @property
    def slave_name(self) -> str:
        """Return the pty's own device name (``/dev/pts/N``), empty while unplugged."""
        return self._slave_name if self.plugged else ""

    @property
    def plugged(self) -> bool:
        """Return whether the pty exists right now."""
        return self._master is not None

    def plug(self) -> str:
        """Create the pty (and point the link at it); return the port path."""
        if self.plugged:
            return self.port
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line editing: bytes pass through as a UART would
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self._slave_name = os.ttyname(slave)
        if self.link is not None:
            tmp = self.link.with_name(f".{self.link.name}.{os.getpid()}.tmp")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            os.symlink(self._slave_name, tmp)
            os.replace(tmp, self.link)  # atomic: the link never points at nothing
        self.reset()
        self._stop.clear()
        self._reader = threading.Thread(target=self._read_loop, name="storegw-ptysim", daemon=True)
        self._reader.start()
        return self.port

    def unplug(self) -> None:
        """Remove the link and close the pty, as pulling the USB cable would."""
        if self.link is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link.unlink()
        self._stop.set()
        if self._reader is not None:
            self._reader.join(2)
            self._reader = None
        for fd in (self._master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = None

    def replug(self) -> str:
        """Unplug (if plugged) and plug a new pty behind the same link; return the port path."""
        self.unplug()
        return self.plug()

    close = unplug

    def __enter__(self) -> PtyDevice:
        self.plug()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.unplug()

    # -- I/O
    def write(self, data: bytes, timeout: float = 2.0) -> bool:
        """Send bytes to the driver; return False if unplugged or nobody drained them within ``timeout``."""
        with self._write_lock:
            view = memoryview(data)
            while view:
                fd = self._master
                if fd is None:
                    return False
                try:
                    n = os.write(fd, view)
                except BlockingIOError:
                    _, writable, _ = select.select([], [fd], [], timeout)
                    if not writable:
                        return False
                    continue
                except OSError:
                    return False
                view = view[n:]
        return True

    def reset(self) -> None:
        """Forget per-connection state (a half-received frame) when a new pty is plugged."""

    def received(self, data: bytes) -> None:
        """Handle bytes the driver sent (default: keep them in ``received_bytes``)."""
        self.received_bytes += data

    def _read_loop(self) -> None:
        fd = self._master
        while not self._stop.is_set() and fd is not None:
            try:
                readable, _, _ = select.select([fd], [], [], 0.05)
                if not readable:
                    continue
                data = os.read(fd, 4096)
            except BlockingIOError:
                continue
            except OSError as err:
                if err.errno != errno.EIO:
                    _LOGGER.debug("Simulator pty read failed: %s", err)
                self._stop.wait(0.05)
                continue
            if data:
                try:
                    self.received(data)
                except Exception:  # a simulator bug must not kill the pty
                    _LOGGER.exception("Simulator failed to handle %d bytes", len(data))
