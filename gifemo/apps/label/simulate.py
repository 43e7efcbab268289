"""Scripted labellers: answer a project's queue from hidden ground truth (demos, tests).

``python -m gifemo label simulate --project P --truth truth.jsonl [--labellers 2]
[--error 0.0] [--seed 0] [--url http://127.0.0.1:8765] [--max-answers N]``

``truth.jsonl`` has GIFGIF+-style rows (``id``, ``emotions``, ``cartoon``, ``multi_scene``) —
the generated candidates' hidden labels (``data/synthetic/candidates/truth.jsonl``). A
candidate whose id is not in it is matched through its ``giphy_ids`` (re-uploads collected as
one row) and an id with the fake Giphy's ``Dup`` suffix removed. Each scripted labeller
answers *yes* iff the asked emotion is a true one, marks the other true emotions and the true
flags; with ``--error`` p, each yes/no and each mark is flipped with probability p
(independently per labeller, seeded), so the two labellers disagree now and then.

Without ``--url`` the labellers call the queue functions in this process (the server must not
be running on the project); with ``--url`` they use the running server's JSON API with their
own tokens (users ``sim1``, ``sim2``, … are created or given new tokens).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gifemo.emotions import EMOTIONS


def read_truth(path: str | Path) -> dict[str, dict[str, Any]]:
    out = {}
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            row = json.loads(line)
            if "id" not in row or not isinstance(row.get("emotions"), list):
                raise ValueError(f"{path}:{n}: a truth row needs 'id' and a list 'emotions'")
            out[str(row["id"])] = row
    return out


def truth_of(
    gif: Mapping[str, Any], truth: Mapping[str, Mapping[str, Any]]
) -> Mapping[str, Any] | None:
    """The truth row of a project GIF (``{"id", "row"}`` as in ``LabelState.gifs``)."""
    ids = [gif["id"], *(gif.get("row", {}).get("giphy_ids") or [])]
    for i in ids + [str(i).removesuffix("Dup") for i in ids]:
        if i in truth:
            return truth[i]
    return None


def answer_for(
    item: Mapping[str, Any], row: Mapping[str, Any] | None, rng: np.random.Generator, error: float
) -> dict[str, Any]:
    """One scripted answer body (the JSON the page would post)."""
    true = set(row["emotions"]) if row else set()
    flip = lambda x: (not x) if rng.random() < error else x  # noqa: E731
    others = [e for e in EMOTIONS if e != item["emotion"] and flip(e in true)]
    return {
        "emotion": item["emotion"],
        "gif_id": item["gif_id"],
        "answer": "yes" if flip(item["emotion"] in true) else "no",
        "others": others,
        "cartoon": flip(bool(row and row.get("cartoon"))),
        "multi_scene": flip(bool(row and row.get("multi_scene"))),
        "request_id": uuid.uuid4().hex,
    }


def simulate(
    project: str | Path,
    truth_file: str | Path,
    *,
    labellers: int = 2,
    error: float = 0.0,
    seed: int = 0,
    url: str | None = None,
    max_answers: int | None = None,
) -> dict[str, int]:
    """Run the scripted labellers round-robin until none gets an item; returns counts."""
    from gifemo.apps.label import open_state
    from gifemo.apps.label.project import open_store

    truth = read_truth(truth_file)
    users = [f"sim{k + 1}" for k in range(labellers)]
    store = open_store(project)
    try:
        tokens = {u: store.add_user(u, reissue=True) for u in users}
        gifs = store.gifs()
    finally:
        store.close()
    rngs = {u: np.random.default_rng([seed, k]) for k, u in enumerate(users)}
    state = open_state(project, with_reranker=url is None) if url is None else None
    counts = {"answers": 0, "yes": 0, "unknown_truth": 0}

    if state is not None:

        def fetch(u: str) -> list[dict[str, Any]]:
            return state.next_items(u, None, 1)

        def post(u: str, body: dict[str, Any]) -> None:
            state.decide(
                u,
                body["emotion"],
                body["gif_id"],
                body["answer"] == "yes",
                others=body["others"],
                cartoon=body["cartoon"],
                multi_scene=body["multi_scene"],
                request_id=body["request_id"],
            )
    else:
        import httpx

        clients = {
            u: httpx.Client(
                base_url=url or "", timeout=60, headers={"Authorization": f"Bearer {tokens[u]}"}
            )
            for u in users
        }

        def fetch(u: str) -> list[dict[str, Any]]:
            r = clients[u].get("/api/next", params={"n": 1})
            r.raise_for_status()
            return r.json()["items"]  # type: ignore[no-any-return]

        def post(u: str, body: dict[str, Any]) -> None:
            clients[u].post("/api/decisions", json=body).raise_for_status()

    def lookup(gid: str) -> Mapping[str, Any] | None:
        return truth_of(gifs[gid], truth)

    active = list(users)
    try:
        while active and (max_answers is None or counts["answers"] < max_answers):
            for u in list(active):
                items = fetch(u)
                if not items:
                    active.remove(u)
                    continue
                row = lookup(items[0]["gif_id"])
                counts["unknown_truth"] += row is None
                body = answer_for(items[0], row, rngs[u], error)
                post(u, body)
                counts["answers"] += 1
                counts["yes"] += body["answer"] == "yes"
    finally:
        if state is not None:
            state.wait_reranks(60)
            state.store.close()
        else:
            for c in clients.values():
                c.close()
    return counts
