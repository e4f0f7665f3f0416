"""Benchmark the camera QR pipeline against plain ``cv2.QRCodeDetector().detectAndDecode``.

Both decode the same generated frames (segno QR codes with blur, noise, perspective, glare, and
frames with no code), in the same process, in the same run, interleaved frame by frame so that
neither gets a warmer cache or a quieter machine. Every frame of the set is distinct, so the
pipeline's unchanged-frame skip never fires: its speed here comes from detecting at low resolution
and decoding only the candidate crops. fps is wall-clock; the CPU-time ratio (process CPU, all
OpenCV threads) goes to stderr as a cross-check that does not depend on other load on the machine.

Prints progress to stderr and, last, one JSON line on stdout:
``{"frames", "fps", "baseline_fps", "ratio", "decode_rate", "baseline_decode_rate"}``.

    python bench/camera.py [--frames 200] [--seed 20240601] [--rounds 3] [--hold 1]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from devices.camera.protocol import QrPipeline, baseline_decode  # noqa: E402
from devices.camera.simulator import Frame, frame_set  # noqa: E402


def log(msg: str) -> None:
    """Write a progress line to stderr."""
    print(f"[bench/camera] {msg}", file=sys.stderr, flush=True)


def score(frames: list[Frame], results: list[list[str]]) -> tuple[int, int]:
    """Return (frames whose payload was decoded, decoded strings that are wrong or in empty frames)."""
    pairs = list(zip(frames, results, strict=True))
    correct = sum(1 for f, codes in pairs if f.payload is not None and f.payload in codes)
    wrong = sum(1 for f, codes in pairs for c in codes if c != f.payload)
    return correct, wrong


def held(frames: list[Frame], hold: int, seed: int) -> list[Frame]:
    """Repeat each frame ``hold`` times with new sensor noise (a still scene never gives identical frames)."""
    rng = np.random.default_rng(seed + 1)
    out = []
    for f in frames:
        for _ in range(hold):
            noise = rng.standard_normal(size=f.image.shape[:2] + (1,), dtype=np.float32) * 2.5
            img = np.clip(f.image.astype(np.float32) + noise, 0, 255).astype(np.uint8)
            out.append(Frame(img, f.payload, f.tags))
    return out


def timed_round(frames: list[Frame], methods: list[Callable[[np.ndarray], list[str]]],
                flip: bool) -> tuple[list[float], list[float], list[list[list[str]]]]:
    """Run every method on every frame, interleaved; return wall seconds, CPU seconds and results per method.

    The order alternates from frame to frame (and between rounds) so that neither method is always the
    one that finds the frame already in the CPU cache, and load from other processes hits both alike.
    """
    seconds = [0.0] * len(methods)
    cpu = [0.0] * len(methods)
    results: list[list[list[str]]] = [[] for _ in methods]
    for i, f in enumerate(frames):
        order = range(len(methods)) if (i % 2 == 0) != flip else reversed(range(len(methods)))
        for m in order:
            c0, t0 = time.process_time(), time.perf_counter()
            codes = methods[m](f.image)
            seconds[m] += time.perf_counter() - t0
            cpu[m] += time.process_time() - c0
            results[m].append(codes)
    return seconds, cpu, results


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the JSON line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200, help="number of distinct frames (default 200)")
    ap.add_argument("--seed", type=int, default=20240601, help="frame set seed (default 20240601)")
    ap.add_argument("--empty-ratio", type=float, default=0.4, help="share of frames with no code (0.4)")
    ap.add_argument("--rounds", type=int, default=3, help="timing rounds, all counted (3)")
    ap.add_argument("--downscale-width", type=int, default=640, help="pipeline detection width (640)")
    ap.add_argument("--code-side", type=float, nargs=2, default=(120, 400), metavar=("MIN", "MAX"),
                    help="printed code size range in frame pixels, quiet zone included (120 400)")
    ap.add_argument("--hold", type=int, default=1,
                    help="show each scene for N consecutive frames, each with fresh sensor noise, like a "
                         "live camera looking at a still counter (default 1: every frame distinct)")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    args = ap.parse_args(argv)

    log(f"opencv {cv2.__version__}, {cv2.getNumThreads()} threads; generating {args.frames} frames "
        f"{args.width}x{args.height}, seed {args.seed}")
    t0 = time.perf_counter()
    frames = frame_set(args.frames, seed=args.seed, empty_ratio=args.empty_ratio,
                       width=args.width, height=args.height,
                       code_side=tuple(args.code_side))
    if args.hold > 1:
        frames = held(frames, args.hold, args.seed)
    with_code = sum(1 for f in frames if f.payload is not None)
    log(f"generated in {time.perf_counter() - t0:.1f}s: {with_code} with a code, "
        f"{len(frames) - with_code} without")

    detector = cv2.QRCodeDetector()
    # Warm both up on one frame so first-call allocations are not billed to either.
    baseline_decode(detector, frames[0].image)
    QrPipeline(args.downscale_width).process(frames[0].image)
    base_secs = pipe_secs = base_cpu = pipe_cpu = 0.0
    for r in range(args.rounds):
        pipeline = QrPipeline(args.downscale_width)  # fresh state each round
        (base_t, pipe_t), (base_c, pipe_c), (base_res, pipe_res) = timed_round(
            frames, [lambda img: baseline_decode(detector, img), pipeline.process], flip=r % 2 == 1)
        base_secs += base_t
        pipe_secs += pipe_t
        base_cpu += base_c
        pipe_cpu += pipe_c
        base_ok, base_wrong = score(frames, base_res)
        pipe_ok, pipe_wrong = score(frames, pipe_res)
        log(f"round {r + 1}/{args.rounds}: baseline {len(frames) / base_t:.1f} fps, {base_ok}/{with_code} "
            f"decoded; pipeline {len(frames) / pipe_t:.1f} fps, {pipe_ok}/{with_code} decoded")
    log(f"pipeline stats (last round): {pipeline.stats}")
    log(f"wrong decodes: pipeline {pipe_wrong}, baseline {base_wrong}")
    log(f"CPU per frame: pipeline {pipe_cpu / (len(frames) * args.rounds) * 1000:.2f} ms, baseline "
        f"{base_cpu / (len(frames) * args.rounds) * 1000:.2f} ms, ratio {base_cpu / pipe_cpu:.2f}")

    n = len(frames) * args.rounds
    fps, base_fps = n / pipe_secs, n / base_secs
    result = {
        "frames": len(frames),
        "fps": round(fps, 1),
        "baseline_fps": round(base_fps, 1),
        "ratio": round(fps / base_fps, 2),
        "decode_rate": round(pipe_ok / with_code, 4) if with_code else 0.0,
        "baseline_decode_rate": round(base_ok / with_code, 4) if with_code else 0.0,
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
