"""The labelling page's keyboard map (shown on the page; a test checks no two actions share a key).

Answer keys: ``y`` yes, ``n`` no, ``s`` skip, ``u`` undo; flags: ``c`` cartoon, ``m`` multi-scene;
other emotions the GIF also shows (toggles, multi-label): ``1``–``9``, ``0``, then ``q w e r t a d``
in EMOTIONS order. The emotion being asked has no toggle (its answer is y/n).
"""

from __future__ import annotations

from gifemo.emotions import EMOTIONS

ACTION_KEYS: dict[str, str] = {
    "yes": "y",
    "no": "n",
    "skip": "s",
    "undo": "u",
    "cartoon": "c",
    "multi_scene": "m",
}
_EMOTION_KEYS = "1234567890qwertad"
EMOTION_KEYS: dict[str, str] = dict(zip(EMOTIONS, _EMOTION_KEYS, strict=True))
KEYMAP: dict[str, dict[str, str]] = {"actions": ACTION_KEYS, "emotions": EMOTION_KEYS}


def all_keys() -> list[str]:
    """Every bound key, actions then emotions (duplicates would be a collision)."""
    return [*ACTION_KEYS.values(), *EMOTION_KEYS.values()]
