"""Collect candidate GIFs from Giphy into a dataset folder (paper §3.2, the first half of Fig. 4).

:func:`collect` searches every query page by page (``limit`` ≤ 50, ``offset`` ≤ 4999, at most
``max_per_query`` results), records each reply in the folder's SQLite state
(:mod:`gifemo.apps.collect.state`), downloads every new candidate's original GIF in a few
threads while the search waits for the rate limit (:mod:`.download`, :mod:`.ratelimit`), and
finally writes the dataset (:mod:`.output`):

``DIR/metadata.jsonl``
    one unlabelled row per unique file (byte-identical GIFs under several Giphy ids are one
    candidate), in search order: ``id`` (the first id that found it), ``file``
    (``gifs/<id>.gif``), ``tags`` (the search tags that found it: search results carry no
    Giphy tags; ``tags_file`` adds real ones), and provenance: ``giphy_ids`` (every id with
    these bytes), ``title``, ``slug``, ``rating``, ``queries`` (the search terms that found
    it), ``found_for`` (the emotions whose tags those were; the per-emotion candidate set of
    emotion e is the rows whose ``found_for`` holds e), ``source_url`` (the original's URL
    without Giphy's per-reply ``?cid=…`` query string), ``giphy_url`` (its page), ``sha256``,
    ``bytes``, ``width``, ``height``, ``frames``.
``DIR/failures.jsonl``
    downloads that failed (id, URL, reason, attempts) and searches given up in this run; all
    are retried by the next run of the same command.
``DIR/gifs/<id>.gif``, ``DIR/collect.sqlite``
    the files, and the state that makes ``kill -9`` + rerun continue where it stopped.

The API key is an argument (``collect.py`` takes it from ``GIPHY_API_KEY``); it is redacted
from every log record while :func:`collect` runs and never written anywhere.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import httpx
from tqdm.auto import tqdm

from gifemo.apps.collect.download import DownloadResult, download_gif
from gifemo.apps.collect.giphy import (
    MAX_LIMIT,
    MAX_OFFSET,
    AuthError,
    GiphyClient,
    GiphyError,
    SearchPage,
)
from gifemo.apps.collect.output import read_tags_file, write_dataset
from gifemo.apps.collect.queries import merge_queries, queries_from_run
from gifemo.apps.collect.ratelimit import WINDOW_S, RateLimiter
from gifemo.apps.collect.state import State

log = logging.getLogger("gifemo.collect")


@dataclass
class CollectOptions:
    """Every option of a collection; documented in ``conf/collect/default.yaml``."""

    out_dir: str
    api_base: str = "https://api.giphy.com/v1"
    queries: list[str] = field(default_factory=list)
    from_run: str | None = None
    n_tags: int = 10
    emotions: list[str] | None = None
    max_per_query: int = 5000
    page_size: int = MAX_LIMIT
    max_offset: int = MAX_OFFSET
    rating: str | None = None
    lang: str | None = "en"
    calls_per_hour: int = 100
    burst: int = 10
    max_retries: int = 6
    backoff_s: float = 2.0
    max_backoff_s: float = 900.0
    timeout_s: float = 30.0
    max_bytes: int = 20 * 2**20
    parallel_downloads: int = 4
    download_retries: int = 3
    verify_decode: bool = True
    tags_file: str | None = None
    progress: bool = True

    @classmethod
    def from_mapping(cls, m: dict[str, Any]) -> CollectOptions:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(m) - names)
        if unknown:
            raise ValueError(f"unknown collect option(s) {unknown}; expected {sorted(names)}")
        return cls(**m)

    def check(self) -> None:
        if not self.out_dir:
            raise ValueError("collect.out_dir is required")
        if not 1 <= self.page_size <= MAX_LIMIT:
            raise ValueError(f"collect.page_size must be in 1..{MAX_LIMIT} (Giphy's limit cap), got {self.page_size}")  # fmt: skip
        if not 0 <= self.max_offset <= MAX_OFFSET:
            raise ValueError(
                f"collect.max_offset must be in 0..{MAX_OFFSET}, got {self.max_offset}"
            )
        for k in ("max_per_query", "max_bytes", "parallel_downloads", "calls_per_hour", "burst"):
            if getattr(self, k) < 1:
                raise ValueError(f"collect.{k} must be >= 1, got {getattr(self, k)!r}")
        for k in ("max_retries", "download_retries"):
            if getattr(self, k) < 0:
                raise ValueError(f"collect.{k} must be >= 0, got {getattr(self, k)!r}")
        for k in ("queries", "emotions"):  # a bare word on Hydra's command line is a string
            v = getattr(self, k)
            if isinstance(v, str) or (v is not None and not isinstance(v, list | tuple)):
                raise ValueError(f"collect.{k} must be a list, got {v!r}: write collect.{k}=[{v}]")


@dataclass
class CollectReport:
    out_dir: Path
    queries: int
    pages_fetched: int  # this run
    candidates: int  # Giphy ids found (all runs)
    rows: int  # unique files in metadata.jsonl
    downloaded: int
    failed: int
    search_failures: list[dict[str, Any]]

    def summary(self) -> str:
        return (
            f"{self.out_dir}: {self.queries} queries, {self.pages_fetched} pages fetched now, "
            f"{self.candidates} Giphy ids, {self.rows} unique GIFs in metadata.jsonl, "
            f"{self.failed} failed downloads, {len(self.search_failures)} searches to retry "
            "(rerun the same command to retry). Powered by GIPHY."
        )


class _Redact(logging.Filter):
    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if self.secret in msg:
            record.msg, record.args = msg.replace(self.secret, "***"), None
        return True


@contextmanager
def _quiet_and_redacted(secret: str) -> Iterator[None]:
    """httpx/httpcore request logs off (they print URLs, key included); the key redacted from
    every record reaching the root handlers (Hydra's console and log file)."""
    noisy = [logging.getLogger(n) for n in ("httpx", "httpcore")]
    levels = [lg.level for lg in noisy]
    for lg in noisy:
        lg.setLevel(logging.WARNING)
    f = _Redact(secret)
    handlers = list(logging.getLogger().handlers)
    for h in handlers:
        h.addFilter(f)
    try:
        yield
    finally:
        for h in handlers:
            h.removeFilter(f)
        for lg, lv in zip(noisy, levels, strict=True):
            lg.setLevel(lv)


class Collector:
    """One run of a collection (see :func:`collect`)."""

    def __init__(
        self,
        opts: CollectOptions,
        *,
        api_key: str,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
        emotion_queries: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        opts.check()
        self.opts, self.clock, self.sleep = opts, clock, sleep
        by_emotion = dict(emotion_queries or {})
        if opts.from_run:
            for q, emos in queries_from_run(
                opts.from_run, n_tags=opts.n_tags, emotions=opts.emotions
            ).items():
                by_emotion[q] = [*by_emotion.get(q, []), *emos]
        self.queries = merge_queries(opts.queries, by_emotion)
        if not self.queries:
            raise ValueError(
                "nothing to search: give collect.queries=[...] or collect.from_run=<run dir>"
            )
        self.extra_tags = read_tags_file(opts.tags_file) if opts.tags_file else {}
        self.api_key = api_key
        self.transport = transport
        self.out = Path(opts.out_dir)
        self.gifs = self.out / "gifs"
        self.pages_fetched = 0
        self.search_failures: list[dict[str, Any]] = []
        self._pending: deque[tuple[str, str, int | None]] = deque()
        self._attempted: set[str] = set()
        self._inflight: dict[Future[DownloadResult], str] = {}

    # -- search ----------------------------------------------------------------------------

    def _wait(self, seconds: float) -> None:
        """Wait ``seconds`` of ``clock`` time, downloading meanwhile."""
        deadline = self.clock() + seconds
        while (left := deadline - self.clock()) > 0:
            self._pump(0.0)
            if self._inflight:
                self._pump(min(left, 0.25))
            else:
                self.sleep(left)

    def _search(self, q: str, limit: int, offset: int) -> SearchPage | None:
        o = self.opts
        for attempt in range(o.max_retries + 1):
            t = self.limiter.acquire(wait=self._wait)
            self.state.record_call(t)
            try:
                return self.client.search(q, limit=limit, offset=offset)
            except AuthError:
                raise
            except GiphyError as e:
                if not e.retryable or attempt == o.max_retries:
                    log.warning("giving up %s for this run", e)
                    self.search_failures.append(
                        {"kind": "search", "query": q, "offset": offset, "reason": str(e)}
                    )
                    return None
                delay = e.retry_after if e.retry_after is not None else o.backoff_s * 2**attempt
                delay = min(delay, o.max_backoff_s)
                log.info("%s; retrying in %.1f s (attempt %d)", e, delay, attempt + 2)
                self._wait(delay)
        return None

    def _estimate_pages(self, qids: list[tuple[int, str]]) -> tuple[int, int]:
        """(pages still expected — 1 for a query never searched, queries finished)."""
        o, left, done = self.opts, 0, 0
        reach = o.max_offset + o.page_size
        for qid, _ in qids:
            nxt, exhausted, total = self.state.progress(qid)
            cap = min(o.max_per_query, reach, total if total is not None else reach)
            if exhausted or nxt >= cap or nxt > o.max_offset:
                done += 1
            else:
                left += math.ceil((cap - nxt) / o.page_size) if total is not None or nxt else 1
        return left, done

    def _search_all(self, qids: list[tuple[int, str]]) -> None:
        o = self.opts
        left, done = self._estimate_pages(qids)
        bar = tqdm(
            total=left,
            desc="search",
            unit="page",
            disable=not o.progress,
            dynamic_ncols=True,
            position=0,
        )
        for qid, q in qids:
            nxt, exhausted, _ = self.state.progress(qid)
            while not exhausted and nxt < o.max_per_query and nxt <= o.max_offset:
                limit = min(o.page_size, o.max_per_query - nxt)
                page = self._search(q, limit, nxt)
                if page is None:
                    break
                new = self.state.record_page(qid, nxt, limit, page, self.clock())
                self.pages_fetched += 1
                self._pending.extend((h.id, h.media_url, h.size) for h in new)
                self.dl_bar.total = (self.dl_bar.total or 0) + len(new)
                self.dl_bar.refresh()
                nxt, exhausted, _ = self.state.progress(qid)
                left, done = self._estimate_pages(qids)
                bar.total = bar.n + 1 + left
                bar.update(1)
                bar.set_postfix(queries=f"{done}/{len(qids)}", candidates=self.state.counts()["candidates"], refresh=False)  # fmt: skip
                self._pump(0.0)
        bar.close()

    # -- downloads -------------------------------------------------------------------------

    def _download(self, gid: str, url: str, size: int | None) -> DownloadResult:
        o = self.opts
        try:
            return download_gif(
                self.media, gid, url, self.gifs / f"{gid}.gif", max_bytes=o.max_bytes,
                declared_size=size, verify_decode=o.verify_decode, retries=o.download_retries,
            )  # fmt: skip
        except Exception as e:
            return DownloadResult(gid, False, reason=f"{type(e).__name__}: {e}")

    def _pump(self, timeout: float) -> None:
        """Record finished downloads (waiting up to ``timeout`` s for one), start new ones."""
        if self._inflight and timeout >= 0:
            done, _ = wait(list(self._inflight), timeout=timeout, return_when=FIRST_COMPLETED)
            for fut in done:
                self._inflight.pop(fut)
                r = fut.result()
                self.state.record_download(
                    r.gid, ok=r.ok, sha256=r.sha256, size=r.bytes, reason=r.reason
                )
                if not r.ok:
                    log.info("download %s failed: %s", r.gid, r.reason)
                self.dl_bar.update(1)
        while self._pending and len(self._inflight) < self.opts.parallel_downloads:
            gid, url, size = self._pending.popleft()
            if gid in self._attempted:
                continue
            self._attempted.add(gid)
            self._inflight[self.pool.submit(self._download, gid, url, size)] = gid

    # -- output ----------------------------------------------------------------------------

    # -- the run ---------------------------------------------------------------------------

    def run(self) -> CollectReport:
        o = self.opts
        self.gifs.mkdir(parents=True, exist_ok=True)
        self.state = State(self.out)
        try:
            for stale in self.gifs.glob(".*.part"):  # a killed run's half-written downloads
                stale.unlink()
            qids = self.state.add_queries(self.queries)
            self.limiter = RateLimiter(
                o.calls_per_hour, burst=o.burst, clock=self.clock, sleep=self.sleep,
                history=self.state.call_times(self.clock() - WINDOW_S),
            )  # fmt: skip
            self._pending.extend(self.state.to_download())
            with (
                _quiet_and_redacted(self.api_key),
                ThreadPoolExecutor(o.parallel_downloads, thread_name_prefix="gif-dl") as self.pool,
                httpx.Client(timeout=o.timeout_s, follow_redirects=True, transport=self.transport) as self.media,
            ):  # fmt: skip
                self.client = GiphyClient(
                    o.api_base, self.api_key, timeout_s=o.timeout_s, rating=o.rating, lang=o.lang,
                    transport=self.transport,
                )  # fmt: skip
                self.dl_bar = tqdm(total=len(self._pending), desc="download", unit="gif", disable=not o.progress, dynamic_ncols=True, position=1)  # fmt: skip
                try:
                    self._pump(0.0)
                    self._search_all(qids)
                    while self._pending or self._inflight:
                        self._pump(1.0)
                finally:
                    self.client.close()
                    self.dl_bar.close()
            rows = write_dataset(
                self.state,
                self.out,
                extra_tags=self.extra_tags,
                search_failures=self.search_failures,
            )
            c = self.state.counts()
            return CollectReport(self.out, c["queries"], self.pages_fetched, c["candidates"], rows,
                                 c["downloaded"], c["failed"], self.search_failures)  # fmt: skip
        finally:
            self.state.close()


def collect(
    opts: CollectOptions,
    *,
    api_key: str,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    transport: httpx.BaseTransport | None = None,
    emotion_queries: Mapping[str, Sequence[str]] | None = None,
) -> CollectReport:
    """Run (or continue) the collection described by ``opts`` into ``opts.out_dir``.

    ``emotion_queries``: ``{query: emotions}`` searched besides ``opts.queries`` and the tags of
    ``opts.from_run`` (the offline demo passes Table 1's tags). ``clock``/``sleep`` drive the
    rate limit and back-off (tests inject a fake clock); ``transport`` replaces httpx's.
    """
    return Collector(
        opts, api_key=api_key, clock=clock, sleep=sleep, transport=transport,
        emotion_queries=emotion_queries,
    ).run()  # fmt: skip
