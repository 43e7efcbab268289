"""Helpers of the labelling-tool tests: a tiny project on disk and a real server process."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import httpx
import numpy as np
from PIL import Image

from gifemo.apps.label.project import init_project, open_store

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = '<img src=x onerror="window.__pwned=1">pwn & <b>bold</b>'


def write_gif(path: Path, seed: int, *, frames: int = 4, size: int = 48, loop: bool = True) -> None:
    """A small animated GIF whose frames differ a lot (so playing is visible)."""
    rng = np.random.default_rng(seed)
    imgs = []
    for t in range(frames):
        a = np.zeros((size, size, 3), np.uint8)
        a[:] = rng.integers(0, 255, 3, dtype=np.uint8)
        x = (t * size // frames) % size
        a[:, x : x + size // frames] = 255 - a[0, 0]
        imgs.append(Image.fromarray(a))
    kw = {"loop": 0} if loop else {}
    imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=120, disposal=1, **kw)


@dataclass
class Project:
    path: Path
    data: Path
    ids: list[str]
    emotions: tuple[str, ...]
    tokens: dict[str, str] = field(default_factory=dict)


def make_project(
    tmp: Path,
    *,
    n_gifs: int = 6,
    emotions: tuple[str, ...] = ("amusement", "anger"),
    users: tuple[str, ...] = ("alice", "bob"),
    hostile: int | None = None,
    **settings: object,
) -> Project:
    """``n_gifs`` GIFs, each a candidate of every emotion in ``emotions`` (ranked by id order
    for the first emotion, reversed for the others); users + an admin ``boss``."""
    data = tmp / "data"
    (data / "gifs").mkdir(parents=True)
    ids = [f"g{i:03d}" for i in range(n_gifs)]
    rows = []
    for i, g in enumerate(ids):
        write_gif(data / "gifs" / f"{g}.gif", i, loop=i % 2 == 0)
        title = HOSTILE if hostile == i else f"GIF number {i}"
        rows.append({"id": g, "file": f"gifs/{g}.gif", "tags": ["tag", f"t{i}"], "title": title,
                     "giphy_ids": [g, f"{g}dup"], "queries": ["happy"], "found_for": list(emotions)})  # fmt: skip
    (data / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with open(tmp / "ranked.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["emotion", "rank", "id", "path", "score"])
        for k, e in enumerate(emotions):
            order = ids if k == 0 else ids[::-1]
            for r, g in enumerate(order):
                w.writerow([e, r + 1, g, str(data / "gifs" / f"{g}.gif"), 10.0 - r])
    proj = tmp / "project"
    init_project(proj, data=data, ranked=tmp / "ranked.csv", **settings)  # type: ignore[arg-type]
    store = open_store(proj)
    tokens = {u: store.add_user(u) for u in users}
    tokens["boss"] = store.add_user("boss", "admin")
    store.close()
    return Project(proj, data, ids, emotions, tokens)


class ReverseReranker:
    """Test Reranker (the gifemo.active protocol): reverses each emotion's remaining candidates,
    slowly (the page must not wait for it); records its calls."""

    calls: ClassVar[list[dict]] = []

    def rerank(self, labels, remaining):
        ReverseReranker.calls.append({"labels": dict(labels), "remaining": dict(remaining)})
        time.sleep(0.3)
        return {e: list(reversed(ids)) for e, ids in remaining.items()}


class BadReranker:
    """Loses one id: the swap must be refused."""

    def rerank(self, labels, remaining):
        return {e: list(ids[:-1]) for e, ids in remaining.items()}


class Server:
    """``python -m gifemo.apps.label serve`` as a real child process on a free loopback port."""

    def __init__(self, project: Path, log: Path) -> None:
        self.project, self.log_path = project, log
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self, timeout: float = 30.0) -> Server:
        self.log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gifemo.apps.label", "serve", "--project", str(self.project),
             "--port", "0"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=self.log, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "serving on" not in line:
            raise RuntimeError(f"server did not start: {line!r}; log {self.log_path.read_text()}")
        self.url = line.split()[2]
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("server not healthy")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        self.log.close()

    def client(self, token: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)


class FlakyReranker:
    """Raises at its first call (a model that failed once), then reverses like
    ReverseReranker; counts its calls."""

    calls: ClassVar[int] = 0

    def rerank(self, labels, remaining):
        FlakyReranker.calls += 1
        if FlakyReranker.calls == 1:
            raise RuntimeError("model not loaded yet")
        return {e: list(reversed(ids)) for e, ids in remaining.items()}
