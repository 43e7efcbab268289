"""A local Giphy: the search API and media server on 127.0.0.1, for tests and the offline demo.

:class:`FakeGiphy` serves a dataset folder (``metadata.jsonl`` with ``id``, ``file``, ``tags``,
e.g. the generated ``candidates/`` part) the way Giphy's search API does (DESIGN §9):

- ``GET /v1/gifs/search?api_key&q&limit&offset`` → ``{data, pagination, meta}``; a GIF
  matches ``q`` when one of its normalised tags equals the normalised ``q``; each query's
  results come in a fixed pseudo-random order (sha1 of query and id), so queries overlap
  (a GIF with two tags is found by both) in different orders;
- GIF objects with Giphy's fields, **numbers as strings**, no tags, media URLs with a
  per-reply ``?cid=…&rid=giphy.gif&ct=g`` query string; ``aliases`` extra ids that serve
  byte-identical files (Giphy has re-uploads);
- ``limit`` is capped at ``max_limit`` (50, beta keys), a query serves at most its first
  ``max_offset`` + 1 (5000) results, ``offset`` > ``max_offset`` (4999) and ``q`` over 50
  characters are HTTP 400, a missing or wrong ``api_key`` is HTTP 401;
- ``pagination.total_count`` is left out of every ``drop_total_every``-th reply;
- injected faults by search-request number (1-based): ``"429"`` (HTTP 429 with
  ``{"meta": {"status": 429}}``), ``"429bare"`` (HTTP 429 with a bare ``{"message"}``),
  ``"500"``, ``"slow"`` (answers after ``slow_s``), ``"badjson"``, ``"badgzip"`` (HTTP 200
  that says ``Content-Encoding: gzip`` but is not), ``"echokey"`` (``meta.status`` 403 whose
  ``msg`` quotes the request's key, as an error page might); every reply waits
  ``latency_s``; 429 and 500 carry ``Retry-After: retry_after``;
- ``GET /media/<id>/giphy.gif`` serves the file; ``media_faults[id]``: ``"notgif"`` (an HTML
  page), ``"truncated"`` (the first half of the file), ``"500once"`` (HTTP 500 the first time),
  ``"badgziponce"`` (the first time, a body that says ``Content-Encoding: gzip`` but is not),
  ``"undeclared"`` (the search reply under-states the size).

Every request is counted in :attr:`FakeGiphy.requests` (kind, params without the key, status,
whether the key was right). The server logs nothing (a request line would carry the key).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from gifemo.data.gif import scan_gif
from gifemo.data.tags import normalise_tag


@dataclass(frozen=True)
class FakeGif:
    id: str
    data: bytes
    tags: tuple[str, ...]  # normalised
    title: str
    rating: str


@dataclass(frozen=True)
class FakeRequest:
    kind: str  # "search" | "media" | "other"
    params: dict[str, str]  # query parameters without api_key (media: {"id": ...})
    status: int
    key_ok: bool


@dataclass
class FakeGiphy:
    """The fake server; ``with FakeGiphy(gifs) as fake: fake.url`` (``…/v1``)."""

    gifs: Sequence[FakeGif]
    api_key: str | None = None  # None: any non-empty key is accepted
    max_limit: int = 50
    max_offset: int = 4999
    drop_total_every: int = 3  # 0: always send total_count
    faults: Mapping[int, str] = field(default_factory=dict)
    media_faults: Mapping[str, str] = field(default_factory=dict)
    latency_s: float = 0.0
    media_latency_s: float = 0.0
    slow_s: float = 2.0
    retry_after: int = 1
    requests: list[FakeRequest] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        ids = [g.id for g in self.gifs]
        if len(set(ids)) != len(ids):
            raise ValueError("FakeGiphy: duplicate GIF ids")
        self._by_id = {g.id: g for g in self.gifs}
        self._lock = threading.Lock()
        self._n_search = 0
        self._media_seen: set[str] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- the catalogue ---------------------------------------------------------------------

    @classmethod
    def from_dataset(cls, root: str | Path, *, aliases: int = 0, **kw: Any) -> FakeGiphy:
        """Serve ``root/metadata.jsonl``'s GIFs; the first ``aliases`` get a second id
        (``<id>Dup``) with the same bytes and tags."""
        root = Path(root)
        gifs: list[FakeGif] = []
        ratings = ("g", "pg", "pg-13", "g")
        for n, line in enumerate((root / "metadata.jsonl").read_text().splitlines()):
            if not line.strip():
                continue
            row = json.loads(line)
            tags = tuple(t for t in (normalise_tag(t) for t in row.get("tags", [])) if t)
            title = " ".join(w.capitalize() for w in tags[:2]) + " GIF" if tags else "GIF"
            g = FakeGif(row["id"], (root / row["file"]).read_bytes(), tags, title, ratings[n % 4])
            gifs.append(g)
        gifs += [FakeGif(g.id + "Dup", g.data, g.tags, g.title, g.rating) for g in gifs[:aliases]]
        return cls(gifs, **kw)

    def matches(self, q: str) -> list[str]:
        """All ids that ``q`` finds, in the order the search serves them."""
        nq = normalise_tag(q)
        found = [g.id for g in self.gifs if nq and nq in g.tags]
        return sorted(found, key=lambda i: hashlib.sha1(f"{nq}\0{i}".encode()).hexdigest())

    def served_ids(self, queries: Iterable[str], *, max_per_query: int = 10**9) -> set[str]:
        """The unique ids a full collection of ``queries`` can reach (offset cap included)."""
        reach = self.max_offset + 1  # a query yields at most ~5000 results (offset <= 4999)
        return {i for q in queries for i in self.matches(q)[: min(max_per_query, reach)]}

    # -- replies ---------------------------------------------------------------------------

    def _gif_object(self, g: FakeGif, base: str) -> dict[str, Any]:
        layout = scan_gif(g.data)
        size = len(g.data) // 10 if self.media_faults.get(g.id) == "undeclared" else len(g.data)
        slug_words = "-".join(g.title.lower().split()[:-1]) or "gif"
        cid = secrets.token_hex(4)
        media = f"{base}/media/{g.id}/giphy.gif?cid={cid}&rid=giphy.gif&ct=g"
        return {
            "type": "gif",
            "id": g.id,
            "url": f"https://giphy.com/gifs/{slug_words}-{g.id}",
            "slug": f"{slug_words}-{g.id}",
            "bitly_url": f"https://gph.is/{g.id[:7]}",
            "embed_url": f"https://giphy.com/embed/{g.id}",
            "username": "",
            "source": "",
            "title": g.title,
            "rating": g.rating,
            "import_datetime": "2016-03-01 12:00:00",
            "trending_datetime": "0000-00-00 00:00:00",
            "images": {
                "original": {
                    "height": str(layout.height),
                    "width": str(layout.width),
                    "size": str(size),
                    "url": media,
                    "frames": str(len(layout.images)),
                    "mp4_size": str(size * 2),
                    "mp4": f"{base}/media/{g.id}/giphy.mp4?cid={cid}&rid=giphy.mp4&ct=g",
                    "webp_size": str(size),
                    "webp": f"{base}/media/{g.id}/giphy.webp?cid={cid}&rid=giphy.webp&ct=g",
                    "hash": hashlib.md5(g.data).hexdigest(),
                }
            },
            "analytics_response_payload": f"e=ZXZlbnRfdHlwZT1HSUZfU0VBUkNI&cid={cid}",
        }

    def search_reply(self, q: str, limit: int, offset: int, base: str, n: int) -> dict[str, Any]:
        ids = self.matches(q)
        page = ids[: self.max_offset + 1][offset : offset + min(limit, self.max_limit)]
        pag: dict[str, Any] = {"total_count": len(ids), "count": len(page), "offset": offset}
        if self.drop_total_every and n % self.drop_total_every == 0:
            del pag["total_count"]
        return {
            "data": [self._gif_object(self._by_id[i], base) for i in page],
            "pagination": pag,
            "meta": {"status": 200, "msg": "OK", "response_id": secrets.token_hex(8)},
        }

    # -- the server ------------------------------------------------------------------------

    @property
    def base(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeGiphy is not running (use start() or a with-block)")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def url(self) -> str:
        """The API base to give the collector (``collect.api_base``)."""
        return self.base + "/v1"

    def start(self, port: int = 0) -> FakeGiphy:
        self._server = _Server(("127.0.0.1", port), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeGiphy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def search_requests(self, status: int | None = 200) -> list[tuple[str, int]]:
        """(q, offset) of the search requests answered with ``status`` (None: all)."""
        with self._lock:
            return [
                (r.params.get("q", ""), int(r.params.get("offset", "0") or 0))
                for r in self.requests
                if r.kind == "search" and (status is None or r.status == status)
            ]

    def _record(self, req: FakeRequest) -> None:
        with self._lock:
            self.requests.append(req)

    def _next_search(self) -> int:
        with self._lock:
            self._n_search += 1
            return self._n_search

    def _first_media(self, gid: str) -> bool:
        with self._lock:
            first = gid not in self._media_seen
            self._media_seen.add(gid)
            return first


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that gave up: normal
            super().handle_error(request, client_address)


def _handler(fake: FakeGiphy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # a request line carries the API key

        def _send(
            self, status: int, body: bytes, ctype: str, headers: Mapping[str, str] = {}
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)

        def _json(self, status: int, obj: Any, headers: Mapping[str, str] = {}) -> None:
            self._send(status, json.dumps(obj).encode(), "application/json", headers)

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if parts.path.rstrip("/") == "/v1/gifs/search":
                self._search(parts.query)
            elif parts.path.startswith("/media/"):
                self._media(parts.path)
            else:
                fake._record(FakeRequest("other", {"path": parts.path}, 404, False))
                self._json(404, {"message": "Not Found"})

        def _search(self, query: str) -> None:
            qs = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
            key = qs.pop("api_key", "")
            key_ok = bool(key) and (fake.api_key is None or key == fake.api_key)
            n = fake._next_search()
            fault = fake.faults.get(n)
            status: int = 200
            obj: Any = None
            headers: dict[str, str] = {}
            retry = {"Retry-After": str(fake.retry_after)}
            if not key_ok:
                status, obj = (
                    401,
                    {"message": "No API key found in request" if not key else "Unauthorized"},
                )
            elif fault == "429":
                status, headers = 429, retry
                obj = {"meta": {"status": 429, "msg": "API rate limit exceeded", "response_id": ""}}
            elif fault == "429bare":
                status, obj, headers = 429, {"message": "API rate limit exceeded"}, retry
            elif fault == "500":
                status, obj, headers = 500, {"message": "Internal Server Error"}, retry
            elif fault == "echokey":
                obj = {"data": [], "meta": {"status": 403, "msg": f"api_key {key} is banned"}}
            else:
                q = qs.get("q", "")
                limit, offset = qs.get("limit", "25"), qs.get("offset", "0")
                if (
                    not (limit.isdigit() and offset.isdigit())
                    or int(offset) > fake.max_offset
                    or len(q) > 50
                ):
                    status = 400
                    obj = {"meta": {"status": 400, "msg": "Validation error", "response_id": ""}}
                elif not q.strip():
                    status, obj = (
                        400,
                        {"meta": {"status": 400, "msg": "q is required", "response_id": ""}},
                    )
                else:
                    obj = fake.search_reply(q, int(limit), int(offset), fake.base, n)
            fake._record(FakeRequest("search", qs, status, key_ok))  # counted when it arrives
            time.sleep(fake.slow_s if fault == "slow" else fake.latency_s)
            if fault == "badjson" and status == 200:
                self._send(200, b'{"data": [', "application/json")
            elif fault == "badgzip" and status == 200:
                self._send(200, b"not gzip", "application/json", {"Content-Encoding": "gzip"})
            else:
                self._json(status, obj, headers)

        def _media(self, path: str) -> None:
            bits = path.strip("/").split("/")
            gid = bits[1] if len(bits) == 3 else ""
            g = fake._by_id.get(gid)
            time.sleep(fake.media_latency_s)
            fault = fake.media_faults.get(gid)
            if g is None or not bits[2].endswith(".gif"):
                fake._record(FakeRequest("media", {"id": gid}, 404, True))
                self._send(404, b"Not Found", "text/plain")
            elif fault == "500once" and fake._first_media(gid):
                fake._record(FakeRequest("media", {"id": gid}, 500, True))
                self._send(500, b"Internal Server Error", "text/plain")
            elif fault == "badgziponce" and fake._first_media(gid):
                fake._record(FakeRequest("media", {"id": gid}, 200, True))
                self._send(200, b"not gzip", "image/gif", {"Content-Encoding": "gzip"})
            elif fault == "notgif":
                fake._record(FakeRequest("media", {"id": gid}, 200, True))
                self._send(200, b"<!DOCTYPE html><html><body>Not a GIF</body></html>", "image/gif")
            else:
                body = g.data[: len(g.data) // 2] if fault == "truncated" else g.data
                fake._record(FakeRequest("media", {"id": gid}, 200, True))
                self._send(200, body, "image/gif")

    return Handler
