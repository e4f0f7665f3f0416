"""A provisioned board in a temporary directory: `storegw provision init` by flags, with its broker
files beside it, and `storegw doctor` run on it as the service would see it (its credentials)."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w
from realparts import MOSQUITTO, ROOT, free_port, wait_port


@dataclass
class Board:
    """Paths of one provisioned board (config, credentials, data) in a test directory."""

    dir: Path

    @property
    def config(self) -> Path:
        return self.dir / "etc" / "storegw.toml"

    @property
    def credentials(self) -> Path:
        return self.dir / "etc" / "credentials"

    @property
    def data(self) -> Path:
        return self.dir / "data"

    def env(self) -> dict[str, str]:
        """The environment the service has: its credentials directory."""
        return {**os.environ, "CREDENTIALS_DIRECTORY": str(self.credentials)}

    def storegw(self, *args: str, stdin: str = "", check: bool = True) -> subprocess.CompletedProcess:
        """Run the storegw CLI (stdin not a terminal)."""
        res = subprocess.run([sys.executable, "-m", "gateway", *args], input=stdin, capture_output=True, text=True,
                             timeout=120, cwd=ROOT, env=self.env())
        if check and res.returncode != 0:
            raise AssertionError(f"storegw {' '.join(args)} exited {res.returncode}: {res.stdout}{res.stderr}")
        return res

    def edit(self, **sections: dict[str, Any]) -> None:
        """Change keys of the config file (section -> {key: value}); None removes a key."""
        doc = tomllib.loads(self.config.read_text())
        for name, values in sections.items():
            for key, value in values.items():
                if value is None:
                    doc.setdefault(name, {}).pop(key, None)
                else:
                    doc.setdefault(name, {})[key] = value
        self.config.write_text(tomli_w.dumps(doc))

    def checks(self, timeout: float = 3.0) -> dict[tuple[str, str], Any]:
        """Doctor's checks in this process, as the service sees the board: {(check, level): Finding}."""
        from gateway import config
        from provisioning.doctor import run_checks

        old = os.environ.get("CREDENTIALS_DIRECTORY")
        os.environ["CREDENTIALS_DIRECTORY"] = str(self.credentials)
        try:
            found = run_checks(config.load(self.config), timeout)
        finally:
            if old is None:
                del os.environ["CREDENTIALS_DIRECTORY"]
            else:
                os.environ["CREDENTIALS_DIRECTORY"] = old
        return {(f.check, f.level): f for f in found}

    def accounts(self, *devices: str) -> dict[str, str]:
        """`storegw provision mosquitto`, then `equipment add` for each device, in this process: passwords."""
        from gateway import config
        from provisioning import mosquitto

        old = os.environ.get("CREDENTIALS_DIRECTORY")
        os.environ["CREDENTIALS_DIRECTORY"] = str(self.credentials)
        try:
            cfg = config.load(self.config)
            mosquitto.provision(cfg)
            return {dev: mosquitto.add_account(cfg, dev) for dev in devices}
        finally:
            if old is None:
                del os.environ["CREDENTIALS_DIRECTORY"]
            else:
                os.environ["CREDENTIALS_DIRECTORY"] = old

    def doctor(self, timeout: str = "3") -> tuple[int, dict[tuple[str, str], dict[str, str]], str]:
        """Run doctor --json; return (exit code, {(check, level): finding}, raw stdout)."""
        res = self.storegw("doctor", "--config", str(self.config), "--timeout", timeout, "--json", check=False)
        try:
            doc = json.loads(res.stdout)
        except ValueError:
            raise AssertionError(res.stdout + res.stderr) from None
        return res.returncode, {(f["check"], f["level"]): f for f in doc["findings"]}, res.stdout


_template: list[Path] = []


def provision(dir_: Path, *, hq_port: int | None = None, local_port: int | None = None, extra: tuple[str, ...] = (),
              fresh: bool = False) -> Board:
    """A board provisioned by `storegw provision init` by flags in ``dir_`` (no TLS to HQ), broker files in
    ``dir_/mosquitto``. Unless ``fresh``, a copy of one board provisioned once per session (same keys,
    paths and ports rewritten): provisioning runs every migration, a copy takes milliseconds."""
    if fresh or extra:
        return _provision(dir_, hq_port=hq_port, local_port=local_port, extra=extra)
    if not _template:
        base = Path(tempfile.mkdtemp(prefix="storegw-board-"))
        atexit.register(shutil.rmtree, base, True)
        _provision(base / "board")
        _template.append(base / "board")
    shutil.copytree(_template[0], dir_, symlinks=True, dirs_exist_ok=True)
    board = Board(dir_)
    board.config.write_text(board.config.read_text().replace(str(_template[0]), str(dir_)))
    board.edit(local_mqtt={"port": local_port or free_port()}, uplink={"port": hq_port or free_port()},
               web={"listen": f"127.0.0.1:{free_port()}"})
    return board


def _provision(dir_: Path, *, hq_port: int | None = None, local_port: int | None = None,
               extra: tuple[str, ...] = ()) -> Board:
    board = Board(dir_)
    board.storegw("provision", "init", "--config", str(board.config), "--data-dir", str(board.data),
                  "--store-id", "sh-001", "--hq-host", "127.0.0.1", "--hq-port", str(hq_port or free_port()),
                  "--no-hq-tls", "--timezone", "Asia/Shanghai", "--local-port", str(local_port or free_port()),
                  "--web-listen", f"127.0.0.1:{free_port()}", "--time-server", "", *extra)
    board.edit(local_mqtt={"broker_passwd_file": str(dir_ / "mosquitto" / "passwd"),
                           "broker_acl_file": str(dir_ / "mosquitto" / "acl")})
    return board


class BoardBroker:
    """The board's real Mosquitto, with storegw's include (systemd/mosquitto/storegw.conf) and the
    generated password file and ACL."""

    def __init__(self, board: Board, port: int) -> None:
        self.board, self.port = board, port
        self.dir = board.dir / "mosquitto"
        self.dir.mkdir(parents=True, exist_ok=True)
        conf = (ROOT / "systemd" / "mosquitto" / "storegw.conf").read_text()
        conf = (conf.replace("listener 1883 127.0.0.1", f"listener {port} 127.0.0.1")
                .replace("/etc/mosquitto/storegw.passwd", str(self.dir / "passwd"))
                .replace("/etc/mosquitto/storegw.acl", str(self.dir / "acl"))
                .replace("/var/lib/mosquitto/", f"{self.dir}/"))
        (self.dir / "mosquitto.conf").write_text(conf + ("user root\n" if os.geteuid() == 0 else ""))
        self.proc: subprocess.Popen | None = None

    def start(self) -> BoardBroker:
        with open(self.dir / "log", "ab") as log:
            self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.dir / "mosquitto.conf")], stdout=log, stderr=log)
        wait_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)
