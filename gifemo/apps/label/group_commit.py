"""Group commit: many threads' appends made durable by one commit (one fsync) at a time.

A labelling page's answer is acknowledged only once its event is committed
(:class:`gifemo.apps.label.store.Store`, ``synchronous=FULL``). Committing each answer on its
own would cost one fsync per answer; here the answers that arrive while a commit runs wait for
the next one, which commits all of them together.

The protocol, for a caller that appends under ``lock``::

    with lock:
        store.append(..., commit=False)
        batch = group.batch          # the batch this append belongs to
    group.wait(batch)                # returns once that batch is committed

The first waiter of an uncommitted batch becomes the committer: under ``lock`` (so no append
slips in between) it closes the current batch, opens the next and commits. The others wait on
a condition until a commit covers their batch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class GroupCommit:
    """Batches of appends, each made durable by one call of ``commit``.

    Args:
        commit: commits everything appended so far (``Store.commit``).
        lock: the lock the appends are made under (shared with the caller).

    Attributes:
        batch: the batch an append made now belongs to (read it under ``lock``).
        commits: how many times ``commit`` ran.
    """

    def __init__(self, commit: Callable[[], None], lock: Any) -> None:
        self._commit, self._lock = commit, lock
        self.batch, self.commits = 0, 0
        self._synced, self._committing = -1, False
        self._cond = threading.Condition()

    def wait(self, batch: int) -> None:
        """Return once ``batch`` is committed: at once when a commit covered it already; else
        after committing it (and every later append) here, or after another thread did."""
        with self._cond:
            while self._synced < batch:
                if not self._committing:
                    self._committing = True
                    break
                self._cond.wait()
            else:
                return
        done = -1
        try:
            with self._lock:
                closing = self.batch
                self.batch += 1
                self._commit()
                self.commits += 1
                done = closing
        finally:
            with self._cond:
                self._committing = False
                self._synced = max(self._synced, done)
                self._cond.notify_all()
