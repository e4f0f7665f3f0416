"""Card references: what the gateway keeps and forwards instead of a card's identifier.

A membership card's id (an EM4100 tag id, a loyalty stripe's number) is never stored or sent in
plain text: events carry ``card_ref = HMAC-SHA256(secret, "<family>:<id>")`` (hex). The same card
always gives the same ref on one gateway, so the members service can look it up, and a leaked
database or log cannot be turned back into card numbers (card ids are short, so a plain hash could
be brute-forced; the keyed HMAC cannot without the secret).

The secret is per gateway: the environment variable ``STOREGW_CARD_SECRET`` (set it from a systemd
credential or the provisioning tool). Without it a random secret is made once per process, with
one warning: refs then change when storegw restarts, which is fine for a demo, not for a store.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import threading

_LOGGER = logging.getLogger(__name__)

ENV_VAR = "STOREGW_CARD_SECRET"
_lock = threading.Lock()
_process_secret: bytes | None = None


def card_ref(secret: bytes, card_id: str) -> str:
    """Return the hex HMAC-SHA256 of ``card_id`` under ``secret``: a stable, irreversible card reference."""
    return hmac.new(secret, card_id.encode("utf-8"), hashlib.sha256).hexdigest()


def gateway_secret() -> bytes:
    """Return the card-ref secret: ``$STOREGW_CARD_SECRET``, else a random per-process one (warned once)."""
    global _process_secret
    value = os.environ.get(ENV_VAR, "")
    if value:
        return value.encode("utf-8")
    with _lock:
        if _process_secret is None:
            _process_secret = secrets.token_bytes(32)
            _LOGGER.warning("%s is not set; card references will change when storegw restarts", ENV_VAR)
        return _process_secret
