"""Backoff with jitter and the write-rate cap, on fake clocks and fixed random numbers."""

from __future__ import annotations

import pytest

from offer_ai.online.pacing import TokenBucket, backoff_delay


def test_backoff_doubles_from_base_up_to_the_cap_with_jitter_below():
    top = [backoff_delay(r, 0.05, 5.0, rng=lambda: 1.0) for r in range(1, 10)]
    assert top == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0])
    assert backoff_delay(3, 0.05, 5.0, rng=lambda: 0.5) == pytest.approx(0.1)


def test_token_bucket_200_items_at_400_per_second_takes_half_a_second_of_fake_time():
    clock = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    bucket = TokenBucket(400.0, capacity=25, clock=lambda: clock[0], sleep=sleep)
    for _ in range(8):
        bucket.take(25)
    assert clock[0] == pytest.approx(0.5)  # 200 / 400, the bucket starts empty
    assert slept == pytest.approx([25 / 400] * 8)
    with pytest.raises(ValueError):
        bucket.take(26)
