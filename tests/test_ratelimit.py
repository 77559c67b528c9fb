"""Token buckets (pure logic: a fake clock)."""

from __future__ import annotations

import pytest

from realtime.exceptions import RateLimited
from realtime.ratelimit import ScopedBuckets, TokenBucket


def test_a_bucket_starts_full_spends_one_token_a_take_and_refills_at_its_rate():
    now = [0.0]
    bucket = TokenBucket(rate=2.0, burst=3, clock=lambda: now[0])
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    now[0] += 0.4  # 0.8 of a token
    assert not bucket.take()
    now[0] += 0.1
    assert bucket.take()
    now[0] += 100.0  # refills up to the burst, no further
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]


def test_scoped_buckets_are_per_scope_and_bounded(realtime_settings):
    realtime_settings(RATE=0.001, BURST=2)
    buckets = ScopedBuckets(limit=2)
    buckets.take("a")
    buckets.take("a")
    with pytest.raises(RateLimited):
        buckets.take("a")
    buckets.take("b")  # another scope has its own bucket
    buckets.take("c")  # a third scope pushes out the least recently used one, "a"
    buckets.take("a")  # so "a" starts full again
    buckets.take("c")
    with pytest.raises(RateLimited):
        buckets.take("c")
