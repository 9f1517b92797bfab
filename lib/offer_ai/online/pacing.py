"""Pacing the writer's and reader's own retries: backoff with jitter, and the write-rate cap.

Both exist because botocore's do not reach these cases. Its retry modes back off only on
failed calls, while UnprocessedItems/UnprocessedKeys come in a successful answer; and its
backoff (``botocore.retries.standard.ExponentialBackoff``) has a fixed base per service, not
the configurable one :class:`~offer_ai.online.writer.WriteOptions` offers. The ``adaptive``
retry mode's rate limiter only slows a client down after it was throttled, and counts
requests, not items, so it is no cap on items per second from the first request on, which is
what ``online_store.max_items_per_second`` promises.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable


def backoff_delay(retry: int, base_s: float, cap_s: float, rng: Callable[[], float] = random.random) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**(retry-1))].

    Jitter keeps many executors that were throttled together from retrying together.
    """
    return rng() * min(cap_s, base_s * 2 ** (retry - 1))


class TokenBucket:
    """A simple rate cap: `take(n)` waits until n tokens accrued at `rate` per second.

    Starts empty, so that the items sent by time t never exceed rate x t: the cap holds from
    the first request on, not only on average over a long run.
    """

    def __init__(
        self,
        rate: float,
        capacity: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0 or capacity <= 0:
            raise ValueError("rate and capacity must be positive")
        self.rate, self.capacity = rate, capacity
        self._clock, self._sleep = clock, sleep
        self._tokens = 0.0
        self._last = clock()

    def take(self, n: int) -> None:
        if n > self.capacity:
            raise ValueError(f"cannot take {n} tokens from a bucket of {self.capacity}")
        while True:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens >= n:
                self._tokens -= n
                return
            self._sleep((n - self._tokens) / self.rate)
