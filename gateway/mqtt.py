"""Small helpers around paho-mqtt 2.x: client construction, TLS, readable errors."""

from __future__ import annotations

import random
import ssl
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from gateway.errors import ConfigError, UplinkError


def new_client(client_id: str, *, clean: bool, protocol: str = "3.1.1", manual_ack: bool = False) -> paho.Client:
    """Create a paho client (callback API v2) without connecting it."""
    if protocol == "5":
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5,
                             manual_ack=manual_ack)
    else:
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean,
                             protocol=MQTTProtocolVersion.MQTTv311, manual_ack=manual_ack)
    return client


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
    """Read a password from a file, naming the config key when it cannot."""
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as err:
        raise ConfigError(f"{key}: cannot read {path}: {err.strerror}", key=key) from err


def configure_auth(client: paho.Client, *, tls: bool, ca_file: str = "", cert_file: str = "", key_file: str = "",
                   username: str = "", password_file: str = "", section: str = "uplink") -> None:
    """Apply TLS (CA, client certificate) and username/password from a file."""
    if tls:
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
