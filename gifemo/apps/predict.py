"""Rank new GIFs per emotion with a saved recogniser: the lists labellers check (paper §4).

``python -m gifemo predict --model DIR --data ROOT [--store DIR] [--out DIR] [--top N|all]``

``ROOT`` is a dataset folder with a ``metadata.jsonl`` or a plain folder of GIFs (searched
recursively, ids = relative paths without ``.gif``). A labeller who wants N_p positives of an
emotion checks about Ñ candidates (eq. 9; the run's ``test/n_tilde_mean``, ~12,000 for an
unsorted list at GIFGIF's positive rate), so rank all of them (``--top all``) or at least Ñ.

:func:`rank` writes ``ranked.csv`` and ``ranked.jsonl`` with the top-N GIFs per emotion
(columns emotion, rank, id, path, score; ties by id), the order in which labellers check them.
The model is a directory written by ``train.py`` (``<run>/model``, :mod:`gifemo.models.saved`);
without ``--store`` the GIFs' features are extracted with the backbone and extraction settings
saved in the model.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import tempfile
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from gifemo.data.metadata import GifDataset
from gifemo.features.store import FeatureStore
from gifemo.models.saved import SavedModel, load_model, score_dataset


def rank(
    model: str | Path | SavedModel,
    dataset: GifDataset,
    store: FeatureStore | None,
    *,
    top_n: int = 100,
    out_dir: str | Path | None = None,
    candidates: Mapping[str, Collection[str]] | None = None,
) -> list[dict[str, Any]]:
    """Top-``top_n`` GIFs per emotion by score (ties by id); written to out_dir when given.

    ``candidates``: ``{emotion: ids}`` — rank each emotion only within its own candidates (the
    GIFs its tags found, paper §3.2; :func:`gifemo.data.candidates.candidates_by_emotion`);
    None: every GIF is a candidate for every emotion."""
    m = model if isinstance(model, SavedModel) else load_model(model)
    keep, scores = score_dataset(m, dataset, store)
    rows: list[dict[str, Any]] = []
    for j, emotion in enumerate(m.meta["emotions"]):
        pool = range(len(keep))
        if candidates is not None:
            own = candidates.get(emotion, ())
            pool = [r for r in pool if dataset.records[keep[r]].id in own]  # type: ignore[assignment]
        order = sorted(pool, key=lambda r: (-scores[r, j], dataset.records[keep[r]].id))
        for pos, r in enumerate(order[:top_n]):
            rec = dataset.records[keep[r]]
            rows.append(
                {
                    "emotion": emotion,
                    "rank": pos + 1,
                    "id": rec.id,
                    "path": str(rec.path),
                    "score": float(scores[r, j]),
                }
            )
    if out_dir is not None:
        write_ranked(rows, out_dir)
    return rows


def write_ranked(rows: Sequence[dict[str, Any]], out_dir: str | Path) -> None:
    """``ranked.csv`` and ``ranked.jsonl`` in ``out_dir``, each written whole to a temporary file
    and renamed into place once both are complete: a run that dies meanwhile leaves the previous
    pair as it was (the labelling tool reads either file as the complete ranking)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["emotion", "rank", "id", "path", "score"])
    w.writeheader()
    w.writerows(rows)
    texts = {
        "ranked.csv": buf.getvalue(),
        "ranked.jsonl": "".join(json.dumps(r) + "\n" for r in rows),
    }
    tmps: dict[str, str] = {}
    try:
        for name, text in texts.items():
            fd, tmps[name] = tempfile.mkstemp(dir=out, prefix=f".{name}.", suffix=".tmp")
            with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
        for name, tmp in tmps.items():
            os.replace(tmp, out / name)
    finally:
        for tmp in tmps.values():
            Path(tmp).unlink(missing_ok=True)


# The repository's config tree (extract.py's primary config and its groups).
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def extraction_config(model: SavedModel, data_root: str | Path, store_dir: str | Path) -> Any:
    """extract.py's config for the GIFs of ``data_root`` (metadata.jsonl, any kind), composed with
    Hydra's compose API, with the model's saved ``backbone``, ``clips`` and ``extract`` sections
    (what made its training features) in place of the defaults; the store goes to ``store_dir``.
    Sections a model saved before they existed keep their defaults."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    saved = model.meta.get("config") or {}
    if "backbone" not in saved:
        raise ValueError(
            f"{model.path}/model.json: its config has no backbone section; pass --store instead"
        )
    plain = not (Path(data_root) / "metadata.jsonl").is_file()  # a plain folder of GIFs
    data = ["data=folder"] if plain else ["data=gifgif", "data.kind=auto"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("extract", overrides=data)
    for key in ("backbone", "clips", "extract"):
        if key in saved:
            cfg[key] = OmegaConf.create(saved[key])
    cfg.data.root = str(data_root)
    cfg.extract.out_dir = str(store_dir)
    return cfg


def _extract_store(m: SavedModel, data_root: str, out: Path) -> FeatureStore:
    """Extract the new GIFs' features with the model's saved backbone/clips/extract config."""
    from gifemo.runners.extract import extract

    return extract(extraction_config(m, data_root, out / "features"))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gifemo predict", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="saved model directory (model.json)")
    p.add_argument(
        "--data", required=True, help="dataset folder with metadata.jsonl, or a folder of GIFs"
    )
    p.add_argument(
        "--store", help="feature store of --data (extracted with the model's backbone when absent)"
    )
    p.add_argument("--out", default="ranked", help="output directory for ranked.csv / ranked.jsonl")
    p.add_argument(
        "--top",
        default="100",
        help="GIFs per emotion, or 'all' (to reach N_p positives a labeller checks about the "
        "model's Ñ candidates: its test/n_tilde_mean)",
    )
    p.add_argument(
        "--candidates-by-emotion",
        choices=["auto", "yes", "no"],
        default="auto",
        help="rank each emotion within its own candidates (rows whose 'found_for' holds it, as "
        "written by collect.py); auto: when the metadata has found_for",
    )
    a = p.parse_args(argv)
    from gifemo.data.candidates import candidates_by_emotion
    from gifemo.data.metadata import read_dataset, read_folder

    if a.top != "all" and not (a.top.isdigit() and int(a.top) > 0):
        p.error(f"--top must be a positive number or 'all', got {a.top!r}")
    m = load_model(a.model)
    has_metadata = (Path(a.data) / "metadata.jsonl").is_file()
    dataset = read_dataset(a.data) if has_metadata else read_folder(a.data)
    top = len(dataset) if a.top == "all" else int(a.top)
    use_cands = has_metadata and a.candidates_by_emotion != "no"
    cands = candidates_by_emotion(a.data) if use_cands else None
    if cands is None and a.candidates_by_emotion == "yes":  # checked before any extraction
        where = "its metadata.jsonl has no row" if has_metadata else "it has no metadata.jsonl"
        p.error(f"--candidates-by-emotion yes: {a.data}: {where} with 'found_for'")
    if a.store:
        store: FeatureStore | None = FeatureStore.open(a.store)
    elif "visual" in m.features:
        store = _extract_store(m, a.data, Path(a.out))
    else:
        store = None
    rows = rank(m, dataset, store, top_n=top, out_dir=a.out, candidates=cands)
    print(
        f"ranked {len(rows)} rows ({a.top} per emotion) of {len(dataset)} GIFs → {Path(a.out) / 'ranked.csv'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
