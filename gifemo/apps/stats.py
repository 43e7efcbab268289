"""Figs. 9-10 of a dataset: frame counts and delays, emotion overlap, flag shares.

``python -m gifemo stats --out DIR [--root ROOT] [--kind KIND] [--synthetic-dir DIR]`` writes the
PNGs and ``stats.json`` (:func:`gifemo.data.stats.dataset_statistics`).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from gifemo.data.metadata import MetadataError, load_dataset
from gifemo.data.stats import dataset_statistics


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m gifemo stats", description="Figs. 9-10 of a dataset"
    )
    ap.add_argument("--root", default=None, help="dataset folder (default: the generated one)")
    ap.add_argument(
        "--kind", default="gifgif_plus", help="gifgif | gifgif_plus | unlabelled | folder | auto"
    )
    ap.add_argument(
        "--synthetic-dir",
        default="data/synthetic",
        help="where the generated dataset lives (used when --root is not given)",
    )
    ap.add_argument("--out", required=True, help="folder for the PNGs and stats.json")
    args = ap.parse_args(argv)
    try:
        ds = load_dataset(kind=args.kind, root=args.root, synthetic_dir=args.synthetic_dir)
        res = dataset_statistics(ds, args.out)
    except (MetadataError, ValueError) as e:
        ap.exit(2, f"error: {e}\n")
    print(json.dumps({k: res[k] for k in ("dataset", "timing", "figures")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
