"""The queue, consensus and undo as plain functions over the decision log (no HTTP here).

:class:`LabelState` replays ``events`` (see :mod:`gifemo.apps.label.store`) into memory and
serves labellers. The rules:

- *Queue.* Each emotion's candidates are served in ranked order. An item (emotion, GIF) goes to
  exactly ``LABELLERS_PER_GIF`` = 2 labellers: it is offered to a labeller only while fewer
  than two others decided it or hold it (a *lease*: the items a labeller was served and has not
  answered yet, kept ``lease_seconds``). A labeller never gets an item they answered or
  skipped. A skip passes the item on to somebody else.
- *Undo* is a new ``undo`` event cancelling the labeller's latest live ``label``/``skip``; the
  item is served to them again first, with their previous marks.
- *Consensus* of an item with two answers: both yes → positive, both no → negative; a
  disagreement is dropped (policy ``drop``, the paper) or waits for the admin's ``adjudicate``
  event (policy ``adjudicate``) — :class:`~gifemo.apps.label.items.Item`. An emotion is *done*
  at ``n_p`` consensus positives or when all its candidates have two answers; a done emotion is
  not served any more.
- *Durability.* An answer, undo or adjudication returns only once its event is committed; the
  answers that arrive together share one commit (:mod:`gifemo.apps.label.group_commit`).
- *Active strategy.* Every ``rerank_every`` new consensus outcomes of an emotion (or after
  ``rerank_seconds`` with at least one), a background thread asks the Reranker for a new order
  of the emotion's *remaining* candidates (no answer, no lease) and swaps it in atomically under
  the lock (items already started keep their places, ahead of the remaining ones); the page is
  never blocked (:mod:`gifemo.apps.label.rerank`). Each answer records the strategy and the
  emotion's ranking version its item was served from.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from gifemo.active.reranker import Reranker
from gifemo.apps.label.group_commit import GroupCommit
from gifemo.apps.label.items import Item, LabelError, Lease
from gifemo.apps.label.project import LABELLERS_PER_GIF, ProjectConfig
from gifemo.apps.label.rerank import Labels, RerankThread
from gifemo.apps.label.store import Event, Store
from gifemo.emotions import EMOTIONS

log = logging.getLogger(__name__)


class LabelState:
    """In-memory view of a project, rebuilt from its log; every method takes the lock."""

    def __init__(
        self,
        store: Store,
        cfg: ProjectConfig,
        *,
        reranker: Reranker | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store, self.cfg, self.reranker, self.clock = store, cfg, reranker, clock
        self.lock = threading.RLock()
        self.gifs = store.gifs()
        cands = store.candidates()
        self.emotions = [e for e in EMOTIONS if e in cands]
        self.order: dict[str, list[str]] = {e: [g for g, _ in cands[e]] for e in self.emotions}
        self.version = dict.fromkeys(self.emotions, 0)
        for e, (v, ids) in store.latest_rankings().items():
            if e in self.order and sorted(ids) == sorted(self.order[e]):
                self.order[e], self.version[e] = list(ids), v
        self.pos = {e: {g: i for i, g in enumerate(self.order[e])} for e in self.emotions}
        # Items are created when first served or answered (850,000 candidates at paper scale).
        self.items: dict[tuple[str, str], Item] = {}
        self.head = dict.fromkeys(self.emotions, 0)
        self.positives: Counter[str] = Counter()
        self.resolved: Counter[str] = Counter()
        self.complete: Counter[str] = Counter()
        self.disagreed: Counter[str] = Counter()
        self.history: dict[str, list[int]] = {}
        self.user_leases: dict[str, set[tuple[str, str]]] = {}
        self.by_seq: dict[int, Event] = {}
        self.by_request: dict[str, Event] = {}
        self.new_resolved: Counter[str] = Counter()
        self.last_rerank = dict.fromkeys(self.emotions, clock())
        self.rerank_count = 0
        self.rerank_errors: list[str] = []
        self.reranks = (
            None
            if reranker is None
            else RerankThread(
                reranker, self.lock, self._rerank_inputs, self._swap, self.rerank_errors
            )
        )
        self.durable = GroupCommit(store.commit, self.lock)  # acknowledged = committed
        for ev in store.events():
            self._apply(ev)
        self.new_resolved.clear()

    # -- replay -------------------------------------------------------------------------------

    def _touch(self, item: Item, change: Callable[[], None]) -> None:
        before = (item.final(self.cfg.policy), item.complete, item.status() == "disagreed")
        change()
        after = (item.final(self.cfg.policy), item.complete, item.status() == "disagreed")
        e = item.emotion
        self.disagreed[e] += after[2] - before[2]
        self.positives[e] += (after[0] is True) - (before[0] is True)
        self.resolved[e] += (after[0] is not None) - (before[0] is not None)
        self.complete[e] += after[1] - before[1]
        if before[0] is None and after[0] is not None:
            self.new_resolved[e] += 1

    def _item(self, emotion: str | None, gif_id: str | None) -> Item:
        if emotion not in self.pos or gif_id not in self.pos[emotion]:
            raise LabelError(404, f"{gif_id!r} is not a candidate for {emotion!r}")
        key = (emotion, gif_id)
        item = self.items.get(key)
        if item is None:
            item = self.items[key] = Item(emotion, gif_id)
        return item

    def _touched(self, emotion: str) -> list[Item]:
        """The items of ``emotion`` that were ever served or answered, in queue order."""
        pos = self.pos[emotion]
        return sorted(
            (it for it in self.items.values() if it.emotion == emotion),
            key=lambda it: pos[it.gif_id],
        )

    def _apply(self, ev: Event) -> None:
        self.by_seq[ev.seq] = ev
        if ev.request_id:
            self.by_request[ev.request_id] = ev
        if ev.kind == "undo":
            target = self.by_seq[ev.target]  # type: ignore[index]
            item = self._item(target.emotion, target.gif_id)
            stack = self.history.get(ev.user, [])
            if stack and stack[-1] == target.seq:
                stack.pop()

            def cancel() -> None:
                if target.kind == "label" and item.decisions.get(ev.user) is target:
                    del item.decisions[ev.user]
                item.skipped.discard(ev.user) if target.kind == "skip" else None

            self._touch(item, cancel)
            return
        item = self._item(ev.emotion, ev.gif_id)
        if ev.kind == "adjudicate":
            self._touch(item, lambda: setattr(item, "adjudication", ev))
            return
        self.history.setdefault(ev.user, []).append(ev.seq)
        item.leases.pop(ev.user, None)
        self.user_leases.get(ev.user, set()).discard((item.emotion, item.gif_id))
        if ev.kind == "label":
            self._touch(item, lambda: item.decisions.__setitem__(ev.user, ev))
        else:
            item.skipped.add(ev.user)

    # -- serving ------------------------------------------------------------------------------

    def done(self, emotion: str) -> bool:
        return self.positives[emotion] >= self.cfg.n_p or self.complete[emotion] >= len(
            self.order[emotion]
        )

    def _taken(self, item: Item, user: str, now: float) -> int:
        held = sum(1 for u, le in item.leases.items() if u != user and le.expires > now)
        return len(item.decisions) + held

    def _seen(self, item: Item, user: str) -> bool:
        return user in item.decisions or user in item.skipped

    def item_json(self, item: Item, user: str | None = None) -> dict[str, Any]:
        g = self.gifs[item.gif_id]
        lease = item.leases.get(user or "")
        return {
            "emotion": item.emotion,
            "gif_id": item.gif_id,
            "title": g["title"],
            "tags": g["tags"],
            "url": f"/gif/{item.gif_id}",
            "position": self.pos[item.emotion][item.gif_id] + 1,
            "ranking_version": lease.version if lease else self.version[item.emotion],
        }

    def _lease(self, item: Item, user: str, lease: Lease) -> None:
        item.leases[user] = lease
        self.user_leases.setdefault(user, set()).add((item.emotion, item.gif_id))

    def _leased(self, user: str, emotion: str | None, now: float) -> list[Item]:
        out = []
        keys = self.user_leases.get(user, set())
        for key in list(keys):
            it = self.items[key]
            le = it.leases.get(user)
            if le is None or le.expires <= now or self._seen(it, user):
                it.leases.pop(user, None)
                keys.discard(key)
            elif (emotion is None or it.emotion == emotion) and (
                le.priority or not self.done(it.emotion)
            ):
                out.append(it)
        out.sort(
            key=lambda it: (
                -it.leases[user].priority,
                it.leases[user].served,
                self.pos[it.emotion][it.gif_id],
            )
        )
        return out

    def next_items(self, user: str, emotion: str | None = None, n: int = 3) -> list[dict[str, Any]]:
        """Up to ``n`` items for ``user`` (leased to them): the current one first, then the ones
        the page preloads. ``emotion`` None: the emotion of their open items, else the first
        emotion (in EMOTIONS order) that has work for them."""
        if emotion is not None and emotion not in self.order:
            raise LabelError(404, f"no candidates for emotion {emotion!r}")
        n = max(1, min(int(n), 20))
        with self.lock:
            now = self.clock()
            held = self._leased(user, emotion, now)
            if held and emotion is None:
                emotion = held[0].emotion
                held = [it for it in held if it.emotion == emotion]
            out = held[:n]
            for e in [emotion] if emotion else self.emotions:
                if len(out) >= n:
                    break
                if self.done(e):
                    continue
                order = self.order[e]
                while self.head[e] < len(order):
                    first = self.items.get((e, order[self.head[e]]))
                    if first is None or not first.complete:
                        break
                    self.head[e] += 1
                for g in order[self.head[e] :]:
                    if len(out) >= n:
                        break
                    it = self._item(e, g)
                    if it in out or self._seen(it, user):
                        continue
                    if self._taken(it, user, now) >= LABELLERS_PER_GIF:
                        continue
                    self._lease(
                        it, user, Lease(now + self.cfg.lease_seconds, self.version[e], 0, now)
                    )
                    out.append(it)
                if out:
                    break
            return [self.item_json(it, user) for it in out]

    def decide(
        self,
        user: str,
        emotion: str,
        gif_id: str,
        answer: bool | None,
        *,
        others: Iterable[str] = (),
        cartoon: bool | None = None,
        multi_scene: bool | None = None,
        request_id: str | None = None,
    ) -> tuple[Event, bool]:
        """Record ``user``'s answer (``None`` = skip); committed before this returns.
        ``(event, created)``: a repeated ``request_id`` returns the first event, not a copy."""
        others_t = tuple(sorted({str(o) for o in others} - {emotion}))
        bad = [o for o in others_t if o not in EMOTIONS]
        if bad:
            raise LabelError(400, f"unknown emotion {bad[0]!r} in others")
        with self.lock:
            if request_id and request_id in self.by_request:
                old = self.by_request[request_id]
                if old.user != user:
                    raise LabelError(409, "request_id already used")
                result, gen = (old, False), self.durable.batch
            else:
                result, gen = (
                    self._decide(
                        user, emotion, gif_id, answer, others_t, cartoon, multi_scene, request_id
                    ),
                    self.durable.batch,
                )
        self.durable.wait(gen)
        return result

    def _decide(
        self,
        user: str,
        emotion: str,
        gif_id: str,
        answer: bool | None,
        others_t: tuple[str, ...],
        cartoon: bool | None,
        multi_scene: bool | None,
        request_id: str | None,
    ) -> tuple[Event, bool]:
        item = self._item(emotion, gif_id)
        if self._seen(item, user):
            raise LabelError(409, f"you already answered {gif_id!r} for {emotion} (undo first)")
        now = self.clock()
        lease = item.leases.get(user)
        if lease is not None and lease.expires <= now:  # expired: no claim on a place any more
            lease = None
        if answer is not None and (
            len(item.decisions) >= LABELLERS_PER_GIF
            or (lease is None and self._taken(item, user, now) >= LABELLERS_PER_GIF)
        ):
            raise LabelError(409, f"{gif_id!r} already has two labellers for {emotion}")
        ev = self.store.append(
            user=user,
            kind="label" if answer is not None else "skip",
            emotion=emotion,
            gif_id=gif_id,
            answer=answer,
            others=others_t if answer is not None else (),
            cartoon=cartoon if answer is not None else None,
            multi_scene=multi_scene if answer is not None else None,
            strategy=self.cfg.strategy,
            ranking_version=lease.version if lease else self.version[emotion],
            request_id=request_id,
            commit=False,
        )
        self._apply(ev)
        self._maybe_rerank(emotion)
        return ev, True

    def undo(self, user: str, request_id: str | None = None) -> Event | None:
        """Cancel ``user``'s latest live answer or skip; returns the cancelled event (None when
        there is nothing to undo). The item is leased back to the user, first in their queue."""
        with self.lock:
            gen = self.durable.batch
            if request_id and request_id in self.by_request:
                old = self.by_request[request_id]
                if old.user != user:
                    raise LabelError(409, "request_id already used")
                target = self.by_seq[old.target] if old.target else None  # type: ignore[index]
            else:
                target = self._undo(user, request_id)
        self.durable.wait(gen)
        return target

    def _undo(self, user: str, request_id: str | None) -> Event | None:
        stack = self.history.get(user) or []
        if not stack:
            return None
        target = self.by_seq[stack[-1]]
        ev = self.store.append(
            user=user,
            kind="undo",
            emotion=target.emotion,
            gif_id=target.gif_id,
            target=target.seq,
            request_id=request_id,
            commit=False,
        )
        self._apply(ev)
        item = self._item(target.emotion, target.gif_id)
        e = item.emotion  # the item may lie behind the queue head again: serve it from there
        self.head[e] = min(self.head[e], self.pos[e][item.gif_id])
        now = self.clock()
        version = target.ranking_version or self.version[item.emotion]
        self._lease(item, user, Lease(now + self.cfg.lease_seconds, version, 1, now))
        return target

    def adjudicate(self, admin: str, emotion: str, gif_id: str, answer: bool) -> Event:
        """The adjudicator's label of a disagreement (policy ``adjudicate``)."""
        with self.lock:
            item = self._item(emotion, gif_id)
            if self.cfg.policy != "adjudicate":
                raise LabelError(409, "the project's policy is 'drop': disagreements are dropped")
            if item.status() not in ("disagreed", "adjudicated"):
                raise LabelError(409, f"{gif_id!r} is not a disagreement for {emotion}")
            ev = self.store.append(
                user=admin,
                kind="adjudicate",
                emotion=emotion,
                gif_id=gif_id,
                answer=bool(answer),
                commit=False,
            )
            self._apply(ev)
            self._maybe_rerank(emotion)
            gen = self.durable.batch
        self.durable.wait(gen)
        return ev

    # -- views --------------------------------------------------------------------------------

    def user_events(self, user: str) -> list[Event]:
        """The user's own log (answers, skips, undos), oldest first."""
        with self.lock:
            return [ev for ev in self.by_seq.values() if ev.user == user]

    def progress(self) -> list[dict[str, Any]]:
        with self.lock:
            return [
                {
                    "emotion": e,
                    "candidates": len(self.order[e]),
                    "complete": self.complete[e],
                    "positives": self.positives[e],
                    "n_p": self.cfg.n_p,
                    "disagreements": self.disagreed[e],
                    "done": self.done(e),
                    "ranking_version": self.version[e],
                }
                for e in self.emotions
            ]

    def disagreements(self) -> list[dict[str, Any]]:
        with self.lock:
            out = []
            for e in self.emotions:
                for it in self._touched(e):
                    g = it.gif_id
                    if it.status() in ("disagreed", "adjudicated"):
                        out.append(
                            {
                                "emotion": e,
                                "gif_id": g,
                                "title": self.gifs[g]["title"],
                                "answers": {ev.user: ev.answer for ev in it.pair()},
                                "adjudicated": None
                                if it.adjudication is None
                                else it.adjudication.answer,
                            }
                        )
            return out

    def consensus_labels(self) -> dict[str, dict[str, bool]]:
        """emotion -> {gif id: consensus positive?} over the items with an outcome."""
        with self.lock:
            out: dict[str, dict[str, bool]] = {}
            for e in self.emotions:
                d = out.setdefault(e, {})
                for it in self._touched(e):
                    f = it.final(self.cfg.policy)
                    if f is not None:
                        d[it.gif_id] = f
            return out

    def complete_items(self) -> list[Item]:
        with self.lock:
            return [it for e in self.emotions for it in self._touched(e) if it.complete]

    # -- active strategy ----------------------------------------------------------------------

    def remaining(self, emotion: str) -> list[str]:
        """Unchecked candidates of ``emotion`` in the current order: no answer, no live lease."""
        now = self.clock()
        out = []
        for g in self.order[emotion]:
            it = self.items.get((emotion, g))
            if it is None or (
                not it.decisions and not any(le.expires > now for le in it.leases.values())
            ):
                out.append(g)
        return out

    def _maybe_rerank(self, emotion: str) -> None:
        if self.reranks is None or self.cfg.strategy != "active":
            return
        new = self.new_resolved[emotion]
        waited = self.clock() - self.last_rerank[emotion]
        if new >= self.cfg.rerank_every or (new > 0 and waited >= self.cfg.rerank_seconds):
            self.reranks.request(emotion)

    def _rerank_inputs(self, emotions: list[str]) -> tuple[Labels, dict[str, list[str]]]:
        """The reranker's inputs for ``emotions`` (under the lock): the consensus labels and
        their remaining candidates; their count of new outcomes starts again."""
        labels = self.consensus_labels()
        remaining = {e: self.remaining(e) for e in emotions}
        for e in emotions:
            self.new_resolved[e] = 0
            self.last_rerank[e] = self.clock()
        return labels, remaining

    def _swap(self, emotion: str, new: Sequence[str] | None, asked: Sequence[str]) -> None:
        if new is None or len(new) != len(asked) or set(new) != set(asked):
            msg = f"{emotion}: reranker returned {0 if new is None else len(new)} ids, not a permutation of the {len(asked)} remaining"
            log.error(msg)
            self.rerank_errors.append(msg)
            return
        still = set(self.remaining(emotion))
        front = [g for g in self.order[emotion] if g not in still]
        back = [g for g in new if g in still]
        asked_set = set(new)  # remaining now but not when asked (a skip, an expired lease): last
        back += [g for g in self.order[emotion] if g in still and g not in asked_set]
        order = front + back
        self.version[emotion] += 1
        self.store.add_ranking(emotion, self.version[emotion], order)
        self.order[emotion] = order
        self.pos[emotion] = {g: i for i, g in enumerate(order)}
        self.head[emotion] = 0
        self.rerank_count += 1

    def wait_reranks(self, timeout: float = 10.0) -> bool:
        """Block until no rerank is pending or running (tests, assembly)."""
        return self.reranks is None or self.reranks.wait(timeout)
