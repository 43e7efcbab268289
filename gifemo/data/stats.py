"""Dataset statistics of the paper's §4: Fig. 9 (frame counts, mean frame delays) and Fig. 10
(emotion overlap rates, cartoon and multi-scene shares), as numbers and as PNG figures.

Inputs are per-GIF frame counts and mean frame delays — the feature store records them
(``FeatureStore.n_frames``, ``mean_delay_ms``), :func:`gif_timing` reads them from the GIF files
otherwise — and a :class:`~gifemo.data.metadata.GifDataset` for the labels and flags.

Overlap rate (Fig. 10a): with B (n, 17) the binary labels (GIFGIF+ emotions, or the positives
y > 25 of a GIFGIF dataset),

    R[i, j] = |{n : B[n, i] ∧ B[n, j]}| / |{n : B[n, i]}|,

the share of the GIFs of row emotion i that also belong to column emotion j (R[i, i] = 1;
a row with no GIF is NaN). Shares (Fig. 10b, c): the fraction of GIFs whose ``cartoon`` /
``multi_scene`` flag is true, among the GIFs that have the flag.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gifemo.data.metadata import GifDataset, GifRecord
from gifemo.emotions import EMOTIONS

log = logging.getLogger(__name__)


# -- Fig. 9 -----------------------------------------------------------------------------------


def histogram(
    values: np.ndarray, *, bins: int | Sequence[float] = 30
) -> tuple[np.ndarray, np.ndarray]:
    """``(counts (B,), edges (B+1,))`` of the finite values; the last bin includes its right edge."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        raise ValueError("histogram of no finite values")
    counts, edges = np.histogram(v, bins=bins)
    return counts.astype(np.int64), edges


def timing_summary(n_frames: np.ndarray, mean_delay_ms: np.ndarray) -> dict[str, float]:
    """Fig. 9's headline numbers: frame-count range and the ratio of the highest to the lowest
    frame rate (1000 / mean delay, over GIFs with a positive mean delay)."""
    n = np.asarray(n_frames, dtype=np.float64)
    d = np.asarray(mean_delay_ms, dtype=np.float64)
    ok = np.isfinite(n) & (n > 0)
    pos = d[np.isfinite(d) & (d > 0)]
    return {
        "gifs": int(ok.sum()),
        "min_frames": float(n[ok].min()),
        "max_frames": float(n[ok].max()),
        "median_frames": float(np.median(n[ok])),
        "median_delay_ms": float(np.median(pos)) if pos.size else float("nan"),
        "fps_ratio": float(pos.max() / pos.min()) if pos.size else float("nan"),
        "zero_delay_gifs": int(np.sum(np.isfinite(d) & (d <= 0))),
    }


def gif_timing(
    records: Sequence[GifRecord], *, read_kwargs: dict[str, Any] | None = None
) -> tuple[np.ndarray, np.ndarray, list[dict[str, str]]]:
    """Frame counts (n,) and mean delays in ms (n,) decoded with :func:`gifemo.data.gif.read_gif`.

    A GIF that fails to decode gets NaN in both and a ``{"id", "path", "reason"}`` failure entry.
    """
    from gifemo.data.gif import GifDecodeError, read_gif

    n = np.full(len(records), np.nan)
    d = np.full(len(records), np.nan)
    failures = []
    for k, r in enumerate(records):
        try:
            g = read_gif(r.path, **(read_kwargs or {}))
        except (GifDecodeError, OSError) as e:
            failures.append({"id": r.id, "path": str(r.path), "reason": str(e)})
            log.warning("skipping %s: %s", r.path, e)
            continue
        n[k] = len(g.delays_ms)
        d[k] = float(np.mean(g.delays_ms))
    return n, d, failures


# -- Fig. 10 ----------------------------------------------------------------------------------


def overlap_rates(labels: np.ndarray) -> np.ndarray:
    """``(t, t)`` R[i, j] = share of the GIFs of emotion i also labelled j (NaN rows: no GIF)."""
    b = np.asarray(labels)
    if b.ndim != 2:
        raise ValueError(f"labels must be (n, t) binary, got shape {b.shape}")
    b = b.astype(np.float64)
    both = b.T @ b  # (t, t) co-occurrence counts
    count = np.diag(both).copy()
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count[:, None] > 0, both / count[:, None], np.nan)


def flag_shares(dataset: GifDataset) -> dict[str, dict[str, float]]:
    """``{"cartoon": {"share", "true", "known"}, "multi_scene": {...}}`` over the GIFs with the flag."""
    out = {}
    for flag in ("cartoon", "multi_scene"):
        known = [getattr(r, flag) for r in dataset.records if getattr(r, flag) is not None]
        t = sum(bool(x) for x in known)
        out[flag] = {
            "share": t / len(known) if known else float("nan"),
            "true": t,
            "known": len(known),
        }
    return out


# -- figures ----------------------------------------------------------------------------------


def plot_fig9(
    n_frames: np.ndarray, mean_delay_ms: np.ndarray, path: str | Path, *, bins: int = 30
) -> Path:
    """Fig. 9: histograms of frame counts and of mean frame delays, side by side (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, values, label in (
        (axes[0], n_frames, "number of frames"),
        (axes[1], mean_delay_ms, "mean frame delay (ms)"),
    ):
        counts, edges = histogram(values, bins=bins)
        ax.bar(
            edges[:-1], counts, width=np.diff(edges), align="edge", edgecolor="black", linewidth=0.3
        )
        ax.set_xlabel(label)
        ax.set_ylabel("GIFs")
    fig.tight_layout()
    return _save(fig, path)


def plot_fig10(
    overlap: np.ndarray,
    shares: dict[str, dict[str, float]],
    path: str | Path,
    *,
    names: Sequence[str] = EMOTIONS,
) -> Path:
    """Fig. 10: the overlap-rate matrix (a) and the cartoon / multi-scene pies (b, c) (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(11, 5))
    ax = fig.add_axes((0.08, 0.2, 0.45, 0.72))
    im = ax.imshow(np.nan_to_num(overlap, nan=0.0), vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(names)), [str(i + 1) for i in range(len(names))], fontsize=7)
    ax.set_yticks(range(len(names)), list(names), fontsize=7)
    ax.set_title("(a) overlap rate: row emotion also column emotion")
    fig.colorbar(im, ax=ax, fraction=0.046)
    for k, (flag, title) in enumerate(
        (("cartoon", "(b) cartoons / comics"), ("multi_scene", "(c) multiple scenes"))
    ):
        pie = fig.add_axes((0.62, 0.55 - 0.45 * k, 0.35, 0.4))
        s = shares.get(flag, {})
        if s.get("known"):
            pie.pie([s["true"], s["known"] - s["true"]], labels=["yes", "no"], autopct="%1.0f%%")
        else:
            pie.text(0.5, 0.5, "no flags", ha="center", va="center")
            pie.axis("off")
        pie.set_title(title, fontsize=9)
    return _save(fig, path)


def _save(fig: Any, path: str | Path) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def dataset_statistics(
    dataset: GifDataset,
    out_dir: str | Path | None = None,
    *,
    n_frames: np.ndarray | None = None,
    mean_delay_ms: np.ndarray | None = None,
) -> dict[str, Any]:
    """All of Figs. 9–10 for a dataset; figures ``fig9_timing.png`` / ``fig10_overlap.png`` and
    ``stats.json`` are written to ``out_dir`` when given. Timing is read from the GIFs when the
    arrays (aligned with ``dataset.records``) are not given. A ValueError names the dataset and
    its first failure when no GIF decoded."""
    failures: list[dict[str, str]] = []
    if n_frames is None or mean_delay_ms is None:
        n_frames, mean_delay_ms, failures = gif_timing(dataset.records)
    n_frames, mean_delay_ms = np.asarray(n_frames, float), np.asarray(mean_delay_ms, float)
    if n_frames.shape != (len(dataset),) or mean_delay_ms.shape != (len(dataset),):
        raise ValueError(
            f"timing arrays must be ({len(dataset)},), got {n_frames.shape} and {mean_delay_ms.shape}"
        )
    if not np.any(np.isfinite(n_frames) & (n_frames > 0)):
        first = ""
        if failures:
            path, reason = failures[0]["path"], failures[0]["reason"]
            first = f" (first: {reason if path in reason else f'{path}: {reason}'})"
        raise ValueError(
            f"{dataset.name}: no GIF of its {len(dataset)} decoded, nothing to describe: "
            f"{len(failures)} failed{first}"
        )
    res: dict[str, Any] = {"dataset": dataset.name, "timing": timing_summary(n_frames, mean_delay_ms),
                           "failures": failures}  # fmt: skip
    figures = {}
    if out_dir is not None:
        figures["fig9"] = str(plot_fig9(n_frames, mean_delay_ms, Path(out_dir) / "fig9_timing.png"))
    if dataset.kind in ("gifgif", "gifgif_plus"):
        labels = dataset.binary_labels()
        rates = overlap_rates(labels)
        shares = flag_shares(dataset)
        res["gifs_per_emotion"] = dict(zip(EMOTIONS, labels.sum(0).tolist(), strict=True))
        res["overlap"] = [
            [None if np.isnan(x) else round(float(x), 6) for x in row] for row in rates
        ]
        res["shares"] = shares
        if out_dir is not None:
            figures["fig10"] = str(plot_fig10(rates, shares, Path(out_dir) / "fig10_overlap.png"))
    res["figures"] = figures
    if out_dir is not None:
        (Path(out_dir) / "stats.json").write_text(json.dumps(res, indent=1))
    return res
