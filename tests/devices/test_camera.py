"""Camera QR family: the pipeline on generated frames (real OpenCV), and the driver end to end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from devices import registry
from devices.camera import OPTIONS, SPEC, build
from devices.camera.driver import CameraDriver
from devices.camera.protocol import QrPipeline, baseline_decode
from devices.camera.simulator import frame_set, qr_image, scene, write_video
from devices.debounce import Debouncer
from gateway.config import DeviceConfig, validate_options
from gateway.core.errors import ConfigError
from gateway.core.models import Availability, DeviceEvent, Reading

ROOT = Path(__file__).resolve().parents[2]


class RecordingSink:
    """An EventSink that records what the driver reports, for waiting on."""

    def __init__(self) -> None:
        self.events: list[DeviceEvent] = []
        self.changes: list[Availability] = []
        self._cond = threading.Condition()

    def event(self, event: DeviceEvent) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def availability(self, change: Availability) -> None:
        with self._cond:
            self.changes.append(change)
            self._cond.notify_all()

    def reading(self, reading: Reading) -> None:  # pragma: no cover - cameras send no readings
        raise AssertionError("a camera never sends readings")

    def wait(self, pred: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
        """Wait until ``pred()`` is truthy (a bounded wait, not a timing assertion)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (value := pred()):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"timed out waiting for {what}; got {self.changes} {self.events}")
                self._cond.wait(min(left, 0.2))
            return value

    def codes(self) -> list[str]:
        return [e.data["code"] for e in self.events]


@pytest.fixture
def driver_factory() -> Iterator[Callable[..., CameraDriver]]:
    made: list[CameraDriver] = []

    def make(source: str, **kw: Any) -> CameraDriver:
        kw.setdefault("backoff_max", 0.5)
        d = CameraDriver("cam-1", source, **kw)
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop()


# --------------------------------------------------------------------------- pipeline


def test_pipeline_decodes_at_least_what_the_plain_detector_does() -> None:
    frames = frame_set(24, seed=11)
    pipeline, plain = QrPipeline(), cv2.QRCodeDetector()
    ours = [pipeline.process(f.image) for f in frames]
    base = [baseline_decode(plain, f.image) for f in frames]

    with_code = [i for i, f in enumerate(frames) if f.payload is not None]
    assert 5 <= len(with_code) <= 20
    ours_ok = sum(1 for i in with_code if frames[i].payload in ours[i])
    base_ok = sum(1 for i in with_code if frames[i].payload in base[i])
    assert ours_ok >= base_ok
    assert ours_ok >= 0.8 * len(with_code)
    for f, codes in zip(frames, ours, strict=True):
        assert all(c == f.payload for c in codes), "no wrong decodes, nothing in frames without a code"
    assert pipeline.stats.skipped == 0  # every generated frame is distinct


def test_pipeline_accepts_grayscale_and_small_frames() -> None:
    frame = np.full((240, 320, 3), 150, np.uint8)
    code = cv2.cvtColor(qr_image("M1234567890", 4), cv2.COLOR_GRAY2BGR)
    frame[40:40 + code.shape[0], 90:90 + code.shape[1]] = code
    frame = cv2.GaussianBlur(frame, (0, 0), 0.8)
    assert QrPipeline().process(frame) == ["M1234567890"]
    assert QrPipeline().process(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)) == ["M1234567890"]


def test_pipeline_reads_every_code_in_a_frame() -> None:
    frame = np.full((720, 1280, 3), 140, np.uint8)
    for payload, x in (("M1111111111", 100), ("VCH-123456-ABCDEF", 700)):
        code = cv2.cvtColor(qr_image(payload, 6), cv2.COLOR_GRAY2BGR)
        frame[150:150 + code.shape[0], x:x + code.shape[1]] = code
    frame = cv2.GaussianBlur(frame, (0, 0), 1.0)
    assert sorted(QrPipeline().process(frame)) == ["M1111111111", "VCH-123456-ABCDEF"]


def test_pipeline_skips_an_unchanged_scene_and_keeps_its_codes() -> None:
    frames = list(scene(["VCH-100001-ABCDEF", None, "VCH-100002-GHIJKL"], hold=4, seed=5))
    pipeline = QrPipeline(refresh_every=10)
    results = [pipeline.process(f) for f in frames]

    assert results[:4] == [["VCH-100001-ABCDEF"]] * 4  # still scene: the code stays visible
    assert results[4:8] == [[]] * 4
    assert results[8:] == [["VCH-100002-GHIJKL"]] * 4
    assert pipeline.stats.skipped == 9  # only the first frame of each still scene was decoded
    assert pipeline.stats.frames == 12


def test_pipeline_refreshes_a_still_scene_periodically() -> None:
    frames = list(scene(["M5555555555"], hold=7, seed=9))
    pipeline = QrPipeline(refresh_every=3)
    for f in frames:
        assert pipeline.process(f) == ["M5555555555"]
    assert pipeline.stats.skipped == 5  # processed frames 0 and 4 (after 3 skips)


def test_pipeline_reads_codes_back_from_an_mjpg_video(tmp_path: Path) -> None:
    payloads = ["https://order.example-store.cn/t/12?k=Zx81", None, "M0123456789"]
    path = write_video(tmp_path / "counter.avi", scene(payloads, hold=3, seed=4), fps=10)
    cap = cv2.VideoCapture(str(path))
    pipeline, seen = QrPipeline(), []
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            for code in pipeline.process(frame):
                if code not in seen:
                    seen.append(code)
    finally:
        cap.release()
    assert pipeline.stats.frames == 9
    assert seen == [p for p in payloads if p]


def test_debouncer_reports_a_code_once_while_it_stays_in_view() -> None:
    d = Debouncer(2.0)
    assert d.accept("A", 0.0)
    assert not d.accept("A", 1.5)
    assert not d.accept("A", 3.0)  # seen 1.5 s ago: still the same presentation
    assert d.accept("B", 3.1)
    assert d.accept("A", 5.5)  # out of view for 2.5 s: a new scan


# --------------------------------------------------------------------------- spec and options


def test_options_validate_with_defaults_and_teaching_errors() -> None:
    opts = validate_options("devices[0].options", {"source": "0", "debounce": "500ms"}, OPTIONS)
    assert opts["debounce"] == 0.5
    assert opts["fps_limit"] == 10.0
    assert opts["stall_timeout"] == 10.0
    assert registry.spec("camera") is SPEC
    assert not SPEC.needs_port
    driver = build(DeviceConfig(id="cam-bar", kind="camera", port="", options=opts))
    assert isinstance(driver, CameraDriver)
    assert (driver.device_id, driver.source, driver.downscale_width) == ("cam-bar", "0", 640)

    with pytest.raises(ConfigError, match="source is required"):
        validate_options("devices[0].options", {}, OPTIONS)
    with pytest.raises(ConfigError, match="did you mean `debounce`"):
        validate_options("devices[0].options", {"source": "0", "debunce": "1s"}, OPTIONS)


def test_gateway_side_never_loads_opencv() -> None:
    code = ("import sys, devices.camera, devices.camera.driver; "
            "print(sorted(m for m in ('cv2', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- driver end to end


def test_driver_reports_each_code_once_and_the_end_of_a_file(tmp_path: Path, driver_factory) -> None:
    payloads = ["M1000000001", None, "VCH-200300-QWERTY", None, "M1000000001"]
    path = write_video(tmp_path / "counter.avi", scene(payloads, hold=4, seed=8), fps=10)
    sink = RecordingSink()
    driver = driver_factory(str(path), fps_limit=0, debounce=60.0)
    driver.start(sink)

    sink.wait(lambda: any(not c.available for c in sink.changes), "the end of the file")
    assert [c.available for c in sink.changes] == [True, False]
    assert sink.changes[1].reason == "end of the video file"
    # The third presentation of M1000000001 is within the debounce window: reported once.
    assert sink.codes() == ["M1000000001", "VCH-200300-QWERTY"]
    assert {e.kind for e in sink.events} == {"code"}
    assert {e.data["source"] for e in sink.events} == {"camera"}
    assert all(e.device == "cam-1" for e in sink.events)


def test_killed_child_is_reported_and_restarted(tmp_path: Path, driver_factory) -> None:
    path = write_video(tmp_path / "loop.avi", scene(["M2000000002", None], hold=3, seed=6), fps=10)
    sink = RecordingSink()
    driver = driver_factory(str(path), loop=True, fps_limit=30)
    driver.start(sink)
    sink.wait(lambda: driver.available and sink.events, "frames and a scan")
    first_pid = driver.child_pid
    assert first_pid is not None

    os.kill(first_pid, signal.SIGKILL)
    sink.wait(lambda: len(sink.changes) >= 3, "unavailable, then available again")
    assert [c.available for c in sink.changes[:3]] == [True, False, True]
    assert "SIGKILL" in sink.changes[1].reason
    assert driver.restarts >= 1
    assert driver.child_pid not in (None, first_pid)

    driver.stop()
    assert not driver.available
    assert driver.child_pid is None
    assert len(sink.changes) == 3  # a deliberate stop is not an outage


def test_unopenable_source_is_unavailable_and_retried(tmp_path: Path, driver_factory) -> None:
    sink = RecordingSink()
    driver = driver_factory(str(tmp_path / "missing.avi"), backoff_max=0.2)
    driver.start(sink)
    sink.wait(lambda: sink.changes, "an availability change")
    sink.wait(lambda: driver.restarts >= 2, "two restarts")
    assert [c.available for c in sink.changes] == [False]  # reported once, not at every retry
    assert "cannot open camera source" in sink.changes[0].reason


def test_silent_child_is_killed_after_the_stall_timeout(tmp_path: Path, driver_factory) -> None:
    hang = tmp_path / "hang"
    hang.write_text("#!/bin/sh\nexec sleep 600\n")
    hang.chmod(0o755)
    sink = RecordingSink()
    driver = driver_factory("0", python=str(hang), stall_timeout=0.5)
    driver.start(sink)
    sink.wait(lambda: sink.changes, "the stall to be noticed")
    assert not sink.changes[0].available
    assert "no frames from the camera" in sink.changes[0].reason
    sink.wait(lambda: driver.restarts >= 1, "a restart")
