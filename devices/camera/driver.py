"""The camera QR driver: a child process captures and decodes, the gateway only debounces and reports.

Capture and decoding (OpenCV, FFmpeg, V4L2) run in a child Python process started with
``subprocess``: a camera driver hang, a codec segfault or an OOM kill ends the child, never the
gateway, and OpenCV and numpy are never loaded into the gateway process (RSS matters on the board).

The child writes one JSON object per line on its stdout:

- ``{"t": "open"}`` once the source is open;
- ``{"t": "alive", "frames": N, "decoded": D, "skipped": K}`` on the first frame, then about once a
  second (frames received, frames run through the pipeline, frames skipped as unchanged);
- ``{"t": "codes", "codes": [...]}`` for every frame in which codes are visible;
- ``{"t": "error", "reason": "..."}`` just before it exits on a failure;
- ``{"t": "eof"}`` at the end of a video file that is not looped (it then exits 0).

The parent's supervisor thread reads those lines, debounces codes into ``scan`` events, reports
availability, and restarts a child that exited or went silent for ``stall_timeout``, with backoff.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from devices.debounce import Debouncer
from gateway.core.models import Availability, DeviceEvent, EventSink, now_ms

_LOGGER = logging.getLogger(__name__)

_BACKOFF_START = 0.5
_MAX_LINE = 1 << 16
# The root that holds the ``devices`` package, so the child imports this very code even when
# storegw runs from a checkout that is not installed.
_ROOT = str(Path(__file__).resolve().parents[2])


class CameraDriver:
    """Read QR codes from a camera, video file or RTSP stream through a supervised child process."""

    def __init__(self, device_id: str, source: str, *, fps_limit: float = 10.0, debounce: float = 2.0,
                 downscale_width: int = 640, loop: bool = False, stall_timeout: float = 10.0,
                 backoff_max: float = 30.0, python: str | None = None) -> None:
        self.device_id = device_id
        self.source = source
        self.fps_limit = fps_limit
        self.downscale_width = downscale_width
        self.loop = loop
        self.stall_timeout = stall_timeout
        self.backoff_max = backoff_max
        self.python = python or sys.executable
        self.restarts = 0
        self._debouncer = Debouncer(debounce)
        self._sink: EventSink | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._available = False
        self._reported: bool | None = None  # last availability told to the sink

    @classmethod
    def from_options(cls, device_id: str, options: Mapping[str, Any]) -> CameraDriver:
        """Build a driver from validated ``[[devices]]`` options (see ``devices.camera.OPTIONS``)."""
        return cls(device_id, str(options["source"]), fps_limit=float(options["fps_limit"]),
                   debounce=float(options["debounce"]), downscale_width=int(options["downscale_width"]),
                   loop=bool(options["loop"]), stall_timeout=float(options["stall_timeout"]),
                   backoff_max=float(options["backoff_max"]))

    # -- Driver interface
    @property
    def available(self) -> bool:
        """Whether frames are flowing from the source right now."""
        return self._available

    @property
    def child_pid(self) -> int | None:
        """The process id of the current capture child, if one runs."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def start(self, sink: EventSink) -> None:
        """Start the supervisor thread (which starts the child); returns at once."""
        if self._thread is not None:
            raise RuntimeError(f"camera {self.device_id} already started")
        self._sink = sink
        self._reported = None
        self._stop.clear()
        self._thread = threading.Thread(target=self._supervise, name=f"camera-{self.device_id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the child process and join the supervisor thread."""
        self._stop.set()
        with self._lock:
            proc = self._proc
        if proc is not None:
            _terminate(proc)
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self._available = False

    # -- supervisor
    def _supervise(self) -> None:
        backoff = _BACKOFF_START
        try:
            while not self._stop.is_set():
                reason, finished, flowed = self._run_child()
                if self._stop.is_set():
                    break
                self._set_available(False, reason)
                if finished:
                    _LOGGER.info("Camera %s: %s; not restarting", self.device_id, reason)
                    break
                backoff = _BACKOFF_START if flowed else min(backoff * 2, self.backoff_max)
                self.restarts += 1
                _LOGGER.debug("Camera %s: restarting the capture process in %.1fs", self.device_id, backoff)
                self._stop.wait(backoff)
        except Exception:
            _LOGGER.exception("Camera %s: supervisor failed; the camera stays unavailable", self.device_id)
            self._set_available(False, "camera supervisor failed (see the log)")

    def _run_child(self) -> tuple[str, bool, bool]:
        """Run one child until it exits or stalls; return (reason, finished for good, frames flowed)."""
        args = {"source": self.source, "fps_limit": self.fps_limit, "downscale_width": self.downscale_width,
                "loop": self.loop}
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, env.get("PYTHONPATH", "")) if p)
        # Over Wi-Fi, RTSP over UDP smears frames; TCP is what IP cameras in stores need.
        env.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
        try:
            proc = subprocess.Popen(
                [self.python, "-c", "from devices.camera.driver import child_main; child_main()",
                 json.dumps(args)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=env, close_fds=True,
                start_new_session=True)  # a Ctrl-C in the terminal is the parent's to handle
        except OSError as err:
            return f"cannot start the camera process: {err}", False, False
        with self._lock:
            self._proc = proc
        if self._stop.is_set():  # stop() ran between the loop check and Popen
            _terminate(proc)
        error = ""
        eof = False
        flowed = False
        stalled = False
        sel = selectors.DefaultSelector()
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        sel.register(fd, selectors.EVENT_READ)
        buf = b""
        last_heard = time.monotonic()
        try:
            while True:
                if not sel.select(timeout=0.5):
                    if self._stop.is_set():
                        break
                    if time.monotonic() - last_heard > self.stall_timeout:
                        stalled = True
                        break
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    break  # the child closed its end: it exited
                buf += chunk
                *lines, buf = buf.split(b"\n")
                if len(buf) > _MAX_LINE:
                    buf = b""
                last_heard = time.monotonic()
                for line in lines:
                    msg = _parse(line)
                    kind = msg.get("t")
                    if kind in ("alive", "codes"):
                        flowed = True
                        self._set_available(True, "")
                        if kind == "codes":
                            self._report_codes(msg.get("codes", []), last_heard)
                    elif kind == "error":
                        error = str(msg.get("reason", ""))[:300]
                    elif kind == "eof":
                        eof = True
        finally:
            sel.close()
            _terminate(proc)
            proc.stdout.close()
            with self._lock:
                self._proc = None
        if stalled:
            reason = f"no frames from the camera for {self.stall_timeout:g}s; restarting its process"
            return reason, False, flowed
        if eof and proc.returncode == 0:
            return "end of the video file", True, flowed
        if error:
            return error, False, flowed
        return _exit_reason(proc.returncode), False, flowed

    def _report_codes(self, codes: list[Any], now: float) -> None:
        sink = self._sink
        for code in codes:
            if isinstance(code, str) and code and self._debouncer.accept(code, now):
                _LOGGER.debug("Camera %s: scanned a code", self.device_id)
                if sink is not None:
                    sink.event(DeviceEvent(self.device_id, kind="code", ts_ms=now_ms(),
                                           data={"code": code, "source": "camera"}))

    def _set_available(self, available: bool, reason: str) -> None:
        self._available = available
        if self._reported is available:
            return
        self._reported = available
        if available:
            _LOGGER.info("Camera %s is available", self.device_id)
        else:
            _LOGGER.warning("Camera %s is unavailable: %s", self.device_id, reason)
        if self._sink is not None:
            self._sink.availability(Availability(self.device_id, available, reason, ts_ms=now_ms()))


def _parse(line: bytes) -> dict[str, Any]:
    try:
        msg = json.loads(line)
    except ValueError:
        return {}
    return msg if isinstance(msg, dict) else {}


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    """End a child: SIGTERM, then SIGKILL if it does not go within 3 s; reap it."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(3)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the camera process was killed by {name}; restarting it"
    return f"the camera process exited with code {code}; restarting it"


# ---------------------------------------------------------------------------
# the child process (imports OpenCV; never runs inside the gateway process)


class _Emitter:
    """Write protocol lines on the real stdout; a closed pipe means the gateway is gone."""

    def __init__(self) -> None:
        # Keep fd 1 for ourselves and point fd 1 at stderr, so that whatever a C library prints
        # cannot corrupt the line protocol.
        self._out = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
        os.dup2(2, 1)
        sys.stdout = sys.stderr

    def send(self, **msg: Any) -> None:
        self._out.write(json.dumps(msg, ensure_ascii=False) + "\n")


def _open_source(source: str) -> tuple[Any, bool]:
    """Open ``source`` with OpenCV; return (capture, is_live). ``sim:`` yields simulator frames."""
    import cv2

    if source.startswith("sim:"):
        return _SimCapture(), False
    if source.isdigit():
        return cv2.VideoCapture(int(source)), True
    live = source.startswith("/dev/") or "://" in source
    cap = cv2.VideoCapture(source)
    if live:
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # latest frame, not a queue of stale ones
    return cap, live


class _SimCapture:
    """A VideoCapture look-alike that shows generated codes, for the demo (``source = "sim:"``)."""

    def __init__(self) -> None:
        import itertools

        import numpy as np

        from devices.camera import simulator

        rng = np.random.default_rng(7)
        payloads = [simulator.payload_for(rng) if i % 2 == 0 else None for i in range(8)]
        self._frames = itertools.cycle(list(simulator.scene(payloads, hold=20, seed=7)))

    def isOpened(self) -> bool:  # noqa: N802 - the VideoCapture spelling
        return True

    def read(self) -> tuple[bool, Any]:
        return True, next(self._frames)

    def release(self) -> None:
        pass


def child_main() -> None:
    """Run the capture and decode loop (the child process's entry point; args as JSON in argv[1])."""
    logging.basicConfig(level=logging.WARNING, format="camera-child: %(message)s")
    args = json.loads(sys.argv[1])
    emit = _Emitter()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    try:
        code = _capture_loop(args, emit, stopping)
    except BrokenPipeError:
        code = 0  # the gateway went away; nobody to report to
    except Exception as err:
        logging.getLogger(__name__).exception("capture loop failed")
        with contextlib.suppress(OSError):
            emit.send(t="error", reason=f"the camera process failed: {type(err).__name__}: {err}"[:300])
        code = 5
    os._exit(code)  # skip interpreter teardown: OpenCV's threads and FFmpeg do not always unwind cleanly


def _capture_loop(args: dict[str, Any], emit: _Emitter, stopping: threading.Event) -> int:
    """Read, decode and report until stopped; return the exit code (0 stopped or end of file)."""
    from devices.camera.protocol import QrPipeline

    source = str(args["source"])
    fps_limit = float(args.get("fps_limit") or 0.0)
    period = 1.0 / fps_limit if fps_limit > 0 else 0.0
    cap, live = _open_source(source)
    if not cap.isOpened():
        emit.send(t="error", reason=f"cannot open camera source {source!r}")
        return 3
    emit.send(t="open")
    pipeline = QrPipeline(int(args.get("downscale_width", 640)))
    next_due = time.monotonic()
    last_alive = 0.0
    received = 0  # frames that came from the source, decoded or not
    try:
        while not stopping.is_set():
            now = time.monotonic()
            if received and (received == 1 or now - last_alive >= 1.0):
                # The heartbeat the gateway's stall watchdog waits for, whatever fps_limit is.
                last_alive = now
                emit.send(t="alive", frames=received, decoded=pipeline.stats.frames,
                          skipped=pipeline.stats.skipped)
            if live:
                if not cap.grab():
                    emit.send(t="error", reason="the camera stopped delivering frames")
                    return 4
                received += 1
                if time.monotonic() < next_due:
                    continue  # keep the driver's queue drained; decode only at fps_limit
                ok, frame = cap.retrieve()
            else:
                delay = next_due - now
                if delay > 0:
                    stopping.wait(min(delay, 1.0))
                    continue
                ok, frame = cap.read()
                if not ok and args.get("loop") and received:
                    cap.release()
                    cap, live = _open_source(source)
                    ok, frame = cap.read()
                if not ok:
                    emit.send(t="eof")
                    return 0
                received += 1
            next_due = max(next_due + period, time.monotonic()) if period else 0.0
            if not ok or frame is None:
                continue
            codes = pipeline.process(frame)
            if codes:
                emit.send(t="codes", codes=codes)
    finally:
        cap.release()
    return 0
