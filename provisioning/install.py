"""`storegw install` / `storegw uninstall`: put storegw on a board as systemd services, or take it off.

Install (root; ``--root DIR`` stages everything into DIR instead, for tests and images):

1. the ``storegw`` system user (groups dialout, lp) and its directories;
2. ``/etc/systemd/system/storegw.service`` from systemd/storegw.service (hardened: `systemd-analyze
   security` 1.6 OK), with ``ExecStart`` pointing at this storegw and one credential line per secret
   of ``/etc/storegw/credentials``, sealed with systemd-creds where possible (provisioning/credentials.py);
3. the store broker: ``/etc/mosquitto/conf.d/storegw.conf`` (minus what Debian's mosquitto.conf sets
   already: Mosquitto refuses a duplicate ``persistence_location``), its password file and ACL;
4. the kernel modules the unit's device groups need at boot, and a journald cap (log rotation);
5. ``systemctl enable`` storegw and mosquitto (``--now`` when systemd runs).

Everything written is listed in ``/etc/storegw/installed.json``; uninstall removes exactly that, and
keeps the config, the credentials and the data unless ``--purge``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.core.errors import GatewayError
from provisioning import credentials, mosquitto
from provisioning.identity import GATEWAY_USER

MANIFEST = "installed.json"
UNIT_NAME = "storegw.service"
JOURNALD_DROPIN = """\
# storegw logs to the journal; keep it bounded on a small SD card (written by storegw install).
[Journal]
SystemMaxUse=200M
MaxRetentionSec=1month
"""


class InstallError(GatewayError):
    """The install cannot go on; the message says what to do."""


def shipped(rel: str) -> Path:
    """A file of the checkout's systemd/ directory, or of the wheel's share/storegw/systemd/."""
    checkout = Path(__file__).resolve().parent.parent / "systemd"
    for base in (checkout, Path(sys.prefix) / "share" / "storegw" / "systemd"):
        if (base / rel).is_file():
            return base / rel
    raise InstallError(f"systemd/{rel} is missing from this installation of storegw; reinstall it")


def systemd_running(root: Path) -> bool:
    """Whether systemd is the init system of the machine being installed (never for a staging root)."""
    return root == Path("/") and Path("/run/systemd/system").is_dir()


def _at(root: Path, path: str | Path) -> Path:
    return root / str(path).lstrip("/")


class Installer:
    """One install or uninstall into ``root`` ("/" for the board)."""

    def __init__(self, cfg: Any, config_path: Path, *, root: Path = Path("/"),
                 exe: str = "", log: Callable[[str], None] = print) -> None:
        self.cfg, self.config_path, self.root, self.log = cfg, Path(config_path), Path(root), log
        self.exe = exe or str(Path(sys.argv[0]).absolute() if Path(sys.argv[0]).name == "storegw"
                              else Path(sys.prefix) / "bin" / "storegw")
        self.written: list[str] = []
        self.staging = self.root != Path("/")

    # -- helpers
    def path(self, p: str | Path) -> Path:
        """Where a board path is under the root."""
        return _at(self.root, p)

    def write(self, board_path: str, text: str, mode: int = 0o644) -> None:
        """Write a file (atomically) and remember it for uninstall."""
        dest = self.path(board_path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".tmp")
        tmp.write_text(text)
        os.chmod(tmp, mode)
        os.replace(tmp, dest)
        self.written.append(board_path)
        self.log(f"wrote {dest}")

    def run(self, *argv: str) -> subprocess.CompletedProcess:
        """Run a command; an InstallError with its output when it fails."""
        res = subprocess.run(list(argv), capture_output=True, text=True, timeout=120, check=False)
        if res.returncode != 0:
            raise InstallError(f"{' '.join(argv)} failed: {(res.stderr or res.stdout).strip()}")
        return res

    # -- steps
    def user(self) -> None:
        """The system user storegw, in dialout and lp (serial devices, USB printers)."""
        if self.staging:
            self.log(f"staging root: the user {GATEWAY_USER} is not created")
            return
        import grp
        import pwd

        try:
            pwd.getpwnam(GATEWAY_USER)
        except KeyError:
            self.run("useradd", "--system", "--user-group", "--home-dir", self.cfg.store.data_dir, "--no-create-home",
                     "--shell", "/usr/sbin/nologin", GATEWAY_USER)
            self.log(f"created the system user {GATEWAY_USER}")
        for group in ("dialout", "lp"):
            try:
                grp.getgrnam(group)
            except KeyError:
                continue
            self.run("usermod", "-aG", group, GATEWAY_USER)

    def directories(self) -> None:
        """The data, keys and authority directories: 0700, the storegw user's."""
        for d in (self.cfg.data_path, self.cfg.keys_path, self.cfg.authority_path):
            p = self.path(d)
            p.mkdir(parents=True, exist_ok=True)
            os.chmod(p, 0o700)
            if not self.staging:
                shutil.chown(p, GATEWAY_USER, GATEWAY_USER)
                for sub in p.rglob("*"):
                    shutil.chown(sub, GATEWAY_USER, GATEWAY_USER)
        etc = self.path(self.config_path.parent)
        os.chmod(etc, 0o755)  # the service reads its config and certificates here ...
        for name in (self.config_path.name, "hq.crt", "hq-ca.crt"):
            if (etc / name).exists():
                os.chmod(etc / name, 0o644)
        cred = etc / "credentials"
        if cred.is_dir():
            os.chmod(cred, 0o700)  # ... and never its secrets: systemd hands them over

    def secrets(self) -> list[str]:
        """Seal each credential where systemd-creds can; return the unit's credential lines."""
        board_dir = self.config_path.parent / "credentials"
        cred = self.path(board_dir)
        if not cred.is_dir():
            raise InstallError(f"{cred} does not exist: run `storegw provision init` first")
        encrypt = not self.staging and credentials.can_encrypt()
        lines = []
        for p in sorted(cred.iterdir()):
            if not p.is_file() or ".bak-" in p.name:
                continue
            name = p.name.removesuffix(".cred")
            if p.suffix == ".cred":
                lines.append(f"{credentials.ENCRYPTED}={name}:{board_dir / p.name}")
            elif encrypt:
                sealed = credentials.seal(p, name)
                self.log(f"sealed {p} into {sealed} (systemd-creds)")
                lines.append(f"{credentials.ENCRYPTED}={name}:{board_dir / sealed.name}")
            else:
                lines.append(f"{credentials.PLAIN}={name}:{board_dir / p.name}")
        return lines

    def unit(self, cred_lines: list[str]) -> None:
        """The hardened service unit, pointing at this storegw and this config, with its credentials."""
        out: list[str] = []
        placed = False
        for line in shipped("storegw.service").read_text().splitlines():
            if line.startswith("ExecStart="):
                line = f"ExecStart={self.exe} run --config {self.config_path}"
            elif line.startswith("# Boards from before the keyring"):
                continue
            elif line.startswith("LoadCredential"):  # the shipped example line: ours take its place
                out += [] if placed else cred_lines
                placed = True
                continue
            elif line.startswith("UMask=") and not placed:
                out += cred_lines
                placed = True
            elif line.startswith("ReadWritePaths="):
                line = "ReadWritePaths=" + " ".join(str(d) for d in (self.cfg.data_path.absolute(),
                                                                        self.cfg.keys_path, self.cfg.authority_path))
            out.append(line)
        self.write(f"/etc/systemd/system/{UNIT_NAME}", "\n".join(out) + "\n")

    def broker(self) -> None:
        """Mosquitto's include for the store broker, and its accounts (password file and ACL)."""
        lm = self.cfg.local_mqtt
        main = self.path("/etc/mosquitto/mosquitto.conf")
        taken = {ln.split()[0] for ln in main.read_text().splitlines()
                 if ln.strip() and not ln.startswith("#")} if main.exists() else set()
        out = []
        for line in shipped("mosquitto/storegw.conf").read_text().splitlines():
            word = line.split()[0] if line.strip() and not line.startswith("#") else ""
            if word in taken and word in ("persistence", "persistence_location", "autosave_interval", "pid_file"):
                out.append(f"# {line}   (set in mosquitto.conf)")
                continue
            line = (line.replace("listener 1883 127.0.0.1", f"listener {lm.port} {lm.host}")
                    .replace("/etc/mosquitto/storegw.passwd", lm.broker_passwd_file)
                    .replace("/etc/mosquitto/storegw.acl", lm.broker_acl_file))
            out.append(line)
        self.write("/etc/mosquitto/conf.d/storegw.conf", "\n".join(out) + "\n")
        cfg = self.cfg
        if self.staging:
            from dataclasses import replace

            cfg = replace(cfg, local_mqtt=replace(lm, broker_passwd_file=str(self.path(lm.broker_passwd_file)),
                                                  broker_acl_file=str(self.path(lm.broker_acl_file))))
        from provisioning.identity import credentials_env

        view = credentials_env(self.path(self.config_path.parent / "credentials")) if self.staging \
            else credentials.borrowed()
        with view:
            devices = mosquitto.provision(cfg)
        self.log(f"broker accounts: {GATEWAY_USER} and {len(devices)} device(s); {lm.broker_acl_file} generated")

    def extras(self) -> None:
        """Modules for the device groups at boot, and a bounded journal."""
        self.write("/etc/modules-load.d/storegw.conf", shipped("modules-load.d/storegw.conf").read_text())
        self.write("/etc/systemd/journald.conf.d/storegw.conf", JOURNALD_DROPIN)

    def enable(self) -> None:
        """Enable (and, under systemd, start) mosquitto and storegw."""
        systemctl = shutil.which("systemctl")
        if systemctl is None:
            self.log("systemctl is not installed: enable the units yourself")
            return
        if systemd_running(self.root):
            self.run(systemctl, "daemon-reload")
            self.run(systemctl, "enable", "--now", "mosquitto.service", UNIT_NAME)
            self.run(systemctl, "reload-or-restart", "mosquitto.service")
            self.log("enabled and started mosquitto and storegw")
            return
        units = [UNIT_NAME]
        if self.path("/lib/systemd/system/mosquitto.service").exists() or \
                self.path("/usr/lib/systemd/system/mosquitto.service").exists():
            units.insert(0, "mosquitto.service")
        self.run(systemctl, f"--root={self.root}", "enable", *units)
        self.log(f"enabled {', '.join(units)} (systemd is not running here: they start at the next boot)")

    def install(self) -> list[str]:
        """Every step, in order; write the manifest; return what was written."""
        self.user()
        self.directories()
        self.unit(self.secrets())
        self.broker()
        self.extras()
        self.enable()
        self.write(str(self.config_path.parent / MANIFEST),
                   json.dumps({"files": self.written, "exe": self.exe, "config": str(self.config_path)}, indent=1))
        return self.written

    def uninstall(self, *, purge: bool) -> None:
        """Disable and remove what install wrote; with ``purge`` also the config, the keys and the data."""
        manifest = self.path(self.config_path.parent / MANIFEST)
        files = json.loads(manifest.read_text())["files"] if manifest.exists() else []
        systemctl = shutil.which("systemctl")
        if systemctl and self.path(f"/etc/systemd/system/{UNIT_NAME}").exists():
            if systemd_running(self.root):
                subprocess.run([systemctl, "disable", "--now", UNIT_NAME], capture_output=True, check=False)
            else:
                subprocess.run([systemctl, f"--root={self.root}", "disable", UNIT_NAME], capture_output=True,
                               check=False)
        for f in files:
            p = self.path(f)
            if p.exists():
                p.unlink()
                self.log(f"removed {p}")
        lm = self.cfg.local_mqtt
        for f in (lm.broker_passwd_file, lm.broker_acl_file):
            if self.path(f).exists():
                self.path(f).unlink()
                self.log(f"removed {self.path(f)}")
        if systemd_running(self.root):
            subprocess.run([systemctl or "systemctl", "daemon-reload"], capture_output=True, check=False)
            subprocess.run([systemctl or "systemctl", "try-restart", "mosquitto.service"], capture_output=True,
                           check=False)
        if not purge:
            self.log(f"kept the config {self.config_path}, its credentials, and the data "
                     f"{self.cfg.data_path} and keys {self.cfg.keys_path} (--purge removes them)")
            return
        for d in (self.cfg.data_path, self.cfg.keys_path, self.cfg.authority_path, self.config_path.parent):
            p = self.path(d)
            if p.exists():
                shutil.rmtree(p)
                self.log(f"removed {p}")
        if not self.staging:
            subprocess.run(["userdel", GATEWAY_USER], capture_output=True, check=False)
            self.log(f"removed the user {GATEWAY_USER}")
