"""What ``python train.py`` runs: the runner named by ``cfg.model.runner`` (a ``_target_``).

Each experiment kind has its runner module, chosen by the model config (as
lightning-hydra-template instantiates what it runs)::

    model=unsorted|lasso|ridge|trace|cmtl|gp → gifemo.runners.features.run
    model=svm                                → gifemo.runners.svm.run
    model=finetune                           → gifemo.runners.finetune.run

A runner is a callable ``runner(cfg) -> (metrics, objects)``: flat metrics (also written to
``<output_dir>/metrics.json``) and the objects it built. A new experiment kind is a new module
in ``gifemo/runners/`` and a model config whose ``runner._target_`` names it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig

from gifemo.runners import tracking
from gifemo.runners.results import objective

Runner = Callable[[DictConfig], tuple[dict[str, float], dict[str, Any]]]

__all__ = ["Runner", "objective", "train"]


def train(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Instantiate ``cfg.model.runner`` and run it on ``cfg``; returns (metrics, objects)."""
    runner: Runner = instantiate(cfg.model.runner)
    try:
        return runner(cfg)
    finally:
        tracking.finish_any_wandb_run()  # one W&B run per sweep job, even if a runner left it open
