"""Benchmark jobs/sessionize.py: generate N events, run the job through ./spark-submit.sh into a
fresh lake, print events/s and the peak memory of the whole process tree (JVM + Python).

    .venv/bin/python bench/sessionize.py                      # 1,000,000 events
    .venv/bin/python bench/sessionize.py --events 200000 --nightly

--nightly loads all days but the last, then times the last day alone with --run-date (the
incremental nightly run: new events plus the sessions and users they touch). The last stdout
line is a JSON summary; results are also written under bench/results/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
DAYS = 28
#: Events per user over 28 days with the generator's defaults (measured: 660,611 for 3,000 users).
EVENTS_PER_USER = 220.0


def generate(out: Path, events: int, seed: int) -> dict:
    users = max(1, math.ceil(events / EVENTS_PER_USER))
    command = [sys.executable, "jobs/generate_events.py", "--out", str(out), "--users", str(users), "--days", str(DAYS),
               "--seed", str(seed), "--duplicates", "0.02", "--out-of-order", "0.02", "--malformed", "0.005",
               "--workers", str(os.cpu_count() or 1)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _memory(process: psutil.Process) -> int:
    """Proportional set size: a child forked from the JVM (to run chmod, say) shares its pages,
    and summing RSS would count the whole heap twice."""
    try:
        return process.memory_full_info().pss
    except (psutil.AccessDenied, AttributeError):
        return process.memory_info().rss


def run_job(args: list[str], driver_memory: str) -> tuple[dict, float, float]:
    """Run the job; return (its summary, wall seconds, peak memory (PSS) of the process tree in MiB)."""
    command = ["./spark-submit.sh", "--driver-memory", driver_memory, "jobs/sessionize.py", *args]
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]

    def sample() -> None:
        root = psutil.Process(process.pid)
        while process.poll() is None:
            try:
                tree = [root, *root.children(recursive=True)]
                peak[0] = max(peak[0], sum(_memory(p) for p in tree if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = process.communicate()
    sampler.join()
    seconds = time.monotonic() - started
    if process.returncode != 0:
        sys.exit(f"sessionize failed ({process.returncode}):\n{stderr[-3000:]}")
    return json.loads(stdout.strip().splitlines()[-1]), seconds, peak[0] / 2**20


def report(name: str, summary: dict, seconds: float, peak_mib: float) -> dict:
    row = {
        "run": name, "lines_read": summary["lines_read"], "events_accepted": summary["events_accepted"],
        "sessions_inserted": summary["sessions_inserted"], "sessions_updated": summary["sessions_updated"],
        "wall_seconds": round(seconds, 1), "job_seconds": summary["seconds"],
        "lines_per_second": round(summary["lines_read"] / seconds), "peak_pss_mib": round(peak_mib),
    }
    print(f"{name}: {row['lines_read']:,} lines ({row['events_accepted']:,} new events) in {seconds:.1f} s wall "
          f"= {row['lines_per_second']:,} lines/s; peak memory {peak_mib:,.0f} MiB", file=sys.stderr)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000, help="events to generate (default 1,000,000)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--driver-memory", default="3g", help="spark-submit --driver-memory (default 3g)")
    parser.add_argument("--nightly", action="store_true", help="also time a one-day incremental run")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (default: a temporary folder)")
    args = parser.parse_args()

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-sessionize-"))
    raw, lake = work / "raw", work / "lake"
    shutil.rmtree(lake, ignore_errors=True)
    started = time.monotonic()
    truth = generate(raw, args.events, args.seed)
    print(f"generated {truth['events']:,} events ({truth['lines']:,} lines) in {time.monotonic() - started:.1f} s",
          file=sys.stderr)
    rows = []
    try:
        if args.nightly:
            last = (dt.date.fromisoformat(truth["start_date"]) + dt.timedelta(days=DAYS - 1)).isoformat()
            earlier = [str(p) for p in sorted(raw.glob("date=*")) if p.name != f"date={last}"]
            rows.append(report("initial", *run_job([a for p in earlier for a in ("--input", p)] + ["--lake", str(lake)],
                                                   args.driver_memory)))
            rows.append(report("nightly", *run_job(["--run-date", last, "--set", f"raw.root={raw}", "--lake", str(lake)],
                                                   args.driver_memory)))
        else:
            rows.append(report("full", *run_job(["--input", str(raw), "--lake", str(lake)], args.driver_memory)))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    result = {"bench": "sessionize", "events_generated": truth["events"], "lines_generated": truth["lines"],
              "cpus": os.cpu_count(), "driver_memory": args.driver_memory, "runs": rows}
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"sessionize-{truth['events']}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
