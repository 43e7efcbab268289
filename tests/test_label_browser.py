"""The labelling page in a real headless Chromium (Debian's, driven by Playwright 1.64.1).

Never downloads a browser: Playwright launches ``/usr/bin/chromium`` (``.ci/run`` installs it);
skipped only where that binary is absent. Set ``GIFEMO_SCREENSHOT_DIR=docs/img`` to refresh the
README's screenshot (``labelling.png``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from gifemo.apps.label import main
from tests.label_fixtures import HOSTILE, Server, make_project

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (/usr/bin/chromium)"
)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield b
        b.close()


def _link(srv: Server, token: str) -> str:
    return f"{srv.url}/label?token={token}"


def _current(page) -> str:
    return page.eval_on_selector("#gif", "el => el.dataset.gifId || ''")


def _press(page, key: str) -> None:
    """Press an answer key and wait until the page shows the next item (or nothing)."""
    before = _current(page)
    page.keyboard.press(key)
    page.wait_for_function(
        "old => document.body.dataset.state === 'empty' || "
        "(document.body.dataset.state === 'ready' && document.querySelector('#gif').dataset.gifId !== old)",
        arg=before,
        timeout=10_000,
    )


def _open(browser, srv: Server, token: str):
    # bypass_csp: Playwright polls string predicates through eval, which the page's CSP forbids;
    # it also means escaping alone, not the CSP, keeps the hostile title inert below.
    ctx = browser.new_context(viewport={"width": 1100, "height": 720}, bypass_csp=True)
    page = ctx.new_page()
    page.goto(_link(srv, token))
    page.wait_for_url(f"{srv.url}/label")
    page.wait_for_function("document.body.dataset.state === 'ready'", timeout=10_000)
    return ctx, page


def _pressed(page, sel: str) -> bool:
    return page.get_attribute(sel, "aria-pressed") == "true"


def test_labeller_page_plays_labels_undoes_and_resumes(browser, tmp_path):
    p = make_project(tmp_path, n_gifs=4, emotions=("amusement",), hostile=1, n_p=50)
    srv = Server(p.path, tmp_path / "server.log").start()
    try:
        ctx, page = _open(browser, srv, p.tokens["alice"])
        assert "token" not in page.url
        (cookie,) = ctx.cookies()
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert _current(page) == p.ids[0]
        # the GIF is loaded and playing: decoded, and its pixels change over time
        page.wait_for_function("(() => { const i = document.querySelector('#gif'); "
                               "return i.complete && i.naturalWidth === 48; })()")  # fmt: skip
        shots = [page.locator("#gif").screenshot()]
        for _ in range(20):
            page.wait_for_timeout(100)
            shots.append(page.locator("#gif").screenshot())
            if shots[-1] != shots[0]:
                break
        assert shots[-1] != shots[0], "the GIF does not animate"
        assert page.text_content("#question") == "Does this GIF show amusement?"
        assert page.text_content("#counter") == "amusement: 0 / 50 consensus positives"
        # the keys are shown on the page
        assert (
            page.text_content("#btn-yes kbd") == "y"
            and page.text_content("#other-anger kbd") == "2"
        )
        assert page.is_disabled("#other-amusement")  # the asked emotion is answered with y/n
        # mark another emotion and a flag, answer yes
        page.keyboard.press("2")
        page.keyboard.press("c")
        assert _pressed(page, "#other-anger") and _pressed(page, "#flag-cartoon")
        _press(page, "y")
        assert _current(page) == p.ids[1]
        assert not _pressed(page, "#other-anger") and not _pressed(page, "#flag-cartoon")
        # the hostile title is shown as text and runs nothing
        assert page.text_content("#gif-title") == HOSTILE
        assert page.evaluate("window.__pwned === undefined")
        assert page.locator("img[src='x']").count() == 0
        # undo brings the first GIF back with its marks
        _press(page, "u")
        assert _current(page) == p.ids[0]
        assert _pressed(page, "#other-anger") and _pressed(page, "#flag-cartoon")
        page.keyboard.press("2")
        _press(page, "n")
        assert _current(page) == p.ids[1]
        # a reload resumes at the same place
        page.reload()
        page.wait_for_function("document.body.dataset.state === 'ready'", timeout=10_000)
        assert _current(page) == p.ids[1]
        page.wait_for_function("document.querySelector('#gif').complete")
        shot = tmp_path / "labelling.png"
        page.screenshot(path=str(shot))
        if os.environ.get("GIFEMO_SCREENSHOT_DIR"):
            out = Path(os.environ["GIFEMO_SCREENSHOT_DIR"])
            out.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shot, out / "labelling.png")
        ctx.close()
    finally:
        srv.kill()
    # the log holds: label yes (g000), undo, label no (g000) — and the marks that were sent
    from gifemo.apps.label import open_state

    s = open_state(p.path, with_reranker=False)
    evs = s.user_events("alice")
    assert [(e.kind, e.gif_id, e.answer) for e in evs] == [
        ("label", p.ids[0], True), ("undo", p.ids[0], None), ("label", p.ids[0], False)]  # fmt: skip
    assert evs[0].others == ("anger",) and evs[0].cartoon is True
    assert evs[2].others == () and evs[2].cartoon is True


def test_two_labellers_agree_disagree_and_assembly_holds_the_consensus(browser, tmp_path):
    p = make_project(tmp_path, n_gifs=4, emotions=("amusement",), n_p=50)
    srv = Server(p.path, tmp_path / "server.log").start()
    # per GIF: (marks, answer) for alice and bob; "0" = happiness, "c" = cartoon
    plan = {
        "alice": [("0", "y"), ("", "y"), ("c", "y"), ("", "n")],
        "bob": [("0", "y"), ("", "n"), ("c", "y"), ("", "y")],
    }
    try:
        for user, steps in plan.items():
            ctx, page = _open(browser, srv, p.tokens[user])
            for k, (marks, ans) in enumerate(steps):
                assert _current(page) == p.ids[k]
                for key in marks:
                    page.keyboard.press(key)
                _press(page, ans)
            assert page.evaluate("document.body.dataset.state") == "empty"
            ctx.close()
    finally:
        srv.kill()
    out = tmp_path / "gifgif_plus"
    assert main(["assemble", "--project", str(p.path), "--out", str(out), "--no-stats"]) == 0
    rows = {
        json.loads(x)["id"]: json.loads(x)
        for x in (out / "metadata.jsonl").read_text().splitlines()
    }
    got = {g: (r["emotions"], r["cartoon"]) for g, r in rows.items()}
    # g000 yes/yes + both marked happiness; g001, g003 disagree (dropped); g002 yes/yes, cartoon
    assert got == {p.ids[0]: (["amusement", "happiness"], False), p.ids[2]: (["amusement"], True)}


@pytest.mark.slow
def test_admin_page_adjudicates_a_disagreement(browser, tmp_path):
    import httpx

    p = make_project(tmp_path, n_gifs=3, emotions=("amusement",), hostile=0, policy="adjudicate")
    srv = Server(p.path, tmp_path / "server.log").start()
    try:
        for user, ans in (("alice", "yes"), ("bob", "no")):
            with srv.client(p.tokens[user]) as c:
                c.get("/api/next", params={"n": 1}).raise_for_status()
                c.post("/api/decisions", json={"emotion": "amusement", "gif_id": p.ids[0],
                                               "answer": ans}).raise_for_status()  # fmt: skip
        ctx = browser.new_context(bypass_csp=True)
        page = ctx.new_page()
        page.goto(f"{srv.url}/admin?token={p.tokens['boss']}")
        page.wait_for_url(f"{srv.url}/admin")
        row = page.locator("#disagreements tr").nth(1)
        assert row.locator("td").nth(2).text_content() == HOSTILE  # the title, as text
        assert page.evaluate("window.__pwned === undefined")
        assert "alice: yes" in row.text_content() and "bob: no" in row.text_content()
        with page.expect_navigation():
            row.locator("button[data-answer='yes']").click()
        assert (
            page.locator("#disagreements tr").nth(1).locator(".adjudicated").text_content() == "yes"
        )
        ctx.close()
        with httpx.Client(
            base_url=srv.url, headers={"Authorization": f"Bearer {p.tokens['boss']}"}
        ) as c:
            prog = c.get("/api/admin/progress").json()["progress"][0]
        assert prog["positives"] == 1 and prog["disagreements"] == 0
    finally:
        srv.kill()
