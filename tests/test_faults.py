"""kill -9 in the middle of a job, run it again: the lake ends exactly where an uninterrupted run
ends (issue #15, fault tests).

Each job is started through ./spark-submit.sh as its own process group with OFFER_AI_FAULT
naming a crash point (offer_ai.faults): the whole group gets SIGKILL there, JVM and Python
alike, so nothing cleans up. The rerun is the job's plain command. The reference is the same
input run once, without a fault, into a second lake. (The stream's crash points and the
DynamoDB writes' are in test_stream.py and test_export_features_job.py.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from chispa import assert_df_equality
from job_runner import load_job, run_in_process  # tests/ is on sys.path

REPO = Path(__file__).resolve().parents[1]
SESSIONIZE, BUILD = load_job("sessionize"), load_job("build_features")
LINEAGE = {"events": ("ingested_at", "source_file"), "events_quarantine": ("ingested_at",)}


def _killed(job: str, *argv: str, point: str) -> subprocess.CompletedProcess:
    done = subprocess.run(["./spark-submit.sh", f"jobs/{job}.py", *argv], cwd=REPO, capture_output=True, text=True,
                          timeout=600, start_new_session=True, env={**os.environ, "OFFER_AI_FAULT": point})
    assert done.returncode == -signal.SIGKILL, done.stdout[-3000:]
    return done


def _run(job, *argv: str) -> dict:
    code, summary, err = run_in_process(job, *argv)
    assert code == 0, err[-3000:]
    return summary


def _same_table(spark, a: Path, b: Path, name: str) -> None:
    left = spark.read.format("delta").load(str(a / name)).drop(*LINEAGE.get(name, ()))
    right = spark.read.format("delta").load(str(b / name)).drop(*LINEAGE.get(name, ()))
    assert left.count() == right.count() > 0, name
    assert_df_equality(left, right, ignore_row_order=True, ignore_column_order=True, ignore_nullable=True)


@pytest.fixture(scope="module")
def lakes(tmp_path_factory) -> tuple[Path, Path, dict]:
    """(lake sessionized after a crash between its events and its sessions, reference lake, rerun summary)."""
    raw = tmp_path_factory.mktemp("raw")
    done = subprocess.run([sys.executable, "jobs/generate_events.py", "--out", str(raw), "--users", "30", "--days", "10",
                           "--seed", "41", "--duplicates", "0.05", "--out-of-order", "0.05", "--malformed", "0.02"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    crashed, reference = tmp_path_factory.mktemp("crashed"), tmp_path_factory.mktemp("reference")
    _killed("sessionize", "--input", str(raw), "--lake", str(crashed), point="sessionize.after_events")
    assert (crashed / "events").exists() and not (crashed / "sessions").exists()
    rerun = _run(SESSIONIZE, "--input", str(raw), "--lake", str(crashed))
    _run(SESSIONIZE, "--input", str(raw), "--lake", str(reference))
    return crashed, reference, rerun


def test_sessionize_killed_between_events_and_sessions_ends_as_an_uninterrupted_run(spark, lakes):
    crashed, reference, rerun = lakes
    assert rerun["events_accepted"] == 0 and rerun["sessions_inserted"] > 0  # events were in; sessions were not
    for name in ("events", "events_quarantine", "sessions", "users"):
        _same_table(spark, crashed, reference, name)


def test_build_features_killed_in_the_middle_of_its_export_ends_as_an_uninterrupted_run(spark, lakes):
    crashed, reference, _ = lakes
    _killed("build_features", "--lake", str(crashed), "--run-id", "night", point="build_features.export_train_written")
    export = crashed / "exports" / "training" / "night"
    assert (export / "train").exists() and not (export / "manifest.json").exists()  # half an export, no manifest
    _run(BUILD, "--lake", str(crashed), "--run-id", "night")
    _run(BUILD, "--lake", str(reference), "--run-id", "night")
    _same_table(spark, crashed, reference, "training_examples")
    manifests = []
    for lake in (crashed, reference):
        folder = lake / "exports" / "training" / "night"
        manifest = json.loads((folder / "manifest.json").read_text())
        for key in ("created_at", "source_table", "files"):
            manifest.pop(key, None)
        manifests.append(manifest)
    assert manifests[0] == manifests[1]
    for split in ("train", "validation"):
        a = spark.read.parquet(str(crashed / "exports" / "training" / "night" / split / "parquet"))
        b = spark.read.parquet(str(reference / "exports" / "training" / "night" / split / "parquet"))
        assert a.count() == b.count() > 0
        assert_df_equality(a, b, ignore_row_order=True, ignore_nullable=True)
