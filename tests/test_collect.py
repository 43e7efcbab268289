"""The Giphy collector against the fake loopback Giphy: full collections, faults, failures, caps.

A small pool of real GIFs (Pillow, distinct bytes) with chosen tags is served by
:class:`gifemo.apps.collect.fake_giphy.FakeGiphy`; what a collection should find is computed
from the fake's own catalogue (``FakeGiphy.served_ids``) and compared with metadata.jsonl.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from PIL import Image

from gifemo.apps.collect.collector import CollectOptions, collect
from gifemo.apps.collect.fake_giphy import FakeGiphy
from gifemo.data.metadata import read_dataset

TAGS = ("happy", "smile", "sad", "common", "angry")


def pool_tags(k: int) -> list[str]:
    """Tags of pool GIF k: overlapping lists, so queries find the same GIFs."""
    tags = [t for t, hit in zip(TAGS, (k % 2 == 0, k % 3 == 0, k % 5 == 0, k < 30, k % 7 == 1), strict=True) if hit]  # fmt: skip
    return tags or ["other"]


def make_pool(root: Path, n: int = 40) -> Path:
    """``n`` 2-frame GIFs with distinct colours, sizes growing with k + metadata.jsonl."""
    (root / "gifs").mkdir(parents=True, exist_ok=True)
    rows = []
    for k in range(n):
        gid = f"g{k:03d}x{hashlib.sha1(str(k).encode()).hexdigest()[:6]}"
        frames = [Image.new("RGB", (8, 6), (k * 6 % 256, (k * 37 + f * 90) % 256, 200 - k)) for f in range(2)]  # fmt: skip
        frames[0].save(root / "gifs" / f"{gid}.gif", save_all=True, append_images=frames[1:],
                       duration=50, loop=0, comment=b"c" * (4 * k + 1))  # sizes grow with k  # fmt: skip
        rows.append({"id": gid, "file": f"gifs/{gid}.gif", "tags": pool_tags(k)})
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> Path:
    return make_pool(tmp_path_factory.mktemp("pool"))


def options(out: Path, fake: FakeGiphy, queries, **kw) -> CollectOptions:
    base = dict(out_dir=str(out), api_base=fake.url, queries=list(queries), page_size=4,
                calls_per_hour=100_000, burst=100_000, backoff_s=0.01, timeout_s=5.0, progress=False)  # fmt: skip
    base.update(kw)
    return CollectOptions(**base)


def read_rows(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "metadata.jsonl").read_text().splitlines()]


def test_full_collection_equals_the_ids_the_fake_serves(pool, tmp_path):
    queries = ["happy", "smile", "sad", "angry"]
    by_emotion = {"happy": ["happiness"], "smile": ["happiness", "amusement"], "sad": ["sadness"]}
    fake = FakeGiphy.from_dataset(pool, aliases=4, drop_total_every=2)
    with fake:
        rep = collect(
            options(tmp_path / "c", fake, ["angry"]), api_key="k", emotion_queries=by_emotion
        )
        first = fake.search_requests()
    out = tmp_path / "c"
    rows = read_rows(out)
    want = fake.served_ids(queries)
    got = [i for r in rows for i in r["giphy_ids"]]
    assert sorted(got) == sorted(want)  # every served id, each exactly once
    assert rep.candidates == len(want) and rep.rows == len(rows) and rep.failed == 0
    # byte-identical files under several ids are one candidate (the fake's aliases *Dup)
    aliased = [r for r in rows if len(r["giphy_ids"]) > 1]
    assert aliased and all({i.removesuffix("Dup") for i in r["giphy_ids"]} == {r["giphy_ids"][0].removesuffix("Dup")} for r in aliased)  # fmt: skip
    assert len({r["sha256"] for r in rows}) == len(rows)
    by_id = {g.id: g for g in fake.gifs}
    emos = {"happy": {"happiness"}, "smile": {"happiness", "amusement"}, "sad": {"sadness"}, "angry": set()}  # fmt: skip
    for r in rows:
        data = (out / r["file"]).read_bytes()
        assert r["file"] == f"gifs/{r['id']}.gif" and r["id"] == r["giphy_ids"][0]
        assert all(by_id[i].data == data for i in r["giphy_ids"])
        assert hashlib.sha256(data).hexdigest() == r["sha256"] and r["bytes"] == len(data)
        found_by = {q for q in queries for i in r["giphy_ids"] if i in fake.matches(q)}
        assert set(r["queries"]) == found_by and set(r["tags"]) == found_by
        assert set(r["found_for"]) == set().union(*(emos[q] for q in found_by))
        assert "?" not in r["source_url"] and r["source_url"].endswith(
            f"/media/{r['id']}/giphy.gif"
        )
        assert r["title"] and r["slug"].endswith(r["id"]) and r["rating"] in ("g", "pg", "pg-13")
    # the files on disk are exactly the rows' files; no temporary file is left
    assert sorted(p.name for p in (out / "gifs").iterdir()) == sorted(
        Path(r["file"]).name for r in rows
    )
    assert (out / "failures.jsonl").read_text() == ""
    ds = read_dataset(out)  # the project's loader reads the folder (provenance keys are ignored)
    assert ds.kind == "unlabelled" and ds.ids() == [r["id"] for r in rows]
    # no page fetched twice; a rerun fetches nothing and writes the same metadata
    assert len(first) == len(set(first))
    before = (out / "metadata.jsonl").read_bytes()
    with fake:
        rep2 = collect(options(out, fake, ["angry"]), api_key="k", emotion_queries=by_emotion)
    assert rep2.pages_fetched == 0 and fake.search_requests() == first
    assert (out / "metadata.jsonl").read_bytes() == before


def test_429_500_timeouts_and_bad_replies_are_survived(pool, tmp_path):
    faults = {1: "429", 2: "429bare", 4: "500", 5: "slow", 7: "badjson", 8: "429"}
    fake = FakeGiphy.from_dataset(pool, faults=faults, slow_s=1.0, retry_after=7)
    now = [1_000_000.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    with fake:
        opts = options(tmp_path / "c", fake, ["happy", "sad"], timeout_s=0.3, backoff_s=3.0)
        rep = collect(opts, api_key="k", clock=lambda: now[0], sleep=sleep)
        calls = fake.search_requests(None)
    rows = read_rows(tmp_path / "c")
    assert sorted(i for r in rows for i in r["giphy_ids"]) == sorted(
        fake.served_ids(["happy", "sad"])
    )
    assert rep.search_failures == []
    assert len(calls) == rep.pages_fetched + len(faults)  # each fault cost exactly one retry
    # Retry-After (7 s) honoured for 429/500; without one (the timeout on the page's second try,
    # the unreadable reply) the back-off is backoff_s · 2^attempt
    assert slept == [7.0, 7.0, 7.0, 3.0 * 2, 3.0, 7.0]


def test_retries_exhausted_leave_the_query_for_the_next_run(pool, tmp_path):
    fake = FakeGiphy.from_dataset(pool, faults={n: "500" for n in range(2, 6)}, retry_after=0)
    with fake:
        rep = collect(options(tmp_path / "c", fake, ["sad"], max_retries=3), api_key="k")
        assert [f["query"] for f in rep.search_failures] == ["sad"]
        fails = [
            json.loads(x) for x in (tmp_path / "c" / "failures.jsonl").read_text().splitlines()
        ]
        assert fails[0]["kind"] == "search" and "HTTP 500" in fails[0]["reason"]
        rep = collect(options(tmp_path / "c", fake, ["sad"], max_retries=3), api_key="k")
    assert rep.search_failures == []
    assert {i for r in read_rows(tmp_path / "c") for i in r["giphy_ids"]} == fake.served_ids(
        ["sad"]
    )


def test_bad_downloads_are_recorded_failures_and_retried_later(pool, tmp_path):
    fake = FakeGiphy.from_dataset(pool)
    q = ["common"]
    ids = sorted(fake.served_ids(q), key=lambda i: len(fake._by_id[i].data))
    big, bigger, notgif, trunc, flaky, garbled = ids[-1], ids[-2], ids[0], ids[1], ids[2], ids[3]
    size = {i: len(fake._by_id[i].data) for i in ids}
    max_bytes = max(v for v in size.values() if v < size[bigger])  # only big and bigger are over
    fake.media_faults = {
        bigger: "undeclared",
        notgif: "notgif",
        trunc: "truncated",
        flaky: "500once",
        garbled: "badgziponce",
    }
    with fake:
        rep = collect(options(tmp_path / "c", fake, q, max_bytes=max_bytes), api_key="k")
        out = tmp_path / "c"
        fails = {
            f["id"]: f for f in map(json.loads, (out / "failures.jsonl").read_text().splitlines())
        }
        assert set(fails) == {big, bigger, notgif, trunc} and rep.failed == 4
        assert "declared size" in fails[big]["reason"] and str(max_bytes) in fails[big]["reason"]
        assert "over max_bytes" in fails[bigger]["reason"]  # the reply under-stated its size
        assert fails[notgif]["reason"].startswith("not a GIF")
        assert fails[trunc]["reason"].startswith("truncated GIF")
        got = {i for r in read_rows(out) for i in r["giphy_ids"]}
        assert got == set(ids) - set(fails) and {flaky, garbled} <= got  # retried in the run
        assert sorted(p.name for p in (out / "gifs").iterdir()) == sorted(f"{i}.gif" for i in got)
        # the next run retries the failures (the server is fixed, the limit raised)
        fake.media_faults = {}
        rep = collect(options(out, fake, q, max_bytes=10**6), api_key="k")
    assert rep.failed == 0 and (out / "failures.jsonl").read_text() == ""
    assert {i for r in read_rows(out) for i in r["giphy_ids"]} == set(ids)


def test_limit_offset_and_max_per_query_caps(pool, tmp_path):
    fake = FakeGiphy.from_dataset(pool, max_limit=5, max_offset=9, drop_total_every=0)
    assert len(fake.matches("common")) == 30
    with fake:
        collect(options(tmp_path / "a", fake, ["common"], page_size=5, max_offset=9), api_key="k")
        reqs = fake.search_requests(None)
        assert [o for _, o in reqs] == [0, 5] and all(r.status == 200 for r in fake.requests)
        got = [i for r in read_rows(tmp_path / "a") for i in r["giphy_ids"]]
        assert (
            sorted(got)
            == sorted(fake.matches("common")[:10])
            == sorted(fake.served_ids(["common"]))
        )
        fake.requests.clear()
        collect(
            options(tmp_path / "b", fake, ["common"], page_size=5, max_per_query=7), api_key="k"
        )
        assert [(r.params["offset"], r.params["limit"]) for r in fake.requests if r.kind == "search"] == [("0", "5"), ("5", "2")]  # fmt: skip
    assert [r["id"] for r in read_rows(tmp_path / "b")] == fake.matches("common")[:7]


def test_bad_key_and_bad_options_are_clear_errors(pool, tmp_path):
    from gifemo.apps.collect.giphy import AuthError

    with FakeGiphy.from_dataset(pool, api_key="right-key") as fake:
        with pytest.raises(AuthError, match="GIPHY_API_KEY") as e:
            collect(options(tmp_path / "c", fake, ["happy"]), api_key="wrong-key-123")
        assert "wrong-key-123" not in str(e.value)
        with pytest.raises(ValueError, match="51 characters"):
            collect(options(tmp_path / "c", fake, ["x" * 51]), api_key="right-key")
        with pytest.raises(ValueError, match="page_size"):
            collect(options(tmp_path / "c", fake, ["happy"], page_size=51), api_key="right-key")
        with pytest.raises(ValueError, match="nothing to search"):
            collect(options(tmp_path / "c", fake, []), api_key="right-key")


def test_tags_file_adds_giphy_tags_and_a_busy_folder_is_refused(pool, tmp_path):
    from gifemo.apps.collect.state import FolderBusy, State

    fake = FakeGiphy.from_dataset(pool)
    some = sorted(fake.served_ids(["sad"]))[:2]
    tags = tmp_path / "tags.jsonl"
    tags.write_text(json.dumps({"id": some[0], "tags": ["Rainy Day", "sad"]}) + "\n")
    with fake:
        collect(options(tmp_path / "c", fake, ["sad"], tags_file=str(tags)), api_key="k")
        by_id = {r["id"]: r for r in read_rows(tmp_path / "c")}
        assert by_id[some[0]]["tags"] == ["sad", "rainy day"] and by_id[some[1]]["tags"] == ["sad"]
        tags.write_text('{"id": 5}\n')
        with pytest.raises(ValueError, match=r"tags\.jsonl:1"):
            collect(options(tmp_path / "c", fake, ["sad"], tags_file=str(tags)), api_key="k")
        holder = State(tmp_path / "c")  # another collector holds the folder
        try:
            with pytest.raises(FolderBusy, match="another collector"):
                collect(options(tmp_path / "c", fake, ["sad"]), api_key="k")
        finally:
            holder.close()
