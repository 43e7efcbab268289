"""The labelling queue, consensus, undo, the log and active re-ranking, without HTTP."""

from __future__ import annotations

import io
import sqlite3
import threading

import numpy as np
import pytest
from PIL import Image

from gifemo.apps.label import open_state
from gifemo.apps.label.group_commit import GroupCommit
from gifemo.apps.label.keys import all_keys
from gifemo.apps.label.project import read_ranked
from gifemo.apps.label.server import looping_gif
from gifemo.apps.label.state import LabelError
from gifemo.apps.label.store import hash_token
from tests.label_fixtures import FlakyReranker, ReverseReranker, make_project


def _answer(state, user, answer=True, emotion=None, **kw):
    item = state.next_items(user, emotion, 1)[0]
    ev, _ = state.decide(user, item["emotion"], item["gif_id"], answer, **kw)
    return item["gif_id"], ev


def test_each_gif_goes_to_exactly_two_labellers(tmp_path):
    p = make_project(tmp_path, users=("a", "b", "c"))
    s = open_state(p.path)
    first_a = s.next_items("a", "amusement", 1)[0]["gif_id"]
    first_b = s.next_items("b", "amusement", 1)[0]["gif_id"]
    first_c = s.next_items("c", "amusement", 1)[0]["gif_id"]
    assert first_a == first_b == p.ids[0]  # ranked order
    assert first_c == p.ids[1]  # g000 already held by two labellers
    s.decide("a", "amusement", p.ids[0], True)
    with pytest.raises(LabelError, match="already answered"):
        s.decide("a", "amusement", p.ids[0], False)  # never twice for the same question
    assert p.ids[0] not in [i["gif_id"] for i in s.next_items("a", "amusement", 6)]
    with pytest.raises(LabelError, match="two labellers"):
        s.decide("c", "amusement", p.ids[0], True)  # no lease, two others hold it


def test_skip_passes_the_item_on_and_undo_brings_it_back_first(tmp_path):
    p = make_project(tmp_path, users=("a", "b", "c"))
    s = open_state(p.path)
    s.next_items("b", "amusement", 1)
    g, _ = _answer(s, "a", None, "amusement")  # a skips g000
    assert g == p.ids[0]
    assert s.next_items("c", "amusement", 1)[0]["gif_id"] == p.ids[0]  # a's slot is free again
    assert s.next_items("a", "amusement", 1)[0]["gif_id"] == p.ids[1]
    s.decide("a", "amusement", p.ids[1], True, others=["anger", "fear"], cartoon=True)
    undone = s.undo("a")
    assert undone is not None and undone.gif_id == p.ids[1] and undone.others == ("anger", "fear")
    assert s.next_items("a", "amusement", 3)[0]["gif_id"] == p.ids[1]  # served again, first
    undone = s.undo("a")  # then the skip
    assert undone is not None and undone.kind == "skip" and undone.gif_id == p.ids[0]
    assert s.undo("a") is None


def test_consensus_drop_policy_and_quota(tmp_path):
    p = make_project(tmp_path, n_gifs=6, n_p=2)
    s = open_state(p.path)
    # g000 yes/yes, g001 yes/no (dropped), g002 no/no, g003 yes/yes → 2 positives = N_p
    plan = [(True, True), (True, False), (False, False), (True, True)]
    for want_a, want_b in plan:
        g, _ = _answer(s, "alice", want_a, "amusement")
        assert s.next_items("bob", "amusement", 1)[0]["gif_id"] == g
        s.decide("bob", "amusement", g, want_b)
    labels = s.consensus_labels()["amusement"]
    assert labels == {p.ids[0]: True, p.ids[1]: False, p.ids[2]: False, p.ids[3]: True}
    prog = {x["emotion"]: x for x in s.progress()}["amusement"]
    assert prog["positives"] == 2 and prog["done"] and prog["disagreements"] == 1
    assert s.next_items("alice", "amusement", 3) == []  # done: not served any more
    assert s.next_items("alice", None, 1)[0]["emotion"] == "anger"
    with pytest.raises(LabelError, match="drop"):
        s.adjudicate("boss", "amusement", p.ids[1], True)


def test_adjudicate_policy(tmp_path):
    p = make_project(tmp_path, policy="adjudicate")
    s = open_state(p.path)
    g, _ = _answer(s, "alice", True, "amusement")
    s.next_items("bob", "amusement", 1)
    s.decide("bob", "amusement", g, False)
    assert g not in s.consensus_labels()["amusement"]  # waits for the adjudicator
    assert [d["gif_id"] for d in s.disagreements()] == [g]
    s.adjudicate("boss", "amusement", g, True)
    assert s.consensus_labels()["amusement"][g] is True
    with pytest.raises(LabelError, match="not a disagreement"):
        s.adjudicate("boss", "amusement", p.ids[3], True)


def test_log_is_append_only_replayed_and_idempotent(tmp_path):
    p = make_project(tmp_path)
    s = open_state(p.path)
    g, ev = _answer(s, "alice", True, "amusement", request_id="r1")
    again, created = s.decide("alice", "amusement", g, True, request_id="r1")
    assert not created and again.seq == ev.seq
    _answer(s, "alice", False, "amusement")
    s.undo("alice")
    s.store.close()
    db = sqlite3.connect(p.path / "label.sqlite")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("UPDATE events SET answer = 0")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("DELETE FROM events")
    kinds = [k for (k,) in db.execute("SELECT kind FROM events ORDER BY seq")]
    assert kinds == ["label", "label", "undo"]
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tokens = [t for (t,) in db.execute("SELECT token_sha256 FROM users")]
    assert hash_token(p.tokens["alice"]) in tokens and p.tokens["alice"] not in tokens
    db.close()
    s2 = open_state(p.path)  # replay
    assert [e.gif_id for e in s2.user_events("alice") if e.kind == "label"] == [g, p.ids[1]]
    assert s2.items["amusement", g].decisions["alice"].answer is True
    assert "alice" not in s2.items["amusement", p.ids[1]].decisions


def test_active_strategy_reranks_in_background_and_records_versions(tmp_path):
    p = make_project(tmp_path, n_gifs=8, users=("alice", "bob", "carol"), strategy="active", rerank_every=1,
                     reranker="tests.label_fixtures:ReverseReranker")  # fmt: skip
    ReverseReranker.calls.clear()
    s = open_state(p.path)
    g, ev = _answer(s, "alice", True, "amusement")
    assert ev.strategy == "active" and ev.ranking_version == 0
    s.next_items("bob", "amusement", 1)
    s.decide("bob", "amusement", g, True)  # first consensus → rerank in the background
    assert s.rerank_count == 0  # returned while the (slow) reranker still runs
    assert s.next_items("carol", "amusement", 1)  # and the queue keeps serving meanwhile
    assert s.wait_reranks(5)
    call = ReverseReranker.calls[-1]
    assert call["labels"]["amusement"] == {g: True}
    # carol's lease on g001 may come before or after the snapshot; either way it keeps its place
    assert call["remaining"]["amusement"] in (p.ids[1:], p.ids[2:])
    assert s.version["amusement"] == 1
    assert s.order["amusement"] == [p.ids[0], p.ids[1], *reversed(p.ids[2:])]
    item = s.next_items("alice", "amusement", 2)[1]
    assert item["gif_id"] == p.ids[-1] and item["ranking_version"] == 1
    ev, _ = s.decide("alice", "amusement", item["gif_id"], False)
    assert ev.ranking_version == 1
    s.store.close()
    s2 = open_state(p.path)  # the swapped order survives a restart
    assert s2.order["amusement"] == s.order["amusement"] and s2.version["amusement"] == 1


def test_a_reranker_that_loses_ids_is_refused(tmp_path):
    p = make_project(tmp_path, strategy="active", rerank_every=1,
                     reranker="tests.label_fixtures:BadReranker")  # fmt: skip
    s = open_state(p.path)
    before = list(s.order["amusement"])
    for u in ("alice", "bob"):
        s.next_items(u, "amusement", 1)
        s.decide(u, "amusement", p.ids[0], True)
    assert s.wait_reranks(5)
    assert s.order["amusement"] == before and s.version["amusement"] == 0
    assert s.rerank_errors and "not a permutation" in s.rerank_errors[0]


def test_a_reranker_that_raises_keeps_the_order_and_the_next_round_runs(tmp_path):
    """The reranker's exception is recorded and the queue keeps its order; the next consensus
    starts a new round, which swaps its order in."""
    p = make_project(tmp_path, n_gifs=8, strategy="active", rerank_every=1,
                     reranker="tests.label_fixtures:FlakyReranker")  # fmt: skip
    FlakyReranker.calls = 0
    s = open_state(p.path)
    before = list(s.order["amusement"])
    for g in p.ids[:2]:
        for u in ("alice", "bob"):
            assert s.next_items(u, "amusement", 1)[0]["gif_id"] == g
            s.decide(u, "amusement", g, True)
        assert s.wait_reranks(5)
        if g == p.ids[0]:  # the first round failed: nothing changed
            assert s.order["amusement"] == before and s.version["amusement"] == 0
            assert len(s.rerank_errors) == 1 and "model not loaded yet" in s.rerank_errors[0]
    assert FlakyReranker.calls == 2 and len(s.rerank_errors) == 1
    assert s.version["amusement"] == 1
    assert s.order["amusement"] == [*p.ids[:2], *reversed(p.ids[2:])]


def test_keys_never_collide():
    keys = all_keys()
    assert len(keys) == len(set(keys)) == 6 + 17


def test_looping_gif_makes_pillow_see_loop_forever(tmp_path):
    from tests.label_fixtures import write_gif

    for loop in (False, True):
        path = tmp_path / f"x{loop}.gif"
        write_gif(path, 3, loop=loop)
        raw = path.read_bytes()
        assert ("loop" in Image.open(io.BytesIO(raw)).info) == loop
        out = looping_gif(raw)
        im = Image.open(io.BytesIO(out))
        assert im.info["loop"] == 0 and im.n_frames == 4
        for k in range(4):  # frames unchanged
            im.seek(k)
            ref = Image.open(path)
            ref.seek(k)
            assert np.array_equal(np.asarray(im.convert("RGB")), np.asarray(ref.convert("RGB")))


def test_ranked_list_errors_name_file_and_line(tmp_path):
    f = tmp_path / "ranked.csv"
    f.write_text("emotion,rank,id\namusement,1,a\njoy,2,b\n")
    with pytest.raises(ValueError, match=r"ranked.csv:3: field 'emotion'"):
        read_ranked(f)
    f.write_text("emotion,rank,id\namusement,1,a\namusement,2,a\n")
    with pytest.raises(ValueError, match=r"ranked.csv:3: id 'a' listed twice"):
        read_ranked(f)


def test_group_commit_makes_every_waiting_append_durable_with_one_commit():
    """GroupCommit alone: 8 threads append under the lock, then all wait for their batch. Each
    append is committed when its wait returns, and one commit covered all 8. An append after
    that belongs to the next batch and needs a commit of its own."""
    lock = threading.RLock()
    appended: list[int] = []
    committed: set[int] = set()
    group = GroupCommit(lambda: committed.update(appended), lock)
    all_appended = threading.Barrier(8, timeout=10)
    durable: dict[int, bool] = {}

    def answer(i: int) -> None:
        with lock:
            appended.append(i)
            batch = group.batch
        all_appended.wait()
        group.wait(batch)
        durable[i] = i in committed

    threads = [threading.Thread(target=answer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert durable == dict.fromkeys(range(8), True)
    assert group.commits == 1 and group.batch == 1
    with lock:
        appended.append(8)
        batch = group.batch
    group.wait(batch)
    assert 8 in committed and group.commits == 2
    group.wait(0)  # long committed: nothing to do
    assert group.commits == 2
