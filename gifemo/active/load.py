"""Build an :class:`~gifemo.active.reranker.ActiveReranker` from a trained run (issue 15).

``load_reranker(run_dir, candidates_store)`` reads

* ``run_dir/model/`` — the saved recogniser (:func:`gifemo.models.saved.load_model`): its tag
  dictionary, feature normaliser, W and b (the warm start), and the run's resolved config;
* ``run_dir/run.json`` — the hyper-parameters cross-validation chose (``params``);
* the **training data reference**: the dataset the run trained on (``train_data``, default:
  the saved config's ``data`` section, built by its ``_target_``) and its feature store
  (``train_store``, default: the saved config's ``extract.out_dir``, or the one complete store
  under ``paths.features_dir`` named ``<dataset>-*`` whose backbone identity is the model's);
* the candidates' feature store ``candidates_store`` (extract.py on the collected folder) and,
  for tag features, the candidates' dataset folder ``candidates_data`` (their tags).

The refit uses **every** GIFGIF row with features (the run's per-emotion test sets served its
evaluation; a labelling project wants the best recogniser) plus the consensus labels, with the
estimator rebuilt from the run's config and CV choice (``MTLRegressor`` only: lasso, ridge,
trace, cmtl; a GP or the unsorted baseline cannot be refitted incrementally — use ``static``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from gifemo.active.reranker import ActiveReranker
from gifemo.data.metadata import GifDataset, read_dataset
from gifemo.features.datamodule import store_rows
from gifemo.features.store import FeatureStore, StoreError
from gifemo.models.saved import SavedModel, load_model, store_identity


def _training_store(model: SavedModel, dataset: GifDataset, config: dict[str, Any]) -> Path:
    out_dir = (config.get("extract") or {}).get("out_dir")
    if out_dir:
        return Path(out_dir)
    features_dir = Path((config.get("paths") or {}).get("features_dir", "features"))
    want = model.meta.get("store")
    found = []
    for p in sorted(features_dir.glob(f"{dataset.name}-*")):
        try:
            s = FeatureStore.open(p)
        except (StoreError, OSError, ValueError):  # unfinished or foreign: not a candidate
            continue
        if want is None or store_identity(s) == want:
            found.append(p)
    if len(found) != 1:
        raise FileNotFoundError(
            f"{model.path}: cannot tell the training feature store ({len(found)} complete stores "
            f"of {dataset.name!r} with the model's backbone under {features_dir}); pass "
            f"train_store="
        )
    return found[0]


def _estimator(run_dir: Path, model: SavedModel, config: dict[str, Any]) -> Any:
    from hydra.utils import instantiate

    from gifemo.models.estimators import MTLRegressor

    node = (config.get("model") or {}).get("estimator")
    if not node:
        raise ValueError(f"{model.path}/model.json: the saved config has no model.estimator")
    est = instantiate(node)
    if not isinstance(est, MTLRegressor):
        raise ValueError(
            f"{run_dir}: active re-ranking refits linear multi-task models (lasso, ridge, trace, "
            f"cmtl), not {type(est).__name__}; use the static strategy"
        )
    run_json = run_dir / "run.json"
    params = json.loads(run_json.read_text()).get("params", {}) if run_json.is_file() else {}
    est.set_params(**params)
    k = model.meta["estimator"].get("k")
    if k is not None:
        est.set_params(k=k)  # the k the run used (k=auto chose it on GIFGIF)
    est.W_ = np.asarray(model.estimator.W_, dtype=np.float64)  # warm start from the saved fit
    est.b_ = np.asarray(model.estimator.b_, dtype=np.float64)
    est.k_ = k
    return est


def _features(model: SavedModel, dataset: GifDataset, store: FeatureStore | None) -> tuple:
    """(kept ids, X (n, d)) of ``dataset`` through the model's feature pipeline."""
    if "visual" in model.features:
        if store is None:
            raise ValueError(f"{model.path}: features={model.features!r} need a feature store")
        model.check_store(store)
        keep, rows, _ = store_rows(dataset, store)
        visual = np.asarray(store.visual[rows])
    else:
        keep, visual = np.arange(len(dataset)), None
    tags = [dataset.records[int(i)].tags for i in keep]
    return keep, model.transform(visual, tags)


def load_reranker(
    run_dir: Path | str,
    candidates_store: Path | str | None,
    *,
    warm_start: bool = True,
    candidates_data: Path | str | None = None,
    train_data: Path | str | None = None,
    train_store: Path | str | None = None,
    label_weight: int = 1,
    tol: float | None = 1e-4,
) -> ActiveReranker:
    """An :class:`ActiveReranker` for a labelling project (module docstring).

    ``candidates_store`` may be None for a tag-only model (then ``candidates_data`` is needed).

    ``tol``: solver tolerance of the refits (None: the run's). 1e-4 by default: at GIFGIF scale
    it needs 10 instead of 41 warm iterations and its rankings agree with tol 1e-6 ones
    (Spearman ≥ 0.99999, 99.8 % of each top 50; ``python -m gifemo.bench screening --only
    refit``). ``label_weight``: integer
    weight of a consensus row relative to a GIFGIF row (docs/active.md).
    """
    run_dir = Path(run_dir)
    model = load_model(run_dir / "model")
    config = model.meta.get("config") or {}
    if train_data is not None:
        dataset = read_dataset(str(train_data))
    else:
        from hydra.utils import instantiate

        if not config.get("data"):
            raise ValueError(f"{model.path}/model.json has no data config; pass train_data=")
        dataset = instantiate(config["data"])
    store = None
    if "visual" in model.features:
        path = Path(train_store) if train_store else _training_store(model, dataset, config)
        store = FeatureStore.open(path)
    keep, X_train = _features(model, dataset, store)
    Y_train = dataset.subset(keep).labels()  # (n, 17) y = μ − 3σ
    estimator = _estimator(run_dir, model, config)
    if tol is not None:
        estimator.set_params(tol=float(tol))

    cstore = None if candidates_store is None else FeatureStore.open(candidates_store)
    if candidates_data is not None:
        cdata = read_dataset(str(candidates_data))
        ckeep, X_cand = _features(model, cdata, cstore)
        ids = [cdata.records[int(i)].id for i in ckeep]
    elif "tag" in model.features:
        raise ValueError(
            f"{model.path}: features={model.features!r} use tags; pass candidates_data= "
            "(the collected folder with metadata.jsonl)"
        )
    else:  # visual features only: every GIF of the candidates' store
        if cstore is None:
            raise ValueError("load_reranker: give candidates_store and/or candidates_data")
        model.check_store(cstore)
        ids = list(cstore.ids)
        X_cand = model.transform(np.asarray(cstore.visual), [[] for _ in ids])
    return ActiveReranker(
        estimator,
        X_train,
        Y_train,
        np.isfinite(Y_train),
        ids,
        X_cand,
        warm_start=warm_start,
        label_weight=label_weight,
    )
