"""Lightning callbacks of fine-tuning that the stock ones do not cover."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback


class FinalCheckpoint(Callback):
    """Write ``dirpath/filename`` (default ``last.ckpt``) with the state at the end of ``fit``.

    ``ModelCheckpoint(save_last=True)`` writes ``last.ckpt`` only when it also saves a top-k
    checkpoint at that step; a run stopped by ``trainer.max_steps`` or ``max_time`` in the middle
    of an epoch after an earlier validation would then resume from that validation, not from
    where it stopped. This callback saves the final state (loops, optimiser, callbacks' state)
    under the same name, so ``ckpt_path=<dirpath>/last.ckpt`` always continues the run exactly.
    Skipped in ``fast_dev_run`` (which never checkpoints).
    """

    def __init__(self, dirpath: str | Path, filename: str = "last.ckpt") -> None:
        self.path = Path(dirpath) / filename

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if getattr(trainer, "fast_dev_run", False) or trainer.sanity_checking:
            return
        trainer.save_checkpoint(self.path)  # on every rank: the strategy writes once
