"""The fake Giphy's replies are Giphy's shape; the client reads them; queries from a run; config."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from gifemo.apps.collect.collector import CollectOptions
from gifemo.apps.collect.fake_giphy import FakeGiphy
from gifemo.apps.collect.giphy import (
    GiphyClient,
    GiphyError,
    RateLimited,
    TransientError,
    parse_hit,
    retry_after_s,
)
from gifemo.apps.collect.queries import merge_queries, queries_from_run, table1_queries
from gifemo.emotions import EMOTIONS
from tests.test_collect import pool  # noqa: F401  (fixture)


def get(fake: FakeGiphy, **params) -> httpx.Response:
    return httpx.get(fake.url + "/gifs/search", params={"api_key": "k", **params})


def test_fake_replies_have_giphys_shape(pool):  # noqa: F811
    with FakeGiphy.from_dataset(pool, drop_total_every=2) as fake:
        a = get(fake, q="common", limit=3, offset=0).json()
        b = get(fake, q="common", limit=3, offset=0).json()
        assert set(a) == {"data", "pagination", "meta"} and a["meta"]["status"] == 200
        assert a["pagination"] == {"total_count": 30, "count": 3, "offset": 0}
        assert "total_count" not in b["pagination"]  # every 2nd reply leaves it out
        g = a["data"][0]
        orig = g["images"]["original"]
        assert {
            "id",
            "slug",
            "url",
            "title",
            "rating",
            "username",
            "source",
            "import_datetime",
        } <= set(g)
        assert "tags" not in g  # search results carry no tags
        assert all(isinstance(orig[k], str) and orig[k].isdigit() for k in ("width", "height", "size", "frames"))  # fmt: skip
        assert "?cid=" in orig["url"] and "&rid=" in orig["url"]
        assert orig["url"] != b["data"][0]["images"]["original"]["url"]  # same GIF, other URL
        assert b["data"][0]["id"] == g["id"]
        assert int(orig["size"]) == len(httpx.get(orig["url"]).content)
        fake.max_limit = 7  # (Giphy: 50 for beta keys)
        assert len(get(fake, q="common", limit=20, offset=0).json()["data"]) == 7
        assert get(fake, q="common", limit=50, offset=5000).status_code == 400
        assert get(fake, q="x" * 51, limit=5, offset=0).status_code == 400
        assert httpx.get(fake.url + "/gifs/search", params={"q": "common"}).status_code == 401
        assert fake.matches("common") == fake.matches("Common ")  # tags are normalised
        assert {r.kind for r in fake.requests} == {"search", "media"}
        assert all("api_key" not in r.params for r in fake.requests)


def test_fake_faults_and_client_errors(pool):  # noqa: F811
    faults = {1: "429", 2: "429bare", 3: "500", 4: "badjson", 5: "badgzip", 6: "echokey"}
    with FakeGiphy.from_dataset(pool, faults=faults, retry_after=9) as fake:
        c = GiphyClient(fake.url, "SECRETKEY12", timeout_s=5)
        with pytest.raises(RateLimited, match="HTTP 429 API rate limit exceeded") as e:
            c.search("happy", limit=5, offset=0)
        assert e.value.retry_after == 9.0
        with pytest.raises(RateLimited, match="HTTP 429 API rate limit exceeded"):
            c.search("happy", limit=5, offset=0)
        with pytest.raises(TransientError, match="HTTP 500"):
            c.search("happy", limit=5, offset=0)
        with pytest.raises(TransientError, match="not JSON"):
            c.search("happy", limit=5, offset=0)
        with pytest.raises(TransientError, match="DecodingError"):  # retried, not a crash
            c.search("happy", limit=5, offset=0)
        with pytest.raises(GiphyError, match=r"meta\.status 403: api_key \*\*\* is banned") as e:
            c.search("happy", limit=5, offset=0)  # Giphy's own text quoting the key
        assert "SECRETKEY12" not in str(e.value)
        page = c.search("happy", limit=5, offset=0)
        assert page.count == 5 and len(page.hits) == 5 and page.hits[0].width == 8
        assert page.hits[0].size == len(fake._by_id[page.hits[0].id].data)


def test_parsing_giphy_objects():
    assert parse_hit({"id": "a"}) is None  # no original URL: not a candidate
    h = parse_hit({"id": " a ", "images": {"original": {"url": "u", "width": "", "frames": "12"}}})
    assert h is not None and (h.id, h.width, h.frames, h.size, h.title) == ("a", None, 12, None, "")
    assert retry_after_s("120") == 120.0 and retry_after_s(None) is None
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    with pytest.raises(RateLimited):  # meta.status 429 inside an HTTP 200
        transport = httpx.MockTransport(lambda r: httpx.Response(200, json={"data": [], "meta": {"status": 429}}))  # fmt: skip
        GiphyClient("http://giphy.test/v1", "k", transport=transport).search("q", limit=1, offset=0)


def write_run(tmp_path: Path, tops: dict[str, list[str]]) -> Path:
    run = {"model": "cmtl", "protocol": {"emotions": {e: {"pool": 5, "test": 2, "top_tags": t} for e, t in tops.items()}}}  # fmt: skip
    (tmp_path / "run.json").write_text(json.dumps(run))
    return tmp_path


def test_queries_from_a_run(tmp_path):
    tops = {e: [f"{e}-tag{i}" for i in range(12)] for e in EMOTIONS}
    tops["happiness"][:2] = ["happy", "Smile "]
    tops["amusement"][:1] = ["happy"]
    q = queries_from_run(write_run(tmp_path, tops), n_tags=10)
    assert len(q) == 17 * 10 - 1 and q["happy"] == ["amusement", "happiness"]
    assert q["smile"] == ["happiness"] and "anger-tag9" in q and "anger-tag10" not in q
    assert set(queries_from_run(tmp_path / "run.json", n_tags=2, emotions=["fear"])) == {"fear-tag0", "fear-tag1"}  # fmt: skip
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "run.json").write_text(json.dumps({"model": "svm", "params": {}}))
    with pytest.raises(ValueError, match=r"protocol\.emotions"):
        queries_from_run(tmp_path / "bad")
    with pytest.raises(FileNotFoundError, match=r"run\.json"):
        queries_from_run(tmp_path / "nowhere")
    (tmp_path / "bad" / "run.json").write_text(json.dumps({"protocol": {"emotions": ["fear"]}}))
    with pytest.raises(ValueError, match=r"bad/run\.json: no protocol\.emotions.*not a mapping"):
        queries_from_run(tmp_path / "bad")
    t1 = table1_queries(n_tags=10)
    assert "tv" not in t1 and "happiness" in t1["happy"] and "laughing" in t1
    assert merge_queries(["cat", " cat"], {"cat": ["fear"]}) == {"cat": ["fear"]}


def test_config_defaults_equal_the_code_defaults():
    """conf/collect/default.yaml and CollectOptions agree (one default per value)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    conf = Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose(
            "collect", overrides=["collect.out_dir=/tmp/x", "collect.queries=[happy,smile]"]
        )
    got = OmegaConf.to_container(cfg.collect, resolve=True)
    opts = CollectOptions.from_mapping(got)
    assert opts.queries == ["happy", "smile"]
    want = {**vars(CollectOptions(out_dir="/tmp/x")), "queries": ["happy", "smile"]}
    assert got == want
    with pytest.raises(ValueError, match="unknown collect option"):
        CollectOptions.from_mapping({**got, "api_key": "x"})


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("queries", "happy", r"collect\.queries must be a list, got 'happy': write collect\.queries=\[happy\]"),
        ("emotions", "fear", r"collect\.emotions must be a list.*collect\.emotions=\[fear\]"),
        ("max_retries", -1, r"collect\.max_retries must be >= 0, got -1"),
        ("download_retries", -2, r"collect\.download_retries must be >= 0"),
    ],
)  # fmt: skip
def test_options_that_would_search_nonsense_are_refused(tmp_path, option, value, message):
    """A bare word on Hydra's command line (``collect.queries=happy``) is a string, which
    would be searched letter by letter; a negative retry count would skip every search."""
    opts = CollectOptions(out_dir=str(tmp_path), queries=["happy"])
    setattr(opts, option, value)
    with pytest.raises(ValueError, match=message):
        opts.check()
