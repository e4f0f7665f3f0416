"""The built-in pure-Python MQTT broker (amqtt), for `storegw demo` and development only.

Production runs Mosquitto (see systemd/mosquitto/); this keeps the demo to one command on a
machine without it. The broker runs its own asyncio loop in a daemon thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from gateway.core.errors import GatewayError

_LOGGER = logging.getLogger(__name__)


class EmbeddedBroker:
    """Start and stop an amqtt broker on host:port in a background thread."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker: Any = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self, timeout: float = 15.0) -> None:
        """Start the broker; raise GatewayError if it cannot listen."""
        self._thread = threading.Thread(target=self._run, name="storegw-broker", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None:
            raise GatewayError(f"the built-in broker could not listen on {self.host}:{self.port}: "
                               f"{self._error or 'timed out'}; is the port in use? set [local_mqtt] port")
        _LOGGER.info("Built-in MQTT broker listening on %s:%s (development only)", self.host, self.port)

    def _run(self) -> None:
        from amqtt.broker import Broker

        logging.getLogger("amqtt").setLevel(logging.WARNING)
        logging.getLogger("transitions").setLevel(logging.WARNING)
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        try:
            self._broker = Broker(config, loop=self._loop)
            self._loop.run_until_complete(self._broker.start())
        except Exception as err:  # noqa: BLE001 - reported to start() as a GatewayError
            self._error = err
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()

    def stop(self) -> None:
        """Shut the broker down."""
        if self._loop is None or self._broker is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
        try:
            fut.result(5)
        except Exception:  # noqa: BLE001 - best effort at exit
            _LOGGER.debug("Built-in broker shutdown was not clean", exc_info=True)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread:
            self._thread.join(5)
