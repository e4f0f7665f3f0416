"""Card references: what the gateway keeps and forwards instead of a card's identifier.

A membership card's id (an EM4100 tag id, a loyalty stripe's number) is never stored or sent in
plain text: events carry ``card_ref = HMAC-SHA256(secret, "<family>:<id>")`` (hex). The same card
always gives the same ref on one gateway, so the members service can look it up, and a leaked
database or log cannot be turned back into card numbers (card ids are short, so a plain hash could
be brute-forced; the keyed HMAC cannot without the secret).

Where the secret comes from, first that exists:

1. the environment variable ``STOREGW_CARD_SECRET`` — one secret for the whole chain (a systemd
   credential put there by provisioning), so one card gives the same ref in every store and HQ
   can link a member's visits across stores;
2. the gateway's own secret, kept in its encrypted database and handed over at start
   (``use_gateway_secret``) — refs are stable at this store, across restarts and restores;
3. a random secret for this process, with one warning — for tools and tests without a gateway.
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
_gateway_secret: bytes | None = None


def card_ref(secret: bytes, card_id: str) -> str:
    """Return the hex HMAC-SHA256 of ``card_id`` under ``secret``: a stable, irreversible card reference."""
    return hmac.new(secret, card_id.encode("utf-8"), hashlib.sha256).hexdigest()


def use_gateway_secret(secret: bytes | None) -> None:
    """Set (or, with None, forget) the running gateway's own secret; ``$STOREGW_CARD_SECRET`` still wins."""
    global _gateway_secret
    _gateway_secret = secret


def gateway_secret() -> bytes:
    """Return the card-ref secret: ``$STOREGW_CARD_SECRET``, else the gateway's, else a per-process one."""
    global _process_secret
    value = os.environ.get(ENV_VAR, "")
    if value:
        return value.encode("utf-8")
    if _gateway_secret is not None:
        return _gateway_secret
    with _lock:
        if _process_secret is None:
            _process_secret = secrets.token_bytes(32)
            _LOGGER.warning("%s is not set; card references will change when storegw restarts", ENV_VAR)
        return _process_secret
