"""TOTP (RFC 6238) for managers, technicians and auditors: enrolment, and codes that work once.

pyotp's ``verify`` accepts the same code again and again within its window (pyauth/pyotp#61);
RFC 6238 §5.2 says a used code MUST NOT be accepted again. So ``match`` returns the time step a
code belongs to (the current one, or one step either side for a phone's clock drift) and the
caller stores the last accepted step per account (``ord_staff.totp_step``) and refuses any code
of a step at or before it, with a conditional UPDATE in the single writer (no race).
"""

from __future__ import annotations

import hmac
import time

STEP_S = 30
WINDOW = 1  # steps either side of now (RFC 6238 §5.2: at most one step of delay)
DIGITS = 6


def new_secret() -> str:
    """A fresh random base32 secret (160 bits)."""
    import pyotp  # only at enrolment and sign-in: pyotp and what it pulls in stay out of the idle daemon

    return pyotp.random_base32(32)


def uri(secret: str, name: str, issuer: str) -> str:
    """The otpauth:// URI an authenticator app scans."""
    import pyotp

    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_S).provisioning_uri(name=name, issuer_name=issuer)


def step_of(ts: float | None = None) -> int:
    """The RFC 6238 time step of ``ts`` (now when None)."""
    return int((time.time() if ts is None else ts) // STEP_S)


def match(secret: str, code: str, ts: float | None = None) -> int | None:
    """Return the time step ``code`` is valid for within the window around ``ts``, else None.

    A code that is not six ASCII digits is None without any work; every candidate step is
    compared in constant time.
    """
    if not isinstance(code, str):
        return None
    code = code.strip().replace(" ", "")
    if len(code) != DIGITS or not code.isascii() or not code.isdigit():
        return None
    import pyotp

    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_S)
    now = step_of(ts)
    found = None
    for step in range(now - WINDOW, now + WINDOW + 1):
        if hmac.compare_digest(totp.generate_otp(step).encode(), code.encode()):
            found = step
    return found
