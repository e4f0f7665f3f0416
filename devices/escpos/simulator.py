"""A virtual ESC/POS printer: records what it is sent and answers DLE EOT like a real one.

:class:`VirtualPrinter` listens on loopback TCP (what ``tcp://HOST:9100`` printers are);
:class:`PtyPrinter` sits behind a pseudo-terminal (a serial printer). Both share
:class:`PrinterModel`: settable states (paper out, paper near end, cover open, error, offline),
a "printed" stream (bytes that reached paper) and a "received" stream (everything on the wire).

Like a real printer, bytes that arrive while it cannot print (paper out, cover open, offline) do
not reach paper: they are counted as lost, which is the worst case the print service must survive.
``offline`` means no answer at all; :meth:`VirtualPrinter.refuse` closes the listener (connection
refused). :meth:`PrinterModel.fail_after` breaks the printer in the middle of a job.

:func:`decode_lines` and :func:`decode_tickets` turn recorded bytes back into text lines for
assertions (GB18030-aware, commands stripped); :func:`tokens` yields the commands themselves.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Iterator
from typing import Any

from devices.ptysim import PtyDevice

_LOGGER = logging.getLogger(__name__)

ESC, GS, DLE, FS = 0x1B, 0x1D, 0x10, 0x1C
_DLE_EOT = b"\x10\x04"

# The fixed pattern 0xx1xx10 of every DLE EOT reply (Epson ESC/POS reference, DLE EOT n; docs/devices-printers.md).
_FIXED = 0x12


class PrinterModel:
    """The paper path of a virtual printer: states, DLE EOT answers, printed and lost bytes."""

    def __init__(self, encoding: str = "gb18030") -> None:
        self.encoding = encoding
        self._lock = threading.Lock()
        self.paper_out = False
        self.paper_near_end = False
        self.cover_open = False
        self.error = False
        self.offline = False
        self.answers_status = True  # False: a printer without DLE EOT support (prints, never answers)
        self._printed = bytearray()
        self._received = bytearray()
        self.lost = 0
        self.status_queries = 0
        self._pending = b""
        self._fail_budget: int | None = None
        self._fail_state = ""

    # -- control (tests and the demo)
    def set_state(self, **flags: bool) -> None:
        """Set any of paper_out, paper_near_end, cover_open, error, offline."""
        with self._lock:
            for name, value in flags.items():
                if name not in ("paper_out", "paper_near_end", "cover_open", "error", "offline"):
                    raise TypeError(f"unknown printer state {name!r}")
                setattr(self, name, bool(value))

    def fail_after(self, nbytes: int, state: str = "paper_out") -> None:
        """After ``nbytes`` more bytes reach paper, go to ``state`` (or ``"drop"`` the connection)."""
        if state not in ("paper_out", "cover_open", "error", "offline", "drop"):
            raise ValueError(f"unknown failure {state!r}")
        with self._lock:
            self._fail_budget = nbytes
            self._fail_state = state

    @property
    def ready(self) -> bool:
        """Whether bytes sent now would reach paper."""
        return not (self.paper_out or self.cover_open or self.error or self.offline)

    @property
    def printed(self) -> bytes:
        """Every byte that reached paper (real-time commands excluded)."""
        with self._lock:
            return bytes(self._printed)

    @property
    def received(self) -> bytes:
        """Every byte received on the wire, including status requests and lost bytes."""
        with self._lock:
            return bytes(self._received)

    def clear(self) -> None:
        """Forget what was printed and received."""
        with self._lock:
            self._printed.clear()
            self._received.clear()
            self.lost = 0

    def lines(self) -> list[str]:
        """Return the printed text as lines (commands stripped)."""
        return decode_lines(self.printed, self.encoding)

    def tickets(self) -> list[list[str]]:
        """Return the printed tickets (split at cuts), each as its non-empty lines."""
        return decode_tickets(self.printed, self.encoding)

    @property
    def drawer_kicks(self) -> int:
        """How many cash-drawer pulses (ESC p, DLE DC4 1) reached the printer."""
        return sum(1 for kind, raw in tokens(self.received) if kind == "cmd" and _is_drawer_kick(raw))

    # -- the wire
    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """Consume bytes from the host; return (reply bytes, whether to drop the connection)."""
        reply = bytearray()
        drop = False
        with self._lock:
            self._received += data
            buf = self._pending + data
            self._pending = b""
            pos = 0
            while pos < len(buf):
                idx = buf.find(_DLE_EOT, pos)
                if idx < 0:
                    end = len(buf) - 1 if buf.endswith(b"\x10") else len(buf)
                    drop |= self._take(buf[pos:end])
                    self._pending = buf[end:]
                    break
                drop |= self._take(buf[pos:idx])
                if idx + 2 >= len(buf):
                    self._pending = buf[idx:]
                    break
                self.status_queries += 1
                answer = self._status(buf[idx + 2])
                if answer is not None:
                    reply.append(answer)
                pos = idx + 3
        return bytes(reply), drop

    def _take(self, chunk: bytes) -> bool:
        if not chunk:
            return False
        if not self.ready:
            self.lost += len(chunk)
            return False
        if self._fail_budget is not None and len(chunk) >= self._fail_budget:
            cut = self._fail_budget
            self._printed += chunk[:cut]
            self.lost += len(chunk) - cut
            state, self._fail_budget, self._fail_state = self._fail_state, None, ""
            if state == "drop":
                return True
            setattr(self, state, True)
            return False
        if self._fail_budget is not None:
            self._fail_budget -= len(chunk)
        self._printed += chunk
        return False

    def _status(self, n: int) -> int | None:
        if self.offline or not self.answers_status:
            return None  # an offline printer does not answer at all
        stopped = self.paper_out or self.cover_open or self.error
        if n == 1:
            return _FIXED | (0x08 if stopped else 0) | (0x20 if stopped else 0)
        if n == 2:
            return _FIXED | (0x04 if self.cover_open else 0) | (0x20 if self.paper_out else 0) | (
                0x40 if self.error else 0)
        if n == 3:
            return _FIXED | (0x20 if self.error else 0)
        if n == 4:
            return _FIXED | (0x0C if self.paper_near_end or self.paper_out else 0) | (
                0x60 if self.paper_out else 0)
        return None


class VirtualPrinter(PrinterModel):
    """A virtual network printer on 127.0.0.1 (a free port unless given); ``url`` is its config port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, encoding: str = "gb18030") -> None:
        super().__init__(encoding)
        self.host = host
        self.port = port
        self.connections = 0
        self._listener: socket.socket | None = None
        self._clients: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()

    @property
    def url(self) -> str:
        """Return the printer's port as written in the config."""
        return f"tcp://{self.host}:{self.port}"

    def start(self) -> VirtualPrinter:
        """Start listening; returns at once."""
        self._stop.clear()
        self._listen()
        return self

    def stop(self) -> None:
        """Close the listener and every connection; join the threads."""
        self._stop.set()
        self._close_listener()
        with self._lock:
            clients = list(self._clients)
        for sock in clients:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for t in self._threads:
            t.join(2)
        self._threads.clear()

    def refuse(self, refuse: bool = True) -> None:
        """Stop (True) or resume (False) accepting connections, as a powered-off printer would."""
        if refuse:
            self._close_listener()
            self.drop_connections()
        elif self._listener is None:
            self._listen()

    def drop_connections(self) -> None:
        """Reset every open connection (a network glitch)."""
        with self._lock:
            clients = list(self._clients)
        for sock in clients:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> VirtualPrinter:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _listen(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(8)
        self.port = sock.getsockname()[1]
        self._listener = sock
        t = threading.Thread(target=self._accept, args=(sock,), name="escpos-sim-accept", daemon=True)
        t.start()
        self._threads.append(t)

    def _close_listener(self) -> None:
        sock, self._listener = self._listener, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # listener closed
            self.connections += 1
            with self._lock:
                self._clients.add(conn)
            t = threading.Thread(target=self._serve, args=(conn,), name="escpos-sim-conn", daemon=True)
            t.start()
            self._threads = [x for x in self._threads if x.is_alive()] + [t]

    def _serve(self, conn: socket.socket) -> None:
        try:
            while not self._stop.is_set():
                try:
                    data = conn.recv(4096)
                except OSError:
                    return
                if not data:
                    return
                reply, drop = self.feed(data)
                if reply:
                    try:
                        conn.sendall(reply)
                    except OSError:
                        return
                if drop:
                    with contextlib.suppress(OSError):
                        conn.shutdown(socket.SHUT_RDWR)
                    return
        finally:
            with self._lock:
                self._clients.discard(conn)
            conn.close()


class PtyPrinter(PrinterModel):
    """A virtual serial printer behind a pty; ``port`` is the slave path to configure."""

    def __init__(self, *, encoding: str = "gb18030", link: str | None = None) -> None:
        super().__init__(encoding)
        model = self

        class _Pty(PtyDevice):
            def received(self, data: bytes) -> None:
                reply, _ = model.feed(data)
                if reply:
                    self.write(reply)

        self._pty = _Pty(link)

    @property
    def port(self) -> str:
        """Return the serial port path for the config."""
        return self._pty.port

    def start(self) -> PtyPrinter:
        """Create the pty and start answering."""
        self._pty.plug()
        return self

    def stop(self) -> None:
        """Close the pty."""
        self._pty.unplug()

    def __enter__(self) -> PtyPrinter:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# ---------------------------------------------------------------------------
# decoding recorded bytes


def _is_drawer_kick(raw: bytes) -> bool:
    return raw[:2] == b"\x1bp" or raw[:3] == b"\x10\x14\x01"


def _u16(data: bytes, i: int) -> int:
    return data[i] + 256 * data[i + 1] if i + 1 < len(data) else 0


def _esc_len(data: bytes, i: int) -> int:
    op = data[i + 1] if i + 1 < len(data) else 0
    if op in b"@2<":
        return 2
    if op == ord("p"):
        return 5
    if op == ord("*"):
        m = data[i + 2] if i + 2 < len(data) else 0
        return 5 + _u16(data, i + 3) * (1 if m in (0, 1) else 3)
    if op in b"$\\":
        return 4
    if op == ord("c"):
        return 4
    return 3


def _gs_len(data: bytes, i: int) -> int:
    op = data[i + 1] if i + 1 < len(data) else 0
    if op == ord("V"):
        m = data[i + 2] if i + 2 < len(data) else 0
        return 3 if m in (0, 1, 48, 49) else 4
    if op == ord("k"):
        m = data[i + 2] if i + 2 < len(data) else 0
        if m <= 6:
            end = data.find(b"\x00", i + 3)
            return (end + 1 - i) if end >= 0 else len(data) - i
        return 4 + (data[i + 3] if i + 3 < len(data) else 0)
    if op == ord("("):
        return 5 + _u16(data, i + 3)
    if op == ord("v"):
        return 8 + _u16(data, i + 4) * _u16(data, i + 6)
    if op == ord("8"):
        size = int.from_bytes(data[i + 3:i + 7], "little") if i + 7 <= len(data) else 0
        return 7 + size
    if op in b"LW$\\P":
        return 4
    return 3


def _dle_len(data: bytes, i: int) -> int:
    op = data[i + 1] if i + 1 < len(data) else 0
    return 5 if op == 0x14 else 3


def _fs_len(data: bytes, i: int) -> int:
    op = data[i + 1] if i + 1 < len(data) else 0
    if op in b"&.":
        return 2
    if op in b"Sp":
        return 4
    return 3


_COMMAND_LEN = {ESC: _esc_len, GS: _gs_len, DLE: _dle_len, FS: _fs_len}


def tokens(data: bytes) -> Iterator[tuple[str, bytes]]:
    """Split ESC/POS bytes into ("text", bytes), ("cmd", bytes) and ("ctl", one C0 byte) tokens."""
    i, start, n = 0, 0, len(data)
    while i < n:
        b = data[i]
        if b >= 0x20 or b == 0x0A:
            i += 1
            continue
        if i > start:
            yield "text", data[start:i]
        if b in _COMMAND_LEN:
            length = max(2, _COMMAND_LEN[b](data, i))
            yield "cmd", data[i:i + length]
            i += length
        else:
            yield "ctl", data[i:i + 1]
            i += 1
        start = i
    if start < n:
        yield "text", data[start:]


def _decode_stream(data: bytes, encoding: str) -> Iterator[str | None]:
    """Yield printed lines; ``None`` marks a cut."""
    line = bytearray()

    def flush() -> str:
        text = bytes(line).decode(encoding, errors="replace")
        line.clear()
        return text

    for kind, raw in tokens(data):
        if kind == "text":
            parts = raw.split(b"\n")
            for part in parts[:-1]:
                line.extend(part)
                yield flush()
            line.extend(parts[-1])
        elif kind == "cmd" and raw[:2] == b"\x1b@":  # initialize: an unprinted partial line is discarded
            line.clear()
        elif kind == "cmd" and raw[:2] == b"\x1bd":  # print and feed n lines
            yield flush()
            for _ in range(max(0, (raw[2] if len(raw) > 2 else 1) - 1)):
                yield ""
        elif kind == "cmd" and raw[:2] == b"\x1dV":  # cut
            if line:
                yield flush()
            yield None
        elif kind == "ctl" and raw == b"\x0c":
            yield flush()
    if line:
        yield flush()


def decode_lines(data: bytes, encoding: str = "gb18030") -> list[str]:
    """Return the text a printer would print from these bytes, one string per line."""
    return [line for line in _decode_stream(data, encoding) if line is not None]


def decode_tickets(data: bytes, encoding: str = "gb18030") -> list[list[str]]:
    """Return the tickets (split at cuts) as lists of their non-empty lines, trailing spaces removed."""
    tickets: list[list[str]] = [[]]
    for line in _decode_stream(data, encoding):
        if line is None:
            tickets.append([])
        elif line.strip():
            tickets[-1].append(line.rstrip())
    return [t for t in tickets if t]
