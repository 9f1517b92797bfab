"""One player's features for a request, within a deadline, whatever DynamoDB does.

boto3 has no async client, so the GetItem runs on a small thread pool while the event loop
waits at most ``store_timeout_ms``. botocore's own connect/read timeouts and attempts are set
tight too (one retry by default), so a stuck call frees its thread soon; a call that only
starts after its request's deadline (the pool was busy) is skipped rather than made for
nobody. Whatever goes wrong — a timeout, a refused connection, throttling, a missing table —
the request gets the no-history defaults and a status saying why, never an error: a player
opening the app must see an offer. The reader and its rules (TTL, decoding, defaults) are the
same :class:`~offer_ai.online.reader.OnlineFeatureReader` decide_offers uses.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from offer_ai.config import OnlineStoreSettings, ServingSettings
from offer_ai.online.client import make_client
from offer_ai.online.items import default_features
from offer_ai.online.reader import OnlineFeatureReader, ReadOptions

#: A key no player has: what the readiness probe asks for.
PROBE_KEY = "__offer_ai_readiness_probe__"


class _TooLate(Exception):
    """The read would start after its request's deadline."""


class Breaker:
    """Stops calling a store that keeps failing, so an outage costs no thread and no CPU per request.

    After ``failures`` reads in a row time out or fail, reads are skipped for ``cooldown_s``
    (the requests get the defaults at once, status ``circuit_open``); then reads go through
    again, and the first success closes it. Touched from the event loop only.
    """

    def __init__(self, failures: int, cooldown_s: float) -> None:
        self.failures, self.cooldown_s = failures, cooldown_s
        self._streak = 0
        self._open_until = 0.0

    def allows(self, now: float) -> bool:
        return now >= self._open_until

    def record(self, ok: bool, now: float) -> None:
        self._streak = 0 if ok else self._streak + 1
        if self._streak >= self.failures:
            self._open_until, self._streak = now + self.cooldown_s, 0


@dataclass(frozen=True)
class FeatureRead:
    """What the store answered: the features (or defaults), why, and how long it took."""

    features: dict[str, Any]
    #: hit (an item), miss (no item or expired), timeout (past the budget), error (any failure),
    #: circuit_open (not asked: it kept failing just now)
    status: str
    seconds: float
    error: str | None = None


class DeadlineReader:
    """GetItem on a thread pool, bounded by the serving budget."""

    def __init__(self, store: OnlineStoreSettings, serving: ServingSettings, client: Any = None) -> None:
        self.budget_s = serving.store_timeout_ms / 1000.0
        if client is None:
            client = make_client(store, max_attempts=serving.store_max_attempts,
                                 connect_timeout_s=serving.store_connect_timeout_ms / 1000.0,
                                 read_timeout_s=serving.store_read_timeout_ms / 1000.0,
                                 max_pool_connections=serving.store_threads)
        self.reader = OnlineFeatureReader(store, client=client,
                                          options=ReadOptions(max_attempts=serving.store_max_attempts))
        self.pool = ThreadPoolExecutor(max_workers=serving.store_threads, thread_name_prefix="offer-ai-store")
        self.breaker = Breaker(serving.store_breaker_failures, serving.store_breaker_cooldown_s)

    def _get(self, user_id: str, session_id: str | None, deadline: float) -> dict[str, Any]:
        if time.monotonic() > deadline:
            raise _TooLate
        return self.reader.get(user_id, session_id)

    async def read(self, user_id: str, session_id: str | None = None, probe: bool = False) -> FeatureRead:
        """The player's features for a decision in `session_id`, or the defaults with the reason,
        within the budget (``probe``: past the breaker)."""
        started = time.monotonic()
        if not probe and not self.breaker.allows(started):
            return FeatureRead(default_features(user_id), "circuit_open", 0.0)
        read = await self._read(user_id, session_id, started)
        if not probe:
            self.breaker.record(read.status in ("hit", "miss"), time.monotonic())
        return read

    async def _read(self, user_id: str, session_id: str | None, started: float) -> FeatureRead:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self.pool, self._get, user_id, session_id, started + self.budget_s)
        try:
            features = await asyncio.wait_for(future, self.budget_s)
        except (asyncio.TimeoutError, _TooLate):
            return FeatureRead(default_features(user_id), "timeout", time.monotonic() - started)
        except Exception as exc:  # botocore, a UserError sentence, anything: the player still gets an offer
            return FeatureRead(default_features(user_id), "error", time.monotonic() - started,
                               f"{type(exc).__name__}: {exc}")
        status = "miss" if features.get("as_of") is None else "hit"
        return FeatureRead(features, status, time.monotonic() - started)

    async def answers(self) -> bool:
        """Readiness: does the store answer a GetItem within the budget?"""
        return (await self.read(PROBE_KEY, probe=True)).status in ("hit", "miss")

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.reader.client.close()
