"""The simulator's static Ñ against the Ñ a real training run reports (gifemo.runners.train)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from gifemo.active import order_by_scores
from gifemo.active.simulate import Oracle, screen
from gifemo.emotions import EMOTIONS

CONF = Path(__file__).resolve().parents[1] / "conf"


@pytest.mark.slow
def test_static_screening_reproduces_train_py_n_tilde(tmp_path):
    """train.py's Ñ for emotion i is N_p / precision at recall N_p/N_all on its test set T_i.
    Screening T_i in the run's score order until ⌈r·P⌉ positives takes exactly
    Ñ·⌈r·P⌉/N_p checks (r = N_p/N_all; the scores have no ties)."""
    from gifemo.runners.train import train

    n_p, n_all = 3000, 6000  # r = 0.5: a quota of half the test positives
    overrides = [
        f"paths.data_dir={tmp_path / 'data'}", "data.synthetic_size=tiny", "backbone=c3d_tiny",
        "extract.num_workers=0", "extract.progress=false", "trainer.fast_dev_run=true",
        "model=cmtl", "logger=none", "figures=false", "save_model=false",
        f"evaluation.n_p={n_p}", f"evaluation.n_all={n_all}",
        f"paths.output_dir={tmp_path / 'run'}",
    ]  # fmt: skip
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    metrics, objects = train(cfg)
    scores, data = objects["scores"], objects["data"]
    checked = 0
    for i, e in enumerate(EMOTIONS):
        reported = metrics[f"test/n_tilde/{e}"]
        rows = np.asarray(data.protocol.test_rows[i])
        pos = data.positives[rows, i]
        if not np.isfinite(reported):
            assert pos.sum() == 0
            continue
        assert np.unique(scores[rows, i]).size == rows.size  # no ties
        ids = [str(r) for r in rows]
        need = math.ceil(n_p / n_all * pos.sum() - 1e-9)
        queue = order_by_scores(ids, scores[rows, i])
        done, _, _ = screen({e: queue}, Oracle(pos[:, None], ids, (e,)), need)
        assert reported == pytest.approx(n_p * len(done[e]) / need, rel=1e-12)
        checked += 1
    assert checked >= 10
