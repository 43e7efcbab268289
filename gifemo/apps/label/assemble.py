"""Assemble a labelling project into a GIFGIF+ dataset folder (paper §3.7, DESIGN §2).

``assemble(state, out)`` writes ``out/metadata.jsonl`` (rows in the ``gifgif_plus`` format),
``out/gifs/<id>.gif`` (hard links where possible, else copies), ``out/stats/`` (Figs. 9–10 and
``stats.json`` from :func:`gifemo.data.stats.dataset_statistics`) and ``out/README.md``.

Labels of a GIF g:

- ``emotions``: the emotions e whose item (e, g) has a consensus *yes* (two yes answers, or the
  adjudicator's yes under policy ``adjudicate``), plus any other emotion e' that *both* answers of
  one of g's items marked — unless the item (e', g) itself has a consensus *no*;
- ``cartoon`` / ``multi_scene``: true when both answers of some item of g set the flag, else
  false when both answers of some item left it unset, else null;
- GIFs without any emotion are left out (the paper keeps only consensus positives).

Provenance kept from the candidate rows: every key of the input row that is not a label
(``giphy_ids``, ``title``, ``queries``, ``found_for``, ``source_url``, …), plus ``labellers``
(the number of distinct labellers who answered an item of g) and ``label_items`` (how many
(emotion, g) items reached consensus).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gifemo.apps.label.state import LabelState
from gifemo.emotions import EMOTIONS

LABEL_KEYS = ("scores", "emotions", "cartoon", "multi_scene", "file", "id", "tags")


def consensus_rows(state: LabelState) -> dict[str, dict[str, Any]]:
    """gif id -> {emotions, cartoon, multi_scene, labellers, label_items} (see module doc)."""
    finals = state.consensus_labels()
    out: dict[str, dict[str, Any]] = {}
    flags: dict[str, dict[str, set[bool]]] = {}
    marked: dict[str, set[str]] = {}
    users: dict[str, set[str]] = {}
    items: dict[str, int] = {}
    for item in state.complete_items():
        g = item.gif_id
        a, b = item.pair()
        users.setdefault(g, set()).update((a.user, b.user))
        items[g] = items.get(g, 0) + (g in finals.get(item.emotion, {}))
        marked.setdefault(g, set()).update(set(a.others) & set(b.others))
        for key in ("cartoon", "multi_scene"):
            va, vb = bool(getattr(a, key)), bool(getattr(b, key))
            if va == vb:
                flags.setdefault(g, {}).setdefault(key, set()).add(va)
    for g in set(users):
        emotions = {e for e in EMOTIONS if finals.get(e, {}).get(g) is True}
        emotions |= {e for e in marked.get(g, ()) if finals.get(e, {}).get(g) is not False}
        if not emotions:
            continue
        fl = flags.get(g, {})
        out[g] = {
            "emotions": [e for e in EMOTIONS if e in emotions],
            "cartoon": (True in fl["cartoon"]) if "cartoon" in fl else None,
            "multi_scene": (True in fl["multi_scene"]) if "multi_scene" in fl else None,
            "labellers": len(users[g]),
            "label_items": items.get(g, 0),
        }
    return out


def _link_or_copy(src: Path, dst: Path) -> None:
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


README = """# {name}: a GIFGIF+-style dataset

Collected with gifemo's labelling tool: candidates ranked by a trained recogniser, checked in
that order by two labellers each; an emotion is assigned only on consensus (policy `{policy}`),
multi-label, with `cartoon` and `multi_scene` flags (Chen, Rudovic & Picard, GIFGIF+, §3.7).

- GIFs: {n_gifs}
- consensus positives wanted per emotion (N_p): {n_p}
- Krippendorff's α (MASI distance, label sets): {alpha}

| emotion | GIFs | positives checked / candidates checked | Cohen's κ | agreement % |
|---|---:|---:|---:|---:|
{table}

Files: `metadata.jsonl` (rows: `id`, `file`, `tags`, `emotions`, `cartoon`, `multi_scene` and
provenance: Giphy ids, search queries, number of labellers), `gifs/`, `stats/` (Figs. 9–10,
`stats.json`), `agreement.json`. Train on it with
`python train.py model=svm data=gifgif_plus data.root=<this folder>`.

GIFs found through the GIPHY API — **Powered by GIPHY**. The GIF files remain their owners';
check GIPHY's current terms of service before publishing or redistributing this dataset.
"""


def assemble(
    state: LabelState,
    out_dir: str | Path,
    *,
    predicted: Mapping[str, float] | None = None,
    stats: bool = True,
) -> dict[str, Any]:
    """Write the dataset folder; returns a summary (gifs, per-emotion counts, paths)."""
    from gifemo.apps.label.agreement import agreement_report

    out = Path(out_dir)
    (out / "gifs").mkdir(parents=True, exist_ok=True)
    rows = consensus_rows(state)
    lines = []
    for g in sorted(rows):
        info = state.gifs[g]
        src = Path(info["file"])
        name = f"gifs/{g}.gif"
        _link_or_copy(src, out / name)
        prov = {k: v for k, v in info["row"].items() if k not in LABEL_KEYS}
        lines.append(json.dumps({"id": g, "file": name, "tags": info["tags"], **rows[g], **prov}))
    (out / "metadata.jsonl").write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    rep = agreement_report(state, predicted)
    (out / "agreement.json").write_text(json.dumps(rep, indent=1) + "\n", encoding="utf-8")
    counts = {e: sum(e in r["emotions"] for r in rows.values()) for e in EMOTIONS}
    summary: dict[str, Any] = {"out": str(out), "gifs": len(rows), "per_emotion": counts}
    if stats and rows:
        from gifemo.data.metadata import read_dataset
        from gifemo.data.stats import dataset_statistics

        ds = read_dataset(out, kind="gifgif_plus")
        summary["stats"] = dataset_statistics(ds, out / "stats")["figures"]
    table = "\n".join(
        f"| {e} | {counts[e]} | {r['positives']} / {r['checked']} | "
        f"{'—' if r['kappa'] is None else format(r['kappa'], '.3f')} | "
        f"{'—' if r['percent_agreement'] is None else format(r['percent_agreement'], '.1f')} |"
        for e, r in rep["emotions"].items()
    )
    alpha = "—" if rep["alpha"] is None else format(rep["alpha"], ".3f")
    (out / "README.md").write_text(
        README.format(
            name=out.name,
            policy=state.cfg.policy,
            n_gifs=len(rows),
            n_p=state.cfg.n_p,
            alpha=alpha,
            table=table,
        ),
        encoding="utf-8",
    )
    return summary
