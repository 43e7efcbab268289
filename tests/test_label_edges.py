"""The queue rules and labeller isolation at their edges: a third answer after an undone skip or
an expired lease, an undone item behind the queue head, a skip while the reranker runs, a
reissued token, another labeller's undo request_id (each failed before its fix)."""

from __future__ import annotations

import threading

import pytest

from gifemo.apps.label import open_state
from gifemo.apps.label.project import load_config, open_store
from gifemo.apps.label.state import LabelError, LabelState
from tests.label_fixtures import make_project


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def _state(p, clock, reranker=None):
    return LabelState(open_store(p.path), load_config(p.path), reranker=reranker, clock=clock)


def test_undo_of_a_skip_lets_a_third_labeller_answer(tmp_path):
    p = make_project(tmp_path, users=("a", "b", "c"))
    s = open_state(p.path)
    g = p.ids[0]
    assert s.next_items("a", "amusement", 1)[0]["gif_id"] == g
    s.decide("a", "amusement", g, None)  # a skips g000: passed on
    for u in ("b", "c"):
        assert s.next_items(u, "amusement", 1)[0]["gif_id"] == g
        s.decide(u, "amusement", g, True)
    s.undo("a")  # a takes the skip back: g000 is leased to a again, first
    assert s.next_items("a", "amusement", 1)[0]["gif_id"] == g
    with pytest.raises(LabelError, match="two labellers"):  # b and c answered meanwhile
        s.decide("a", "amusement", g, False)
    assert len(s.items[("amusement", g)].decisions) <= 2, sorted(
        s.items[("amusement", g)].decisions
    )


def test_an_expired_lease_lets_a_third_labeller_answer(tmp_path):
    p = make_project(tmp_path, users=("a", "b", "c"))
    clock = Clock()
    s = _state(p, clock)
    g = p.ids[0]
    assert s.next_items("a", "amusement", 1)[0]["gif_id"] == g
    clock.t += s.cfg.lease_seconds + 1  # a's lease expires; the page still shows g000
    for u in ("b", "c"):
        assert s.next_items(u, "amusement", 1)[0]["gif_id"] == g
        s.decide(u, "amusement", g, True)
    with pytest.raises(LabelError, match="two labellers"):  # a answers late: refused
        s.decide("a", "amusement", g, False)
    assert len(s.items[("amusement", g)].decisions) <= 2, sorted(
        s.items[("amusement", g)].decisions
    )


def test_an_undone_item_behind_the_head_is_never_served_again(tmp_path):
    p = make_project(tmp_path, n_gifs=3, users=("a", "b", "c"))
    clock = Clock()
    s = _state(p, clock)
    g = p.ids[0]
    for u in ("a", "b"):
        assert s.next_items(u, "amusement", 1)[0]["gif_id"] == g
        s.decide(u, "amusement", g, True)
    s.next_items("c", "amusement", 1)  # head moves past the complete g000
    s.undo("a")  # g000 has one answer again, leased to a
    clock.t += s.cfg.lease_seconds + 1  # a left; the lease expires
    served = {it["gif_id"] for u in ("a", "c") for it in s.next_items(u, "amusement", 20)}
    assert g in served, f"g000 needs a second answer but is served to nobody: {served}"


def test_a_skip_during_a_rerank_kills_the_rerank_thread(tmp_path):
    p = make_project(tmp_path, n_gifs=8, users=("a", "b", "c"), strategy="active", rerank_every=1)
    box = {}

    class SkipDuring:
        """A reranker during whose run another labeller skips a leased item (a concurrent
        request: the page is not blocked while the model runs)."""

        calls = 0

        def rerank(self, labels, remaining):
            SkipDuring.calls += 1
            if SkipDuring.calls == 1:
                t = threading.Thread(
                    target=lambda: box["s"].decide("c", "amusement", box["g"], None)
                )
                t.start()
                t.join()
            return {e: list(reversed(ids)) for e, ids in remaining.items()}

    s = _state(p, Clock(), reranker=SkipDuring())
    box["s"] = s
    leased = [s.next_items(u, "amusement", 1)[0]["gif_id"] for u in ("a", "b")]
    g0 = leased[0]
    box["g"] = s.next_items("c", "amusement", 1)[0]["gif_id"]  # g001 leased to c: not "remaining"
    for u in ("a", "b"):
        s.decide(u, "amusement", g0, True)  # one consensus -> rerank requested
    assert s.wait_reranks(5), "rerank thread died (AssertionError in _swap) and never clears"
    assert s.rerank_count == 1


def test_reissued_token_revokes_the_old_one(tmp_path):
    import subprocess
    import sys

    from tests.label_fixtures import ROOT, Server

    p = make_project(tmp_path)
    srv = Server(p.path, tmp_path / "server.log").start()
    try:
        old = p.tokens["alice"]
        with srv.client(old) as c:
            assert c.get("/api/me").status_code == 200  # server has the old token's hash
        out = subprocess.run([sys.executable, "-m", "gifemo.apps.label", "add-user", "--project",
                              str(p.path), "alice", "--reissue"], cwd=ROOT, capture_output=True,
                             text=True, check=True)  # fmt: skip
        new = out.stdout.split("shown once): ")[1].strip()
        with srv.client(new) as c:
            assert c.get("/api/me").status_code == 200
        with srv.client(old) as c:
            r = c.get("/api/me")
            assert r.status_code == 401, (
                f"revoked token still works: {r.status_code} {r.json()['user']}"
            )
    finally:
        srv.kill()


def test_undo_replay_with_another_users_request_id_leaks_their_answer(tmp_path):
    from tests.label_fixtures import Server

    p = make_project(tmp_path)
    srv = Server(p.path, tmp_path / "server.log").start()
    try:
        with srv.client(p.tokens["alice"]) as a, srv.client(p.tokens["bob"]) as b:
            it = a.get("/api/next", params={"emotion": "amusement", "n": 1}).json()["items"][0]
            r = a.post("/api/decisions", json={**{k: it[k] for k in ("emotion", "gif_id")},
                       "answer": "yes", "others": ["fear"], "request_id": "r-dec"})  # fmt: skip
            assert r.status_code == 200
            assert a.post("/api/undo", json={"request_id": "alice-undo-1"}).json()["undone"]
            r = b.post("/api/undo", json={"request_id": "alice-undo-1"})
            assert r.status_code == 409 or r.json()["undone"] is None, (
                f"bob sees alice's answer: {r.json()['undone']}"
            )
    finally:
        srv.kill()
