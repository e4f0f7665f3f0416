"""Small helpers around paho-mqtt 2.x: client construction, TLS, readable errors."""

from __future__ import annotations

import random
import socket
import ssl
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from gateway.core.credentials import expand
from gateway.core.errors import ConfigError, UplinkError


def new_client(client_id: str, *, clean: bool, protocol: str = "3.1.1", manual_ack: bool = False,
               read_buffer: bool = False) -> paho.Client:
    """Create a paho client (callback API v2) without connecting it.

    ``read_buffer``: read the plain-TCP socket in large chunks (see ``ReadBufferedSocket``); only for a
    client driven by an external loop that honours ``socket().pending()``.
    """
    cls = _ReadBufferedClient if read_buffer else paho.Client
    if protocol == "5":
        client = cls(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5,
                     manual_ack=manual_ack)
    else:
        client = cls(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean,
                     protocol=MQTTProtocolVersion.MQTTv311, manual_ack=manual_ack)
    return client


class ReadBufferedSocket:
    """A socket-like object (as paho accepts) that reads the socket in chunks of up to 64 KiB.

    paho reads every packet with three or more ``recv`` calls (command byte, length bytes, body);
    for a stream of small telemetry messages that is most of the ingest's system calls, and each
    one lets go of the interpreter lock. This serves those small reads from one large read.
    ``pending()`` says how many bytes are buffered, as ``ssl.SSLSocket.pending()`` does, so an
    event loop must not wait in ``select`` while it is non-zero (paho's own loop honours it too).
    """

    CHUNK = 65536

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0

    def recv(self, bufsize: int) -> bytes:
        if self._pos >= len(self._buf):
            data = self._sock.recv(self.CHUNK)  # BlockingIOError when empty, b"" at end of stream
            if len(data) <= bufsize:
                self._buf, self._pos = b"", 0
                return data
            self._buf, self._pos = data, 0
        end = self._pos + bufsize
        chunk = self._buf[self._pos:end]
        self._pos = end
        return chunk

    def pending(self) -> int:
        return max(0, len(self._buf) - self._pos)

    def send(self, data: bytes | bytearray) -> int:
        return self._sock.send(data)

    def fileno(self) -> int:
        return self._sock.fileno()

    def setblocking(self, flag: bool) -> None:
        self._sock.setblocking(flag)

    def close(self) -> None:
        self._sock.close()

    def __getattr__(self, name: str) -> object:
        return getattr(self._sock, name)


class _ReadBufferedClient(paho.Client):
    def _create_socket(self):  # type: ignore[no-untyped-def]
        sock = super()._create_socket()
        return ReadBufferedSocket(sock) if type(sock) is socket.socket else sock


class _NoTopicCallbacks:
    """Stands in for paho's per-topic callback table when a client registers none."""

    @staticmethod
    def iter_match(topic: str) -> tuple[()]:
        return ()


def skip_topic_callbacks(client: paho.Client) -> None:
    """Skip paho's per-topic callback lookup for a client that uses only ``on_message``.

    paho 2.x looks up ``message_callback_add`` filters for every incoming message with a recursive
    generator (about 3 µs a message on a fast x86 core, more on a Pi) even when there are none; the
    ingest registers none, so the lookup is replaced by an empty one. A paho without that table
    is left alone.
    """
    root = getattr(getattr(client, "_on_message_filtered", None), "_root", None)
    if root is not None and not root._children and root._content is None:
        client._on_message_filtered = _NoTopicCallbacks()  # type: ignore[attr-defined]


def read_secret(path: str, key: str) -> str:
    """Read a password from a file (or a systemd credential), naming the config key when it cannot."""
    path = expand(path, key)
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as err:
        raise ConfigError(f"{key}: cannot read {path}: {err.strerror}", key=key) from err


def configure_auth(client: paho.Client, *, tls: bool, ca_file: str = "", cert_file: str = "", key_file: str = "",
                   username: str = "", password_file: str = "", section: str = "uplink") -> None:
    """Apply TLS (CA, client certificate) and username/password from a file."""
    if tls:
        key_file = expand(key_file, f"{section}.key_file")
        try:
            client.tls_set(ca_certs=ca_file or None, certfile=cert_file or None, keyfile=key_file or None,
                           cert_reqs=ssl.CERT_REQUIRED)
        except (OSError, ssl.SSLError) as err:
            raise ConfigError(f"{section}.ca_file/cert_file/key_file: cannot load TLS files: {err}",
                              key=f"{section}.ca_file") from err
    if username:
        password = read_secret(password_file, f"{section}.password_file") if password_file else None
        client.username_pw_set(username, password)


def describe_rc(rc: object) -> str:
    """Return readable text for a paho return/reason code."""
    try:
        if isinstance(rc, paho.ReasonCode):
            return str(rc)
        return paho.error_string(int(rc))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(rc)


def check(rc: object, action: str) -> None:
    """Raise UplinkError when a paho call did not succeed."""
    code = getattr(rc, "rc", rc)
    if code not in (0, paho.MQTT_ERR_SUCCESS):
        raise UplinkError(f"{action} failed: {describe_rc(code)}")


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter: uniform(0, min(cap, base * 2**attempt))."""
    r = rng or random
    return r.uniform(0, min(cap, base * (2 ** min(attempt, 30))))
