"""Small helpers around paho-mqtt 2.x: client construction, TLS, readable errors."""

from __future__ import annotations

import collections
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


def fast_property_decoding() -> None:
    """Make paho's MQTT 5 property decoding skip a needless sweep (process-wide; for consumers).

    paho 2.x decodes every incoming MQTT 5 PUBLISH into a new ``Properties`` object and first
    ``clear()``s it: a loop over all 27 property names with a string replace and a ``hasattr``
    each, on an object that has none of them yet. On a consumer reading hundreds of messages a
    second that is about a seventh of its CPU. This ``clear`` deletes only the properties that are
    set, which is the same result. A paho without ``Properties.clear`` is left alone.
    """
    from paho.mqtt.properties import Properties

    if getattr(Properties, "_storegw_fast_clear", False) or not hasattr(Properties, "clear"):
        return
    from paho.mqtt.packettypes import PacketTypes

    attrs = frozenset(name.replace(" ", "") for name in Properties(PacketTypes.PUBLISH).names)

    def clear(self: Properties) -> None:
        for key in [k for k in vars(self) if k in attrs]:
            delattr(self, key)

    Properties.clear = clear  # type: ignore[method-assign]
    Properties._storegw_fast_clear = True  # type: ignore[attr-defined]


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


# MQTT 5 CONNACK/DISCONNECT reason codes that mean "the server is overloaded, come back later":
# 0x88 server unavailable, 0x89 server busy, 0x97 quota exceeded, 0x9F connection rate exceeded.
BUSY_REASON_CODES = frozenset({0x88, 0x89, 0x97, 0x9F})


def is_busy(rc: object) -> bool:
    """Whether a paho reason code says the broker is overloaded (quota exceeded, server busy, ...)."""
    value = getattr(rc, "value", rc)
    return isinstance(value, int) and value in BUSY_REASON_CODES


class ReconnectPolicy:
    """When to try the next CONNECT: decorrelated jitter with per-client-id rate limits.

    The delay after each failure is ``min(cap, uniform(base, 3 × previous))`` (M. Brooker,
    "Exponential Backoff And Jitter", AWS Architecture Blog, 2015): never below ``base``, so a fleet
    that lost its broker at once spreads its attempts instead of coming back in waves, and never
    above ``cap``. On top of it, whatever the delay says, a client id makes at most one CONNECT per
    ``min_gap`` seconds and ``per_minute`` in any 60 s (a broker's flapping detection, e.g. EMQX's
    15 a minute, would ban it; AWS IoT allows one a second per client id). A broker that answers
    "quota exceeded", "server busy", "server unavailable" or "connection rate exceeded" (MQTT 5)
    gets a longer pause: uniform(cap, 2 × cap).
    """

    def __init__(self, base: float = 1.0, cap: float = 30.0, *, min_gap: float = 1.0, per_minute: int = 12,
                 rng: random.Random | None = None) -> None:
        self.base = max(0.001, base)
        self.cap = max(self.base, cap)
        self.min_gap = min_gap
        self.per_minute = max(1, per_minute)
        self.rng = rng or random.Random()
        self._prev = self.base
        self._attempts: collections.deque[float] = collections.deque(maxlen=self.per_minute)

    def attempted(self, now: float) -> None:
        """Record a CONNECT sent at ``now`` (monotonic seconds)."""
        self._attempts.append(now)

    def connected(self) -> None:
        """The connection succeeded: the next failure starts again from ``base`` (rate limits stay)."""
        self._prev = self.base

    def next_attempt(self, now: float, *, busy: bool = False) -> float:
        """Return the monotonic time of the next allowed CONNECT after a failure at ``now``."""
        self._prev = min(self.cap, self.rng.uniform(self.base, self._prev * 3))
        delay = self._prev
        if busy:
            delay = max(delay, self.rng.uniform(self.cap, 2 * self.cap))
            self._prev = self.cap
        at = now + delay
        if self._attempts:
            at = max(at, self._attempts[-1] + self.min_gap)
            if len(self._attempts) >= self.per_minute:
                at = max(at, self._attempts[0] + 60.0)
        return at

    def delay(self, now: float, *, busy: bool = False) -> float:
        """Return how long to wait from ``now`` before the next CONNECT (see ``next_attempt``)."""
        return max(0.0, self.next_attempt(now, busy=busy) - now)
