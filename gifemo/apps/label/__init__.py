"""The labelling tool (paper §3.2, §3.7): people check ranked candidates until N_p consensus
positives per emotion, two labellers per GIF, and the result is assembled into GIFGIF+.

``python -m gifemo label COMMAND`` (or ``python -m gifemo.apps.label COMMAND``):

``init --project P --data ROOT --ranked ranked.csv [--n-p 3000] [--policy drop|adjudicate]
[--strategy static|active] [--rerank-every K] [--rerank-seconds S] [--lease-seconds S]
[--predicted RUN/metrics.json] [--reranker MOD:FN | --run RUN --store STORE]``
    create a project from a dataset folder and a ranked list (``python -m gifemo predict``)
``add-user --project P NAME [--reissue]``
    create a labeller; prints their personal link and token (shown once; stored hashed)
``admin-token --project P [NAME]``
    create (or re-issue) the admin's token and link
``serve --project P [--host 127.0.0.1] [--port 8765]``
    run the web app (Ctrl-C stops it; every acknowledged answer is on disk)
``agreement --project P [--json]``
    κ, percent agreement, Krippendorff's α, empirical vs predicted Ñ
``assemble --project P --out DIR``
    write the GIFGIF+ dataset (metadata.jsonl, gifs/, stats/, README.md)
``status --project P``
    progress per emotion
``demo [--out outputs/label_demo] [--size tiny]``
    the offline end-to-end demo: collect → extract → rank → label → assemble → train (see
    :mod:`.demo`)
``simulate --project P --truth truth.jsonl [--labellers 2] [--error 0] [--url URL]``
    scripted labellers answering from hidden labels (demo; see :mod:`.simulate`)

See docs/labelling.md.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gifemo.active.reranker import Reranker
from gifemo.apps.label.project import (
    POLICIES,
    STRATEGIES,
    ProjectConfig,
    init_project,
    load_config,
    open_store,
    predicted_n_tilde,
)
from gifemo.apps.label.state import LabelState

log = logging.getLogger("gifemo.label")


def load_reranker_from(cfg: ProjectConfig) -> Reranker | None:
    """The project's Reranker: ``reranker`` (``module:callable``, called with no arguments) or
    ``gifemo.active.load_reranker(run, store, candidates_data=data)`` (the trained run, the
    candidates' feature store, the project's dataset folder for tags); None for ``static``."""
    if cfg.strategy != "active":
        return None
    if cfg.reranker:
        mod, _, name = cfg.reranker.partition(":")
        if not name:
            raise ValueError(f"reranker must be 'module:callable', got {cfg.reranker!r}")
        factory = getattr(importlib.import_module(mod), name)
        return factory()  # type: ignore[no-any-return]
    if cfg.run:
        from gifemo.active import load_reranker

        log.info("loading the active reranker from %s (candidates store %s)", cfg.run, cfg.store)
        return load_reranker(
            Path(cfg.run), Path(cfg.store) if cfg.store else None, candidates_data=cfg.data
        )
    raise ValueError("strategy 'active' needs --run RUN [--store STORE] or --reranker MOD:FN")


def open_state(project: str | Path, *, with_reranker: bool = True) -> LabelState:
    cfg = load_config(project)
    reranker = load_reranker_from(cfg) if with_reranker else None
    return LabelState(open_store(project), cfg, reranker=reranker)


def _link(host: str, port: int, page: str, token: str) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return f"http://{shown}:{port}/{page}?token={token}"


def serve(project: str | Path, host: str = "127.0.0.1", port: int = 8765) -> int:
    """Run the app with uvicorn until interrupted; prints ``serving on URL`` once bound."""
    import uvicorn

    from gifemo.apps.label.server import create_app

    state = open_state(project)
    app = create_app(state, predicted=predicted_n_tilde(state.cfg.predicted, state.cfg.n_p))
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(256)
    bound = sock.getsockname()[1]
    print(f"serving on http://{host}:{bound} (project {project})", flush=True)
    config = uvicorn.Config(app, access_log=False, log_level="warning", timeout_graceful_shutdown=2)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        state.store.close()
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m gifemo label",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "demo", help="the offline end-to-end demo (options: demo --help)", add_help=False
    )

    def cmd(name: str, help: str) -> argparse.ArgumentParser:
        s = sub.add_parser(name, help=help, description=help)
        s.add_argument("--project", required=True, help="project folder")
        return s

    s = cmd("init", "create a project from a dataset folder and a ranked list")
    s.add_argument("--data", required=True, help="dataset folder with metadata.jsonl")
    s.add_argument("--ranked", required=True, help="ranked.csv or ranked.jsonl from predict")
    s.add_argument("--n-p", type=int, default=3000, help="consensus positives per emotion (3000)")
    s.add_argument(
        "--policy",
        choices=POLICIES,
        default="drop",
        help="disagreements: drop (the paper) or adjudicate (default drop)",
    )
    s.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="static",
        help="queue order: static ranked list (the paper) or active re-ranking",
    )
    s.add_argument(
        "--rerank-every",
        type=int,
        default=50,
        help="active: rerank after this many new consensus outcomes (50)",
    )
    s.add_argument(
        "--rerank-seconds",
        type=float,
        default=300.0,
        help="active: ... or after this many seconds with new outcomes (300)",
    )
    s.add_argument(
        "--lease-seconds",
        type=float,
        default=900.0,
        help="how long a served item is held for its labeller (900)",
    )
    s.add_argument("--predicted", help="training run folder or metrics.json: predicted Ñ")
    s.add_argument("--reranker", help="active: module:callable returning a Reranker")
    s.add_argument("--run", help="active: trained run folder for gifemo.active.load_reranker")
    s.add_argument("--store", help="active: feature store of the candidates")

    s = cmd("add-user", "create a labeller and print their personal link")
    s.add_argument("name")
    s.add_argument("--reissue", action="store_true", help="give an existing user a new token")
    s.add_argument("--host", default="127.0.0.1", help="host shown in the link")
    s.add_argument("--port", type=int, default=8765, help="port shown in the link")

    s = cmd("admin-token", "create or re-issue the admin token and print the admin link")
    s.add_argument("name", nargs="?", default="admin")
    s.add_argument("--host", default="127.0.0.1", help="host shown in the link")
    s.add_argument("--port", type=int, default=8765, help="port shown in the link")

    s = cmd("serve", "run the labelling web app")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8765, help="port (0: any free port)")

    s = cmd("agreement", "agreement report: kappa, percent agreement, alpha, N-tilde")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.add_argument(
        "--distance",
        choices=("masi", "jaccard"),
        default="masi",
        help="set distance of Krippendorff's alpha (masi)",
    )

    s = cmd("assemble", "write the GIFGIF+ dataset")
    s.add_argument("--out", required=True, help="output dataset folder")
    s.add_argument("--no-stats", action="store_true", help="skip Figs. 9-10")

    cmd("status", "progress per emotion")

    s = cmd("simulate", "scripted labellers answering from hidden ground truth (demos)")
    s.add_argument("--truth", required=True, help="truth.jsonl: id, emotions, cartoon, multi_scene")
    s.add_argument("--labellers", type=int, default=2, help="scripted labellers (2)")
    s.add_argument("--error", type=float, default=0.0, help="chance of flipping each answer/mark")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--url", help="a running server (else the queue is driven in-process)")
    s.add_argument("--max-answers", type=int, help="stop after this many answers")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["demo"]:
        from gifemo.apps.label.demo import main as demo_main

        return demo_main(args[1:])
    a = _parser().parse_args(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if a.command == "init":
        cfg = init_project(
            a.project,
            data=a.data,
            ranked=a.ranked,
            n_p=a.n_p,
            policy=a.policy,
            strategy=a.strategy,
            rerank_every=a.rerank_every,
            rerank_seconds=a.rerank_seconds,
            lease_seconds=a.lease_seconds,
            predicted=a.predicted,
            reranker=a.reranker,
            run=a.run,
            store=a.store,
        )
        store = open_store(a.project)
        counts = {e: len(v) for e, v in store.candidates().items()}
        store.close()
        print(
            f"project {a.project}: {sum(counts.values())} candidates in {len(counts)} emotions, "
            f"N_p={cfg.n_p}, policy={cfg.policy}, strategy={cfg.strategy}"
        )
        return 0
    if a.command in ("add-user", "admin-token"):
        role = "labeller" if a.command == "add-user" else "admin"
        store = open_store(a.project)
        try:
            reissue = a.reissue if role == "labeller" else True
            token = store.add_user(a.name, role, reissue=reissue)
        finally:
            store.close()
        page = "label" if role == "labeller" else "admin"
        print(f"{role} {a.name}: {_link(a.host, a.port, page, token)}")
        print(f"token (API: Authorization: Bearer …; shown once): {token}")
        return 0
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if a.command == "serve":
        return serve(a.project, a.host, a.port)
    if a.command == "simulate":
        from gifemo.apps.label.simulate import simulate

        counts = simulate(
            a.project,
            a.truth,
            labellers=a.labellers,
            error=a.error,
            seed=a.seed,
            url=a.url,
            max_answers=a.max_answers,
        )
        print(
            f"scripted labellers: {counts['answers']} answers ({counts['yes']} yes; "
            f"{counts['unknown_truth']} GIFs without a truth row)"
        )
        return 0
    state = open_state(a.project, with_reranker=False)
    try:
        if a.command == "agreement":
            from gifemo.apps.label.agreement import agreement_report, format_report

            rep = agreement_report(
                state, predicted_n_tilde(state.cfg.predicted, state.cfg.n_p), distance=a.distance
            )
            print(json.dumps(rep, indent=1) if a.json else format_report(rep))
        elif a.command == "assemble":
            from gifemo.apps.label.assemble import assemble

            res: dict[str, Any] = assemble(
                state,
                a.out,
                predicted=predicted_n_tilde(state.cfg.predicted, state.cfg.n_p),
                stats=not a.no_stats,
            )
            print(f"assembled {res['gifs']} GIFs → {a.out}/metadata.jsonl")
            print(json.dumps(res["per_emotion"]))
        elif a.command == "status":
            for p in state.progress():
                print(
                    f"{p['emotion']:<14} {p['positives']:>5} / {p['n_p']} positives, "
                    f"{p['complete']} of {p['candidates']} checked, "
                    f"{p['disagreements']} disagreements{' (done)' if p['done'] else ''}"
                )
    finally:
        state.store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
