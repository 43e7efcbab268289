"""Labelling-server load benchmark: concurrent simulated labellers over loopback.

``python -m gifemo.bench label [--quick] [--labellers 20] [--decisions 5000] [--retry 0.02]
[--out .bench/label.json]``

Builds a throw-away project (``--gifs`` tiny GIFs, each a candidate of all 17 emotions), starts
``python -m gifemo.apps.label serve`` as a real process on 127.0.0.1, and runs ``--labellers``
threads, each with its own token and HTTP connection, that loop *fetch next item → post an
answer* (``GET /api/next``, ``POST /api/decisions``; random yes/no/others, seeded) until
``--decisions`` answers are acknowledged. A share ``--retry`` of the posts is sent twice with
the same ``request_id`` (a client retrying after a lost reply) — the server must store it once.

Checks, from the server's SQLite file after the run: the number of ``label`` events equals the
acknowledged answers (none lost, none duplicated), every acknowledged ``seq`` is there with the
same user and item, no labeller answered an item twice, no item has more than two labellers.
Prints the latency percentiles (p50/p95/p99/max) of the posts (each is committed with
``synchronous=FULL`` before the reply) and of the fetches, and the throughput. No peer: the
issue names none. JSON goes to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from gifemo.emotions import EMOTIONS

ROOT = Path(__file__).resolve().parents[2]


def _project(tmp: Path, n_gifs: int, labellers: int) -> tuple[Path, dict[str, str]]:
    from PIL import Image

    from gifemo.apps.label.project import init_project, open_store

    data = tmp / "data"
    (data / "gifs").mkdir(parents=True)
    frames = [Image.new("RGB", (16, 16), (40 * k, 80, 200 - 40 * k)) for k in range(3)]
    frames[0].save(data / "gifs" / "_.gif", save_all=True, append_images=frames[1:], duration=100)
    raw = (data / "gifs" / "_.gif").read_bytes()
    rows, ranked = [], ["emotion,rank,id"]
    for i in range(n_gifs):
        gid = f"b{i:05d}"
        (data / "gifs" / f"{gid}.gif").write_bytes(raw)
        rows.append(json.dumps({"id": gid, "file": f"gifs/{gid}.gif", "title": f"bench {i}"}))
    for e in EMOTIONS:
        ranked += [f"{e},{r + 1},b{(r + 3 * len(e)) % n_gifs:05d}" for r in range(n_gifs)]
    (data / "metadata.jsonl").write_text("\n".join(rows) + "\n")
    (tmp / "ranked.csv").write_text("\n".join(ranked) + "\n")
    proj = tmp / "project"
    init_project(proj, data=data, ranked=tmp / "ranked.csv", n_p=10**9)
    store = open_store(proj)
    tokens = {f"u{k:02d}": store.add_user(f"u{k:02d}") for k in range(labellers)}
    store.close()
    return proj, tokens


def _pct(x: list[float]) -> dict[str, float]:
    a = np.asarray(x) * 1000
    if a.size == 0:
        return {}
    return {
        "n": int(a.size),
        "p50_ms": float(np.percentile(a, 50)),
        "p95_ms": float(np.percentile(a, 95)),
        "p99_ms": float(np.percentile(a, 99)),
        "max_ms": float(a.max()),
    }


def run(labellers: int, decisions: int, retry: float, seed: int, tmp: Path) -> dict[str, Any]:
    import httpx

    n_gifs = max(4, -(-decisions // (2 * len(EMOTIONS))) + 8)
    proj, tokens = _project(tmp, n_gifs, labellers)
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gifemo.apps.label", "serve", "--project", str(proj), "--port", "0"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "serving on" not in line:
        raise RuntimeError(f"server did not start: {line!r}")
    url = line.split()[2]
    for _ in range(200):
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    lock = threading.Lock()
    budget = [decisions]
    acked: list[tuple[int, str, str, str]] = []
    post_lat: list[float] = []
    get_lat: list[float] = []
    errors: list[str] = []
    retried = [0]

    def labeller(k: int, user: str, token: str) -> None:
        rng = np.random.default_rng([seed, k])
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        ) as c:
            items: list[dict[str, Any]] = []
            while True:
                with lock:
                    if budget[0] <= 0:
                        return
                    budget[0] -= 1
                if not items:
                    t0 = time.perf_counter()
                    r = c.get("/api/next", params={"n": 1})
                    get_lat.append(time.perf_counter() - t0)
                    items = r.json()["items"]
                    if not items:
                        with lock:
                            budget[0] += 1
                        errors.append(f"{user}: queue empty")
                        return
                it = items[0]
                others = [
                    str(e)
                    for e in rng.choice(EMOTIONS, size=int(rng.integers(0, 3)), replace=False)
                ]
                body = {"emotion": it["emotion"], "gif_id": it["gif_id"],
                        "answer": "yes" if rng.random() < 0.4 else "no", "others": others,
                        "cartoon": bool(rng.random() < 0.2), "multi_scene": bool(rng.random() < 0.2),
                        "request_id": uuid.uuid4().hex, "n": 1}  # fmt: skip
                t0 = time.perf_counter()
                r = c.post("/api/decisions", json=body)
                post_lat.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    errors.append(f"{user}: {r.status_code} {r.text[:200]}")
                    items = []
                    with lock:
                        budget[0] += 1
                    continue
                res = r.json()
                if rng.random() < retry:  # the reply "got lost": send the same post again
                    r2 = c.post("/api/decisions", json=body)
                    with lock:
                        retried[0] += 1
                    if (
                        r2.status_code != 200
                        or r2.json()["event"]["seq"] != res["event"]["seq"]
                        or r2.json()["created"]
                    ):
                        errors.append(f"{user}: retry was not recognised: {r2.text[:200]}")
                with lock:
                    acked.append((res["event"]["seq"], user, it["emotion"], it["gif_id"]))
                items = res["next"]

    threads = [
        threading.Thread(target=labeller, args=(k, u, t)) for k, (u, t) in enumerate(tokens.items())
    ]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait(30)
    proc.stdout.close()
    log.close()
    db = sqlite3.connect(proj / "label.sqlite")
    stored = {s: (u, e, g) for s, u, e, g in db.execute(
        "SELECT seq, user, emotion, gif_id FROM events WHERE kind='label'")}  # fmt: skip
    db.close()
    lost = [a for a in acked if stored.get(a[0]) != a[1:]]
    per_user_item = Counter(stored.values())
    per_item = Counter((e, g) for _, e, g in stored.values())
    checks = {
        "acknowledged": len(acked),
        "stored": len(stored),
        "lost": len(lost),
        "duplicated": len(stored) - len(acked) + len(lost),
        "answered_twice": sum(1 for v in per_user_item.values() if v > 1),
        "items_over_two": sum(1 for v in per_item.values() if v > 2),
        "retried_posts": retried[0],
        "errors": errors[:10],
    }
    return {
        "labellers": labellers,
        "decisions": decisions,
        "wall_s": wall,
        "decisions_per_s": len(acked) / wall,
        "post": _pct(post_lat),
        "next": _pct(get_lat),
        "checks": checks,
        "ok": not lost
        and checks["duplicated"] == 0
        and len(acked) == decisions
        and not checks["answered_twice"]
        and not checks["items_over_two"]
        and not errors,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m gifemo.bench label", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--quick", action="store_true", help="4 labellers, 200 decisions")
    p.add_argument("--labellers", type=int, default=20, help="concurrent simulated labellers")
    p.add_argument("--decisions", type=int, default=5000, help="answers to post in all")
    p.add_argument("--retry", type=float, default=0.02, help="share of posts sent twice (0.02)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=".bench/label.json")
    a = p.parse_args(argv)
    if a.quick:
        a.labellers, a.decisions = 4, 200
    with tempfile.TemporaryDirectory(prefix="gifemo-bench-label-") as tmp:
        res = run(a.labellers, a.decisions, a.retry, a.seed, Path(tmp))
    res["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count(),
                      "platform": platform.platform()}  # fmt: skip
    c, po, ne = res["checks"], res["post"], res["next"]
    print(f"{a.labellers} labellers, {c['acknowledged']} answers acknowledged in {res['wall_s']:.1f} s "
          f"({res['decisions_per_s']:.0f}/s); stored {c['stored']}, lost {c['lost']}, "
          f"duplicated {c['duplicated']} ({c['retried_posts']} retried posts), "
          f"answered twice {c['answered_twice']}, items over two labellers {c['items_over_two']}")  # fmt: skip
    print(
        f"POST /api/decisions: p50 {po['p50_ms']:.1f} ms  p95 {po['p95_ms']:.1f} ms  "
        f"p99 {po['p99_ms']:.1f} ms  max {po['max_ms']:.1f} ms (n={po['n']})"
    )
    if ne:
        print(
            f"GET  /api/next:      p50 {ne['p50_ms']:.1f} ms  p95 {ne['p95_ms']:.1f} ms (n={ne['n']})"
        )
    if c["errors"]:
        print("errors:", *c["errors"], sep="\n  ")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"→ {out}; {'OK' if res['ok'] else 'FAILED'}")
    return 0 if res["ok"] else 1
