"""Benchmark the synthetic event generator: events/s and events/s per core at ~1M events.

Calibrates users from a small run (events per user over --days), generates into a temporary
folder, and reports wall-clock and CPU throughput. The target is >= 200k events/s per core.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import tempfile
import time
from pathlib import Path

from offer_ai.model.offers import load_offers
from offer_ai.sim import GeneratorOptions, generate


def _cpu_seconds() -> float:
    """CPU time of this process and its (finished) worker processes."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000, help="target number of events (default 1M)")
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--messy", type=float, default=0.0, help="duplicate, out-of-order and malformed fraction")
    parser.add_argument("--gzip", action="store_true")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", help="keep the output here (default: a temporary folder, removed)")
    args = parser.parse_args()

    offers = tuple(load_offers(Path(__file__).resolve().parents[1] / "conf" / "offers.yaml"))
    with tempfile.TemporaryDirectory(prefix="offer-ai-bench-") as tmp:

        def options(out: Path, users: int) -> GeneratorOptions:
            return GeneratorOptions(
                out=str(out), offers=offers, users=users, days=args.days, seed=args.seed, gzip=args.gzip,
                workers=args.workers, duplicate_fraction=args.messy, out_of_order_fraction=args.messy,
                malformed_fraction=args.messy,
            )

        probe = generate(options(Path(tmp) / "probe", 200))
        users = max(1, math.ceil(args.events / (probe["events"] / 200)))
        out = Path(args.out) if args.out else Path(tmp) / "bench"
        cpu, wall = _cpu_seconds(), time.perf_counter()
        summary = generate(options(out, users))
        wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu

    events = summary["events"]
    result = {
        "users": users,
        "days": args.days,
        "workers": summary["workers"],
        "gzip": args.gzip,
        "messy_fraction": args.messy,
        "events": events,
        "lines_written": summary["lines"],
        "files": summary["files"],
        "wall_seconds": round(wall, 3),
        "cpu_seconds": round(cpu, 3),
        "events_per_second": round(events / wall),
        "events_per_second_per_core": round(events / wall / summary["workers"]),
        "events_per_cpu_second": round(events / cpu),
    }
    print(
        f"{events:,} events ({summary['lines']:,} lines, {summary['files']} files) from {users:,} users x "
        f"{args.days} days in {wall:.2f} s on {summary['workers']} worker(s): "
        f"{result['events_per_second']:,} events/s, {result['events_per_second_per_core']:,} events/s per core, "
        f"{result['events_per_cpu_second']:,} events per CPU second"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
