"""Real parts for tests and benches: Mosquitto brokers, config files, `storegw run` processes,
bounded waits, and the HQ message schema check.

The one home of these helpers: test modules import it by name (tests/ is on sys.path through
tests/conftest.py), bench/_harness.py adds tests/ to sys.path. Nothing here imports pytest.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
CHROMIUM = "/usr/bin/chromium"  # Debian's chromium; Playwright drives it (the `chromium` fixture)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def free_port() -> int:
    """Return a free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0) -> None:
    """Wait until something listens on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port}")


def wait_for(pred: Callable[[], Any], timeout: float = 30.0, what: str = "condition", *,
             interval: float = 0.05) -> Any:
    """Poll ``pred`` until it returns a truthy value (a bounded wait, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(interval)


def db_key(data_dir: Path) -> Any:
    """The database key of a gateway's data dir, through its keyring (the default keys dir beside it)."""
    from gateway.privacy.keys import current_db_key, keys_dir_for

    return current_db_key(data_dir, keys_dir_for(data_dir))


class Mosquitto:
    """A real Mosquitto broker on a loopback port; can be stopped and restarted on the same port."""

    def __init__(self, workdir: Path, port: int | None = None, *, persistence: bool = False,
                 max_queued: int = 200000, max_inflight: int = 1000) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            # as root, mosquitto would drop to its own user, which cannot write into tmp_path
            + ("user root\n" if os.geteuid() == 0 else "")
            + f"persistence {'true' if persistence else 'false'}\n"
            f"persistence_location {workdir}/\n"
            f"max_queued_messages {max_queued}\n"
            f"max_inflight_messages {max_inflight}\n"
            "set_tcp_nodelay true\n"
            "log_dest stderr\n"
            "log_type error\n")

    def start(self, timeout: float = 10.0) -> Mosquitto:
        """Start (or restart) the broker and wait until it listens (loading a large persistence file
        can take a while)."""
        if not Path(MOSQUITTO).exists():
            raise RuntimeError("mosquitto is not installed: run `apt-get install mosquitto` "
                               "(provisioning/dev.sh test does this)")
        with open(self.workdir / "mosquitto.log", "ab") as log:
            self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=log)
        wait_port(self.port, timeout)
        return self

    def stop(self) -> None:
        """Stop the broker."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def equipment(port: int, client_id: str) -> Any:
    """A paho client connected to a broker on loopback, its network loop running: a piece of equipment."""
    from gateway.spine.mqtt import new_client

    client = new_client(client_id, clean=True)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def config_text(data_dir: Path, *, local_port: int, hq_port: int, web_port: int, extra: str = "",
                window: str = "2s", grace: str = "1s", store_id: str = "sh-001", uplink: str = "") -> str:
    """Return a test config for a gateway talking to real brokers."""
    return f"""\
[store]
id = "{store_id}"
data_dir = "{data_dir.as_posix()}"

[local_mqtt]
host = "127.0.0.1"
port = {local_port}

[uplink]
host = "127.0.0.1"
port = {hq_port}
tls = false
reconnect_min = "200ms"
reconnect_max = "2s"
{uplink}

[web]
listen = "127.0.0.1:{web_port}"
public_host = "127.0.0.1:{web_port}"

[telemetry]
summary_window = "{window}"
summary_grace = "{grace}"
{extra}
"""


class GatewayProcess:
    """A real `storegw run` subprocess (killable with SIGKILL, restartable)."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.proc: subprocess.Popen | None = None
        text = config.read_text()
        self.web_port = int(text.split("listen = \"127.0.0.1:")[1].split("\"")[0])

    def start(self, wait: bool = True) -> GatewayProcess:
        """Start `storegw run` and wait for its health endpoint."""
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "gateway", "run", "--config", str(self.config)],
                                         stdout=subprocess.DEVNULL, stderr=log, env=env, cwd=ROOT)
        if wait:
            wait_for(self._healthy, timeout=30, what="gateway health endpoint")
        return self

    def _healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"storegw run exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
        try:
            self.health()
        except OSError:
            return False
        return True

    def health(self) -> dict[str, Any]:
        """Return the health document."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/api/v1/health", timeout=5) as r:
            return json.load(r)

    def kill(self) -> None:
        """SIGKILL the gateway (a crash or power cut, as far as the process knows)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> int:
        """SIGTERM and wait; return the exit code."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                return self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                return self.proc.wait()
        return self.proc.returncode if self.proc else 0


# -- every message that reaches HQ in any test is validated against docs/schemas (C4)

SCHEMA_DIR = ROOT / "docs" / "schemas"
TOPIC_SCHEMAS = {
    "/status": "status.json",
    "/manifest": "manifest.json",
    "/cmd/resend": "cmd-resend.json",
    "/telemetry/summary": "telemetry-summary.json",
    "/telemetry/raw": "telemetry-raw.json",
    "/alerts": "alerts.json",
    "/devices": "devices.json",
    "/orders/summary": "orders-summary.json",
    "/guests/summary": "guests-summary.json",
    "/members/summary": "members-summary.json",
    "/audit/checkpoint": "audit-checkpoint.json",
    "/privacy/receipt": "privacy-receipt.json",
    "/reports/daily": "reports-daily.json",
}
_validators: dict[str, Any] = {}


def validate_hq_message(topic: str, doc: Any) -> str | None:
    """Return a problem description if an upstream message does not match its JSON Schema."""
    import jsonschema

    suffix = next((s for s in TOPIC_SCHEMAS if topic.endswith(s)), None)
    if suffix is None:
        return f"{topic}: no JSON Schema documents this topic (docs/schemas)"
    path = SCHEMA_DIR / TOPIC_SCHEMAS[suffix]
    if not path.exists():
        return f"{topic}: schema file {path.name} is missing"
    validator = _validators.get(suffix)
    if validator is None:
        schema = json.loads(path.read_text())
        validator = _validators[suffix] = jsonschema.Draft202012Validator(
            schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    if errors:
        return f"{topic}: {errors[0].message} at {list(errors[0].path)}"
    return None




# -- a real PostgreSQL (Debian's `postgresql` package) in a temporary directory, stopped by PID

def pg_bindir() -> Path:
    """Where initdb and postgres are: ``pg_config --bindir``, else the newest /usr/lib/postgresql/*/bin."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False).stdout.strip()
        if out and (Path(out) / "initdb").exists():
            return Path(out)
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name)
                   if p.parent.parent.name.isdigit() else 0)
    if not found:
        raise RuntimeError("PostgreSQL is not installed: run `apt-get install postgresql` "
                           "(provisioning/dev.sh test does this)")
    return found[-1].parent


class Postgres:
    """A throwaway PostgreSQL server: initdb in a temp dir, a random loopback port, its unix socket in
    the same dir, stopped by PID. As root it runs as ``nobody`` (initdb refuses to run as root)."""

    def __init__(self, *, fsync: bool = False) -> None:
        import tempfile

        self.bindir = pg_bindir()
        self.dir = Path(tempfile.mkdtemp(prefix="storegw-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.fsync = fsync
        self.proc: subprocess.Popen | None = None
        self._user: dict[str, Any] = {}
        if os.geteuid() == 0:
            import pwd

            nobody = pwd.getpwnam("nobody")
            os.chown(self.dir, nobody.pw_uid, nobody.pw_gid)
            self._user = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}

    @property
    def url(self) -> str:
        """A libpq URL for the ``postgres`` database as the superuser ``postgres``."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> Postgres:
        """initdb (first time only), start the server and wait until it accepts connections."""
        env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
        if not self.data.exists():
            subprocess.run([str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                            "-E", "UTF8", "--no-sync"], check=True, capture_output=True, env=env, cwd=self.dir,
                           **self._user)
        args = [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port), "-k", str(self.dir),
                "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=50", "-c", "shared_buffers=64MB"]
        if not self.fsync:
            args += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        with open(self.dir / "postgres.log", "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=log, env=env, cwd=self.dir, **self._user)
        deadline = time.monotonic() + 30
        while not (self.dir / f".s.PGSQL.{self.port}").exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start: {(self.dir / 'postgres.log').read_text()[-2000:]}")
            time.sleep(0.05)
        wait_port(self.port)
        return self

    def stop(self) -> None:
        """Fast shutdown by PID (SIGINT), SIGKILL if it hangs; then remove the directory."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


def postgres(*, fsync: bool = False) -> Postgres:
    """Start a throwaway PostgreSQL (``Postgres``); call ``.stop()`` on it when done."""
    return Postgres(fsync=fsync).start()
