"""Giphy's search API as it really is (DESIGN §9), on :mod:`httpx`.

``GET {api_base}/gifs/search?api_key=…&q=…&limit=…&offset=…[&rating=…][&lang=…]`` answers
``{data: [GIF, …], pagination: {total_count, count, offset}, meta: {status, msg,
response_id}}``. Facts this module is built around:

- numbers come as strings (``"width": "480"``) and ``pagination.total_count`` may be absent;
- a GIF's identity is its ``id``: media URLs carry per-response query strings
  (``?cid=…&rid=…&ct=g``), so the same GIF has a different URL in every reply;
- search results carry no tags;
- over the rate limit Giphy answers HTTP 429 with ``{"meta": {"status": 429, …}}`` or a bare
  ``{"message": "…"}``; a bad key is 401/403.

The key is a query parameter, so it is part of every request URL. Nothing here puts a URL
into a message: errors name the query and offset only, and httpx's own request log (INFO on
the ``httpx`` logger, with the full URL) is switched off by the collector.
"""

from __future__ import annotations

import email.utils
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

import gifemo

MAX_QUERY_CHARS = 50  # Giphy's limit on q
MAX_LIMIT = 50  # beta keys
MAX_OFFSET = 4999


class GiphyError(Exception):
    """A search call that failed; the message names the query and offset, never the URL/key."""

    retryable = False

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(GiphyError):
    """HTTP 429 (either reply shape) or ``meta.status`` 429: wait and retry."""

    retryable = True


class TransientError(GiphyError):
    """5xx, a timeout, a dropped connection or an unreadable reply: retry with back-off."""

    retryable = True


class AuthError(GiphyError):
    """401/403: the API key is missing, wrong or revoked; retrying cannot help."""


def _int(x: Any) -> int | None:
    """Giphy's numbers are strings; "" / None / junk → None."""
    if isinstance(x, bool):
        return None
    if isinstance(x, int):
        return x
    if isinstance(x, str) and x.strip().lstrip("-").isdigit():
        return int(x.strip())
    return None


def _str(x: Any) -> str:
    return x if isinstance(x, str) else ""


def _reply_text(body: Any) -> str:
    """The message of an error reply: a bare ``{"message"}`` or ``meta.msg`` (≤ 200 chars)."""
    if not isinstance(body, dict):
        return ""
    meta = body.get("meta")
    text = _str(body.get("message")) or (_str(meta.get("msg")) if isinstance(meta, dict) else "")
    return text[:200]


def strip_query(url: str) -> str:
    """``url`` without its query string and fragment (Giphy's ``?cid=…&rid=…`` vary per reply)."""
    p = urlsplit(url)
    return urlunsplit((p.scheme, p.netloc, p.path, "", ""))


@dataclass(frozen=True)
class Hit:
    """One GIF of a search reply (the fields the collector keeps)."""

    id: str
    slug: str
    title: str
    rating: str
    page_url: str  # giphy.com page of the GIF
    username: str
    source: str  # where the GIF came from, as Giphy records it
    import_datetime: str
    media_url: str  # images.original.url, query string included (as served)
    width: int | None
    height: int | None
    size: int | None  # declared bytes of the original GIF
    frames: int | None


@dataclass(frozen=True)
class SearchPage:
    hits: tuple[Hit, ...]
    count: int  # pagination.count (results in this reply, before dropping unusable ones)
    offset: int
    total_count: int | None  # None when Giphy left it out
    response_id: str
    skipped: int  # results without an id or an original URL


def parse_hit(obj: Any) -> Hit | None:
    """A GIF object → :class:`Hit`; None when it has no id or no ``images.original.url``."""
    if not isinstance(obj, dict):
        return None
    gid = obj.get("id")
    images = obj.get("images")
    orig = images.get("original") if isinstance(images, dict) else None
    url = orig.get("url") if isinstance(orig, dict) else None
    if not isinstance(gid, str) or not gid.strip() or not isinstance(url, str) or not url:
        return None
    assert isinstance(orig, dict)
    return Hit(
        id=gid.strip(),
        slug=_str(obj.get("slug")),
        title=_str(obj.get("title")),
        rating=_str(obj.get("rating")),
        page_url=_str(obj.get("url")),
        username=_str(obj.get("username")),
        source=_str(obj.get("source")),
        import_datetime=_str(obj.get("import_datetime")),
        media_url=url,
        width=_int(orig.get("width")),
        height=_int(orig.get("height")),
        size=_int(orig.get("size")),
        frames=_int(orig.get("frames")),
    )


def parse_search(body: Any, *, where: str) -> SearchPage:
    """A decoded search reply → :class:`SearchPage`; :class:`TransientError` if malformed."""
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise TransientError(f"{where}: reply has no 'data' list")
    meta: dict[str, Any] = body["meta"] if isinstance(body.get("meta"), dict) else {}
    status = _int(meta.get("status"))
    if status == 429:
        raise RateLimited(f"{where}: rate limited (meta.status 429: {_str(meta.get('msg'))})")
    if status is not None and status >= 400:
        raise GiphyError(f"{where}: meta.status {status}: {_str(meta.get('msg'))}")
    pag: dict[str, Any] = body["pagination"] if isinstance(body.get("pagination"), dict) else {}
    data = body["data"]
    hits = tuple(h for h in (parse_hit(o) for o in data) if h is not None)
    count = _int(pag.get("count"))
    return SearchPage(
        hits=hits,
        count=len(data) if count is None else count,
        offset=_int(pag.get("offset")) or 0,
        total_count=_int(pag.get("total_count")),
        response_id=_str(meta.get("response_id")),
        skipped=len(data) - len(hits),
    )


def retry_after_s(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date); None if absent/unreadable."""
    if not value:
        return None
    v = value.strip()
    if v.isdigit():
        return float(v)
    try:
        when = email.utils.parsedate_to_datetime(v)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class GiphyClient:
    """``search(q, limit=, offset=)`` → :class:`SearchPage`, or a :class:`GiphyError`.

    One call = one HTTP request (retries and rate limiting are the caller's). ``transport``
    is for tests (an :class:`httpx.MockTransport`); the real thing talks to ``api_base``.
    """

    def __init__(
        self,
        api_base: str,
        api_key: str,
        *,
        timeout_s: float = 30.0,
        rating: str | None = None,
        lang: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not api_key:
            raise AuthError("no Giphy API key: set the environment variable GIPHY_API_KEY")
        self.api_base = api_base.rstrip("/")
        self._key = api_key
        self._params: dict[str, str] = {k: v for k, v in (("rating", rating), ("lang", lang)) if v}
        self.http = httpx.Client(
            timeout=timeout_s,
            follow_redirects=True,
            headers={"User-Agent": f"gifemo/{gifemo.__version__} (+collect)"},
            transport=transport,
        )
        self.timeout_s = timeout_s

    def close(self) -> None:
        self.http.close()

    def _redact(self, text: str) -> str:
        return text.replace(self._key, "***")

    def search(self, q: str, *, limit: int, offset: int) -> SearchPage:
        where = f"search {q!r} offset {offset}"
        if len(q) > MAX_QUERY_CHARS:
            raise GiphyError(f"{where}: q has {len(q)} characters, Giphy allows {MAX_QUERY_CHARS}")
        params: dict[str, str | int] = {
            "api_key": self._key,
            "q": q,
            "limit": limit,
            "offset": offset,
            **self._params,
        }
        try:
            r = self.http.get(f"{self.api_base}/gifs/search", params=params)
        except httpx.TimeoutException:
            raise TransientError(f"{where}: no reply within {self.timeout_s:g} s") from None
        except httpx.TransportError as e:  # the message of a transport error has no URL
            msg = self._redact(str(e)) or type(e).__name__
            raise TransientError(f"{where}: {type(e).__name__}: {msg}") from None
        except httpx.HTTPError as e:  # a body that does not decode, too many redirects: retried
            msg = self._redact(str(e)) or type(e).__name__
            raise TransientError(f"{where}: {type(e).__name__}: {msg}") from None
        retry = retry_after_s(r.headers.get("retry-after"))
        try:
            body: Any = r.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        text = self._redact(_reply_text(body))
        if r.status_code == 429:
            raise RateLimited(f"{where}: HTTP 429 {text}".rstrip(), retry_after=retry)
        if r.status_code >= 500:
            raise TransientError(f"{where}: HTTP {r.status_code}", retry_after=retry)
        if r.status_code in (401, 403):
            raise AuthError(
                f"{where}: HTTP {r.status_code}: Giphy refused the API key (check GIPHY_API_KEY)"
            )
        if r.status_code != 200:
            raise GiphyError(f"{where}: HTTP {r.status_code} {text}".rstrip())
        if body is None:
            raise TransientError(f"{where}: reply is not JSON")
        try:
            return parse_search(body, where=where)
        except GiphyError as e:  # meta.msg is Giphy's text: it may quote the key
            e.args = (self._redact(str(e)),)
            if isinstance(e, RateLimited):
                e.retry_after = retry
            raise
