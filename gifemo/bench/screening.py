"""Screening benchmark: checks saved by active re-ranking, and seconds per refit (issue 15).

    python -m gifemo.bench screening [--quick] [--only sim refit] [--seeds N] [--k K]

1. **Simulation** (:func:`gifemo.active.experiment.run_experiment`): generated GIFGIF rows and a
   tag-searched candidate pool at the paper's proportions × 0.03 (``--quick``: × 0.015, two
   seeds, clustered MTL only); unsorted, static and active (re-rank every ``k`` checks per
   emotion) with lasso, trace and clustered MTL; per model the work saved vs static
   (1 − ΣÑ_active / ΣÑ_static over emotions) as mean and 95 % t-interval over seeds, WSS@95 and
   the normalised loss. A recall figure goes beside the JSON.
2. **Refit at GIFGIF scale** (``--quick``: n = 1000 + 500, d = 700): clustered MTL fitted on
   6,000 rows (d = 4,235, t = 17, features like :mod:`gifemo.bench.solvers`'), then an
   :class:`gifemo.active.ActiveReranker` refit with 3,000 consensus labels (one emotion each):
   the first refit (warm from the GIFGIF fit), the same refit cold, and the steady state of a
   labelling session — 2,950 labels known, 50 new ones arrive, refit warm — whose seconds are
   what a labelling team waits for, at tol 1e-6 and 1e-4 (with the agreement of the two
   rankings: Spearman per emotion, top-50 overlap).

Writes ``.bench/screening.json``: ``work_saved_vs_static/<model>`` (mean over seeds) with
``…_low``/``…_high`` (interval) and ``refit/*`` seconds; and ``.bench/screening_recall.png``.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gifemo.active.experiment import MODELS, run_experiment
from gifemo.active.reranker import ActiveReranker
from gifemo.active.simdata import QUICK, WorldSpec, paper_scale
from gifemo.emotions import EMOTIONS
from gifemo.eval.screening import checks_limit, recall_curves_figure


def refit_timing(quick: bool, *, n_new: int | None = None, step: int = 50) -> dict[str, Any]:
    """Seconds per refit of clustered MTL with ``n_new`` consensus labels (module docstring)."""
    from gifemo.bench.solvers import make_data, penalties
    from gifemo.models.estimators import MTLRegressor

    n, d = (1000, 700) if quick else (6000, 4235)
    n_new = n_new or n // 2
    X, Y, _ = make_data(n + n_new, d, 17, seed=3)
    X_tr, Y_tr, X_c = X[:n], Y[:n], X[n:]
    mask = np.ones_like(Y_tr, dtype=bool)
    pen = penalties(X_tr, Y_tr, mask)["cmtl"]
    est = MTLRegressor(pen, tol=1e-6)
    t0 = time.perf_counter()
    est.fit(X_tr, Y_tr, mask)
    cold_gifgif = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    ids = [f"c{j}" for j in range(n_new)]
    task = rng.integers(0, 17, size=n_new)
    truth = Y[n + np.arange(n_new), task] > np.quantile(Y_tr, 0.75, axis=0)[task]
    labels: dict[str, dict[str, bool]] = {e: {} for e in EMOTIONS}
    for j in range(n_new):
        labels[EMOTIONS[task[j]]][ids[j]] = bool(truth[j])

    def rr(warm: bool, fitted: Any) -> ActiveReranker:
        return ActiveReranker(copy.deepcopy(fitted), X_tr, Y_tr, mask, ids, X_c, warm_start=warm)

    out: dict[str, Any] = {"n": n, "n_new": n_new, "d": d, "t": 17, "tol": 1e-6,
                           "cold_fit_gifgif_s": cold_gifgif, "cold_fit_iterations": est.n_iter_}  # fmt: skip
    for name, warm in (("first_refit_warm", True), ("first_refit_cold", False)):
        r = rr(warm, est)
        r.refit(labels)
        out[f"{name}_s"], out[f"{name}_iterations"] = r.last_refit_seconds, r.estimator.n_iter_
        print(
            f"  {name}: {r.last_refit_seconds:.2f} s, {r.estimator.n_iter_} iterations", flush=True
        )
    earlier = {
        e: dict(list(v.items())[: max(0, len(v) - step // 17 - 1)]) for e, v in labels.items()
    }
    n_step = n_new - sum(len(v) for v in earlier.values())
    out["incremental_new_labels"] = n_step
    scores = {}
    for tol in (1e-6, 1e-4):  # ranking needs far less accuracy than the paper's evaluation
        r = rr(True, est)
        r.estimator.set_params(tol=tol)
        r.refit(earlier)
        r.refit(labels)
        scores[tol] = r._scores
        out[f"incremental_refit_tol{tol:g}_s"] = r.last_refit_seconds
        out[f"incremental_refit_tol{tol:g}_iterations"] = r.estimator.n_iter_
        print(
            f"  steady state, tol {tol:g}: {n_step} new labels on top of {n_new - n_step}: "
            f"{r.last_refit_seconds:.2f} s, {r.estimator.n_iter_} iterations",
            flush=True,
        )
    from scipy.stats import spearmanr

    rho = [spearmanr(scores[1e-6][:, i], scores[1e-4][:, i])[0] for i in range(17)]
    top = [
        len(set(np.argsort(-scores[1e-6][:, i])[:50]) & set(np.argsort(-scores[1e-4][:, i])[:50]))
        / 50
        for i in range(17)
    ]
    out["tol1e-4_vs_1e-6_spearman_min"] = float(np.min(rho))
    out["tol1e-4_vs_1e-6_top50_overlap_mean"] = float(np.mean(top))
    out["incremental_refit_s"] = out["incremental_refit_tol0.0001_s"]
    print(
        f"  rankings at tol 1e-4 vs 1e-6: Spearman ≥ {np.min(rho):.4f}, top-50 overlap "
        f"{np.mean(top):.3f} (cold fit on the {n} GIFGIF rows: {cold_gifgif:.2f} s)",
        flush=True,
    )
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m gifemo.bench screening")
    p.add_argument("--quick", action="store_true", help="small sizes, 2 seeds, cmtl only")
    p.add_argument("--only", nargs="+", choices=("sim", "refit"), default=None)
    p.add_argument("--seeds", type=int, default=None, help="seeds (default 5; --quick 2)")
    p.add_argument("--k", type=int, default=5, help="checks per emotion between re-rankings")
    p.add_argument("--scale", type=float, default=None, help="paper sizes × scale (0.03)")
    p.add_argument("--models", nargs="+", choices=MODELS, default=None)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--out", default=".bench/screening.json",
                   help="JSON written (with --only, the other part's keys are kept)")  # fmt: skip
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    parts = set(a.only or ("sim", "refit"))
    out = Path(a.out)
    result: dict[str, Any] = {}
    if a.only and out.is_file():  # one part rerun: keep the other part's numbers
        result = json.loads(out.read_text())
    result.update({"quick": a.quick, "k": a.k})
    out.parent.mkdir(parents=True, exist_ok=True)
    if "sim" in parts:
        spec: WorldSpec = QUICK if a.quick else paper_scale(0.03)
        if a.scale is not None:
            spec = paper_scale(a.scale)
        seeds = range(a.seeds or (2 if a.quick else 5))
        models = a.models or (("cmtl",) if a.quick else MODELS)
        print(f"screening simulation: {spec}, k = {a.k}, seeds {list(seeds)}", flush=True)
        t0 = time.perf_counter()
        res = run_experiment(spec, seeds=seeds, models=models, k=a.k)
        runs = res.pop("_runs")
        result["simulation"] = res
        result["simulation_seconds"] = time.perf_counter() - t0
        for model, summ in res["models"].items():
            ws = summ["work_saved_vs_static"]
            result[f"work_saved_vs_static/{model}"] = ws["mean"]
            result[f"work_saved_vs_static/{model}_low"] = ws["low"]
            result[f"work_saved_vs_static/{model}_high"] = ws["high"]
            print(
                f"{model}: work saved vs static {100 * ws['mean']:.1f} % "
                f"[{100 * ws['low']:.1f}, {100 * ws['high']:.1f}] over {ws['n']} seeds; "
                f"Ñ unsorted {summ['n_tilde_unsorted_mean']['mean']:.1f}, static "
                f"{summ['n_tilde_static_mean']['mean']:.1f}, active "
                f"{summ['n_tilde_active_mean']['mean']:.1f} (quota {spec.quota}); WSS@95 "
                f"{summ['wss95_static']['mean']:.3f} → {summ['wss95_active']['mean']:.3f}, loss "
                f"{summ['loss_static']['mean']:.3f} → {summ['loss_active']['mean']:.3f}",
                flush=True,
            )
        curves = {
            name: [r.full_labels[e] for r in rs for e in r.full_labels] for name, rs in runs.items()
        }
        limit = checks_limit(res)
        fig = recall_curves_figure(
            curves, out.with_name("screening_recall.png"), n_p=spec.quota, max_checks=limit
        )
        result["figure"] = str(fig)
    if "refit" in parts:
        print("refit at GIFGIF scale" + (" (quick sizes)" if a.quick else ""), flush=True)
        result["refit"] = refit_timing(a.quick)
        result["refit/incremental_s"] = result["refit"]["incremental_refit_s"]
        result["refit/first_warm_s"] = result["refit"]["first_refit_warm_s"]
    out.write_text(json.dumps(result, indent=1, default=float))
    print(f"wrote {out}")
    return 0
