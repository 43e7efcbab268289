"""Rank-aware sampling, gathering with deduplication, and (slow) 2-process gloo DDP equality."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gifemo.finetune.module import gather_predictions
from gifemo.finetune.sampling import EpochSampler, ResumableDataLoader


@pytest.mark.parametrize("n,world", [(10, 1), (10, 2), (11, 2), (7, 3), (2, 4)])
def test_eval_sampler_covers_every_index_exactly_once(n, world):
    seen = np.concatenate(
        [
            list(EpochSampler(n, shuffle=False, rank=r, world_size=world, pad=False))
            for r in range(world)
        ]
    ).astype(int)
    assert sorted(seen.tolist()) == list(range(n))
    lengths = [
        len(EpochSampler(n, shuffle=False, rank=r, world_size=world, pad=False))
        for r in range(world)
    ]
    assert lengths == [
        len(list(EpochSampler(n, shuffle=False, rank=r, world_size=world, pad=False)))
        for r in range(world)
    ]


@pytest.mark.parametrize("n,world", [(10, 2), (11, 2), (7, 3)])
def test_train_sampler_pads_to_equal_lengths_and_shuffles_by_epoch(n, world):
    samplers = [
        EpochSampler(n, shuffle=True, seed=3, rank=r, world_size=world) for r in range(world)
    ]
    lists = [list(s) for s in samplers]
    assert len({len(x) for x in lists}) == 1 and len(lists[0]) == len(samplers[0])
    assert set(np.concatenate(lists).tolist()) == set(range(n))  # union covers everything
    for s in samplers:
        s.set_epoch(1)
    lists1 = [list(s) for s in samplers]
    assert lists1 != lists  # a new order each epoch ...
    again = [
        list(EpochSampler(n, shuffle=True, seed=3, rank=r, world_size=world)) for r in range(world)
    ]
    assert again == lists  # ... and the same order for the same (seed, epoch)
    # the padded single-process-equivalent: concatenating ranks round-robin gives one permutation
    perm = np.random.default_rng([3, 0]).permutation(n)
    assert [lists[r][0] for r in range(world)] == perm[:world].tolist()


def test_resumable_loader_restarts_mid_epoch():
    data = list(range(10))
    sampler = EpochSampler(10, shuffle=True, seed=1)
    loader = ResumableDataLoader(data, sampler=sampler, batch_size=3)
    sampler.set_epoch(2)
    full = [b.tolist() for b in loader]
    it = iter(loader)
    first = [next(it).tolist(), next(it).tolist()]
    state = loader.state_dict()
    assert state == {"epoch": 2, "consumed": 2}

    sampler2 = EpochSampler(10, shuffle=True, seed=1)
    loader2 = ResumableDataLoader(data, sampler=sampler2, batch_size=3)
    loader2.load_state_dict(state)
    assert first + [b.tolist() for b in loader2] == full
    # the next epoch starts from its beginning
    sampler2.set_epoch(3)
    assert len(list(loader2)) == 4


def test_resumable_loader_end_of_epoch_state_moves_to_next_epoch():
    sampler = EpochSampler(6, shuffle=True, seed=0)
    loader = ResumableDataLoader(list(range(6)), sampler=sampler, batch_size=2)
    sampler.set_epoch(0)
    list(loader)
    loader2 = ResumableDataLoader(
        list(range(6)), sampler=EpochSampler(6, shuffle=True, seed=0), batch_size=2
    )
    loader2.load_state_dict(loader.state_dict())
    sampler.set_epoch(1)
    assert [b.tolist() for b in loader2] == [b.tolist() for b in loader]


def test_resumed_skip_applies_only_to_the_saved_epoch():
    """A state saved before the epoch's last batch (trainer.limit_train_batches stops it there,
    and the trainer then goes on with the next epoch) must not cut the next epoch short."""
    data = list(range(10))
    loader = ResumableDataLoader(data, sampler=EpochSampler(10, shuffle=True, seed=1), batch_size=3)
    loader.sampler.set_epoch(1)  # type: ignore[attr-defined]
    epoch1 = [b.tolist() for b in loader]
    loader2 = ResumableDataLoader(
        data, sampler=EpochSampler(10, shuffle=True, seed=1), batch_size=3
    )
    loader2.load_state_dict({"epoch": 0, "consumed": 2})  # epoch 0 limited to 2 of 4 batches
    loader2.sampler.set_epoch(1)  # type: ignore[attr-defined]  # the trainer's next epoch
    assert [b.tolist() for b in loader2] == epoch1
    assert loader2.state_dict() == {"epoch": 1, "consumed": 4}


def test_gather_predictions_deduplicates_padded_rows():
    index = torch.tensor([3, 1, 3, 0])
    scores = torch.arange(8.0).reshape(4, 2)
    labels = torch.tensor([[1, 0], [0, 1], [1, 0], [0, 0]])
    idx, sc, lab = gather_predictions(index, scores, labels)
    assert idx.tolist() == [0, 1, 3]
    np.testing.assert_array_equal(sc, [[6, 7], [2, 3], [0, 1]])
    assert lab.dtype == bool and lab.tolist() == [[False, False], [False, True], [True, False]]


DDP_SCRIPT = """
import json, sys
sys.path.insert(0, {root!r})
from hydra import compose, initialize_config_dir
from gifemo.runners.finetune import run as run_finetune
with initialize_config_dir(config_dir={conf!r}, version_base="1.3"):
    cfg = compose("train", overrides=sys.argv[1:])
metrics, objects = run_finetune(cfg)
if objects["trainer"].is_global_zero:
    json.dump(metrics, open(sys.argv[1].split("=", 1)[1] + "/m.json", "w"))
"""


@pytest.mark.slow
def test_two_gloo_processes_give_the_same_metrics_as_one(tmp_path):
    """2 CPU ranks × 2 GIFs per device == 1 rank × 4 GIFs: the same GIFs per step, clip draws and
    fc6 dropout masks keyed by GIF, rank losses whose average is the global-batch loss, every
    val/test GIF evaluated once. Only float summation order differs (the gradient all-reduce,
    per-rank partial sums), ~1e-7 relative on weights after 12 steps; AP only changes when that
    reorders two scores, so 1e-4 on mAP/F1 and 1e-4 relative on losses."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    script = tmp_path / "ddp_run.py"
    script.write_text(DDP_SCRIPT.format(root=str(root), conf=str(root / "conf")))
    common = [
        "experiment=finetune_tiny", f"paths.data_dir={tmp_path / 'data'}", "logger=none",
        "data.synthetic_size=tiny", "model.split.val_fraction=0.3", "model.feature_dropout=0.5",
        "model.freeze_epochs=1", "trainer.max_epochs=2", "model.eval_batch_size=3",
    ]  # fmt: skip
    runs = {
        "one": ["trainer=cpu", "model.batch_size=4"],
        "two": [
            "trainer=ddp",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            "model.batch_size=2",
        ],
    }
    metrics = {}
    for name, extra in runs.items():
        out = tmp_path / name
        out.mkdir()
        cmd = [sys.executable, str(script), f"paths.output_dir={out}", *common, *extra]
        subprocess.run(cmd, check=True, cwd=root, timeout=1500)
        metrics[name] = json.loads((out / "m.json").read_text())
    one, two = metrics["one"], metrics["two"]
    assert (
        one["val/n_gifs"] == two["val/n_gifs"] == 10
        and one["test/n_gifs"] == two["test/n_gifs"] == 8
    )
    for key in ("val/mAP", "val/f1_mean", "test/mAP", "test/f1_mean"):
        assert two[key] == pytest.approx(one[key], rel=0, abs=1e-4), key
    for key in ("val/loss", "test/loss", "train/loss_first_epoch", "train/loss_last_epoch"):
        assert two[key] == pytest.approx(one[key], rel=1e-4), key


def test_datamodule_takes_rank_and_world_size_from_the_trainer():
    from types import SimpleNamespace

    from gifemo.finetune.data import FinetuneDataModule

    recs = [SimpleNamespace(id=str(i), path=f"{i}.gif") for i in range(5)]
    labels = np.zeros((5, 17), np.float32)
    from gifemo.backbones.c3d import c3d_preprocessing

    dm = FinetuneDataModule(
        preprocessing=c3d_preprocessing(),
        train=(recs, labels),
        val=(recs, labels),
        num_workers=0,
        batch_size=1,
    )
    dm.trainer = SimpleNamespace(
        global_rank=1,
        world_size=2,
        _accelerator_connector=SimpleNamespace(use_distributed_sampler=False),
    )
    dm.setup("fit")
    perm = np.random.default_rng([0, 0]).permutation(5)
    padded = np.r_[perm, perm[:1]]  # 5 GIFs padded to 6 = 2 ranks × 3
    assert [k[1] for k in dm.train_dataloader().sampler] == padded[[1, 3, 5]].tolist()
    assert list(dm.val_dataloader().sampler) == [1, 3]
    dm.trainer._accelerator_connector.use_distributed_sampler = True
    with pytest.raises(ValueError, match="use_distributed_sampler"):
        dm.setup("fit")


def test_step_k_of_w_ranks_is_batch_k_of_one_process_with_padding_flagged():
    """Round-robin sharding: step k of W ranks × B GIFs = positions [kWB, (k+1)WB) of the padded
    permutation, i.e. batch k of one process with W·B GIFs; the padding repeats are flagged."""
    n, world, b = 11, 3, 2
    ranks = [
        list(EpochSampler(n, shuffle=True, seed=4, rank=r, world_size=world, with_epoch=True))
        for r in range(world)
    ]
    single = list(EpochSampler(n, shuffle=True, seed=4, with_epoch=True))
    assert [k[2] for k in single] == [False] * n
    steps = -(-len(ranks[0]) // b)
    for k in range(steps):
        union = [key for r in range(world) for key in ranks[r][k * b : (k + 1) * b]]
        real = sorted(key[1] for key in union if not key[2])
        assert real == sorted(key[1] for key in single[k * world * b : (k + 1) * world * b])
    pads = [key for rank in ranks for key in rank if key[2]]
    assert len(pads) == world - n % world and all(key[0] == 0 for key in pads)
