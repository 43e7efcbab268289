"""``python train.py model=finetune data=gifgif_plus``: build the parts, fit, select, test.

Steps: seed everything → load the GIFGIF+-style dataset (binary labels) → seeded split into
train / val / test (test = ``model.split.test_fraction`` of the GIFs, val = ``val_fraction`` of
the rest) → C3D (``cfg.backbone`` with ``model.weights``) + head + optional penalty →
:class:`FinetuneModule` → Lightning ``Trainer`` (``cfg.trainer``) with ModelCheckpoint on the best
val mAP, optional EarlyStopping → ``fit`` (resuming from ``cfg.ckpt_path``) → ``test`` with the
best checkpoint, whose per-emotion thresholds were chosen on validation data (max F1).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from gifemo.backbones.preprocessing import Preprocessing
from gifemo.emotions import N_EMOTIONS
from gifemo.eval.multilabel import table4_line
from gifemo.eval.splits import split_indices
from gifemo.finetune.data import FinetuneDataModule
from gifemo.finetune.module import FinetuneModule, positive_weights

log = logging.getLogger(__name__)


def build_module(cfg: DictConfig, train_labels: np.ndarray) -> FinetuneModule:
    """C3D + head + penalty from the config, wrapped in a FinetuneModule."""
    m = cfg.model
    backbone = instantiate(cfg.backbone, weights=m.weights)  # the module drops its classifier
    head = instantiate(m.head)(backbone.feature_dim, N_EMOTIONS)
    penalty = instantiate(m.penalty) if m.penalty is not None else None
    if m.pos_weight == "auto":
        pos_weight = positive_weights(train_labels, max_weight=float(m.max_pos_weight))
    elif m.pos_weight is None:
        pos_weight = None
    else:
        raise ValueError(f"model.pos_weight must be 'auto' or null, got {m.pos_weight!r}")
    return FinetuneModule(
        backbone,
        head,
        penalty,
        optimizer=instantiate(m.optimizer),
        scheduler=instantiate(m.scheduler) if m.scheduler is not None else None,
        lr=float(m.lr),
        head_lr=None if m.head_lr is None else float(m.head_lr),
        pos_weight=pos_weight,
        freeze_epochs=int(m.freeze_epochs),
        feature_dropout=float(m.feature_dropout),
        eval_chunk=int(m.eval_chunk),
        seed=int(cfg.seed),
    )


def build_datamodule(
    cfg: DictConfig,
    records: list[Any],
    labels: np.ndarray,
    split: dict[str, np.ndarray],
    preprocessing: Preprocessing,
) -> FinetuneDataModule:
    m = cfg.model

    def part(name: str) -> tuple[list[Any], np.ndarray]:
        idx = split[name]
        return [records[i] for i in idx], labels[idx]

    return FinetuneDataModule(
        preprocessing=preprocessing,
        train=part("train"),
        val=part("val"),
        test=part("test"),
        batch_size=int(m.batch_size),
        eval_batch_size=int(m.eval_batch_size),
        num_clips=int(m.num_clips),
        num_workers=int(m.num_workers),
        persistent_workers=bool(m.persistent_workers),
        prefetch_factor=int(m.prefetch_factor),
        cache_dir=str(m.cache.dir) if m.cache.enabled else None,
        cache_max_mb=float(m.cache.max_mb),
        read_kwargs={"max_pixels": int(m.max_pixels), "max_frames": m.max_frames},
        seed=int(cfg.seed),
        clip_dtype=str(m.get("clip_dtype", "uint8")),
    )


def build_callbacks(cfg: DictConfig, out_dir: Path) -> list[Callback]:
    m = cfg.model
    callbacks: list[Callback] = [
        ModelCheckpoint(
            dirpath=out_dir / "checkpoints",
            filename="best-{epoch}-{step}",
            monitor=m.checkpoint.monitor,
            mode=m.checkpoint.mode,
            save_top_k=int(m.checkpoint.save_top_k),
            save_last=bool(m.checkpoint.save_last),
            every_n_train_steps=m.checkpoint.every_n_train_steps,
            auto_insert_metric_name=False,
        )
    ]
    if m.early_stopping.enabled:
        callbacks.append(
            EarlyStopping(monitor=m.checkpoint.monitor, mode=m.checkpoint.mode,
                          patience=int(m.early_stopping.patience), min_delta=float(m.early_stopping.min_delta))
        )  # fmt: skip
    return callbacks


def run_finetune(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Fine-tune and evaluate; returns flat metrics and the built objects (trainer, module, ...)."""
    from gifemo.runners.tracking import build_logger, log_summary

    L.seed_everything(int(cfg.seed), workers=True)
    dataset = instantiate(cfg.data)
    if dataset.kind != "gifgif_plus":
        raise ValueError(
            f"model=finetune needs binary GIFGIF+ labels (data=gifgif_plus); cfg.data gives kind={dataset.kind!r}"
        )
    labels = dataset.binary_labels()  # (n, 17) bool
    split = split_indices(len(dataset.records), test_fraction=float(cfg.model.split.test_fraction),
                          val_fraction=float(cfg.model.split.val_fraction), seed=int(cfg.seed))  # fmt: skip
    out_dir = Path(OmegaConf.select(cfg, "paths.output_dir", default="outputs/finetune"))
    out_dir.mkdir(parents=True, exist_ok=True)

    module = build_module(cfg, labels[split["train"]])
    datamodule = build_datamodule(
        cfg, dataset.records, labels, split, module.backbone.preprocessing
    )
    logger = build_logger(cfg, name="finetune")
    trainer = instantiate(
        cfg.trainer,
        callbacks=build_callbacks(cfg, out_dir),
        logger=logger if logger is not None else False,
    )
    trainer.fit(
        module, datamodule=datamodule, ckpt_path=OmegaConf.select(cfg, "ckpt_path", default=None)
    )

    metrics: dict[str, float] = {}
    for key, value in trainer.callback_metrics.items():
        metrics[key] = float(value)
    best = (
        getattr(trainer.checkpoint_callback, "best_model_path", "")
        if trainer.checkpoint_callback
        else ""
    )
    trainer.test(module, datamodule=datamodule, ckpt_path=best or None, verbose=False)
    for stage in ("val", "test"):
        metrics.update(module.last_metrics.get(stage, {}))
    metrics["n_train"], metrics["n_val"], metrics["n_test"] = (
        float(split[s].size) for s in ("train", "val", "test")
    )
    losses = [h["train/loss"] for h in module.history if "train/loss" in h]
    if losses:
        metrics["train/loss_first_epoch"], metrics["train/loss_last_epoch"] = losses[0], losses[-1]
    metrics["decode_failures"] = float(len({f["id"] for f in module.failures}))
    if "test/precision_mean" in metrics:
        print(f"C3D fine-tuned ({module.backbone.weights_id}), {split['test'].size} test GIFs, "
              f"mAP {metrics['test/mAP']:.3f}: {table4_line(metrics, prefix='test/')}")  # fmt: skip
    if trainer.is_global_zero:
        (out_dir / "finetune_metrics.json").write_text(json.dumps(metrics, indent=1))
        (out_dir / "finetune_history.json").write_text(json.dumps(module.history, indent=1))
        if module.failures:
            (out_dir / "decode_failures.json").write_text(json.dumps(module.failures, indent=1))
        log_summary(logger, metrics)
    objects = {"trainer": trainer, "module": module, "datamodule": datamodule, "logger": logger,
               "split": split, "best_checkpoint": best, "history": module.history}  # fmt: skip
    return metrics, objects
