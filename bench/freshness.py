"""bench/freshness: how soon after a session ends its player's DynamoDB item reflects it.

A writer plays sessions of simulated players at a steady rate (default 2,000 events/s for 10
minutes) with event times from the wall clock, and lands one JSON-lines file per second in
`<tmp>/raw/date=<day>/` (written beside it, then renamed in: a file appears whole). The
continuous ingest runs as it would in production: `./spark-submit.sh jobs/sessionize.py
--trigger processing-time=<interval>` against a local DynamoDB (moto) this bench starts. A
poller scans the table every second. A session counts as reflected when its player's item
has that session (or a later one) as its latest (`in_session.session_start`) and an `as_of` at
or after the session's last event: from then on a decision in the player's next session uses
it as the last session. Freshness = when that was first seen − when the file with the
session's last event landed.

Prints a table to stderr and, as its last stdout line, JSON with freshness_p50_s,
freshness_p99_s, freshness_max_s, lag_growing (the last third's median freshness against the
first third's, after a minute of warm-up), events_per_s (events landed per second of the run),
sessions measured and not reflected, and the stream's own summary figures. Bounded: the writer
stops after --minutes, the bench waits at most --drain-s more for the last sessions, then stops
the stream (SIGTERM: its micro-batch finishes) and the DynamoDB server.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lib"))

from offer_ai.online import local_dynamodb  # noqa: E402

TABLE = "bench_freshness"
COUNTRIES = ("US", "DE", "FR", "JP", "BR", "IN", "GB", "MX")


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def iso(moment: float) -> str:
    return dt.datetime.fromtimestamp(moment, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Session:
    user: str
    session_id: str
    start: float  # event time of its first event (epoch seconds)
    left: int  # events still to play
    last: float = 0.0  # event time of its latest event
    landed: float = 0.0  # wall time its latest event's file landed


class Players:
    """`concurrent` sessions under way at any moment, each 5-15 events, one event per second each;
    a session that ends is replaced by a new one of an idle player (3x as many players as sessions)."""

    def __init__(self, concurrent: int, seed: int) -> None:
        self.random = random.Random(seed)
        self.users = [f"bench-{uuid.UUID(int=self.random.getrandbits(128))}" for _ in range(3 * concurrent)]
        self.idle = deque(self.users[concurrent:])
        self.active = [self._start(u) for u in self.users[:concurrent]]

    def _start(self, user: str) -> Session:
        return Session(user, f"s-{self.random.getrandbits(64):016x}", 0.0, self.random.randint(5, 15))

    def tick(self, now: float, landed_at: float) -> tuple[list[str], list[Session]]:
        """One second of play: a line per active session, and the sessions that ended."""
        lines, ended = [], []
        for i, s in enumerate(self.active):
            at = now + self.random.random() * 0.9
            base = {"event_time": iso(at), "customer_identifier": s.user, "session_id": s.session_id}
            if s.start == 0.0:
                s.start = at
                event = {"event_id": "app_launched", "country": self.random.choice(COUNTRIES), "language": "EN",
                         "signin_method": self.random.choice(("fb", "email", "guest")), "os": "iOS",
                         "device_type": "phone", "package_version": "1.2", **base}
            elif s.left == 1 and self.random.random() < 0.3:
                event = {"event_id": "purchase", "txn_amount": self.random.choice(("0.99", "4.99", "9.99")),
                         "purchase_source": "shop", **base}
            elif self.random.random() < 0.5:
                event = {"event_id": "game_start", "level": "1", **base}
            else:
                event = {"event_id": "game_end", "level": "1", "won": self.random.choice(("0", "1")), **base}
            event["event_time"] = iso(at)
            lines.append(json.dumps(event, separators=(",", ":")))
            s.left -= 1
            s.last, s.landed = at, landed_at
            if s.left == 0:
                ended.append(s)
                self.idle.append(s.user)
                self.active[i] = self._start(self.idle.popleft())
        return lines, ended


class Writer(threading.Thread):
    """Lands one file per second for `minutes`; records every ended session."""

    def __init__(self, raw: Path, staging: Path, rate: int, minutes: float, seed: int) -> None:
        super().__init__(daemon=True, name="writer")
        self.raw, self.staging, self.minutes = raw, staging, minutes
        self.players = Players(rate, seed)
        self.ended: list[Session] = []
        self.events = 0
        self.started = self.finished = 0.0
        self.lock = threading.Lock()

    def run(self) -> None:
        self.started = time.time()
        tick = 0
        while time.time() < self.started + self.minutes * 60:
            now = time.time()
            day = dt.datetime.fromtimestamp(now, dt.timezone.utc).date().isoformat()
            lines, ended = self.players.tick(now, landed_at=0.0)
            staged = self.staging / f"part-{tick:06d}.jsonl"
            staged.write_text("\n".join(lines) + "\n")
            folder = self.raw / f"date={day}"
            folder.mkdir(parents=True, exist_ok=True)
            os.rename(staged, folder / staged.name)  # the file appears whole
            landed = time.time()
            with self.lock:
                for s in self.players.active:
                    if s.last >= now:
                        s.landed = landed
                for s in ended:
                    s.landed = landed
                self.ended.extend(ended)
                self.events += len(lines)
            tick += 1
            time.sleep(max(0.0, self.started + tick - time.time()))
        self.finished = time.time()


def poll(client: Any, pending: dict[str, list[Session]], seen: list[tuple[float, float]]) -> None:
    """One scan of the table: the sessions its items now reflect, with their freshness."""
    observed = time.time()
    pages = client.get_paginator("scan").paginate(
        TableName=TABLE, ProjectionExpression="user_id, as_of, in_session.session_start")
    for page in pages:
        for item in page["Items"]:
            user = item["user_id"]["S"]
            waiting = pending.get(user)
            if not waiting or "in_session" not in item:
                continue
            latest = dt.datetime.fromisoformat(item["in_session"]["M"]["session_start"]["S"].replace("Z", "+00:00"))
            as_of = dt.datetime.fromisoformat(item["as_of"]["S"].replace("Z", "+00:00")).timestamp()
            still = []
            for s in waiting:
                if latest.timestamp() >= s.start - 1e-6 and as_of >= s.last - 1e-6:
                    seen.append((s.landed, observed - s.landed))
                else:
                    still.append(s)
            pending[user] = still


STEP_LINE = re.compile(r"offer_ai INFO step (\w+): ([0-9.]+) s")


def _runs_sessionize(process: psutil.Process) -> bool:
    """The job's driver (not one of Spark's Python workers; a finished one may be a zombie)."""
    try:
        return "python" in process.name() and any(a.endswith("jobs/sessionize.py") for a in process.cmdline())
    except psutil.Error:
        return False


def stop_stream(stream: subprocess.Popen) -> None:
    """SIGTERM to the driver's Python process: the micro-batch under way finishes, the summary is
    printed (a signal to the JVM above it would end it at once). Killed after 5 minutes."""
    drivers = [p for p in psutil.Process(stream.pid).children(recursive=True)  # not Spark's Python workers
               if _runs_sessionize(p)]
    for driver in drivers or [psutil.Process(stream.pid)]:
        driver.send_signal(signal.SIGTERM)
    try:
        stream.wait(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(stream.pid, signal.SIGKILL)
        stream.wait()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=2000, help="events per second landed (default 2000)")
    parser.add_argument("--minutes", type=float, default=10.0, help="minutes of load (default 10, at most 60)")
    parser.add_argument("--interval", type=int, default=5, help="the stream's processing-time trigger, seconds (default 5)")
    parser.add_argument("--drain-s", type=float, default=180.0, help="wait at most this long for the last sessions")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    args.minutes = min(args.minutes, 60.0)
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    started = time.monotonic()

    with tempfile.TemporaryDirectory(prefix="offer-ai-bench-freshness-") as tmp:
        tmp_path = Path(tmp)
        raw, staging, lake = tmp_path / "raw", tmp_path / "staging", tmp_path / "lake"
        raw.mkdir()
        staging.mkdir()
        port = local_dynamodb.free_port()
        server = local_dynamodb.start(port, tmp_path / "dynamodb")
        stream = None
        try:
            client = boto3.client("dynamodb", endpoint_url=server.endpoint_url, region_name="us-east-1",
                                  aws_access_key_id="local", aws_secret_access_key="local")
            command = ["./spark-submit.sh", "jobs/sessionize.py", "--trigger", f"processing-time={args.interval}s",
                       "--lake", str(lake), "--set", f"raw.root={raw}",
                       "--set", f"online_store.endpoint_url={server.endpoint_url}", "--set", f"online_store.table={TABLE}",
                       "--set", "online_store.create_table=true", "--set", "online_store.max_items_per_second=1000000"]
            # spark-submit hands the driver's stderr to its stdout: progress lines and the summary
            stream_out = open(tmp_path / "stream.out", "w")
            stream = subprocess.Popen(command, cwd=REPO, stdout=stream_out, stderr=subprocess.DEVNULL, text=True,
                                      start_new_session=True)
            writer = Writer(raw, staging, args.rate, args.minutes, args.seed)
            log(f"bench/freshness: {args.rate} events/s for {args.minutes:g} min, trigger every {args.interval} s")
            writer.start()
            pending: dict[str, list[Session]] = {}
            seen: list[tuple[float, float]] = []
            taken = 0
            last_report = time.time()
            while writer.is_alive() or (any(pending.values()) and time.time() < writer.finished + args.drain_s):
                with writer.lock:
                    for s in writer.ended[taken:]:
                        pending.setdefault(s.user, []).append(s)
                    taken = len(writer.ended)
                try:
                    poll(client, pending, seen)
                except client.exceptions.ResourceNotFoundException:
                    pass  # the stream has not created the table yet
                if stream.poll() is not None:
                    raise SystemExit(f"bench/freshness: the stream ended early (exit {stream.returncode}); "
                                     f"its log:\n{(tmp_path / 'stream.out').read_text()[-3000:]}")
                if time.time() - last_report > 30:
                    recent = [f for landed, f in seen if landed > time.time() - 60]
                    log(f"bench/freshness: {len(seen)} sessions reflected, {sum(map(len, pending.values()))} waiting, "
                        f"last minute p50 {statistics.median(recent) if recent else float('nan'):.1f} s")
                    last_report = time.time()
                time.sleep(1.0)
            missing = sum(map(len, pending.values()))
            for s in [s for waiting in pending.values() for s in waiting][:3]:  # what an operator would look at
                item = client.get_item(TableName=TABLE, Key={"user_id": {"S": s.user}}).get("Item", {})
                log(f"bench/freshness: not reflected: {s.user} {s.session_id} {iso(s.start)}..{iso(s.last)}; "
                    f"item as_of {item.get('as_of')}, in_session {item.get('in_session', {}).get('M', {}).get('session_id')}")
        finally:
            stream_summary: dict[str, Any] = {}
            batch_steps: dict[str, list[float]] = {}
            if stream is not None and stream.poll() is None:
                stop_stream(stream)
            if stream is not None:
                text = (tmp_path / "stream.out").read_text()
                lines = text.strip().splitlines()
                try:
                    stream_summary = json.loads(lines[-1]) if lines else {}
                except json.JSONDecodeError:
                    pass
                for match in STEP_LINE.finditer(text):
                    batch_steps.setdefault(match.group(1), []).append(float(match.group(2)))
            local_dynamodb.stop(port, tmp_path / "dynamodb")

    if not seen:
        raise SystemExit("bench/freshness: no session was reflected in DynamoDB")
    freshness = [f for _, f in seen]
    warm = writer.started + 60
    steady = sorted((landed, f) for landed, f in seen if landed >= warm) or sorted(seen)
    third = max(1, len(steady) // 3)
    first, last = [f for _, f in steady[:third]], [f for _, f in steady[-third:]]
    growing = statistics.median(last) > 1.5 * statistics.median(first) + 5.0
    duration = (writer.finished or time.time()) - writer.started
    summary = {
        "bench": "freshness", "rate": args.rate, "minutes": args.minutes, "trigger_s": args.interval,
        "events_per_s": round(writer.events / duration, 1), "events": writer.events,
        "sessions_measured": len(seen), "sessions_not_reflected": missing,
        "freshness_p50_s": round(percentile(freshness, 0.5), 2), "freshness_p99_s": round(percentile(freshness, 0.99), 2),
        "freshness_max_s": round(max(freshness), 2),
        "first_third_p50_s": round(statistics.median(first), 2), "last_third_p50_s": round(statistics.median(last), 2),
        "lag_growing": growing or missing > 0,
        "stream_batches": stream_summary.get("batches"), "stream_lines_read": stream_summary.get("lines_read"),
        "stream_items_written": stream_summary.get("items_written"),
        "micro_batch_step_mean_s": {k: round(statistics.mean(v), 2) for k, v in batch_steps.items()},
        "micro_batch_step_p90_s": {k: round(percentile(v, 0.9), 2) for k, v in batch_steps.items()},
        "cpus": os.cpu_count(), "seconds": round(time.monotonic() - started, 1),
    }
    log("bench/freshness: " + ", ".join(f"{k}={summary[k]}" for k in (
        "events_per_s", "sessions_measured", "freshness_p50_s", "freshness_p99_s", "freshness_max_s", "lag_growing")))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
