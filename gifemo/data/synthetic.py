"""The generated default dataset: real animated GIFs with GIFGIF-like emotions and tags.

No real GIFGIF data can be downloaded here, so ``python -m gifemo synthetic --out DIR``
(:mod:`gifemo.apps.synthetic`) writes three datasets in the formats of DESIGN §2:

- ``DIR/gifgif/``      GIFGIF style: ``[mu, sigma]`` TrueSkill-like scores for all 17 emotions;
- ``DIR/gifgif_plus/`` GIFGIF+ style: binary ``emotions`` + ``cartoon`` + ``multi_scene``;
- ``DIR/candidates/``  unlabelled ``metadata.jsonl`` + hidden ground truth in ``truth.jsonl``
  (GIFGIF+ style, for checking a ranking of the candidates).

Generative model (one draw per GIF n; all randomness from ``numpy.random.default_rng([seed,
part])``, so each part is deterministic for a seed and independent of the others):

1. *Primary emotion* p_n, uniform over the 17 emotions, each with a prototype
   π_p ∈ R² in (valence, arousal) space (Russell's circumplex: the 8 ``POSITIVE_EMOTIONS`` have
   positive valence; anger/fear/surprise high arousal, sadness/guilt low arousal, …).
2. *Latent affect* (v_n, a_n) = π_p + N(0, 0.45² I): the part of the emotion that only the
   pixels reveal.
3. *Intensities* z_{n,e} = 1.0·⟨π̂_e, (v_n, a_n)⟩ + 2.5·[e = p_n] + N(0, 0.4²), π̂_e = π_e/‖π_e‖
   (``W_AFFECT``, ``W_PRIMARY``): emotions with similar prototypes co-vary, which gives the
   paper's two clusters; the primary emotion dominates.
4. *Scores*: with q_e the (1 − r_e) quantile of z_{·,e} (target positive rate r_e ∈ [0.10, 0.26]),
   y = 25 + 4·(z − q_e), σ = clip(LogNormal(log 2.2, 0.35), 0.8, 6), μ = clip(y + 3σ, 0.5, 49.5),
   so that y = μ − 3σ > 25 (a positive, DESIGN §2) for about r_e of the GIFs; 3 % of the
   non-positive entries stay unvoted at the prior (25, 25/3). GIFGIF+ labels are those
   positives (plus the highest-y emotion when none is positive).
5. *Tags* (Table 1 of the paper): with probability 0.75 one to three tags of p_n's Table-1 list
   (earlier, more frequent tags likelier), with probability 0.15 one tag of a random emotion's
   list (confusion), zero to two generic tags (tv, movies, reaction, …; "cartoons & comics" for
   cartoons) and zero to two noise tags from a Zipf-distributed pool (most fall under the
   0.5 % dictionary threshold). So ≈ 25 % of the GIFs carry no emotion tag, and Table 1's lists
   overlap within a cluster: tags tell the cluster, rarely the emotion.
6. *Pixels* (rendered by :mod:`gifemo.data.synthetic_render`) show (v, a) + N(0, 0.9² I)
   (``VISUAL_NOISE``) — information the tags lack, blurred —
   through strong, global, low-frequency cues that survive a randomly initialised C3D:
   background hue from valence (warm yellow-orange ↔ cool blue-violet) and brightness
   (positive brighter); a large blob whose brightness follows valence (light ↔ dark), whose
   shape follows valence (circle ↔ square), and whose size and speed grow with arousal (high
   arousal: a big blob sweeping the frame; low arousal: an almost static scene). Nuisances:
   gradient direction, a static texture for non-cartoons (flat colours + outlines for cartoons),
   a scene cut with a second palette for multi-scene GIFs, a blinking 2×2 corner mark that makes
   consecutive frames differ (so Pillow writes partial frames and never merges frames).
7. *Container*: sizes 64–200 px per side, frame counts 2 to ~100 skewed short (stratified bins
   so that the clip count is stable), per-GIF delays of 0 to 200 ms (some vary per frame),
   15 % with a transparent border, some with disposal 2.

**Null control** (``structure="independent"``, ``python -m gifemo synthetic --structure
independent``, ``data.synthetic_structure=independent``): the same GIFs, scores and noise, but
no shared emotion structure, to check that a multi-task model's advantage comes from the
clusters planted above and not from the method itself. Steps 1–3 and 5 become:

1'. *Emotions present* b_{n,e} ~ Bernoulli(r_e), independently per emotion (r_e ∈ [0.10, 0.26]
    as in step 4); the *primary* emotion p_n is one of the present ones, uniformly (any
    emotion when none is present).
2'. *Latent affect* (v_n, a_n) = ρ_p + N(0, 0.45² I) with prototypes ρ_e spread evenly on a
    circle of radius 0.85 in the order e·5 mod 17 (``RING``): no two-group arrangement.
3'. *Intensities* z_{n,e} = 2.5·b_{n,e} + N(0, 0.4²) (``W_PRIMARY``; no affect term), so the
    emotions are independent of one another.
5'. *Tags* as in step 5, but every emotion's Table-1 tags carry its name (``"happy
    (amusement)"``), so that no tag is shared by two emotions.

Idempotence: each part is built in a temporary folder, gets a ``.synthetic.json`` marker with
the generator version, seed and size, and is renamed into place; a part whose marker matches is
reused, one whose marker differs is replaced, and a folder without a marker is never touched.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from gifemo.data.clips import AllClips
from gifemo.data.synthetic_render import render_gif
from gifemo.data.tags import GENERIC_TAGS, TABLE1_TAGS
from gifemo.emotions import EMOTIONS, MU0, N_EMOTIONS, SIGMA0

VERSION = 2
MARKER = ".synthetic.json"
PARTS = ("gifgif", "gifgif_plus", "candidates")
STRUCTURES = ("clusters", "independent")  # the planted emotion structure; independent = null
_PART_ID = {p: i for i, p in enumerate(PARTS)}

W_AFFECT = 1.0  # weight of the (valence, arousal) projection in the intensities (step 3)
W_PRIMARY = 2.5  # weight of the primary-emotion indicator (step 3)
P_EMOTION_TAGS = 0.75  # probability that a GIF carries tags of its primary emotion (step 5)

# (valence, arousal) prototypes, EMOTIONS order
PROTOTYPES = np.array(
    [
        [0.8, 0.5],  # amusement
        [-0.7, 0.8],  # anger
        [-0.6, 0.1],  # contempt
        [0.7, -0.5],  # contentment
        [-0.7, 0.3],  # disgust
        [-0.4, 0.2],  # embarrassment
        [0.7, 0.9],  # excitement
        [-0.7, 0.9],  # fear
        [-0.6, -0.4],  # guilt
        [0.9, 0.4],  # happiness
        [0.8, 0.0],  # pleasure
        [0.6, 0.4],  # pride
        [0.5, -0.6],  # relief
        [-0.8, -0.6],  # sadness
        [0.7, -0.3],  # satisfaction
        [-0.6, -0.3],  # shame
        [0.0, 1.0],  # surprise
    ]
)


# Null control (structure="independent"): prototypes evenly on a circle, in the order e·5 mod 17
_RING_ANGLE = 2 * np.pi * ((5 * np.arange(N_EMOTIONS)) % N_EMOTIONS) / N_EMOTIONS
RING = 0.85 * np.stack([np.cos(_RING_ANGLE), np.sin(_RING_ANGLE)], axis=1)  # (17, 2)


@dataclass(frozen=True)
class Size:
    """How much to generate. ``bins``: (probability, min frames, max frames) strata."""

    n_gifgif: int = 250
    n_gifgif_plus: int = 200
    n_candidates: int = 200
    min_side: int = 64
    max_side: int = 200
    bins: tuple[tuple[float, int, int], ...] = (
        (0.80, 2, 16),
        (0.12, 17, 24),
        (0.06, 25, 48),
        (0.02, 49, 100),
    )

    def n(self, part: str) -> int:
        return {
            "gifgif": self.n_gifgif,
            "gifgif_plus": self.n_gifgif_plus,
            "candidates": self.n_candidates,
        }[part]


SIZES = {
    "default": Size(),
    "tiny": Size(n_gifgif=40, n_gifgif_plus=40, n_candidates=40, min_side=24, max_side=48,
                 bins=((0.85, 2, 12), (0.10, 17, 24), (0.05, 25, 32))),
    # docs/results.md: enough GIFGIF-style GIFs that every emotion's test set has >= 40
    # positives, each one clip long (2-16 frames) to keep CPU extraction short
    "table2": Size(n_gifgif=2500, n_gifgif_plus=200, n_candidates=200, min_side=48, max_side=96,
                   bins=((1.0, 2, 16),)),
}  # fmt: skip


def resolve_size(size: str | dict[str, Any] | Size) -> Size:
    """``"default"``, ``"tiny"``, a :class:`Size`, or a dict overriding the default's fields."""
    if isinstance(size, Size):
        return size
    if isinstance(size, str):
        if size not in SIZES:
            raise ValueError(
                f"unknown synthetic size {size!r}; expected one of {sorted(SIZES)} or a dict"
            )
        return SIZES[size]
    d = dict(size)
    base = SIZES[d.pop("base", "default")]
    unknown = set(d) - set(asdict(base))
    if unknown:
        raise ValueError(
            f"unknown synthetic size fields {sorted(unknown)}; expected {sorted(asdict(base))}"
        )
    if "bins" in d:
        d["bins"] = tuple(tuple(b) for b in d["bins"])
    return replace(base, **d)


def clip_count(n_frames: int, sampler: AllClips | None = None) -> int:
    """Number of clips of a GIF of ``n_frames`` under ``sampler`` (default: the paper's
    :class:`~gifemo.data.clips.AllClips`, 16 frames, stride 8, loop padding)."""
    return (sampler or AllClips()).count(n_frames)


# -- the latent model -------------------------------------------------------------------------


def _frame_counts(rng: np.random.Generator, n: int, size: Size) -> np.ndarray:
    probs = np.array([b[0] for b in size.bins], dtype=float)
    per_bin = np.floor(probs / probs.sum() * n).astype(int)
    per_bin[0] += n - per_bin.sum()
    out = []
    for k, (_, lo, hi) in zip(per_bin, size.bins, strict=True):
        u = rng.random(k) ** 1.5  # skewed towards the short end of each bin
        out.append(lo + np.floor(u * (hi - lo + 1)).astype(int))
    counts = np.concatenate(out)
    return counts[rng.permutation(n)]


def sample_latents(
    rng: np.random.Generator, n: int, structure: str = "clusters"
) -> dict[str, np.ndarray]:
    """Primary emotion, (valence, arousal), intensities z (n, 17) and scores (n, 17, 2).

    ``structure``: ``"clusters"`` (steps 1-3) or ``"independent"`` (the null control, 1'-3')."""
    if structure == "independent":
        rate = rng.uniform(0.10, 0.26, size=N_EMOTIONS)
        present = rng.random((n, N_EMOTIONS)) < rate
        pick = rng.random(n)
        primary = np.empty(n, dtype=np.int64)
        for k in range(n):
            cand = np.flatnonzero(present[k]) if present[k].any() else np.arange(N_EMOTIONS)
            primary[k] = cand[int(pick[k] * cand.size)]
        va = RING[primary] + rng.normal(0.0, 0.45, size=(n, 2))
        z = W_PRIMARY * present + rng.normal(0.0, 0.4, size=(n, N_EMOTIONS))
    elif structure == "clusters":
        primary = rng.integers(0, N_EMOTIONS, size=n)
        va = PROTOTYPES[primary] + rng.normal(0.0, 0.45, size=(n, 2))
        unit = PROTOTYPES / np.linalg.norm(PROTOTYPES, axis=1, keepdims=True)
        z = (
            W_AFFECT * va @ unit.T
            + W_PRIMARY * np.eye(N_EMOTIONS)[primary]
            + rng.normal(0.0, 0.4, size=(n, N_EMOTIONS))
        )
        rate = rng.uniform(0.10, 0.26, size=N_EMOTIONS)
    else:
        raise ValueError(f"synthetic structure must be one of {STRUCTURES}, got {structure!r}")
    q = np.array([np.quantile(z[:, e], 1.0 - rate[e]) for e in range(N_EMOTIONS)])
    sigma = np.clip(np.exp(rng.normal(math.log(2.2), 0.35, size=z.shape)), 0.8, 6.0)
    mu = np.clip(25.0 + 4.0 * (z - q) + 3.0 * sigma, 0.5, 49.5)
    mu, sigma = np.round(mu, 3), np.round(sigma, 3)
    unvoted = (mu - 3 * sigma <= MU0) & (rng.random(z.shape) < 0.03)
    mu[unvoted], sigma[unvoted] = MU0, round(SIGMA0, 3)
    return {"primary": primary, "va": va, "z": z, "scores": np.stack([mu, sigma], axis=-1)}


_NOISE_WORDS = (
    "celebrity",
    "show",
    "series",
    "film",
    "meme",
    "character",
    "scene",
    "season",
    "music",
    "star",
)


def _emotion_tags(emotion: str, private: bool) -> list[str]:
    """Emotion's non-generic Table-1 tags; ``private``: suffixed with its name (step 5')."""
    own = [t for t in TABLE1_TAGS[emotion] if t not in GENERIC_TAGS]
    return [f"{t} ({emotion})" for t in own] if private else own


def sample_tags(
    rng: np.random.Generator, primary: str, *, cartoon: bool, private: bool = False
) -> list[str]:
    """Tags of one GIF (step 5 of the module docstring; 5' with ``private``); a few are
    capitalised (raw Giphy tags)."""
    tags: list[str] = []
    own = _emotion_tags(primary, private)
    if rng.random() < P_EMOTION_TAGS:
        w = 1.0 / (1.0 + np.arange(len(own)))
        k = min(int(rng.integers(1, 4)), len(own))
        tags += [str(t) for t in rng.choice(own, size=k, replace=False, p=w / w.sum())]
    if rng.random() < 0.15:
        other = _emotion_tags(EMOTIONS[int(rng.integers(N_EMOTIONS))], private)
        tags.append(str(rng.choice(other)))
    if cartoon and rng.random() < 0.7:
        tags.append("cartoons & comics")
    tags += [str(t) for t in rng.choice(GENERIC_TAGS, size=int(rng.integers(0, 3)), replace=False)]
    for _ in range(int(rng.integers(0, 3))):
        j = min(int(rng.zipf(1.4)), 400)
        tags.append(f"{_NOISE_WORDS[j % len(_NOISE_WORDS)]} {j}")
    tags = list(dict.fromkeys(tags))
    return [t.title() if rng.random() < 0.1 else t for t in tags]


# -- parts ------------------------------------------------------------------------------------


def _gif_id(rng: np.random.Generator, seen: set[str]) -> str:
    alphabet = np.array(list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"))
    while (gid := "".join(rng.choice(alphabet, size=13))) in seen:
        pass
    seen.add(gid)
    return gid


def _build_part(tmp: Path, part: str, seed: int, size: Size, structure: str = "clusters") -> None:
    rng = np.random.default_rng([seed, _PART_ID[part], VERSION])
    n = size.n(part)
    lat = sample_latents(rng, n, structure)
    counts = _frame_counts(rng, n, size)
    cartoon = rng.random(n) < 0.3
    multi = rng.random(n) < 0.35
    (tmp / "gifs").mkdir(parents=True)
    rows: list[dict[str, Any]] = []
    truth: list[dict[str, Any]] = []
    seen: set[str] = set()
    for k in range(n):
        gid = _gif_id(rng, seen)
        h, w = (int(x) for x in rng.integers(size.min_side, size.max_side + 1, size=2))
        facts = render_gif(rng, tmp / "gifs" / f"{gid}.gif", va=lat["va"][k], n_frames=int(counts[k]),
                           h=h, w=w, cartoon=bool(cartoon[k]), multi_scene=bool(multi[k]))  # fmt: skip
        tags = sample_tags(rng, EMOTIONS[lat["primary"][k]], cartoon=bool(cartoon[k]),
                           private=structure == "independent")  # fmt: skip
        s = lat["scores"][k]
        y = s[:, 0] - 3 * s[:, 1]
        emos = [e for e, yy in zip(EMOTIONS, y, strict=True) if yy > MU0] or [
            EMOTIONS[int(np.argmax(y))]
        ]
        row: dict[str, Any] = {"id": gid, "file": f"gifs/{gid}.gif", "tags": tags}
        plus = {"emotions": emos, "cartoon": bool(cartoon[k]), "multi_scene": bool(multi[k])}
        if part == "gifgif":
            row["scores"] = {e: [float(s[i, 0]), float(s[i, 1])] for i, e in enumerate(EMOTIONS)}
        elif part == "gifgif_plus":
            row.update(plus)
        else:
            truth.append({**row, **plus})
        latent = {"primary": EMOTIONS[lat["primary"][k]], "valence": round(float(lat["va"][k, 0]), 4),
                  "arousal": round(float(lat["va"][k, 1]), 4)}  # fmt: skip
        row["synthetic"] = {**latent, **{f: facts[f] for f in ("n_frames", "height", "width")}}
        rows.append(row)
    (tmp / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if truth:
        (tmp / "truth.jsonl").write_text("".join(json.dumps(r) + "\n" for r in truth))


def _marker(part: str, seed: int, size: Size, structure: str = "clusters") -> dict[str, Any]:
    out = {
        "version": VERSION,
        "part": part,
        "seed": int(seed),
        "size": json.loads(json.dumps(asdict(size))),
    }
    if structure != "clusters":  # (markers of the default structure stay as they were)
        out["structure"] = structure
    return out


def _read_marker(path: Path) -> Any:
    try:
        return json.loads((path / MARKER).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def generate(out_dir: str | os.PathLike[str], *, seed: int = 0, size: str | dict[str, Any] | Size = "default",
             parts: Sequence[str] = PARTS, structure: str = "clusters") -> Path:  # fmt: skip
    """Generate (or reuse) the requested parts under ``out_dir``; returns ``out_dir`` resolved.
    ``structure``: ``"clusters"`` (default) or ``"independent"`` (the null control)."""
    out = Path(out_dir).expanduser().resolve()
    spec = resolve_size(size)
    if structure not in STRUCTURES:
        raise ValueError(f"synthetic structure must be one of {STRUCTURES}, got {structure!r}")
    bad = [p for p in parts if p not in PARTS]
    if bad:
        raise ValueError(f"unknown synthetic part {bad[0]!r}; expected one of {PARTS}")
    out.mkdir(parents=True, exist_ok=True)
    for part in parts:
        target, want = out / part, _marker(part, seed, spec, structure)
        if target.exists():
            have = _read_marker(target)
            if have == want:
                continue
            if have is None:
                raise FileExistsError(
                    f"{target} exists but is not a generated dataset (no {MARKER}); "
                    "remove it or choose another synthetic_dir"
                )
        tmp = Path(tempfile.mkdtemp(dir=out, prefix=f".{part}.tmp-"))
        try:
            _build_part(tmp, part, seed, spec, structure)
            (tmp / MARKER).write_text(json.dumps(want, indent=1))
            if _read_marker(target) == want:  # another process finished it meanwhile
                continue
            if target.exists():  # an outdated generation: move it aside, then replace
                old = Path(tempfile.mkdtemp(dir=out, prefix=f".{part}.old-"))
                os.replace(target, old / part)
                shutil.rmtree(old, ignore_errors=True)
            try:
                os.replace(tmp, target)
            except OSError:  # another process finished first: keep theirs when it matches
                if _read_marker(target) != want:
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def summary(out_dir: str | os.PathLike[str]) -> dict[str, dict[str, int]]:
    """GIF, frame and clip counts per generated part (from the metadata)."""
    res = {}
    for part in PARTS:
        meta = Path(out_dir) / part / "metadata.jsonl"
        if meta.is_file():
            frames = [
                json.loads(line)["synthetic"]["n_frames"] for line in meta.read_text().splitlines()
            ]
            res[part] = {
                "gifs": len(frames),
                "frames": sum(frames),
                "clips": sum(clip_count(f) for f in frames),
            }
    return res
