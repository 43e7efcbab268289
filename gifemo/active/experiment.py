"""The screening experiment: every strategy × model over seeds, summarised (issue 15).

For each seed: draw :func:`gifemo.active.simdata.make_screening_data`; choose each model's
hyper-parameters by cross-validation on the GIFGIF rows only (:func:`gifemo.eval.cv.grid_search`,
as ``train.py`` does; the candidates play no part); then simulate ``unsorted`` once and
``static``/``active`` with each model. Per (seed, model) the headline is

    work saved vs static = 1 − Σ_e Ñ_active,e / Σ_e Ñ_static,e

(total checks of the collection, i.e. the ratio of the emotion-averaged Ñ; emotions whose pool
ran out before the quota under any strategy are left out), with the mean of the per-emotion
savings beside it; across seeds the mean and a 95 % Student-t interval.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gifemo.active.simdata import ScreeningData, WorldSpec, make_screening_data
from gifemo.active.simulate import Run, simulate
from gifemo.eval.screening import seed_interval

MODELS = ("lasso", "trace", "cmtl")
# CV grids on the GIFGIF rows (features are L2-normalised blocks, as train.py's)
GRIDS: dict[str, dict[str, list[Any]]] = {
    "lasso": {"rho": [0.3, 1.0, 3.0]},
    "trace": {"rho": [1.0, 3.0, 10.0]},
    "cmtl": {"rho1": [1.0, 3.0, 10.0], "rho2": [0.1, 0.3]},
}


def build_estimator(model: str, *, tol: float = 1e-4) -> Any:
    """An unfitted MTLRegressor for ``model`` ∈ MODELS (cmtl: k = 2 clusters, Fig. 6)."""
    from gifemo.models.estimators import MTLRegressor
    from gifemo.models.penalties import ClusteredMTL, Lasso, TraceNorm

    if model == "lasso":
        return MTLRegressor(Lasso, rho=1.0, tol=tol)
    if model == "trace":
        return MTLRegressor(TraceNorm, rho=3.0, tol=tol)
    if model == "cmtl":
        return MTLRegressor(ClusteredMTL, rho1=3.0, rho2=0.3, k=2, tol=tol)
    raise ValueError(f"unknown model {model!r}; expected one of {MODELS}")


def fit_model(model: str, X: np.ndarray, Y: np.ndarray, mask: np.ndarray, *, seed: int = 0,
              folds: int = 3, tol: float = 1e-4) -> tuple[Any, dict[str, Any]]:  # fmt: skip
    """CV on the training rows, refit the best → (fitted estimator, chosen params)."""
    from gifemo.eval.cv import grid_search

    cv = grid_search(
        build_estimator(model, tol=tol), X, Y, mask, param_grid=GRIDS[model], n_folds=folds,
        seed=seed,
    )  # fmt: skip
    return cv.estimator, dict(cv.best_params)


def _pairs(a: Run, b: Run) -> tuple[np.ndarray, np.ndarray]:
    keys = [e for e in a.n_tilde if np.isfinite(a.n_tilde[e]) and np.isfinite(b.n_tilde[e])]
    return (np.array([a.n_tilde[e] for e in keys]), np.array([b.n_tilde[e] for e in keys]))


def run_experiment(
    spec: WorldSpec | None,
    *,
    data: ScreeningData | None = None,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    models: Sequence[str] = MODELS,
    k: int = 10,
    label_weight: int = 1,
    tol: float = 1e-4,
    threads: int | None = 1,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """All strategies on ``len(seeds)`` generated worlds (or on ``data``, given, where the seed
    changes only the unsorted order and the CV folds); returns a JSON-ready summary plus
    ``"_runs"`` (the :class:`Run` objects, for figures).

    ``threads``: torch CPU threads while it runs (restored after; None: leave as is). The
    matrices are small (hundreds of rows): one thread avoids synchronisation that cost ~17 ms
    per product on a busy 2-core machine.
    """
    import torch

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        return _run(spec, data, seeds, models, k, label_weight, tol, log)
    finally:
        torch.set_num_threads(before)


def _run(
    spec: WorldSpec | None,
    data: ScreeningData | None,
    seeds: Sequence[int],
    models: Sequence[str],
    k: int,
    label_weight: int,
    tol: float,
    log: Callable[[str], None],
) -> dict[str, Any]:
    if (spec is None) == (data is None):
        raise ValueError("run_experiment: give a WorldSpec or ScreeningData, not both or neither")
    fixed = data
    rows: list[dict[str, Any]] = []
    runs: dict[str, list[Run]] = {"unsorted": []}
    for seed in seeds:
        data = fixed if fixed is not None else make_screening_data(spec, seed=seed)  # type: ignore[arg-type]
        about = data.summary()
        log(
            f"seed {seed}: {about['n_train']} GIFGIF rows, {about['n_pool']} candidates "
            f"(≤ {max(c.size for c in data.candidates)} per emotion, positives "
            f"{about['positive_rate_mean']:.3f}), d = {about['d']}, quota {data.n_p}"
        )
        unsorted = simulate(data, "unsorted", seed=seed)
        runs["unsorted"].append(unsorted)
        for model in models:
            t0 = time.perf_counter()
            est, params = fit_model(model, data.X_train, data.Y_train, data.mask_train,
                                    seed=seed, tol=tol)  # fmt: skip
            fit_s = time.perf_counter() - t0
            static = simulate(data, "static", estimator=est)
            t0 = time.perf_counter()
            active = simulate(data, "active", estimator=copy.deepcopy(est), k=k,
                              label_weight=label_weight)  # fmt: skip
            active_s = time.perf_counter() - t0
            runs.setdefault(f"static/{model}", []).append(static)
            runs.setdefault(f"active/{model}", []).append(active)
            n_act, n_sta = _pairs(active, static)
            n_uns, n_sta_u = _pairs(unsorted, static)
            row: dict[str, Any] = {
                "seed": seed,
                "model": model,
                "params": params,
                "n_emotions": int(n_sta.size),
                "n_tilde_unsorted_mean": unsorted.mean_n_tilde(),
                "n_tilde_static_mean": float(n_sta.mean()),
                "n_tilde_active_mean": float(n_act.mean()),
                "work_saved_vs_static": float(1.0 - n_act.sum() / n_sta.sum()),
                "work_saved_vs_static_emotion_mean": float(np.mean(1.0 - n_act / n_sta)),
                "static_saved_vs_unsorted": float(1.0 - n_sta_u.sum() / n_uns.sum()),
                "wss95_static": float(np.nanmean(list(static.wss95.values()))),
                "wss95_active": float(np.nanmean(list(active.wss95.values()))),
                "loss_static": float(np.nanmean(list(static.loss.values()))),
                "loss_active": float(np.nanmean(list(active.loss.values()))),
                "wss95_unsorted": float(np.nanmean(list(unsorted.wss95.values()))),
                "loss_unsorted": float(np.nanmean(list(unsorted.loss.values()))),
                "n_refits": active.n_refits,
                "refit_seconds_mean": float(np.mean(active.refit_seconds))
                if active.refit_seconds
                else float("nan"),
                "fit_seconds": fit_s,
                "active_seconds": active_s,
            }
            rows.append(row)
            log(
                f"  {model:<5} Ñ unsorted {row['n_tilde_unsorted_mean']:7.1f}  static "
                f"{row['n_tilde_static_mean']:7.1f}  active {row['n_tilde_active_mean']:7.1f}  "
                f"work saved {100 * row['work_saved_vs_static']:5.1f} %  ({active.n_refits} "
                f"refits, {row['refit_seconds_mean']:.2f} s each)"
            )
    summary: dict[str, Any] = {"per_seed": rows, "models": {}}
    for model in models:
        mine = [r for r in rows if r["model"] == model]
        summary["models"][model] = {
            key: seed_interval([r[key] for r in mine]).to_dict()
            for key in (
                "work_saved_vs_static",
                "work_saved_vs_static_emotion_mean",
                "static_saved_vs_unsorted",
                "n_tilde_static_mean",
                "n_tilde_active_mean",
                "n_tilde_unsorted_mean",
                "wss95_static",
                "wss95_active",
                "loss_static",
                "loss_active",
                "refit_seconds_mean",
            )
        }
    summary["_runs"] = runs
    return summary
