"""Video backbones: clips in, features out, with their weights' identity and preprocessing.

:class:`VideoBackbone` is the interface (:mod:`gifemo.backbones.base`); :mod:`.c3d` (Sports-1M
C3D, fc6 features) and :mod:`.r2plus1d` (torchvision's R(2+1)D-18, 512-d pooled features)
implement it; :mod:`.preprocessing` turns decoded frames into each one's input; :mod:`.weights`
loads a user's weight file safely. A new backbone is one module here plus one
``conf/backbone/<name>.yaml`` whose ``_target_`` is its builder.
"""

from gifemo.backbones.base import VideoBackbone
from gifemo.backbones.preprocessing import ClipTransform, Preprocessing
from gifemo.backbones.resize import resize_frames
from gifemo.backbones.weights import WeightsError, read_state_dict, weights_identity

__all__ = [
    "ClipTransform",
    "Preprocessing",
    "VideoBackbone",
    "WeightsError",
    "read_state_dict",
    "resize_frames",
    "weights_identity",
]
