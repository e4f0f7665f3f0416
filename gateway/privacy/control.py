"""The local control channel of a running gateway: a UNIX socket in the keys directory.

Only ``storegw keys`` uses it, to ask the running gateway to rotate its keys (the CLI must never
touch the live database behind the daemon's back). The socket is 0600 in a 0700 directory and the
server also checks the peer's uid (``SO_PEERCRED``: the gateway's own user or root). One request
per connection: a JSON object on one line, answered by one JSON line. Requests are served one at a
time by one small thread. docs/architecture.md, "Keys and rotation".
"""

from __future__ import annotations

import json
import logging
import os
import socket
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

_LOGGER = logging.getLogger(__name__)

MAX_REQUEST = 64 * 1024


class ControlServer:
    """Serves ``handler(request) -> reply`` on a UNIX socket until stopped."""

    def __init__(self, path: Path, handler: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.path = path
        self._handler = handler
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        """Bind the socket (replacing a stale one) and start serving."""
        self.path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        sock.listen(4)
        sock.settimeout(0.5)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="storegw-control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and remove the socket."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if self._sock is not None:
            self._sock.close()
            self.path.unlink(missing_ok=True)

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                raise
            with conn:
                try:
                    self._one(conn)
                except Exception:
                    _LOGGER.exception("control request failed")

    def _one(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _, uid, _ = struct.unpack("3i", creds)
        if uid not in (os.getuid(), 0):
            _send(conn, {"ok": False, "error": f"uid {uid} may not control this gateway"})
            return
        data = b""
        while not data.endswith(b"\n") and len(data) < MAX_REQUEST:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        try:
            request = json.loads(data)
            if not isinstance(request, dict):
                raise ValueError("not an object")
        except ValueError as err:
            _send(conn, {"ok": False, "error": f"bad request: {err}"})
            return
        conn.settimeout(None)
        try:
            reply = self._handler(request)
        except Exception as err:  # noqa: BLE001 - the CLI prints it
            _LOGGER.exception("control request %s failed", request.get("op"))
            reply = {"ok": False, "error": f"{type(err).__name__}: {err}"}
        _send(conn, reply)


def _send(conn: socket.socket, doc: dict[str, Any]) -> None:
    conn.sendall(json.dumps(doc).encode() + b"\n")


def request(path: Path, doc: dict[str, Any], timeout: float = 900.0) -> dict[str, Any] | None:
    """Send one request to the gateway serving ``path``; None when no gateway listens there."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            return None
        sock.sendall(json.dumps(doc).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    if not data:
        return {"ok": False, "error": "the gateway closed the control connection without an answer (see its log)"}
    return json.loads(data)
