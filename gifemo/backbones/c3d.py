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

import logging
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from gifemo.backbones.base import VideoBackbone, class_path
from gifemo.backbones.preprocessing import ClipTransform, Preprocessing
from gifemo.backbones.weights import (
    WeightsError,
    apply_weights,
    file_sha256,
    read_state_dict,
    weights_identity,
)

log = logging.getLogger(__name__)

__all__ = [
    "C3D",
    "SPORTS1M_MEAN_BGR",
    "C3DTransform",
    "WeightsError",
    "build_c3d",
    "c3d_preprocessing",
    "clip_flops",
    "file_sha256",
    "read_state_dict",
    "weights_identity",
]  # fmt: skip

CLIP_SHAPE = (3, 16, 112, 112)  # (C, T, H, W) of one clip
CONV_NAMES = ("conv1", "conv2", "conv3a", "conv3b", "conv4a", "conv4b", "conv5a", "conv5b")
FC_NAMES = ("fc6", "fc7", "fc8")
SPORTS1M_CLASSES = 487
# Per-channel average of the Sports-1M mean cube (sports1m_train16_128_mean), B, G, R, as
# used by C3D ports that replace the cube by three numbers. Pass mean_cube= for the cube.
SPORTS1M_MEAN_BGR: tuple[float, float, float] = (90.25164795, 97.65701294, 101.4083252)
RESIZE_HW = (128, 171)
CROP = 112
CENTRE_OFFSET = ((RESIZE_HW[0] - CROP) // 2, (RESIZE_HW[1] - CROP) // 2)  # (8, 29)


def c3d_preprocessing(
    *,
    mean_bgr: Sequence[float] | None = SPORTS1M_MEAN_BGR,
    mean_cube: str | None = None,
) -> Preprocessing:
    """C3D's own preprocessing (facebook/C3D feature extractor; DESIGN §3).

    Frames resized to 128×171 (H×W, bilinear, as OpenCV's INTER_LINEAR), centre crop rows
    8:120, cols 29:141 (C3D's floor of the margins), BGR channel order, values 0–255 minus the
    Sports-1M mean — per channel (``mean_bgr``, None = :data:`SPORTS1M_MEAN_BGR`) or a full
    mean cube (``mean_cube``, a ``.npy`` file) — and no division by 255 or by a std.
    """
    mean = SPORTS1M_MEAN_BGR if mean_bgr is None else tuple(float(m) for m in mean_bgr)
    if len(mean) != 3:
        raise ValueError(f"mean_bgr needs 3 values (B, G, R), got {mean_bgr}")
    return Preprocessing(
        name="c3d-sports1m",
        resize_hw=RESIZE_HW,
        crop=CROP,
        centre=CENTRE_OFFSET,
        channel_order="BGR",
        divisor=1.0,
        mean=(mean[0], mean[1], mean[2]),
        mean_cube=str(mean_cube) if mean_cube else None,
    )


class C3DTransform(ClipTransform):
    """``c3d_preprocessing(mean_bgr, mean_cube).transform(train, flip, output)`` by its old name.

    Frames + clip indices → C3D input clips ``(N, 3, 16, 112, 112)`` float32 (BGR minus the
    Sports-1M mean), or uint8 BGR with ``output="uint8"`` (see
    :mod:`gifemo.backbones.preprocessing`).
    """

    def __init__(
        self,
        *,
        train: bool = False,
        flip: bool = True,
        mean_bgr: Sequence[float] = SPORTS1M_MEAN_BGR,
        mean_cube: str | None = None,
        output: str = "float32",
    ) -> None:
        if output not in ("float32", "uint8"):
            raise ValueError(f"C3DTransform: output must be 'float32' or 'uint8', got {output!r}")
        pre = c3d_preprocessing(mean_bgr=mean_bgr, mean_cube=mean_cube)
        super().__init__(pre, train=train, flip=flip, output=output)

    @property
    def mean_bgr(self) -> tuple[float, float, float]:
        return self.preprocessing.mean

    @property
    def mean_cube(self) -> str | None:
        return self.preprocessing.mean_cube


class C3D(VideoBackbone):
    """C3D; ``features`` gives fc6 after ReLU (the paper's 4096-d visual feature).

    Args:
        num_classes: width of fc8; ``None`` builds no fc8 (``forward`` then raises).
        pool5: ``"caffe"`` (unpadded, ceil mode) or ``"padded"`` (padding (0,1,1), floor mode).
        channels: output channels of conv1, conv2, conv3*, conv4*, conv5* (tests use tiny ones).
        fc_dim: width of fc6 and fc7.
        dropout: dropout after fc6 and fc7 in ``forward`` (training only; never in ``features``).
        preprocessing: the input preprocessing of its weights (default :func:`c3d_preprocessing`).
        init_seed: recorded in ``weights_id`` (``"random:<seed>"``) until weights are loaded;
            :func:`build_c3d` seeds the initialisation with it.
    """

    classifier_layers = ("fc7", "fc8")

    def __init__(
        self,
        *,
        num_classes: int | None = SPORTS1M_CLASSES,
        pool5: str = "caffe",
        channels: Sequence[int] = (64, 128, 256, 512, 512),
        fc_dim: int = 4096,
        dropout: float = 0.5,
        preprocessing: Preprocessing | None = None,
        init_seed: int = 0,
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
        self.weights_id = weights_identity(None, init_seed=init_seed)
        self.preprocessing = preprocessing or c3d_preprocessing()

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

    def describe(self) -> dict[str, Any]:
        return {
            "class": class_path(self),
            "channels": list(self.channels),
            "fc_dim": self.feature_dim,
            "pool5": self.pool5_mode,
            "feature": "fc6 after ReLU",
        }

    def forward(self, x: Tensor) -> Tensor:
        """Logits (never softmax): (B, 3, 16, 112, 112) -> (B, num_classes)."""
        if self.fc7 is None or self.fc8 is None:
            raise RuntimeError(
                "this C3D has no fc8 (drop_fc8=True) or no fc7 (drop_classifier()); "
                "use .features(x)"
            )
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
    mean_bgr: Sequence[float] | None = None,
    mean_cube: str | None = None,
) -> C3D:
    """Build C3D and load ``weights`` (c3d.pickle layout or safetensors) if given.

    Without a file every parameter is drawn from a generator seeded with ``init_seed`` (so two
    runs build identical networks) and a loud warning says the features are not Sports-1M ones.
    ``model.weights_id`` records ``"random:<init_seed>"`` or ``"<file name> sha256:<hex>"``.
    ``mean_bgr`` / ``mean_cube`` set its preprocessing (:func:`c3d_preprocessing`; None = the
    Sports-1M channel means). The file is read with :func:`gifemo.backbones.weights.read_state_dict`
    (never unpickles code) and checked key by key (:func:`gifemo.backbones.weights.load_checked`);
    fc8 may differ: dropped with ``drop_fc8``, re-initialised for another ``num_classes``.
    """
    preprocessing = c3d_preprocessing(mean_bgr=mean_bgr, mean_cube=mean_cube)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        model = C3D(
            num_classes=None if drop_fc8 else num_classes,
            pool5=pool5,
            channels=channels,
            fc_dim=fc_dim,
            dropout=dropout,
            preprocessing=preprocessing,
            init_seed=init_seed,
        )
    hint = ""
    if tuple(model.channels) != (64, 128, 256, 512, 512):
        hint = " (Sports-1M weights need the full-width Caffe C3D: backbone=c3d)"
    apply_weights(
        model, weights, head="fc8", arch=f"C3D{model.channels}", hint=hint, log=log,
        random_message=(
            "C3D has RANDOM weights (no weight file given; set backbone.weights=/path/to/c3d.pickle "
            "or a .safetensors file): features are not Sports-1M features"
        ),
    )  # fmt: skip
    return model
