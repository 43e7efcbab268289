"""C3D: shapes, pool5 variants, FLOPs, and safe, checked weight loading."""

from __future__ import annotations

import warnings

import pytest
import torch
from safetensors.torch import save_file

from gifemo.backbones.c3d import (
    C3D,
    WeightsError,
    build_c3d,
    clip_flops,
    file_sha256,
)
from tests.hostile_weights import HOW, write_malicious_weights

TINY = {"channels": (4, 8, 8, 16, 16), "fc_dim": 32}
FULL_SHAPES = {  # the c3d.pickle layout (Sports-1M, 487 classes)
    "conv1": (64, 3),
    "conv2": (128, 64),
    "conv3a": (256, 128),
    "conv3b": (256, 256),
    "conv4a": (512, 256),
    "conv4b": (512, 512),
    "conv5a": (512, 512),
    "conv5b": (512, 512),
}


def c3d_pickle_state(channels=(64, 128, 256, 512, 512), fc_dim=4096, classes=487, seed=0):
    """A random state dict with the real c3d.pickle key names and shapes (scaled by channels)."""
    g = torch.Generator().manual_seed(seed)
    c1, c2, c3, c4, c5 = channels
    ins = {"conv1": 3, "conv2": c1, "conv3a": c2, "conv3b": c3, "conv4a": c3, "conv4b": c4}
    ins |= {"conv5a": c4, "conv5b": c5}
    outs = {"conv1": c1, "conv2": c2, "conv3a": c3, "conv3b": c3, "conv4a": c4, "conv4b": c4}
    outs |= {"conv5a": c5, "conv5b": c5}
    state = {}
    for name in ins:
        state[f"{name}.weight"] = torch.randn(outs[name], ins[name], 3, 3, 3, generator=g) * 0.1
        state[f"{name}.bias"] = torch.randn(outs[name], generator=g) * 0.1
    for name, (o, i) in {
        "fc6": (fc_dim, c5 * 16),
        "fc7": (fc_dim, fc_dim),
        "fc8": (classes, fc_dim),
    }.items():
        state[f"{name}.weight"] = torch.randn(o, i, generator=g) * 0.05
        state[f"{name}.bias"] = torch.randn(o, generator=g) * 0.05
    return state


def _full_shapes():
    with torch.device("meta"):
        return {k: v for k, v in C3D().state_dict().items()}


def clips(b=2, seed=1):
    return torch.randn(b, 3, 16, 112, 112, generator=torch.Generator().manual_seed(seed)) * 50


def test_tiny_shapes_and_logits_not_softmax():
    m = C3D(**TINY).eval()
    x = clips()
    assert m.pool5_output(x).shape == (2, 16, 1, 4, 4)
    f = m.features(x)
    assert f.shape == (2, 32) and (f >= 0).all()
    logits = m(x)
    assert logits.shape == (2, 487)
    assert not torch.allclose(logits.sum(1), torch.ones(2))  # raw logits, not probabilities
    assert m.fc6_in == 16 * 4 * 4


@pytest.mark.parametrize("pool5", ["caffe", "padded"])
def test_full_c3d_pool5_gives_8192_into_fc6(pool5):
    # meta device: shapes only, no compute
    with torch.device("meta"):
        m = C3D(pool5=pool5)
        out = m.pool5_output(torch.empty(3, 3, 16, 112, 112))
    assert out.shape == (3, 512, 1, 4, 4)
    assert out.flatten(1).shape[1] == 8192 == m.fc6.in_features


def test_pool5_variants_window_placement():
    """Caffe: windows start at 0,2,4,6 (last covers col 6 only); padded: at -1,1,3,5."""
    caffe, padded = C3D(**TINY).pool5, C3D(**TINY, pool5="padded").pool5
    x = torch.arange(2 * 7 * 7, dtype=torch.float32).reshape(1, 1, 2, 7, 7)
    ref_caffe = x.amax(2)[0, 0][[1, 3, 5, 6]][:, [1, 3, 5, 6]]
    ref_padded = x.amax(2)[0, 0][[0, 2, 4, 6]][:, [0, 2, 4, 6]]
    assert torch.equal(caffe(x)[0, 0, 0], ref_caffe)
    assert torch.equal(padded(x)[0, 0, 0], ref_padded)


@pytest.mark.parametrize(
    "shape", [(2, 3, 8, 112, 112), (2, 3, 16, 128, 171), (3, 16, 112, 112), (2, 1, 16, 112, 112)]
)
def test_wrong_clip_shapes_raise_naming_the_shape(shape):
    m = C3D(**TINY)
    with pytest.raises(ValueError, match=str(shape).replace("(", r"\(").replace(")", r"\)")):
        m.features(torch.zeros(shape))


def test_flops_counted_from_layer_shapes():
    with torch.device("meta"):
        full = clip_flops(C3D())
    assert 76.9e9 < full < 77.2e9  # the paper's 77 GFLOP per clip
    tiny = C3D(**TINY)
    c = TINY["channels"]
    by_hand = 2 * 27 * (
        3 * c[0] * 16 * 112 * 112
        + c[0] * c[1] * 16 * 56 * 56
        + (c[1] * c[2] + c[2] * c[2]) * 8 * 28 * 28
        + (c[2] * c[3] + c[3] * c[3]) * 4 * 14 * 14
        + (c[3] * c[4] + c[4] * c[4]) * 2 * 7 * 7
    ) + 2 * (c[4] * 16 * 32 + 32 * 32 + 32 * 487)
    assert clip_flops(tiny) == by_hand


def test_random_init_is_seeded_and_warns():
    torch.manual_seed(123)
    with pytest.warns(UserWarning, match="RANDOM weights"):
        a = build_c3d(**TINY)
    torch.manual_seed(456)
    with pytest.warns(UserWarning):
        b = build_c3d(**TINY)
    with pytest.warns(UserWarning):
        c = build_c3d(**TINY, init_seed=1)
    assert a.weights_id == "random:0" and c.weights_id == "random:1"
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert not torch.equal(a.conv1.weight, c.conv1.weight)


def test_full_size_c3d_pickle_layout_loads(tmp_path):
    """The real key names and shapes of c3d.pickle load 1:1 (no forward pass at full size)."""
    # distinct constant per tensor: cheap at full size, and any mix-up of keys would show
    state = {k: torch.full(v.shape, float(i)) for i, (k, v) in enumerate(_full_shapes().items())}
    for name, (o, i) in FULL_SHAPES.items():
        assert state[f"{name}.weight"].shape == (o, i, 3, 3, 3)
    assert state["fc6.weight"].shape == (4096, 8192) and state["fc8.weight"].shape == (487, 4096)
    path = tmp_path / "c3d.pickle"
    torch.save(state, path)
    m = build_c3d(weights=str(path))
    assert m.weights_id == f"c3d.pickle sha256:{file_sha256(path)}"
    for k, v in state.items():
        assert torch.equal(m.state_dict()[k], v), k


@pytest.mark.parametrize("fmt", ["pickle", "safetensors"])
def test_loaded_weights_reproduce_outputs(tmp_path, fmt):
    state = c3d_pickle_state(**TINY)
    ref = C3D(**TINY).eval()
    ref.load_state_dict(state)
    path = tmp_path / ("w.pt" if fmt == "pickle" else "w.safetensors")
    torch.save(state, path) if fmt == "pickle" else save_file(state, str(path))
    m = build_c3d(weights=str(path), **TINY).eval()
    x = clips()
    with torch.no_grad():
        assert torch.equal(m(x), ref(x))
        assert torch.equal(m.features(x), torch.relu(ref.fc6(ref.pool5_output(x).flatten(1))))
    assert m.weights_id.startswith(f"{path.name} sha256:")


def test_missing_extra_misshaped_keys_name_the_key(tmp_path):
    base = c3d_pickle_state(**TINY)
    cases = {
        "missing": (
            {k: v for k, v in base.items() if k != "conv4b.bias"},
            r"missing.*conv4b\.bias",
        ),
        "extra": (base | {"conv6.weight": torch.zeros(1)}, r"unexpected.*conv6\.weight"),
        "shape": (
            base | {"conv3a.weight": torch.zeros(8, 8, 3, 3, 2)},
            r"conv3a\.weight: expected \(8, 8, 3, 3, 3\), got \(8, 8, 3, 3, 2\)",
        ),
        "nan": (base | {"fc7.bias": torch.full((32,), float("nan"))}, r"non-finite.*fc7\.bias"),
    }
    for name, (state, pattern) in cases.items():
        path = tmp_path / f"{name}.pickle"
        torch.save(state, path)
        with pytest.raises(WeightsError, match=pattern):
            build_c3d(weights=str(path), **TINY)
    with pytest.raises(WeightsError, match="does not exist"):
        build_c3d(weights=str(tmp_path / "nope.pickle"), **TINY)


@pytest.mark.parametrize("how", HOW)
def test_malicious_pickle_is_refused_without_running(tmp_path, how):
    target = tmp_path / "pwned"
    path = tmp_path / "c3d.pickle"
    write_malicious_weights(path, c3d_pickle_state(**TINY), key="fc8.bias", target=target, how=how)
    with pytest.raises(WeightsError, match="refused to unpickle"):
        build_c3d(weights=str(path), **TINY)
    assert not target.exists()  # os.system never ran


def test_fc8_dropped_or_replaced(tmp_path):
    state = c3d_pickle_state(**TINY)
    path = tmp_path / "c3d.pickle"
    torch.save(state, path)
    with pytest.warns(UserWarning, match="fc8 from the file ignored"):
        dropped = build_c3d(weights=str(path), drop_fc8=True, **TINY)
    assert dropped.fc8 is None and torch.equal(dropped.fc6.weight, state["fc6.weight"])
    with pytest.raises(RuntimeError, match="no fc8"):
        dropped(clips(1))
    with pytest.warns(
        UserWarning, match="fc8 re-initialised: the file has 487 classes, the model 17"
    ):
        replaced = build_c3d(weights=str(path), num_classes=17, **TINY)
    assert replaced.fc8.weight.shape == (17, 32)
    assert torch.equal(replaced.fc7.weight, state["fc7.weight"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a matching fc8 loads silently
        assert torch.equal(build_c3d(weights=str(path), **TINY).fc8.weight, state["fc8.weight"])
