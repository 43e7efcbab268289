"""Fine-tuning smoke runs (issue 11, item 6): a run cut short by ``trainer.max_steps`` before any
validation finishes with the configured callbacks (EarlyStopping included), writes a checkpoint
and resumes from it; the usual Lightning smoke overrides exist in ``conf/trainer/default.yaml``;
the summary reports the GIFs actually evaluated."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from tests.test_finetune import _module, _records

REPO = Path(__file__).resolve().parents[1]
SMOKE = ["trainer.limit_train_batches=3", "trainer.limit_val_batches=2"]
SMOKE += ["trainer.limit_test_batches=1", "trainer.limit_predict_batches=1"]


def compose_train(overrides: list[str]):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("train", overrides=overrides)


def test_smoke_overrides_need_no_plus_and_reach_the_trainer(tmp_path):
    cfg = compose_train(["model=finetune", f"paths.output_dir={tmp_path}", *SMOKE])
    trainer = instantiate(cfg.trainer, accelerator="cpu", logger=False, callbacks=[])
    assert (trainer.limit_train_batches, trainer.limit_val_batches) == (3, 2)
    assert (trainer.limit_test_batches, trainer.limit_predict_batches) == (1, 1)
    import inspect

    accepted = set(inspect.signature(L.Trainer.__init__).parameters)
    assert set(cfg.trainer) - {"_target_"} <= accepted  # every key is a Trainer argument


def _fit(cfg, tmp_path: Path, max_steps: int, ckpt_path: str | None = None) -> L.Trainer:
    from gifemo.finetune.data import FinetuneDataModule
    from gifemo.runners.finetune import build_callbacks

    records = _records(tmp_path / "gifs", n=8)
    labels = np.zeros((8, 17), np.float32)
    labels[::2, 0] = labels[1::2, 3] = 1
    L.seed_everything(0, verbose=False)
    module = _module()
    dm = FinetuneDataModule(
        preprocessing=module.backbone.preprocessing, train=(records[:6], labels[:6]),
        val=(records[6:], labels[6:]), batch_size=1, eval_batch_size=2, num_workers=0, seed=3,
    )  # fmt: skip
    trainer = instantiate(
        cfg.trainer, accelerator="cpu", logger=False, callbacks=build_callbacks(cfg),
        max_steps=max_steps, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    return trainer


def test_run_cut_before_validation_finishes_checkpoints_and_resumes(tmp_path):
    """6 training GIFs, batch 1: max_steps=2 stops mid-epoch, before the first validation."""
    (tmp_path / "gifs").mkdir()
    cfg = compose_train(["model=finetune", f"paths.output_dir={tmp_path / 'out'}"])
    assert cfg.callbacks.early_stopping is not None  # the default callbacks, EarlyStopping on
    first = _fit(cfg, tmp_path, max_steps=2)
    assert first.global_step == 2 and "val/mAP" not in first.callback_metrics
    last = tmp_path / "out" / "checkpoints" / "last.ckpt"
    assert last.is_file()
    state = torch.load(last, map_location="cpu", weights_only=False)
    assert state["global_step"] == 2
    resumed = _fit(cfg, tmp_path, max_steps=8, ckpt_path=str(last))
    assert resumed.global_step == 8  # 2 restored + 6 more: one full epoch done, validated
    assert "val/mAP" in resumed.callback_metrics
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 8


@pytest.mark.slow
def test_train_py_smoke_run_and_resume(tmp_path):
    """``python train.py model=finetune ... trainer.max_steps=2`` + the smoke limits: finishes,
    checkpoints, resumes; the summary counts the test GIFs actually evaluated."""
    base = [
        sys.executable, "train.py", "model=finetune", "data=synthetic", "data.kind=gifgif_plus",
        "backbone=c3d_tiny",
        "data.synthetic_size=tiny", f"paths.data_dir={tmp_path / 'data'}",
        f"paths.output_dir={tmp_path / 'out'}", "model.num_workers=0",
        "model.persistent_workers=false", "trainer=cpu", "trainer.enable_progress_bar=false",
        "logger=none", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
        "model.eval_batch_size=2", f"hydra.run.dir={tmp_path / 'run'}",
    ]  # fmt: skip
    out = subprocess.run([*base, "trainer.max_steps=2"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.loads((tmp_path / "out" / "finetune_metrics.json").read_text())
    assert metrics["test/n_gifs"] == 2 and metrics["n_test"] > 2
    assert f"2 of {int(metrics['n_test'])} (trainer.limit_test_batches) test GIFs" in out.stdout
    last = tmp_path / "out" / "checkpoints" / "last.ckpt"
    assert last.is_file()
    out = subprocess.run(
        [*base, "trainer.max_steps=4", f"ckpt_path={last}"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 4
