"""One prepared GPU check: extraction and fine-tuning benches sized for ≤ 6 minutes on an
H100/H200 with 16 CPU cores, one summary table beside the issue's targets, one JSON.

``python -m gifemo.bench gpu [--quick] [--workers N] [--no-compile] [--out .bench/gpu.json]``

Runs, each a child process (``python -m gifemo.bench extract|finetune …``, its own JSON under
the output's folder, a crash or timeout in one does not lose the others):

1. extraction, full C3D, bf16, 240×180 GIFs (20–44 frames), ``--workers`` loader workers: the
   end-to-end clips/s, data wait, MFU, the model-only ceiling and the decode bound;
2. the same on real-looking GIFs (480×270, 40–90 frames): the share of the decode bound;
3. extraction with ``torch.compile`` (warm-up reported), unless ``--no-compile``;
4. fine-tuning (bf16, batch 32, cache and no cache): clips/s, MFU, data wait, and the step alone;
   then the module's step inside Lightning against a bare step of the same network on one
   device-resident batch (eager, and compiled unless ``--no-compile``).

Before the benches, ``pytest -m gpu`` runs the CUDA correctness tests (``tests/test_gpu.py``:
CUDA features vs the CPU store, the device resize, a training step free of host syncs) — a
fast path that computes something else is not a speed-up. ``--no-tests`` skips them.

GIFs are generated in parallel by each bench (all cores). On a machine without CUDA the check
refuses unless ``--quick`` (tiny C3D, tiny sizes on the CPU: a rehearsal of the command); its
table then says that the GPU numbers are not measured.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

# the targets on an H100/H200 with 16 CPU cores
TARGETS = {
    "extract": "≥ 1500 clips/s, data wait < 30 %",
    "extract_real": "≥ 85 % of the decode bound",
    "finetune cache": "≥ 1200 clips/s, MFU ≥ 28 %",
    "finetune no cache": "data wait < 25 %",
    "finetune step": "module ≥ 90 % of the bare step",
}


def _plan(quick: bool, workers: int, compile_: bool, out: Path) -> list[tuple[str, list[str]]]:
    """(name, argv of ``python -m gifemo.bench …``) of each run, the compiled extraction last
    (the first to go when ``--budget`` runs out)."""
    if quick:
        ex = ["extract", "--quick", "--gifs", "4", "--unique", "2", "--num-workers", "1",
              "--precisions", "32", "--no-naive", "--profile-seconds", "0.5"]  # fmt: skip
        ft = ["finetune", "--quick", "--steps", "2", "--workers", "1"]
        gifs, real_gifs, real_paths = [], [], []
    else:
        w = str(workers)
        ex = ["extract", "--device", "cuda", "--precisions", "bf16", "--no-naive",
              "--batch-clips", "128", "--num-workers", w, "--profile-seconds", "4"]  # fmt: skip
        ft = ["finetune", "--device", "cuda", "--steps", "40", "--batch", "32", "--workers", w,
              *(["--compile"] if compile_ else [])]  # fmt: skip
        gifs, real_gifs = ["--gifs", "2400"], ["--gifs", "800"]
        # both resize_on paths end to end on real-looking GIFs: with reused shared buffers the
        # device path's larger transfer costs a worker little; the GPU run says what it costs
        # the main process (pinning 4.5 MB a clip)
        real_paths = ["--resize-on", "worker,device"]
    runs = [
        ("extract", [*ex, *gifs, "--out", str(out / "extract.json")]),
        ("extract_real", [*ex, "--size", "real", *real_gifs, *real_paths,
                          "--out", str(out / "extract_real.json")]),
        ("finetune", [*ft, "--out", str(out / "finetune.json")]),
    ]  # fmt: skip
    if compile_:
        runs.append(("extract_compiled", [*ex, *gifs, "--compile", "--profile-seconds", "0",
                                          "--out", str(out / "extract_compiled.json")]))  # fmt: skip
    return runs


def _run(argv: list[str], timeout: float, module: str = "gifemo.bench") -> dict[str, Any]:
    t0 = time.perf_counter()
    status: int | str
    cmd = [sys.executable, "-m", *(argv if module == "pytest" else [module, *argv])]
    try:
        proc = subprocess.run(cmd, timeout=timeout, text=True, capture_output=True)
        status, tail = proc.returncode, (proc.stdout + proc.stderr)[-3000:]
    except subprocess.TimeoutExpired as e:
        status, tail = "timeout", str(e.stdout or "")[-3000:]
    return {"status": status, "seconds": round(time.perf_counter() - t0, 1), "log_tail": tail}


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def summary_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per measured setting: clips/s, MFU, data wait, the model-only ceiling."""
    rows = []
    for name in ("extract", "extract_real", "extract_compiled"):
        rep = results.get(name, {}).get("report")
        if not rep:
            continue
        for run, r in rep["runs"].items():
            rows.append({
                "what": f"{name} ({run}, {rep['gif_size_hw'][1]}x{rep['gif_size_hw'][0]})",
                "clips_per_s": r.get("clips_per_s_after_warmup", r["clips_per_s"]),
                "mfu": r.get("mfu"), "data_wait": r.get("data_wait_share"),
                "ceiling": r.get("model_only_clips_per_s"), "ceiling_what": "model features() alone",
                "decode_bound_share": r.get("share_of_decode_bound"),
                "compile_warmup_s": r.get("compile_warmup_s"),
                "target": TARGETS.get(name, ""),
            })  # fmt: skip
    rep = results.get("finetune", {}).get("report")
    if rep:
        for setting, r in rep["settings"].items():
            rows.append({
                "what": f"finetune {setting}", "clips_per_s": r["clips_per_s"], "mfu": r.get("mfu"),
                "data_wait": r["data_wait_share"], "ceiling": r["model_clips_per_s"],
                "ceiling_what": "train step alone (no data wait)",
                "decode_bound_share": None, "compile_warmup_s": None,
                "target": TARGETS.get(f"finetune {setting}", ""),
            })  # fmt: skip
        for kind, r in (rep.get("step") or {}).items():
            rows.append({
                "what": f"finetune step, module in Lightning ({kind})",
                "clips_per_s": r["module_median"], "mfu": None, "data_wait": None,
                "ceiling": r["bare_median"], "ceiling_what": "bare step, same batch",
                "module_share_of_bare": r["ratio_median"], "decode_bound_share": None,
                "compile_warmup_s": r.get("compile_warmup_s"),
                "target": TARGETS["finetune step"],
            })  # fmt: skip
    return rows


def checks(results: dict[str, Any]) -> list[str]:
    """Lines on what the fast paths compute: the CUDA tests, the device resize's rounding, and
    the decode bound before and after (extraction runs)."""
    lines = []
    tests = results.get("tests")
    if tests:
        last = tests["log_tail"].strip().splitlines()[-1:] or ["(no output)"]
        lines.append(f"pytest -m gpu: exit {tests['status']}: {last[0]}")
    for name in ("extract", "extract_real"):
        rep = results.get(name, {}).get("report") or {}
        rc = rep.get("resize_check")
        if rc:
            lines.append(
                f"{name}: device resize vs worker resize on {rc.get('device')}: max pixel "
                f"difference {rc.get('max_pixel_diff')}, smallest feature cosine "
                f"{rc.get('min_feature_cosine')}"
            )
        prof = rep.get("worker_profile") or {}
        if prof.get("decode_only_clips_per_s"):
            lines.append(
                f"{name}: decode-only clips/s per worker {_num(prof.get('decode_only_clips_per_s_before'))}"
                f" before -> {_num(prof['decode_only_clips_per_s'])} now"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gifemo.bench gpu", description=__doc__)
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny model and sizes; the only way to run on a machine without CUDA",
    )
    p.add_argument(
        "--workers", type=int, default=None, help="loader workers (default: cores - 2, at least 1)"
    )
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile runs")
    p.add_argument("--no-tests", action="store_true", help="skip pytest -m gpu (tests/test_gpu.py)")
    p.add_argument("--timeout", type=float, default=240.0, help="seconds allowed per run")
    p.add_argument(
        "--budget", type=float, default=540.0,
        help="seconds for the whole check: a run gets at most what is left (less 15 s for the "
        "table), so the summary and JSON are written inside a 10-minute device call",
    )  # fmt: skip
    p.add_argument("--out", default=".bench/gpu.json")
    args = p.parse_args(argv)  # fmt: skip
    cuda = torch.cuda.is_available()
    if not cuda and not args.quick:
        print("no CUDA device: the GPU check needs one (python -m gifemo.bench gpu --quick "
              "rehearses the command on this CPU with tiny sizes; its numbers are not GPU numbers)")  # fmt: skip
        return 2
    out = Path(args.out)
    parts = out.parent / (out.stem + "_runs")
    parts.mkdir(parents=True, exist_ok=True)
    workers = args.workers or max(1, (os.cpu_count() or 2) - 2)
    plan = _plan(args.quick, workers, not args.no_compile, parts)
    results: dict[str, Any] = {}
    t0 = time.perf_counter()

    def left() -> float:  # seconds the next run may take
        return min(args.timeout, args.budget - 15.0 - (time.perf_counter() - t0))

    if cuda and not args.no_tests:
        print("[gpu check] tests: python -m pytest -m gpu -q tests/test_gpu.py", flush=True)
        results["tests"] = _run(["pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
                                 "tests/test_gpu.py"], left(), module="pytest")  # fmt: skip
    for name, run_argv in plan:
        print(f"[gpu check] {name}: python -m gifemo.bench {' '.join(run_argv)}", flush=True)
        if left() < 10:
            results[name] = {"status": "skipped: --budget spent", "seconds": 0.0, "log_tail": ""}
            print(f"  skipped: the --budget of {args.budget:.0f} s is spent", flush=True)
            continue
        res = _run(run_argv, left())
        json_path = Path(run_argv[run_argv.index("--out") + 1])
        if res["status"] == 0 and json_path.is_file():
            res["report"] = json.loads(json_path.read_text())
        else:
            print(f"  failed ({res['status']}):\n{res['log_tail']}", flush=True)
        results[name] = res
    rows = summary_rows(results)
    device = torch.cuda.get_device_name(0) if cuda else "CPU (rehearsal)"
    measured = cuda and not args.quick
    report = {
        "device": device, "cuda": cuda, "quick": args.quick, "gpu_numbers_measured": measured,
        "workers": workers, "seconds": round(time.perf_counter() - t0, 1), "targets": TARGETS,
        "summary": rows, "checks": checks(results), "runs": results,
    }  # fmt: skip
    print(f"\nGPU check on {device}, {workers} workers, {report['seconds']} s")
    head = (f"{'what':<44} {'clips/s':>9} {'MFU':>7} {'data wait':>10} {'ceiling':>9} "
            f"{'% decode bd':>11}  target")  # fmt: skip
    print(head + "\n" + "-" * len(head))
    for r in rows:
        print(f"{r['what'][:44]:<44} {_num(r['clips_per_s']):>9} {_pct(r['mfu']):>7} "
              f"{_pct(r['data_wait']):>10} {_num(r['ceiling']):>9} "
              f"{_pct(r['decode_bound_share']):>11}  {r['target']}")  # fmt: skip
    for r in rows:
        if r.get("module_share_of_bare") is not None:
            print(f"{r['what']}: {_pct(r['module_share_of_bare'])} of the bare step")
    for line in checks(results):
        print(line)
    warm = [f"{r['what']}: {r['compile_warmup_s']:.1f} s" for r in rows if r["compile_warmup_s"]]
    if warm:
        print("torch.compile warm-up: " + "; ".join(warm))
    print("ceiling: extraction = the model's features() alone (eager) on device-resident "
          "clips; fine-tuning = the train step alone (no data wait); the compiled run's clips/s "
          "leaves its warm-up out (its MFU does not)")  # fmt: skip
    if not measured:
        print("NOTE: CPU rehearsal with tiny sizes — the GPU numbers are NOT measured.")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")
    return 0 if all(r["status"] == 0 for r in results.values()) else 1
