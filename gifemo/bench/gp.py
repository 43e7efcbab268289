"""GP benchmark: ``ExactGP`` at GIFGIF size, and one task against scikit-learn's GP.

``python -m gifemo.bench.gp [--quick] [--out .bench/gp.json]``; helper D's solvers benchmark
calls :func:`run` and prints its result as ``key: value`` lines.

Data (seeded, made here): n GIFs with d non-negative, row-normalised features (a ReLU of a
rank-8 latent signal plus noise, like C3D fc6 + tag blocks) and t = 17 scores
y = 25 + 6·tanh(z·a_i) + 2·ε around the positive cut. Masks follow the paper's protocol as the
solvers benchmark does: per task a third of a random half of the rows is held out, so each task
trains on ~5/6 of the rows (≈ 5000 of 6000 at GIFGIF size).

Rows of the result:
* ``gifgif_*`` — ours on all 17 tasks at n = 6000, d = 4235 (quick: n = 600, d = 200): fit
  seconds (with the shared distance matrix's share), L-BFGS evaluations per task, predict
  seconds for ``n_test`` new rows (mean + latent variance, and mean only), peak traced memory.
* ``peer_*`` — one task at ``n_peer`` rows (1500; quick 300), same d and kernel
  (ConstantKernel·RBF + WhiteKernel, same initial values, L-BFGS-B, no restarts): scikit-learn's
  fit time and log marginal likelihood next to ours, and the ratio sklearn / ours.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_info

from gifemo.models.gp import ExactGP

FULL = {"n": 6000, "d": 4235, "t": 17, "n_test": 2000, "n_peer": 1500}
QUICK = {"n": 600, "d": 200, "t": 17, "n_test": 200, "n_peer": 300}


def make_problem(
    n: int, d: int, t: int, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """X (n, d) float32 (rows of unit norm), Y (n, t) float64, mask (n, t) bool (see module doc)."""
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, 8))  # latent signal
    X = np.maximum(
        Z @ rng.standard_normal((8, d)) / np.sqrt(8) + 0.3 * rng.standard_normal((n, d)), 0
    )
    X /= np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    Y = 25 + 6 * np.tanh(Z @ rng.standard_normal((8, t)) / 2) + 2 * rng.standard_normal((n, t))
    mask = np.ones((n, t), dtype=bool)
    for i in range(t):
        pool = rng.permutation(n)[: n // 2]
        mask[pool[: len(pool) // 3], i] = False
    return X.astype(np.float32), Y, mask


def _peer(X: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """One task: scikit-learn's GaussianProcessRegressor vs ExactGP from the same start."""
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, WhiteKernel
    from sklearn.gaussian_process.kernels import ConstantKernel as C

    from gifemo.models.gp_lml import _blas_threads, sq_distances

    X64, yc = X.astype(np.float64), y - y.mean()
    var = float(yc.var())
    ell = float(np.sqrt(np.median(sq_distances(X64)[np.triu_indices(len(y), 1)])))
    kernel = C(var, (1e-5 * var, 1e5 * var)) * RBF(ell, (1e-3 * ell, 1e3 * ell))
    kernel += WhiteKernel(0.1 * var, (1e-6 * var, 1e3 * var))
    start = time.perf_counter()
    with _blas_threads(len(y)):  # the thread policy ExactGP applies at this size
        sk = GaussianProcessRegressor(kernel, alpha=0.0, n_restarts_optimizer=0).fit(X64, yc)
    sk_s = time.perf_counter() - start
    start = time.perf_counter()
    ours = ExactGP().fit(X, y[:, None], np.ones((len(y), 1), dtype=bool))
    ours_s = time.perf_counter() - start
    return {
        "peer_n": len(y),
        "peer_sklearn_fit_s": round(sk_s, 3),
        "peer_sklearn_lml": round(float(sk.log_marginal_likelihood_value_), 4),
        "peer_ours_fit_s": round(ours_s, 3),
        "peer_ours_lml": round(ours.log_marginal_likelihood(0), 4),
        "peer_ratio_sklearn_over_ours": round(sk_s / ours_s, 2),
    }


def run(quick: bool, *, size: dict[str, int] | None = None) -> dict[str, Any]:
    """Measure the GP at GIFGIF size (quick: tiny) and against scikit-learn; flat dict of rows.

    ``size`` (keys of :data:`FULL`) overrides both, for tests.
    """
    size = size or (QUICK if quick else FULL)
    X, Y, mask = make_problem(size["n"], size["d"], size["t"])
    X_test, _, _ = make_problem(size["n_test"], size["d"], size["t"], seed=1)
    out: dict[str, Any] = {
        "size": f"n={size['n']} d={size['d']} t={size['t']} rows/task≈{int(mask.sum(0).mean())}",
        "blas_threads": max((p["num_threads"] for p in threadpool_info()), default=0),
    }
    tracemalloc.start()
    start = time.perf_counter()
    gp = ExactGP().fit(X, Y, mask)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    gp.predict(X_test)
    predict_s = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    start = time.perf_counter()
    gp.predict_mean(X_test)
    predict_mean_s = time.perf_counter() - start
    evals = [hp["n_evals_full"] for hp in gp.hyperparams_]
    out.update(
        gifgif_fit_s=round(fit_s, 2),
        gifgif_fit_distances_s=round(gp.timings_["distances"], 2),
        gifgif_fit_s_per_task=round(float(np.mean(gp.timings_["tasks"])), 2),
        gifgif_full_evals_per_task=f"mean {np.mean(evals):.1f}, max {max(evals)} (all rows)",
        gifgif_predict_s=round(predict_s, 2),
        gifgif_predict_mean_only_s=round(predict_mean_s, 2),
        gifgif_n_test=size["n_test"],
        gifgif_peak_traced_mb=round(peak / 2**20, 1),
        process_max_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    )
    n_peer = size["n_peer"]
    out.update(_peer(X[:n_peer], Y[:n_peer, 0]))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gifemo.bench.gp", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="n=600, d=200: a smoke test")
    parser.add_argument("--out", default=".bench/gp.json")
    args = parser.parse_args(argv or [])
    result = run(args.quick)
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
