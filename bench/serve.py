"""The decision service under an open-loop load over loopback, against the local DynamoDB.

    .venv/bin/python bench/serve.py [--rate 500] [--duration 10] [--players 20000]

Starts what it needs and stops it: a moto server, a small model (trained on the generator's
truth records without Spark, cached under .offer_ai_build/bench-serve-model/ and reused),
the players' items written to the store, and jobs/serve.py as its own process. Then:

1. the store alone: GetItem through the service's reader from this process, one at a time
   (what one store round trip costs here);
2. the service: requests sent on a fixed schedule (``--rate`` per second for ``--duration``
   seconds, open loop: a late answer never delays the next request; latency counts from the
   scheduled send, so queueing is not hidden), over keep-alive connections. Each answer's
   Server-Timing splits the service's time into the store round trip and its own work.

The last stdout line is the JSON summary. Everything shares the machine's cores: moto
(~3 ms of CPU per GetItem), botocore in the service (~2 ms per call) and this client.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lib"))

from offer_ai.config import OnlineStoreSettings, ServingSettings  # noqa: E402
from offer_ai.model import model_registry as registry  # noqa: E402
from offer_ai.online import local_dynamodb  # noqa: E402
from offer_ai.online.deadline_reader import DeadlineReader  # noqa: E402
from offer_ai.online.table import ensure_table  # noqa: E402
from offer_ai.online.writer import write_items  # noqa: E402

CACHE = REPO / ".offer_ai_build" / "bench-serve-model"
AS_OF = dt.datetime(2026, 1, 22, tzinfo=dt.timezone.utc)
SPEC = "bench-serve"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def small_model() -> Path:
    """A model folder trained on 1,500 generated players' logged decisions (cached: ~10 s once)."""
    if (CACHE / "model.json").is_file():
        return CACHE
    import pandas as pd

    from offer_ai.model.model import complete_rows, time_split, train
    from offer_ai.model.offers import load_offers
    from offer_ai.sim import GeneratorOptions, generate, load_truth

    offers = load_offers(REPO / "conf" / "offers.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        generate(GeneratorOptions(out=tmp, offers=tuple(offers), users=1500, days=21, seed=5, workers=2))
        truth = load_truth(tmp)
    rows = truth.assign(next_week_purchase_amount=truth["realised_next_week_purchase_amount"],
                        label_complete=truth["window_inside_range"].astype(bool),
                        last_session_games_played=truth["last_session_games_played"].astype("float"))
    rows = complete_rows(rows[truth["first_in_day"].astype(bool)])
    train_rows, valid_rows = time_split(pd.DataFrame(rows))
    model = train(train_rows, valid_rows, "reg:tweedie", {"max_depth": 3, "eta": 0.05, "min_child_weight": 20.0},
                  offers=offers, spec_version=SPEC, num_boost_round=300)
    tmp_dir = CACHE.with_name(CACHE.name + ".tmp")
    shutil.rmtree(tmp_dir, ignore_errors=True)
    model.save(tmp_dir)
    shutil.rmtree(CACHE, ignore_errors=True)
    tmp_dir.rename(CACHE)
    return CACHE


def player_items(n: int) -> list[dict[str, Any]]:
    rng = random.Random(7)
    countries = ["US", "DE", "GB", "FR", "BR", "IN", "JP", None]
    return [{"user_id": f"player-{i:06d}", "as_of": AS_OF, "country": rng.choice(countries),
             "facebook_connected": rng.random() < 0.4, "last_session_games_played": rng.randint(0, 12),
             "last_session_win_ratio": round(rng.random(), 3), "prev_week_purchase_amount": round(rng.expovariate(0.2), 2),
             "spec_version": SPEC} for i in range(n)]


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "max": float("nan")}
    a = np.asarray(values)
    return {"p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)), "p99": float(np.percentile(a, 99)),
            "max": float(a.max())}


async def store_alone(store: OnlineStoreSettings, players: int, seconds: float) -> dict[str, Any]:
    """GetItem round trips one at a time, through the service's own reader and timeouts."""
    reader = DeadlineReader(store, ServingSettings(store_timeout_ms=5000, store_read_timeout_ms=5000,
                                                   store_connect_timeout_ms=5000))
    times, rng = [], random.Random(3)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            read = await reader.read(f"player-{rng.randrange(players):06d}")
            times.append(read.seconds * 1000)
    finally:
        reader.close()
    return {"reads": len(times), "reads_per_s": round(len(times) / seconds, 1), **percentiles(times)}


class Connection:
    """One keep-alive HTTP/1.1 connection: a request out, its response (headers + Content-Length body) in."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def call(self, payload: bytes) -> tuple[int, dict[str, str], bytes]:
        self.writer.write(b"POST /v1/decisions HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                          b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return status, headers, body


async def load(port: int, rate: float, seconds: float, players: int, connections: int) -> dict[str, Any]:
    """Open loop: request i is due at start + i / rate, whatever happened to the earlier ones."""
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(Connection(*await asyncio.open_connection("127.0.0.1", port)))
    rng = random.Random(11)
    total = int(rate * seconds)
    results: list[dict[str, Any]] = []
    errors: list[str] = []

    async def one(due: float, payload: bytes) -> None:
        conn = await pool.get()
        try:
            status, headers, body = await asyncio.wait_for(conn.call(payload), 30.0)
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as exc:
            errors.append(type(exc).__name__)
            conn.writer.close()
            conn = Connection(*await asyncio.open_connection("127.0.0.1", port))
        else:
            done = time.perf_counter()
            if status != 200:
                errors.append(str(status))
            else:
                timing = dict(p.strip().split(";dur=") for p in headers["server-timing"].split(","))
                results.append({"e2e": (done - due) * 1000, "app": float(timing["app"]), "store": float(timing["store"]),
                                "total": float(timing["total"]), "status": json.loads(body)["store"]})
        finally:
            pool.put_nowait(conn)

    tasks = []
    start = time.perf_counter() + 0.2
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        user = f"player-{rng.randrange(players):06d}" if rng.random() < 0.95 else f"new-player-{i}"
        tasks.append(asyncio.create_task(one(due, json.dumps({"user_id": user, "session_id": f"s-{i}"}).encode())))
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - start
    while not pool.empty():
        pool.get_nowait().writer.close()
    statuses: dict[str, int] = {}
    for r in results:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    return {"offered_per_s": rate, "sent": total, "completed": len(results), "wall_s": round(wall, 2),
            "requests_per_s": round(len(results) / wall, 1), "errors": len(errors), "store_answers": statuses,
            "end_to_end": percentiles([r["e2e"] for r in results]), "service": percentiles([r["app"] for r in results]),
            "store": percentiles([r["store"] for r in results]), "in_service": percentiles([r["total"] for r in results])}


def wait_ready(port: int, process: subprocess.Popen, timeout_s: float = 60) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"the service exited at start-up:\n{process.stderr.read()[-3000:] if process.stderr else ''}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit("the service did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500.0, help="requests per second offered (default 500)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load (default 10, at most 60)")
    parser.add_argument("--players", type=int, default=20_000, help="players with an item in the store")
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections (default 32)")
    parser.add_argument("--serve-set", action="append", default=[], metavar="KEY=VALUE",
                        help="a --set for jobs/serve.py, e.g. serving.store_threads=4 (repeatable)")
    parser.add_argument("--store-rate", type=float, default=100.0,
                        help="a second, shorter load at a rate the local store keeps up with (default 100; 0: skip)")
    args = parser.parse_args()
    args.duration = min(args.duration, 60.0)
    args.rate = min(args.rate, 5000.0)
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")

    started = time.monotonic()
    model_dir = small_model()
    with tempfile.TemporaryDirectory(prefix="offer-ai-bench-serve-") as tmp:
        tmp_path = Path(tmp)
        port = local_dynamodb.free_port()
        server = local_dynamodb.start(port, tmp_path / "dynamodb")
        service = None
        try:
            store = OnlineStoreSettings(table="bench_serve", endpoint_url=server.endpoint_url, create_table=True,
                                        max_items_per_second=1e9)
            ensure_table(store)
            log(f"bench/serve: {args.players} players into the local DynamoDB")
            write_items(player_items(args.players), store)
            version = registry.install(tmp_path / "models", model_dir)
            registry.point_current(tmp_path / "models", version, {"source": "bench"})

            log("bench/serve: the store alone (5 s)")
            alone = asyncio.run(store_alone(store, args.players, 5.0))

            service_port = local_dynamodb.free_port()
            command = [sys.executable, "jobs/serve.py", "--port", str(service_port),
                       "--set", f"online_store.endpoint_url={server.endpoint_url}", "--set", "online_store.table=bench_serve",
                       "--set", f"serving.models_root={tmp_path / 'models'}", "--set", f"raw.root={tmp_path / 'raw'}"]
            command += [arg for pair in args.serve_set for arg in ("--set", pair)]
            service = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            wait_ready(service_port, service)
            log(f"bench/serve: {args.rate:g} requests/s for {args.duration:g} s, open loop")
            result = asyncio.run(load(service_port, args.rate, args.duration, args.players, args.connections))
            gentle = None
            if args.store_rate > 0:
                log(f"bench/serve: {args.store_rate:g} requests/s for 5 s, what the local store keeps up with")
                gentle = asyncio.run(load(service_port, args.store_rate, 5.0, args.players, args.connections))
        finally:
            if service is not None and service.poll() is None:
                service.send_signal(signal.SIGTERM)
                try:
                    out, _ = service.communicate(timeout=60)
                except subprocess.TimeoutExpired:
                    service.kill()
                    out = ""
                lines = out.strip().splitlines()
                logged = json.loads(lines[-1]).get("decisions_logged") if lines else None
            else:
                logged = None
            local_dynamodb.stop(port, tmp_path / "dynamodb")

    r = lambda x: round(x, 3)  # noqa: E731
    summary = {
        "bench": "serve", "model_version": version, "players": args.players, "offered_per_s": args.rate,
        "duration_s": args.duration, "requests_per_s": result["requests_per_s"], "completed": result["completed"],
        "errors": result["errors"],
        **{f"service_{k}_ms": r(v) for k, v in result["service"].items()},
        **{f"end_to_end_{k}_ms": r(v) for k, v in result["end_to_end"].items()},
        **{f"store_{k}_ms": r(v) for k, v in result["store"].items()},
        **{f"store_alone_{k}_ms": r(v) for k, v in alone.items() if k in ("p50", "p95", "p99", "max")},
        "store_alone_reads_per_s": alone["reads_per_s"], "store_answers": result["store_answers"],
        "decisions_logged": logged, "cpus": os.cpu_count(), "seconds": round(time.monotonic() - started, 1),
    }
    if gentle is not None:
        summary["at_store_rate"] = {
            "offered_per_s": args.store_rate, "requests_per_s": gentle["requests_per_s"], "errors": gentle["errors"],
            **{f"service_{k}_ms": r(v) for k, v in gentle["service"].items()},
            **{f"end_to_end_{k}_ms": r(v) for k, v in gentle["end_to_end"].items()},
            **{f"store_{k}_ms": r(v) for k, v in gentle["store"].items()}, "store_answers": gentle["store_answers"],
        }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
