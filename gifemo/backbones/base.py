"""What a video backbone is: clips in, features out, and everything a run must record about it.

Every backbone (:class:`~gifemo.backbones.c3d.C3D`, :class:`~gifemo.backbones.r2plus1d.R2Plus1D18`)
is a :class:`VideoBackbone`; extraction, the feature store's identity, fine-tuning and predict use
only this interface:

- ``features(clips)``: ``(B, 3, T, H, W)`` float32 clips → ``(B, feature_dim)`` features;
- ``feature_dim``: D, the width of those features;
- ``weights_id``: which weights it holds — ``"<file name> sha256:<hex>"`` for a user's file,
  ``"random:<seed>"`` for the seeded random initialisation (:mod:`gifemo.backbones.weights`);
- ``preprocessing``: the :class:`~gifemo.backbones.preprocessing.Preprocessing` its weights
  were trained with (torchvision's ``weights.transforms``); ``preprocessing.transform(train=…)``
  turns decoded frames + clip indices into ``features``' input;
- ``describe()``: the architecture as plain data (recorded and fingerprinted by feature stores);
- ``drop_classifier()``: removes the layers ``features`` does not use (C3D's fc7/fc8, R(2+1)D's
  fc), so that fine-tuning trains no dead parameters and DDP sees none unused.
"""

from __future__ import annotations

import abc
from typing import Any

from torch import Tensor, nn

from gifemo.backbones.preprocessing import Preprocessing


class VideoBackbone(nn.Module, abc.ABC):
    """Base class of the video backbones (see the module notes)."""

    feature_dim: int
    weights_id: str
    preprocessing: Preprocessing
    #: attribute names of the layers ``features`` does not use (set to None by drop_classifier)
    classifier_layers: tuple[str, ...] = ()

    @abc.abstractmethod
    def features(self, clips: Tensor) -> Tensor:
        """(B, 3, T, H, W) → (B, feature_dim)."""

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """Architecture as plain data: class, widths, which layer the features come from."""

    def drop_classifier(self) -> None:
        """Remove the layers that ``features`` does not use (``forward`` raises afterwards)."""
        for name in self.classifier_layers:
            if getattr(self, name, None) is not None:
                setattr(self, name, None)

    def identity(self) -> dict[str, Any]:
        """Everything that decides the features: architecture, weights, preprocessing."""
        return {
            "backbone": self.describe(),
            "weights_id": self.weights_id,
            "preprocessing": self.preprocessing.describe(),
        }


def class_path(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"
