"""The active strategy's re-ranking, off the request path.

A :class:`~gifemo.active.reranker.Reranker` (e.g. :class:`~gifemo.active.reranker.ActiveReranker`)
gets the consensus labels so far and each asked emotion's remaining candidates, and returns a
new order of them.
:class:`RerankThread` runs it on one background thread, so that a labeller's answer never
waits for a model: the state asks for an emotion under its lock; the thread takes every emotion
asked so far at once, reads the reranker's inputs under the lock, calls the reranker without
it, and hands the new orders back under the lock. Emotions asked while it runs are taken in
its next round; it ends when none are left.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gifemo.active.reranker import Reranker

log = logging.getLogger(__name__)

Labels = Mapping[str, Mapping[str, bool]]  # emotion -> {gif id: consensus positive?}


class RerankThread:
    """Runs ``reranker`` for the emotions :meth:`request` asks for, on a background thread.

    Args:
        reranker: the :class:`~gifemo.active.reranker.Reranker`.
        lock: the state's lock; :meth:`request` is called holding it.
        inputs: ``emotions → (labels, remaining)``, called under ``lock``.
        swap: ``(emotion, new order or None, the remaining ids it was asked about)``, called
            under ``lock`` for each emotion of a round.
        errors: where a failed round is recorded (the queue then keeps its order).
    """

    def __init__(
        self,
        reranker: Reranker,
        lock: Any,
        inputs: Callable[[list[str]], tuple[Labels, dict[str, list[str]]]],
        swap: Callable[[str, Sequence[str] | None, Sequence[str]], None],
        errors: list[str],
    ) -> None:
        self.reranker, self.lock, self.inputs, self.swap = reranker, lock, inputs, swap
        self.errors = errors
        self._asked: set[str] = set()
        self._thread: threading.Thread | None = None

    def request(self, emotion: str) -> None:
        """Ask for a new order of ``emotion`` (under the lock); starts the thread if none runs."""
        self._asked.add(emotion)
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, daemon=True, name="gifemo-label-rerank"
            )
            self._thread.start()

    def _run(self) -> None:
        try:
            self._rounds()
        finally:  # whatever happens, a later request can start a thread again
            with self.lock:
                self._thread = None

    def _rounds(self) -> None:
        while True:
            with self.lock:
                if not self._asked:
                    return
                emotions = sorted(self._asked)
                self._asked.clear()
                labels, remaining = self.inputs(emotions)
            try:
                new = self.reranker.rerank(labels, remaining)
            except Exception as exc:  # recorded, the queue keeps its order
                log.exception("rerank of %s failed", emotions)
                with self.lock:
                    self.errors.append(f"{emotions}: {exc!r}")
                continue
            with self.lock:
                for e in emotions:
                    self.swap(e, new.get(e), remaining[e])

    def wait(self, timeout: float = 10.0) -> bool:
        """Block until no round is asked for or running; False after ``timeout`` seconds."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                thread = self._thread
            if thread is None:
                return True
            thread.join(timeout=max(0.0, end - time.monotonic()))
        return False
