"""Extraction benchmark: our batched, resumable extraction against a naive per-GIF loop.

``python -m gifemo.bench extract [--quick] [--device auto|cpu|cuda] [--gifs N] [--out FILE]``

Same generated GIFs, same C3D (random init; speed does not depend on the weights), same
transform, in this one process:

- ours fp32 / ours bf16: :func:`gifemo.features.extract.extract_features` — DataLoader workers
  decode while the model runs, clips of many GIFs batched together (``--batch-clips``),
  bf16 autocast for the bf16 run, channels_last_3d, shards + final store on disk;
- naive fp32 (the peer): ``read_gif`` → ``AllClips`` → ``C3DTransform`` → ``model.features``
  one GIF at a time in the main process, no workers, then mean + L2.

Reported per run: wall seconds, clips/s, achieved GFLOP/s (clips/s × FLOPs per clip counted from
the layer shapes by :func:`gifemo.backbones.c3d.clip_flops`, 77.1 GFLOP to fc8 for the full C3D;
fc7/fc8 are not run, so the fc6 count is used), the share of the wall time the model waited for
decoded clips (ours), and on CUDA the model FLOP utilisation (MFU) against ``--peak-tflops``
(default: dense bf16 989.4 TFLOP/s, the H100/H200 SXM figure; fp32 runs are compared with the
TF32 tensor-core peak 494.7 when cuDNN may use TF32 — PyTorch's default for convolutions — else
with 66.9 FP32). Peak memory: the process's maximum resident set size (RSS, MiB) after each run
(monotone over the runs; DataLoader workers are separate processes) and, on CUDA, peak
allocated device memory per run. Each run is preceded by a model warm-up outside the timing.
The run also checks that ours fp32 equals the naive loop (max |Δ|) and bf16's cosine to fp32.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from gifemo.backbones.c3d import C3D, C3DTransform, build_c3d, clip_flops
from gifemo.data.clips import AllClips
from gifemo.data.gif import read_gif
from gifemo.features.extract import extract_features, resolve_device

PEAK_BF16_TFLOPS = 989.4  # H100/H200 SXM dense BF16 tensor cores
PEAK_TF32_TFLOPS = 494.7  # H100/H200 SXM dense TF32 tensor cores
PEAK_FP32_TFLOPS = 66.9  # H100/H200 SXM FP32 (CUDA cores)
TINY = {"channels": (4, 8, 8, 16, 16), "fc_dim": 32}


class _Rec:
    def __init__(self, id: str, path: Path) -> None:
        self.id, self.path = id, path


def make_gifs(folder: Path, n_records: int, *, n_unique: int, hw: tuple[int, int], seed: int = 0):
    """``n_unique`` GIFs (a moving square on a drifting gradient, 20–44 frames) written with
    Pillow; ``n_records`` records cycle over them (each record is decoded anew)."""
    rng = np.random.default_rng(seed)
    h, w = hw
    yy, xx = np.mgrid[0:h, 0:w]
    paths = []
    for g in range(n_unique):
        t = int(rng.integers(20, 45))
        colour = rng.integers(0, 256, 3)
        frames = []
        for i in range(t):
            img = np.stack([(xx + 3 * i) % 256, (yy + 5 * g) % 256, (xx + yy + i) % 256], -1)
            y0, x0 = (i * 3) % (h - h // 4), (i * 5 + g) % (w - w // 4)
            img[y0 : y0 + h // 4, x0 : x0 + w // 4] = colour
            frames.append(Image.fromarray(img.astype(np.uint8)))
        path = folder / f"bench{g:03d}.gif"
        frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
        paths.append(path)
    return [_Rec(f"r{i:05d}", paths[i % n_unique]) for i in range(n_records)]


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _warm(model: Any, dev: torch.device, precision: str, batch: int, channels_last: bool) -> None:
    fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
    m = model.to(dev)
    if channels_last:
        m = m.to(memory_format=fmt)
    x = torch.randn(batch, 3, 16, 112, 112, device=dev).to(memory_format=fmt)
    with (
        torch.inference_mode(),
        torch.autocast(dev.type, torch.bfloat16, enabled=precision == "bf16"),
    ):
        m.features(x)
    _sync(dev)


def naive_features(records, model, dev: torch.device) -> tuple[np.ndarray, int]:
    """The peer: one GIF at a time, fp32, no workers. Returns (N, D) features and the clip count."""
    model = model.to(dev, memory_format=torch.contiguous_format)
    transform, sampler, out, clips = C3DTransform(train=False), AllClips(), [], 0
    for r in records:
        gif = read_gif(r.path)
        x = transform(gif.frames, sampler(gif.n_frames)).to(dev)
        with torch.inference_mode():
            mean = model.features(x).double().mean(0)
        out.append((mean / mean.norm()).cpu().numpy())
        clips += len(x)
    _sync(dev)
    return np.stack(out).astype(np.float32), clips


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m gifemo.bench extract", description=__doc__)
    p.add_argument("--quick", action="store_true", help="tiny C3D, a few small GIFs (smoke test)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.add_argument("--gifs", type=int, default=None, help="GIF records (default: 12 CPU, 400 CUDA)")
    p.add_argument("--batch-clips", type=int, default=None, help="default: 8 CPU, 64 CUDA")
    p.add_argument("--num-workers", type=int, default=None, help="default: 1 CPU, 8 CUDA")
    p.add_argument(
        "--peak-tflops",
        type=float,
        default=PEAK_BF16_TFLOPS,
        help="device peak dense bf16 TFLOP/s for MFU (default: H100/H200 SXM 989.4)",
    )
    p.add_argument(
        "--peak-fp32-tflops",
        type=float,
        default=None,
        help=f"peak for fp32 runs (default {PEAK_TF32_TFLOPS} with TF32, else {PEAK_FP32_TFLOPS})",
    )
    p.add_argument(
        "--precisions",
        default=None,
        help="our runs, e.g. 32,bf16 (default: both, but only 32 on a CPU without "
        "native bf16, where bf16 autocast is >20x slower)",
    )
    p.add_argument("--out", default=".bench/extract.json")
    args = p.parse_args(argv)  # fmt: skip

    dev = resolve_device(args.device)
    cuda = dev.type == "cuda"
    n = args.gifs or (3 if args.quick else 400 if cuda else 12)
    batch_clips = args.batch_clips or (64 if cuda else 8)
    workers = args.num_workers if args.num_workers is not None else (8 if cuda else 1)
    arch: dict[str, Any] = dict(TINY) if args.quick else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random init is the point here
        model = build_c3d(drop_fc8=True, **arch)
    flops = clip_flops(model, upto="fc6")
    tf32 = cuda and torch.backends.cudnn.allow_tf32
    peak_fp32 = args.peak_fp32_tflops or (PEAK_TF32_TFLOPS if tf32 else PEAK_FP32_TFLOPS)
    peaks = {"32": peak_fp32, "bf16": args.peak_tflops}

    native_bf16 = cuda or torch.ops.mkldnn._is_mkldnn_bf16_supported()
    precisions = (args.precisions or ("32,bf16" if native_bf16 else "32")).split(",")
    runs = [(f"ours {'fp32' if p == '32' else p}", p) for p in precisions] + [("naive fp32", "32")]
    if "bf16" not in precisions:
        print(
            "  bf16 skipped: this CPU has no native bf16 in oneDNN (--precisions 32,bf16 forces it)"
        )
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="gifemo-bench-extract-") as tmp:
        hw = (48, 64) if args.quick else (180, 240)
        records = make_gifs(Path(tmp), n, n_unique=min(n, 16), hw=hw)
        feats: dict[str, np.ndarray] = {}
        for name, precision in runs:
            naive = name.startswith("naive")
            _warm(model, dev, precision, 1 if naive else batch_clips, not naive)
            if cuda:
                torch.cuda.reset_peak_memory_stats(dev)
            t0 = time.perf_counter()
            if naive:
                feats[name], clips = naive_features(records, model, dev)
                wait = None
            else:
                store = extract_features(
                    records, Path(tmp) / name.replace(" ", "_"), model=model,
                    transform=C3DTransform(train=False), batch_clips=batch_clips,
                    num_workers=workers, precision=precision, device=str(dev), progress=False,
                )  # fmt: skip
                feats[name], run = np.asarray(store.visual), store.meta["last_run"]
                clips, wait = run["clips"], run["data_wait_s"]
            seconds = time.perf_counter() - t0
            rate = clips / seconds
            results[name] = {
                "precision": precision,
                "seconds": round(seconds, 3),
                "clips": clips,
                "clips_per_s": round(rate, 3),
                "gflop_per_s": round(rate * flops / 1e9, 2),
                "data_wait_share": None if wait is None else round(wait / seconds, 3),
                "peak_rss_mib": round(_rss_mib(), 1),
            }
            if cuda:
                results[name]["mfu"] = round(rate * flops / (peaks[precision] * 1e12), 4)
                results[name]["peak_tflops"] = peaks[precision]
                results[name]["cuda_peak_mib"] = round(
                    torch.cuda.max_memory_allocated(dev) / 2**20, 1
                )
            print(f"  {name}: {clips} clips in {seconds:.1f}s", flush=True)

    base = results["naive fp32"]["clips_per_s"]
    report: dict[str, Any] = {
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev)
        if cuda
        else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "quick": args.quick,
        "backbone": "C3D tiny" if args.quick else "C3D",
        "gflop_per_clip_fc6": round(flops / 1e9, 3),
        "gflop_per_clip_fc8": round(clip_flops(_meta_c3d(arch), upto="fc8") / 1e9, 3),
        "gifs": n,
        "batch_clips": batch_clips,
        "num_workers": workers,
        "cudnn_tf32": bool(tf32),
        "runs": results,
    }
    ratios = []
    for name in results:
        if name.startswith("ours"):
            key = f"ratio_{name.replace(' ', '_')}_vs_naive"
            report[key] = round(results[name]["clips_per_s"] / base, 3)
            ratios.append(f"{name.split()[1]} ×{report[key]}")
    if "ours fp32" in feats:
        a = feats["ours fp32"]
        report["max_abs_diff_ours_fp32_vs_naive"] = float(np.abs(a - feats["naive fp32"]).max())
        if "ours bf16" in feats:
            report["min_cosine_bf16_vs_fp32"] = float((a * feats["ours bf16"]).sum(1).min())
    cols = ["clips_per_s", "gflop_per_s", "data_wait_share", "peak_rss_mib"]
    cols += ["mfu", "cuda_peak_mib"] if cuda else []
    print(f"C3D extraction on {report['device_name']} ({report['backbone']}, {n} GIFs, "
          f"{results['naive fp32']['clips']} clips, batch {batch_clips}, {workers} workers)")  # fmt: skip
    print(f"{'run':<12}" + "".join(f"{c:>17}" for c in cols))
    for name, r in results.items():
        print(f"{name:<12}" + "".join(f"{'-' if r.get(c) is None else r[c]:>17}" for c in cols))
    checks = {k: v for k, v in report.items() if k.startswith(("max_abs", "min_cos"))}
    print(
        "ours/naive: "
        + ", ".join(ratios)
        + "; "
        + ", ".join(f"{k} {v:.3g}" for k, v in checks.items())
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


def _meta_c3d(arch: dict[str, Any]) -> C3D:
    with torch.device("meta"):
        return C3D(**arch)
