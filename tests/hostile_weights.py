"""Weight files that would run code when unpickled: what the safe loaders must refuse."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

HOW = ("torch.save", "plain pickle")


class _Evil:
    """Unpickling this runs ``touch target``: the file's existence proves the code ran."""

    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def write_malicious_weights(
    path: Path, state: dict[str, Any], *, key: str, target: Path, how: str
) -> None:
    """Write ``state`` with ``state[key]`` replaced by a payload, as ``torch.save`` or a plain pickle."""
    state = state | {key: _Evil(target)}
    if how == "torch.save":
        torch.save(state, path)
    elif how == "plain pickle":
        path.write_bytes(pickle.dumps(state))
    else:
        raise ValueError(f"how must be one of {HOW}, got {how!r}")
