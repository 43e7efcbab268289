"""One experiment of the paper (§3.6, Table 2): features → CV → refit → per-emotion evaluation.

:func:`train` is what ``python train.py`` runs (``train.py`` is a thin Hydra wrapper). For the
closed-form recognisers (``model=unsorted|lasso|ridge|trace|cmtl|gp``) it

1. makes sure the dataset and its feature store exist: ``cfg.data`` is instantiated (the
   synthetic default is generated on first use) and :func:`gifemo.features.extract.extract`
   — the code behind ``extract.py`` — reuses a matching store or extracts one;
2. builds the labels y = μ − 3σ (positives y > 25), the protocol's per-emotion test sets
   (``cfg.protocol``, :mod:`gifemo.eval.protocol`) and the features of ``cfg.features``, whose
   tag dictionary is fitted on training rows only;
3. cross-validates every combination of the list-valued hyper-parameters of ``cfg.model``
   (5 folds over the training rows, :func:`gifemo.eval.cv.grid_search`) and refits the best
   on all training rows;
4. scores each emotion's test set T_i and reports, per emotion and averaged over the 17, the PR
   curve, its area (AUC), Ñ (eq. 9) and the positives' rate (:mod:`gifemo.eval.metrics`);
5. writes ``metrics.json`` / ``run.json`` / ``cv.json`` to the output directory, saves the model
   (:mod:`gifemo.predict`), draws the figures, logs everything to the tracker
   (:mod:`gifemo.runners.tracking`) and prints a summary table.

``model=finetune`` and ``model=svm`` are dispatched to :func:`gifemo.runners.finetune.run_finetune`
and :func:`gifemo.models.svm.run_svm`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from gifemo.runners import tracking

log = logging.getLogger(__name__)

# Solver iterations of a trainer.fast_dev_run smoke run (a result, not a converged one).
FAST_DEV_RUN_MAX_ITER = 50


def objective(metrics: Mapping[str, Any], key: str | None) -> float | None:
    """The sweep objective ``metrics[key]`` (None when no key is configured or it is missing)."""
    if not key:
        return None
    if key not in metrics:
        log.warning("optimized_metric %r is not among the run's metrics", key)
        return None
    return float(metrics[key])  # NaN (e.g. no validation positive) is a failed Optuna trial


def run_name(cfg: DictConfig) -> str:
    """``<model>-<features>`` (+ ``-<job number>`` inside a multirun)."""
    from hydra.core.hydra_config import HydraConfig

    name = f"{cfg.model.name}-{OmegaConf.select(cfg, 'features.name', default='features')}"
    if HydraConfig.initialized() and tracking.sweep_group() is not None:
        name += f"-{HydraConfig.get().job.num}"
    return name


def job_overrides() -> list[str]:
    """The command-line/sweep overrides of this job, secrets redacted (empty outside Hydra)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return list(tracking.scrub(tracking.scrub_overrides(list(HydraConfig.get().overrides.task))))


def train(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Run the experiment configured by ``cfg``; returns (metrics, objects).

    ``metrics`` is flat (``cv/score``, ``test/auc_mean``, ``test/auc/<emotion>``, …);
    ``objects`` holds the fitted estimator, the report, the CV result and the logger.
    """
    name = str(cfg.model.name)
    if name in ("finetune", "svm"):
        return _dispatch(cfg, name)
    import lightning

    lightning.seed_everything(int(cfg.seed), workers=True, verbose=False)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    logger = tracking.build_logger(cfg, name=run_name(cfg))
    try:
        metrics, objects = _run(cfg, out, logger)
    except BaseException:
        tracking.finish(logger, exit_code=1)
        raise
    tracking.finish(logger)
    print(format_summary(cfg, metrics, objects["report"], objects["cv"]), flush=True)
    return metrics, objects


def _run(cfg: DictConfig, out: Path, logger: Any) -> tuple[dict[str, float], dict[str, Any]]:
    from gifemo.eval.metrics import evaluate_rankings

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    data, dataset, store = prepare_data(cfg)
    timings["time/data_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    cv = cross_validate(cfg, data)
    timings["time/cv_s"] = time.perf_counter() - t0

    estimator = cv.estimator
    scores = estimator.predict(data.X)  # (n, 17) ranking scores
    report = evaluate_rankings(
        scores,
        data.positives,
        data.protocol.test_rows,
        n_p=int(cfg.evaluation.n_p),
        n_all=int(cfg.evaluation.n_all),
    )
    metrics: dict[str, float] = {**cv.to_metrics("cv"), **report.to_metrics("test"), **timings}
    metrics["data/n_gifs"] = float(data.X.shape[0])
    metrics["data/n_features"] = float(data.X.shape[1])
    metrics["data/n_training_rows"] = float(data.protocol.training_rows.size)
    metrics["data/n_dropped"] = float(len(data.dropped))
    objects: dict[str, Any] = {
        "estimator": estimator,
        "report": report,
        "cv": cv,
        "data": data,
        "logger": logger,
        "scores": scores,
        "dataset": dataset,
    }
    write_results(cfg, out, metrics, cv, data)
    if cfg.get("save_model", True):
        from gifemo.models.saved import save_model

        objects["model_dir"] = save_model(
            out / "model",
            estimator=estimator,
            features=data.features,
            normaliser=data.normaliser,
            dictionary=data.dictionary,
            store=store,
            config=tracking.scrub_config(cfg),
        )
    figures = {}
    if cfg.get("figures", True):
        figures = make_figures(cfg, out, report, estimator)
        figures.update(dataset_figures(out, dataset, store, data))
    objects["figures"] = figures

    tracking.log_summary(logger, metrics)
    tracking.log_table(logger, "test/per_emotion", *per_emotion_table(report))
    tracking.log_table(logger, "cv/grid", *cv_table(cv))
    for key, png in figures.items():
        tracking.log_figure(logger, key, png)
    return metrics, objects


def _dispatch(cfg: DictConfig, name: str) -> tuple[dict[str, float], dict[str, Any]]:
    """Hand ``model=finetune`` / ``model=svm`` to F's runners; write metrics.json like ours."""
    if name == "finetune":
        from gifemo.runners.finetune import run_finetune as runner
    else:
        from gifemo.models.svm import run_svm as runner
    try:
        metrics, objects = runner(cfg)
    finally:
        tracking.finish_any_wandb_run()  # one W&B run per sweep job, even if the runner left it open
    out = OmegaConf.select(cfg, "paths.output_dir", default=None)
    if out:
        write_json(Path(out) / "metrics.json", metrics)
        features = "clips" if name == "finetune" else "visual"
        write_json(
            Path(out) / "run.json",
            {"model": name, "features": features, "overrides": job_overrides(), "params": {}},
        )
    return metrics, objects


# -- results -----------------------------------------------------------------------------------


def write_json(path: Path, obj: Any) -> None:
    """JSON with NaN/inf written as ``NaN``/``Infinity`` (Python's json reads them back)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, sort_keys=True, default=_jsonable) + "\n")


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def write_results(
    cfg: DictConfig, out: Path, metrics: dict[str, float], cv: Any, data: Any
) -> None:
    """metrics.json (flat metrics), run.json (what ran, for the sweep summary), cv.json (grid)."""
    write_json(out / "metrics.json", metrics)
    write_json(
        out / "run.json",
        {
            "model": str(cfg.model.name),
            "features": str(cfg.features.name),
            "overrides": job_overrides(),
            "params": {
                k: _jsonable(v) if isinstance(v, np.generic) else v
                for k, v in cv.best_params.items()
            },
            "protocol": data.protocol.summary(),
        },
    )
    write_json(out / "cv.json", {"folds": int(cfg.cv.folds), "grid": cv.table()})


def per_emotion_table(report: Any) -> tuple[list[str], list[list[Any]]]:
    """(columns, rows) of the per-emotion results (one row per emotion)."""
    columns = [
        "emotion",
        "n_test",
        "n_positive",
        "positive_rate",
        "auc",
        "precision_at_recall",
        "n_tilde",
    ]
    rows = [
        [
            e,
            int(report.n_test[i]),
            int(report.n_positive[i]),
            float(report.positive_rate[i]),
            float(report.auc[i]),
            float(report.precision_at_recall[i]),
            float(report.n_tilde[i]),
        ]
        for i, e in enumerate(report.emotions)
    ]
    return columns, rows


def cv_table(cv: Any) -> tuple[list[str], list[list[Any]]]:
    """(columns, rows): one row per grid configuration with its mean CV score."""
    table = cv.table()
    keys = sorted({k for row in table for k in row} - {"cv_score", "fold_scores"})
    return [*keys, "cv_score"], [
        [str(row.get(k)) for k in keys] + [row["cv_score"]] for row in table
    ]


def format_summary(cfg: DictConfig, metrics: Mapping[str, float], report: Any, cv: Any) -> str:
    """The table printed at the end of a run: per emotion, then the means and the CV choice."""
    from gifemo.eval.metrics import format_report

    params = ", ".join(f"{k}={v}" for k, v in cv.best_params.items()) or "(no hyper-parameters)"
    lines = [
        "",
        f"== {cfg.model.get('label', cfg.model.name)} on {cfg.features.name} features "
        f"({int(metrics['data/n_gifs'])} GIFs, {int(metrics['data/n_features'])} features) ==",
        f"CV ({cv.scores.shape[1]}-fold, {len(cv.params)} configurations): chose {params}, "
        f"cv/score {metrics['cv/score']:.4f}",
        format_report(report),
        f"Unsorted baseline (positives' rate): AUC ≈ {metrics['test/positive_rate_mean']:.3f}, "
        f"Ñ ≈ {metrics['test/n_tilde_unsorted_mean']:,.0f}",
        f"test/auc_mean {metrics['test/auc_mean']:.4f}   test/n_tilde_mean {metrics['test/n_tilde_mean']:,.0f}",
    ]
    return "\n".join(lines)


# -- data --------------------------------------------------------------------------------------


def prepare_data(cfg: DictConfig) -> tuple[Any, Any, Any]:
    """Steps 1-2 of :func:`train` → (FeatureArrays, dataset, store).

    ``cfg.data`` is instantiated (the synthetic default is generated on first use); the store
    comes from :func:`gifemo.features.extract.extract` (reused when its fingerprint matches);
    ``cfg.features.datamodule`` (a :class:`gifemo.features.datamodule.FeatureDataModule`
    partial) builds labels, the protocol's test sets, the tag dictionary (training rows only) and
    the normalised features. The store is made for every feature set, tag-only included, so that
    all methods see the same rows (GIFs that failed to decode are dropped everywhere).
    """
    from gifemo.features.extract import extract

    dataset = instantiate(cfg.data)
    store = extract(cfg)  # the same code as extract.py
    datamodule = instantiate(cfg.features.datamodule)(dataset, store)
    datamodule.setup("fit")
    arrays = datamodule.arrays
    log.info(
        "data %s: %d GIFs with features, %s blocks %s, %d rows in no test set",
        dataset.name,
        arrays.X.shape[0],
        arrays.features,
        arrays.blocks,
        arrays.training_rows.size,
    )
    return arrays, dataset, store


# -- model selection ---------------------------------------------------------------------------


def solver_device(cfg: DictConfig) -> str | None:
    """Where closed-form solvers run: cuda when trainer.accelerator asks for a GPU (or auto
    finds one), else cpu."""
    import torch

    acc = str(OmegaConf.select(cfg, "trainer.accelerator", default="cpu"))
    if acc in ("gpu", "cuda") or (acc == "auto" and torch.cuda.is_available()):
        return "cuda"
    return "cpu"


def param_grid(cfg: DictConfig) -> dict[str, Any]:
    """``cfg.model.hparams`` resolved: estimator parameter → value or list of values (a grid)."""
    hp = cfg.model.get("hparams") or {}
    grid = OmegaConf.to_container(hp, resolve=True) if isinstance(hp, DictConfig) else dict(hp)
    assert isinstance(grid, dict)
    return {str(k): v for k, v in grid.items()}


def cross_validate(cfg: DictConfig, data: Any) -> Any:
    """Step 3: K-fold CV of every grid point on the training rows, refit of the best.

    ``trainer.fast_dev_run`` (the smoke-run switch, like Lightning's "run a batch or two") keeps
    only the first value of every list, uses 2 folds and caps the solver at
    ``FAST_DEV_RUN_MAX_ITER`` iterations.
    """
    from gifemo.eval.cv import grid_search

    kwargs: dict[str, Any] = {}
    if "device" in cfg.model.estimator:
        kwargs["device"] = cfg.model.estimator.device or solver_device(cfg)
    grid = param_grid(cfg)
    folds = int(cfg.cv.folds)
    if OmegaConf.select(cfg, "trainer.fast_dev_run", default=False):
        grid = {k: (v[0] if isinstance(v, list | ListConfig) and v else v) for k, v in grid.items()}
        folds = 2
        if "max_iter" in cfg.model.estimator:
            kwargs["max_iter"] = FAST_DEV_RUN_MAX_ITER
    estimator = instantiate(cfg.model.estimator, **kwargs)
    return grid_search(
        estimator,
        data.X,
        data.Y,
        data.protocol.train_mask,
        param_grid=grid,
        n_folds=folds,
        seed=int(cfg.cv.seed),
        log=log.info,
    )


# -- figures -----------------------------------------------------------------------------------


def make_figures(cfg: DictConfig, out: Path, report: Any, estimator: Any) -> dict[str, Path]:
    """The paper's figures for this run as PNGs under ``<out>/figures`` → {tracker key: path}.

    Fig. 7 (mean and per-emotion PR curves) always; for linear models Fig. 8 (correlation of the
    W_i, emotions in cluster order); for the multi-task models Fig. 6 (silhouette of k-means on
    the columns of the trace-norm W — the one fitted for k=auto, else this model's W — and its
    first two principal components with the k-means partition of the best k).
    """
    from gifemo.eval import figures as F
    from gifemo.models.estimators import choose_k, silhouette_by_k

    fig_dir = out / "figures"
    label = str(cfg.model.get("label", cfg.model.name))
    paths = {
        "figures/fig7_pr_mean": F.pr_curves_figure({label: report}, fig_dir / "fig7_pr_mean.png"),
        "figures/fig7_pr_per_emotion": F.per_emotion_pr_figure(
            report, fig_dir / "fig7_pr_per_emotion.png"
        ),
    }
    W = getattr(estimator, "W_", None)
    if W is not None and np.any(W):
        paths["figures/fig8_correlation"] = F.correlation_figure(
            W, fig_dir / "fig8_correlation.png", title=f"{label}: correlation of the W_i"
        )
    W6 = getattr(estimator, "W_trace_", None)
    if W6 is None and str(cfg.model.name) in ("trace", "cmtl"):
        W6 = W
    if W6 is not None and np.any(W6):
        scores, labels = silhouette_by_k(W6, seed=int(cfg.seed))
        k = choose_k(scores)
        paths["figures/fig6_silhouette"] = F.silhouette_figure(
            scores, W6, labels[k], fig_dir / "fig6_silhouette.png"
        )
    return paths


def dataset_figures(out: Path, dataset: Any, store: Any, data: Any) -> dict[str, Path]:
    """Figs. 9-10 of the GIFs this run used (:func:`gifemo.data.stats.dataset_statistics`):
    frame counts and mean delays (from the feature store), emotion overlap, flag shares."""
    from gifemo.data.stats import dataset_statistics

    keep = np.array([dataset.index_of(gid) for gid in data.ids], dtype=np.int64)
    rows = np.array([store.row_of(gid) for gid in data.ids], dtype=np.int64)
    stats = dataset_statistics(
        dataset.subset(keep),
        out / "figures",
        n_frames=np.asarray(store.n_frames)[rows],
        mean_delay_ms=np.asarray(store.mean_delay_ms)[rows],
    )
    return {f"figures/{k}_dataset": Path(v) for k, v in stats["figures"].items()}
