"""Decode benchmark: ``read_gif`` (PyAV) against a Pillow decoder on the same GIFs.

``python -m gifemo.bench decode [--quick] [--repeats R] [--out .bench/decode.json]``

Both decoders turn the same generated GIFs into the same output, a (T, H, W, 3) uint8 RGB
array (the run checks the arrays are identical):

- ours: :func:`gifemo.data.gif.read_gif` (header checks, block walk, FFmpeg decode, compositing);
- peer: Pillow, ``np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)])``.

Our variants, timed in the same alternation and checked byte for byte against ours:
``swscale`` (``read_gif(converter="swscale")``: BGRA → RGB by swscale, the path before the
direct copy), ``bgr0`` (``pixel_format="bgr0"``: FFmpeg's own layout, no conversion; channels
2, 1, 0 compared) and ``threads`` (ours with the decoder's ``thread_type="AUTO"`` and two
threads). The JSON records whether FFmpeg's gif decoder has frame or slice threads at all
(``gif_decoder_threads``): it has neither, so ``threads`` measures only noise. ``held`` and
``dropped``: the bare decode loop (each frame's ``bgr0`` plane copied out, no header checks or
block walk), holding FFmpeg's frame while the next one decodes (``read_gif`` before) or letting
go of it first (``read_gif`` now): FFmpeg's gif decoder draws on its canvas in place only when
no one else holds the canvas, and otherwise copies it first.

Speed: frames per second = T / the best (minimum) wall time of ``repeats`` decodes, the two
decoders alternating, in this process (the minimum is the least disturbed by other load on a
shared machine, as ``timeit`` recommends; the JSON also has the medians). Memory: peak resident set size (RSS) increase while decoding
one GIF, measured in a fresh Python process per (decoder, GIF): the process imports both
libraries, resets its RSS high-water mark (``/proc/self/clear_refs``; if that is not allowed,
the plain ``ru_maxrss`` difference is used and the JSON says so), decodes, and reports
VmHWM − RSS before decoding. RSS counts FFmpeg's and Pillow's C allocations, which
``tracemalloc`` does not see. The output array itself is part of both peaks (column "out").
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import PIL
from av.video.reformatter import VideoReformatter
from PIL import Image, ImageSequence

from gifemo.data import gif_decode
from gifemo.data.gif import read_gif

ROOT = Path(__file__).resolve().parents[2]
FULL_CASES = [(100, 100, 30), (480, 270, 60), (320, 240, 120)]  # (width, height, frames)
QUICK_CASES = [(64, 48, 8), (120, 90, 12)]

_CHILD = r"""
import resource, sys
from gifemo.bench.decode import decode_with
which, path = sys.argv[1], sys.argv[2]
decode_with(which, path)  # warm up imports and code paths on the same file, then drop it

def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key))

try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    method, before = "VmHWM-after-reset", status("VmRSS:")
except OSError:
    method, before = "ru_maxrss", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
frames = decode_with(which, path)
after = status("VmHWM:") if method.startswith("VmHWM") else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(method, after - before, frames.nbytes)
"""


def pillow_decode(path: str | Path) -> np.ndarray:
    """The peer: Pillow's ImageSequence → RGB → numpy, (T, H, W, 3) uint8."""
    with Image.open(path) as im:
        return np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)])


def threaded_decode(path: str | Path) -> np.ndarray:
    """Ours (direct RGB) with FFmpeg's decoder threads asked for: ``thread_type="AUTO"``,
    two threads (a decoder without frame/slice threads ignores them)."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = 2
        stream.codec_context.options = {"trans_color": str(0xFFFFFF)}
        out = []
        for frame in c.decode(stream):
            rgb = np.empty((frame.height, frame.width, 3), np.uint8)
            gif_decode._to_rgb(frame, rgb, None, VideoReformatter(), "direct")
            out.append(rgb)
    return np.stack(out)


DECODERS = ("ours", "swscale", "bgr0", "threads", "held", "dropped", "pillow")
VARIANTS = ("swscale", "bgr0", "threads", "held", "dropped")


def loop_decode(path: str | Path, *, hold: bool) -> np.ndarray:
    """The bare decode loop, ``bgr0`` planes copied out as RGB views: ``hold`` keeps FFmpeg's
    frame referenced while the next one decodes (as a plain ``for`` loop does)."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        stream.codec_context.options = {"trans_color": str(0xFFFFFF)}
        out = []
        for frame in c.decode(stream):
            out.append(gif_decode._bgra_plane(frame).copy())
            if not hold:
                del frame
    return np.stack(out)[..., 2::-1]


def decode_with(which: str, path: str | Path) -> np.ndarray:
    """(T, H, W, 3) RGB frames of one decoder (``bgr0``: its channels 2, 1, 0, a view)."""
    if which == "ours":
        return read_gif(path).frames
    if which == "swscale":
        return read_gif(path, converter="swscale").frames
    if which == "bgr0":
        return read_gif(path, pixel_format="bgr0").frames[..., 2::-1]
    if which == "threads":
        return threaded_decode(path)
    if which in ("held", "dropped"):
        return loop_decode(path, hold=which == "held")
    if which == "pillow":
        return pillow_decode(path)
    raise ValueError(f"unknown decoder {which!r}")


def gif_decoder_threads() -> dict[str, bool]:
    """Which threading FFmpeg's gif decoder supports (its AV_CODEC_CAP_* flags)."""
    caps = av.codec.Codec("gif", "r").capabilities
    flags = av.codec.codec.Capabilities
    return {
        "frame_threads": bool(caps & flags.frame_threads),
        "slice_threads": bool(caps & flags.slice_threads),
    }


def make_gif(path: Path, width: int, height: int, n_frames: int, seed: int = 0) -> Path:
    """A GIF written by Pillow: moving shapes over a gradient with noise (a photo-like palette)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack(
        [xx * 255 // max(width - 1, 1), yy * 255 // max(height - 1, 1), (xx ^ yy) & 255], -1
    )
    images = []
    side = max(4, min(width, height) // 5)
    for t in range(n_frames):
        f = base + rng.integers(-12, 13, base.shape)
        for k in range(3):
            y0 = (t * (3 + k) + 20 * k) % max(height - side, 1)
            x0 = (t * (5 + 2 * k) + 30 * k) % max(width - side, 1)
            f[y0 : y0 + side, x0 : x0 + side] = (80 * k, 255 - 60 * k, 40 + 90 * k)
        images.append(Image.fromarray(np.clip(f, 0, 255).astype(np.uint8)))
    images[0].save(path, save_all=True, append_images=images[1:], duration=40, loop=0)
    return path


def peak_rss_kib(which: str, path: Path) -> tuple[str, int, int]:
    """(method, peak RSS increase in KiB, output bytes) of one decode in a fresh process."""
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, which, str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )
    method, kib, nbytes = out.stdout.split()[-3:]
    return method, int(kib), int(nbytes)


def time_decoders(path: Path, repeats: int) -> dict[str, list[float]]:
    """Seconds per decode of each decoder, ``repeats`` times, alternating them."""
    times: dict[str, list[float]] = {which: [] for which in DECODERS}
    for r in range(repeats):
        for which in DECODERS[r % len(DECODERS) :] + DECODERS[: r % len(DECODERS)]:
            t0 = time.perf_counter()
            decode_with(which, path)
            times[which].append(time.perf_counter() - t0)
    return times


def run(*, quick: bool, repeats: int) -> dict:
    cases = QUICK_CASES if quick else FULL_CASES
    results = []
    with tempfile.TemporaryDirectory(prefix="gifemo-bench-decode-") as tmp:
        for i, (w, h, t) in enumerate(cases):
            path = make_gif(Path(tmp) / f"{w}x{h}x{t}.gif", w, h, t, seed=i)
            ours, peer = decode_with("ours", path), decode_with("pillow", path)
            variants = {w: decode_with(w, path) for w in VARIANTS}
            times = time_decoders(path, repeats)
            secs = {k: min(v) for k, v in times.items()}
            method, ours_kib, nbytes = peak_rss_kib("ours", path)
            _, peer_kib, _ = peak_rss_kib("pillow", path)
            results.append(
                {
                    "gif": f"{w}x{h}x{t}",
                    "width": w,
                    "height": h,
                    "frames": t,
                    "file_bytes": path.stat().st_size,
                    "identical_output": bool(
                        ours.shape == peer.shape and np.array_equal(ours, peer)
                    ),
                    "identical_variants": {
                        w: bool(v.shape == ours.shape and np.array_equal(v, ours))
                        for w, v in variants.items()
                    },
                    "ours_fps": t / secs["ours"],
                    **{f"{w}_fps": t / secs[w] for w in VARIANTS},
                    "dropped_vs_held": secs["held"] / secs["dropped"],
                    "ours_vs_swscale": secs["swscale"] / secs["ours"],
                    "bgr0_vs_swscale": secs["swscale"] / secs["bgr0"],
                    "pillow_fps": t / secs["pillow"],
                    "speed_ratio": secs["pillow"] / secs["ours"],
                    "ours_median_s": statistics.median(times["ours"]),
                    "pillow_median_s": statistics.median(times["pillow"]),
                    "ours_peak_rss_mib": ours_kib / 1024,
                    "pillow_peak_rss_mib": peer_kib / 1024,
                    # below 1 MiB the RSS page granularity makes a ratio meaningless
                    "memory_ratio": ours_kib / peer_kib if peer_kib >= 1024 else None,
                    "output_mib": nbytes / 2**20,
                    "memory_method": method,
                }
            )
    return {
        "benchmark": "decode",
        "quick": quick,
        "repeats": repeats,
        "ours": "gifemo.data.gif.read_gif (PyAV)",
        "variants": "swscale: read_gif(converter='swscale'), the previous RGB conversion; "
        "bgr0: read_gif(pixel_format='bgr0'); threads: thread_type AUTO, 2 threads; "
        "held / dropped: the bare decode loop holding FFmpeg's frame while the next decodes, "
        "or letting go of it first",
        "gif_decoder_threads": gif_decoder_threads(),
        "peer": "Pillow ImageSequence -> convert('RGB') -> np.stack",
        "speed": "frames/s = frames / best seconds per decode; speed_ratio = ours fps / Pillow fps",
        "memory": "peak RSS increase during one decode, fresh process each; memory_ratio = ours / Pillow",
        "versions": {
            "av": av.__version__,
            "pillow": PIL.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "cases": results,
    }


def _ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def print_table(report: dict) -> None:
    head = f"{'GIF (WxHxT)':>14} {'ours f/s':>9} {'swscale':>8} {'bgr0':>7} {'threads':>8} {'held':>6} {'dropped':>8} {'Pillow f/s':>10} {'speed x':>8} {'ours MiB':>9} {'Pillow MiB':>10} {'mem x':>6} {'out MiB':>8} {'same':>5}"
    print(head)
    print("-" * len(head))
    for c in report["cases"]:
        same = c["identical_output"] and all(c["identical_variants"].values())
        print(
            f"{c['gif']:>14} {c['ours_fps']:9.0f} {c['swscale_fps']:8.0f} {c['bgr0_fps']:7.0f} "
            f"{c['threads_fps']:8.0f} {c['held_fps']:6.0f} {c['dropped_fps']:8.0f} {c['pillow_fps']:10.0f} {c['speed_ratio']:8.2f} "
            f"{c['ours_peak_rss_mib']:9.1f} {c['pillow_peak_rss_mib']:10.1f} {_ratio(c['memory_ratio']):>6} "
            f"{c['output_mib']:8.1f} {same!s:>5}"
        )
    print(f"gif decoder threads: {report['gif_decoder_threads']} (threads = ours asking for 2)")
    print(f"speed x = ours / Pillow frames per second (best of {report['repeats']}); "
          f"mem x = ours / Pillow peak RSS increase ({report['cases'][0]['memory_method']})")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gifemo.bench decode", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="tiny GIFs, for a smoke test")
    parser.add_argument(
        "--repeats", type=int, default=None, help="decodes per decoder (default 7, quick 5)"
    )
    parser.add_argument("--out", default=".bench/decode.json")
    args = parser.parse_args(argv or [])
    repeats = args.repeats or (5 if args.quick else 7)
    report = run(quick=args.quick, repeats=repeats)
    print_table(report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    ok = all(
        c["identical_output"] and all(c["identical_variants"].values()) for c in report["cases"]
    )
    return 0 if ok else 1
