"""Collect candidate GIFs from Giphy (paper §3.2); an offline demo against a local fake Giphy.

The collection itself is ``python collect.py collect.queries=[happy,smile] collect.out_dir=DIR``
(or ``collect.from_run=<train.py run dir>``) with the key in ``GIPHY_API_KEY``; see
docs/collecting.md. This app adds:

``python -m gifemo collect demo [--out DIR]``
    the whole collection flow offline, no key: generates the synthetic candidate pool, serves
    it from a fake Giphy on 127.0.0.1 (with a few 429s, a 500, re-uploaded duplicates and two
    broken files), and collects each emotion's Table 1 tags from it into ``DIR``.
``python -m gifemo collect fake --data DIR [--port N]``
    only the fake Giphy, serving a dataset folder until Ctrl-C; point ``collect.py`` at it with
    ``collect.api_base=<the printed URL>`` and any ``GIPHY_API_KEY``.

Modules: :mod:`.giphy` (the API client), :mod:`.ratelimit`, :mod:`.state` (SQLite),
:mod:`.download`, :mod:`.collector`, :mod:`.output` (metadata.jsonl), :mod:`.queries` (tags from a run), :mod:`.candidates`
(each emotion's own candidates, for ranking), :mod:`.fake_giphy`.
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Sequence
from pathlib import Path

DEMO_FAULTS = {3: "429", 7: "429bare", 11: "500"}  # search request number → injected fault
DEMO_RETRY_AFTER = 1  # seconds, in the fake's 429/500 replies
PORT_FILE = ".fake_giphy_port"  # the demo reuses its port, so a rerun finds the same URLs


def _demo(a: argparse.Namespace) -> int:
    from gifemo.apps.collect.collector import CollectOptions, collect
    from gifemo.apps.collect.fake_giphy import FakeGiphy
    from gifemo.apps.collect.queries import queries_from_run, table1_queries
    from gifemo.data.synthetic import generate

    pool = generate(a.data_dir, seed=a.seed, size=a.size, parts=("candidates",)) / "candidates"
    by_emotion = (
        queries_from_run(a.from_run, n_tags=a.n_tags)
        if a.from_run
        else table1_queries(n_tags=a.n_tags)
    )
    fake = FakeGiphy.from_dataset(pool, aliases=5, faults=DEMO_FAULTS, retry_after=DEMO_RETRY_AFTER)
    found = sorted(fake.served_ids(by_emotion))
    if len(found) > 2:  # two broken files among the GIFs the queries find
        fake.media_faults = {found[0]: "notgif", found[1]: "truncated"}
    port_file = Path(a.out) / PORT_FILE
    try:
        fake.start(int(port_file.read_text()) if port_file.is_file() else 0)
    except (OSError, ValueError):  # the port is taken now: any free one
        fake.start(0)
    port_file.parent.mkdir(parents=True, exist_ok=True)
    port_file.write_text(fake.url.rsplit(":", 1)[1].split("/")[0])
    try:
        print(f"fake Giphy serving {len(fake.gifs)} GIFs of {pool} at {fake.url}")
        opts = CollectOptions(
            out_dir=str(a.out), api_base=fake.url, from_run=None, queries=[],
            calls_per_hour=a.calls_per_hour, burst=a.calls_per_hour, backoff_s=0.5, progress=not a.quiet,
        )  # fmt: skip
        report = collect(opts, api_key="offline-demo-key", emotion_queries=by_emotion)
    finally:
        fake.stop()
    print(report.summary())
    print(
        f"failures (recorded, retried by a rerun): {a.out}/failures.jsonl\n"
        "next: features and per-emotion ranked lists of the collected folder —\n"
        f"  python extract.py data=folder data.kind=unlabelled data.root={a.out}\n"
        f"  python -m gifemo predict --model <train.py run>/model --data {a.out} --out {a.out}/ranked"
    )
    return 0


def _fake(a: argparse.Namespace) -> int:
    from gifemo.apps.collect.fake_giphy import FakeGiphy

    fake = FakeGiphy.from_dataset(a.data, aliases=a.aliases, latency_s=a.latency).start(a.port)
    print(f"fake Giphy serving {len(fake.gifs)} GIFs at {fake.url}  (Ctrl-C stops it)", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    fake.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gifemo collect", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="the whole collection flow offline on the generated data")
    d.add_argument("--out", type=Path, default=Path("outputs/collect_demo"), help="collected folder (default outputs/collect_demo; rerun continues it)")  # fmt: skip
    d.add_argument("--data-dir", default="data/synthetic", help="where the synthetic data is generated (default data/synthetic)")  # fmt: skip
    d.add_argument("--size", default="default", choices=["default", "tiny"], help="synthetic size (default: 200 candidates)")  # fmt: skip
    d.add_argument("--seed", type=int, default=0, help="synthetic seed")
    d.add_argument("--n-tags", type=int, default=10, help="tags per emotion (default 10, as the paper)")  # fmt: skip
    d.add_argument("--from-run", help="take each emotion's tags from a train.py run's run.json instead of Table 1")  # fmt: skip
    d.add_argument("--calls-per-hour", type=int, default=100_000, help="rate limit (default: high, the fake has none)")  # fmt: skip
    d.add_argument("--quiet", action="store_true", help="no progress bars")
    f = sub.add_parser("fake", help="serve a dataset folder as a fake Giphy until Ctrl-C")
    f.add_argument("--data", required=True, help="dataset folder with metadata.jsonl (id, file, tags)")  # fmt: skip
    f.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free one)")
    f.add_argument("--aliases", type=int, default=0, help="GIFs that get a second id with the same bytes")  # fmt: skip
    f.add_argument("--latency", type=float, default=0.0, help="seconds before each search reply")
    a = p.parse_args(argv)
    return _demo(a) if a.cmd == "demo" else _fake(a)
