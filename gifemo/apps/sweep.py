"""Summarise a finished sweep: each method's best configuration by CV score, Table 2.

``python -m gifemo sweep SWEEP_DIR [--metric cv/score]`` prints the table and writes
``SWEEP_DIR/summary.md`` and ``summary.json`` (:func:`gifemo.runners.sweep.summarize`; a multirun
does the same by itself when it ends).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from gifemo.runners.sweep import summarize


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gifemo sweep", description="Summarise a finished sweep (Table 2)."
    )
    parser.add_argument("sweep_dir", help="the multirun directory (outputs/train/multiruns/...)")
    parser.add_argument("--metric", default="cv/score", help="choose configurations by this key")
    args = parser.parse_args(argv)
    summarize(args.sweep_dir, metric=args.metric)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
