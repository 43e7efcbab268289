"""Simulate labelling with static and active ranking: ``python -m gifemo screening`` (issue 15).

Subcommands:

``simulate``  generated data (:mod:`gifemo.active.simdata`: a GIFGIF-like training set and a
              tag-searched, shifted candidate pool with hidden labels, at the paper's sizes ×
              ``--scale``), every strategy over ``--seeds`` seeds.
``pool``      your own labelled data: a GIFGIF-style training folder and a candidate folder
              whose labels are known (GIFGIF+ ``emotions``, or ``--truth truth.jsonl``), with
              their feature stores (extract.py output).

Both print per model Ñ (checks to the quota) for unsorted / static / active, the work saved by
active vs static with its 95 % interval over seeds, WSS@95 and ASReview's normalised loss, and
write ``OUT/screening.json`` and ``OUT/recall_curves.png``. docs/active.md explains the numbers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from gifemo.active.experiment import MODELS


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS),
                   help="recognisers ranked statically and actively (default: all three)")  # fmt: skip
    p.add_argument("--k", type=int, default=5,
                   help="checks per emotion between re-rankings (the labelling tool's "
                        "rerank_every; default 5)")  # fmt: skip
    p.add_argument("--seeds", type=int, default=5, help="number of seeds (default 5)")
    p.add_argument("--label-weight", type=int, default=1,
                   help="integer weight of a consensus row vs a GIFGIF row (default 1)")  # fmt: skip
    p.add_argument("--out", default="screening", help="output folder (default ./screening)")


def _report(res: dict[str, Any], out: Path, n_p: int) -> None:
    from gifemo.eval.screening import checks_limit, recall_curves_figure

    runs = res.pop("_runs")
    out.mkdir(parents=True, exist_ok=True)
    curves = {
        name: [r.full_labels[e] for r in rs for e in r.full_labels] for name, rs in runs.items()
    }
    recall_curves_figure(curves, out / "recall_curves.png", n_p=n_p, max_checks=checks_limit(res))
    per_emotion = {
        name: [{"n_tilde": r.n_tilde, "wss95": r.wss95, "loss": r.loss} for r in rs]
        for name, rs in runs.items()
    }
    (out / "screening.json").write_text(
        json.dumps({**res, "per_emotion": per_emotion}, indent=1, default=float)
    )
    print(f"\n{'model':<6}{'Ñ unsorted':>12}{'Ñ static':>10}{'Ñ active':>10}"
          f"{'saved vs static (95% CI)':>30}{'WSS@95 s→a':>16}{'loss s→a':>16}")  # fmt: skip
    for model, s in res["models"].items():
        ws = s["work_saved_vs_static"]
        print(
            f"{model:<6}{s['n_tilde_unsorted_mean']['mean']:>12.1f}"
            f"{s['n_tilde_static_mean']['mean']:>10.1f}{s['n_tilde_active_mean']['mean']:>10.1f}"
            f"{100 * ws['mean']:>12.1f} % [{100 * ws['low']:5.1f}, {100 * ws['high']:5.1f}]"
            f"{s['wss95_static']['mean']:>9.3f}→{s['wss95_active']['mean']:.3f}"
            f"{s['loss_static']['mean']:>9.3f}→{s['loss_active']['mean']:.3f}"
        )
    print(f"quota N_p = {n_p}; wrote {out / 'screening.json'} and {out / 'recall_curves.png'}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m gifemo screening", description=__doc__.split("\n")[0]
    )
    sub = ap.add_subparsers(dest="command", required=True)
    sim = sub.add_parser("simulate", help="on generated data (feature space)")
    sim.add_argument("--scale", type=float, default=0.03,
                     help="the paper's sizes × scale (default 0.03: 180 GIFGIF rows, 1,500 "
                          "candidates and a quota of 90 per emotion)")  # fmt: skip
    _common(sim)
    pool = sub.add_parser("pool", help="on your own labelled folders")
    pool.add_argument("--train", required=True, help="GIFGIF-style folder (metadata.jsonl)")
    pool.add_argument("--train-store", help="feature store of --train (for visual features)")
    pool.add_argument("--pool", required=True, help="candidate folder with known labels")
    pool.add_argument("--pool-store", help="feature store of --pool (for visual features)")
    pool.add_argument("--truth", help="JSON lines {id, emotions} when --pool is unlabelled")
    pool.add_argument("--features", default="visual+tag", choices=("visual", "tag", "visual+tag"))
    pool.add_argument("--n-p", type=int, default=None,
                      help="quota per emotion (default: candidates per emotion × 3000/50000)")  # fmt: skip
    _common(pool)
    a = ap.parse_args(argv)

    from gifemo.active.experiment import run_experiment

    if a.command == "simulate":
        from gifemo.active.simdata import paper_scale

        spec = paper_scale(a.scale)
        res = run_experiment(spec, seeds=range(a.seeds), models=a.models, k=a.k,
                             label_weight=a.label_weight)  # fmt: skip
        _report(res, Path(a.out), spec.quota)
        return 0
    from gifemo.active.realdata import screening_data_from_folders

    data = screening_data_from_folders(
        a.train, a.pool, train_store=a.train_store, pool_store=a.pool_store, truth=a.truth,
        features=a.features, n_p=a.n_p,
    )  # fmt: skip
    res = run_experiment(None, data=data, seeds=range(a.seeds), models=a.models, k=a.k,
                         label_weight=a.label_weight)  # fmt: skip
    _report(res, Path(a.out), data.n_p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
