"""Runner of fine-tuning: ``python train.py model=finetune data=gifgif_plus``.

Steps: seed everything → load the dataset's binary labels (GIFGIF+ emotions, or y > 25 of
GIFGIF scores) → seeded split into train / val / test (:func:`gifemo.eval.splits.split_indices`:
test = ``model.split.test_fraction`` of the GIFs, val = ``val_fraction`` of the rest) → the
backbone (``cfg.backbone``, with its weights) + head + optional penalty + optimiser
(``cfg.optimizer``) → :class:`FinetuneModule` → Lightning ``Trainer`` (``cfg.trainer``) with the
callbacks of ``cfg.callbacks`` (each built from its ``_target_``: by default ModelCheckpoint on
the best val mAP and EarlyStopping) → ``fit`` (resuming from ``cfg.ckpt_path``) → ``test`` with
the best checkpoint, whose per-emotion thresholds were chosen on validation data (max F1).
Writes ``metrics.json`` / ``run.json`` (:mod:`gifemo.runners.results`), ``finetune_metrics.json``,
``finetune_history.json`` and ``decode_failures.json`` to ``cfg.paths.output_dir``.
``model.compile`` runs the backbone's ``features`` through ``torch.compile``; the first training
step's wall time (its warm-up) is ``first_step_s`` in the first row of ``finetune_history.json``
(the row of the epoch it ran in), beside ``step_s`` (the mean of the next 10 steps), and is
logged; timings stay out of the metrics, which are reproducible run to run.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig

from gifemo.backbones.preprocessing import Preprocessing
from gifemo.emotions import N_EMOTIONS
from gifemo.eval.multilabel import table4_line
from gifemo.eval.splits import split_indices
from gifemo.finetune.data import FinetuneDataModule
from gifemo.finetune.module import FinetuneModule, positive_weights
from gifemo.runners import results, tracking

log = logging.getLogger(__name__)


def build_module(cfg: DictConfig, train_labels: np.ndarray) -> FinetuneModule:
    """The backbone (cfg.backbone) + head + penalty from the config, wrapped in a FinetuneModule."""
    m = cfg.model
    backbone = instantiate(cfg.backbone)  # the module drops its classifier
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
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(m.scheduler) if m.scheduler is not None else None,
        lr=float(m.lr),
        head_lr=None if m.head_lr is None else float(m.head_lr),
        pos_weight=pos_weight,
        freeze_epochs=int(m.freeze_epochs),
        feature_dropout=float(m.feature_dropout),
        eval_chunk=int(m.eval_chunk),
        seed=int(cfg.seed),
        channels_last=_channels_last(m.channels_last),
        compile=bool(m.compile),
    )


def _channels_last(value: Any) -> bool | None:
    """model.channels_last: auto (CUDA only) | true | false."""
    if value is None or value == "auto":
        return None
    if isinstance(value, bool):
        return value
    raise ValueError(f"model.channels_last must be auto, true or false, got {value!r}")


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
        clip_dtype=str(m.clip_dtype),
        clips=instantiate(cfg.clips) if cfg.get("clips") is not None else None,
    )


def build_callbacks(cfg: DictConfig) -> list[Callback]:
    """Every entry of ``cfg.callbacks`` with a ``_target_``, instantiated (null entries skipped)."""
    return [instantiate(c) for c in (cfg.callbacks or {}).values() if c and "_target_" in c]


def run(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Fine-tune and evaluate; returns flat metrics and the built objects (trainer, module, ...)."""
    L.seed_everything(int(cfg.seed), workers=True)
    dataset = instantiate(cfg.data)
    labels = dataset.binary_labels()  # (n, 17) bool; an unlabelled dataset is refused here
    split = split_indices(len(dataset.records), test_fraction=float(cfg.model.split.test_fraction),
                          val_fraction=float(cfg.model.split.val_fraction), seed=int(cfg.seed))  # fmt: skip
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    module = build_module(cfg, labels[split["train"]])
    datamodule = build_datamodule(
        cfg, dataset.records, labels, split, module.backbone.preprocessing
    )
    logger = tracking.build_logger(cfg, name=results.run_name(str(cfg.model.name), "clips"))
    trainer = instantiate(
        cfg.trainer,
        callbacks=build_callbacks(cfg),
        logger=logger if logger is not None else False,
    )
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)

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
        # the GIFs actually evaluated (trainer.limit_test_batches may stop short of the split)
        n_eval, n_split = int(metrics.get("test/n_gifs", split["test"].size)), split["test"].size
        of = "" if n_eval == n_split else f" of {n_split} (trainer.limit_test_batches)"
        print(f"{type(module.backbone).__name__} fine-tuned ({module.backbone.weights_id}), "
              f"{n_eval}{of} test GIFs, mAP {metrics['test/mAP']:.3f}: "
              f"{table4_line(metrics, prefix='test/')}")  # fmt: skip
    if trainer.is_global_zero:
        (out_dir / "finetune_metrics.json").write_text(json.dumps(metrics, indent=1))
        (out_dir / "finetune_history.json").write_text(json.dumps(module.history, indent=1))
        if module.failures:
            (out_dir / "decode_failures.json").write_text(json.dumps(module.failures, indent=1))
        results.write_run(out_dir, metrics, model=str(cfg.model.name), features="clips")
        tracking.log_summary(logger, metrics)
    objects = {"trainer": trainer, "module": module, "datamodule": datamodule, "logger": logger,
               "split": split, "best_checkpoint": best, "history": module.history}  # fmt: skip
    return metrics, objects
