"""The end of a sweep: pick each method's best configuration by CV score, print Table 2.

Every job of a multirun writes ``metrics.json`` (flat metrics, see :mod:`gifemo.runners.results`) and
``run.json`` (model name, feature set, the job's overrides and CV-chosen parameters) into its
output directory ``<sweep dir>/<job number>/``. :func:`summarize` reads them all, groups the jobs
by *method* = (model, feature set), keeps in each group the job with the highest
``cv/score`` (the metric the sweep optimises; test metrics are never used to choose), and
reports the chosen jobs' test results in the layout of the paper's Table 2:

    Methods                                   AUC      Ñ   CV score   configuration
    Unsorted                                0.250  11996          -   ...
    Visual features only
      Lasso regression                      0.336   7196      0.301   model.rho=10
    ...

The table is printed and written to ``<sweep dir>/summary.md``; ``summary.json`` holds the same
rows plus every job's scores; ``fig7_pr_all.png`` is Fig. 7 as in the paper: the mean PR curves
of all the table's methods in one figure (from each chosen job's ``pr_curve.json``).
:func:`across_sweeps` puts several sweeps of the same methods (e.g. one per seed of data and
split) side by side: mean ± standard deviation of AUC and Ñ per method. :class:`SweepSummary` is the Hydra callback that runs it at
``on_multirun_end`` (configured in ``conf/hydra/default.yaml``); ``python -m gifemo sweep DIR``
(:mod:`gifemo.apps.sweep`) reruns it on a finished sweep directory.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)

# Display names and Table 2's order: (feature set, model); "*" matches any feature set.
MODEL_LABELS = {
    "unsorted": "Unsorted",
    "lasso": "Lasso regression",
    "ridge": "Ridge regression",
    "gp": "Gaussian process regression",
    "trace": "Trace-norm multi-task regression",
    "cmtl": "Clustered multi-task regression",
    "svm": "Linear SVM",
    "finetune": "Fine-tuned C3D",
}
FEATURE_SECTIONS = {
    "visual": "Visual features only",
    "tag": "Tag features only",
    "visual+tag": "Visual + tag features",
}
MODEL_ORDER = ("unsorted", "lasso", "ridge", "gp", "trace", "cmtl", "svm", "finetune")
FEATURE_ORDER = ("visual", "tag", "visual+tag")


@dataclass
class JobResult:
    """One finished job of a sweep."""

    job_dir: Path
    model: str
    features: str
    metrics: dict[str, float]
    overrides: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def method(self) -> tuple[str, str]:
        # The unsorted baseline ignores the features: one row whatever the feature set.
        return (self.model, "-" if self.model == "unsorted" else self.features)

    def score(self, metric: str) -> float:
        v = self.metrics.get(metric, math.nan)
        return float(v) if v is not None else math.nan


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def collect(sweep_dir: str | Path) -> list[JobResult]:
    """Every job under ``sweep_dir`` with a ``metrics.json`` (recursively), sorted by path."""
    results = []
    for metrics_path in sorted(Path(sweep_dir).rglob("metrics.json")):
        job_dir = metrics_path.parent
        run_path = job_dir / "run.json"
        run = _read_json(run_path) if run_path.exists() else {}
        results.append(
            JobResult(
                job_dir=job_dir,
                model=str(run.get("model", "?")),
                features=str(run.get("features", "?")),
                metrics=_read_json(metrics_path),
                overrides=list(run.get("overrides", [])),
                params=dict(run.get("params", {})),
            )
        )
    return results


def best_per_method(results: Sequence[JobResult], metric: str) -> dict[tuple[str, str], JobResult]:
    """The job with the highest ``metric`` per method (NaN counts as worst; first on ties)."""
    best: dict[tuple[str, str], JobResult] = {}
    for r in results:
        s = r.score(metric)
        cur = best.get(r.method)
        if cur is None:
            best[r.method] = r
            continue
        c = cur.score(metric)
        if not math.isnan(s) and (math.isnan(c) or s > c):
            best[r.method] = r
    return best


def _order(method: tuple[str, str]) -> tuple[int, int, str]:
    model, feats = method
    m = MODEL_ORDER.index(model) if model in MODEL_ORDER else len(MODEL_ORDER)
    f = FEATURE_ORDER.index(feats) if feats in FEATURE_ORDER else -1 if feats == "-" else 99
    return (f, m, f"{feats}/{model}")


def _fmt(x: float, spec: str) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def _distinctive(overrides: Sequence[str], common: set[str]) -> list[str]:
    """A job's overrides minus those shared by every job and Hydra's/the experiment's own."""
    return [
        o
        for o in overrides
        if o not in common and not o.lstrip("+~").startswith(("hydra", "experiment"))
    ]


def table_rows(best: dict[tuple[str, str], JobResult], metric: str) -> list[dict[str, Any]]:
    """Table 2's rows (method order of the paper), one per method."""
    jobs = list(best.values())
    common = set.intersection(*(set(r.overrides) for r in jobs)) if len(jobs) > 1 else set()
    rows = []
    for method in sorted(best, key=_order):
        r = best[method]
        rows.append(
            {
                "model": r.model,
                "features": method[1],
                "label": MODEL_LABELS.get(r.model, r.model),
                "auc": r.metrics.get("test/auc_mean", math.nan),
                "n_tilde": r.metrics.get("test/n_tilde_mean", math.nan),
                "cv_score": r.score(metric),
                "positive_rate": r.metrics.get("test/positive_rate_mean", math.nan),
                "overrides": r.overrides,
                "distinctive": _distinctive(r.overrides, common),
                "params": r.params,
                "job_dir": str(r.job_dir),
            }
        )
    return rows


def format_table(rows: Sequence[dict[str, Any]], *, metric: str = "cv/score") -> str:
    """Markdown-ish plain text table in Table 2's layout."""
    head = f"{'Methods':<40}{'AUC':>7}{'Ñ':>9}{metric:>11}   configuration"
    lines = [head, "-" * len(head)]
    section = None
    for row in rows:
        feats = row["features"]
        if feats != "-" and feats != section:
            section = feats
            lines.append(FEATURE_SECTIONS.get(feats, f"Features: {feats}"))
        indent = "" if feats == "-" else "  "
        config = " ".join(row.get("distinctive", row["overrides"]))
        params = ", ".join(f"{k}={v}" for k, v in row["params"].items())
        desc = "; ".join(x for x in (config, f"CV chose {params}" if params else "") if x)
        lines.append(
            f"{indent + row['label']:<40}{_fmt(row['auc'], '.3f'):>7}"
            f"{_fmt(row['n_tilde'], ',.0f'):>9}{_fmt(row['cv_score'], '.3f'):>11}   {desc}"
        )
    return "\n".join(lines)


def summarize(
    sweep_dir: str | Path, *, metric: str = "cv/score", echo: bool = True
) -> dict[str, Any]:
    """Collect the sweep's jobs, choose by ``metric``, print and write summary.md / summary.json."""
    sweep_dir = Path(sweep_dir)
    results = collect(sweep_dir)
    if not results:
        log.warning("no metrics.json under %s: nothing to summarise", sweep_dir)
        return {"sweep_dir": str(sweep_dir), "jobs": [], "table": []}
    best = best_per_method(results, metric)
    rows = table_rows(best, metric)
    text = (
        f"Sweep {sweep_dir} — {len(results)} jobs, best configuration per method by {metric} "
        f"(test results of that configuration)\n\n{format_table(rows, metric=metric)}\n"
    )
    shared = sorted(set.intersection(*(set(r.overrides) for r in results)))
    if shared:
        text += f"\nOverrides common to all jobs: {' '.join(shared)}\n"
    summary = {
        "sweep_dir": str(sweep_dir),
        "metric": metric,
        "table": rows,
        "jobs": [
            {
                "job_dir": str(r.job_dir),
                "model": r.model,
                "features": r.features,
                "overrides": r.overrides,
                "params": r.params,
                metric: r.score(metric),
                "test/auc_mean": r.metrics.get("test/auc_mean", math.nan),
                "test/n_tilde_mean": r.metrics.get("test/n_tilde_mean", math.nan),
            }
            for r in results
        ],
    }
    (sweep_dir / "summary.md").write_text(text)
    (sweep_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    fig = overlay_figure(rows, sweep_dir / "fig7_pr_all.png")
    if fig is not None:
        summary["fig7"] = str(fig)
    if echo:
        print(text, flush=True)
    return summary


def overlay_figure(rows: Sequence[dict[str, Any]], path: Path) -> Path | None:
    """Fig. 7: the mean PR curves of the rows' jobs in one figure, in the table's order; None
    when no job wrote ``pr_curve.json``."""
    from types import SimpleNamespace

    import numpy as np

    from gifemo.eval.figures import pr_curves_figure

    curves = {}
    for row in rows:
        p = Path(row["job_dir"]) / "pr_curve.json"
        if not p.is_file():
            continue
        c = _read_json(p)
        feats = "" if row["features"] == "-" else f" ({row['features']})"
        curves[f"{row['label']}{feats}"] = SimpleNamespace(
            recall_grid=np.asarray(c["recall_grid"]), mean_curve=np.asarray(c["mean_curve"]),
            auc_mean=float(c["auc_mean"]), recall=float(c["recall"]),
        )  # fmt: skip
    return pr_curves_figure(curves, path) if curves else None


def across_sweeps(
    sweep_dirs: Sequence[str | Path],
    *,
    metric: str = "cv/score",
    reference: tuple[str, str] = ("lasso", "visual+tag"),
) -> str:
    """Several sweeps of the same methods (one per seed): per method, the mean ± standard
    deviation (ddof = 1) over the sweeps of the chosen job's test AUC and Ñ; the paired
    difference of AUC to the ``reference`` method (model, features) in the same sweep, mean ±
    sd (the seeds move every method together, so the paired difference is the comparison to
    read); and the values of each sweep in the order given. Returns the plain-text table."""
    import numpy as np

    per: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    for j, d in enumerate(sweep_dirs):
        results = collect(d)
        if not results:
            raise ValueError(f"{d}: no metrics.json under the sweep directory")
        for row in table_rows(best_per_method(results, metric), metric):
            per.setdefault((row["model"], row["features"]), {})[j] = row
    n = len(sweep_dirs)
    ref = per.get(reference, {})
    head = (
        f"{'Methods':<40}{'AUC mean ± sd':>16}{'Ñ mean ± sd':>18}{'ΔAUC vs ' + reference[0]:>18}"
        f"   per sweep (AUC / Ñ)"
    )
    lines = [head, "-" * len(head)]
    section = None
    for method in sorted(per, key=_order):
        by_sweep = per[method]
        rows = [by_sweep[j] for j in sorted(by_sweep)]
        paired = np.array(
            [by_sweep[j]["auc"] - ref[j]["auc"] for j in sorted(by_sweep) if j in ref]
        )
        delta = (
            f"{paired.mean():+.3f} ± {_fmt(_sd(paired), '.3f')}"
            if paired.size and method != reference
            else "-"
        )
        feats = method[1]
        if feats != "-" and feats != section:
            section = feats
            lines.append(FEATURE_SECTIONS.get(feats, f"Features: {feats}"))
        auc = np.array([r["auc"] for r in rows], dtype=float)
        nt = np.array([r["n_tilde"] for r in rows], dtype=float)
        each = ", ".join(f"{a:.3f}/{b:,.0f}" for a, b in zip(auc, nt))
        missing = "" if len(rows) == n else f"  ({len(rows)} of {n} sweeps)"
        indent = "" if feats == "-" else "  "
        lines.append(
            f"{indent + rows[0]['label']:<40}{auc.mean():>9.3f} ± {_fmt(_sd(auc), '.3f'):<5}"
            f"{nt.mean():>10,.0f} ± {_fmt(_sd(nt), ',.0f'):<6}{delta:>16}   {each}{missing}"
        )
    return "\n".join(lines)


def _sd(a: Any) -> float:
    """Sample standard deviation (ddof = 1); NaN for fewer than two values."""
    import numpy as np

    return float(np.std(a, ddof=1)) if len(a) > 1 else math.nan


class SweepSummary(Callback):
    """Hydra callback: :func:`summarize` the sweep directory when a multirun ends."""

    def __init__(self, metric: str = "cv/score") -> None:
        self.metric = metric

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        summarize(str(config.hydra.sweep.dir), metric=self.metric)
