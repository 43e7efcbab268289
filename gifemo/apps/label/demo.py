"""The offline end-to-end demo: collect → extract → rank → label → assemble → train on GIFGIF+.

``python -m gifemo label demo [--out outputs/label_demo] [--size tiny|default] [--error 0.05]``

Each step is the real command a lab would run, started as a subprocess and printed:

1. ``python -m gifemo collect demo``: the generated candidate pool served by a local fake Giphy
   and collected into ``OUT/collected`` (no key, no network);
2. ``python train.py model=ridge``: a recogniser trained on the generated GIFGIF-style data
   (``OUT/train``, its ``metrics.json`` has the predicted Ñ);
3. ``python extract.py``: C3D features of the collected folder (``OUT/store``);
4. ``python -m gifemo predict``: each emotion's candidates ranked within its own candidates
   (``OUT/ranked/ranked.csv``);
5. ``label init`` (``--strategy active``: re-ranked by ``gifemo.active`` from the trained run
   and the candidates' store) + ``label serve`` (a real server process on 127.0.0.1) + ``label simulate
   --url``: two scripted labellers answer through the JSON API from the generated data's hidden
   labels (``truth.jsonl``), with an error rate so that they sometimes disagree;
6. ``label agreement`` and ``label assemble``: κ, α, Ñ, and the GIFGIF+ folder ``OUT/gifgif_plus``;
7. ``python train.py model=svm data=gifgif_plus data.root=OUT/gifgif_plus``: the Table 4
   baseline trained on the assembled dataset.

A step whose output exists is skipped, so a rerun continues. Uses ``backbone=c3d_tiny`` (random
weights): the demo shows the flow, not accuracy.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _run(cmd: list[str], log: Path | None = None) -> None:
    print("$", " ".join(shlex.quote(c) for c in cmd), flush=True)
    r = subprocess.run(cmd, cwd=ROOT, text=True, capture_output=log is not None)
    if log is not None:
        log.write_text(r.stdout + r.stderr)
        tail = (r.stdout + r.stderr).strip().splitlines()[-3:]
        print("  " + "\n  ".join(tail), flush=True)
    if r.returncode != 0:
        raise SystemExit(
            f"step failed ({r.returncode}): {' '.join(cmd)}" + (f"; log {log}" if log else "")
        )


def demo(
    out: Path,
    *,
    size: str = "tiny",
    error: float = 0.05,
    n_p: int = 5,
    seed: int = 0,
    strategy: str = "static",
) -> Path:
    """Run the whole flow into ``out``; returns the assembled dataset folder."""
    py = sys.executable
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    small = ["backbone=c3d_tiny", "extract.num_workers=0", "extract.progress=false"]
    if not (out / "collected" / "metadata.jsonl").is_file():
        _run(
            [
                py,
                "-m",
                "gifemo",
                "collect",
                "demo",
                "--out",
                str(out / "collected"),
                "--data-dir",
                str(data / "synthetic"),
                "--size",
                size,
                "--seed",
                str(seed),
                "--quiet",
            ],
            out / "collect.log",
        )
    if not (out / "train" / "model" / "model.json").is_file():
        _run(
            [
                py,
                "train.py",
                f"paths.data_dir={data}",
                f"data.synthetic_size={size}",
                f"data.synthetic_seed={seed}",
                "model=ridge",
                "logger=none",
                "figures=false",
                *small,
                f"hydra.run.dir={out / 'train'}",
            ],
            out / "train.log",
        )
    if not (out / "store").is_dir():
        _run(
            [
                py,
                "extract.py",
                "data=folder",
                "data.kind=unlabelled",
                f"data.root={out / 'collected'}",
                *small,
                f"extract.out_dir={out / 'store'}",
                f"hydra.run.dir={out / 'extract'}",
            ],
            out / "extract.log",
        )
    ranked = out / "ranked" / "ranked.csv"
    if not ranked.is_file():
        _run(
            [
                py,
                "-m",
                "gifemo",
                "predict",
                "--model",
                str(out / "train" / "model"),
                "--data",
                str(out / "collected"),
                "--store",
                str(out / "store"),
                "--out",
                str(out / "ranked"),
                "--top",
                "100000",
            ]
        )
    label = [py, "-m", "gifemo.apps.label"]
    project = out / "project"
    if not (project / "project.json").is_file():
        _run(
            [
                *label,
                "init",
                "--project",
                str(project),
                "--data",
                str(out / "collected"),
                "--ranked",
                str(ranked),
                "--n-p",
                str(n_p),
                "--predicted",
                str(out / "train" / "metrics.json"),
                "--strategy",
                strategy,
                *(
                    [
                        "--run",
                        str(out / "train"),
                        "--store",
                        str(out / "store"),
                        "--rerank-every",
                        "5",
                    ]
                    if strategy == "active"
                    else []
                ),
            ]
        )
    server_log = open(out / "server.log", "a")
    server = subprocess.Popen(
        [*label, "serve", "--project", str(project), "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=server_log,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if "serving on" not in line:
            raise SystemExit(f"label server did not start: {line!r}")
        url = line.split()[2]
        print(f"label server at {url}", flush=True)
        truth = data / "synthetic" / "candidates" / "truth.jsonl"
        _run(
            [
                *label,
                "simulate",
                "--project",
                str(project),
                "--truth",
                str(truth),
                "--url",
                url,
                "--error",
                str(error),
                "--seed",
                str(seed),
            ]
        )
    finally:
        os.kill(server.pid, signal.SIGTERM)
        server.wait(30)
        if server.stdout is not None:
            server.stdout.close()
        server_log.close()
    _run([*label, "agreement", "--project", str(project)])
    dataset = out / "gifgif_plus"
    _run([*label, "assemble", "--project", str(project), "--out", str(dataset)])
    _run(
        [
            py,
            "train.py",
            "model=svm",
            "data=gifgif_plus",
            f"data.root={dataset}",
            *small,
            "logger=none",
            f"hydra.run.dir={out / 'svm'}",
        ],
        out / "svm.log",
    )
    print(f"done: GIFGIF+ dataset {dataset}; SVM run {out / 'svm'}")
    return dataset


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m gifemo label demo", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--out", type=Path, default=Path("outputs/label_demo"), help="demo folder")
    p.add_argument(
        "--size", choices=("tiny", "default"), default="tiny", help="generated data size"
    )
    p.add_argument("--error", type=float, default=0.05, help="scripted labellers' error rate")
    p.add_argument("--n-p", type=int, default=5, help="consensus positives per emotion")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--strategy",
        choices=("static", "active"),
        default="static",
        help="queue order; active: gifemo.active re-ranks every 5 consensus outcomes",
    )
    a = p.parse_args(argv)
    demo(a.out, size=a.size, error=a.error, n_p=a.n_p, seed=a.seed, strategy=a.strategy)
    return 0
