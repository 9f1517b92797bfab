"""What the benches share: generating events, running a job through ./spark-submit.sh while
sampling the memory of its whole process tree, and timing the trivial Spark job."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
#: Events per player per day with the generator's defaults (measured: 132,562 for 2,000 x 8).
EVENTS_PER_USER_DAY = 8.3


@dataclass
class JobRun:
    """One job run: its summary (last stdout line), wall seconds and peak PSS of the process tree."""

    job: str
    summary: dict[str, Any]
    seconds: float
    peak_mib: float
    steps: dict[str, float] = field(default_factory=dict)


def generate(out: Path, users: int, days: int, seed: int, start_date: str = "2026-01-01") -> dict[str, Any]:
    """Generated raw events (1 % duplicates, 1 % late, 0.1 % junk), like the demo's."""
    command = [sys.executable, "jobs/generate_events.py", "--out", str(out), "--users", str(users), "--days", str(days),
               "--start-date", start_date, "--seed", str(seed), "--duplicates", "0.01", "--out-of-order", "0.01",
               "--malformed", "0.001", "--workers", str(os.cpu_count() or 1)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"generate_events failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def days_for(events: int, users: int) -> int:
    return max(1, math.ceil(events / (users * EVENTS_PER_USER_DAY)))


def _pss(process: psutil.Process) -> int:
    """Proportional set size: a child forked from the JVM shares its pages, and summing RSS would
    count the whole heap twice."""
    try:
        return process.memory_full_info().pss
    except (psutil.AccessDenied, AttributeError):
        return process.memory_info().rss


def run_job(job: str, args: list[str], spark_options: list[str] | None = None,
            env: dict[str, str] | None = None) -> JobRun:
    """Run jobs/<job>.py through ./spark-submit.sh (or the venv's python for a plain script path)."""
    if job.endswith(".py"):
        command = ["./spark-submit.sh", *(spark_options or []), job, *args]
        name = Path(job).stem
    else:
        command = ["./spark-submit.sh", *(spark_options or []), f"jobs/{job}.py", *args]
        name = job
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, **(env or {})})
    peak = [0]

    def sample() -> None:
        root = psutil.Process(process.pid)
        while process.poll() is None:
            try:
                tree = [root, *root.children(recursive=True)]
                peak[0] = max(peak[0], sum(_pss(p) for p in tree if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = process.communicate()
    sampler.join()
    seconds = time.monotonic() - started
    if process.returncode != 0:
        sys.exit(f"{name} failed ({process.returncode}):\n{stderr[-4000:]}")
    lines = stdout.strip().splitlines()
    summary = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
    return JobRun(name, summary, round(seconds, 2), round(peak[0] / 2**20), summary.get("steps", {}))


def trivial_job_seconds(repeat: int = 3, env: dict[str, str] | None = None) -> float:
    """The floor: `spark.range(10).count()` through ./spark-submit.sh (best of `repeat`)."""
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "trivial.py"
        script.write_text("from pyspark.sql import SparkSession\n"
                          "print(SparkSession.builder.getOrCreate().range(10).count())\n")
        return min(run_job(str(script), [], env=env).seconds for _ in range(repeat))


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
