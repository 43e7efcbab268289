"""Summarise a finished sweep: each method's best configuration by CV score, Table 2.

``python -m gifemo sweep SWEEP_DIR [--metric cv/score]`` prints the table and writes
``SWEEP_DIR/summary.md``, ``summary.json`` and ``fig7_pr_all.png`` (all methods' mean PR curves)
(:func:`gifemo.runners.sweep.summarize`; a multirun does the same by itself when it ends).
``python -m gifemo sweep DIR1 DIR2 ...`` (several sweeps of the same methods, e.g. one per seed)
prints each method's mean ± sd of AUC and Ñ over them (:func:`gifemo.runners.sweep.across_sweeps`).
A ``--metric`` that no job of a sweep has is an error naming the keys there are.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from gifemo.runners.sweep import across_sweeps, collect, summarize


def check_metric(sweep_dir: str, metric: str) -> None:
    """Raise ValueError when some job of ``sweep_dir`` has a metrics.json but none has ``metric``
    (every job would score NaN, and each method's first job would be "chosen")."""
    results = collect(sweep_dir)
    if results and not any(metric in r.metrics for r in results):
        keys = sorted({k for r in results for k in r.metrics})
        raise ValueError(
            f"{sweep_dir}: no job's metrics.json has the metric {metric!r}; "
            f"the keys there: {', '.join(keys)}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gifemo sweep", description="Summarise a finished sweep (Table 2)."
    )
    parser.add_argument(
        "sweep_dir", nargs="+", help="the multirun directory (outputs/train/multiruns/...); "
        "several: mean ± sd over them",
    )  # fmt: skip
    parser.add_argument("--metric", default="cv/score", help="choose configurations by this key")
    args = parser.parse_args(argv)
    try:
        for d in args.sweep_dir:
            check_metric(d, args.metric)
        if len(args.sweep_dir) == 1:
            summarize(args.sweep_dir[0], metric=args.metric)
        else:
            print(across_sweeps(args.sweep_dir, metric=args.metric))
    except ValueError as e:
        parser.exit(2, f"error: {e}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
