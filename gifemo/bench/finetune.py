"""Fine-tuning throughput: training clips/s with and without the clip cache, data-wait share,
peak memory, and (on a GPU) MFU.

``python -m gifemo.bench finetune [--quick] [--device cpu|cuda|auto] [--steps N] [--batch B]
[--step on|off|only] [--compile] [--channels-last auto|on|off]``

Self-contained: it writes its own GIFs (Pillow, moving shapes) to a temporary folder, builds C3D
(full size; tiny channels with ``--quick`` on CPU), and runs a fixed number of training steps of
:class:`gifemo.finetune.module.FinetuneModule` (RandomClip + random crop/flip, BCE, AdamW) on
the real loaders of :class:`gifemo.finetune.data.FinetuneDataModule`, bf16 autocast on CUDA.
For each setting it times ``next(loader)`` (the wait for data) and the step (forward, backward,
optimiser, synchronised) separately:

- clips/s = clips trained / (wait + step time); data-wait share = wait / (wait + step);
- step (``--step on|off|only``): the module's training step inside a real Lightning Trainer
  against a bare step of the same network on the same device-resident batch, in blocks that
  alternate within one run (:func:`step_bench`): clips/s of each, module / bare (target ≥ 0.9),
  first-step times, and with ``--compile`` the same with ``torch.compile``d features and the
  compile warm-up;
- MFU = 3 × forward FLOPs per clip (from layer shapes, ``clip_flops``) × clips/s / peak bf16
  FLOP/s of the device (H100/H200 SXM: 989 TFLOP/s dense); "model MFU" leaves the waits out.

Settings: ``no cache`` (every step decodes GIFs in the workers) and ``cache`` (the same after
one pass has filled the cache: what epochs ≥ 2 see). For each, the loader is also timed on its
own (no model): the clips/s the data pipeline can deliver, per worker, and so the number of
workers a GPU would need — the run prints how many an H100 at 40 % MFU needs for this model.
JSON goes to ``.bench/finetune.json`` (the step measurement under ``step``: ``eager`` and, with
``--compile``, ``compiled``).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gifemo.bench import loader_rate
from gifemo.bench.finetune_step import step_bench
from gifemo.data.worker_batches import hand_back

PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}


class _Rec:
    def __init__(self, i: int, path: Path) -> None:
        self.id, self.path = f"bench{i}", path


def _write_gif(job: tuple[Path, int, int, np.ndarray]) -> Path:
    """One GIF: a moving square over the noisy background ``bg`` (H, W, 3), ``t_n`` frames."""
    from PIL import Image

    path, i, t_n, bg = job
    h, w = bg.shape[:2]
    imgs = []
    for t in range(t_n):
        f = bg.copy()
        x, y = (t * 3 + i) % max(1, w - 16), (t * 2) % max(1, h - 16)
        f[y : y + 16, x : x + 16] = (255 * (i % 2), 80, 255 * (t % 2))
        imgs.append(Image.fromarray(f))
    imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=60, loop=0)
    return path


def write_gifs(
    folder: Path, n: int, *, frames: tuple[int, int], size: tuple[int, int], seed: int = 0,
    workers: int = 1,
) -> list[_Rec]:  # fmt: skip
    """n animated GIFs of a moving square on a noisy background, ``size`` = (W, H), written by
    ``workers`` processes (Pillow's quantiser takes about a second per GIF); the GIFs depend
    on ``seed`` only."""
    rng = np.random.default_rng(seed)
    w, h = size
    jobs = []
    for i in range(n):
        t_n = int(rng.integers(frames[0], frames[1] + 1))
        jobs.append((folder / f"g{i}.gif", i, t_n, rng.integers(0, 255, (h, w, 3), dtype=np.uint8)))
    if workers > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers) as pool:
            paths = pool.map(_write_gif, jobs)
    else:
        paths = [_write_gif(j) for j in jobs]
    return [_Rec(i, path) for i, path in enumerate(paths)]


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def run_setting(
    module: Any, loader: Any, *, steps: int, device: torch.device, bf16: bool
) -> dict[str, float]:
    opt = module.configure_optimizers()
    it = iter(loader)
    wait = step_time = 0.0
    clips = 0
    for _ in range(steps):
        t0 = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        batch = {
            k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v)
            for k, v in batch.items()
        }
        t1 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits, counts = module.gif_logits(batch)
            ok = counts > 0
            loss = module.loss(logits[ok], batch["labels"][ok])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        wait, step_time, clips = wait + t1 - t0, step_time + t2 - t1, clips + len(batch["clips"])
        hand_back(batch)  # its shared buffer, back to the worker
    total = wait + step_time
    return {"clips": clips, "wait_s": wait, "step_s": step_time, "clips_per_s": clips / total,
            "model_clips_per_s": clips / step_time, "data_wait_share": wait / total}  # fmt: skip


DECODE_VARIANTS = {  # name: (read_kwargs, keep_used) of the uncached training loader
    "kept": ({"pixel_format": "bgr0"}, True),  # now: the used frames kept, stop after them
    "bgr0": ({"pixel_format": "bgr0"}, False),  # before: every frame decoded and copied
    "rgb24": ({"pixel_format": "rgb24"}, False),  # before that: RGB
}


def decode_ab(
    records: list[Any], labels: np.ndarray, *, batch: int, clips: int, workers: int, batches: int,
    rounds: int = 2,
) -> dict[str, Any]:  # fmt: skip
    """The uncached training loader for each of :data:`DECODE_VARIANTS` — keeping only the
    frames the clips use, resized as they are decoded, and stopping after the clip (what the
    workers do now), decoding every frame to FFmpeg's bgr0 layout (before), and to RGB (before
    that) — alternating ``rounds`` times, best of each; the same clips every way
    (``test_uncached_datamodule_decodes_bgr0_and_gives_the_rgb_decode_items``,
    ``tests/test_keep_used.py``).

    Two measures: the loader alone (clips/s per worker, ``workers`` worker processes), and one
    worker's items in this process (``items_per_s``: ``dataset[(epoch, i)]`` over the GIFs for
    two epochs, no other process competing; plus ``kept_to_end``, keeping the used frames but
    decoding to the end, which separates what keeping and what stopping early give)."""
    import copy

    from gifemo.backbones.c3d import c3d_preprocessing
    from gifemo.finetune.data import FinetuneDataModule

    best = dict.fromkeys(DECODE_VARIANTS, 0.0)
    items = dict.fromkeys([*DECODE_VARIANTS, "kept_to_end"], 0.0)
    datasets = {}
    for _ in range(rounds):
        for name, (read_kwargs, keep_used) in DECODE_VARIANTS.items():
            dm = FinetuneDataModule(preprocessing=c3d_preprocessing(), train=(records, labels), val=(records[:1], labels[:1]),
                                    batch_size=batch, num_clips=clips, num_workers=workers, persistent_workers=True,
                                    prefetch_factor=4, read_kwargs=read_kwargs, keep_used=keep_used)  # fmt: skip
            rate = loader_rate(dm.train_dataloader(), batches) / max(workers, 1)
            best[name] = max(best[name], rate)
            datasets[name] = dm.dataset("train")
        datasets["kept_to_end"] = copy.copy(datasets["kept"])
        datasets["kept_to_end"].stop_after_used = False
        for name, ds in datasets.items():
            t0 = time.perf_counter()
            for key in [(e, i) for e in (0, 1) for i in range(len(ds))]:
                ds[key]
            items[name] = max(items[name], 2 * len(ds) / (time.perf_counter() - t0))
    return {f"{k}_clips_per_s_per_worker": round(v, 2) for k, v in best.items()} | {
        "kept_over_bgr0": round(best["kept"] / best["bgr0"], 3),
        "bgr0_over_rgb24": round(best["bgr0"] / best["rgb24"], 3),
        "items_per_s": {k: round(v, 2) for k, v in items.items()},
        "items_kept_over_bgr0": round(items["kept"] / items["bgr0"], 3),
        "items_kept_to_end_over_bgr0": round(items["kept_to_end"] / items["bgr0"], 3),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m gifemo.bench finetune", description=__doc__.split("\n\n")[0]
    )
    p.add_argument(
        "--quick", action="store_true", help="tiny C3D on CPU, few GIFs and steps (smoke test)"
    )
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--steps", type=int, default=None, help="timed steps per setting")
    p.add_argument("--batch", type=int, default=None, help="GIFs per step")
    p.add_argument("--clips", type=int, default=1, help="random clips per GIF per step")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers")
    p.add_argument("--gifs", type=int, default=None, help="GIFs to generate")
    p.add_argument(
        "--gen-workers",
        type=int,
        default=None,
        help="processes writing the GIFs (default: all cores)",
    )
    p.add_argument(
        "--size", choices=["small", "real"], default="small",
        help="GIFs: small = 200x150, 16-40 frames; real = 480x270, 40-90 frames (reaction GIFs)",
    )  # fmt: skip
    p.add_argument("--out", default=".bench/finetune.json")
    p.add_argument(
        "--step", choices=["on", "off", "only"], default="on",
        help="the step measurement (module under Lightning vs bare step): on, off, or only it",
    )  # fmt: skip
    p.add_argument(
        "--step-rounds", type=int, default=None, help="alternating rounds (bare, module)"
    )
    p.add_argument("--step-steps", type=int, default=None, help="timed steps per round")
    p.add_argument(
        "--compile", action="store_true",
        help="also time both steps with torch.compile'd backbone features (and report warm-up)",
    )  # fmt: skip
    p.add_argument(
        "--channels-last", choices=["auto", "on", "off"], default="auto",
        help="channels_last_3d for the step measurement (auto: the module's default, CUDA only)",
    )  # fmt: skip
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*RANDOM weights.*")

    from gifemo.backbones.c3d import build_c3d, c3d_preprocessing, clip_flops
    from gifemo.finetune.data import FinetuneDataModule
    from gifemo.finetune.module import FinetuneModule
    from gifemo.models.heads import MultiTaskHead

    device = torch.device(
        "cuda"
        if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
        else "cpu"
    )
    gpu = device.type == "cuda"
    tiny = args.quick and not gpu
    steps = args.steps or (4 if args.quick else (30 if gpu else 3))
    batch = args.batch or (2 if tiny else (32 if gpu else 2))
    workers = (
        args.workers
        if args.workers is not None
        else (2 if tiny else min(16, os.cpu_count() or 2) if gpu else 2)
    )
    n_gifs = args.gifs or max(8, batch * 4 if gpu else batch * (steps + 1))
    if gpu:
        torch.backends.cudnn.benchmark = True

    step: dict[str, Any] = {}
    if args.step != "off":
        cl = {"auto": None, "on": True, "off": False}[args.channels_last]
        kw = dict(
            device=device, tiny=tiny, gifs=batch, clips_per_gif=args.clips, channels_last=cl,
            steps=args.step_steps or (10 if tiny else 30 if gpu else 2),
            rounds=args.step_rounds or (6 if tiny else 3 if gpu else 2),
            warmup=2 if tiny or gpu else 1,
        )  # fmt: skip
        step["eager"] = step_bench(**kw)  # type: ignore[arg-type]
        if args.compile:
            step["compiled"] = step_bench(compile=True, **kw)  # type: ignore[arg-type]
        print(f"training step on the same device-resident batch ({batch} GIFs × {args.clips} "
              f"clip), module under Lightning vs bare, rounds alternating:")  # fmt: skip
        print(f"{'':<10} {'bare clips/s':>13} {'module clips/s':>15} {'module/bare':>12}"
              f" {'first step bare':>16} {'module':>8}   (best of rounds; median)")  # fmt: skip
        for name, r in step.items():
            print(f"{name:<10} {r['bare_best']:>13.1f} {r['module_best']:>15.1f} "
                  f"{r['ratio_best']:>12.3f} {r['first_step_s']['bare']:>15.2f}s "
                  f"{r['first_step_s']['module']:>7.2f}s   ({r['bare_median']:.1f}; "
                  f"{r['module_median']:.1f}; {r['ratio_median']:.3f})")  # fmt: skip
        if "compiled" in step:
            print(f"torch.compile warm-up (first compiled step − a steady one): "
                  f"{step['compiled']['compile_warmup_s']:.1f} s")  # fmt: skip
    if args.step == "only":
        report_only = {"device": torch.cuda.get_device_name(device) if gpu else f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)",
                       "model": "tiny C3D" if tiny else "C3D (full)", "precision": "bf16-mixed" if gpu else "fp32",
                       "step": step}  # fmt: skip
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report_only, indent=1))
        return 0

    with tempfile.TemporaryDirectory(prefix="gifemo-bench-") as tmp:
        t0 = time.perf_counter()
        records = write_gifs(
            Path(tmp),
            n_gifs,
            frames=(40, 90) if args.size == "real" else (16, 40),
            size=(64, 48) if tiny else (480, 270) if args.size == "real" else (200, 150),
            workers=args.gen_workers or os.cpu_count() or 1,
        )
        gen_s = time.perf_counter() - t0
        labels = (np.random.default_rng(0).random((n_gifs, 17)) < 0.2).astype(np.float32)
        channels = (4, 8, 8, 16, 16) if tiny else (64, 128, 256, 512, 512)
        fc_dim = 32 if tiny else 4096

        results: dict[str, Any] = {}
        for setting in ("no cache", "cache"):
            cache_dir = str(Path(tmp) / "cache") if setting == "cache" else None
            dm = FinetuneDataModule(preprocessing=c3d_preprocessing(), train=(records, labels), val=(records[:1], labels[:1]), batch_size=batch,
                                    num_clips=args.clips, num_workers=workers, persistent_workers=True,
                                    prefetch_factor=4, cache_dir=cache_dir, cache_max_mb=8192)  # fmt: skip
            if cache_dir:  # fill the cache once (as epoch 1 does)
                for r in records:
                    dm.cache.get(r.path)  # type: ignore[union-attr]
            backbone = build_c3d(channels=channels, fc_dim=fc_dim, drop_fc8=True)
            module = FinetuneModule(backbone, MultiTaskHead(fc_dim, 17), optimizer=functools.partial(torch.optim.AdamW),
                                    lr=1e-4, head_lr=1e-3, feature_dropout=0.5).to(device).train()  # fmt: skip
            loader = dm.train_dataloader()
            data_rate = loader_rate(loader, max(steps, 10))
            run_setting(
                module, loader, steps=1, device=device, bf16=gpu
            )  # warm-up (workers, cudnn)
            if gpu:
                torch.cuda.reset_peak_memory_stats()
            results[setting] = run_setting(module, loader, steps=steps, device=device, bf16=gpu)
            results[setting]["loader_clips_per_s"] = data_rate
            results[setting]["loader_clips_per_s_per_worker"] = data_rate / max(workers, 1)
            if gpu:
                results[setting]["peak_gpu_mem_gb"] = torch.cuda.max_memory_allocated() / 1e9
            del loader, dm, module
            if cache_dir is None:  # the workers' decode: bgr0 (now) against RGB (before)
                results[setting]["loader_by_decode"] = decode_ab(
                    records, labels, batch=batch, clips=args.clips, workers=workers,
                    batches=max(steps, 10),
                )  # fmt: skip

        flops_clip = clip_flops(backbone, upto="fc6")
        peak = peak_flops(device)
        # the rate an H100 (989 TFLOP/s dense bf16) needs at 40 % MFU, and the workers it
        # takes at the per-worker rate measured here
        need = 0.4 * PEAK_BF16["H100"] / (3.0 * flops_clip)
        for r in results.values():
            r["train_flops_per_clip"] = 3.0 * flops_clip
            if peak:
                r["mfu"] = 3.0 * flops_clip * r["clips_per_s"] / peak
                r["model_mfu"] = 3.0 * flops_clip * r["model_clips_per_s"] / peak

    report = {
        "device": torch.cuda.get_device_name(device) if gpu else f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)",
        "model": "tiny C3D" if tiny else "C3D (full)", "precision": "bf16-mixed" if gpu else "fp32",
        "steps": steps, "gif_size": args.size, "gifs_per_step": batch, "clips_per_gif": args.clips, "workers": workers,
        "n_gifs": n_gifs, "generate_s": gen_s, "forward_gflop_per_clip": flops_clip / 1e9,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "peak_bf16_flops": peak, "settings": results, "h100_40pct_mfu_clips_per_s": need,
        "workers_for_h100_40pct": {k: need / r["loader_clips_per_s_per_worker"] for k, r in results.items()},
    }  # fmt: skip
    print(f"fine-tuning bench on {report['device']}: {report['model']}, {report['precision']}, "
          f"{batch} GIFs × {args.clips} clip/step, {workers} workers, {steps} steps")  # fmt: skip
    print(
        f"{'setting':<10} {'clips/s':>9} {'model clips/s':>14} {'data wait':>10} {'MFU':>7} {'model MFU':>10}"
        f" {'loader clips/s':>15} {'per worker':>11}"
    )
    for name, r in results.items():
        mfu = f"{r['mfu']:.1%}" if "mfu" in r else "-"
        mmfu = f"{r['model_mfu']:.1%}" if "model_mfu" in r else "-"
        print(
            f"{name:<10} {r['clips_per_s']:>9.2f} {r['model_clips_per_s']:>14.2f} {r['data_wait_share']:>10.1%} {mfu:>7} {mmfu:>10}"
            f" {r['loader_clips_per_s']:>15.1f} {r['loader_clips_per_s_per_worker']:>11.1f}"
        )
    print(
        f"an H100 at 40 % MFU trains {need:.0f} clips/s of this model; at the per-worker loader "
        "rates above that takes "
        + ", ".join(f"{w:.0f} workers ({k})" for k, w in report["workers_for_h100_40pct"].items())
    )
    ratio = results["cache"]["clips_per_s"] / results["no cache"]["clips_per_s"]
    print(f"cache / no cache throughput: {ratio:.2f}x; peak RSS {report['peak_rss_gb']:.2f} GB"
          + (f"; peak GPU memory {results['cache']['peak_gpu_mem_gb']:.1f} GB" if gpu else ""))  # fmt: skip
    ab = results["no cache"]["loader_by_decode"]
    print(f"uncached loader per worker: used frames kept, decoding stopped after the clip {ab['kept_clips_per_s_per_worker']:.1f} "
          f"clips/s, every frame decoded (bgr0, before) {ab['bgr0_clips_per_s_per_worker']:.1f} "
          f"({ab['kept_over_bgr0']:.3f}x), RGB (before that) {ab['rgb24_clips_per_s_per_worker']:.1f} "
          f"({ab['bgr0_over_rgb24']:.3f}x bgr0/RGB); one worker's items in-process: kept "
          f"{ab['items_kept_over_bgr0']:.3f}x, kept but decoded to the end "
          f"{ab['items_kept_to_end_over_bgr0']:.3f}x every frame decoded")  # fmt: skip
    report["cache_speedup"] = ratio
    report["step"] = step
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    return 0
