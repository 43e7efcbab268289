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

Two ceilings, measured in the same run:

- the model's: ``model.features`` alone on random clips already on the device (batch
  ``--batch-clips``, each precision, channels_last_3d), clips/s;
- the decode bound: workers × decode-only clips/s of one worker (clips of the bench's GIFs /
  seconds of ``read_gif(pixel_format="bgr0")`` alone — what workers decode — in this process).
  ``share_of_decode_bound`` = end-to-end clips/s / that bound; ``..._before`` the same against
  the previous decode (RGB through swscale), measured in the same run.

Worker profile (:func:`worker_profile`): where one loader worker's time goes per clip, stage
by stage in this process, and the loader alone (one worker, no model) for the paths before
(``before``: RGB through swscale, resize and cut in the worker; ``decode_all``: bgr0, every
frame decoded and copied, then the used ones resized) and both paths now (``resize_on=worker``:
only the used frames kept, each resized and cropped as it is decoded; ``resize_on=device``),
alternating rounds, best round each: clips/s per worker, the share
of the decode bound, bytes per clip through shared memory; the difference between the
loader's seconds per clip and its stages' sum is the inter-process cost (pickling, shared
memory, the main process's collation). ``transfer``: the ``worker`` loader with its batches sent
three ways in the same rounds (``tensors``: every tensor in a fresh shared-memory segment and
a descriptor of its own, as before; ``numpy``: the small ones pickled with the batch,
:class:`~gifemo.data.worker_batches.TransferCollate`; ``reused``: and the crops in a shared
buffer the worker reuses, :class:`~gifemo.data.worker_batches.SharedBuffers` — now): clips/s
per worker and the main process's CPU time per batch.

Our runs go once per ``--resize-on`` value (default on a CPU: worker and device, end to end).
``--resize-check`` (default with CUDA) compares the two on the device: the largest resized
pixel difference and the smallest feature cosine (JSON ``resize_check``).

``--size real`` makes real-looking GIFs (480×270, 40–90 frames, like reaction GIFs) instead of
the default 240×180, 20–44 frames. GIFs are generated in parallel (``--gen-workers``).
"""

from __future__ import annotations

import argparse
import json
import os
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
from gifemo.backbones.resize import resize_frames, resize_frames_tensor
from gifemo.bench.worker_profile import LOADER_PATHS, TRANSFERS, worker_profile
from gifemo.data.clips import AllClips, used_frames
from gifemo.data.gif import read_gif
from gifemo.features.execution import resolve_device
from gifemo.features.extract import extract_features

PEAK_BF16_TFLOPS = 989.4  # H100/H200 SXM dense BF16 tensor cores
PEAK_TF32_TFLOPS = 494.7  # H100/H200 SXM dense TF32 tensor cores
PEAK_FP32_TFLOPS = 66.9  # H100/H200 SXM FP32 (CUDA cores)
TINY = {"channels": (4, 8, 8, 16, 16), "fc_dim": 32}
SIZES = {  # (H, W), (min, max) frames
    "quick": ((48, 64), (20, 44)),
    "small": ((180, 240), (20, 44)),
    "real": ((270, 480), (40, 90)),
}


class _Rec:
    def __init__(self, id: str, path: Path) -> None:
        self.id, self.path = id, path


def _write_gif(job: tuple[Path, int, tuple[int, int], int, np.ndarray]) -> Path:
    """One bench GIF: a moving square on a drifting gradient, ``t`` frames, written by Pillow."""
    path, g, (h, w), t, colour = job
    yy, xx = np.mgrid[0:h, 0:w]
    frames = []
    for i in range(t):
        img = np.stack([(xx + 3 * i) % 256, (yy + 5 * g) % 256, (xx + yy + i) % 256], -1)
        y0, x0 = (i * 3) % (h - h // 4), (i * 5 + g) % (w - w // 4)
        img[y0 : y0 + h // 4, x0 : x0 + w // 4] = colour
        frames.append(Image.fromarray(img.astype(np.uint8)))
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    return path


def make_gifs(
    folder: Path, n_records: int, *, n_unique: int, hw: tuple[int, int], seed: int = 0,
    frames: tuple[int, int] = (20, 44), workers: int = 1,
) -> list[_Rec]:  # fmt: skip
    """``n_unique`` GIFs (``frames`` = min, max frames) written with Pillow by ``workers``
    processes (Pillow's quantiser takes seconds per large GIF); ``n_records`` records cycle over
    them (each record is decoded anew). The GIFs depend on ``seed`` only."""
    rng = np.random.default_rng(seed)
    jobs = [
        (folder / f"bench{g:03d}.gif", g, hw, int(rng.integers(frames[0], frames[1] + 1)),
         rng.integers(0, 256, 3))
        for g in range(n_unique)
    ]  # fmt: skip
    if workers > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers) as pool:
            paths = pool.map(_write_gif, jobs)
    else:
        paths = [_write_gif(j) for j in jobs]
    return [_Rec(f"r{i:05d}", paths[i % n_unique]) for i in range(n_records)]


def resize_check(
    records: list[_Rec], model: Any, transform: Any, dev: torch.device, folder: Path, *,
    gifs: int = 8, batch_clips: int = 8,
) -> dict[str, Any]:  # fmt: skip
    """resize_on=device against resize_on=worker on ``dev``: the largest difference of a resized
    pixel (``resize_frames`` on this CPU vs on ``dev``) over the first ``gifs`` distinct GIFs,
    the share of pixels that differ, and the smallest cosine between the two paths' features
    (fp32). On a CPU both are the same kernel: 0 and 1.0."""
    distinct = list({str(r.path): r for r in records}.values())[:gifs]
    worst, differ, total = 0, 0, 0
    for r in distinct:
        frames = read_gif(r.path, pixel_format="bgr0").frames
        used, _ = used_frames(AllClips()(len(frames)), len(frames))
        cpu = torch.from_numpy(resize_frames(frames[used], transform.resize_hw)).int()
        on_dev = resize_frames_tensor(torch.from_numpy(frames[used]).to(dev), transform.resize_hw)
        diff = (on_dev.cpu().int() - cpu).abs()[..., :3]
        worst, differ, total = max(worst, int(diff.max())), differ + int((diff > 0).sum()), (
            total + diff.numel()
        )  # fmt: skip
    feats = {}
    for where in ("worker", "device"):
        store = extract_features(
            distinct, folder / f"resize_{where}", model=model, transform=transform,
            batch_clips=batch_clips, num_workers=1, precision="32", device=str(dev),
            progress=False, resize_on=where,
        )  # fmt: skip
        feats[where] = np.asarray(store.visual)
    cos = (feats["worker"] * feats["device"]).sum(1)
    return {
        "device": str(dev),
        "gifs": len(distinct),
        "max_pixel_diff": worst,
        "pixels_differing_share": round(differ / max(total, 1), 6),
        "min_feature_cosine": float(cos.min()),
        "max_abs_feature_diff": float(np.abs(feats["worker"] - feats["device"]).max()),
    }


def model_only_rate(
    model: Any, dev: torch.device, precision: str, batch: int, *, seconds: float = 2.0
) -> float:
    """Clips/s of ``model.features`` alone on random clips on the device (channels_last_3d)."""
    fmt = torch.channels_last_3d
    m = model.to(dev).to(memory_format=fmt)
    x = torch.randn(batch, 3, 16, 112, 112, device=dev).to(memory_format=fmt)
    amp = torch.autocast(dev.type, torch.bfloat16, enabled=precision == "bf16")
    with torch.inference_mode(), amp:
        m.features(x)
        _sync(dev)
        n, start = 0, time.perf_counter()
        while n == 0 or time.perf_counter() - start < seconds:
            m.features(x)
            n += 1
        _sync(dev)
    return n * batch / (time.perf_counter() - start)


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
        "--chunk-gifs",
        type=int,
        default=None,
        help="GIFs per shard (default 32 CPU, 512 CUDA: each chunk ends with a device "
        "sync and a shard write)",
    )
    p.add_argument(
        "--load-gifs", type=int, default=None, help="GIFs per loader batch (default 2 CPU, 4 CUDA)"
    )
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
    p.add_argument(
        "--size",
        choices=["small", "real"],
        default=None,
        help="small (default): 240x180, 20-44 frames; real: 480x270, 40-90 frames; with "
        "--quick the default is 64x48 (and the tiny model runs on whichever size is given)",
    )
    p.add_argument(
        "--gen-workers",
        type=int,
        default=None,
        help="processes writing the GIFs (default: all cores)",
    )
    p.add_argument("--unique", type=int, default=16, help="distinct GIFs (records cycle over them)")
    p.add_argument(
        "--profile-seconds",
        type=float,
        default=3.0,
        help="seconds per stage of the worker profile (0: skip it)",
    )
    p.add_argument(
        "--resize-on",
        default=None,
        help="extract.resize_on of our runs, comma-separated, one run each (default: "
        "worker,device on a CPU, worker on CUDA, where --resize-check compares the two on a "
        "few GIFs); the first is named 'ours <precision>', the others "
        "'ours <precision> <value>-resize'",
    )
    p.add_argument(
        "--resize-check",
        choices=["on", "off"],
        default=None,
        help="compare resize_on=device with worker on this device (max pixel difference, "
        "feature cosine) over 8 GIFs (default: on with CUDA or --quick)",
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the model in our runs")
    p.add_argument("--no-naive", action="store_true", help="skip the naive per-GIF loop")
    p.add_argument("--out", default=".bench/extract.json")
    args = p.parse_args(argv)  # fmt: skip

    dev = resolve_device(args.device)
    cuda = dev.type == "cuda"
    n = args.gifs or (3 if args.quick else 400 if cuda else 12)
    batch_clips = args.batch_clips or (64 if cuda else 8)
    chunk_gifs = args.chunk_gifs or (512 if cuda else 32)
    load_gifs = args.load_gifs or (4 if cuda else 2)
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
    resize_ons = (args.resize_on or ("worker" if cuda else "worker,device")).split(",")
    runs = [
        (f"ours {'fp32' if p == '32' else p}" + (f" {where}-resize" if k else ""), p, where)
        for p in precisions
        for k, where in enumerate(resize_ons)
    ]
    runs += [] if args.no_naive else [("naive fp32", "32", "")]
    if "bf16" not in precisions:
        print(
            "  bf16 skipped: this CPU has no native bf16 in oneDNN (--precisions 32,bf16 forces it)"
        )
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="gifemo-bench-extract-") as tmp:
        hw, frames = SIZES[args.size or ("quick" if args.quick else "small")]
        t_gen = time.perf_counter()
        records = make_gifs(
            Path(tmp), n, n_unique=min(n, args.unique), hw=hw, frames=frames,
            workers=args.gen_workers or os.cpu_count() or 1,
        )  # fmt: skip
        gen_s = time.perf_counter() - t_gen
        transform = C3DTransform(train=False)
        profile = (
            worker_profile(records, transform, seconds=args.profile_seconds)
            if args.profile_seconds > 0 else None
        )  # fmt: skip
        feats: dict[str, np.ndarray] = {}
        for name, precision, resize_on in runs:
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
                    transform=transform, batch_clips=batch_clips, num_workers=workers,
                    chunk_gifs=chunk_gifs, load_gifs=load_gifs,
                    precision=precision, device=str(dev), progress=False, compile=args.compile,
                    resize_on=resize_on,
                )  # fmt: skip
                feats[name], run = np.asarray(store.visual), store.meta["last_run"]
                clips, wait = run["clips"], run["data_wait_s"]
                extra = {k: run[k] for k in ("resize_on", "wire", "device_cut_s")}
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
            if not naive:
                results[name].update(extra)
                ceiling = model_only_rate(model, dev, precision, batch_clips)
                results[name]["model_only_clips_per_s"] = round(ceiling, 2)
                results[name]["share_of_model"] = round(rate / ceiling, 3)
                if profile:
                    bound = max(workers, 1) * profile["decode_only_clips_per_s"]
                    before = max(workers, 1) * profile["decode_only_clips_per_s_before"]
                    results[name]["decode_bound_clips_per_s"] = round(bound, 2)
                    results[name]["share_of_decode_bound"] = round(rate / bound, 3)
                    results[name]["decode_bound_clips_per_s_before"] = round(before, 2)
                    results[name]["share_of_decode_bound_before"] = round(rate / before, 3)
                if args.compile:  # the rate once compiled: the warm-up is a one-off cost
                    warm = store.meta["last_run"]["compile_warmup_s"] or 0.0
                    results[name]["compile_warmup_s"] = round(warm, 2)
                    results[name]["clips_per_s_after_warmup"] = round(
                        clips / max(seconds - warm, 1e-9), 3
                    )
            if cuda:
                results[name]["mfu"] = round(rate * flops / (peaks[precision] * 1e12), 4)
                results[name]["peak_tflops"] = peaks[precision]
                results[name]["cuda_peak_mib"] = round(
                    torch.cuda.max_memory_allocated(dev) / 2**20, 1
                )
            print(f"  {name}: {clips} clips in {seconds:.1f}s", flush=True)
        check = args.resize_check or ("on" if cuda or args.quick else "off")
        resize = (
            resize_check(records, model, transform, dev, Path(tmp), batch_clips=batch_clips)
            if check == "on" else None
        )  # fmt: skip

    base = results["naive fp32"]["clips_per_s"] if "naive fp32" in results else None
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
        "gif_size_hw": list(hw),
        "gif_frames": list(frames),
        "generate_s": round(gen_s, 2),
        "compile": args.compile,
        "worker_profile": profile,
        "resize_check": resize,
        "batch_clips": batch_clips,
        "chunk_gifs": chunk_gifs,
        "load_gifs": load_gifs,
        "num_workers": workers,
        "cudnn_tf32": bool(tf32),
        "runs": results,
    }
    ratios = []
    for name in results:
        if name.startswith("ours") and base:
            key = f"ratio_{name.replace(' ', '_')}_vs_naive"
            report[key] = round(results[name]["clips_per_s"] / base, 3)
            ratios.append(f"{name.removeprefix('ours ')} ×{report[key]}")
    if "ours fp32" in feats and "naive fp32" in feats:
        a = feats["ours fp32"]
        report["max_abs_diff_ours_fp32_vs_naive"] = float(np.abs(a - feats["naive fp32"]).max())
        if "ours bf16" in feats:
            report["min_cosine_bf16_vs_fp32"] = float((a * feats["ours bf16"]).sum(1).min())
    for name in feats:  # the other resize_on runs against the first (0 on a CPU)
        if name.startswith("ours fp32 ") and "ours fp32" in feats:
            key = f"max_abs_diff_{name.removeprefix('ours fp32 ').replace('-', '_')}_vs_first"
            report[key] = float(np.abs(feats[name] - feats["ours fp32"]).max())
    cols = [
        "clips_per_s",
        "data_wait_share",
        "model_only_clips_per_s",
        "decode_bound_clips_per_s",
        "share_of_decode_bound",
        "peak_rss_mib",
    ]
    cols += ["mfu", "cuda_peak_mib"] if cuda else []
    clips_n = next(iter(results.values()))["clips"]
    print(f"C3D extraction on {report['device_name']} ({report['backbone']}, {n} GIFs of "
          f"{hw[1]}x{hw[0]}, {clips_n} clips, batch {batch_clips}, {workers} workers)")  # fmt: skip
    heads = [c.replace("_clips_per_s", "").replace("_share", "").replace("share_of_", "% ")
             for c in cols]  # fmt: skip
    wide = max(len(name) for name in results) + 2
    print(f"{'run':<{wide}}" + "".join(f"{h:>16}" for h in heads))
    for name, r in results.items():
        print(f"{name:<{wide}}" + "".join(f"{'-' if r.get(c) is None else r[c]:>16}" for c in cols))
    if profile:
        st = profile["stage_ms_per_clip"]
        print("one worker, ms per clip: " + ", ".join(f"{k} {v:.2f}" for k, v in st.items()))
        print(f"decode-only clips/s per worker: {profile['decode_only_clips_per_s']} "
              f"(before: {profile['decode_only_clips_per_s_before']}, "
              f"x{profile['decode_speedup']})")  # fmt: skip
        for path in LOADER_PATHS:
            lo = profile[f"loader_{path}"]
            print(f"  loader {path:>6}: {lo['clips_per_s_per_worker']} clips/s per worker, "
                  f"{100 * lo['share_of_decode_bound']:.1f} % of the decode bound "
                  f"({100 * lo['share_of_decode_bound_before']:.1f} % of the one before), "
                  f"{lo['bytes_per_clip'] / 1e3:.0f} kB/clip, share {lo['share']}")  # fmt: skip
        tr = profile["transfer"]
        print("  worker loader's batches (tensors / small ones as numpy / + reused buffers): "
              + " / ".join(f"{tr[k]['clips_per_s_per_worker']}" for k in TRANSFERS)
              + " clips/s per worker; main process CPU "
              + " / ".join(f"{tr[k]['main_cpu_ms_per_batch']}" for k in TRANSFERS)
              + f" ms per batch (x{tr['worker_speedup']} worker, "
              f"x{tr['main_cpu_per_batch_ratio']} main CPU)")  # fmt: skip
    if resize:
        print(f"resize_on=device vs worker on {resize['device']}: max pixel difference "
              f"{resize['max_pixel_diff']}, min feature cosine {resize['min_feature_cosine']:.6f}")  # fmt: skip
    checks = {k: v for k, v in report.items() if k.startswith(("max_abs", "min_cos"))}
    if ratios:
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
