"""Who may do what: the role x action matrix every staff page and API route is checked against.

Each staff route declares one action (``web.staff.views.need``); ``tests/staff/test_matrix.py``
signs in as every role and asserts each route answers 403 exactly when this matrix says no, and
fails on a route without a declared action. Add an action here, in ``ACTIONS`` with one line of
what it covers, and in the roles that may do it.

Manager, technician and auditor sign in with a password plus TOTP. An account of one of those
roles that still has only a PIN (made before TOTP existed) keeps the floor actions its role has
(``FLOOR``) until it enrols, so an upgrade never locks a manager out of the store silently; the
sign-in page and ``storegw doctor`` say how to enrol (docs/operations.md, "Staff sign-in").
"""

from __future__ import annotations

ROLES = ("waiter", "kitchen", "cashier", "manager", "technician", "auditor")
FLOOR_ROLES = frozenset({"waiter", "kitchen", "cashier"})  # 6-digit PINs
PRIVILEGED_ROLES = frozenset({"manager", "technician", "auditor"})  # password + TOTP

ACTIONS: dict[str, str] = {
    "tables": "table map: open, clear, move, merge tables; the queue; table QR codes",
    "tasks": "the staff home page and diner requests (call waiter, bill), live updates",
    "orders": "a table's orders and bill (read)",
    "kds": "the kitchen display: start, bump, recall, scan-to-serve",
    "bill": "take payment",
    "reprint": "print a ticket again",
    "void": "void or comp a line",
    "menu": "menu, stock, prices, menu import",
    "staff": "staff accounts: list, unlock, disable, enable, reset sign-in",
    "sessions": "end another member's signed-in session",
    "audit-read": "read the audit log",
    "privacy-report": "read the privacy report (counts, never values)",
    "unmask-phone": "reveal one masked phone number (reason; audited)",
    "unmask-id": "reveal one masked ID-card number (reason and a fresh TOTP; audited)",
    "unmask-passport": "reveal one masked passport number (reason and a fresh TOTP; audited)",
    "members": "find and register members; the member panel of a bill; complaints",
    "members-admin": "credit points, issue campaign coupons, complete export and erasure requests",
    "guests": "hotel front desk: register guests from the ID or MRZ reader, stays, checkout (docs/guests.md)",
    "authority": "the police-report outbox: send, resend, mark acknowledged or refused (audited)",
    "equipment": "the equipment registry, maintenance plans and services done, device health (docs/equipment.md)",
    "tech": "the technician page /tech: devices live, test print, scan test, the broker's equipment, doctor, "
            "the QR sticker sheet",
    "tech-raw": "the raw bytes of a device's last frames on the technician page (reason; audited)",
}

# The actions floor staff have (the union of the floor roles'): what a privileged account that has
# not enrolled its password and TOTP keeps.
_FLOOR_ACTIONS = frozenset({"tables", "tasks", "orders", "kds", "bill", "reprint", "members", "guests"})

MATRIX: dict[str, frozenset[str]] = {
    "waiter": frozenset({"tables", "tasks", "orders", "kds", "members"}),
    "kitchen": frozenset({"kds", "tasks"}),
    "cashier": frozenset({"tables", "orders", "bill", "reprint", "tasks", "members",
                         "guests"}),  # guests: the hotel front desk
    "manager": frozenset({"tables", "tasks", "orders", "kds", "bill", "reprint", "void", "menu", "staff",
                          "sessions", "audit-read", "privacy-report", "unmask-phone", "unmask-id",
                          "unmask-passport", "members", "members-admin", "guests", "authority",
                          "equipment"}),
    "technician": frozenset({"reprint", "kds", "tech", "tech-raw"}),
    "auditor": frozenset({"audit-read", "privacy-report"}),  # sees no unmasked data
}


def _check() -> None:
    if set(MATRIX) != set(ROLES):
        raise RuntimeError("MATRIX must list every role")
    for role, actions in MATRIX.items():
        unknown = actions - set(ACTIONS)
        if unknown:
            raise RuntimeError(f"MATRIX[{role!r}] names unknown actions {sorted(unknown)}")
    if set(ROLES) != FLOOR_ROLES | PRIVILEGED_ROLES:
        raise RuntimeError("every role is floor or privileged")


_check()


def allowed(role: str, action: str, *, mfa: bool = True) -> bool:
    """Whether ``role`` may do ``action``; ``mfa``: the account signs in with password + TOTP.

    A privileged role without TOTP keeps only its floor actions (see the module's text).
    """
    if action not in ACTIONS:
        raise KeyError(f"unknown action {action!r} (gateway/staff/matrix.py ACTIONS)")
    actions = MATRIX.get(role, frozenset())
    if role in PRIVILEGED_ROLES and not mfa:
        actions = actions & _FLOOR_ACTIONS
    return action in actions


def needs_totp(role: str) -> bool:
    """Whether accounts of ``role`` sign in with a password and TOTP (else a PIN)."""
    return role in PRIVILEGED_ROLES
