"""GIFGIF API per-GIF records → a GIFGIF-style ``metadata.jsonl`` with scores and tags.

``python -m gifemo gifgif RECORDS --gifs DIR --out DIR/metadata.jsonl [--emotion NAME]``

- ``RECORDS``: a JSON-lines file, a JSON file, or a folder of them (e.g. one ``<emotion>.json``
  per emotion), records as documented in :mod:`gifemo.data.gifgif_api`;
- ``--gifs``: the folder of GIF files ``<giphy id>.gif`` (default: ``gifs/`` beside ``--out``);
  GIFs without a file get no row and are listed in ``missing_gifs.tsv`` beside ``--out``;
- ``--emotion``: the emotion of records that name none (and whose file name is no emotion).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from gifemo.data.gifgif_api import ApiRecordError, import_api_records
from gifemo.emotions import EMOTIONS


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m gifemo gifgif",
        description="GIFGIF API per-GIF records → GIFGIF-style metadata.jsonl (scores + tags)",
    )
    ap.add_argument("records", help="JSON-lines file, JSON file, or folder of them")
    ap.add_argument("--out", required=True, help="metadata.jsonl to write")
    ap.add_argument(
        "--gifs",
        default=None,
        help="folder of the GIF files <id>.gif (default: gifs/ beside --out)",
    )
    ap.add_argument(
        "--emotion", default=None, choices=EMOTIONS, help="emotion of records that name none"
    )
    args = ap.parse_args(argv)
    gifs = args.gifs or str(Path(args.out).resolve().parent / "gifs")
    try:
        s = import_api_records(args.records, gifs, args.out, emotion=args.emotion)
    except (ApiRecordError, ValueError, OSError) as e:
        ap.exit(2, f"error: {e}\n")
    print(
        f"{args.out}: {s['rows']} GIFs with scores for 17 emotions from {s['records']} records "
        f"({s['gifs']} GIFs in the records)"
    )
    if s["without_file"]:
        print(f"{s['without_file']} GIFs have no file in {gifs}: listed in {s['missing_list']}")
    if s["gifs_missing_emotions"]:
        print(f"{s['gifs_missing_emotions']} GIFs lack a record for some emotion: prior (25, 25/3)")
    if s["tagless"]:
        print(f"{s['tagless']} GIFs have no tag")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
