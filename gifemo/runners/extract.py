"""Runner of feature extraction: a composed config → a feature store (``extract.py``, and
the first step of every feature-based ``train.py`` run).

:func:`extract` reads ``cfg.data`` (a GifDataset ``_target_``), ``cfg.backbone`` (a backbone
builder's ``_target_``: C3D, R(2+1)D-18, …), ``cfg.clips`` (a clip sampler's ``_target_``:
``clips=all``, the paper's 16/8 rule, or ``clips=fps clips.fps=…``), ``cfg.extract`` (see
``conf/extract/default.yaml``: out_dir, batch_clips, num_workers, precision, device, max_pixels,
max_frames, max_clips, threads, chunk_gifs, load_gifs, channels_last, clip_dtype, compile,
progress) and
``cfg.paths.features_dir``, and calls :func:`gifemo.features.extract.extract_features` with
plain arguments. A complete store whose fingerprint (dataset name and files, backbone,
weights_id, preprocessing, clip rule, precision, read limits, budgets) matches is opened as
is; otherwise the features are extracted (resuming any shards of the same fingerprint).
``out_dir: null`` → ``<features_dir>/<dataset>-<fp[:10]>``.

Started by ``torchrun`` (or SLURM with the torchrun variables), every process joins the process
group named by its environment (:func:`gifemo.features.distributed.init_from_env`) and extracts
its share of the chunks; rank 0 assembles the store (docs/extraction.md).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from gifemo.features.distributed import init_from_env
from gifemo.features.execution import (
    resize_device,
    resolve_device,
    resolve_precision,
    store_identity,
)
from gifemo.features.extract import extract_features
from gifemo.features.store import FeatureStore, complete_fingerprint

log = logging.getLogger(__name__)


def read_kwargs_of(ex: Any) -> dict[str, Any]:
    """``read_gif`` arguments from ``cfg.extract``: the pixel budget and the frames read per GIF
    (``max_frames`` → ``read_frames``: the first max_frames frames are used)."""
    out: dict[str, Any] = {}
    if ex.get("max_pixels") is not None:
        out["max_pixels"] = int(ex.max_pixels)
    if ex.get("max_frames") is not None:
        out["read_frames"] = int(ex.max_frames)
    return out


def extract(cfg: Any) -> FeatureStore:
    """Build dataset, backbone and clip sampler from a composed config; reuse or (re)extract."""
    ex = cfg.extract
    dataset = instantiate(cfg.data)
    backbone_cfg = OmegaConf.to_container(cfg.backbone, resolve=True)
    assert isinstance(backbone_cfg, dict)
    model = instantiate(cfg.backbone)
    transform = model.preprocessing.transform(train=False)
    sampler = instantiate(cfg.clips)
    read_kwargs = read_kwargs_of(ex)
    max_clips = None if ex.get("max_clips") is None else int(ex.max_clips)
    unlisted = list(getattr(dataset, "unlisted", ()))
    _, device = init_from_env(str(ex.device))  # a torchrun/SLURM process group, if any
    precision = resolve_precision(str(ex.precision), resolve_device(device))
    fingerprint, _ = store_identity(
        dataset.records, dataset_name=dataset.name, model=model, transform=transform,
        sampler=sampler, precision=precision, read_kwargs=read_kwargs, max_clips=max_clips,
        unlisted=unlisted, compile=bool(ex.compile),
        resize_device=resize_device(str(ex.resize_on), transform, str(ex.clip_dtype), device),
    )  # fmt: skip
    out_dir = Path(
        ex.out_dir or Path(cfg.paths.features_dir) / f"{dataset.name}-{fingerprint[:10]}"
    )
    if complete_fingerprint(out_dir) == fingerprint:
        log.info("reusing feature store %s (fingerprint %s)", out_dir, fingerprint[:10])
        return FeatureStore.open(out_dir)
    if complete_fingerprint(out_dir) is not None:
        log.warning("feature store %s was made with another configuration: re-extracting", out_dir)
    if ex.get("threads"):
        torch.set_num_threads(int(ex.threads))
    return extract_features(
        dataset.records,
        out_dir,
        model=model,
        transform=transform,
        sampler=sampler,
        max_clips=max_clips,
        batch_clips=int(ex.batch_clips),
        num_workers=int(ex.num_workers),
        precision=precision,
        device=device,
        read_kwargs=read_kwargs or None,
        progress=bool(ex.progress),
        chunk_gifs=int(ex.chunk_gifs),
        load_gifs=int(ex.load_gifs),
        channels_last=bool(ex.channels_last),
        clip_dtype=str(ex.clip_dtype),
        compile=bool(ex.compile),
        resize_on=str(ex.resize_on),
        dataset_name=dataset.name,
        fingerprint=fingerprint,
        unlisted=unlisted,
        extra_meta={"backbone_config": backbone_cfg},
    )
