"""Solver benchmark: fit_mtl vs cvxpy (SCS) and scikit-learn, and fit_mtl at GIFGIF size.

    python -m gifemo.bench solvers [--quick]

1. Time to reach a 1e-6 relative objective gap, ours vs cvxpy/SCS, at n = 600, t = 17,
   d ∈ {50, 200, 500} (d = 500 skipped with --quick), for Lasso, TraceNorm and ClusteredMTL.
   The reference optimum F* is the smallest exact objective found by any run (ours at
   tol = 1e-12 included). Each solver runs a ladder of tolerances from loose to tight
   (ours: tol; SCS: eps_abs = eps_rel); its time is the wall time of the first run whose
   exact objective, evaluated by :func:`mtl_objective` at its (W, b), is within 1e-6 of F*.
   cvxpy's time includes canonicalisation; ours includes the Lipschitz estimate. Ours is the
   best of 3 repeats (timings of ~10 ms are noisy), SCS a single run.
2. Ours vs scikit-learn Lasso (17 independent coordinate-descent fits, alpha = ρ/(2 n_i)) at
   equal objective, by the same ladder (sklearn: tol).
3. Ours alone at GIFGIF size (n = 6000, d = 4235, t = 17; --quick: n = 1000, d = 700): each
   penalty in a fresh process, default tol; seconds, iterations and peak resident memory.
4. The GP rows from ``gifemo.bench.gp.run(quick)`` when that module exists.

Data: features are ReLU of Gaussian noise plus a rank-32 shared component (non-negative
and correlated like C3D fc6 features); targets are X·W* + noise with W* formed by 3 clusters
of tasks. Masks follow the paper's protocol: per task, a third of a random half of the rows
is held out (each task trains on ~5/6 of the rows). ρ: Lasso and TraceNorm at 0.1·ρ_max;
ClusteredMTL ρ2 = 0.05·λ̄, ρ1 = 10·ρ2, k = 3, λ̄ = ‖X − x̄‖²_F / d (the mean eigenvalue of the
centred Gram matrix).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gifemo.models.mtl import fit_mtl, lasso_rho_max, mtl_objective, trace_rho_max
from gifemo.models.penalties import ClusteredMTL, Lasso, Penalty, TraceNorm

GAP = 1e-6
OUR_TOLS = (1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10)
SCS_EPS = (1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9)
SK_TOLS = (1e-4, 1e-6, 1e-8, 1e-10, 1e-12)
SCS_TIME_LIMIT = 120.0  # seconds per SCS run; a capped run that misses the gap counts as a miss


def make_data(n: int, d: int, t: int = 17, seed: int = 0) -> tuple[np.ndarray, ...]:
    """X (n, d) ≥ 0, Y (n, t), mask (n, t) bool as described in the module docstring."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n, 32)) @ rng.standard_normal((32, d)) / np.sqrt(32)
    X = np.maximum(rng.standard_normal((n, d)) + latent, 0.0)
    centres = rng.standard_normal((d, 3)) / np.sqrt(d)
    W = centres[:, rng.integers(0, 3, t)] + 0.3 * rng.standard_normal((d, t)) / np.sqrt(d)
    Y = 25.0 + 10.0 * (X - X.mean(0)) @ W + 5.0 * rng.standard_normal((n, t))
    mask = np.ones((n, t), bool)
    for i in range(t):
        pool = rng.choice(n, n // 2, replace=False)
        mask[rng.choice(pool, len(pool) // 3, replace=False), i] = False
    return X, Y, mask


def penalties(X: np.ndarray, Y: np.ndarray, mask: np.ndarray) -> dict[str, Penalty]:
    lam = float(((X - X.mean(0)) ** 2).sum()) / X.shape[1]
    return {
        "lasso": Lasso(0.1 * lasso_rho_max(X, Y, mask)),
        "trace": TraceNorm(0.1 * trace_rho_max(X, Y, mask)),
        "cmtl": ClusteredMTL(0.5 * lam, 0.05 * lam, 3),
    }


def _ladder(
    runs: list[tuple[float, tuple[float, float]]], f_star: float
) -> tuple[float, float] | None:
    """(seconds, tol) of the first run within GAP of f_star; runs: (tol, (objective, seconds))."""
    return next(
        ((sec, tol) for tol, (obj, sec) in runs if (obj - f_star) / abs(f_star) <= GAP), None
    )


def _ours(X, Y, mask, pen, tol) -> tuple[float, float]:
    best = np.inf
    for _ in range(3):
        sol = fit_mtl(X, Y, mask, pen, tol=tol)
        best = min(best, sol.seconds)
    return sol.objective, best


def compare_cvxpy(d: int, *, n: int = 600, t: int = 17) -> list[dict[str, Any]]:
    from gifemo.solvers.cvx import solve_cvx

    X, Y, mask = make_data(n, d, t, seed=d)
    rows = []
    for name, pen in penalties(X, Y, mask).items():
        ref = fit_mtl(X, Y, mask, pen, tol=1e-12, max_iter=200_000)
        ours = [(tol, _ours(X, Y, mask, pen, tol)) for tol in OUR_TOLS]
        scs = []
        for eps in SCS_EPS:
            sol = solve_cvx(X, Y, mask, pen, solver="SCS", eps=eps, time_limit=SCS_TIME_LIMIT)
            scs.append((eps, (mtl_objective(X, Y, mask, pen, sol.W, sol.b), sol.solve_seconds)))
            f_now = min(ref.objective, *(o for _, (o, _) in scs))
            if (scs[-1][1][0] - f_now) / abs(f_now) <= GAP:
                break
        f_star = min(ref.objective, *(o for _, (o, _) in scs))
        a, b = _ladder(ours, f_star), _ladder(scs, f_star)
        rows.append(
            {
                "d": d,
                "penalty": name,
                "ours_s": a[0] if a else None,
                "ours_tol": a[1] if a else None,
                "scs_s": b[0] if b else None,
                "scs_eps": b[1] if b else None,
                "scs_best_gap": min((o - f_star) / abs(f_star) for _, (o, _) in scs),
                "ratio": b[0] / a[0] if a and b else None,
            }
        )
        print(_fmt_cvx(rows[-1]), flush=True)
    return rows


def compare_sklearn(d: int, *, n: int = 600, t: int = 17) -> dict[str, Any]:
    from sklearn.linear_model import Lasso as SkLasso

    X, Y, mask = make_data(n, d, t, seed=d)
    pen = penalties(X, Y, mask)["lasso"]
    assert isinstance(pen, Lasso)
    ref = fit_mtl(X, Y, mask, pen, tol=1e-12, max_iter=200_000)
    ours = [(tol, _ours(X, Y, mask, pen, tol)) for tol in OUR_TOLS]
    sk = []
    for tol in SK_TOLS:
        W, b = np.zeros((d, t)), np.zeros(t)
        start = time.perf_counter()
        for i in range(t):
            rows = mask[:, i]
            m = SkLasso(alpha=pen.rho / (2 * rows.sum()), tol=tol, max_iter=1_000_000)
            m.fit(X[rows], Y[rows, i])
            W[:, i], b[i] = m.coef_, m.intercept_
        sk.append((tol, (mtl_objective(X, Y, mask, pen, W, b), time.perf_counter() - start)))
    f_star = min(ref.objective, *(o for _, (o, _) in sk))
    a, s = _ladder(ours, f_star), _ladder(sk, f_star)
    row = {
        "d": d,
        "ours_s": a[0] if a else None,
        "sklearn_s": s[0] if s else None,
        "sklearn_tol": s[1] if s else None,
        "ratio": s[0] / a[0] if a and s else None,
    }
    print(
        f"  lasso d={d:4d}  ours {_s(row['ours_s'])}  sklearn {_s(row['sklearn_s'])} "
        f"(tol {row['sklearn_tol']})  sklearn/ours {_r(row['ratio'])}",
        flush=True,
    )
    return row


def _gifgif_child(n: int, d: int, name: str, tol: float, threads: int, queue: Any) -> None:
    torch.set_num_threads(threads)
    X, Y, mask = make_data(n, d, 17, seed=1)
    pen = penalties(X, Y, mask)[name]
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sol = fit_mtl(X, Y, mask, pen, tol=tol)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # reference: continue from the timed solution to tol 1e-10 (warm start), for the gap
    ref = fit_mtl(X, Y, mask, pen, W0=sol.W, lipschitz=sol.lipschitz, tol=1e-10)
    f_star = min(ref.objective, sol.objective)
    queue.put(
        {
            "penalty": name,
            "n": n,
            "d": d,
            "tol": tol,
            "seconds": sol.seconds,
            "iterations": sol.n_iter,
            "converged": sol.converged,
            "gap": (sol.objective - f_star) / abs(f_star),
            "peak_rss_mb": peak / 1024,
            "solver_extra_mb": (peak - rss0) / 1024,
            "data_mb": X.nbytes / 2**20,
        }
    )


def gifgif_size(quick: bool, tol: float = 1e-6) -> list[dict[str, Any]]:
    n, d = (1000, 700) if quick else (6000, 4235)
    ctx = mp.get_context("spawn")
    rows = []
    for name in ("lasso", "trace", "cmtl"):
        queue = ctx.Queue()
        proc = ctx.Process(
            target=_gifgif_child, args=(n, d, name, tol, torch.get_num_threads(), queue)
        )
        proc.start()
        row = queue.get()
        proc.join()
        rows.append(row)
        print(
            f"  {name:6s} n={n} d={d}: {row['seconds']:.2f} s, {row['iterations']} iterations, "
            f"gap {row['gap']:.1e}, peak RSS {row['peak_rss_mb']:.0f} MB "
            f"(data {row['data_mb']:.0f} MB)",
            flush=True,
        )
    return rows


def _s(x: float | None) -> str:
    return "   n/a  " if x is None else f"{x * 1000:8.1f} ms"


def _r(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f}x"


def _fmt_cvx(r: dict[str, Any]) -> str:
    return (
        f"  {r['penalty']:6s} d={r['d']:4d}  ours {_s(r['ours_s'])} (tol {r['ours_tol']})  "
        f"SCS {_s(r['scs_s'])} (eps {r['scs_eps']})  SCS/ours {_r(r['ratio'])}"
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m gifemo.bench solvers")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--out", default=".bench/solvers.json")
    parser.add_argument(
        "--only", nargs="+", choices=("cvxpy", "sklearn", "gifgif", "gp"), default=None
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result: dict[str, Any] = {"gap": GAP, "quick": args.quick}
    dims = (50, 200) if args.quick else (50, 200, 500)
    parts = set(args.only or ("cvxpy", "sklearn", "gifgif", "gp"))
    if "cvxpy" in parts:
        print(f"time to a {GAP:g} relative objective gap, n=600, t=17 (SCS: cvxpy wall time)")
        result["cvxpy"] = [row for d in dims for row in compare_cvxpy(d)]
    if "sklearn" in parts:
        print("lasso, ours vs scikit-learn Lasso (17 tasks), equal objective")
        result["sklearn"] = [compare_sklearn(d) for d in dims]
    if "gifgif" in parts:
        print(
            f"ours at GIFGIF size (tol 1e-6, {args.threads} threads; "
            "gap against a tol 1e-10 continuation)"
        )
        result["gifgif"] = gifgif_size(args.quick)
    if "gp" in parts:
        _gp(result, args.quick)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=float))
    print(f"wrote {out}")
    return 0


def _gp(result: dict[str, Any], quick: bool) -> None:
    try:
        from gifemo.bench import gp as gp_bench
    except ImportError:
        print("GP: gifemo.bench.gp not present, skipped")
    else:
        print("GP (gifemo.bench.gp)")
        result["gp"] = gp_bench.run(quick)
        for key, value in result["gp"].items():
            print(f"  {key}: {value}")
