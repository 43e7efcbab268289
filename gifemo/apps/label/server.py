"""The web app: a thin Starlette layer over :class:`~gifemo.apps.label.state.LabelState`.

Pages (HTML, Jinja2 with autoescape; the token travels once in the personal link, is put in an
``HttpOnly; SameSite=Strict`` cookie and the browser is sent on to the same URL without it):

``GET /label?token=T``   sets the cookie, then ``/label``: the labeller's page
``GET /admin?token=T``   sets the cookie, then ``/admin``: progress, agreement, disagreements
``GET /gif/{id}``        a candidate GIF (made to loop forever); any signed-in user

JSON API (``Authorization: Bearer T``, or the page's cookie; POST bodies are JSON):

``GET  /api/next?emotion=E&n=3``  the labeller's next items (current first, the rest to preload)
``POST /api/decisions``           ``{emotion, gif_id, answer: "yes"|"no"|"skip", others: [...],
                                  cartoon, multi_scene, request_id}`` → ``{event, created, next}``;
                                  answered only after the event is committed to disk
``POST /api/undo``                cancel the labeller's latest answer → ``{undone, next}``
``GET  /api/me``                  the labeller's name, own answers, progress per emotion
``GET  /api/admin/progress``      admin: per-emotion progress
``GET  /api/admin/agreement``     admin: κ, agreement, α, Ñ (see :mod:`.agreement`)
``GET  /api/admin/disagreements`` admin: the disagreement queue
``POST /api/admin/adjudicate``    admin: ``{emotion, gif_id, answer: "yes"|"no"}``
``GET  /healthz``                 no auth

No token → 401; a labeller's token on an admin route → 403. A labeller's requests only ever
read or change their own answers (the user comes from the token, never from the body). Tokens
never reach the logs (no access log with query strings; the app logs paths only).
"""

from __future__ import annotations

import json
import logging
import struct
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from gifemo.apps.label.agreement import agreement_report
from gifemo.apps.label.keys import KEYMAP
from gifemo.apps.label.state import LabelError, LabelState
from gifemo.apps.label.store import hash_token

log = logging.getLogger("gifemo.label")
HERE = Path(__file__).parent
COOKIE = "gifemo_label"
CSP = (
    "default-src 'self'; img-src 'self'; script-src 'self'; style-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


def looping_gif(data: bytes) -> bytes:
    """The GIF with a NETSCAPE2.0 loop count of 0 (loop forever): browsers play a GIF without
    it once. An existing loop extension gets count 0; otherwise one is inserted after the
    global colour table. Bytes that are not a GIF come back unchanged."""
    if len(data) < 13 or data[:6] not in (b"GIF87a", b"GIF89a"):
        return data
    i = data.find(b"\x21\xff\x0bNETSCAPE2.0")
    if i >= 0:
        j = i + 14
        if data[j : j + 2] == b"\x03\x01":
            return data[: j + 2] + b"\x00\x00" + data[j + 4 :]
        return data
    packed = data[10]
    gct = 3 * (2 ** ((packed & 7) + 1)) if packed & 0x80 else 0
    at = 13 + gct
    ext = b"\x21\xff\x0bNETSCAPE2.0\x03\x01" + struct.pack("<H", 0) + b"\x00"
    return b"GIF89a" + data[6:at] + ext + data[at:]


def _json(obj: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(obj, status_code=status, headers={"Cache-Control": "no-store"})


def _error(status: int, message: str) -> JSONResponse:
    return _json({"error": message}, status)


def _answer(v: Any) -> bool | None:
    if v in ("yes", True):
        return True
    if v in ("no", False):
        return False
    if v == "skip":
        return None
    raise LabelError(400, f"answer must be 'yes', 'no' or 'skip', got {v!r}")


def _flag(body: Mapping[str, Any], key: str) -> bool | None:
    v = body.get(key)
    if v is not None and not isinstance(v, bool):
        raise LabelError(400, f"{key} must be true, false or null, got {v!r}")
    return v


def create_app(
    state: LabelState, *, predicted: Mapping[str, float] | None = None, title: str = "gifemo"
) -> Any:
    """The ASGI app serving ``state``; a request's token is looked up in the store each time
    (a user added while the server runs can sign in; a reissued token revokes the old one)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")), autoescape=True
    )
    templates = Jinja2Templates(env=env)

    def who(request: Request, *, page: bool = False) -> tuple[str, str] | None:
        token = None
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            token = auth[7:].strip()
        elif COOKIE in request.cookies:
            token = request.cookies[COOKIE]
        if not token:
            return None
        return who_token(token)

    def api(
        role: str | None, fn: Callable[[Request, str], Any]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            user = who(request)
            if user is None:
                return _error(401, "missing or invalid token (Authorization: Bearer <token>)")
            if role is not None and user[1] != role:
                return _error(403, f"this needs the {role} role")
            body: dict[str, Any] = {}
            if request.method == "POST":
                if "application/json" not in request.headers.get("content-type", ""):
                    return _error(415, "POST bodies must be application/json")
                try:
                    body = json.loads(await request.body() or b"{}")
                except json.JSONDecodeError as e:
                    return _error(400, f"invalid JSON body: {e.msg}")
                if not isinstance(body, dict):
                    return _error(400, "the JSON body must be an object")
            request.state.body = body
            try:
                return _json(await run_in_threadpool(fn, request, user[0]))
            except LabelError as e:
                return _error(e.status, str(e))

        return endpoint

    def next_(request: Request, user: str) -> Any:
        q = request.query_params
        emotion = q.get("emotion") or None
        try:
            n = int(q.get("n", "3"))
        except ValueError as e:
            raise LabelError(400, "n must be an integer") from e
        return {"items": state.next_items(user, emotion, n), "progress": state.progress()}

    def decide(request: Request, user: str) -> Any:
        b = request.state.body
        others = b.get("others") or []
        if not isinstance(others, list):
            raise LabelError(400, "others must be a list of emotions")
        emotion, gif_id = b.get("emotion"), b.get("gif_id")
        if not isinstance(emotion, str) or not isinstance(gif_id, str):
            raise LabelError(400, "emotion and gif_id are required strings")
        rid = b.get("request_id")
        if rid is not None and (not isinstance(rid, str) or len(rid) > 100):
            raise LabelError(400, "request_id must be a string of at most 100 characters")
        ev, created = state.decide(
            user,
            emotion,
            gif_id,
            _answer(b.get("answer")),
            others=others,
            cartoon=_flag(b, "cartoon"),
            multi_scene=_flag(b, "multi_scene"),
            request_id=rid,
        )
        nxt = b.get("next_emotion") or None
        return {
            "event": ev.public(),
            "created": created,
            "next": state.next_items(user, nxt, int(b.get("n", 3))),
            "progress": state.progress(),
        }

    def undo(request: Request, user: str) -> Any:
        b = request.state.body
        target = state.undo(user, b.get("request_id"))
        return {
            "undone": None if target is None else target.public(),
            "next": state.next_items(
                user, None if target is None else target.emotion, int(b.get("n", 3))
            ),
            "progress": state.progress(),
        }

    def me(request: Request, user: str) -> Any:
        evs = state.user_events(user)
        return {"user": user, "events": [e.public() for e in evs], "progress": state.progress()}

    def adjudicate(request: Request, user: str) -> Any:
        b = request.state.body
        ans = _answer(b.get("answer"))
        if ans is None:
            raise LabelError(400, "answer must be 'yes' or 'no'")
        return {
            "event": state.adjudicate(
                user, str(b.get("emotion")), str(b.get("gif_id")), ans
            ).public()
        }

    def report(request: Request, user: str) -> Any:
        return agreement_report(state, predicted)

    def signin(role: str, page: str) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            token = request.query_params.get("token")
            headers = {
                "Content-Security-Policy": CSP,
                "Referrer-Policy": "no-referrer",
                "Cache-Control": "no-store",
                "X-Frame-Options": "DENY",
            }
            if token:
                user = who_token(token)
                if user is None:
                    return HTMLResponse("<h1>401</h1><p>This link is not valid.</p>", 401, headers)
                # Set the cookie on a same-origin page, then navigate there without the token
                # (a redirect chain that began on another site would not send a Strict cookie).
                resp = HTMLResponse(
                    f'<!doctype html><meta http-equiv="refresh" content="0;url=/{page}">'
                    f'<p>Signed in. <a href="/{page}">Continue</a></p>',
                    headers=headers,
                )
                resp.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/")
                return resp
            user = who(request)
            if user is None:
                return HTMLResponse(
                    "<h1>401</h1><p>Open your personal link (from <code>label add-user</code>).</p>",
                    401,
                    headers,
                )
            if user[1] != role:
                return HTMLResponse(
                    f"<h1>403</h1><p>This page needs the {role} role.</p>", 403, headers
                )
            ctx: dict[str, Any] = {"user": user[0], "title": title}
            if page == "label":
                ctx["config"] = {
                    "user": user[0],
                    "keys": KEYMAP,
                    "emotions": state.emotions,
                    "n_p": state.cfg.n_p,
                }
            else:
                ctx["progress"] = state.progress()
                ctx["report"] = await run_in_threadpool(agreement_report, state, predicted)
                ctx["disagreements"] = state.disagreements()
                ctx["policy"] = state.cfg.policy
            return templates.TemplateResponse(request, f"{page}.html", ctx, headers=headers)

        return endpoint

    def who_token(token: str) -> tuple[str, str] | None:
        with state.lock:  # read each time: a reissued token revokes the old one at once
            return state.store.user_of(hash_token(token))

    async def gif(request: Request) -> Response:
        if who(request) is None:
            return _error(401, "missing or invalid token")
        info = state.gifs.get(request.path_params["gif_id"])
        if info is None:
            return _error(404, "no such candidate GIF")
        try:
            data = await run_in_threadpool(Path(info["file"]).read_bytes)
        except OSError as e:
            log.error("cannot read %s: %s", info["file"], e)
            return _error(404, f"GIF file missing: {Path(info['file']).name}")
        return Response(
            looping_gif(data),
            media_type="image/gif",
            headers={"Cache-Control": "private, max-age=3600"},
        )

    async def root(request: Request) -> Response:
        return RedirectResponse("/label", 303)

    async def healthz(request: Request) -> Response:
        return _json({"ok": True})

    routes = [
        Route("/", root),
        Route("/healthz", healthz),
        Route("/label", signin("labeller", "label")),
        Route("/admin", signin("admin", "admin")),
        Route("/gif/{gif_id}", gif),
        Route("/api/next", api("labeller", next_)),
        Route("/api/decisions", api("labeller", decide), methods=["POST"]),
        Route("/api/decisions", api("labeller", me), methods=["GET"]),
        Route("/api/undo", api("labeller", undo), methods=["POST"]),
        Route("/api/me", api("labeller", me)),
        Route("/api/admin/progress", api("admin", lambda r, u: {"progress": state.progress()})),
        Route("/api/admin/agreement", api("admin", report)),
        Route(
            "/api/admin/disagreements",
            api("admin", lambda r, u: {"disagreements": state.disagreements()}),
        ),
        Route("/api/admin/adjudicate", api("admin", adjudicate), methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    return PathLog(Starlette(routes=routes))


class PathLog:
    """ASGI wrapper logging method, path (never the query string: it may hold a token),
    status and milliseconds."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0, status = time.perf_counter(), [0]

        async def send_(msg: Any) -> None:
            if msg["type"] == "http.response.start":
                status[0] = msg["status"]
            await send(msg)

        await self.app(scope, receive, send_)
        ms = 1000 * (time.perf_counter() - t0)
        log.info("%s %s %d %.1fms", scope["method"], scope["path"], status[0], ms)
