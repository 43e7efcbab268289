"""What every runner writes and prints: ``metrics.json``, ``run.json``, tables, the summary.

``metrics.json`` is flat (``cv/score``, ``test/auc_mean``, ``test/auc/<emotion>``, …);
``run.json`` says what ran (model, feature set, the job's overrides, the chosen parameters) for
the sweep summary (:mod:`gifemo.runners.sweep`). Plain functions of plain arguments, except the
two that read Hydra's own state (:func:`run_name`, :func:`job_overrides`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gifemo.runners import tracking

log = logging.getLogger(__name__)


def objective(metrics: Mapping[str, Any], key: str | None) -> float | None:
    """The sweep objective ``metrics[key]`` (None when no key is configured or it is missing)."""
    if not key:
        return None
    if key not in metrics:
        log.warning("optimized_metric %r is not among the run's metrics", key)
        return None
    return float(metrics[key])  # NaN (e.g. no validation positive) is a failed Optuna trial


def run_name(model: str, features: str) -> str:
    """``<model>-<features>`` (+ ``-<job number>`` inside a multirun)."""
    from hydra.core.hydra_config import HydraConfig

    name = f"{model}-{features}"
    if HydraConfig.initialized() and tracking.sweep_group() is not None:
        name += f"-{HydraConfig.get().job.num}"
    return name


def job_overrides() -> list[str]:
    """The command-line/sweep overrides of this job, secrets redacted (empty outside Hydra)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return list(tracking.scrub(tracking.scrub_overrides(list(HydraConfig.get().overrides.task))))


def write_json(path: Path, obj: Any) -> None:
    """JSON with NaN/inf written as ``NaN``/``Infinity`` (Python's json reads them back)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, sort_keys=True, default=jsonable) + "\n")


def jsonable(x: Any) -> Any:
    """NumPy scalars/arrays as Python values; anything else as its string."""
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def write_run(
    out: Path,
    metrics: Mapping[str, float],
    *,
    model: str,
    features: str,
    params: Mapping[str, Any] | None = None,
    **extra: Any,
) -> None:
    """``out/metrics.json`` (the flat metrics) and ``out/run.json`` (what ran)."""
    write_json(out / "metrics.json", dict(metrics))
    run = {
        "model": model,
        "features": features,
        "overrides": job_overrides(),
        "params": {
            k: jsonable(v) if isinstance(v, np.generic) else v for k, v in (params or {}).items()
        },
        **extra,
    }
    write_json(out / "run.json", run)


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


def format_summary(
    label: str, features: str, metrics: Mapping[str, float], report: Any, cv: Any
) -> str:
    """The table printed at the end of a run: per emotion, then the means and the CV choice."""
    from gifemo.eval.metrics import format_report

    params = ", ".join(f"{k}={v}" for k, v in cv.best_params.items()) or "(no hyper-parameters)"
    lines = [
        "",
        f"== {label} on {features} features "
        f"({int(metrics['data/n_gifs'])} GIFs, {int(metrics['data/n_features'])} features) ==",
        f"CV ({cv.scores.shape[1]}-fold, {len(cv.params)} configurations): chose {params}, "
        f"cv/score {metrics['cv/score']:.4f}"
        if getattr(cv, "validated", True)
        else f"No CV (one configuration, nothing to choose): {params}",
        format_report(report),
        f"Unsorted baseline (positives' rate): AUC ≈ {metrics['test/positive_rate_mean']:.3f}, "
        f"Ñ ≈ {metrics['test/n_tilde_unsorted_mean']:,.0f}",
        f"test/auc_mean {metrics['test/auc_mean']:.4f}   test/n_tilde_mean {metrics['test/n_tilde_mean']:,.0f}",
    ]
    return "\n".join(lines)
