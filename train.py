"""Train and evaluate an emotion recogniser: ``python train.py [group=option ...] [key=value ...]``.

A thin Hydra wrapper around :func:`gifemo.runners.train.train`, which runs the runner the model
config names (``model.runner._target_``); configuration in ``conf/train.yaml``, documentation in
``docs/training.md``. Returns the sweep objective (``optimized_metric``, by default
``cv/score``) so that ``-m hparams_search=...`` (Optuna) can maximise it.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from gifemo.runners.train import objective, train


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    metrics, _ = train(cfg)
    return objective(metrics, cfg.optimized_metric)


if __name__ == "__main__":
    main()
