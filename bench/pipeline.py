"""Benchmark the whole pipeline: a from-scratch load and a nightly run over a short and a long history.

    .venv/bin/python bench/pipeline.py                         # ~1.7 M events, nightly over 2,000 players
    .venv/bin/python bench/pipeline.py --events 200000 --users 500

(a) From scratch: `--events` generated events (a week of play by up to 30,000 players) through
    sessionize + build_features + export_features into an empty lake and a fresh local DynamoDB.
(b) Nightly: `--users` players with 7 and with 56 days of history already loaded (each job run
    once over the history first, untimed), then one more day: sessionize --run-date +
    build_features + export_features, timed. The ratio of the two says whether a night costs
    what its day costs or what the whole history costs.
(c) Tiny: sessionize of a handful of lines into an empty lake, against the trivial Spark job
    (`spark.range(10).count()`) through the same ./spark-submit.sh: the fixed cost of a job.

The nightly and tiny jobs run as the Airflow DAG runs them, with OFFER_AI_JIT=quick (C1 only, for
short JVMs); the from-scratch load with the default tiered compiler.

Each job runs alone through ./spark-submit.sh --driver-memory 2g, as a user runs it; peak memory
is the PSS of the job's whole process tree (JVM and Python). It prints a table on stderr and, as
its last stdout line, a JSON object (also written to bench/results/pipeline-<events>.json).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import EVENTS_PER_USER_DAY, REPO, JobRun, days_for, generate, log, run_job, trivial_job_seconds  # noqa: E402

from offer_ai.online import local_dynamodb  # noqa: E402

FULL_LOAD_USERS = 30_000
#: The nightly and tiny runs are short jobs, run as the DAG runs them: C1 only (spark-submit.sh's
#: OFFER_AI_JIT=quick). The from-scratch load keeps the default tiered compiler, which its parse needs.
SHORT_JOB = {"OFFER_AI_JIT": "quick"}
START = dt.date(2026, 1, 1)


def pipeline(raw_args: list[str], lake: Path, endpoint: str, run_id: str, driver_memory: str,
             env: dict[str, str] | None = None) -> list[JobRun]:
    """sessionize (with `raw_args`) + build_features + export_features, in order, each timed."""
    common = ["--lake", str(lake)]
    submit = ["--driver-memory", driver_memory]
    store = ["--set", f"online_store.endpoint_url={endpoint}", "--set", "online_store.create_table=true"]
    return [
        run_job("sessionize", [*raw_args, *common], submit, env),
        run_job("build_features", [*common, "--run-id", run_id], submit, env),
        run_job("export_features", [*common, *store], submit, env),
    ]


def describe(name: str, runs: list[JobRun], events: int) -> dict:
    seconds = round(sum(r.seconds for r in runs), 2)
    row = {"run": name, "events": events, "seconds": seconds, "events_per_s": round(events / seconds) if seconds else None,
           "peak_mib": max(r.peak_mib for r in runs),
           "jobs": {r.job: {"seconds": r.seconds, "peak_mib": r.peak_mib, "steps": r.steps} for r in runs}}
    log(f"\n{name}: {events:,} events in {seconds:.1f} s = {row['events_per_s']:,} events/s, peak {row['peak_mib']:,} MiB")
    for r in runs:
        steps = ", ".join(f"{k} {v:.1f}" for k, v in r.steps.items())
        log(f"  {r.job:<16} {r.seconds:7.1f} s  {r.peak_mib:6,} MiB   {steps}")
    return row


def nightly(work: Path, users: int, history_days: int, seed: int, endpoint: str, driver_memory: str) -> dict:
    """Load `history_days` untimed, then time the pipeline for the next day."""
    raw, lake = work / f"raw-{history_days}d", work / f"lake-{history_days}d"
    truth = generate(raw, users, history_days + 1, seed)
    last = (START + dt.timedelta(days=history_days)).isoformat()
    history = [str(p) for p in sorted(raw.glob("date=*")) if p.name != f"date={last}"]
    log(f"nightly over {history_days} days: loading the history ({len(history)} day folders) ...")
    pipeline([a for p in history for a in ("--input", p)], lake, endpoint, "history", driver_memory)
    day_lines = sum(1 for f in (raw / f"date={last}").glob("*.jsonl*") for _ in open(f, "rb"))
    runs = pipeline(["--run-date", last, "--set", f"raw.root={raw}"], lake, endpoint, last.replace("-", ""),
                    driver_memory, SHORT_JOB)
    row = describe(f"nightly over {history_days} days", runs, day_lines)
    row["history_events"] = truth["events"] - day_lines
    return row


def tiny(work: Path, driver_memory: str) -> dict:
    """A 119-line day into an empty lake, beside the trivial Spark job."""
    raw = work / "raw-tiny"
    generate(raw, 2, 1, 3)
    lines = sum(1 for f in raw.glob("date=*/*.jsonl*") for _ in open(f, "rb"))
    trivial = trivial_job_seconds(env=SHORT_JOB)
    job = run_job("sessionize", ["--input", str(raw), "--lake", str(work / "lake-tiny")], ["--driver-memory", driver_memory],
                  SHORT_JOB)
    log(f"\ntiny: sessionize of {lines} lines {job.seconds:.1f} s, trivial Spark job {trivial:.1f} s "
        f"(ratio {job.seconds / trivial:.2f})")
    return {"lines": lines, "sessionize_s": job.seconds, "trivial_s": trivial, "ratio": round(job.seconds / trivial, 2),
            "steps": job.steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_700_000, help="events of the from-scratch load (default 1.7 M)")
    parser.add_argument("--users", type=int, default=2_000, help="players of the nightly runs (default 2,000)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--driver-memory", default="2g", help="spark-submit --driver-memory (default 2g)")
    parser.add_argument("--skip", action="append", default=[], choices=("full", "nightly", "tiny"),
                        help="leave a part out (repeatable)")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (default: a temporary folder)")
    args = parser.parse_args()

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    work.mkdir(parents=True, exist_ok=True)
    port = local_dynamodb.free_port()
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_EC2_METADATA_DISABLED": "true"})
    server = local_dynamodb.start(port, work / "dynamodb")
    result: dict = {"bench": "pipeline", "machine": f"{os.cpu_count()} cores, {platform.machine()}, "
                    f"{round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB",
                    "master": "local[2]", "driver_memory": args.driver_memory,
                    "jit": {"full_load": "peak", "nightly": SHORT_JOB["OFFER_AI_JIT"], "tiny": SHORT_JOB["OFFER_AI_JIT"]}}
    started = time.monotonic()
    try:
        if "tiny" not in args.skip:
            result["tiny"] = tiny(work, args.driver_memory)
        if "full" not in args.skip:
            # a week of play by as many players as it takes (30,000 for the default 1.7 M events)
            players = max(100, min(FULL_LOAD_USERS, round(args.events / (7 * EVENTS_PER_USER_DAY))))
            days = days_for(args.events, players)
            raw = work / "raw-full"
            truth = generate(raw, players, days, args.seed)
            log(f"from scratch: {truth['lines']:,} lines ({truth['events']:,} events), {players:,} players x {days} days")
            runs = pipeline(["--input", str(raw)], work / "lake-full", server.endpoint_url, "full", args.driver_memory)
            result["full_load"] = describe("from scratch", runs, truth["events"])
            result["full_load"]["lines"] = truth["lines"]
            shutil.rmtree(raw, ignore_errors=True)
            shutil.rmtree(work / "lake-full", ignore_errors=True)
        if "nightly" not in args.skip:
            result["nightly_7d"] = nightly(work, args.users, 7, args.seed, server.endpoint_url, args.driver_memory)
            result["nightly_56d"] = nightly(work, args.users, 56, args.seed, server.endpoint_url, args.driver_memory)
    finally:
        local_dynamodb.stop(port, work / "dynamodb")
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    full, n7, n56 = result.get("full_load", {}), result.get("nightly_7d", {}), result.get("nightly_56d", {})
    result.update({
        "events": full.get("events"),
        "full_load_s": full.get("seconds"),
        "events_per_s": full.get("events_per_s"),
        "sessionize_lines_per_s": round(full["lines"] / full["jobs"]["sessionize"]["seconds"]) if full else None,
        "sessionize_build_features_s": round(full["jobs"]["sessionize"]["seconds"] + full["jobs"]["build_features"]["seconds"], 2) if full else None,
        "nightly_7d_s": n7.get("seconds"),
        "nightly_56d_s": n56.get("seconds"),
        "nightly_ratio": round(n56["seconds"] / n7["seconds"], 2) if n7 and n56 else None,
        "nightly_sessionize_build_features_56d_s": round(n56["jobs"]["sessionize"]["seconds"] + n56["jobs"]["build_features"]["seconds"], 2) if n56 else None,
        "tiny_ratio": result.get("tiny", {}).get("ratio"),
        "trivial_job_s": result.get("tiny", {}).get("trivial_s"),
        "peak_mib": max([x.get("peak_mib", 0) for x in (full, n7, n56)] or [0]),
        "bench_seconds": round(time.monotonic() - started),
    })
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"pipeline-{args.events}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
