"""Secrets given to the service as systemd credentials (``LoadCredential=``/``LoadCredentialEncrypted=``).

A secret path in the config may start with ``${CREDENTIALS_DIRECTORY}/`` (``storegw provision init``
writes them so): systemd sets that variable for the service to a private, read-only directory
holding the decrypted credentials, so the file never lies readable on disk. ``storegw doctor``,
run as root, borrows the credentials of the installed unit the same way (provisioning/credentials.py).
"""

from __future__ import annotations

import os

from gateway.core.errors import ConfigError

VAR = "CREDENTIALS_DIRECTORY"
PREFIX = "${CREDENTIALS_DIRECTORY}/"


def credential_path(name: str) -> str:
    """Return the config value naming the systemd credential ``name``."""
    return PREFIX + name


def expand(path: str, key: str) -> str:
    """Return ``path`` with ``${CREDENTIALS_DIRECTORY}`` replaced; a clear error when it is not set."""
    if not path.startswith(PREFIX):
        return path
    base = os.environ.get(VAR)
    if not base:
        raise ConfigError(f"{key}: {path} is a systemd credential, but $CREDENTIALS_DIRECTORY is not set: "
                          "it is set for the storegw service (systemctl start storegw); run `storegw doctor` "
                          "as root to check it outside the service", key=key)
    return os.path.join(base, path.removeprefix(PREFIX))
