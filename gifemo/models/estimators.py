"""sklearn-style recognisers that train.py builds from ``conf/model/*.yaml`` (`_target_`).

Every estimator has ``fit(X, Y, mask, *, init=None) -> self`` with X (n, d) features,
Y (n, t) scores y = μ − 3σ and mask (n, t) bool (task i trains on rows ``mask[:, i]``);
``predict(X) -> (n, t)`` ranking scores (higher = more likely positive);
``get_params()`` / ``set_params(**p)`` (used by :func:`gifemo.eval.cv.clone`); and
``warm_start_ok`` (True when ``init`` — a fitted estimator of the same kind — may seed ``fit``).

* :class:`UnsortedBaseline` — Table 2's "Unsorted" row.
* :class:`MTLRegressor` — eqs. 1, 7, 8 through helper D's ``fit_mtl`` (Lasso, TraceNorm,
  ClusteredMTL, Ridge penalties; ``k="auto"`` picks k by silhouette, Fig. 6).
* :class:`GPRegressor` — eqs. 2–5 through helper G's ``ExactGP`` and ``rank_scores``.

Regularisation convention (DESIGN §6, decided in :mod:`gifemo.models.penalties`):
Σ_i Σ_{n ∈ train_i} (x_n·W[:, i] + b_i − y_{n,i})² + Ω(W) — the loss is **not** halved and ρ is
**not** divided by n, as in the paper; b is never penalised.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import silhouette_score
from threadpoolctl import threadpool_limits

from gifemo.models.penalties import Penalty, TraceNorm


def _np(a: Any) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().double().numpy()
    return np.asarray(a, dtype=np.float64)


def _check_fit_args(X: Any, Y: Any, mask: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    X, Y, mask = np.asarray(X), np.asarray(Y, dtype=np.float64), np.asarray(mask, dtype=bool)
    if X.ndim != 2 or Y.ndim != 2 or mask.shape != Y.shape or X.shape[0] != Y.shape[0]:
        raise ValueError(
            f"fit: need X (n, d), Y (n, t), mask (n, t); got {X.shape}, {Y.shape}, {mask.shape}"
        )
    if not mask.any(axis=0).all():
        raise ValueError(
            f"fit: tasks {np.flatnonzero(~mask.any(axis=0)).tolist()} have no training row"
        )
    return X, Y, mask


class _Params:
    _param_names: tuple[str, ...] = ()

    def get_params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self._param_names}

    def set_params(self, **params: Any) -> _Params:
        for k, v in params.items():
            if k not in self._param_names:
                raise ValueError(
                    f"{type(self).__name__} has no parameter {k!r} ({self._param_names})"
                )
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"


class UnsortedBaseline(_Params):
    """Candidates checked in no particular order (Table 2, "Unsorted").

    ``mode="constant"`` (default) scores every GIF 0: all GIFs tie, so the single cut of the
    ranking has precision = positive rate exactly, AUC = rate and Ñ = N_p / rate — the
    *expected* value of a random order, with no sampling noise. ``mode="random"`` draws
    U(0, 1) scores from ``numpy.random.default_rng(seed)`` (one random order; its metrics
    fluctuate around the same values).
    """

    warm_start_ok = False
    _param_names = ("mode", "seed")

    def __init__(self, *, mode: str = "constant", seed: int = 0) -> None:
        if mode not in ("constant", "random"):
            raise ValueError(f"UnsortedBaseline: mode must be 'constant' or 'random', got {mode!r}")
        self.mode, self.seed = mode, seed

    def fit(self, X: Any, Y: Any, mask: Any, **_: Any) -> UnsortedBaseline:
        Y = _check_fit_args(X, Y, mask)[1]
        self.n_tasks_ = Y.shape[1]
        return self

    def predict(self, X: Any) -> np.ndarray:
        shape = np.shape(X)
        if len(shape) != 2:
            raise ValueError(f"UnsortedBaseline.predict: expected X (n, d), got {shape}")
        n = shape[0]
        if self.mode == "constant":
            return np.zeros((n, self.n_tasks_))
        return np.random.default_rng(self.seed).random((n, self.n_tasks_))

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {
            "kind": "unsorted",
            "mode": self.mode,
            "seed": self.seed,
            "n_tasks": self.n_tasks_,
        }, {}


def silhouette_by_k(
    W: np.ndarray, ks: Sequence[int] | None = None, *, seed: int = 0, n_init: int = 10
) -> tuple[dict[int, float], dict[int, np.ndarray]]:
    """Silhouette of k-means on the t columns of W (d, t) for each k (default 2 … t−1, Fig. 6a).

    Each column (one task's model) is a point in R^d; ``KMeans(k, n_init, random_state=seed)``
    partitions them and ``sklearn.metrics.silhouette_score`` (Euclidean) rates the partition.
    Returns ({k: silhouette}, {k: labels (t,)}).
    """
    P = _np(W).T  # (t, d)
    t = P.shape[0]
    ks = list(range(2, t)) if ks is None else [int(k) for k in ks]
    if t < 3 or any(not 2 <= k < t for k in ks):
        raise ValueError(f"silhouette needs 2 <= k <= t-1 with t = {t} tasks, got ks = {ks}")
    scores, labels = {}, {}
    for k in ks:
        with threadpool_limits(1):  # t points: BLAS threads only cost (4x faster on 2 cores)
            lab = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit_predict(P)
        labels[k] = lab
        # all columns equal (e.g. W = 0) leave fewer distinct clusters than k: silhouette undefined
        scores[k] = float(silhouette_score(P, lab)) if len(set(lab)) > 1 else float("nan")
    return scores, labels


def choose_k(scores: dict[int, float]) -> int:
    """The k of highest silhouette (smallest k on ties; 2 when every value is NaN)."""
    finite = {k: v for k, v in scores.items() if np.isfinite(v)}
    if not finite:
        return min(scores) if scores else 2
    best = max(finite.values())
    return min(k for k, v in finite.items() if v == best)


class MTLRegressor(_Params):
    """Multi-task least squares + penalty, solved by ``gifemo.models.mtl.fit_mtl``.

    ``penalty``: a callable returning a :class:`Penalty` — a class such as
    ``gifemo.models.penalties.ClusteredMTL`` or a ``functools.partial`` (Hydra ``_partial_:
    true``) — called at fit time as ``penalty(**penalty_params)``; or a ready Penalty instance
    (then ``penalty_params`` must be empty). ``penalty_params`` are the penalty's keyword
    arguments (``rho`` / ``rho1``, ``rho2``, ``k``) and are ordinary estimator parameters, so a
    grid or a sweep sets them by name: ``{"rho1": [0.1, 1, 10]}``.

    ``k="auto"`` (clustered MTL): first fit a trace-norm model ``TraceNorm(k_trace_rho)`` on the
    same rows (``k_trace_rho`` defaults to ``rho1``; give it the trace model's CV-chosen ρ to
    follow the paper), run :func:`silhouette_by_k` on its W and use :func:`choose_k`'s k.

    ``precondition``: passed to :func:`fit_mtl` for smooth penalties (ridge, clustered MTL):
    the rank of its low-rank preconditioner, ``"auto"`` or 0 (off); lasso and trace ignore it.

    Fitted: ``W_`` (d, t), ``b_`` (t,), ``k_`` (the k used, or None), ``silhouette_``
    ({k: score} when k was chosen), ``W_trace_`` (the trace-norm W used for it),
    ``objective_``, ``n_iter_``, ``converged_`` (a fit that stops at ``max_iter`` also warns,
    ``sklearn.exceptions.ConvergenceWarning``, as sklearn's solvers do).
    """

    warm_start_ok = True
    _fixed = ("penalty", "tol", "max_iter", "device", "k_trace_rho", "seed", "precondition")

    def __init__(
        self,
        penalty: Callable[..., Penalty] | Penalty,
        *,
        tol: float = 1e-6,
        max_iter: int = 20_000,
        device: str | None = None,
        k_trace_rho: float | None = None,
        seed: int = 0,
        precondition: int | str = "auto",
        **penalty_params: Any,
    ) -> None:
        if isinstance(penalty, Penalty) and penalty_params:
            raise ValueError(f"MTLRegressor: got a built {penalty!r} and also {penalty_params}")
        self.penalty, self.tol, self.max_iter, self.device = penalty, tol, max_iter, device
        self.k_trace_rho, self.seed, self.precondition = k_trace_rho, seed, precondition
        self.penalty_params = dict(penalty_params)

    @property
    def _param_names(self) -> tuple[str, ...]:  # type: ignore[override]
        return self._fixed + tuple(self.penalty_params)

    def get_params(self) -> dict[str, Any]:
        return {**{k: getattr(self, k) for k in self._fixed}, **self.penalty_params}

    def set_params(self, **params: Any) -> MTLRegressor:
        for k, v in params.items():
            if k in self._fixed:
                setattr(self, k, v)
            elif isinstance(self.penalty, Penalty):
                raise ValueError(f"MTLRegressor: cannot set {k!r} on the built {self.penalty!r}")
            else:
                self.penalty_params[k] = v
        return self

    def _solve(
        self, X: np.ndarray, Y: np.ndarray, mask: np.ndarray, penalty: Penalty, init: Any
    ) -> Any:
        from gifemo.models.mtl import fit_mtl

        kw: dict[str, Any] = {"tol": self.tol, "max_iter": self.max_iter, "device": self.device}
        if penalty.is_smooth:  # the preconditioner applies to smooth penalties only
            kw["precondition"] = self.precondition
        if (
            init is not None
            and getattr(init, "W_", None) is not None
            and init.W_.shape == (X.shape[1], Y.shape[1])
        ):
            kw.update(W0=torch.as_tensor(init.W_), b0=torch.as_tensor(init.b_))
        sol = fit_mtl(
            torch.as_tensor(X, dtype=torch.float64),
            torch.as_tensor(Y),
            torch.as_tensor(mask),
            penalty,
            **kw,
        )
        if not sol.converged:
            warnings.warn(
                f"MTLRegressor: {penalty!r} did not converge in {sol.n_iter} iterations "
                f"(optimality {sol.optimality:.3g} > tol {self.tol:g}); raise max_iter",
                ConvergenceWarning,
                stacklevel=3,
            )
        return sol

    def build_penalty(self, k: float | None = None) -> Penalty:
        """The penalty of this configuration (with ``k`` substituted when given)."""
        if isinstance(self.penalty, Penalty):
            return self.penalty
        params = dict(self.penalty_params)
        if k is not None:
            params["k"] = k
        return self.penalty(**params)

    def fit(self, X: Any, Y: Any, mask: Any, *, init: Any = None) -> MTLRegressor:
        X, Y, mask = _check_fit_args(X, Y, mask)
        self.k_, self.silhouette_, self.W_trace_ = None, None, None
        k = self.penalty_params.get("k")
        if isinstance(k, str):
            if k != "auto":
                raise ValueError(f"MTLRegressor: k must be a number or 'auto', got {k!r}")
            rho = (
                self.k_trace_rho
                if self.k_trace_rho is not None
                else self.penalty_params.get("rho1")
            )
            if rho is None:
                raise ValueError("MTLRegressor: k='auto' needs k_trace_rho (or rho1)")
            trace = self._solve(X, Y, mask, TraceNorm(float(rho)), init)
            self.W_trace_ = _np(trace.W)
            self.silhouette_, _ = silhouette_by_k(self.W_trace_, seed=self.seed)
            self.k_ = choose_k(self.silhouette_)
            penalty = self.build_penalty(self.k_)
        else:
            self.k_ = None if k is None else k
            penalty = self.build_penalty()
        sol = self._solve(X, Y, mask, penalty, init)
        self.W_, self.b_ = _np(sol.W), _np(sol.b)
        self.objective_ = float(sol.objective)
        self.n_iter_ = int(sol.n_iter)
        self.converged_ = bool(sol.converged)
        self.penalty_ = penalty
        return self

    def predict(self, X: Any) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.W_.shape[0]:
            raise ValueError(
                f"MTLRegressor.predict: expected X (n, {self.W_.shape[0]}), got {X.shape}"
            )
        return X @ self.W_ + self.b_  # (n, t)

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta = {
            "kind": "linear",
            "penalty": repr(self.penalty_),
            "k": self.k_,
            "objective": self.objective_,
            "n_iter": self.n_iter_,
            "converged": self.converged_,
        }
        return meta, {"W": self.W_, "b": self.b_}


class GPRegressor(_Params):
    """One exact GP per task (eqs. 2–4, helper G's ``ExactGP``), ranked by ``rank_scores``.

    ``rank_rule``: passed to ``gifemo.models.gp.rank_scores`` (``"eq5"`` is the paper's
    exp(−(50 − μ)/(2V)); None uses G's documented default). ``gp_params`` go to ``ExactGP``.
    """

    warm_start_ok = False

    def __init__(self, *, rank_rule: str | None = None, **gp_params: Any) -> None:
        self.rank_rule, self.gp_params = rank_rule, dict(gp_params)

    @property
    def _param_names(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("rank_rule", *self.gp_params)

    def get_params(self) -> dict[str, Any]:
        return {"rank_rule": self.rank_rule, **self.gp_params}

    def set_params(self, **params: Any) -> GPRegressor:
        for k, v in params.items():
            if k == "rank_rule":
                self.rank_rule = v
            else:
                self.gp_params[k] = v
        return self

    def fit(self, X: Any, Y: Any, mask: Any, **_: Any) -> GPRegressor:
        from gifemo.models.gp import ExactGP

        X, Y, mask = _check_fit_args(X, Y, mask)
        union = np.flatnonzero(mask.any(axis=1))
        # kept for saving: an exact GP's posterior needs its training rows (to_state)
        self.X_fit_, self.mask_fit_ = np.asarray(X[union], dtype=np.float64), mask[union]
        self.Y_fit_ = np.where(self.mask_fit_, Y[union], np.nan)
        self.gp_ = ExactGP(**self.gp_params).fit(self.X_fit_, self.Y_fit_, self.mask_fit_)
        return self

    def predict(self, X: Any) -> np.ndarray:
        from gifemo.models.gp import rank_scores

        mean, var = self.gp_.predict(np.asarray(X, dtype=np.float64))
        kw: dict[str, Any] = {} if self.rank_rule is None else {"rule": self.rank_rule}
        return _np(rank_scores(mean, var, **kw))

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Hyper-parameters + training rows; :meth:`from_state` refits with them fixed (exact)."""
        hp = [
            {k: float(h[k]) for k in ("signal_variance", "lengthscale", "noise_variance")}
            for h in self.gp_.hyperparams_
        ]
        meta = {"kind": "gp", "rank_rule": self.rank_rule, "hyperparams": hp}
        return meta, {"X": self.X_fit_, "Y": self.Y_fit_, "mask": self.mask_fit_}

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> GPRegressor:
        self = cls(rank_rule=meta["rank_rule"], optimize=False, init=meta["hyperparams"])
        return self.fit(arrays["X"], arrays["Y"], np.asarray(arrays["mask"], dtype=bool))
