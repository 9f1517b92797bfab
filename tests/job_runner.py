"""Run a job's own code in this process, as its CLI does: faster than a subprocess per test
(no new JVM), and the same parser, settings, main and exit codes."""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.util
import io
import json
from pathlib import Path
from typing import Any

import pytest

from offer_ai.cli import run_job

REPO = Path(__file__).resolve().parents[1]


def load_job(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"{name}_job", REPO / "jobs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_in_process(job: Any, *argv: str) -> tuple[int, dict | None, str]:
    """(exit code, the JSON summary of the last stdout line or None, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.raises(SystemExit) as done:
        run_job(job.build_parser(), job.main, list(argv))
    lines = out.getvalue().strip().splitlines()
    return done.value.code, (json.loads(lines[-1]) if lines else None), err.getvalue()


def sessionized_lake(spark: Any, raw: Path, root: Path, ingested_at: "dt.datetime") -> None:
    """`events` and `sessions` of a fresh lake built from `raw` by sessionize's own transforms.

    A fresh lake needs none of the job's incremental MERGEs (its own tests cover those), and this
    is about twice as fast as the job in-process.
    """
    from offer_ai.ingest.events import accepted_events, distinct_events, parse_lines
    from offer_ai.ingest.feature_spec import load_feature_spec
    from offer_ai.ingest.raw_files import list_input_files, read_lines
    from offer_ai.ingest.sessions import build_sessions, identity_events

    features = load_feature_spec(REPO / "conf" / "features.yaml")
    parsed = parse_lines(read_lines(spark, list_input_files(spark, [str(raw)])), ingested_at)
    distinct_events(accepted_events(parsed)).write.format("delta").partitionBy("event_date").save(str(root / "events"))
    events = spark.read.format("delta").load(str(root / "events"))
    build_sessions(events, identity_events(events, features), features, "session_id", 30) \
        .write.format("delta").save(str(root / "sessions"))
