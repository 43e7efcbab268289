"""Inter-labeller agreement and the empirical Ñ of a labelling project.

Per emotion, over the items with two answers (first answer = rater A, second = rater B):

- Cohen's κ = (p_o − p_e) / (1 − p_e) (``sklearn.metrics.cohen_kappa_score``; undefined — NaN,
  reported as null — when both raters used one answer only) and the percent agreement p_o.

One multi-label figure over all items: each answer is a *label set* — the emotions that labeller
assigned the GIF in that item (the asked emotion when they said yes, plus the other emotions
they marked) — and Krippendorff's α with a set distance δ,

    α = 1 − D_o / D_e,
    D_o = (1/n) Σ_u 1/(m_u − 1) Σ_{i≠j ∈ u} δ(v_ui, v_uj),
    D_e = 1/(n(n − 1)) Σ_{c≠k} δ(v_c, v_k),

over the n pairable values (units u with m_u ≥ 2 values; the D_e sum runs over all ordered pairs
of distinct value positions across units). δ is MASI (Passonneau 2006; the default),
δ = 1 − J·M with J = |A∩B| / |A∪B| and M = 1 (A = B), 2/3 (A ⊂ B or B ⊂ A), 1/3 (overlap,
neither a subset), 0 (disjoint), or Jaccard, δ = 1 − J; two empty sets are at distance 0.

Empirical Ñ (the paper's eq. 9 measured on the labelling): an emotion whose ``checked``
candidates (items with a consensus outcome) gave ``positives`` has precision
P = positives / checked and Ñ = N_p / P — the candidates two labellers would check to find N_p
positives at that rate (exactly ``checked`` when the quota was reached with the last check).
The model's predicted Ñ (its test-set precision at recall N_p / N_all) is shown next to it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from gifemo.apps.label.state import LabelState


def jaccard_distance(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 0.0
    return 1.0 - len(a & b) / len(a | b)


def masi_distance(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 0.0
    inter, union = len(a & b), len(a | b)
    if a == b:
        m = 1.0
    elif a <= b or b <= a:
        m = 2.0 / 3.0
    elif inter:
        m = 1.0 / 3.0
    else:
        m = 0.0
    return 1.0 - (inter / union) * m


DISTANCES = {"masi": masi_distance, "jaccard": jaccard_distance}


def krippendorff_alpha(units: Sequence[Sequence[frozenset[str]]], distance: str = "masi") -> float:
    """Krippendorff's α of label sets (one inner sequence of values per unit; see the module
    docstring). NaN when fewer than two pairable values or no expected disagreement."""
    delta = DISTANCES[distance]
    pairable = [list(u) for u in units if len(u) >= 2]
    values = [v for u in pairable for v in u]
    n = len(values)
    if n < 2:
        return math.nan
    d_o = 0.0
    for u in pairable:
        s = sum(delta(a, b) for i, a in enumerate(u) for j, b in enumerate(u) if i != j)
        d_o += s / (len(u) - 1)
    d_o /= n
    # D_e over all ordered pairs of distinct positions: count equal sets once (speed).
    counts: dict[frozenset[str], int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    kinds = list(counts.items())
    tot = sum(ca * cb * delta(a, b) for a, ca in kinds for b, cb in kinds)
    d_e = tot / (n * (n - 1))
    if d_e == 0:
        return math.nan
    return 1.0 - d_o / d_e


def cohen_kappa(a: Sequence[bool], b: Sequence[bool]) -> float:
    """scikit-learn's κ; NaN (not a warning) when it is undefined."""
    from sklearn.metrics import cohen_kappa_score

    if not a:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        k = float(cohen_kappa_score([int(x) for x in a], [int(x) for x in b]))
    return k


def empirical_n_tilde(checked: int, positives: int, n_p: int) -> float:
    """N_p / (positives / checked); NaN before the first positive."""
    return math.nan if positives == 0 else n_p * checked / positives


def _clean(x: float) -> float | None:
    return None if isinstance(x, float) and not math.isfinite(x) else round(x, 6)


def agreement_report(
    state: LabelState,
    predicted: Mapping[str, float] | None = None,
    *,
    distance: str = "masi",
) -> dict[str, Any]:
    """Per emotion κ, percent agreement, checked/positives/Ñ (empirical and predicted), and
    Krippendorff's α of the label sets over all items. JSON-ready (NaN → null)."""
    predicted = predicted or {}
    per: dict[str, dict[str, Any]] = {}
    units: list[list[frozenset[str]]] = []
    pairs: dict[str, tuple[list[bool], list[bool]]] = {e: ([], []) for e in state.emotions}
    for item in state.complete_items():
        a, b = item.pair()
        pairs[item.emotion][0].append(bool(a.answer))
        pairs[item.emotion][1].append(bool(b.answer))
        units.append(
            [frozenset(ev.others) | ({item.emotion} if ev.answer else frozenset()) for ev in (a, b)]
        )
    prog = {p["emotion"]: p for p in state.progress()}
    with state.lock:
        resolved = dict(state.resolved)
    for e in state.emotions:
        ra, rb = pairs[e]
        agree = sum(x == y for x, y in zip(ra, rb))
        checked, pos = resolved.get(e, 0), prog[e]["positives"]
        per[e] = {
            "pairs": len(ra),
            "kappa": _clean(cohen_kappa(ra, rb)),
            "percent_agreement": _clean(100.0 * agree / len(ra)) if ra else None,
            "checked": checked,
            "positives": pos,
            "n_p": state.cfg.n_p,
            "n_tilde_empirical": _clean(empirical_n_tilde(checked, pos, state.cfg.n_p)),
            "n_tilde_predicted": _clean(predicted[e]) if e in predicted else None,
            "done": prog[e]["done"],
        }
    return {
        "emotions": per,
        "alpha": _clean(krippendorff_alpha(units, distance)),
        "alpha_distance": distance,
        "items": len(units),
    }


def format_report(rep: Mapping[str, Any]) -> str:
    def f(x: Any, spec: str) -> str:
        return "—" if x is None else format(x, spec)

    lines = [
        f"{'emotion':<14}{'pairs':>6}{'kappa':>8}{'agree%':>8}{'checked':>9}{'pos':>6}"
        f"{'Ñ emp':>9}{'Ñ pred':>9}  done"
    ]
    for e, r in rep["emotions"].items():
        lines.append(
            f"{e:<14}{r['pairs']:>6}{f(r['kappa'], '.3f'):>8}{f(r['percent_agreement'], '.1f'):>8}"
            f"{r['checked']:>9}{r['positives']:>6}{f(r['n_tilde_empirical'], ',.0f'):>9}"
            f"{f(r['n_tilde_predicted'], ',.0f'):>9}  {'yes' if r['done'] else 'no'}"
        )
    lines.append(
        f"Krippendorff's α ({rep['alpha_distance']} distance, label sets, {rep['items']} items): "
        f"{f(rep['alpha'], '.3f')}"
    )
    return "\n".join(lines)
