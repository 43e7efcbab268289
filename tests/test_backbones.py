"""The backbone protocol: every conf/backbone option, preprocessing against independent
references, extraction / store identity / fine-tuning through the protocol only, and the
command lines of issue 10 (``extract.py ... backbone=r2plus1d_18``, ``train.py``,
``model=finetune backbone=r2plus1d_18``)."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from gifemo.backbones import Preprocessing, VideoBackbone
from gifemo.backbones.c3d import build_c3d, c3d_preprocessing
from gifemo.backbones.r2plus1d import build_r2plus1d_18, kinetics400_preprocessing
from gifemo.backbones.weights import WeightsError, load_checked
from gifemo.data.clips import AllClips, RandomClip
from gifemo.data.gif import read_gif
from tests.gifmaker import moving_frames, pillow_gif

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
KINETICS_MEAN = np.array([0.43216, 0.394666, 0.37645])
KINETICS_STD = np.array([0.22803, 0.22145, 0.216989])
BACKBONES = sorted(p.stem for p in (CONF / "backbone").glob("*.yaml"))
FAST = {"c3d_tiny", "r2plus1d_tiny"}


def quiet(build, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build(**kw)


def tiny_r2plus1d(**kw):
    return quiet(build_r2plus1d_18, widths=(4, 8, 8, 16), stem_mid=3, **kw)


def tiny_c3d(**kw):
    return quiet(build_c3d, channels=(4, 8, 8, 16, 16), fc_dim=32, **kw)


def coordinate_frames(t: int, h: int = 128, w: int = 171) -> np.ndarray:
    """(t, h, w, 3) RGB frames whose pixels encode (R, G, B) = (row, col, 10·frame)."""
    rows, cols = np.mgrid[0:h, 0:w]
    out = np.empty((t, h, w, 3), np.uint8)
    out[..., 0], out[..., 1] = rows, cols
    out[..., 2] = (10 * np.arange(t))[:, None, None]
    return out


# -- every backbone option is a VideoBackbone --------------------------------------------------
@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=[] if n in FAST else pytest.mark.slow) for n in BACKBONES]
)
def test_every_backbone_config_builds_a_video_backbone(name):
    with initialize_config_dir(config_dir=str(CONF / "backbone"), version_base="1.3"):
        cfg = compose(name)
    model = quiet(instantiate, config=cfg)
    assert isinstance(model, VideoBackbone)
    assert model.weights_id == "random:0"
    json.dumps(model.identity())  # plain data, recorded by stores
    frames = moving_frames(20, 40, 60, seed=1)
    clips = model.preprocessing.transform()(frames, AllClips()(20))  # (2, 3, 16, 112, 112)
    assert clips.shape == (2, 3, 16, 112, 112) and clips.dtype == torch.float32
    with torch.no_grad():
        f = model.eval().features(clips)
    assert f.shape == (2, model.feature_dim) and torch.isfinite(f).all()
    model.drop_classifier()
    assert all(getattr(model, n) is None for n in model.classifier_layers)
    with torch.no_grad():
        assert torch.equal(model.features(clips), f)  # features do not use the classifier


def test_each_backbone_carries_its_own_preprocessing():
    c3d, r21d = tiny_c3d(), tiny_r2plus1d()
    assert c3d.preprocessing == c3d_preprocessing()
    assert r21d.preprocessing == kinetics400_preprocessing()
    a, b = c3d.preprocessing.describe(), r21d.preprocessing.describe()
    assert (a["channel_order"], a["centre"], a["divisor"]) == ("BGR", [8, 29], 1.0)
    assert (b["channel_order"], b["centre"], b["divisor"]) == ("RGB", [8, 30], 255.0)
    assert b["mean"] == KINETICS_MEAN.tolist() and b["std"] == KINETICS_STD.tolist()
    assert c3d.describe()["feature"] == "fc6 after ReLU" and r21d.describe()["feature_dim"] == 16


# -- Kinetics-400 preprocessing against a naive reference --------------------------------------
def naive_kinetics(resized: np.ndarray, frames: np.ndarray, top: int, left: int, flip: bool):
    """torchvision's VideoClassification steps after the resize, in float64, one clip."""
    x = resized[frames, top : top + 112, left : left + 112, :].astype(np.float64)  # (T, h, w, RGB)
    if flip:
        x = x[:, :, ::-1]
    x = (x / 255.0 - KINETICS_MEAN) / KINETICS_STD
    return x.transpose(3, 0, 1, 2)  # (C, T, h, w)


def test_kinetics_eval_crop_is_torchvisions_centre_rgb_normalised():
    frames = coordinate_frames(25)
    clips = AllClips()(25)
    x = kinetics400_preprocessing().transform().from_resized(frames, clips)
    assert x.shape == (3, 3, 16, 112, 112) and x.dtype == torch.float32
    # R = row 8.., G = col 30.. (torchvision's center_crop rounds 29.5 to 30; C3D takes 29)
    rows = (np.arange(8, 120) / 255.0 - KINETICS_MEAN[0]) / KINETICS_STD[0]
    cols = (np.arange(30, 142) / 255.0 - KINETICS_MEAN[1]) / KINETICS_STD[1]
    np.testing.assert_allclose(x[0, 0, 0, :, 0].numpy(), rows, rtol=0, atol=1e-6)
    np.testing.assert_allclose(x[0, 1, 0, 0, :].numpy(), cols, rtol=0, atol=1e-6)
    for k in range(3):
        ref = naive_kinetics(frames, clips.frames[k], 8, 30, False)
        np.testing.assert_allclose(x[k].numpy(), ref, rtol=0, atol=1e-6)


def test_kinetics_train_crops_and_flips_equal_naive():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (19, 128, 171, 3), dtype=np.uint8)
    clips = RandomClip(num_clips=6)(19, torch.Generator().manual_seed(1))
    t = kinetics400_preprocessing().transform(train=True)
    x = t.from_resized(frames, clips, torch.Generator().manual_seed(5))
    windows = t.windows(6, torch.Generator().manual_seed(5))
    assert 0 < windows[:, 2].sum() < 6  # some clips flipped, some not
    for k, (top, left, flip) in enumerate(windows):
        ref = naive_kinetics(frames, clips.frames[k], top, left, bool(flip))
        np.testing.assert_allclose(x[k].numpy(), ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "pre", [c3d_preprocessing(), kinetics400_preprocessing()], ids=["c3d", "k400"]
)
@pytest.mark.parametrize("train", [False, True])
def test_uint8_fast_path_is_bit_identical(pre, train):
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (21, 128, 171, 3), dtype=np.uint8)
    clips = RandomClip(num_clips=5)(21, torch.Generator().manual_seed(2))
    ref = pre.transform(train=train).from_resized(frames, clips, torch.Generator().manual_seed(9))
    raw = pre.transform(train=train, output="uint8").from_resized(
        frames, clips, torch.Generator().manual_seed(9)
    )
    assert raw.dtype == torch.uint8 and raw.shape == ref.shape
    assert torch.equal(pre.normalize(raw), ref)
    assert pre.normalize(ref) is ref


def test_decoded_frames_path_equals_resized_path():
    frames = moving_frames(18, 50, 70, seed=3)
    pre = kinetics400_preprocessing()
    from gifemo.backbones.resize import resize_frames

    clips = AllClips()(18)
    direct = pre.transform()(frames, clips)
    assert torch.equal(direct, pre.transform().from_resized(resize_frames(frames), clips))


def test_preprocessing_rejects_what_cannot_work(tmp_path):
    base = dict(name="x", resize_hw=(128, 171), crop=112, channel_order="RGB", divisor=1.0)
    base |= dict(mean=(0, 0, 0))
    with pytest.raises(ValueError, match=r"112×112 crop at \(20, 30\) does not fit .*\(128, 171\)"):
        Preprocessing(**base, centre=(20, 30))
    with pytest.raises(ValueError, match="channel_order must be RGB or BGR"):
        Preprocessing(**{**base, "channel_order": "GBR"}, centre=(8, 30))
    with pytest.raises(ValueError, match="std and divisor must be > 0"):
        Preprocessing(**base, centre=(8, 30), std=(1, 0, 1))
    np.save(tmp_path / "cube.npy", np.zeros((16, 128, 171, 3), np.float32))
    with pytest.raises(ValueError, match="mean cube is for C3D"):
        Preprocessing(
            **base, centre=(8, 30), std=(0.5, 0.5, 0.5), mean_cube=str(tmp_path / "cube.npy")
        )
    with pytest.raises(ValueError, match="resized frames must be \\(T, 128, 171, 3\\)"):
        kinetics400_preprocessing().transform().from_resized(
            np.zeros((4, 112, 112, 3), np.uint8), AllClips()(4)
        )


# -- the one weight loader ---------------------------------------------------------------------
def test_load_checked_lists_every_problem_and_copies_nothing():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    bad = {k: torch.ones_like(v) for k, v in model.state_dict().items()}
    bad.pop("1.running_var")
    bad["0.weight"] = torch.ones(4, 2)
    bad["2.weight"] = torch.ones(1)
    with pytest.raises(WeightsError) as e:
        load_checked(model, bad, source="w.pth", arch="Seq")
    msg = str(e.value)
    assert "w.pth does not fit Seq" in msg and "missing keys ['1.running_var']" in msg
    assert "unexpected keys ['2.weight']" in msg and "0.weight: expected (4, 3), got (4, 2)" in msg
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


# -- extraction, store identity and fine-tuning go through the protocol ------------------------
class _Rec:
    def __init__(self, id: str, path: Path) -> None:
        self.id, self.path = id, path


def _gifs(folder: Path, frames=(5, 17, 30)) -> list[_Rec]:
    folder.mkdir(parents=True, exist_ok=True)
    return [
        _Rec(f"g{i}", pillow_gif(folder / f"g{i}.gif", moving_frames(t, 30, 44, seed=i)))
        for i, t in enumerate(frames)
    ]


def test_extraction_through_the_protocol_records_identity_and_equals_naive(tmp_path):
    from gifemo.features.extract import extract_features

    recs = _gifs(tmp_path / "gifs", frames=(5, 17))  # 1 + 2 clips
    model = tiny_r2plus1d(drop_fc=True).eval()
    store = extract_features(
        recs, tmp_path / "store", model=model, batch_clips=2, num_workers=0, precision="32",
        device="cpu", progress=False, channels_last=False,
    )  # fmt: skip
    assert store.visual.shape == (2, 16)
    np.testing.assert_allclose(np.linalg.norm(store.visual, axis=1), 1.0, rtol=1e-6)
    meta = store.meta
    assert meta["weights_id"] == "random:0"
    assert meta["backbone"]["class"] == "gifemo.backbones.r2plus1d.R2Plus1D18"
    assert meta["preprocessing"]["name"] == "kinetics400"
    assert (
        meta["preprocessing"]["channel_order"] == "RGB" and meta["preprocessing"]["train"] is False
    )
    transform = model.preprocessing.transform()
    for i, r in enumerate(recs):  # naive: decode, all clips, the backbone's transform, mean, L2
        frames = read_gif(r.path).frames
        with torch.no_grad():
            f = model.features(transform(frames, AllClips()(len(frames)))).double().mean(0)
        np.testing.assert_allclose(store.visual[i], (f / f.norm()).numpy(), rtol=1e-4, atol=1e-6)
    # another backbone or seed is another identity (never mixed in one store)
    other = extract_features(
        recs[:1], tmp_path / "other", model=tiny_r2plus1d(init_seed=1).eval(), num_workers=0,
        precision="32", device="cpu", progress=False,
    )  # fmt: skip
    assert other.meta["fingerprint"] != meta["fingerprint"]
    assert other.meta["weights_id"] == "random:1"


def test_finetune_module_and_data_use_the_backbones_preprocessing(tmp_path):
    import functools

    from gifemo.finetune.data import FinetuneDataModule
    from gifemo.finetune.module import FinetuneModule
    from gifemo.models.heads import MultiTaskHead

    backbone = tiny_r2plus1d()
    module = FinetuneModule(
        backbone, MultiTaskHead(16, 17), optimizer=functools.partial(torch.optim.SGD)
    ).eval()
    assert backbone.fc is None  # dropped: no unused parameters under DDP
    recs = _gifs(tmp_path / "gifs", frames=(5, 17))
    labels = np.eye(2, 17, dtype=np.float32)
    kw = dict(train=(recs, labels), val=(recs, labels), batch_size=2, num_workers=0)
    dm = FinetuneDataModule(preprocessing=backbone.preprocessing, **kw)
    raw = next(iter(dm.val_dataloader()))
    ref = next(iter(FinetuneDataModule(preprocessing=backbone.preprocessing, clip_dtype="float32", **kw).val_dataloader()))  # fmt: skip
    assert raw["clips"].dtype == torch.uint8 and ref["clips"].dtype == torch.float32
    assert torch.equal(backbone.preprocessing.normalize(raw["clips"]), ref["clips"])
    with torch.no_grad():
        a, _ = module.gif_logits(raw)
        b, _ = module.gif_logits(ref)
    assert torch.equal(a, b)


# -- the command lines of issue 10 -------------------------------------------------------------
def test_extract_config_with_a_tiny_r2plus1d(tmp_path):
    """``extract.py data=folder data.root=DIR backbone=r2plus1d_tiny``, in process (fast)."""
    from gifemo.runners.extract import extract

    _gifs(tmp_path / "folder", frames=(4, 12))
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "extract",
            overrides=[
                "data=folder", f"data.root={tmp_path / 'folder'}", "backbone=r2plus1d_tiny",
                f"paths.data_dir={tmp_path / 'data'}", "extract.num_workers=0",
                "extract.progress=false", "extract.device=cpu", "extract.precision=32",
            ],
        )  # fmt: skip
    store = quiet(extract, cfg=cfg)
    assert store.visual.shape == (2, 16) and store.meta["weights_id"] == "random:0"
    np.testing.assert_allclose(np.linalg.norm(store.visual, axis=1), 1.0, rtol=1e-6)
    assert store.meta["preprocessing"]["name"] == "kinetics400"
    assert store.meta["backbone_config"]["_target_"].endswith("build_r2plus1d_18")


def _run(args: list[str], tmp_path: Path, name: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, *args, f"hydra.run.dir={tmp_path / name}"]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def _extract_then_train(tmp_path: Path, backbone: str, dim: int) -> None:
    from gifemo.features.store import FeatureStore

    _gifs(tmp_path / "folder", frames=(4, 12, 20))
    out = _run(
        ["extract.py", "data=folder", f"data.root={tmp_path / 'folder'}", f"backbone={backbone}",
         f"extract.out_dir={tmp_path / 'store'}", "extract.num_workers=0", "extract.progress=false",
         "extract.device=cpu", f"paths.data_dir={tmp_path / 'data'}"],
        tmp_path, "extract",
    )  # fmt: skip
    assert "random:0" in out.stdout
    store = FeatureStore.open(tmp_path / "store")
    assert store.visual.shape == (3, dim)
    np.testing.assert_allclose(np.linalg.norm(store.visual, axis=1), 1.0, rtol=1e-6)
    assert store.meta["preprocessing"]["name"] == "kinetics400"
    # train.py (a features model) on the generated labelled data with the same backbone
    _run(
        ["train.py", f"backbone={backbone}", "data.synthetic_size=tiny", "model=ridge",
         f"paths.data_dir={tmp_path / 'data'}", f"paths.output_dir={tmp_path / 'train'}",
         "extract.num_workers=0", "extract.progress=false", "extract.device=cpu",
         "trainer.fast_dev_run=true", "logger=none"],
        tmp_path, "train",
    )  # fmt: skip
    metrics = json.loads((tmp_path / "train" / "metrics.json").read_text())
    assert np.isfinite(metrics["test/auc_mean"])
    stores = [p.parent for p in (tmp_path / "data" / "features").glob("*/COMPLETE")]
    assert stores and all(FeatureStore.open(p).visual.shape[1] == dim for p in stores)


@pytest.mark.slow
def test_extract_and_train_command_lines_with_a_tiny_r2plus1d(tmp_path):
    _extract_then_train(tmp_path, "r2plus1d_tiny", 16)


@pytest.mark.slow
def test_extract_and_train_command_lines_with_r2plus1d_18(tmp_path):
    """What issue 10 asks: a store of L2-normalised 512-d rows, and train.py on R(2+1)D-18."""
    _extract_then_train(tmp_path, "r2plus1d_18", 512)


def _finetune_step(tmp_path: Path, backbone: str) -> None:
    out = _run(
        ["train.py", "experiment=finetune_tiny", f"backbone={backbone}", "data.synthetic_size=tiny",
         f"paths.data_dir={tmp_path / 'data'}", f"paths.output_dir={tmp_path / 'out'}",
         "trainer.max_steps=1", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
         "logger=none"],
        tmp_path, "finetune",
    )  # fmt: skip
    metrics = json.loads((tmp_path / "out" / "finetune_metrics.json").read_text())
    assert np.isfinite(metrics["train/loss_first_epoch"]) and "test/mAP" in metrics
    assert "R2Plus1D18" in out.stdout


@pytest.mark.slow
def test_finetune_runs_a_step_with_a_tiny_r2plus1d(tmp_path):
    _finetune_step(tmp_path, "r2plus1d_tiny")


@pytest.mark.slow
def test_finetune_runs_a_step_with_r2plus1d_18(tmp_path):
    """``train.py model=finetune backbone=r2plus1d_18`` runs a step (and validates, tests)."""
    _finetune_step(tmp_path, "r2plus1d_18")


def test_a_c3d_file_does_not_load_into_r2plus1d(tmp_path):
    path = tmp_path / "c3d.pickle"
    torch.save(tiny_c3d().state_dict(), path)
    with pytest.raises(WeightsError, match=r"missing keys \['fc\.bias', 'fc\.weight', 'layer1"):
        tiny_r2plus1d(weights=str(path))
