"""Generate camera frames and video files holding real QR codes, for tests, the bench and the demo.

Frames look like what a fixed counter camera sees: a cluttered background (gradients, boxes,
printed text and lines), sometimes a QR code (made with segno) on a card, warped in perspective,
then blurred, lit by glare, noised and JPEG-compressed like an MJPG webcam. Everything comes from
one ``numpy.random.Generator`` seed, so a frame set is reproducible byte for byte.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import segno

WIDTH, HEIGHT = 1280, 720


@dataclass(frozen=True)
class Frame:
    """One generated BGR frame and the payload it shows (None for a frame with no code)."""

    image: np.ndarray
    payload: str | None
    tags: tuple[str, ...] = ()


def qr_matrix(payload: str, error: str = "m") -> np.ndarray:
    """Return the QR symbol for ``payload`` as a uint8 array of modules (1 = dark), quiet zone included."""
    qr = segno.make(payload, error=error, micro=False)
    return np.array([list(row) for row in qr.matrix_iter(scale=1, border=4)], dtype=np.uint8)


def qr_image(payload: str, module_px: int, error: str = "m") -> np.ndarray:
    """Return a grayscale image of the QR code with ``module_px`` pixels per module."""
    mat = qr_matrix(payload, error)
    img = np.where(mat > 0, 0, 255).astype(np.uint8)
    return cv2.resize(img, None, fx=module_px, fy=module_px, interpolation=cv2.INTER_NEAREST)


def payload_for(rng: np.random.Generator) -> str:
    """Return a realistic store payload: a table URL, a member code or a voucher."""
    kind = int(rng.integers(3))
    if kind == 0:
        token = "".join(rng.choice(list(string.ascii_letters + string.digits), 10))
        return f"https://order.example-store.cn/t/{int(rng.integers(1, 80))}?k={token}"
    if kind == 1:
        return f"M{int(rng.integers(10**9, 10**10))}"
    return f"VCH-{int(rng.integers(10**5, 10**6))}-{''.join(rng.choice(list(string.ascii_uppercase), 6))}"


def background(rng: np.random.Generator, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """Return a cluttered counter-top scene: gradient, boxes, lines and printed text."""
    base = rng.uniform(60, 200, size=3)
    tilt = rng.uniform(-60, 60, size=3)
    ramp = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :, None]
    img = np.clip(base[None, None, :] + tilt[None, None, :] * ramp, 0, 255)
    img = np.broadcast_to(img, (height, width, 3)).astype(np.uint8).copy()
    for _ in range(int(rng.integers(6, 14))):  # objects on the counter
        x, y = int(rng.integers(0, width - 40)), int(rng.integers(0, height - 40))
        w, h = int(rng.integers(40, 400)), int(rng.integers(30, 300))
        color = tuple(int(c) for c in rng.integers(0, 256, size=3))
        cv2.rectangle(img, (x, y), (x + w, y + h), color, -1 if rng.random() < 0.7 else 3)
    for _ in range(int(rng.integers(4, 12))):  # receipt text, labels
        alphabet = list(string.ascii_uppercase + string.digits + " ")
        text = "".join(rng.choice(alphabet, int(rng.integers(4, 18))))
        org = (int(rng.integers(0, width - 200)), int(rng.integers(20, height)))
        color = tuple(int(c) for c in rng.integers(0, 256, size=3))
        cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, float(rng.uniform(0.5, 1.6)), color,
                    int(rng.integers(1, 4)))
    for _ in range(int(rng.integers(2, 8))):  # edges of trays, cables
        p1 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        p2 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        cv2.line(img, p1, p2, tuple(int(c) for c in rng.integers(0, 256, size=3)), int(rng.integers(1, 6)))
    if rng.random() < 0.3:  # a checkerboard-like tablecloth patch: dark squares, a classic false positive
        cell = int(rng.integers(8, 30)) * min(width, height) // HEIGHT + 1
        x, y = int(rng.integers(0, width - 8 * cell)), int(rng.integers(0, height - 8 * cell))
        for i in range(8):
            for j in range(8):
                if (i + j) % 2 == 0:
                    cv2.rectangle(img, (x + i * cell, y + j * cell), (x + (i + 1) * cell, y + (j + 1) * cell),
                                  (30, 30, 30), -1)
    return img


def _place_code(rng: np.random.Generator, img: np.ndarray, payload: str, tags: list[str],
                code_side: tuple[float, float]) -> None:
    """Draw ``payload`` as a QR code on a white card, warped in perspective, onto ``img`` in place."""
    height, width = img.shape[:2]
    n_modules = qr_matrix(payload).shape[0]
    # printed symbol size in the frame, quiet zone included; it must fit, rotated, in the frame
    side = min(float(rng.uniform(*code_side)), 0.7 * min(width, height))
    module_px = max(2, int(np.ceil(side / n_modules)))
    code = qr_image(payload, module_px)
    size = code.shape[0]
    card = cv2.cvtColor(code, cv2.COLOR_GRAY2BGR)
    cx = float(rng.uniform(side * 0.7, width - side * 0.7))
    cy = float(rng.uniform(side * 0.7, height - side * 0.7))
    angle = float(rng.uniform(-np.pi, np.pi))
    half = side / 2
    corners = np.array([[-half, -half], [half, -half], [half, half], [-half, half]], dtype=np.float32)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]], dtype=np.float32)
    dst = corners @ rot.T + np.array([cx, cy], dtype=np.float32)
    jitter = float(rng.uniform(0.0, 0.16)) if rng.random() < 0.6 else 0.0
    if jitter:
        tags.append("perspective")
        dst += rng.uniform(-jitter, jitter, size=(4, 2)).astype(np.float32) * side
    src = np.array([[0, 0], [size, 0], [size, size], [0, size]], dtype=np.float32)
    m = cv2.getPerspectiveTransform(src, dst)
    warped = cv2.warpPerspective(card, m, (width, height), flags=cv2.INTER_LINEAR)
    mask = cv2.warpPerspective(np.full((size, size), 255, np.uint8), m, (width, height))
    shade = float(rng.uniform(0.75, 1.0))  # paper under store lighting is never pure white
    warped = (warped.astype(np.float32) * shade).astype(np.uint8)
    np.copyto(img, warped, where=(mask > 127)[:, :, None])


def degrade(rng: np.random.Generator, img: np.ndarray, tags: list[str]) -> np.ndarray:
    """Apply camera effects to ``img``: blur, glare, sensor noise and MJPG compression."""
    height, width = img.shape[:2]
    out = img
    if rng.random() < 0.5:
        tags.append("blur")
        sigma = float(rng.uniform(0.6, 1.8))
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    if rng.random() < 0.25:
        tags.append("motion")  # a hand-held phone or card moving while the shutter is open
        length = int(rng.integers(3, 9))
        kernel = np.zeros((length, length), np.float32)
        kernel[length // 2, :] = 1.0 / length
        rot = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), float(rng.uniform(0, 180)), 1.0)
        kernel = cv2.warpAffine(kernel, rot, (length, length))
        out = cv2.filter2D(out, -1, kernel / max(float(kernel.sum()), 1e-6))
    if rng.random() < 0.35:
        tags.append("glare")  # a ceiling light reflected on glossy paper or a phone screen
        gx, gy = int(rng.uniform(0, width)), int(rng.uniform(0, height))
        radius = float(rng.uniform(60, 220))
        strength = float(rng.uniform(60, 150))
        reach = int(3 * radius)
        x0, x1 = max(0, gx - reach), min(width, gx + reach)
        y0, y1 = max(0, gy - reach), min(height, gy + reach)
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        blob = np.exp(-(((xx - gx) ** 2 + (yy - gy) ** 2) / (2 * radius**2))) * strength
        out = out.copy()
        patch = out[y0:y1, x0:x1].astype(np.float32) + blob[:, :, None]
        out[y0:y1, x0:x1] = np.clip(patch, 0, 255).astype(np.uint8)
    if rng.random() < 0.7:
        tags.append("noise")
        sigma = float(rng.uniform(2, 9))
        noise = rng.standard_normal(size=(height, width, 1), dtype=np.float32) * sigma  # luma noise
        out = np.clip(out.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    quality = int(rng.integers(60, 95))
    ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - imencode of a valid image does not fail
        raise RuntimeError("JPEG encoding failed")
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def make_frame(rng: np.random.Generator, payload: str | None, width: int = WIDTH, height: int = HEIGHT,
               code_side: tuple[float, float] = (120, 400)) -> Frame:
    """Return one frame showing ``payload`` (or no code), with random camera effects."""
    tags: list[str] = []
    img = background(rng, width, height)
    if payload is not None:
        _place_code(rng, img, payload, tags, code_side)
    else:
        tags.append("empty")
    return Frame(degrade(rng, img, tags), payload, tuple(tags))


def frame_set(n: int, seed: int = 1, empty_ratio: float = 0.4, width: int = WIDTH, height: int = HEIGHT,
              code_side: tuple[float, float] = (120, 400)) -> list[Frame]:
    """Return ``n`` distinct frames, about ``empty_ratio`` of them with no code; same seed, same frames."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        payload = None if rng.random() < empty_ratio else payload_for(rng)
        frames.append(make_frame(rng, payload, width, height, code_side))
    return frames


def scene(payloads: Sequence[str | None], hold: int = 5, seed: int = 1, width: int = 640,
          height: int = 360) -> Iterator[np.ndarray]:
    """Yield a live-camera-like sequence: each payload (or empty counter) held still for ``hold`` frames."""
    rng = np.random.default_rng(seed)
    side = (0.3 * height, 0.6 * height)
    for payload in payloads:
        frame = make_frame(rng, payload, width, height, side).image
        for _ in range(hold):
            yield frame


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: float = 10.0) -> Path:
    """Write frames to an MJPG ``.avi`` file (what a USB webcam produces); return its path."""
    path = Path(path)
    writer = None
    try:
        for frame in frames:
            if writer is None:
                h, w = frame.shape[:2]
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
                if not writer.isOpened():
                    raise OSError(f"cannot write video {path}")
            writer.write(frame)
    finally:
        if writer is not None:
            writer.release()
    return path

