"""C3D (Tran et al. 2015) exactly as trained in Caffe on Sports-1M, with safe weight loading.

Architecture (all convolutions 3×3×3, stride 1, padding 1, each followed by ReLU)::

    conv1 64  → pool1 (1,2,2)        (B,  64, 16, 56, 56)
    conv2 128 → pool2 (2,2,2)        (B, 128,  8, 28, 28)
    conv3a, conv3b 256 → pool3       (B, 256,  4, 14, 14)
    conv4a, conv4b 512 → pool4       (B, 512,  2,  7,  7)
    conv5a, conv5b 512 → pool5       (B, 512,  1,  4,  4)  = 8192 into fc6
    fc6 4096 → fc7 4096 → fc8 487

pool5: Caffe pools with ceil mode and no padding, so 7 → 4 with the last window covering one
column (``pool5="caffe"``, the default). The widespread PyTorch port ``c3d.pickle`` was run
with ``padding=(0, 1, 1)`` in floor mode instead (``pool5="padded"``): also 4×4, but every
window is shifted by one pixel. Both give ``channels[-1] * 1 * 4 * 4`` inputs to fc6.

Module attribute names equal the ``c3d.pickle`` keys, so that state dict loads 1:1.
"""

from __future__ import annotations

import hashlib
import logging
import math
import pickle
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)

CLIP_SHAPE = (3, 16, 112, 112)  # (C, T, H, W) of one clip
CONV_NAMES = ("conv1", "conv2", "conv3a", "conv3b", "conv4a", "conv4b", "conv5a", "conv5b")
FC_NAMES = ("fc6", "fc7", "fc8")
SPORTS1M_CLASSES = 487
RANDOM_INIT = "random-init"


class WeightsError(ValueError):
    """A weight file is unsafe, unreadable or does not fit the network; names file and key."""


class C3D(nn.Module):
    """C3D; ``features`` gives fc6 after ReLU (the paper's 4096-d visual feature).

    Args:
        num_classes: width of fc8; ``None`` builds no fc8 (``forward`` then raises).
        pool5: ``"caffe"`` (unpadded, ceil mode) or ``"padded"`` (padding (0,1,1), floor mode).
        channels: output channels of conv1, conv2, conv3*, conv4*, conv5* (tests use tiny ones).
        fc_dim: width of fc6 and fc7.
        dropout: dropout after fc6 and fc7 in ``forward`` (training only; never in ``features``).
    """

    def __init__(
        self,
        *,
        num_classes: int | None = SPORTS1M_CLASSES,
        pool5: str = "caffe",
        channels: Sequence[int] = (64, 128, 256, 512, 512),
        fc_dim: int = 4096,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if len(channels) != 5:
            raise ValueError(f"channels must have 5 entries (conv1..conv5), got {tuple(channels)}")
        if pool5 not in ("caffe", "padded"):
            raise ValueError(f"pool5 must be 'caffe' or 'padded', got {pool5!r}")
        c1, c2, c3, c4, c5 = (int(c) for c in channels)
        self.channels = (c1, c2, c3, c4, c5)
        self.pool5_mode = pool5
        self.feature_dim = int(fc_dim)
        self.num_classes = num_classes
        self.weights_id = RANDOM_INIT

        def conv(cin: int, cout: int) -> nn.Conv3d:
            return nn.Conv3d(cin, cout, kernel_size=3, padding=1)

        self.conv1, self.pool1 = conv(3, c1), nn.MaxPool3d((1, 2, 2), stride=(1, 2, 2))
        self.conv2, self.pool2 = conv(c1, c2), nn.MaxPool3d(2, stride=2)
        self.conv3a, self.conv3b, self.pool3 = conv(c2, c3), conv(c3, c3), nn.MaxPool3d(2, 2)
        self.conv4a, self.conv4b, self.pool4 = conv(c3, c4), conv(c4, c4), nn.MaxPool3d(2, 2)
        self.conv5a, self.conv5b = conv(c4, c5), conv(c5, c5)
        if pool5 == "caffe":
            self.pool5 = nn.MaxPool3d(2, stride=2, ceil_mode=True)
        else:
            self.pool5 = nn.MaxPool3d(2, stride=2, padding=(0, 1, 1))
        self.fc6_in = c5 * 1 * 4 * 4
        self.fc6 = nn.Linear(self.fc6_in, fc_dim)
        self.fc7 = nn.Linear(fc_dim, fc_dim)
        self.fc8 = nn.Linear(fc_dim, num_classes) if num_classes else None
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He-normal convs/fc6/fc7 (keeps activations alive through 10 ReLU layers), fc8 N(0, 0.01²)."""
        for name, module in self.named_children():
            if isinstance(module, nn.Conv3d | nn.Linear):
                if name == "fc8":
                    nn.init.normal_(module.weight, std=0.01)
                else:
                    nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def _check_clips(self, x: Tensor) -> None:
        if x.dim() != 5 or tuple(x.shape[1:]) != CLIP_SHAPE:
            raise ValueError(
                f"C3D expects clips of shape (B, 3, 16, 112, 112) (B, C, T, H, W); "
                f"got {tuple(x.shape)}"
            )

    def pool5_output(self, x: Tensor) -> Tensor:
        """Convolutional trunk: (B, 3, 16, 112, 112) -> (B, channels[-1], 1, 4, 4)."""
        self._check_clips(x)
        r = self.relu
        x = self.pool1(r(self.conv1(x)))  # (B, c1, 16, 56, 56)
        x = self.pool2(r(self.conv2(x)))  # (B, c2, 8, 28, 28)
        x = self.pool3(r(self.conv3b(r(self.conv3a(x)))))  # (B, c3, 4, 14, 14)
        x = self.pool4(r(self.conv4b(r(self.conv4a(x)))))  # (B, c4, 2, 7, 7)
        return self.pool5(r(self.conv5b(r(self.conv5a(x)))))  # (B, c5, 1, 4, 4)

    def features(self, x: Tensor) -> Tensor:
        """fc6 after ReLU, no dropout: (B, 3, 16, 112, 112) -> (B, fc_dim)."""
        return self.relu(self.fc6(self.pool5_output(x).flatten(1)))

    def forward(self, x: Tensor) -> Tensor:
        """Logits (never softmax): (B, 3, 16, 112, 112) -> (B, num_classes)."""
        if self.fc8 is None:
            raise RuntimeError("this C3D has no fc8 (built with drop_fc8=True); use .features(x)")
        h = self.dropout(self.relu(self.fc6(self.pool5_output(x).flatten(1))))
        h = self.dropout(self.relu(self.fc7(h)))
        return self.fc8(h)


def clip_flops(model: C3D, *, upto: str = "fc8") -> int:
    """FLOPs (2 per multiply-add) of one clip through the layers up to ``upto``, from layer shapes.

    A conv with output (C_out, T, H, W) costs 2·C_in·27·C_out·T·H·W; a linear layer 2·in·out.
    The shapes are traced on the meta device, so nothing is computed. Full C3D to fc8: ≈77 GFLOP.
    """
    with torch.device("meta"):
        ghost = C3D(
            num_classes=model.num_classes,
            pool5=model.pool5_mode,
            channels=model.channels,
            fc_dim=model.feature_dim,
        )
    names = [*CONV_NAMES, *FC_NAMES]
    keep = set(names[: names.index(upto) + 1])
    total = 0

    def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv3d):
            k = module.in_channels * math.prod(module.kernel_size)
            total += 2 * k * output[0].numel()
        elif isinstance(module, nn.Linear):
            total += 2 * module.in_features * module.out_features

    for name in keep:
        if getattr(ghost, name, None) is not None:
            getattr(ghost, name).register_forward_hook(hook)
    x = torch.empty(1, *CLIP_SHAPE, device="meta")
    ghost.features(x) if ghost.fc8 is None else ghost.eval()(x)
    return total


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weights_identity(weights: str | Path | None) -> str:
    """``"random-init"`` or ``"<file name> sha256:<hex>"``: what every output records."""
    if weights is None:
        return RANDOM_INIT
    path = Path(weights)
    if not path.is_file():
        raise WeightsError(f"weight file {str(path)!r} does not exist")
    return f"{path.name} sha256:{file_sha256(path)}"


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a state dict without ever running code from the file.

    ``.safetensors`` files go through safetensors; anything else through
    ``torch.load(weights_only=True)``, whose restricted unpickler refuses any object but tensors
    and plain containers (a pickle that would call ``os.system`` raises instead of running).
    A top-level ``{"state_dict": ...}`` wrapper and a ``module.`` prefix on every key are undone.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weight file {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            obj: object = load_file(str(path), device="cpu")
        except Exception as e:
            raise WeightsError(f"{path}: not a readable safetensors file ({e})") from e
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise WeightsError(
                f"{path}: refused to unpickle: the file holds objects other than tensors "
                f"(loading it could run arbitrary code). Only plain state dicts are accepted, "
                f"loaded with torch.load(weights_only=True). Detail: {first}"
            ) from None
        except Exception as e:
            raise WeightsError(f"{path}: not a readable torch weight file ({e})") from e
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path}: expected a state dict (mapping), got {type(obj).__name__}")
    state = dict(obj)
    for key, value in state.items():
        if not isinstance(value, Tensor):
            raise WeightsError(f"{path}: key {key!r} is a {type(value).__name__}, not a tensor")
    if state and all(str(k).startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def load_c3d_weights(
    model: C3D, state: Mapping[str, Tensor], *, source: str = "state dict"
) -> list[str]:
    """Copy ``state`` (c3d.pickle layout) into ``model``, checking every key and shape.

    fc8 is the one layer allowed to differ: if the model has no fc8 the file's fc8 is ignored,
    and if the model's fc8 has another class count it keeps its fresh initialisation.
    Returns notes on what was ignored or re-initialised; raises ``WeightsError`` naming every
    missing, extra, mis-shaped or non-finite key (expected vs got shape).
    """
    expected = {k: v.shape for k, v in model.state_dict().items()}
    given = dict(state)
    notes: list[str] = []
    w8, b8 = given.get("fc8.weight"), given.get("fc8.bias")
    if model.fc8 is None and (w8 is not None or b8 is not None):
        shape = tuple(w8.shape) if w8 is not None else None
        notes.append(f"fc8 from the file ignored (drop_fc8): fc8.weight {shape}")
        for key in ("fc8.weight", "fc8.bias"):
            given.pop(key, None)
    elif (
        model.fc8 is not None
        and w8 is not None
        and b8 is not None
        and w8.shape != expected["fc8.weight"]
        and w8.dim() == 2
        and w8.shape[1] == model.feature_dim
        and tuple(b8.shape) == (w8.shape[0],)
    ):
        notes.append(
            f"fc8 re-initialised: the file has {w8.shape[0]} classes, the model {model.num_classes}"
        )
        for key in ("fc8.weight", "fc8.bias"):
            given.pop(key), expected.pop(key)  # the model keeps its fresh fc8
    missing = sorted(set(expected) - set(given))
    extra = sorted(set(given) - set(expected))
    wrong = [
        f"{k}: expected {tuple(expected[k])}, got {tuple(given[k].shape)}"
        for k in expected
        if k in given and given[k].shape != expected[k]
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {missing}")
    if extra:
        problems.append(f"unexpected keys {extra}")
    if wrong:
        problems.append("mis-shaped keys: " + "; ".join(wrong))
    if problems:
        hint = ""
        if tuple(model.channels) != (64, 128, 256, 512, 512):
            hint = " (Sports-1M weights need the full-width Caffe C3D: backbone=c3d)"
        raise WeightsError(
            f"{source} does not fit C3D{model.channels}{hint}: " + "; ".join(problems)
        )
    bad = [k for k in expected if not torch.isfinite(given[k]).all()]
    if bad:
        raise WeightsError(f"{source}: non-finite values in {bad}")
    with torch.no_grad():
        own = model.state_dict()
        for k in expected:
            own[k].copy_(given[k].to(own[k].dtype))
    return notes


def build_c3d(
    *,
    weights: str | None = None,
    num_classes: int = SPORTS1M_CLASSES,
    pool5: str = "caffe",
    drop_fc8: bool = False,
    channels: Sequence[int] = (64, 128, 256, 512, 512),
    fc_dim: int = 4096,
    dropout: float = 0.5,
    init_seed: int = 0,
) -> C3D:
    """Build C3D and load ``weights`` (c3d.pickle layout or safetensors) if given.

    Without a file every parameter is drawn from a generator seeded with ``init_seed`` (so two
    runs build identical networks) and a loud warning says the features are not Sports-1M ones.
    ``model.weights_id`` records ``"random-init"`` or ``"<file name> sha256:<hex>"``.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        model = C3D(
            num_classes=None if drop_fc8 else num_classes,
            pool5=pool5,
            channels=channels,
            fc_dim=fc_dim,
            dropout=dropout,
        )
    if weights is None:
        message = (
            "C3D has RANDOM weights (no weight file given; set backbone.weights=/path/to/c3d.pickle "
            "or a .safetensors file): features are not Sports-1M features"
        )
        warnings.warn(message, stacklevel=2)
        log.warning(message)
        return model
    state = read_state_dict(weights)
    for note in load_c3d_weights(model, state, source=str(weights)):
        warnings.warn(f"{Path(weights).name}: {note}", stacklevel=2)
        log.warning("%s: %s", Path(weights).name, note)
    model.weights_id = weights_identity(weights)
    return model
