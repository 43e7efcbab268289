"""R(2+1)D-18: torchvision's exact state-dict layout, shapes, round trips, safe loading.

The expected layout is written out by hand from the structure of torchvision's
``models/video/resnet.py`` (VideoResNet + R2Plus1dStem + BasicBlock + Conv2Plus1D, layers
[2, 2, 2, 2]), not derived from gifemo's code; the middle widths are typed in as numbers.
Where torchvision imports (a GPU machine), outputs are compared with torchvision's own model.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from safetensors.torch import save_file

from gifemo.backbones.r2plus1d import R2Plus1D18, build_r2plus1d_18, midplanes
from gifemo.backbones.weights import WeightsError, file_sha256
from tests.hostile_weights import HOW, write_malicious_weights

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
TINY = {"widths": (4, 8, 8, 16), "stem_mid": 3}
# torchvision's Conv2Plus1D middle widths, per block (layerK.J), as numbers
MID = {
    (1, 0): 144, (1, 1): 144, (2, 0): 230, (2, 1): 288,
    (3, 0): 460, (3, 1): 576, (4, 0): 921, (4, 1): 1152,
}  # fmt: skip


def bn(prefix: str, c: int) -> list[tuple[str, tuple[int, ...]]]:
    return [(f"{prefix}.{n}", () if n == "num_batches_tracked" else (c,)) for n in BN]


def torchvision_layout() -> list[tuple[str, tuple[int, ...]]]:
    """(key, shape) of torchvision.models.video.r2plus1d_18().state_dict(), in order."""
    keys: list[tuple[str, tuple[int, ...]]] = [("stem.0.weight", (45, 3, 1, 7, 7))]
    keys += bn("stem.1", 45)  # stem.2 is a ReLU
    keys += [("stem.3.weight", (64, 45, 3, 1, 1))]
    keys += bn("stem.4", 64)
    inplanes = 64
    for k, planes in zip((1, 2, 3, 4), (64, 128, 256, 512), strict=True):
        for j in (0, 1):
            cin = inplanes if j == 0 else planes
            mid = MID[(k, j)]
            p = f"layer{k}.{j}"
            # conv1 = Sequential(Conv2Plus1D(cin, planes, mid), BN(planes), ReLU)
            keys += [(f"{p}.conv1.0.0.weight", (mid, cin, 1, 3, 3))]
            keys += bn(f"{p}.conv1.0.1", mid)
            keys += [(f"{p}.conv1.0.3.weight", (planes, mid, 3, 1, 1))]
            keys += bn(f"{p}.conv1.1", planes)
            # conv2 = Sequential(Conv2Plus1D(planes, planes, mid — the same mid), BN(planes))
            keys += [(f"{p}.conv2.0.0.weight", (mid, planes, 1, 3, 3))]
            keys += bn(f"{p}.conv2.0.1", mid)
            keys += [(f"{p}.conv2.0.3.weight", (planes, mid, 3, 1, 1))]
            keys += bn(f"{p}.conv2.1", planes)
            if j == 0 and k > 1:  # downsample = Sequential(Conv 1×1×1 stride 2, BN)
                keys += [(f"{p}.downsample.0.weight", (planes, cin, 1, 1, 1))]
                keys += bn(f"{p}.downsample.1", planes)
        inplanes = planes
    keys += [("fc.weight", (400, 512)), ("fc.bias", (400,))]
    return keys


@pytest.fixture(scope="module")
def full() -> R2Plus1D18:
    return R2Plus1D18()


def test_state_dict_is_torchvision_layout_key_for_key(full):
    expected = torchvision_layout()
    got = [(k, tuple(v.shape)) for k, v in full.state_dict().items()]
    assert len(expected) == 224  # 12 stem + 8 blocks × 24 + 3 downsamples × 6 + 2 fc
    assert got == expected  # names, shapes and order
    # torchvision's documented num_params for R2Plus1D_18_Weights.KINETICS400_V1
    assert sum(p.numel() for p in full.parameters()) == 31_505_325
    assert {(k, j): midplanes(*io) for (k, j), io in zip(MID, [
        (64, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 512), (512, 512)
    ], strict=True)} == MID  # fmt: skip


def test_forward_shapes_full_size_on_meta_device():
    with torch.device("meta"):
        m = R2Plus1D18()
        x = torch.empty(2, 3, 16, 112, 112)
        h = m.layer4(m.layer3(m.layer2(m.layer1(m.stem(x)))))
        assert h.shape == (2, 512, 2, 7, 7)
        assert m.features(x).shape == (2, 512) and m(x).shape == (2, 400)
        assert m.features(torch.empty(1, 3, 8, 112, 112)).shape == (1, 512)  # any clip length
    assert m.feature_dim == 512


def test_tiny_forward_features_are_pooled_layer4_and_logits_raw():
    m = R2Plus1D18(num_classes=5, **TINY).eval()
    x = torch.randn(3, 3, 16, 112, 112, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        h = m.layer4(m.layer3(m.layer2(m.layer1(m.stem(x)))))  # (3, 16, 2, 7, 7)
        f = m.features(x)
        torch.testing.assert_close(f, h.mean(dim=(2, 3, 4)))
        torch.testing.assert_close(m(x), f @ m.fc.weight.T + m.fc.bias)
    assert f.shape == (3, 16) and m.feature_dim == 16
    with pytest.raises(ValueError, match=r"\(B, 3, T, H, W\).*got \(3, 16, 112, 112\)"):
        m.features(torch.zeros(3, 16, 112, 112))
    m.drop_classifier()
    with pytest.raises(RuntimeError, match="no fc"):
        m(x)


def test_random_init_is_seeded_warns_and_is_recorded():
    with pytest.warns(UserWarning, match="RANDOM weights"):
        a = build_r2plus1d_18(**TINY)
    with pytest.warns(UserWarning):
        b = build_r2plus1d_18(**TINY)
    with pytest.warns(UserWarning):
        c = build_r2plus1d_18(**TINY, init_seed=3)
    assert a.weights_id == "random:0" and c.weights_id == "random:3"
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert not torch.equal(a.stem[0].weight, c.stem[0].weight)
    # torchvision's init: BN 1/0, fc bias 0
    assert torch.equal(a.layer2[0].conv1[1].weight, torch.ones(8))
    assert torch.equal(a.fc.bias, torch.zeros(400))


def _trained_state(**arch) -> dict[str, torch.Tensor]:
    """A state dict with non-trivial values everywhere, BN statistics included."""
    g = torch.Generator().manual_seed(7)
    m = R2Plus1D18(**arch)
    state = {}
    for k, v in m.state_dict().items():
        if k.endswith("num_batches_tracked"):
            state[k] = torch.tensor(11)
        elif k.endswith("running_var"):
            state[k] = torch.rand(v.shape, generator=g) + 0.5
        else:
            state[k] = torch.randn(v.shape, generator=g) * 0.1
    return state


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_saved_state_dict_round_trips(tmp_path, fmt):
    state = _trained_state(**TINY)
    path = tmp_path / f"r2plus1d.{fmt}"
    torch.save(state, path) if fmt == "pth" else save_file(state, str(path))
    m = build_r2plus1d_18(weights=str(path), **TINY).eval()
    assert m.weights_id == f"{path.name} sha256:{file_sha256(path)}"
    for k, v in state.items():
        assert torch.equal(m.state_dict()[k], v), k
    # and back: what gifemo saves loads into a fresh network with identical outputs
    again = tmp_path / "again.pth"
    torch.save(m.state_dict(), again)
    m2 = build_r2plus1d_18(weights=str(again), **TINY).eval()
    x = torch.randn(2, 3, 16, 112, 112, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(m(x), m2(x)) and torch.equal(m.features(x), m2.features(x))


def test_full_size_torchvision_file_loads(tmp_path):
    """A file with torchvision's keys and shapes at full size loads 1:1 (no forward pass)."""
    state = {k: torch.full(s, float(i)) for i, (k, s) in enumerate(torchvision_layout())}
    path = tmp_path / "r2plus1d_18-91a641e6.pth"
    torch.save(state, path)
    m = build_r2plus1d_18(weights=str(path))
    for k, v in state.items():
        assert torch.equal(m.state_dict()[k], v.to(m.state_dict()[k].dtype)), k


def test_wrong_files_name_the_key_and_load_nothing(tmp_path):
    base = _trained_state(**TINY)
    cases = {
        "missing": (
            {k: v for k, v in base.items() if k != "layer3.1.conv2.0.3.weight"},
            r"missing keys \['layer3\.1\.conv2\.0\.3\.weight'\]",
        ),
        "extra": (
            base | {"layer5.0.weight": torch.zeros(1)},
            r"unexpected keys.*layer5\.0\.weight",
        ),
        "shape": (
            base | {"layer2.0.downsample.0.weight": torch.zeros(8, 4, 1, 1, 2)},
            r"layer2\.0\.downsample\.0\.weight: expected \(8, 4, 1, 1, 1\), got \(8, 4, 1, 1, 2\)",
        ),
        "nan": (
            base | {"stem.4.running_mean": torch.full((4,), float("nan"))},
            r"non-finite.*stem\.4\.running_mean",
        ),
    }
    for name, (state, pattern) in cases.items():
        path = tmp_path / f"{name}.pth"
        torch.save(state, path)
        with pytest.raises(WeightsError, match=pattern):
            build_r2plus1d_18(weights=str(path), **TINY)
    path = tmp_path / "full.pth"
    torch.save(_trained_state(), path)  # full-size weights into the tiny network
    with pytest.raises(WeightsError, match=r"need the full-width network: backbone=r2plus1d_18"):
        build_r2plus1d_18(weights=str(path), **TINY)


@pytest.mark.parametrize("how", HOW)
def test_malicious_pickle_with_torchvision_keys_is_refused_without_running(tmp_path, how):
    target = tmp_path / "pwned"
    path = tmp_path / "r2plus1d_18.pth"
    write_malicious_weights(path, _trained_state(**TINY), key="fc.bias", target=target, how=how)
    with pytest.raises(WeightsError, match="refused to unpickle"):
        build_r2plus1d_18(weights=str(path), **TINY)
    assert not target.exists()  # os.system never ran


def test_fc_dropped_replaced_and_old_files_without_counters(tmp_path):
    state = _trained_state(**TINY)
    path = tmp_path / "w.pth"
    torch.save(state, path)
    with pytest.warns(UserWarning, match="fc from the file ignored"):
        dropped = build_r2plus1d_18(weights=str(path), drop_fc=True, **TINY)
    assert dropped.fc is None and torch.equal(dropped.stem[0].weight, state["stem.0.weight"])
    with pytest.warns(
        UserWarning, match="fc re-initialised: the file has 400 classes, the model 17"
    ):
        replaced = build_r2plus1d_18(weights=str(path), num_classes=17, **TINY)
    assert replaced.fc.weight.shape == (17, 16)
    old = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save(old, tmp_path / "old.pth")
    with pytest.warns(UserWarning, match="37 BatchNorm num_batches_tracked counters not in"):
        m = build_r2plus1d_18(weights=str(tmp_path / "old.pth"), **TINY)
    assert torch.equal(m.layer1[0].conv1[1].running_var, state["layer1.0.conv1.1.running_var"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a matching file loads silently
        build_r2plus1d_18(weights=str(path), **TINY)


def test_freeze_batchnorm_keeps_running_statistics():
    frozen = R2Plus1D18(freeze_batchnorm=True, **TINY).train()
    free = R2Plus1D18(**TINY).train()
    x = torch.randn(2, 3, 16, 112, 112, generator=torch.Generator().manual_seed(4)) + 3.0
    frozen.features(x), free.features(x)
    assert frozen.training and not frozen.stem[1].training
    assert torch.equal(frozen.stem[1].running_mean, torch.zeros(3))
    assert not torch.equal(free.stem[1].running_mean, torch.zeros(3))


# -- torchvision itself, where it imports --------------------------------------------------
def _torchvision():
    try:
        import torchvision.models.video as tvv
    except Exception as e:  # CPU torch + CUDA-only torchvision: RuntimeError at import
        pytest.skip(f"torchvision does not import here ({type(e).__name__}: {e})")
    return tvv


def test_outputs_equal_torchvision_r2plus1d_18_on_the_same_weights(tmp_path):
    tvv = _torchvision()
    ref = tvv.r2plus1d_18().eval()
    with torch.no_grad():  # non-trivial BN statistics
        for mod in ref.modules():
            if isinstance(mod, torch.nn.BatchNorm3d):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "tv.pth"
    torch.save(ref.state_dict(), path)
    ours = build_r2plus1d_18(weights=str(path)).eval()
    assert list(ours.state_dict()) == list(ref.state_dict())
    x = torch.randn(2, 3, 16, 112, 112, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)
    # and back: gifemo's state dict loads into torchvision strictly
    tvv.r2plus1d_18().load_state_dict(ours.state_dict(), strict=True)


def test_preprocessing_equals_torchvision_kinetics_preset():
    tvv = _torchvision()
    from gifemo.backbones.r2plus1d import kinetics400_preprocessing
    from gifemo.data.clips import AllClips

    preset = tvv.R2Plus1D_18_Weights.KINETICS400_V1.transforms()
    rng = torch.Generator().manual_seed(3)
    frames = torch.randint(0, 256, (16, 90, 140, 3), dtype=torch.uint8, generator=rng)
    ours = kinetics400_preprocessing().transform()(
        frames.numpy(), AllClips()(16)
    )  # (1, 3, 16, ...)
    ref = preset(frames.permute(0, 3, 1, 2))  # (T, C, H, W) uint8 → (C, T, 112, 112)
    torch.testing.assert_close(ours[0], ref, rtol=0, atol=1e-5)
