"""What the extraction scripts run as real processes (a kill -9 child, torchrun ranks) share:
the GIF records of a folder and the tiny random C3D, built the same way in every process."""

from __future__ import annotations

import warnings
from pathlib import Path

from gifemo.backbones.c3d import C3D, build_c3d


class Rec:
    def __init__(self, path: Path) -> None:
        self.id, self.path = path.stem, path


def folder_records(folder: str | Path) -> list[Rec]:
    """One record per ``*.gif`` in ``folder``, sorted by name (id = file stem)."""
    return [Rec(p) for p in sorted(Path(folder).glob("*.gif"))]


def tiny_c3d() -> C3D:
    """C3D with channels (4, 8, 8, 16, 16) and fc 32, random weights (their warning silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_c3d(channels=(4, 8, 8, 16, 16), fc_dim=32)
