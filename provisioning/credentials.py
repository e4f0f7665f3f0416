"""The board's secrets as systemd credentials: sealed at install, borrowed by root's commands.

``storegw install`` seals each secret of ``/etc/storegw/credentials`` with ``systemd-creds encrypt``
(TPM2 where the board has one, else the host key ``/var/lib/systemd/credential.secret``) into
``NAME.cred`` and deletes the plain file; the unit loads it with ``LoadCredentialEncrypted=``. Where
``systemd-creds`` cannot encrypt (systemd < 250, or a staging root), the plain file stays, 0600 root,
loaded with ``LoadCredential=``. A copied SD card still carries the host key: this stops a copied
config directory, not a stolen board (docs/operations.md, "Keys").

:func:`borrowed` gives a root command outside the service (``doctor``, ``provision``) the same
``$CREDENTIALS_DIRECTORY`` the service sees, read from the installed unit's credential lines.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from gateway.core.credentials import VAR

UNIT_PATH = Path("/etc/systemd/system/storegw.service")
ENCRYPTED, PLAIN = "LoadCredentialEncrypted", "LoadCredential"


def can_encrypt() -> bool:
    """Whether ``systemd-creds`` can seal a credential on this machine (it makes the host key if needed)."""
    exe = shutil.which("systemd-creds")
    if exe is None or os.geteuid() != 0:
        return False
    res = subprocess.run([exe, "encrypt", "--name=probe", "-", "-"], input=b"probe", capture_output=True,
                         timeout=30, check=False)
    return res.returncode == 0


def seal(path: Path, name: str) -> Path:
    """Encrypt ``path`` into ``path.cred`` for the credential ``name`` and delete the plain file."""
    out = path.with_name(path.name + ".cred")
    subprocess.run(["systemd-creds", "encrypt", f"--name={name}", str(path), str(out)], check=True,
                   capture_output=True, timeout=30)
    os.chmod(out, 0o600)
    path.unlink()
    return out


def unit_credentials(unit: Path = UNIT_PATH) -> list[tuple[str, str, Path]]:
    """Return (directive, name, file) for each credential line of an installed unit."""
    if not unit.is_file():
        return []
    out = []
    for line in unit.read_text().splitlines():
        directive, _, value = line.strip().partition("=")
        if directive in (ENCRYPTED, PLAIN) and ":" in value:
            name, _, path = value.partition(":")
            out.append((directive, name, Path(path)))
    return out


def read_credential(directive: str, name: str, path: Path) -> bytes:
    """The plain bytes of one credential file (decrypted with systemd-creds when sealed)."""
    if directive == ENCRYPTED and path.suffix == ".cred":
        return subprocess.run(["systemd-creds", "decrypt", f"--name={name}", str(path), "-"], check=True,
                              capture_output=True, timeout=30).stdout
    return path.read_bytes()


@contextlib.contextmanager
def borrowed(unit: Path = UNIT_PATH, plain_dir: Path | None = None) -> Iterator[Path | None]:
    """Set ``$CREDENTIALS_DIRECTORY`` for this process, as the service has it, while the block runs.

    Nothing changes when it is set already (inside the service), or when this is not root. The
    credentials come from the installed unit's lines, or from ``plain_dir`` before the install (the
    plain files ``storegw provision init`` made). The private copy is deleted afterwards.
    """
    if os.environ.get(VAR) or os.geteuid() != 0:
        yield None
        return
    lines = unit_credentials(unit)
    if not lines and plain_dir is not None and plain_dir.is_dir():
        lines = [(PLAIN, p.name, p) for p in plain_dir.iterdir() if p.is_file() and "." not in p.name]
    if not lines:
        yield None
        return
    tmp = Path(tempfile.mkdtemp(prefix="storegw-creds-", dir="/run" if os.access("/run", os.W_OK) else None))
    try:
        for directive, name, path in lines:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                data = read_credential(directive, name, path)
                fd = os.open(tmp / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
        os.environ[VAR] = str(tmp)
        yield tmp
    finally:
        os.environ.pop(VAR, None)
        shutil.rmtree(tmp, ignore_errors=True)
