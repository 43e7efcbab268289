"""The collector's rate limit under a fake clock: never more than calls_per_hour in any hour."""

from __future__ import annotations

import sqlite3

import pytest

from gifemo.apps.collect.collector import collect
from gifemo.apps.collect.fake_giphy import FakeGiphy
from gifemo.apps.collect.ratelimit import RateLimiter
from tests.test_collect import options, pool  # noqa: F401  (fixture)


class FakeClock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        assert s > 0
        self.t += s


def max_in_window(times: list[float], window: float) -> int:
    """The most calls in any half-open interval [s, s + window) (naive: start at each call)."""
    return max(sum(1 for u in times if t <= u < t + window) for t in times)


@pytest.mark.parametrize("limit,burst", [(100, 10), (100, 100), (7, 1), (5, 3)])
def test_sliding_hour_and_token_bucket_bounds(limit, burst):
    clock = FakeClock()
    rl = RateLimiter(limit, burst=burst, clock=clock, sleep=clock.sleep)
    times = [rl.acquire() for _ in range(3 * limit + 5)]
    assert max_in_window(times, 3600.0) == limit  # the promise, reached but never exceeded
    rate = limit / 3600.0
    for span in (1.0, 60.0, 600.0, 1800.0):  # the bucket's pacing: burst + r·T
        assert max_in_window(times, span) <= min(burst, limit) + rate * span + 1e-9
    assert times[:burst] == [times[0]] * burst  # a full bucket lets `burst` calls go at once


def test_rate_limit_holds_across_a_restart():
    clock = FakeClock()
    first = RateLimiter(10, burst=10, clock=clock, sleep=clock.sleep)
    times = [first.acquire() for _ in range(6)]
    clock.t += 100.0
    # a new process knows the recorded calls: 4 more may go this hour, not 10
    second = RateLimiter(10, burst=10, clock=clock, sleep=clock.sleep, history=times)
    times += [second.acquire() for _ in range(20)]
    assert max_in_window(times, 3600.0) == 10
    assert times[10] >= times[0] + 3600.0


def test_bad_limits_are_refused():
    with pytest.raises(ValueError, match="calls_per_hour"):
        RateLimiter(0)
    with pytest.raises(ValueError, match="burst"):
        RateLimiter(10, burst=0)


def test_collector_keeps_the_limit_with_a_fake_clock(pool, tmp_path):  # noqa: F811
    """9 search calls at 4 per hour (burst 2) and two 429s: every API call is timed by the
    fake clock and checked against the hour window, also after a restart of the collector."""
    clock = FakeClock()
    fake = FakeGiphy.from_dataset(pool, faults={3: "429", 6: "429bare"}, retry_after=1)
    with fake:
        kw = dict(page_size=5, calls_per_hour=4, burst=2, progress=False)
        collect(options(tmp_path / "c", fake, ["common"], **kw, max_per_query=20), api_key="k",
                clock=clock, sleep=clock.sleep)  # fmt: skip
        collect(options(tmp_path / "c", fake, ["common", "happy"], **kw), api_key="k",
                clock=clock, sleep=clock.sleep)  # fmt: skip
        n_requests = len(fake.search_requests(None))
    db = sqlite3.connect(tmp_path / "c" / "collect.sqlite")
    times = sorted(t for (t,) in db.execute("SELECT t FROM calls"))
    assert len(times) == n_requests >= 9  # every request was a recorded call
    assert max_in_window(times, 3600.0) == 4
    assert times[-1] - times[0] > 3600.0  # the fake clock really had to wait hours
