"""GIFGIF vote dump → TrueSkill scores → a GIFGIF-style ``metadata.jsonl``.

``python -m gifemo votes VOTES.csv --gifs DIR --out DIR/metadata.jsonl [--tags TAGS]
[--trueskill gifgif|package] [--draw-probability P] [--strict] [--no-progress]``

- ``VOTES.csv``: the published dump, header ``metric,left,right,choice`` (see
  :mod:`gifemo.data.votes`); rows that are not votes (e.g. an empty id) are counted, skipped
  and summarised (``--strict``: stop at the first one, naming its line);
- ``--gifs``: the folder of GIF files ``<giphy id>.gif``; one metadata row per file;
- ``--tags``: a JSON object ``{id: [tags]}`` or JSON lines ``{"id", "tags"}`` (the vote dump
  carries no tags; :mod:`gifemo.apps.gifgif` imports GIFGIF's API records, which do);
- ``--trueskill``: ``gifgif`` (default: GIFGIF's own settings, draw probability 0.13 and its
  draw margin) or ``package`` (the trueskill package's defaults, draw probability 0.10);
- ``--draw-probability``: replaces the setting's probability;
- a progress bar runs over the votes (``--no-progress`` hides it); ~1.1 M votes take a few
  minutes on one core.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from gifemo.data.votes import TRUESKILL_SETTINGS, VoteError, import_votes


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m gifemo votes",
        description="GIFGIF vote dump → TrueSkill GIFGIF-style metadata.jsonl",
    )
    ap.add_argument("votes", help="CSV with the header metric,left,right,choice")
    ap.add_argument("--gifs", required=True, help="folder of the GIF files (<id>.gif)")
    ap.add_argument("--out", required=True, help="metadata.jsonl to write")
    ap.add_argument("--tags", default=None, help="JSON {id: [tags]} or JSON lines {id, tags}")
    ap.add_argument(
        "--trueskill",
        choices=TRUESKILL_SETTINGS,
        default="gifgif",
        help="gifgif: GIFGIF's settings (draw probability 0.13, its draw margin; default); "
        "package: the trueskill package's defaults (draw probability 0.10)",
    )
    ap.add_argument(
        "--draw-probability",
        type=float,
        default=None,
        help="replace the setting's draw probability (0.13 gifgif, 0.10 package)",
    )
    ap.add_argument("--strict", action="store_true", help="stop at the first bad row")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    try:
        s = import_votes(
            args.votes,
            args.gifs,
            args.out,
            tags=args.tags,
            settings=args.trueskill,
            draw_probability=args.draw_probability,
            strict=args.strict,
            progress=not args.no_progress,
        )
    except (VoteError, ValueError, OSError) as e:
        ap.exit(2, f"error: {e}\n")
    print(
        f"{args.out}: {s['gifs']} GIFs ({s['gifs_voted']} voted on), {s['votes']} votes "
        f"({s['draws']} neither), TrueSkill settings {s['settings']}"
        + (
            f"; {s['voted_without_file']} voted GIFs have no file"
            if s["voted_without_file"]
            else ""
        )
    )
    print(s["skipped"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
