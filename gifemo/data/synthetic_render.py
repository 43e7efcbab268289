"""Rendering of the synthetic dataset's GIFs: what the pixels show (step 6 of
:mod:`gifemo.data.synthetic`) and the container facts (step 7).

The pixels show (v, a) + N(0, 0.9² I) (``VISUAL_NOISE``) through strong, global, low-frequency
cues that survive a randomly initialised C3D: background hue and brightness from valence, a
large blob whose brightness and shape follow valence and whose size and speed grow with
arousal; nuisances (gradient direction, texture, a scene cut, a blinking corner mark). Frames
are palette images written by Pillow, with per-GIF delays, optional transparency and disposal 2.
"""

from __future__ import annotations

import colorsys
import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

VISUAL_NOISE = 0.9  # std of the noise between the latent affect and what the pixels show


def _hsv(h: float, s: float, v: float) -> list[int]:
    return [
        round(255 * c) for c in colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0), 1), min(max(v, 0), 1))
    ]


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _scene_palette(v: float, rng: np.random.Generator) -> list[list[int]]:
    """8 background shades: hue warm (v > 0) ↔ cool (v < 0), brighter for positive valence."""
    hue = 0.11 + 0.55 * _sig(-2.5 * v) + rng.normal(0, 0.02)
    val = 0.35 + 0.5 * _sig(2.0 * v)
    return [_hsv(hue, 0.75, val * (0.7 + 0.3 * k / 7)) for k in range(8)]


def _background(rng: np.random.Generator, h: int, w: int, textured: bool, base: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    angle = rng.uniform(0, 2 * math.pi)
    g = np.cos(angle) * yy / h + np.sin(angle) * xx / w
    g = (g - g.min()) / max(g.max() - g.min(), 1e-9)
    shade = np.floor(g * 7.999)
    if textured:
        shade = np.clip(shade + rng.integers(-1, 2, size=(h, w)), 0, 7)
    return (base + shade).astype(np.uint8)


def render_gif(rng: np.random.Generator, path: Path, *, va: np.ndarray, n_frames: int, h: int, w: int,
               cartoon: bool, multi_scene: bool) -> dict[str, Any]:  # fmt: skip
    """Draw and save one animated GIF (palette images, Pillow writer); returns its container facts."""
    v, a = (float(x) for x in va + rng.normal(0.0, VISUAL_NOISE, size=2))  # what the pixels show
    v_look = v + rng.normal(0, 0.25)
    palette = _scene_palette(v, rng) + _scene_palette(v + rng.normal(0, 0.5), rng)  # 0-7, 8-15
    palette += [
        _hsv(
            0.14 if v_look > 0 else 0.75, 0.35 if v_look > 0 else 0.6, 0.97 if v_look > 0 else 0.2
        ),  # 16 blob
        [0, 0, 0],  # 17 outline
        [255, 255, 255],  # 18 mark A
        [0, 0, 0],  # 19 mark B
        _hsv(rng.random(), 0.8, 0.8),  # 20 second character
        [255, 0, 255],  # 21 transparent
    ]
    scenes = [_background(rng, h, w, not cartoon, 0), _background(rng, h, w, not cartoon, 8)]
    cut = n_frames // 2 if multi_scene and n_frames >= 4 else n_frames
    radius = min(h, w) * (0.14 + 0.14 * _sig(1.5 * a))
    speed = 0.012 * math.exp(1.6 * a)  # cycles per frame
    ph = rng.uniform(0, 2 * math.pi, size=2)
    square = v_look < 0
    transparent = rng.random() < 0.15
    border = max(2, min(h, w) // 16)
    yy, xx = np.mgrid[0:h, 0:w]
    frames = []
    for t in range(n_frames):
        idx = scenes[0 if t < cut else 1].copy()
        cy = h / 2 + 0.3 * h * math.sin(2 * math.pi * speed * t + ph[0])
        cx = w / 2 + 0.3 * w * math.sin(2 * math.pi * speed * 1.3 * t + ph[1])
        if square:
            d = np.maximum(np.abs(yy - cy), np.abs(xx - cx))
        else:
            d = np.hypot(yy - cy, xx - cx)
        if cartoon:
            idx[d <= radius + max(1.0, radius / 8)] = 17
        idx[d <= radius] = 16
        if t >= cut:  # the second scene has a second character
            d2 = np.hypot(yy - (h - cy), xx - (w - cx))
            idx[d2 <= radius * 0.6] = 20
        idx[0:2, 0:2] = 18 + (t % 2)
        if transparent:
            idx[:border, 2:] = idx[-border:, :] = 21
        frames.append(Image.fromarray(idx, mode="P"))
    flat = [c for rgb in palette for c in rgb]
    for im in frames:
        im.putpalette(flat)
    base_delay = int(rng.choice([0, 20, 30, 40, 50, 60, 70, 80, 100, 120, 150, 200],
                                p=[0.05, 0.08, 0.1, 0.14, 0.12, 0.12, 0.1, 0.1, 0.08, 0.05, 0.03, 0.03]))  # fmt: skip
    if rng.random() < 0.1 and base_delay > 0:
        delays = [max(10, base_delay + 10 * int(k)) for k in rng.integers(-2, 3, size=n_frames)]
    else:
        delays = [base_delay] * n_frames
    kw: dict[str, Any] = {
        "save_all": True,
        "append_images": frames[1:],
        "duration": delays,
        "loop": 0,
    }
    if transparent:
        kw["transparency"] = 21
    if rng.random() < 0.2:
        kw["disposal"] = 2
    frames[0].save(path, format="GIF", **kw)
    return {
        "n_frames": n_frames,
        "delays_ms": delays,
        "height": h,
        "width": w,
        "transparent": transparent,
    }
