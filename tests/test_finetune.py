"""Fine-tuning: per-GIF averaging, loss, clip cache, module training/eval, resume, (slow) learning."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch
from PIL import Image

from gifemo.finetune.cache import ClipCache
from gifemo.finetune.data import FinetuneDataModule
from gifemo.finetune.module import mean_by_gif, positive_weights


def write_gif(path, n_frames=5, size=(40, 30), seed=0):
    rng = np.random.default_rng(seed)
    frames = [
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
        for _ in range(n_frames)
    ]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    return path


# -- per-GIF averaging and class weights --------------------------------------------------------
def test_mean_by_gif_matches_loop():
    g = torch.Generator().manual_seed(0)
    values = torch.randn(9, 4, generator=g)
    gif_index = torch.tensor([0, 0, 2, 2, 2, 3, 3, 3, 3])
    mean, counts = mean_by_gif(values, gif_index, 5)
    assert counts.tolist() == [2, 0, 3, 4, 0]
    for b in range(5):
        rows = values[gif_index == b]
        expected = rows.mean(0) if len(rows) else torch.zeros(4)
        torch.testing.assert_close(mean[b], expected)


def test_positive_weights_are_neg_over_pos():
    labels = np.zeros((10, 3), bool)
    labels[:2, 0] = True  # 2 pos / 8 neg
    labels[:5, 1] = True  # 5 / 5
    w = positive_weights(labels, max_weight=50)
    torch.testing.assert_close(w, torch.tensor([4.0, 1.0, 50.0]))


# -- clip cache ------------------------------------------------------------------------------
def test_cache_returns_resized_frames_and_hits_on_second_read(tmp_path):
    from gifemo.backbones.resize import resize_frames
    from gifemo.data.gif import read_gif

    gif = write_gif(tmp_path / "a.gif", n_frames=6)
    cache = ClipCache(tmp_path / "cache", max_mb=10)
    first = cache.get(gif)
    second = ClipCache(tmp_path / "cache", max_mb=10).get(gif)  # another worker / epoch
    expected = resize_frames(read_gif(gif).frames)
    assert not first.hit and second.hit
    assert second.resized.shape == (6, 128, 171, 3) and second.resized.dtype == np.uint8
    np.testing.assert_array_equal(first.resized, expected)
    np.testing.assert_array_equal(second.resized, expected)
    np.testing.assert_array_equal(second.delays_ms, read_gif(gif).delays_ms)
    assert not second.truncated
    assert not any(p.suffix == ".tmp" for p in (tmp_path / "cache").iterdir())


def test_cache_key_changes_when_the_file_changes(tmp_path):
    gif = write_gif(tmp_path / "a.gif", n_frames=3, seed=0)
    cache = ClipCache(tmp_path / "cache", max_mb=10)
    old = cache.get(gif).resized.copy()
    write_gif(gif, n_frames=4, seed=1)
    os.utime(gif, ns=(time.time_ns(), time.time_ns() + 10**9))
    new = cache.get(gif)
    assert not new.hit and new.resized.shape[0] == 4 and not np.array_equal(new.resized[:3], old)


def test_cache_respects_its_size_budget(tmp_path):
    one_entry_mb = 4 * 128 * 171 * 3 / 2**20  # 4 frames ≈ 0.25 MiB
    cache = ClipCache(tmp_path / "cache", max_mb=2.5 * one_entry_mb)
    gifs = [write_gif(tmp_path / f"{i}.gif", n_frames=4, seed=i) for i in range(4)]
    for g in gifs:
        assert cache.get(g).resized.shape[0] == 4
    assert cache.stats() == {"hits": 0, "misses": 4, "skipped": 2}
    assert cache.size_bytes() <= cache.max_bytes
    assert [cache.get(g).hit for g in gifs] == [True, True, False, False]
    off = ClipCache(tmp_path / "off", max_mb=0)
    off.get(gifs[0])
    assert off.size_bytes() == 0


def test_cache_reports_bad_gifs_like_read_gif(tmp_path):
    from gifemo.data.gif import GifDecodeError

    bad = tmp_path / "bad.gif"
    bad.write_bytes(b"GIF89a\x01")
    with pytest.raises(GifDecodeError, match=r"bad\.gif"):
        ClipCache(tmp_path / "cache").get(bad)


# -- dataset: GifClipDataset's cached path gives its decoding path's tensors ----------------------------------
class _Rec:
    def __init__(self, i, path):
        self.id, self.path = f"g{i}", path


def _records(tmp_path, n=6):
    return [
        _Rec(i, write_gif(tmp_path / f"g{i}.gif", n_frames=3 + 4 * i % 21, size=(32, 24), seed=i))
        for i in range(n)
    ]


@pytest.mark.parametrize("train", [True, False])
def test_cached_items_equal_decoded_items(tmp_path, train):
    from gifemo.backbones.c3d import C3DTransform
    from gifemo.data.clip_dataset import GifClipDataset
    from gifemo.data.clips import AllClips, RandomClip

    records = _records(tmp_path, 4)
    labels = np.eye(4, 17, dtype=np.float32)
    sampler = RandomClip(num_clips=2) if train else AllClips()
    kw = dict(sampler=sampler, transform=C3DTransform(train=train), labels=labels, seed=5)
    ref = GifClipDataset(records, **kw)
    cached = GifClipDataset(records, cache=ClipCache(tmp_path / "cache", max_mb=50), **kw)
    for key in [(0, 0), (3, 1), (1, 3), (1, 3, True)]:  # the last read is a cache hit
        a, b = ref[key], cached[key]
        assert a["error"] is None and b["error"] is None
        assert a["pad"] == b["pad"] == (len(key) == 3)
        assert a["mean_delay_ms"] == b["mean_delay_ms"] and a["truncated"] == b["truncated"]
        torch.testing.assert_close(a["clips"], b["clips"], rtol=0, atol=0)
        assert a["n_frames"] == b["n_frames"] and a["labels"].tolist() == b["labels"].tolist()
    assert cached.cache.stats()["hits"] >= 1
    bad = GifClipDataset(
        [_Rec(9, tmp_path / "missing.gif")], cache=cached.cache, **{**kw, "labels": None}
    )
    item = bad[0]
    assert item["clips"].shape[0] == 0 and "missing.gif" in item["error"]


@pytest.mark.parametrize("clip_dtype", ["uint8", "float32"])
def test_uncached_datamodule_decodes_bgr0_and_gives_the_rgb_decode_items(tmp_path, clip_dtype):
    """Without a cache the workers decode FFmpeg's bgr0 layout (no RGB conversion); the items
    (random clips, crops and flips at training; every clip at evaluation) are the RGB decode's
    byte for byte. The cache keeps RGB frames."""
    from gifemo.backbones.c3d import c3d_preprocessing

    records = _records(tmp_path, 5)
    labels = np.eye(5, 17, dtype=np.float32)
    common = dict(preprocessing=c3d_preprocessing(), train=(records, labels),
                  val=(records, labels), num_clips=3, seed=4, clip_dtype=clip_dtype)  # fmt: skip
    fast = FinetuneDataModule(**common)
    rgb = FinetuneDataModule(**common, read_kwargs={"pixel_format": "rgb24"})
    cached = FinetuneDataModule(**common, cache_dir=str(tmp_path / "cache"))
    assert cached.dataset("train").read_kwargs.get("pixel_format") is None
    for split in ("train", "val"):
        a, b = fast.dataset(split), rgb.dataset(split)
        assert a.read_kwargs["pixel_format"] == "bgr0" and b.read_kwargs["pixel_format"] == "rgb24"
        for key in [(0, 0), (1, 2), (2, 4), (0, 3, True)]:
            x, y = a[key], b[key]
            assert x["error"] is None and y["error"] is None and x["clips"].shape[0] > 0
            assert x["clips"].dtype == y["clips"].dtype
            torch.testing.assert_close(x["clips"], y["clips"], rtol=0, atol=0)
            assert x["n_frames"] == y["n_frames"] and x["mean_delay_ms"] == y["mean_delay_ms"]


def test_datamodule_trains_and_evaluates_on_its_clip_rule(tmp_path):
    """clips=fps reaches fine-tuning: evaluation uses the rule (FpsClips), training its random
    version (RandomFpsClip with num_clips); the default stays the paper's AllClips/RandomClip;
    a sampler without a training version is refused."""
    from gifemo.backbones.c3d import c3d_preprocessing
    from gifemo.data.clips import AllClips, FpsClips, RandomClip, RandomFpsClip
    from gifemo.data.gif import read_gif

    records = _records(tmp_path, 3)
    labels = np.eye(3, 17, dtype=np.float32)
    common = dict(preprocessing=c3d_preprocessing(), train=(records, labels),
                  val=(records, labels), num_clips=2, seed=1)  # fmt: skip
    rule = FpsClips(fps=4.0, clip_len=8, stride=4)
    dm = FinetuneDataModule(**common, clips=rule)
    train, val = dm.dataset("train"), dm.dataset("val")
    assert isinstance(train.sampler, RandomFpsClip) and val.sampler is rule
    assert (train.sampler.fps, train.sampler.clip_len, train.sampler.num_clips) == (4.0, 8, 2)
    gif = read_gif(records[1].path)
    item = val[1]
    assert item["clips"].shape[:3] == (rule.count(gif.n_frames, gif.delays_ms), 3, 8)
    assert train[(0, 1)]["clips"].shape[:3] == (2, 3, 8)
    default = FinetuneDataModule(**common)
    assert type(default.dataset("val").sampler) is AllClips
    assert type(default.dataset("train").sampler) is RandomClip
    with pytest.raises(ValueError, match="training sampler"):
        FinetuneDataModule(**common, clips=RandomClip())


def test_datamodule_sends_uint8_clips_and_module_normalises_them(tmp_path):
    from gifemo.finetune.data import FinetuneDataModule

    records = [_Rec(9, tmp_path / "missing.gif"), *_records(tmp_path, 4)]  # a failure first
    labels = np.eye(5, 17, dtype=np.float32)
    from gifemo.backbones.c3d import c3d_preprocessing

    kw = dict(train=(records, labels), val=(records, labels), batch_size=5, num_workers=0)
    kw["preprocessing"] = c3d_preprocessing()
    raw = next(iter(FinetuneDataModule(**kw).val_dataloader()))  # default clip_dtype: uint8
    ref = next(iter(FinetuneDataModule(clip_dtype="float32", **kw).val_dataloader()))
    assert raw["clips"].dtype == torch.uint8 and ref["clips"].dtype == torch.float32
    assert [f["id"] for f in raw["failures"]] == ["g9"] and len(raw["clips"]) > 0
    module = _module().eval()
    with torch.no_grad():
        a, na = module.gif_logits(raw)
        b, nb = module.gif_logits(ref)
    assert torch.equal(na, nb) and torch.equal(a, b)  # the same model inputs, bit for bit
    with pytest.raises(ValueError, match="clip_dtype must be 'uint8' or 'float32'"):
        FinetuneDataModule(clip_dtype="half", **kw)


# -- the module ------------------------------------------------------------------------------
def _module(d=8, t=17, **kw):
    import functools

    from gifemo.backbones.c3d import build_c3d
    from gifemo.finetune.module import FinetuneModule
    from gifemo.models.heads import MultiTaskHead

    with pytest.warns(UserWarning, match="RANDOM"):
        backbone = build_c3d(channels=(2, 2, 2, 2, 2), fc_dim=d, drop_fc8=True, init_seed=0)
    head = MultiTaskHead(d, t)
    torch.nn.init.normal_(head.W, std=0.5, generator=torch.Generator().manual_seed(1))
    opt = functools.partial(torch.optim.SGD)
    return FinetuneModule(backbone, head, kw.pop("penalty", None), optimizer=opt, **kw)


def _batch(n_clips=(2, 0, 3), t=17, seed=0):
    g = torch.Generator().manual_seed(seed)
    clips = torch.randn(sum(n_clips), 3, 16, 112, 112, generator=g)
    gif_index = torch.repeat_interleave(torch.arange(len(n_clips)), torch.tensor(n_clips))
    labels = (torch.rand(len(n_clips), t, generator=g) < 0.3).float()
    return {
        "clips": clips,
        "gif_index": gif_index,
        "index": torch.arange(len(n_clips)),
        "labels": labels,
        "failures": [],
    }


def test_gif_logits_average_clips_and_equal_head_of_mean_fc6():
    m = _module(eval_chunk=2).eval()
    batch = _batch()
    logits, counts = m.gif_logits(batch)
    assert counts.tolist() == [2, 0, 3]
    with torch.no_grad():
        fc6 = m.backbone.features(batch["clips"])
        for b in (0, 2):
            mean_fc6 = fc6[batch["gif_index"] == b].mean(0, keepdim=True)
            torch.testing.assert_close(logits[b : b + 1], m.head(mean_fc6), rtol=1e-5, atol=1e-5)


def test_loss_is_weighted_bce_plus_penalty():
    from gifemo.models.penalties import TraceNorm

    pw = torch.linspace(0.5, 3.0, 17)
    m = _module(pos_weight=pw, penalty=TraceNorm(0.01))
    g = torch.Generator().manual_seed(0)
    z, y = torch.randn(4, 17, generator=g), (torch.rand(4, 17, generator=g) < 0.3).float()
    naive = 0.0
    for n in range(4):
        for e in range(17):
            p = torch.sigmoid(z[n, e])
            naive += -(pw[e] * y[n, e] * torch.log(p) + (1 - y[n, e]) * torch.log(1 - p))
    naive = naive / 68 + 0.01 * torch.linalg.svdvals(m.head.W.detach()).sum()
    torch.testing.assert_close(m.loss(z, y), naive, rtol=1e-5, atol=1e-6)


def test_frozen_backbone_gets_no_gradient_then_trains():
    m = _module(freeze_epochs=1, feature_dropout=0.0).train()
    batch = _batch((1, 1))
    logits, _ = m.gif_logits(batch)  # epoch 0 < freeze_epochs (no trainer: epoch 0)
    m.loss(logits, batch["labels"]).backward()
    assert all(p.grad is None for p in m.backbone.parameters())
    assert m.head.W.grad is not None and m.head.W.grad.abs().sum() > 0
    m.freeze_epochs = 0
    logits, _ = m.gif_logits(batch)
    m.loss(logits, batch["labels"]).backward()
    assert m.backbone.conv1.weight.grad is not None and m.backbone.conv1.weight.grad.abs().sum() > 0


def test_module_drops_unused_fc7_and_checks_shapes():
    m = _module()
    assert m.backbone.fc7 is None
    names = {n for n, _ in m.named_parameters()}
    assert not any(n.startswith(("backbone.fc7", "backbone.fc8")) for n in names)
    with pytest.raises(ValueError, match="pos_weight"):
        _module(pos_weight=torch.ones(3))
    groups = m.parameter_groups()
    assert [g["name"] for g in groups] == ["backbone", "head"]


# -- exact resume ----------------------------------------------------------------------------
def _fit(
    tmp_path,
    records,
    labels,
    max_steps,
    *,
    ckpt_path=None,
    ckpt_dir="ckpt",
    freeze=100,
    n_train=4,
    **trainer_kw,
):
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    from gifemo.finetune.data import FinetuneDataModule

    L.seed_everything(0, verbose=False)
    # backbone lr small enough that the random tiny C3D survives its first update (0.05 killed
    # every ReLU with some dropout masks: steps 4-5 then changed nothing)
    m = _module(lr=0.005, head_lr=0.2, feature_dropout=0.3, seed=3, freeze_epochs=freeze)
    dm = FinetuneDataModule(
        preprocessing=m.backbone.preprocessing,
        train=(records[:n_train], labels[:n_train]), val=(records[n_train:], labels[n_train:]),
        batch_size=2,
        eval_batch_size=4, num_workers=0, cache_dir=str(tmp_path / "cache"), seed=7,
    )  # fmt: skip
    every = ModelCheckpoint(
        dirpath=tmp_path / ckpt_dir, every_n_train_steps=1, save_top_k=-1, filename="{step}"
    )
    trainer = L.Trainer(
        accelerator="cpu", max_steps=max_steps, logger=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, callbacks=[every], deterministic=True,
        **trainer_kw,
    )  # fmt: skip
    trainer.fit(m, datamodule=dm, ckpt_path=ckpt_path)
    return m


def _check_resume(tmp_path, freeze):
    records = [
        _Rec(i, write_gif(tmp_path / f"r{i}.gif", n_frames=2 + 3 * i, size=(20, 16), seed=i))
        for i in range(5)
    ]
    labels = (np.random.default_rng(0).random((5, 17)) < 0.4).astype(np.float32)
    # 4 training GIFs, batch 2 → 2 steps per epoch; stop at step 3 (mid epoch 1), go on to 5
    full = _fit(tmp_path, records, labels, 5, ckpt_dir="full", freeze=freeze)
    part = _fit(tmp_path, records, labels, 3, ckpt_dir="part", freeze=freeze)
    assert not torch.equal(part.head.W, full.head.W)  # so the comparison below can fail
    if freeze <= 1:  # the backbone trains in steps 4-5 too (a dead network would not move it)
        assert not torch.equal(part.backbone.conv1.weight, full.backbone.conv1.weight)
    ckpt = tmp_path / "part" / "step=3.ckpt"
    resumed = _fit(tmp_path, records, labels, 5, ckpt_path=ckpt, ckpt_dir="res", freeze=freeze)
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_resume_mid_epoch_gives_the_same_weights(tmp_path):
    """Head training on a frozen tiny C3D (fast): sampler order, clip/crop/flip draws, dropout
    masks, optimiser state and the mid-epoch loader restart all have to match."""
    _check_resume(tmp_path, freeze=100)


def test_resume_after_a_limited_epoch_trains_the_next_epoch_whole(tmp_path):
    """trainer.limit_train_batches=2 of 3 batches: the checkpoint after epoch 0's last step
    records 2 batches consumed; the resumed run's epoch 1 must still start at its first batch."""
    records = [
        _Rec(i, write_gif(tmp_path / f"r{i}.gif", n_frames=2 + 3 * i, size=(20, 16), seed=i))
        for i in range(7)
    ]
    labels = (np.random.default_rng(0).random((7, 17)) < 0.4).astype(np.float32)
    kw = {"n_train": 6, "limit_train_batches": 2, "limit_val_batches": 0}
    full = _fit(tmp_path, records, labels, 4, ckpt_dir="full", **kw)
    ckpt = tmp_path / "full" / "step=2.ckpt"
    resumed = _fit(tmp_path, records, labels, 4, ckpt_path=ckpt, ckpt_dir="res", **kw)
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_resume_mid_epoch_keeps_the_history_and_the_epoch_loss(tmp_path):
    """finetune_history.json and train/loss_{first,last}_epoch of a resumed run: the earlier
    epochs' rows, and the resumed epoch's loss over all its batches (not only those after the
    restart), as an uninterrupted run has them."""
    records = [
        _Rec(i, write_gif(tmp_path / f"r{i}.gif", n_frames=2 + 3 * i, size=(20, 16), seed=i))
        for i in range(7)
    ]
    labels = (np.random.default_rng(0).random((7, 17)) < 0.4).astype(np.float32)
    kw = {"n_train": 6, "limit_val_batches": 0}  # 3 steps per epoch; step 4 is mid epoch 1
    full = _fit(tmp_path, records, labels, 6, ckpt_dir="full", **kw)
    resumed = _fit(
        tmp_path, records, labels, 6, ckpt_path=tmp_path / "full" / "step=4.ckpt", ckpt_dir="res",
        **kw,
    )  # fmt: skip

    assert [h["epoch"] for h in full.history] == [0.0, 1.0]
    assert [h["epoch"] for h in resumed.history] == [0.0, 1.0]
    for a, b in zip(full.history, resumed.history, strict=True):
        assert b["train/loss"] == pytest.approx(a["train/loss"], rel=1e-6)


@pytest.mark.slow
def test_resume_with_trainable_backbone_gives_the_same_weights(tmp_path):
    """The same with the backbone fine-tuned from epoch 1 (backward through C3D is slow on CPU)."""
    _check_resume(tmp_path, freeze=1)


# -- a short CPU fine-tuning run on the generated GIFGIF+-style data --------------------------
def random_ranking_map(labels: np.ndarray) -> float:
    """Expected mAP of a uniformly random ranking (closed form), over emotions with a positive.

    For n GIFs with k positives, a positive at rank r (uniform on 1..n) has precision
    (1 + (r − 1)(k − 1)/(n − 1)) / r in expectation, so E[AP] = (H_n + (k − 1)/(n − 1)·(n − H_n)) / n
    with H_n the harmonic number. For small n this is well above the positive rate k/n (e.g.
    k = 1 of 10: 0.29, not 0.1), which is why the positive rate is not the chance level here.
    """
    n = labels.shape[0]
    k = labels.sum(0)[labels.any(0)].astype(float)
    h = (1.0 / np.arange(1, n + 1)).sum()
    return float(((h + (k - 1) / (n - 1) * (n - h)) / n).mean())


def test_random_ranking_map_matches_monte_carlo():
    from gifemo.eval.multilabel import average_precision

    rng = np.random.default_rng(0)
    labels = rng.random((12, 5)) < 0.25
    labels[:, 4] = False  # an emotion without positives is left out, as in val/mAP
    mc = np.mean(
        [np.nanmean(average_precision(rng.random(labels.shape), labels)) for _ in range(4000)]
    )
    assert random_ranking_map(labels) == pytest.approx(mc, abs=0.01)
    assert random_ranking_map(labels) > labels.mean(0)[:4].mean() + 0.05


def _run(tmp_path, name, *extra):
    from hydra import compose, initialize_config_dir

    from gifemo.runners.finetune import run as run_finetune

    conf = str(__import__("pathlib").Path(__file__).resolve().parents[1] / "conf")
    # 120 tiny GIFs: 67 train / 29 val / 24 test. Two epochs on frozen random C3D features, then
    # two with the whole network trained (backbone lr 1e-4, head 1e-2).
    overrides = [
        "experiment=finetune_tiny", f"paths.data_dir={tmp_path / 'data'}",
        f"paths.output_dir={tmp_path / name}", "logger=none",
        "data.synthetic_size={base: tiny, n_gifgif_plus: 120}", "model.split.val_fraction=0.3",
        "model.freeze_epochs=2", "model.lr=1e-4", "trainer.max_epochs=4", *extra,
    ]  # fmt: skip
    with initialize_config_dir(config_dir=conf, version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    return run_finetune(cfg)


@pytest.mark.slow
def test_finetuning_learns_and_is_reproducible(tmp_path):
    """Training loss falls, and validation mAP beats a random ranking: by 0.05 over its expected
    value and above the 95th percentile of 1000 random rankings (p < 0.05) of the val labels."""
    from gifemo.eval.multilabel import average_precision

    m1, o1 = _run(tmp_path, "a")
    losses = [h["train/loss"] for h in o1["history"]]
    assert len(losses) == 4 and losses[-1] < losses[2] < losses[0], losses
    val_labels = o1["datamodule"].splits["val"][1].astype(bool)
    chance = random_ranking_map(val_labels)
    rng = np.random.default_rng(0)
    null = [
        np.nanmean(average_precision(rng.random(val_labels.shape), val_labels)) for _ in range(1000)
    ]
    assert m1["val/mAP"] > chance + 0.05, (m1["val/mAP"], chance)
    assert m1["val/mAP"] > np.quantile(null, 0.95), (m1["val/mAP"], np.quantile(null, 0.95))
    assert m1["test/n_gifs"] == 24 and np.isfinite(m1["test/f1_mean"])

    m2, o2 = _run(tmp_path, "b")
    assert m1.keys() == m2.keys()
    np.testing.assert_equal([m1[k] for k in sorted(m1)], [m2[k] for k in sorted(m1)])  # NaN == NaN
    w1 = o1["module"].state_dict()
    for name, value in o2["module"].state_dict().items():
        torch.testing.assert_close(value, w1[name], rtol=0, atol=0, msg=name)


# -- DDP equals one big batch ----------------------------------------------------------------
def test_dropout_masks_depend_on_the_gif_and_clip_not_on_the_batch():
    from gifemo.finetune.dropout import dropout_keep_mask

    a = dropout_keep_mask(1, 2, torch.tensor([5, 9]), torch.tensor([0, 0, 1]), 4000, 0.3)
    b = dropout_keep_mask(1, 2, torch.tensor([7, 5]), torch.tensor([0, 1, 1, 1]), 4000, 0.3)
    assert a.shape == (3, 4000) and a.dtype == torch.bool
    torch.testing.assert_close(a[0], b[1])  # GIF 5, clip 0, in another batch and position
    torch.testing.assert_close(a[1], b[2])  # GIF 5, clip 1
    assert not torch.equal(a[0], a[1]) and not torch.equal(a[0], a[2])
    other_epoch = dropout_keep_mask(1, 3, torch.tensor([5]), torch.tensor([0]), 4000, 0.3)
    assert not torch.equal(a[0], other_epoch[0])
    assert abs(a.float().mean().item() - 0.7) < 0.02


def _sub_batch(batch, gifs, pad=()):
    """The GIFs ``gifs`` (positions in ``batch``) as their own batch; ``pad`` positions weigh 0."""
    rows = [torch.nonzero(batch["gif_index"] == g).flatten() for g in gifs]
    return {
        "clips": torch.cat([batch["clips"][r] for r in rows]),
        "gif_index": torch.repeat_interleave(
            torch.arange(len(gifs)), torch.tensor([len(r) for r in rows])
        ),
        "index": batch["index"][list(gifs)],
        "labels": batch["labels"][list(gifs)],
        "weight": torch.tensor([0.0 if g in pad else 1.0 for g in gifs]),
        "failures": [],
    }


@pytest.mark.filterwarnings("ignore:You are trying to `self.log")
def test_rank_losses_average_to_the_one_process_gradient():
    """Emulates DDP (W=2): the mean of the ranks' gradients of L_r equals the gradient of one
    process on the union batch — with unequal valid GIFs per rank (a decode failure, a padding
    repeat), two clips per GIF, fc6 dropout and a penalty; a per-rank mean loss would not. The
    backbone is frozen to keep the test fast (backward through conv3d on CPU takes seconds); its
    gradient is the chain rule through the same head gradients."""
    from gifemo.models.penalties import TraceNorm

    batch = _batch((2, 2, 0, 2, 2), seed=3)  # GIF 2 failed to decode
    batch["index"] = torch.tensor([4, 0, 7, 2, 9])

    def grads(m, b, world, total):
        m.zero_grad()
        m._world_size = lambda: world
        m._all_sum = lambda x: torch.stack([torch.tensor(total), x[1]])
        m.training_step(b, 0).backward()
        return [p.grad.clone() for p in m.head.parameters()]

    m = _module(feature_dropout=0.5, penalty=TraceNorm(0.01), seed=5, freeze_epochs=1).train()
    one = grads(m, _sub_batch(batch, [0, 1, 2, 3, 4]), 1, 4.0)
    # rank 0: GIFs 0, 2 (failed), 4; rank 1: GIFs 1, 3 and a padding repeat of GIF 0
    r0 = grads(m, _sub_batch(batch, [0, 2, 4]), 2, 4.0)
    r1 = grads(m, _sub_batch(batch, [1, 3, 0], pad=(0,)), 2, 4.0)
    for g, a, b in zip(one, r0, r1, strict=True):
        torch.testing.assert_close((a + b) / 2, g, rtol=1e-5, atol=1e-7)  # float order
    assert all(p.grad is None for p in m.backbone.parameters())
    # the per-rank mean (what DDP computes from plain mean losses) differs: the check can fail
    mean_loss = [_sub_batch(batch, [0, 4]), _sub_batch(batch, [1, 3, 0])]  # pad counted
    naive = []
    for b in mean_loss:
        m.zero_grad()
        logits, _ = m.gif_logits(b)
        m.loss(logits, b["labels"]).backward()
        naive.append(m.head.W.grad.clone())
    assert not torch.allclose((naive[0] + naive[1]) / 2, one[0], rtol=1e-3, atol=1e-5)


def test_training_hands_every_batch_back_to_its_worker(tmp_path):
    """Under a real Trainer with a worker process, FinetuneModule hands each batch's shared
    buffer back after its step: 8 steps on 4 slots, every batch in a slot's buffer (without
    the hand-back the fifth would need a fresh segment), and none held at the end."""
    import lightning as L
    from lightning.pytorch.callbacks import Callback

    from gifemo.data.worker_batches import SharedBuffers
    from gifemo.finetune.data import FinetuneDataModule

    records = _records(tmp_path, n=8)
    labels = (np.arange(8 * 17).reshape(8, 17) % 3 == 0).astype(np.float32)
    m = _module(lr=0.005, head_lr=0.2)
    dm = FinetuneDataModule(preprocessing=m.backbone.preprocessing, train=(records, labels),
                            val=(records[:2], labels[:2]), batch_size=2, num_workers=1,
                            prefetch_factor=1, persistent_workers=False)  # fmt: skip
    loader = dm.loader("train")
    buffers = loader.collate_fn.buffers
    assert buffers.per_worker == 4
    tickets = []

    class Seen(Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            tickets.append(batch.get(SharedBuffers.KEY))

    trainer = L.Trainer(accelerator="cpu", max_epochs=2, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False,
                        callbacks=[Seen()])  # fmt: skip
    trainer.fit(m, train_dataloaders=loader)
    assert len(tickets) == 8 and None not in tickets
    assert not buffers.state.any()  # all handed back
