"""Camera QR reader: a V4L2 camera, video file or RTSP stream whose QR codes become ``scan`` events.

Capture and decoding run in a supervised child process (see ``driver.py``); the frame pipeline is
in ``protocol.py``; ``simulator.py`` makes frames and video files with real QR codes.
"""

from __future__ import annotations

from devices.base import DriverSpec
from devices.camera.driver import CameraDriver
from gateway.core.options import DeviceConfig, OptionSpec

OPTIONS = {
    "source": OptionSpec(
        "str", None, required=True,
        help="What to read: a V4L2 index (\"0\") or path (\"/dev/v4l/by-id/usb-...-video-index0\"), "
             "a video file, an RTSP/HTTP URL (\"rtsp://10.0.0.7:554/stream1\"), or \"sim:\" for generated "
             "demo frames."),
    "fps_limit": OptionSpec(
        "float", 10.0,
        help="Frames decoded per second at most (0 = as fast as possible); a live camera is still drained "
             "at its own rate so the decoded frame is always the newest."),
    "debounce": OptionSpec(
        "duration", "2s",
        help="A code is reported once, then again only after it has been out of view this long."),
    "downscale_width": OptionSpec(
        "int", 640,
        help="Width in pixels at which codes are located (decoding uses full resolution); raise it for "
             "small or distant codes, lower it on a slow board."),
    "loop": OptionSpec("bool", False, help="Replay a video file from the start when it ends (demo, tests)."),
    "stall_timeout": OptionSpec(
        "duration", "10s", help="Restart the capture process when it delivers no frame for this long."),
    "backoff_max": OptionSpec(
        "duration", "30s", help="Longest wait between restarts of a capture process that keeps failing."),
}


def build(cfg: DeviceConfig) -> CameraDriver:
    """Build the camera driver for one ``[[devices]]`` entry (options already validated)."""
    return CameraDriver.from_options(cfg.id, cfg.options)


SPEC = DriverSpec(
    kind="camera",
    description="QR codes from a camera, video file or RTSP stream (decoded in a child process)",
    factory=build,
    options=OPTIONS,
    needs_port=False,
)
