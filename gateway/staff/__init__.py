"""Staff accounts, roles, sign-in with back-off and lock, and server-side sessions (``StaffService``)."""
