"""Online store throughput against a fresh local moto server: BatchWriteItem and BatchGetItem items/s.

    .venv/bin/python bench/online_store.py [--items 5000] [--writers 1 4]

A number for the local endpoint only (DESIGN §8 measured ~4.7k items/s for moto's
BatchWriteItem): it shows the writer's own overhead is small next to the server's, and what a
local `make demo` export costs. Real DynamoDB throughput is set by the table's capacity and
`online_store.max_items_per_second`, not by this.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from offer_ai.config import OnlineStoreSettings
from offer_ai.online import local_dynamodb
from offer_ai.online.reader import OnlineFeatureReader
from offer_ai.online.table import ensure_table
from offer_ai.online.writer import WriteStats, write_items

AS_OF = dt.datetime(2026, 1, 28, tzinfo=dt.timezone.utc)


def rows(start: int, stop: int):
    for i in range(start, stop):
        yield {
            "user_id": f"user-{i:07d}",
            "as_of": AS_OF,
            "country": ("DE", "US", "BR", None)[i % 4],
            "facebook_connected": i % 3 == 0,
            "last_session_games_played": i % 17,
            "last_session_win_ratio": (i % 7) / 7 if i % 17 else None,
            "prev_week_purchase_amount": round((i % 50) * 0.99, 2),
            "spec_version": "bench",
        }


def bench_writes(store: OnlineStoreSettings, items: int, writers: int) -> dict[str, float]:
    """`writers` threads, each its own client and an equal share of the rows (as partitions would)."""
    bounds = [(items * w // writers, items * (w + 1) // writers) for w in range(writers)]
    started = time.perf_counter()
    with ThreadPoolExecutor(writers) as pool:
        parts = list(pool.map(lambda b: write_items(rows(*b), store, writers=writers), bounds))
    seconds = time.perf_counter() - started
    total = sum(parts, WriteStats())
    assert total.written == items, total
    return {"writers": writers, "items": items, "requests": total.requests, "seconds": round(seconds, 3),
            "items_per_s": round(items / seconds)}


def bench_reads(store: OnlineStoreSettings, items: int) -> dict[str, float]:
    with OnlineFeatureReader(store) as reader:
        started = time.perf_counter()
        got = reader.get_many(f"user-{i:07d}" for i in range(items))
        seconds = time.perf_counter() - started
    assert sum(f["as_of"] is not None for f in got.values()) == items
    return {"items": items, "seconds": round(seconds, 3), "items_per_s": round(items / seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as state:
        port = local_dynamodb.free_port()
        server = local_dynamodb.start(port, state)
        try:
            results = []
            for writers in args.writers:
                store = OnlineStoreSettings(
                    table=f"bench_{writers}", endpoint_url=server.endpoint_url, create_table=True,
                    max_items_per_second=1e9,  # uncapped: measure the endpoint, not the bucket
                )
                ensure_table(store)
                results.append({"op": "BatchWriteItem", **bench_writes(store, args.items, writers)})
            results.append({"op": "BatchGetItem", **bench_reads(store, args.items)})
        finally:
            local_dynamodb.stop(port, state)
    for result in results:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
