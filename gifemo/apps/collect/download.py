"""Download one original GIF safely: bounded, verified, atomic.

:func:`download_gif` streams the media URL into ``.<id>.gif.<pid>.part`` beside the target,
stops at ``max_bytes`` (a declared size or ``Content-Length`` over it stops before reading),
and keeps the file only when

1. it starts with a GIF signature (``GIF87a``/``GIF89a``) — Giphy answers some requests with
   an HTML page or a WebP/MP4;
2. its block structure is complete up to the trailer with at least one image
   (:func:`gifemo.data.gif.scan_gif`) — a truncated body fails here;
3. (``verify_decode``) the project's decoder reads it (:func:`gifemo.data.gif.read_gif`).

Then the part file is fsynced and renamed onto ``dest`` (and the folder fsynced): a reader, or
a process killed at any moment, never sees a half-written GIF. The result carries the sha256
and size, or the reason it failed. Transient trouble (timeouts, dropped connections, HTTP 5xx
and 429) is retried ``retries`` times with exponential back-off; anything else fails at once.
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from gifemo.data.gif import GIF_MAGIC, GifDecodeError, read_gif, scan_gif

CHUNK = 1 << 16


@dataclass(frozen=True)
class DownloadResult:
    gid: str
    ok: bool
    sha256: str | None = None
    bytes: int | None = None
    reason: str | None = None


class _Transient(Exception):
    pass


class _Failed(Exception):
    pass


def part_path(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.{os.getpid()}.part")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fetch(http: httpx.Client, url: str, tmp: Path, max_bytes: int) -> tuple[bytes, str]:
    """GET ``url`` into ``tmp`` (fsynced); (body, sha256). Raises _Transient / _Failed."""
    try:
        with http.stream("GET", url) as r:
            if r.status_code == 429 or r.status_code >= 500:
                raise _Transient(f"HTTP {r.status_code}")
            if r.status_code != 200:
                raise _Failed(f"HTTP {r.status_code}")
            length = r.headers.get("content-length", "")
            if length.isdigit() and int(length) > max_bytes:
                raise _Failed(f"Content-Length {length} bytes is over max_bytes={max_bytes}")
            h, body = hashlib.sha256(), bytearray()
            with open(tmp, "wb") as f:
                for chunk in r.iter_bytes(CHUNK):
                    if len(body) + len(chunk) > max_bytes:
                        raise _Failed(f"body is over max_bytes={max_bytes}")
                    body += chunk
                    h.update(chunk)
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
    except httpx.TimeoutException:
        raise _Transient("timed out") from None
    except (httpx.TransportError, httpx.DecodingError) as e:  # dropped connection, short body,
        raise _Transient(f"{type(e).__name__}: {e}") from None  # a body that does not decode
    return bytes(body), h.hexdigest()


def _verify(body: bytes, tmp: Path, verify_decode: bool) -> None:
    if body[:6] not in GIF_MAGIC:
        raise _Failed(f"not a GIF: the body starts with {body[:16]!r}")
    try:
        layout = scan_gif(body, tmp)
    except GifDecodeError as e:
        raise _Failed(f"not a GIF: {e.reason}") from None
    if not layout.complete:
        raise _Failed(
            f"truncated GIF: {len(body)} bytes end before the trailer "
            f"({len(layout.images)} complete images)"
        )
    if not layout.images:
        raise _Failed("GIF without images")
    if verify_decode:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                read_gif(tmp)
        except GifDecodeError as e:
            raise _Failed(f"the decoder refused it: {e.reason}") from None


def download_gif(
    http: httpx.Client,
    gid: str,
    url: str,
    dest: Path,
    *,
    max_bytes: int,
    declared_size: int | None = None,
    verify_decode: bool = True,
    retries: int = 3,
    backoff_s: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> DownloadResult:
    """Download ``url`` (Giphy id ``gid``) to ``dest``; never raises for a bad download."""
    if declared_size is not None and declared_size > max_bytes:
        return DownloadResult(gid, False, reason=f"declared size {declared_size} bytes is over max_bytes={max_bytes}")  # fmt: skip
    tmp = part_path(dest)
    reason = ""
    try:
        for attempt in range(retries + 1):
            try:
                body, sha = _fetch(http, url, tmp, max_bytes)
                _verify(body, tmp, verify_decode)
                os.replace(tmp, dest)
                _fsync_dir(dest.parent)
                return DownloadResult(gid, True, sha256=sha, bytes=len(body))
            except _Transient as e:
                reason = f"{e} (after {attempt + 1} attempts)"
                if attempt < retries:
                    sleep(backoff_s * 2**attempt)
            except _Failed as e:
                return DownloadResult(gid, False, reason=str(e))
        return DownloadResult(gid, False, reason=reason)
    finally:
        tmp.unlink(missing_ok=True)
