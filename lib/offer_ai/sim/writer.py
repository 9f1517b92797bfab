"""The event writer: users split over worker processes, lines into per-day part files, a summary.

Raw output: `<out>/date=YYYY-MM-DD/part-WWWWW.jsonl[.gz]`, one JSON object per line, the folder
being the (UTC) day the line arrived; the truth in `<out>/_truth/decisions-WWWWW.jsonl`; the exact
summary in `<out>/_generator.json`. Work is split over processes by contiguous user shards, and
each user's random streams derive from (seed, user index), so the content does not depend on the
number of workers and the bytes are identical for the same options.
"""

from __future__ import annotations

import gzip
import multiprocessing
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import IO, Any, cast

import orjson

from offer_ai.errors import UserError
from offer_ai.model.offers import offer_key
from offer_ai.sim.clock import Clock, extend_by_day
from offer_ai.sim.messiness import MALFORMED_KINDS, write_messy
from offer_ai.sim.options import GeneratorOptions
from offer_ai.sim.simulator import EVENT_TYPES, Simulator, UserStream
from offer_ai.sim.truth import TRUTH_DIR

MANIFEST = "_generator.json"
_TRUTH_FLUSH_RECORDS = 20_000


class PartWriter:
    """One worker's part file per date folder, opened lazily, buffered, deterministic bytes."""

    FLUSH_LINES = 100_000

    def __init__(self, out: Path, worker: int, clock: Clock, use_gzip: bool) -> None:
        self.out, self.worker, self.clock, self.use_gzip = out, worker, clock, use_gzip
        self.buffers: list[list[str]] = [[] for _ in range(clock.days)]
        self.files: dict[int, IO[bytes]] = {}
        self.raw_files: list[IO[bytes]] = []
        self.pending = 0
        self.lines = 0

    def add_clean(self, times: list[int], lines: list[str]) -> None:
        """A user's lines in time order, each into the folder of its own day."""
        extend_by_day(self.buffers, self.clock.t0, times, lines, 0, len(times))
        self.added(len(lines))

    def added(self, n: int) -> None:
        """Account for n lines appended to `buffers`; flush when enough are pending."""
        self.pending += n
        self.lines += n
        if self.pending >= self.FLUSH_LINES:
            self.flush()

    def _file(self, day: int) -> IO[bytes]:
        handle = self.files.get(day)
        if handle is None:
            folder = self.out / self.clock.folders[day]
            folder.mkdir(parents=True, exist_ok=True)
            suffix = ".jsonl.gz" if self.use_gzip else ".jsonl"
            raw: IO[bytes] = open(folder / f"part-{self.worker:05d}{suffix}", "wb")  # noqa: SIM115 - closed in close()
            self.raw_files.append(raw)
            # mtime=0 and no file name in the header: the same lines give the same bytes
            handle = (
                cast(IO[bytes], gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=3))
                if self.use_gzip
                else raw
            )
            self.files[day] = handle
        return handle

    def flush(self) -> None:
        for day, buffer in enumerate(self.buffers):
            if buffer:
                self._file(day).write("".join(buffer).encode())
                buffer.clear()
        self.pending = 0

    def close(self) -> int:
        """Flush and close every file; return how many part files were written."""
        self.flush()
        if self.use_gzip:
            for handle in self.files.values():
                handle.close()
        for raw in self.raw_files:
            raw.close()
        return len(self.files)


# --------------------------------------------------------------------------------------------
# The summary counts
# --------------------------------------------------------------------------------------------


def _empty_counts() -> dict[str, Any]:
    return {
        "events": 0,
        "events_by_type": dict.fromkeys(EVENT_TYPES, 0),
        "lines": 0,
        "duplicates": 0,
        "duplicates_in_later_folder": 0,
        "out_of_order": 0,
        "late_arrivals": 0,
        "malformed": 0,
        "malformed_by_kind": dict.fromkeys(MALFORMED_KINDS, 0),
        "sessions": 0,
        "sessions_crossing_midnight": 0,
        "users_with_events": 0,
        "decisions": 0,
        "offer_purchases": 0,
        "revenue": 0,
        "identity_changes": 0,
        "event_times_with_offset": 0,
        "files": 0,
    }


def _merge(into: dict[str, Any], other: Mapping[str, Any]) -> None:
    for key, value in other.items():
        if isinstance(value, dict):
            _merge(into[key], value)
        else:
            into[key] += value


def _count_user(counts: dict[str, Any], stream: UserStream) -> None:
    """The valid events, decisions and revenue (in cents) of one user."""
    if stream.times:
        counts["users_with_events"] += 1
    counts["events"] += len(stream.times)
    counts["decisions"] += len(stream.decisions)
    counts["offer_purchases"] += sum(1 for d in stream.decisions if d["offer_purchased"])
    counts["revenue"] += sum(c for _, c in stream.purchases)


# --------------------------------------------------------------------------------------------
# Shards and the whole run
# --------------------------------------------------------------------------------------------


def shard_bounds(users: int, workers: int, worker: int) -> tuple[int, int]:
    """Contiguous user range [lo, hi) of one worker."""
    return users * worker // workers, users * (worker + 1) // workers


def run_shard(task: tuple[GeneratorOptions, int]) -> dict[str, Any]:
    """One worker: simulate its users, stream their lines into its part files and truth file."""
    options, worker = task
    sim = Simulator(options)
    clock = sim.clock
    out = Path(options.out)
    counts = _empty_counts()
    writer = PartWriter(out, worker, clock, options.gzip)
    with open(out / TRUTH_DIR / f"decisions-{worker:05d}.jsonl", "wb") as truth:
        truth_buffer: list[bytes] = []
        lo, hi = shard_bounds(options.users, options.workers, worker)
        for index in range(lo, hi):
            stream = sim.simulate_user(index, counts)
            _count_user(counts, stream)
            if options.messy:
                writer.added(write_messy(stream.times, stream.lines, options, clock, index, writer.buffers, counts))
            else:
                writer.add_clean(stream.times, stream.lines)
            truth_buffer.extend(sim.records.finish(stream.decisions, stream.purchases))
            if len(truth_buffer) > _TRUTH_FLUSH_RECORDS:
                truth.write(b"".join(truth_buffer))
                truth_buffer.clear()
        truth.write(b"".join(truth_buffer))
    counts["files"] = writer.close()
    counts["lines"] = writer.lines
    counts["malformed"] = sum(counts["malformed_by_kind"].values())
    return counts


def _clear_previous(out: Path) -> None:
    """Remove a previous generation's files (only names this generator writes): reruns replace."""
    for folder in out.glob("date=*"):
        if folder.is_dir():
            for part in list(folder.glob("part-*.jsonl")) + list(folder.glob("part-*.jsonl.gz")):
                part.unlink()
            if not any(folder.iterdir()):
                folder.rmdir()
    for truth in (out / TRUTH_DIR).glob("decisions-*.jsonl"):
        truth.unlink()
    (out / MANIFEST).unlink(missing_ok=True)


def _run_shards(options: GeneratorOptions) -> list[dict[str, Any]]:
    """Each worker's counts; one worker runs in this process, more in spawned processes."""
    tasks = [(options, w) for w in range(options.workers)]
    if options.workers == 1:
        return [run_shard(tasks[0])]
    with multiprocessing.get_context("spawn").Pool(options.workers) as pool:
        return pool.map(run_shard, tasks, chunksize=1)


def generate(options: GeneratorOptions) -> dict[str, Any]:
    """Write the raw events and the truth; return the exact summary (also in `<out>/_generator.json`).

    Reconciliation: lines == events + duplicates + malformed.
    """
    options.validate()
    out = Path(options.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder.")
    out.mkdir(parents=True, exist_ok=True)
    _clear_previous(out)
    (out / TRUTH_DIR).mkdir(exist_ok=True)
    workers = min(options.workers, options.users)
    if workers != options.workers:
        options = replace(options, workers=workers)
    counts = _empty_counts()
    for result in _run_shards(options):
        _merge(counts, result)
    counts["revenue"] = counts["revenue"] / 100.0
    summary: dict[str, Any] = {
        "out": str(out),
        "users": options.users,
        "days": options.days,
        "start_date": options.start_date.isoformat(),
        "seed": options.seed,
        "workers": workers,
        "gzip": options.gzip,
        "duplicate_fraction": options.duplicate_fraction,
        "out_of_order_fraction": options.out_of_order_fraction,
        "malformed_fraction": options.malformed_fraction,
        "offers": [offer_key(o) for o in options.offers],
        **counts,
    }
    (out / MANIFEST).write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")
    return summary
