"""Generated data for the screening simulator: a GIFGIF-like training set and a Giphy-like
candidate pool found by tag search, as feature matrices (issue 15).

Extracting C3D features of tens of thousands of rendered GIFs is out of reach on 2 CPU cores,
so the simulator works in **feature space**, drawn from the same label model as the generated
dataset (:mod:`gifemo.data.synthetic`, steps 1–6 of its docstring):

1. *Latents* (GIFGIF and Giphy alike): primary emotion p, affect (v, a) = π_p + N(0, 0.45²I),
   intensities z_e = W_AFFECT·⟨π̂_e, (v, a)⟩ + W_PRIMARY·[e = p] + N(0, 0.4²).
2. *The concept "positive"* is fixed once, on GIFGIF: q_e is the (1 − r_e) quantile of z_e over
   the GIFGIF rows (r_e ~ U(0.10, 0.26), as the generator); a GIF is a positive of e iff
   z_e > q_e. GIFGIF rows get TrueSkill-like scores y = μ − 3σ = 25 + 4(z − q) with the
   generator's σ, μ clipping and 3 % unvoted rows (y = 0); candidates get the binary truth
   z > q only, hidden in :class:`ScreeningData` and revealed by the simulator's oracle.
3. *Visual features* ("what a random C3D sees"): the pixels show (v, a) + N(0, VISUAL_NOISE²)
   plus nuisances (cartoon, multi-scene, three style variables); a fixed random ReLU layer
   maps these 7 numbers to ``d_visual`` non-negative features (like fc6), L2-normalised.
4. *Tags*: with probability ``p_emotion_tags`` one to three of p's Table-1 tags, with
   probability ``p_confusion`` one tag of a random emotion, 0–2 generic and 0–2 noise tags;
   bag of words over the dictionary fitted on the GIFGIF rows (0.5 % threshold), L2-normalised.
   Features = [visual | tags] (d = d_visual + V).
5. *Shift* (Giphy is not GIFGIF): the primary emotions follow a Dirichlet(``prior_concentration``)
   draw instead of the uniform; uploaders tag more and more loosely (``pool_p_emotion_tags``,
   ``pool_p_confusion``); the visual cue is offset (``visual_offset`` in (v, a)) and noisier
   (``pool_visual_noise``); more cartoons.
6. *Tag search* (paper §3.2): emotion e's candidates are the population GIFs carrying one of e's
   10 most frequent non-generic tags among its GIFGIF positives
   (:func:`gifemo.eval.protocol.top_tags`), at most ``n_all`` of them (a random subset, like a
   search capped at its page limit). Candidates of several emotions appear once in the pool.
   ``n_p`` (the quota) is ``n_all``·3000/50000 by default, the paper's N_p/N_all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gifemo.data.synthetic import PROTOTYPES, W_AFFECT, W_PRIMARY
from gifemo.data.synthetic_render import VISUAL_NOISE
from gifemo.data.tags import GENERIC_TAGS, TABLE1_TAGS, TagDictionary
from gifemo.emotions import EMOTIONS, MU0, N_EMOTIONS, SIGMA0
from gifemo.eval.metrics import N_ALL, N_P
from gifemo.eval.protocol import top_tags

_N_NUISANCE = 5  # cartoon, multi-scene, three style variables


@dataclass(frozen=True)
class WorldSpec:
    """Sizes and shift of the generated screening data (module docstring).

    The defaults are the paper's proportions scaled by 0.03 (:func:`paper_scale`): 6,000 GIFGIF
    rows → 180, 50,000 candidates per emotion → 1,500, N_p = 3,000 → 90, 4,096 visual
    dimensions → 123. Keeping the ratios matters: the value of the consensus labels depends on
    how many there are next to the GIFGIF rows, and on d / n.
    """

    n_train: int = 180
    n_population: int = 16500
    n_all: int = 1500
    n_p: int | None = 90  # None: round(n_all · N_P / N_ALL)
    d_visual: int = 123
    p_emotion_tags: float = 0.75
    p_confusion: float = 0.15
    pool_p_emotion_tags: float = 0.85
    pool_p_confusion: float = 0.3
    prior_concentration: float = 5.0
    visual_offset: tuple[float, float] = (0.3, -0.2)
    pool_visual_noise: float = 1.0
    cartoon_rate: float = 0.3
    pool_cartoon_rate: float = 0.5

    @property
    def quota(self) -> int:
        return self.n_p if self.n_p is not None else max(1, round(self.n_all * N_P / N_ALL))


def paper_scale(scale: float, **changes: Any) -> WorldSpec:
    """The paper's sizes × ``scale``: 6,000 GIFGIF rows, 50,000 candidates and N_p = 3,000 per
    emotion, 4,096 visual dimensions; a Giphy population 11× the per-emotion pool."""
    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1], got {scale}")
    base = {
        "n_train": max(20, round(6000 * scale)),
        "n_all": max(20, round(N_ALL * scale)),
        "n_p": max(1, round(N_P * scale)),
        "d_visual": max(8, round(4096 * scale)),
        "n_population": max(200, round(11 * N_ALL * scale)),
    }
    return WorldSpec(**{**base, **changes})


QUICK = paper_scale(0.015)


@dataclass
class ScreeningData:
    """Training rows (GIFGIF-like, continuous y) and a candidate pool with hidden labels.

    ``candidates[i]``: pool row indices found for emotion i, in search order. ``truth`` is the
    pool's hidden (m, t) labels: only :class:`gifemo.active.simulate.Oracle` should read it.
    """

    X_train: np.ndarray  # (n, d)
    Y_train: np.ndarray  # (n, t) y = μ − 3σ
    mask_train: np.ndarray  # (n, t) bool
    X_pool: np.ndarray  # (m, d)
    pool_ids: list[str]
    truth: np.ndarray = field(repr=False)  # (m, t) bool — hidden
    candidates: tuple[np.ndarray, ...] = ()
    n_p: int = 1
    top_tags: tuple[tuple[str, ...], ...] = ()
    emotions: tuple[str, ...] = EMOTIONS

    def summary(self) -> dict[str, Any]:
        rates = [float(self.truth[c, i].mean()) for i, c in enumerate(self.candidates)]
        return {
            "n_train": int(self.X_train.shape[0]),
            "d": int(self.X_train.shape[1]),
            "n_pool": int(self.X_pool.shape[0]),
            "n_p": int(self.n_p),
            "candidates_per_emotion": [int(c.size) for c in self.candidates],
            "positive_rate_per_emotion": rates,
            "positive_rate_mean": float(np.mean(rates)),
            "train_positive_rate_mean": float((self.Y_train > MU0).mean()),
        }


def _latents(rng: np.random.Generator, n: int, prior: np.ndarray) -> tuple[np.ndarray, ...]:
    primary = rng.choice(N_EMOTIONS, size=n, p=prior)
    va = PROTOTYPES[primary] + rng.normal(0.0, 0.45, size=(n, 2))
    unit = PROTOTYPES / np.linalg.norm(PROTOTYPES, axis=1, keepdims=True)
    z = (
        W_AFFECT * va @ unit.T
        + W_PRIMARY * np.eye(N_EMOTIONS)[primary]
        + rng.normal(0.0, 0.4, size=(n, N_EMOTIONS))
    )
    return primary, va, z


def _tags(
    rng: np.random.Generator, primary: np.ndarray, cartoon: np.ndarray, p_own: float, p_conf: float
) -> list[list[str]]:
    out = []
    for p, c in zip(primary, cartoon, strict=True):
        own = [t for t in TABLE1_TAGS[EMOTIONS[int(p)]] if t not in GENERIC_TAGS]
        tags: list[str] = []
        if rng.random() < p_own:
            w = 1.0 / (1.0 + np.arange(len(own)))
            k = min(int(rng.integers(1, 4)), len(own))
            tags += [str(t) for t in rng.choice(own, size=k, replace=False, p=w / w.sum())]
        if rng.random() < p_conf:
            e = EMOTIONS[int(rng.integers(N_EMOTIONS))]
            tags.append(str(rng.choice([t for t in TABLE1_TAGS[e] if t not in GENERIC_TAGS])))
        if c and rng.random() < 0.7:
            tags.append("cartoons & comics")
        k = int(rng.integers(0, 3))
        tags += [str(t) for t in rng.choice(GENERIC_TAGS, size=k, replace=False)]
        tags += [f"noise {min(int(rng.zipf(1.4)), 400)}" for _ in range(int(rng.integers(0, 3)))]
        out.append(list(dict.fromkeys(tags)))
    return out


class _VisualLayer:
    """A fixed random ReLU layer: 7 pixel-level numbers → ``d`` non-negative features."""

    def __init__(self, rng: np.random.Generator, d: int) -> None:
        self.G = rng.normal(0.0, 1.0, size=(2 + _N_NUISANCE, d))
        self.b = rng.normal(0.0, 1.0, size=d)

    def __call__(
        self, rng: np.random.Generator, va: np.ndarray, cartoon: np.ndarray, noise: float,
        offset: tuple[float, float] = (0.0, 0.0),
    ) -> np.ndarray:  # fmt: skip
        n = va.shape[0]
        seen = va + np.asarray(offset) + rng.normal(0.0, noise, size=(n, 2))
        nuis = np.c_[cartoon.astype(float), rng.random(n) < 0.35, rng.normal(size=(n, 3))]
        H = np.maximum(np.c_[seen, nuis] @ self.G + self.b, 0.0)  # (n, d)
        return H / np.maximum(np.linalg.norm(H, axis=1, keepdims=True), 1e-12)


def make_screening_data(spec: WorldSpec = WorldSpec(), *, seed: int = 0) -> ScreeningData:
    """Draw one training set + candidate pool (module docstring); deterministic per seed."""
    rng = np.random.default_rng([seed, 15])
    t = N_EMOTIONS
    layer = _VisualLayer(rng, spec.d_visual)

    # GIFGIF: uniform primaries, the concept q fixed on it, TrueSkill-like y
    uniform = np.full(t, 1.0 / t)
    p_tr, va_tr, z_tr = _latents(rng, spec.n_train, uniform)
    rate = rng.uniform(0.10, 0.26, size=t)
    q = np.array([np.quantile(z_tr[:, e], 1.0 - rate[e]) for e in range(t)])
    sigma = np.clip(np.exp(rng.normal(math.log(2.2), 0.35, size=z_tr.shape)), 0.8, 6.0)
    mu = np.clip(25.0 + 4.0 * (z_tr - q) + 3.0 * sigma, 0.5, 49.5)
    unvoted = (mu - 3 * sigma <= MU0) & (rng.random(z_tr.shape) < 0.03)
    mu[unvoted], sigma[unvoted] = MU0, SIGMA0
    Y = mu - 3.0 * sigma
    cart_tr = rng.random(spec.n_train) < spec.cartoon_rate
    tags_tr = _tags(rng, p_tr, cart_tr, spec.p_emotion_tags, spec.p_confusion)
    dictionary = TagDictionary().fit(tags_tr)
    X_tr = np.c_[layer(rng, va_tr, cart_tr, VISUAL_NOISE), dictionary.transform(tags_tr)]

    # Giphy population: shifted primaries, tagging and pixels
    prior = rng.dirichlet(np.full(t, spec.prior_concentration))
    p_po, va_po, z_po = _latents(rng, spec.n_population, prior)
    cart_po = rng.random(spec.n_population) < spec.pool_cartoon_rate
    tags_po = _tags(rng, p_po, cart_po, spec.pool_p_emotion_tags, spec.pool_p_confusion)
    truth_po = z_po > q

    # tag search per emotion with each emotion's top tags among its GIFGIF positives
    tops, found = [], []
    tag_sets = [set(x) for x in tags_po]
    for e in range(t):
        top = top_tags(tags_tr, np.flatnonzero(Y[:, e] > MU0))
        hits = np.array([i for i, s in enumerate(tag_sets) if s & set(top)], dtype=np.int64)
        if hits.size > spec.n_all:
            hits = rng.choice(hits, size=spec.n_all, replace=False)
        else:
            hits = rng.permutation(hits)
        tops.append(top)
        found.append(hits)
    used = np.unique(np.concatenate(found))
    where = {int(r): j for j, r in enumerate(used)}
    X_po = np.c_[
        layer(rng, va_po[used], cart_po[used], spec.pool_visual_noise, spec.visual_offset),
        dictionary.transform([tags_po[r] for r in used]),
    ]
    return ScreeningData(
        X_train=X_tr,
        Y_train=Y,
        mask_train=np.ones_like(Y, dtype=bool),
        X_pool=X_po,
        pool_ids=[f"g{seed}-{int(r):06d}" for r in used],
        truth=truth_po[used],
        candidates=tuple(np.array([where[int(r)] for r in h], dtype=np.int64) for h in found),
        n_p=spec.quota,
        top_tags=tuple(tops),
    )
