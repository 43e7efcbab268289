"""The labelling server as a real process on loopback: auth, isolation, escaping, crash safety."""

from __future__ import annotations

import sqlite3
import uuid

import httpx
import pytest

from tests.label_fixtures import HOSTILE, Server, make_project


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("label_http")
    p = make_project(tmp, n_gifs=6, hostile=2, policy="adjudicate")
    srv = Server(p.path, tmp / "server.log").start()
    yield p, srv
    srv.kill()


def _decide(c: httpx.Client, item: dict, answer: str, **kw) -> httpx.Response:
    body = {"emotion": item["emotion"], "gif_id": item["gif_id"], "answer": answer,
            "request_id": uuid.uuid4().hex, **kw}  # fmt: skip
    return c.post("/api/decisions", json=body)


def test_no_or_bad_token_is_401(running):
    p, srv = running
    for token in (None, "not-a-token", p.tokens["alice"] + "x"):
        with srv.client(token) as c:
            for path in ("/api/next", "/api/me", "/api/decisions", "/api/admin/progress",
                         f"/gif/{p.ids[0]}", "/label", "/admin"):  # fmt: skip
                assert c.get(path).status_code == 401, (token, path)
            assert c.post("/api/decisions", json={}).status_code == 401
            assert c.post("/api/undo", json={}).status_code == 401
    with srv.client(None) as c:
        assert c.get("/label", params={"token": "forged"}).status_code == 401


def test_labeller_cannot_reach_admin_or_another_labellers_answers(running):
    p, srv = running
    with srv.client(p.tokens["alice"]) as a, srv.client(p.tokens["bob"]) as b:
        for path in (
            "/api/admin/progress",
            "/api/admin/agreement",
            "/api/admin/disagreements",
            "/admin",
        ):
            assert a.get(path).status_code == 403
        assert a.post("/api/admin/adjudicate", json={"emotion": "anger", "gif_id": p.ids[0],
                                                     "answer": "yes"}).status_code == 403  # fmt: skip
        item_b = b.get("/api/next", params={"emotion": "anger", "n": 1}).json()["items"][0]
        rb = _decide(b, item_b, "yes")
        assert rb.status_code == 200
        seq_b = rb.json()["event"]["seq"]
        # alice answers too, trying to write as bob: the user always comes from the token
        item_a = a.get("/api/next", params={"emotion": "anger", "n": 1}).json()["items"][0]
        ra = _decide(a, item_a, "no", user="bob")
        assert ra.status_code == 200
        mine = a.get("/api/decisions").json()
        assert mine["user"] == "alice"
        assert seq_b not in [e["seq"] for e in mine["events"]]
        assert ra.json()["event"]["seq"] in [e["seq"] for e in mine["events"]]
        assert "answers" not in str(mine)  # nothing about others' answers
        # alice's undo cancels alice's answer, never bob's
        u = a.post("/api/undo", json={"request_id": uuid.uuid4().hex}).json()
        assert u["undone"]["seq"] == ra.json()["event"]["seq"]
        bobs = b.get("/api/decisions").json()["events"]
        assert [e["seq"] for e in bobs if e["kind"] == "label"] == [seq_b]
        assert a.post("/api/undo", json={}).json()["undone"] is None
        assert [e["seq"] for e in b.get("/api/decisions").json()["events"]] == [seq_b]
    with srv.client(p.tokens["boss"]) as admin:
        assert admin.get("/api/next").status_code == 403  # the admin does not label
        assert admin.get("/api/admin/progress").status_code == 200


def test_cookie_link_escaping_and_no_token_in_logs(running):
    p, srv = running
    token = p.tokens["alice"]
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        r = c.get("/label", params={"token": token})
        assert r.status_code == 200 and token not in r.text
        cookie = r.headers["set-cookie"]
        assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
        assert r.headers["referrer-policy"] == "no-referrer"
        assert "script-src 'self'" in r.headers["content-security-policy"]
        page = c.get("/label")  # the cookie signs the page in
        assert page.status_code == 200 and "alice" in page.text
        assert c.post("/api/undo", content=b"{}").status_code == 415  # no form/CSRF posts
        gif = c.get(f"/gif/{p.ids[1]}")
        assert gif.status_code == 200 and b"NETSCAPE2.0" in gif.content
    # a disagreement on the hostile GIF, so that the admin page lists its title
    with srv.client(p.tokens["alice"]) as a, srv.client(p.tokens["bob"]) as b:
        for c, ans in ((a, "yes"), (b, "no")):
            items = c.get("/api/next", params={"emotion": "amusement", "n": 6}).json()["items"]
            hostile = next(i for i in items if i["gif_id"] == p.ids[2])
            assert hostile["title"] == HOSTILE  # JSON carries the text; the page sets textContent
            assert _decide(c, hostile, ans).status_code == 200
    with srv.client(p.tokens["boss"]) as admin:
        html = admin.get("/admin").text
        assert "&lt;img src=x onerror=" in html and "<img src=x" not in html
        assert [
            d["gif_id"] for d in admin.get("/api/admin/disagreements").json()["disagreements"]
        ] == [p.ids[2]]
        r = admin.post(
            "/api/admin/adjudicate",
            json={"emotion": "amusement", "gif_id": p.ids[2], "answer": "no"},
        )
        assert r.status_code == 200
    assert token not in srv.log_path.read_text()


def test_killed_server_loses_no_acknowledged_decision(tmp_path):
    p = make_project(tmp_path, n_gifs=12, emotions=("amusement", "anger", "fear"))
    srv = Server(p.path, tmp_path / "server.log").start()
    acked: list[int] = []
    try:
        with srv.client(p.tokens["alice"]) as a, srv.client(p.tokens["bob"]) as b:
            for k in range(30):
                c = a if k % 2 == 0 else b
                items = c.get("/api/next", params={"n": 1}).json()["items"]
                r = _decide(c, items[0], "yes" if k % 3 else "no")
                assert r.status_code == 200
                acked.append(r.json()["event"]["seq"])
    finally:
        srv.kill()  # SIGKILL right after the last acknowledgement
    assert srv.proc is not None and srv.proc.returncode == -9
    srv2 = Server(p.path, tmp_path / "server2.log").start()
    try:
        seen = []
        for u in ("alice", "bob"):
            with srv2.client(p.tokens[u]) as c:
                seen += [e["seq"] for e in c.get("/api/decisions").json()["events"]]
        assert sorted(seen) == sorted(acked)
    finally:
        srv2.kill()
    db = sqlite3.connect(p.path / "label.sqlite")
    assert db.execute("SELECT count(*) FROM events WHERE kind='label'").fetchone()[0] == 30
    db.close()
