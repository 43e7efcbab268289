"""collect.py as a real process: the API key reaches no file or log; kill -9 and rerun.

The fake Giphy runs in the test process (a thread) and counts every request; the collector is
``python collect.py`` in a subprocess, killed with a real SIGKILL in the middle of its work.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gifemo.apps.collect.collector import collect
from gifemo.apps.collect.fake_giphy import FakeGiphy
from tests.test_collect import options, pool  # noqa: F401  (fixture)

REPO = Path(__file__).resolve().parents[1]
KEY = "gph-SECRET-kEy-7f3a9c"


def collect_cmd(
    fake: FakeGiphy, out: Path, hydra_dir: Path, queries: list[str], *extra: str
) -> list[str]:
    return [
        sys.executable, "collect.py", f"collect.api_base={fake.url}", f"collect.out_dir={out}",
        f"collect.queries=[{','.join(queries)}]", "collect.page_size=3", "collect.calls_per_hour=100000",
        "collect.burst=100000", "collect.backoff_s=0.01", "collect.progress=false",
        f"hydra.run.dir={hydra_dir}", *extra,
    ]  # fmt: skip


def env(key: str) -> dict[str, str]:
    return {**os.environ, "GIPHY_API_KEY": key, "PYTHONUNBUFFERED": "1"}


def files_containing(root: Path, needle: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_api_key_reaches_no_file_or_log(pool, tmp_path):  # noqa: F811
    faults = {1: "429", 2: "500", 4: "badjson", 5: "429bare"}
    with FakeGiphy.from_dataset(pool, api_key=KEY, faults=faults, retry_after=0) as fake:
        bad = sorted(fake.served_ids(["happy"]))[0]
        fake.media_faults = {bad: "notgif"}
        cmd = collect_cmd(fake, tmp_path / "out", tmp_path / "hydra", ["happy", "sad"], "hydra.verbose=true")  # fmt: skip
        r = subprocess.run(cmd, cwd=REPO, env=env(KEY), capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-3000:]
        assert fake.requests and all(q.key_ok for q in fake.requests if q.kind == "search")
    assert "Powered by GIPHY" in r.stdout
    assert KEY not in r.stdout + r.stderr
    assert files_containing(tmp_path, KEY.encode()) == []
    # the logs and Hydra's files exist and carry the run's story (so they would show a leak)
    log = (tmp_path / "hydra" / "collect.log").read_text()
    assert "retrying" in log and "HTTP 429" in log and "HTTP 500" in log
    assert (tmp_path / "hydra" / ".hydra" / "config.yaml").is_file()
    fails = (tmp_path / "out" / "failures.jsonl").read_text()
    assert bad in fails and "not a GIF" in fails


@pytest.mark.slow
def test_kill_9_and_rerun_gives_the_same_dataset(pool, tmp_path):  # noqa: F811
    queries = ["common", "happy", "smile", "sad", "angry"]
    fake = FakeGiphy.from_dataset(pool, aliases=3, latency_s=0.08, media_latency_s=0.05)
    out, db_path = tmp_path / "out", tmp_path / "out" / "collect.sqlite"
    with fake:
        p = subprocess.Popen(collect_cmd(fake, out, tmp_path / "h1", queries), cwd=REPO, env=env(KEY),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
        deadline = time.monotonic() + 60
        pages = 0
        while pages < 6 and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.02)
            if db_path.is_file():
                try:
                    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
                        pages = db.execute("SELECT COUNT(*) FROM pages").fetchone()[0]
                except sqlite3.OperationalError:  # tables not created yet
                    pass
        assert p.poll() is None, "the collector finished before it could be killed"
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        assert p.returncode == -signal.SIGKILL
        with sqlite3.connect(db_path) as db:
            recorded = set(
                db.execute("SELECT q, offset FROM pages JOIN queries USING(qid)").fetchall()
            )
            n_ok = db.execute("SELECT COUNT(*) FROM downloads WHERE status='ok'").fetchone()[0]
        total_pages = sum(-(-min(len(fake.matches(q)), 5000) // 3) + (len(fake.matches(q)) % 3 == 0) for q in queries)  # fmt: skip
        assert 6 <= len(recorded) < total_pages and not (out / "metadata.jsonl").exists()
        # no half-written GIF under its final name: every gifs/<id>.gif is the served file
        for f in (out / "gifs").glob("*.gif"):
            assert f.read_bytes() == fake._by_id[f.stem].data
        first = len(fake.requests)
        r = subprocess.run(collect_cmd(fake, out, tmp_path / "h2", queries), cwd=REPO, env=env(KEY),
                           capture_output=True, text=True, timeout=120)  # fmt: skip
        assert r.returncode == 0, r.stderr[-3000:]
        again = [(q.params["q"], int(q.params["offset"])) for q in fake.requests[first:] if q.kind == "search"]  # fmt: skip
        assert again and not recorded & set(again)  # no recorded page is requested again
        all_ok = fake.search_requests(200)
        twice = {x for x in all_ok if all_ok.count(x) > 1}
        assert not twice & recorded and all(all_ok.count(x) <= 2 for x in all_ok)
        # the uninterrupted collection of the same queries, for comparison
        collect(options(tmp_path / "ref", fake, queries, page_size=3), api_key=KEY)
    assert (out / "metadata.jsonl").read_text() == (tmp_path / "ref" / "metadata.jsonl").read_text()
    names = sorted(p.name for p in (out / "gifs").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "ref" / "gifs").iterdir())  # no .part left
    assert all(
        (out / "gifs" / n).read_bytes() == (tmp_path / "ref" / "gifs" / n).read_bytes()
        for n in names
    )
    rows = [json.loads(x) for x in (out / "metadata.jsonl").read_text().splitlines()]
    assert sorted(i for r in rows for i in r["giphy_ids"]) == sorted(fake.served_ids(queries))
    assert n_ok < sum(len(r["giphy_ids"]) for r in rows)  # the kill came before the downloads ended


def test_offline_demo_collects_the_generated_pool(tmp_path, monkeypatch, capsys):
    import gifemo.apps.collect as app

    monkeypatch.setattr(app, "DEMO_RETRY_AFTER", 0)
    args = ["demo", "--out", str(tmp_path / "demo"), "--data-dir", str(tmp_path / "syn"), "--size", "tiny", "--n-tags", "3", "--quiet"]  # fmt: skip
    assert app.main(args) == 0
    out = tmp_path / "demo"
    rows = [json.loads(x) for x in (out / "metadata.jsonl").read_text().splitlines()]
    fails = [json.loads(x) for x in (out / "failures.jsonl").read_text().splitlines()]
    assert len(rows) > 20 and all(
        r["found_for"] for r in rows
    )  # Table 1 tags: every row has emotions
    assert any(len(r["giphy_ids"]) > 1 for r in rows)  # the re-uploads were merged
    assert sorted(f["reason"].split(":")[0] for f in fails) == ["not a GIF", "truncated GIF"]
    assert "Powered by GIPHY" in capsys.readouterr().out
    before = (out / "metadata.jsonl").read_bytes()
    assert (
        app.main(args) == 0
    )  # a rerun: same port, nothing new, failures retried (and still broken)
    assert (out / "metadata.jsonl").read_bytes() == before
    assert [
        f["attempts"] for f in map(json.loads, (out / "failures.jsonl").read_text().splitlines())
    ] == [2, 2]


def test_fake_subcommand_serves_until_sigterm(pool):  # noqa: F811
    import httpx

    p = subprocess.Popen([sys.executable, "-m", "gifemo", "collect", "fake", "--data", str(pool)], cwd=REPO,
                         stdout=subprocess.PIPE, text=True, env=env(KEY))  # fmt: skip
    try:
        line = p.stdout.readline()  # type: ignore[union-attr]
        url = line.split(" at ")[1].split()[0]
        r = httpx.get(url + "/gifs/search", params={"api_key": "any", "q": "sad", "limit": 50})
        assert r.status_code == 200 and len(r.json()["data"]) == 8
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=30) == 0
