"""How an extraction runs, and the store identity that records it.

The workers' transform (:func:`wire_transform`: uint8 clips where that gives the same clips;
:func:`worker_wire`: crops or used frames on the wire), where frames are resized
(:func:`resolve_resize_on`, :func:`resize_device`), the device and the precision, and the
fingerprint of a store (:func:`store_identity`), which hashes what changes a store's bytes:
data, backbone, weights, preprocessing, clip rule, precision, budgets and — where they change
the bytes — ``torch.compile`` and a resize on a non-CPU device. :mod:`gifemo.features.extract`
runs the extraction with them; ``extract.py`` (the runner) uses them to find a store by
fingerprint before extracting.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from gifemo.backbones import VideoBackbone
from gifemo.backbones.preprocessing import ClipTransform
from gifemo.backbones.transfer import DeviceResize, SharedCrops, plain_cut
from gifemo.data.clips import ClipSampler
from gifemo.features.store import (
    backbone_config,
    clip_rule,
    feature_fingerprint,
    preprocessing_of,
)

CLIP_DTYPES = ("uint8", "float32")
RESIZE_ON = ("worker", "device")


def wire_transform(transform: Any, clip_dtype: str) -> Any:
    """The transform the loader workers run: with ``clip_dtype="uint8"`` the same crop and
    channel order stopped before the arithmetic (normalised later on the model's device by
    ``transform.preprocessing.normalize``), where that gives the same clips; else ``transform``.
    """
    if clip_dtype not in CLIP_DTYPES:
        raise ValueError(f"clip_dtype must be one of {CLIP_DTYPES}, got {clip_dtype!r}")
    pre = getattr(transform, "preprocessing", None)
    if (
        clip_dtype == "uint8"
        and isinstance(transform, ClipTransform)
        and transform.output == "float32"
        and pre is not None
        and pre.mean_cube is None
    ):
        return ClipTransform(pre, train=transform.train, flip=transform.flip, output="uint8")
    return transform


def resolve_resize_on(resize_on: str, wire: Any) -> str:
    """``resize_on`` checked against the workers' transform ``wire`` (from
    :func:`wire_transform`): ``device`` needs a uint8 :class:`ClipTransform` (no mean cube)."""
    if resize_on not in RESIZE_ON:
        raise ValueError(f"extract.resize_on must be one of {RESIZE_ON}, got {resize_on!r}")
    can = isinstance(wire, ClipTransform) and wire.output == "uint8"
    if resize_on == "device" and not can:
        pre = getattr(wire, "preprocessing", None)
        why = (
            f"the mean cube {pre.mean_cube} (it is subtracted per crop in the workers)"
            if pre is not None and pre.mean_cube
            else f"the transform {wire!r} (it must be a ClipTransform sending uint8 clips: "
            "clip_dtype=uint8)"
        )
        raise ValueError(f"extract.resize_on=device cannot run with {why}; use resize_on=worker")
    return resize_on


def resize_device(resize_on: str, transform: Any, clip_dtype: str, device: str) -> str | None:
    """The device type the frames are resized on (None: in the workers), as
    :func:`extract_features` resolves it: :func:`store_identity`'s ``resize_device``."""
    wire = wire_transform(transform, clip_dtype)
    return resolve_device(device).type if resolve_resize_on(resize_on, wire) == "device" else None


def worker_wire(wire: Any, resize_on: str) -> Any:
    """What the workers run: :class:`DeviceResize` (``resize_on=device``); for an evaluation
    uint8 :class:`ClipTransform` with ``resize_on=worker``, :class:`SharedCrops` (each used
    frame's crop once, clips gathered after the transfer: about half the bytes of the
    overlapping clips); else ``wire``."""
    if resize_on == "device":
        return DeviceResize(wire)
    if plain_cut(wire) and wire.output == "uint8" and not wire.train:
        return SharedCrops(wire)
    return wire


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_precision(precision: str, device: torch.device) -> str:
    """ "32" | "bf16" as given; "auto" → bf16 where the hardware computes it natively.

    CUDA: bf16 when ``torch.cuda.is_bf16_supported()`` (H200: 562 vs 502 clips/s, bench).
    CPU: bf16 only when oneDNN has native bf16 (AVX512-BF16/AMX); on the 2-core AVX2 dev
    machine bf16 autocast falls back to a slow path (one clip took minutes, fp32 ~2 s).
    """
    if precision in ("32", "bf16"):
        return precision
    if precision != "auto":
        raise ValueError(f"precision must be '32', 'bf16' or 'auto', got {precision!r}")
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "32"
    return "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "32"


def store_identity(
    records: Sequence[Any],
    *,
    dataset_name: str,
    model: VideoBackbone,
    transform: Any,
    sampler: ClipSampler,
    precision: str,
    read_kwargs: dict[str, Any] | None,
    max_clips: int | None,
    unlisted: Sequence[dict[str, Any]] = (),
    compile: bool = False,
    resize_device: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """(fingerprint, the parts it hashes): the one list of a store's identity fields, which
    meta.json records as they are. ``resize_device``: the device type frames are resized on
    with ``resize_on=device`` — recorded only when it is not ``cpu`` (on a CPU the bytes are
    the worker path's)."""
    execution: dict[str, Any] = {}
    if compile:
        execution["compile"] = True
    if resize_device not in (None, "cpu"):
        execution["resize_on"] = f"device ({resize_device})"
    budget: dict[str, Any] = {}
    if max_clips is not None:
        budget["max_clips"] = int(max_clips)
    if unlisted:  # files the dataset could not list change failures.jsonl
        budget["unlisted"] = sorted(f"{u['path']}\t{u['reason']}" for u in unlisted)
    return feature_fingerprint(
        records,
        dataset_name=dataset_name,
        backbone=backbone_config(model),
        weights_id=model.weights_id,
        preprocessing=preprocessing_of(transform),
        precision=precision,
        read_kwargs=read_kwargs,
        clip_rule=clip_rule(sampler),
        budget=budget,
        execution=execution or None,
    )


# What meta.json records of the fingerprint's parts (the records digest and budget parts are
# summarised by counts and the explicit budget instead).
IDENTITY_FIELDS = (
    "dataset", "backbone", "weights_id", "preprocessing", "clip_rule", "precision", "read_kwargs",
)  # fmt: skip
