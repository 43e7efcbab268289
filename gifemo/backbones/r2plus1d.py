"""R(2+1)D-18 (Tran et al. 2018) with torchvision's exact state-dict layout, Kinetics-400 input.

The network is ``torchvision.models.video.r2plus1d_18`` rebuilt module for module (torchvision
does not import on every machine: its CUDA-only builds fail with the CPU torch), so that a state
dict saved from torchvision anywhere — ``torch.save(r2plus1d_18(weights="KINETICS400_V1")
.state_dict(), "r2plus1d_18.pth")`` — loads here key for key, and back::

    stem      Conv(1×7×7, 3→45, stride (1,2,2)) BN ReLU Conv(3×1×1, 45→64) BN ReLU
                                                          (B,  64, T,    56, 56) from 112×112
    layer1    2 BasicBlocks  64 → 64,  stride 1           (B,  64, T,    56, 56)
    layer2    2 BasicBlocks  64 → 128, stride 2           (B, 128, T/2,  28, 28)
    layer3    2 BasicBlocks 128 → 256, stride 2           (B, 256, T/4,  14, 14)
    layer4    2 BasicBlocks 256 → 512, stride 2           (B, 512, T/8,   7,  7)
    avgpool   AdaptiveAvgPool3d(1) → flatten(1)           (B, 512)  = features
    fc        Linear(512, 400)                            (B, 400)  Kinetics-400 logits

A BasicBlock (``layerK.J``) is ``conv1 = [Conv2Plus1D(in, out, mid, stride), BN(out), ReLU]``,
``conv2 = [Conv2Plus1D(out, out, mid), BN(out)]``, ``out = ReLU(conv2(conv1(x)) + shortcut(x))``,
with ``shortcut = downsample = [Conv(1×1×1, in→out, stride), BN(out)]`` in the first block of
layers 2–4. A Conv2Plus1D is ``[Conv(1×3×3, in→mid, stride (1,s,s)), BN(mid), ReLU,
Conv(3×1×1, mid→out, stride (s,1,1))]``; every conv is bias-free. The middle width is
torchvision's ``mid = (in·out·27) // (in·9 + 3·out)`` — computed once per block from the
block's (in, out) and used by BOTH of its Conv2Plus1D (144; 230, 288; 460, 576; 921, 1152).
Parameters: 31,505,325 with the 400-way fc (torchvision's documented ``num_params``).

Preprocessing (:func:`kinetics400_preprocessing`, torchvision's ``VideoClassification`` preset of
``R2Plus1D_18_Weights.KINETICS400_V1``): frames resized to 128×171 (bilinear, no antialias),
centre crop 112 at (8, 30) — torchvision's ``center_crop`` rounds the margins, (171 − 112)/2 =
29.5 → 30 —, RGB, /255, mean (0.43216, 0.394666, 0.37645), std (0.22803, 0.22145, 0.216989).
Features are the 512-d average-pooled activations before ``fc``. Without a weight file the
network is initialised as torchvision does (Kaiming-normal fan-out convs, BN 1/0, fc N(0, 0.01²))
from a generator seeded with ``init_seed``, with a loud warning.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from gifemo.backbones.base import VideoBackbone, class_path
from gifemo.backbones.preprocessing import Preprocessing
from gifemo.backbones.weights import apply_weights, weights_identity

log = logging.getLogger(__name__)

KINETICS400_CLASSES = 400
KINETICS400_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS400_STD = (0.22803, 0.22145, 0.216989)
WIDTHS = (64, 128, 256, 512)
STEM_MID = 45


def kinetics400_preprocessing() -> Preprocessing:
    """torchvision's Kinetics-400 video preset (``VideoClassification(crop_size=(112, 112),
    resize_size=(128, 171))``): RGB, resize 128×171, centre crop 112 at (8, 30), /255, mean/std."""
    return Preprocessing(
        name="kinetics400",
        resize_hw=(128, 171),
        crop=112,
        centre=(round((128 - 112) / 2.0), round((171 - 112) / 2.0)),  # (8, 30), half to even
        channel_order="RGB",
        divisor=255.0,
        mean=KINETICS400_MEAN,
        std=KINETICS400_STD,
    )


def midplanes(inplanes: int, planes: int) -> int:
    """torchvision's Conv2Plus1D middle width: the (2+1)D block has about as many parameters as
    a full 3×3×3 convolution, ``(in·out·3·3·3) // (in·3·3 + 3·out)``."""
    return (inplanes * planes * 3 * 3 * 3) // (inplanes * 3 * 3 + 3 * planes)


class Conv2Plus1D(nn.Sequential):
    """Spatial 1×3×3 conv (stride (1, s, s)) → BN → ReLU → temporal 3×1×1 conv (stride (s, 1, 1))."""

    def __init__(self, in_planes: int, out_planes: int, mid: int, stride: int = 1) -> None:
        super().__init__(
            nn.Conv3d(in_planes, mid, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False),
            nn.BatchNorm3d(mid),
            nn.ReLU(inplace=True),
            nn.Conv3d(mid, out_planes, (3, 1, 1), stride=(stride, 1, 1), padding=(1, 0, 0), bias=False),
        )  # fmt: skip


class BasicBlock(nn.Module):
    """Residual block of two Conv2Plus1D (module notes); keys ``conv1.0.*``, ``conv1.1.*``,
    ``conv2.0.*``, ``conv2.1.*``, ``downsample.{0,1}.*``."""

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        mid = midplanes(inplanes, planes)
        self.conv1 = nn.Sequential(
            Conv2Plus1D(inplanes, planes, mid, stride),
            nn.BatchNorm3d(planes),
            nn.ReLU(inplace=True),
        )
        self.conv2 = nn.Sequential(Conv2Plus1D(planes, planes, mid), nn.BatchNorm3d(planes))
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.conv2(self.conv1(x))
        return self.relu(out + residual)


class R2Plus1dStem(nn.Sequential):
    """(2+1)D stem: 1×7×7 conv 3 → stem_mid (stride (1, 2, 2)), BN, ReLU, 3×1×1 conv → width, BN, ReLU."""

    def __init__(self, stem_mid: int = STEM_MID, width: int = WIDTHS[0]) -> None:
        super().__init__(
            nn.Conv3d(3, stem_mid, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
            nn.BatchNorm3d(stem_mid),
            nn.ReLU(inplace=True),
            nn.Conv3d(stem_mid, width, (3, 1, 1), stride=(1, 1, 1), padding=(1, 0, 0), bias=False),
            nn.BatchNorm3d(width),
            nn.ReLU(inplace=True),
        )


def _layer(inplanes: int, planes: int, *, stride: int) -> nn.Sequential:
    """Two BasicBlocks; the first changes width/stride through a 1×1×1 conv + BN shortcut."""
    downsample = None
    if stride != 1 or inplanes != planes:
        downsample = nn.Sequential(
            nn.Conv3d(inplanes, planes, kernel_size=1, stride=stride, bias=False),
            nn.BatchNorm3d(planes),
        )
    return nn.Sequential(
        BasicBlock(inplanes, planes, stride, downsample), BasicBlock(planes, planes)
    )


class R2Plus1D18(VideoBackbone):
    """R(2+1)D-18 with torchvision's module names; ``features`` = 512-d pooled, before ``fc``.

    Args:
        num_classes: width of ``fc`` (Kinetics-400: 400); ``None`` builds no fc.
        widths: output channels of layer1..layer4 (torchvision: 64, 128, 256, 512; tests use
            tiny ones). ``feature_dim = widths[-1]``.
        stem_mid: channels between the stem's spatial and temporal convs (torchvision: 45).
        freeze_batchnorm: keep every BatchNorm in eval mode (running statistics, no updates)
            even when the module trains — for fine-tuning with a few clips per batch, where
            batch statistics are noisy. Default False: torchvision's behaviour.
        init_seed: recorded in ``weights_id`` (``"random:<seed>"``) until weights are loaded.
    """

    classifier_layers = ("fc",)

    def __init__(
        self,
        *,
        num_classes: int | None = KINETICS400_CLASSES,
        widths: Sequence[int] = WIDTHS,
        stem_mid: int = STEM_MID,
        freeze_batchnorm: bool = False,
        init_seed: int = 0,
    ) -> None:
        super().__init__()
        if len(widths) != 4:
            raise ValueError(f"widths must have 4 entries (layer1..layer4), got {tuple(widths)}")
        self.widths = tuple(int(w) for w in widths)
        self.stem_mid = int(stem_mid)
        self.feature_dim = self.widths[-1]
        self.num_classes = num_classes
        self.freeze_batchnorm = bool(freeze_batchnorm)
        self.weights_id = weights_identity(None, init_seed=init_seed)
        self.preprocessing = kinetics400_preprocessing()
        w1, w2, w3, w4 = self.widths
        self.stem = R2Plus1dStem(self.stem_mid, w1)
        self.layer1 = _layer(w1, w1, stride=1)
        self.layer2 = _layer(w1, w2, stride=2)
        self.layer3 = _layer(w2, w3, stride=2)
        self.layer4 = _layer(w3, w4, stride=2)
        self.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
        self.fc = nn.Linear(self.feature_dim, num_classes) if num_classes else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torchvision's initialisation: Kaiming-normal (fan_out, ReLU) convs, BN weight 1 and
        bias 0, fc weight N(0, 0.01²) and bias 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def train(self, mode: bool = True) -> R2Plus1D18:
        super().train(mode)
        if mode and self.freeze_batchnorm:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm3d):
                    m.eval()
        return self

    def _check_clips(self, x: Tensor) -> None:
        if x.dim() != 5 or x.shape[1] != 3:
            raise ValueError(
                f"R(2+1)D expects clips of shape (B, 3, T, H, W), e.g. (B, 3, 16, 112, 112); "
                f"got {tuple(x.shape)}"
            )

    def features(self, x: Tensor) -> Tensor:
        """Pooled layer4 activations, before fc: (B, 3, T, H, W) → (B, widths[-1])."""
        self._check_clips(x)
        x = self.stem(x)  # (B, 64, T, H/2, W/2)
        x = self.layer1(x)  # (B, 64, T, 56, 56) for 16×112×112 clips
        x = self.layer2(x)  # (B, 128, 8, 28, 28)
        x = self.layer3(x)  # (B, 256, 4, 14, 14)
        x = self.layer4(x)  # (B, 512, 2, 7, 7)
        return self.avgpool(x).flatten(1)  # (B, 512)

    def forward(self, x: Tensor) -> Tensor:
        """Logits (never softmax): (B, 3, T, H, W) → (B, num_classes)."""
        if self.fc is None:
            raise RuntimeError("this R(2+1)D has no fc (drop_fc=True or drop_classifier())")
        return self.fc(self.features(x))

    def describe(self) -> dict[str, Any]:
        return {
            "class": class_path(self),
            "widths": list(self.widths),
            "stem_mid": self.stem_mid,
            "feature_dim": self.feature_dim,
            "feature": "layer4 average-pooled, before fc",
        }


def build_r2plus1d_18(
    *,
    weights: str | None = None,
    num_classes: int = KINETICS400_CLASSES,
    drop_fc: bool = False,
    widths: Sequence[int] = WIDTHS,
    stem_mid: int = STEM_MID,
    freeze_batchnorm: bool = False,
    init_seed: int = 0,
) -> R2Plus1D18:
    """Build R(2+1)D-18 and load ``weights`` (a torchvision state dict or safetensors) if given.

    Without a file every parameter is drawn from a generator seeded with ``init_seed`` and a
    loud warning says the features are not Kinetics-400 ones (nothing is downloaded). The file
    is read without running code and checked key by key (:mod:`gifemo.backbones.weights`); fc
    may differ: ignored with ``drop_fc``, re-initialised for another ``num_classes``.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        model = R2Plus1D18(
            num_classes=None if drop_fc else num_classes,
            widths=widths,
            stem_mid=stem_mid,
            freeze_batchnorm=freeze_batchnorm,
            init_seed=init_seed,
        )
    hint = ""
    if model.widths != WIDTHS or model.stem_mid != STEM_MID:
        hint = " (torchvision's weights need the full-width network: backbone=r2plus1d_18)"
    apply_weights(
        model, weights, head="fc", arch=f"R(2+1)D-18 widths {model.widths}", hint=hint, log=log,
        random_message=(
            "R(2+1)D-18 has RANDOM weights (no weight file given; set backbone.weights= a state "
            "dict saved from torchvision's r2plus1d_18, .pth or .safetensors): features are not "
            "Kinetics-400 features"
        ),
    )  # fmt: skip
    return model
