"""Runner of the closed-form recognisers on extracted features (paper §3.6, Table 2).

``python train.py model=unsorted|lasso|ridge|trace|cmtl|gp`` (``model.runner._target_`` points
here). :func:`run`

1. makes sure the dataset and its feature store exist: ``cfg.data`` is instantiated (the
   synthetic default is generated on first use) and :func:`gifemo.runners.extract.extract`
   — the code behind ``extract.py`` — reuses a matching store or extracts one;
2. builds the labels y = μ − 3σ (positives y > 25), the protocol's per-emotion test sets
   (``cfg.protocol``, :mod:`gifemo.eval.protocol`) and the features of ``cfg.features``, whose
   tag dictionary is fitted on training rows only (:func:`gifemo.features.datamodule.build_feature_arrays`);
3. cross-validates every combination of the list-valued hyper-parameters of ``cfg.model``
   (K folds over the training rows, :func:`gifemo.eval.cv.grid_search`) and refits the best
   on all training rows;
4. scores each emotion's test set T_i and reports, per emotion and averaged over the 17, the PR
   curve, its area (AUC), Ñ (eq. 9) and the positives' rate (:mod:`gifemo.eval.metrics`);
5. writes ``metrics.json`` / ``run.json`` / ``cv.json`` (:mod:`gifemo.runners.results`), saves
   the model (:mod:`gifemo.models.saved`), draws the figures (:mod:`gifemo.runners.figures`),
   logs everything to the tracker (:mod:`gifemo.runners.tracking`) and prints a summary table.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from gifemo.runners import results, tracking
from gifemo.runners.figures import dataset_figures, model_figures

log = logging.getLogger(__name__)

# Solver iterations of a trainer.fast_dev_run smoke run (a result, not a converged one).
FAST_DEV_RUN_MAX_ITER = 50


def run(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Run the experiment configured by ``cfg``; returns (metrics, objects).

    ``metrics`` is flat (``cv/score``, ``test/auc_mean``, ``test/auc/<emotion>``, …);
    ``objects`` holds the fitted estimator, the report, the CV result, the data and the logger.
    """
    import lightning

    lightning.seed_everything(int(cfg.seed), workers=True, verbose=False)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    logger = tracking.build_logger(cfg, name=results.run_name(cfg.model.name, cfg.features.name))
    try:
        metrics, objects = _run(cfg, out, logger)
    except BaseException:
        tracking.finish(logger, exit_code=1)
        raise
    tracking.finish(logger)
    label = str(cfg.model.label)
    print(
        results.format_summary(
            label, str(cfg.features.name), metrics, objects["report"], objects["cv"]
        ),
        flush=True,
    )
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
    results.write_run(
        out,
        metrics,
        model=str(cfg.model.name),
        features=str(cfg.features.name),
        params=cv.best_params,
        protocol=data.protocol.summary(),
    )
    results.write_json(out / "cv.json", {"folds": int(cfg.cv.folds), "grid": cv.table()})
    # the mean PR curve, for the sweep summary's Fig. 7 overlay of all methods (runners.sweep)
    results.write_json(out / "pr_curve.json", {
        "label": str(cfg.model.label), "features": str(cfg.features.name),
        "recall_grid": report.recall_grid.tolist(), "mean_curve": report.mean_curve.tolist(),
        "auc_mean": report.auc_mean, "n_tilde_mean": report.n_tilde_mean, "recall": report.recall,
    })  # fmt: skip
    if cfg.save_model:
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
    if cfg.figures:
        figures = model_figures(
            out,
            report,
            estimator,
            label=str(cfg.model.label),
            cluster_figure=bool(cfg.model.cluster_figure),
            seed=int(cfg.seed),
        )
        figures.update(dataset_figures(out, dataset, store, data.ids))
    objects["figures"] = figures

    tracking.log_summary(logger, metrics)
    tracking.log_table(logger, "test/per_emotion", *results.per_emotion_table(report))
    tracking.log_table(logger, "cv/grid", *results.cv_table(cv))
    for key, png in figures.items():
        tracking.log_figure(logger, key, png)
    return metrics, objects


def prepare_data(cfg: DictConfig) -> tuple[Any, Any, Any]:
    """Steps 1-2 of :func:`run` → (FeatureArrays, dataset, store).

    ``cfg.data`` is instantiated (the synthetic default is generated on first use); the store
    comes from :func:`gifemo.runners.extract.extract` (reused when its fingerprint matches);
    ``cfg.features.arrays`` (a partial of :func:`gifemo.features.datamodule.build_feature_arrays`
    with ``cfg.protocol`` as its protocol) builds labels, the protocol's test sets, the tag
    dictionary and the normalised features. The store is made for every feature set, tag-only
    included, so that all methods see the same rows (GIFs that failed to decode are dropped
    everywhere).
    """
    from gifemo.runners.extract import extract

    dataset = instantiate(cfg.data)
    store = extract(cfg)  # the same code as extract.py
    arrays = instantiate(cfg.features.arrays)(dataset, store)
    log.info(
        "data %s: %d GIFs with features, %s blocks %s, %d rows in no test set",
        dataset.name,
        arrays.X.shape[0],
        arrays.features,
        arrays.blocks,
        arrays.training_rows.size,
    )
    return arrays, dataset, store


def solver_device(cfg: DictConfig) -> str:
    """Where closed-form solvers run: cuda when trainer.accelerator asks for a GPU (or auto
    finds one), else cpu."""
    import torch

    acc = str(cfg.trainer.accelerator)
    if acc in ("gpu", "cuda") or (acc == "auto" and torch.cuda.is_available()):
        return "cuda"
    return "cpu"


def param_grid(cfg: DictConfig) -> dict[str, Any]:
    """``cfg.model.hparams`` resolved: estimator parameter → value or list of values (a grid)."""
    grid = OmegaConf.to_container(cfg.model.hparams, resolve=True)
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
    if cfg.trainer.fast_dev_run:
        grid = {k: (v[0] if isinstance(v, list | ListConfig) and v else v) for k, v in grid.items()}
        folds = 2
        if "max_iter" in cfg.model.estimator:
            kwargs["max_iter"] = FAST_DEV_RUN_MAX_ITER
    estimator = instantiate(cfg.model.estimator, **kwargs)
    trace = None
    if "trace_rho" in cfg.model and (grid.get("k") == "auto" or cfg.figures):
        # clustered MTL: the trace-norm model of §3.6 first, once (for k=auto and/or Fig. 6)
        trace = trace_reference(cfg, data, kwargs, folds)
        if grid.get("k") == "auto":
            from gifemo.models.estimators import choose_k, silhouette_by_k

            silhouette, _ = silhouette_by_k(trace.W_, seed=int(cfg.seed))
            grid["k"] = choose_k(silhouette)
            log.info(f"k=auto: silhouette {silhouette} on the trace-norm W -> k = {grid['k']}")
    cv = grid_search(
        estimator,
        data.X,
        data.Y,
        data.protocol.train_mask,
        param_grid=grid,
        n_folds=folds,
        seed=int(cfg.cv.seed),
        log=log.info,
        validate_single=bool(cfg.trainer.fast_dev_run),
    )
    if trace is not None and cv.estimator is not None:
        fitted: Any = cv.estimator
        fitted.W_trace_ = trace.W_  # Fig. 6 is drawn from it (runners.figures)
        fitted.trace_rho_ = trace.penalty_params["rho"]
    return cv


def trace_reference(cfg: DictConfig, data: Any, kwargs: dict[str, Any], folds: int) -> Any:
    """The trace-norm model whose W gives Fig. 6 and ``k=auto`` (paper §3.6): ρ chosen by K-fold
    CV over ``cfg.model.trace_rho`` on the same training rows and folds, refitted on all of them.
    Fitted once per run (not inside every CMTL fold, and not with CMTL's ρ1)."""
    from gifemo.eval.cv import grid_search
    from gifemo.models.estimators import MTLRegressor
    from gifemo.models.penalties import TraceNorm

    est = cfg.model.estimator
    trace: Any = MTLRegressor(TraceNorm, tol=float(est.tol),
                         max_iter=int(kwargs.get("max_iter", est.max_iter)),
                         device=kwargs.get("device"), seed=int(est.seed),
                         precondition=est.precondition)  # fmt: skip
    rhos = OmegaConf.to_container(cfg.model.trace_rho, resolve=True)
    if cfg.trainer.fast_dev_run and isinstance(rhos, list):
        rhos = rhos[0]
    res = grid_search(trace, data.X, data.Y, data.protocol.train_mask, param_grid={"rho": rhos},
                      n_folds=folds, seed=int(cfg.cv.seed), log=log.info,
                      validate_single=bool(cfg.trainer.fast_dev_run))  # fmt: skip
    log.info(f"trace-norm model for Fig. 6 / k: rho = {res.best_params['rho']}")
    return res.estimator
