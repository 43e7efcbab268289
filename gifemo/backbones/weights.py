"""Safe, checked loading of a backbone's weights from a user's file (one implementation for all).

Nothing is ever downloaded. A user brings a file: a PyTorch state dict (``torch.save``; e.g.
``c3d.pickle`` for C3D, or ``torch.save(torchvision.models.video.r2plus1d_18(weights=...)
.state_dict(), "r2plus1d_18.pth")`` for R(2+1)D-18) or a ``.safetensors`` file with the same
keys. :func:`read_state_dict` never runs code from the file; :func:`load_checked` compares every
key and shape with the network before copying anything and names what does not fit.

A run records which weights it used with :func:`weights_identity`: ``"<file name> sha256:<hex>"``
for a file, ``"random:<seed>"`` for the seeded random initialisation.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from gifemo.backbones.base import VideoBackbone

RANDOM_PREFIX = "random:"


class WeightsError(ValueError):
    """A weight file is unsafe, unreadable or does not fit the network; names file and key."""


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weights_identity(weights: str | Path | None, *, init_seed: int = 0) -> str:
    """``"random:<init_seed>"`` without a file, else ``"<file name> sha256:<hex>"``."""
    if weights is None:
        return f"{RANDOM_PREFIX}{int(init_seed)}"
    path = Path(weights)
    if not path.is_file():
        raise WeightsError(f"weight file {str(path)!r} does not exist")
    return f"{path.name} sha256:{file_sha256(path)}"


def is_random(weights_id: str) -> bool:
    return weights_id.startswith(RANDOM_PREFIX)


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


def load_checked(
    model: nn.Module,
    state: Mapping[str, Tensor],
    *,
    source: str = "state dict",
    head: str | None = None,
    arch: str = "the network",
    hint: str = "",
) -> list[str]:
    """Copy ``state`` into ``model`` after checking every key and shape; returns notes.

    ``head`` names the classifier ``nn.Linear`` attribute (C3D: ``"fc8"``, R(2+1)D: ``"fc"``),
    the one layer allowed to differ: if the model has none (``None`` attribute) the file's is
    ignored, and if the model's has another class count (same input width) the model keeps its
    fresh initialisation. A ``*.num_batches_tracked`` counter missing from an old file keeps the
    model's value (it never changes outputs). Anything else — a missing, unexpected,
    mis-shaped or non-finite tensor — raises :class:`WeightsError` naming every such key with
    the expected and the given shape; nothing is copied then.
    """
    expected = {k: v.shape for k, v in model.state_dict().items()}
    given = dict(state)
    notes: list[str] = []
    if head is not None:
        wkey, bkey = f"{head}.weight", f"{head}.bias"
        w, b = given.get(wkey), given.get(bkey)
        module = getattr(model, head, None)
        if module is None and (w is not None or b is not None):
            shape = tuple(w.shape) if w is not None else None
            notes.append(f"{head} from the file ignored (the model has no {head}): {wkey} {shape}")
            given.pop(wkey, None), given.pop(bkey, None)
        elif (
            module is not None
            and w is not None
            and b is not None
            and w.shape != expected[wkey]
            and w.dim() == 2
            and w.shape[1] == expected[wkey][1]
            and tuple(b.shape) == (w.shape[0],)
        ):
            notes.append(
                f"{head} re-initialised: the file has {w.shape[0]} classes, "
                f"the model {expected[wkey][0]}"
            )
            for key in (wkey, bkey):
                given.pop(key), expected.pop(key)  # the model keeps its fresh classifier
    counters = sorted(k for k in set(expected) - set(given) if k.endswith(".num_batches_tracked"))
    if counters:
        notes.append(f"{len(counters)} BatchNorm num_batches_tracked counters not in the file")
        for k in counters:
            expected.pop(k)
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
        raise WeightsError(f"{source} does not fit {arch}{hint}: " + "; ".join(problems))
    bad = [
        k for k in expected if given[k].is_floating_point() and not torch.isfinite(given[k]).all()
    ]
    if bad:
        raise WeightsError(f"{source}: non-finite values in {bad}")
    with torch.no_grad():
        own = model.state_dict()
        for k in expected:
            own[k].copy_(given[k].to(own[k].dtype))
    return notes


def apply_weights(
    model: VideoBackbone,
    weights: str | Path | None,
    *,
    head: str,
    arch: str,
    hint: str,
    random_message: str,
    log: logging.Logger,
) -> None:
    """Load a user's weight file into a freshly built backbone, or say loudly that it is random.

    ``weights=None`` keeps the seeded initialisation and warns ``random_message`` (the model's
    ``weights_id`` stays ``random:<seed>``). Otherwise the file is read without running code
    (:func:`read_state_dict`), checked key by key (:func:`load_checked` with ``head``, ``arch``
    and ``hint``), each note warned and logged, and ``model.weights_id`` set to the file's
    identity. Warnings point at the builder's caller.
    """
    if weights is None:
        warnings.warn(random_message, stacklevel=3)
        log.warning(random_message)
        return
    state = read_state_dict(weights)
    for note in load_checked(model, state, source=str(weights), head=head, arch=arch, hint=hint):
        warnings.warn(f"{Path(weights).name}: {note}", stacklevel=3)
        log.warning("%s: %s", Path(weights).name, note)
    model.weights_id = weights_identity(weights)
