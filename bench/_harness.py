"""Real parts for the benches: Mosquitto on a free loopback port, a config file, a `storegw run` process.

Shared by ``bench/ingest.py``, ``bench/drain.py`` and ``bench/rush.py``; built on
``tests/realparts.py`` (which imports no pytest).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Mosquitto runner, free ports and bounded waits are the tests' real parts (tests/realparts.py).
sys.path.insert(0, str(ROOT / "tests"))
from realparts import Mosquitto as Broker  # noqa: E402,F401 - re-exported to the benches
from realparts import free_port, wait_for, wait_port  # noqa: E402,F401


def make_log(name: str) -> Callable[[str], None]:
    """Return a function that writes ``[bench/NAME] msg`` progress lines to stderr."""
    def log(msg: str) -> None:
        print(f"[bench/{name}] {msg}", file=sys.stderr, flush=True)
    return log


def write_config(path: Path, *, data_dir: Path, local_port: int, hq_port: int, web_port: int,
                 client_id: str = "", uplink: str = "", telemetry: str = "", alerts: str = "",
                 store_id: str = "bench-001") -> Path:
    """Write a gateway config for real brokers on loopback (TOML)."""
    path.write_text(f"""\
[store]
id = "{store_id}"
data_dir = "{data_dir.as_posix()}"

[local_mqtt]
host = "127.0.0.1"
port = {local_port}
client_id = "{client_id or 'storegw-' + store_id + '-local'}"

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
{telemetry}

[alerts]
{alerts}
""")
    return path


class GatewayProc:
    """`python -m gateway run --config FILE` in a subprocess, as systemd runs `storegw run`."""

    def __init__(self, config: Path, web_port: int, log_file: Path, *, profile: Path | None = None,
                 root: Path = ROOT) -> None:
        self.config = config
        self.root = root
        self.web_port = web_port
        self.log_file = log_file
        self.profile = profile
        self.proc: subprocess.Popen | None = None
        self._pid = 0

    @property
    def pid(self) -> int:
        """The gateway's process id (not py-spy's when profiling)."""
        assert self.proc is not None
        return self._pid or self.proc.pid

    def start(self, env: dict[str, str] | None = None) -> GatewayProc:
        """Start the process (returns at once; see ``wait_healthy``); under py-spy when profiling."""
        full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        cmd = [sys.executable, "-m", "gateway", "run", "--config", str(self.config)]
        if self.profile is not None:
            spy = Path(sys.executable).with_name("py-spy")
            if not spy.exists():
                raise SystemExit(f"--profile needs py-spy: {Path(sys.executable).parent}/pip install py-spy")
            # raw = collapsed stacks (one line per stack and count), per thread, GIL holder only
            cmd = [str(spy), "record", "--rate", "1000", "--threads", "--gil", "--format", "raw", "--output",
                   str(self.profile), "--", *cmd]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                     stderr=open(self.log_file, "ab"),  # noqa: SIM115
                                     env=full_env, cwd=self.root)
        if self.profile is not None:
            self._pid = wait_for(self._child_pid, 10, "the gateway under py-spy", interval=0.005)
        return self

    def _child_pid(self) -> int:
        assert self.proc is not None
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        except OSError:
            return 0
        return int(children[0]) if children else 0

    def check_alive(self) -> None:
        """Raise RuntimeError with the end of its log if the process has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            tail = self.log_file.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"storegw run exited with {self.proc.returncode}:\n{tail}")

    def health(self) -> dict[str, Any] | None:
        """Return the health document, or None when the gateway does not answer (yet)."""
        self.check_alive()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/api/v1/health", timeout=5) as r:
                return json.load(r)
        except urllib.error.HTTPError as err:  # 503 while failing still carries the document
            return json.load(err)
        except OSError:
            return None

    def wait_healthy(self, pred: Callable[[dict[str, Any]], bool] = lambda h: True, timeout: float = 60,
                     what: str = "the gateway's health endpoint") -> dict[str, Any]:
        """Wait until the health endpoint answers and ``pred(health)`` holds; return the document."""
        def ok() -> dict[str, Any] | None:
            h = self.health()
            return h if h is not None and pred(h) else None
        return wait_for(ok, timeout, what)

    def status_kb(self, field: str) -> int:
        """Return a ``/proc/PID/status`` field in KiB (VmHWM: peak RSS, VmRSS: current RSS)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise KeyError(field)

    def stop(self) -> int:
        """SIGTERM and wait for the exit code (SIGKILL after 20 s)."""
        if self.proc is None:
            return 0
        if self._pid:  # py-spy writes its profile when the gateway exits
            try:
                os.kill(self._pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            self.proc.wait(60)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def summarize_profile(path: Path, log: Callable[[str], None], top: int = 25) -> None:
    """Log where the samples of a py-spy ``--format raw`` profile went: per thread, self and inclusive."""
    if not path.exists():
        log(f"no profile at {path}")
        return
    per_thread: dict[str, int] = {}
    self_time: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = frames[0]
        frames = frames[1:]
        total += count
        per_thread[thread] = per_thread.get(thread, 0) + count
        if frames:
            self_time[frames[-1]] = self_time.get(frames[-1], 0) + count
        for f in set(frames):
            incl[f] = incl.get(f, 0) + count
    log(f"profile {path.name}: {total} samples (GIL held)")
    for thread, n in sorted(per_thread.items(), key=lambda kv: -kv[1])[:8]:
        log(f"  thread {thread}: {100 * n / total:.1f}%")
    log("  self time:")
    for f, n in sorted(self_time.items(), key=lambda kv: -kv[1])[:top]:
        log(f"    {100 * n / total:5.1f}%  {f}")
    log("  inclusive (gateway code):")
    for f, n in sorted(incl.items(), key=lambda kv: -kv[1]):
        if "gateway/" in f and n * 100 >= total:
            log(f"    {100 * n / total:5.1f}%  {f}")


def thread_names(pid: int) -> dict[int, str]:
    """Return {native thread id: Python thread name} of a process, via ``py-spy dump`` when installed."""
    spy = Path(sys.executable).with_name("py-spy")
    if not spy.exists():
        return {}
    try:
        out = subprocess.run([str(spy), "dump", "--pid", str(pid)], capture_output=True, text=True,
                             timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    names = {}
    for line in out.splitlines():
        if line.startswith("Thread ") and '"' in line:
            tid = line.split()[1]
            if tid.isdigit():
                names[int(tid)] = line.split('"')[1]
    return names


def thread_cpu(pid: int) -> dict[str, float]:
    """Return CPU seconds (user + system) per thread of a running process (named via py-spy if present)."""
    tick = os.sysconf("SC_CLK_TCK")
    names = thread_names(pid)
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = names.get(int(task.name), f"tid {task.name}")
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out
