"""The 17 GIFGIF emotions and the label conventions of the paper (§3.1, §3.4).

Every array with an emotion axis uses the order of :data:`EMOTIONS` (the paper's numbering in
Fig. 6: 1 amusement … 17 surprise).
"""

from __future__ import annotations

EMOTIONS: tuple[str, ...] = (
    "amusement",
    "anger",
    "contempt",
    "contentment",
    "disgust",
    "embarrassment",
    "excitement",
    "fear",
    "guilt",
    "happiness",
    "pleasure",
    "pride",
    "relief",
    "sadness",
    "satisfaction",
    "shame",
    "surprise",
)
N_EMOTIONS = len(EMOTIONS)
EMOTION_INDEX: dict[str, int] = {e: i for i, e in enumerate(EMOTIONS)}

# The positive cluster the paper finds (Fig. 6b, Fig. 8 ordering); the rest form the other one.
POSITIVE_EMOTIONS: tuple[str, ...] = (
    "amusement",
    "contentment",
    "excitement",
    "happiness",
    "pleasure",
    "pride",
    "satisfaction",
    "relief",
)
# Fig. 8's display order: the positive cluster first, then the others.
CLUSTER_ORDER: tuple[str, ...] = POSITIVE_EMOTIONS + tuple(
    e for e in EMOTIONS if e not in POSITIVE_EMOTIONS
)

MU0 = 25.0  # TrueSkill prior mean; a GIF is a positive of emotion e iff y_e = mu - 3 sigma > MU0
SIGMA0 = 25.0 / 3.0  # TrueSkill prior standard deviation
