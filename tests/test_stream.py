"""sessionize --trigger (issue #12): the raw landing folder as a stream of files.

Each test builds its lake from a folder of generated files by the stream, and compares every
table with one batch run over the same files into a fresh lake (the independent result):
nothing may be lost, doubled or computed differently because the files came in pieces, late,
or across a crash.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import psutil
import pytest
import yaml
from chispa import assert_df_equality
from job_runner import load_job, run_in_process  # tests/ is on sys.path
from pyspark.sql import functions as F

from offer_ai.config import OnlineStoreSettings
from offer_ai.features.training import training_examples
from offer_ai.features.window_spec import WindowSpec, load_window_spec
from offer_ai.ingest.feature_spec import load_feature_spec
from offer_ai.online.reader import OnlineFeatureReader

REPO = Path(__file__).resolve().parents[1]
SESSIONIZE, EXPORT = load_job("sessionize"), load_job("export_features")
TABLES = ("events", "events_quarantine", "sessions", "users")
LINEAGE = {"events": ("ingested_at", "source_file"), "events_quarantine": ("ingested_at",),
           "online_features": ("written_at", "expires_at")}
DECISION = "__decision__"


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("generated")
    done = subprocess.run([sys.executable, "jobs/generate_events.py", "--out", str(out), "--users", "40", "--days", "5",
                           "--seed", "31", "--duplicates", "0.05", "--out-of-order", "0.05", "--malformed", "0.02",
                           "--workers", "2"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


@pytest.fixture
def store(dynamodb_endpoint) -> OnlineStoreSettings:
    """A new table on the test server for each test (the jobs create it)."""
    return OnlineStoreSettings(table=f"stream_{uuid.uuid4().hex[:12]}", region="us-east-1",
                               endpoint_url=dynamodb_endpoint, create_table=True, ttl_days=30)


def _store_args(store: OnlineStoreSettings) -> list[str]:
    return ["--set", f"online_store.endpoint_url={store.endpoint_url}", "--set", f"online_store.table={store.table}",
            "--set", "online_store.create_table=true", "--set", "online_store.region=us-east-1"]


def _land(generated: Path, raw: Path, days: range) -> list[Path]:
    """Copy the day folders into the landing folder, as an uploader would."""
    landed = []
    for folder in sorted(generated.glob("date=*"))[days.start:days.stop]:
        target = raw / folder.name
        target.mkdir(parents=True, exist_ok=True)
        for f in folder.glob("*.jsonl"):
            shutil.copy(f, target / f.name)
            landed.append(target / f.name)
    return landed


def _batch_reference(raw: Path, lake: Path, store: OnlineStoreSettings | None = None) -> None:
    """One batch sessionize over every file into a fresh lake (and, given a store, export_features)."""
    code, _, err = run_in_process(SESSIONIZE, "--input", str(raw), "--lake", str(lake))
    assert code == 0, err[-2000:]
    if store is not None:
        code, _, err = run_in_process(EXPORT, "--lake", str(lake), *_store_args(store))
        assert code == 0, err[-2000:]


def _assert_same_tables(spark, lake: Path, reference: Path, names: tuple[str, ...] = TABLES) -> None:
    for name in names:
        a = spark.read.format("delta").load(str(lake / name)).drop(*LINEAGE.get(name, ()))
        b = spark.read.format("delta").load(str(reference / name)).drop(*LINEAGE.get(name, ()))
        assert a.count() == b.count() > 0, name
        assert_df_equality(a, b, ignore_row_order=True, ignore_column_order=True, ignore_nullable=True)


def _items(store: OnlineStoreSettings) -> dict[str, dict]:
    client = boto3.client("dynamodb", endpoint_url=store.endpoint_url, region_name="us-east-1")
    pages = client.get_paginator("scan").paginate(TableName=store.table)
    return {i["user_id"]["S"]: {k: v for k, v in i.items() if k != "expires_at"} for page in pages for i in page["Items"]}


def _stream(raw: Path, lake: Path, store: OnlineStoreSettings, *extra: str) -> dict:
    code, summary, err = run_in_process(SESSIONIZE, "--trigger", "available-now", "--set", f"raw.root={raw}",
                                        "--lake", str(lake), *_store_args(store), *extra)
    assert code == 0, err[-3000:]
    return summary


def _close(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(float(a), float(b), rel_tol=0, abs_tol=1e-9)
    return a == b


def _training_spec(tmp: Path, condition: str) -> WindowSpec:
    """conf/features.yaml with every session meeting `condition` an anchor, decided at its start."""
    tree = yaml.safe_load((REPO / "conf" / "features.yaml").read_text())
    tree["anchor"].update({"condition": condition, "decision_time": "session_start", "max_per_user_per_day": None})
    path = tmp / f"features-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(tree))
    return load_window_spec(load_feature_spec(path))


def _assert_parity(spark, lake: Path, store: OnlineStoreSettings, tmp: Path) -> int:
    """Every item, read as decide_offers and the service read it, equals the training row that
    build_features' code computes for a decision at that moment (DESIGN §6):
    - in a new session: an anchor session starting at the item's as_of (identity as of then);
    - inside the player's latest session, which is under way: that session as the anchor (its
      own events are not its "last session")."""
    items = _items(store)
    sessions = spark.read.format("delta").load(str(lake / "sessions"))
    events = spark.read.format("delta").load(str(lake / "events"))
    as_of = spark.createDataFrame([(u, dt.datetime.fromisoformat(i["as_of"]["S"].replace("Z", "+00:00")))
                                   for u, i in items.items()], "user_id string, as_of timestamp")
    latest = (sessions.join(as_of, "user_id").where(F.col("session_start") < F.col("as_of"))
              .groupBy("user_id").agg(F.max(F.struct("session_start", "session_id")).alias("s"))
              .select("user_id", F.col("s.session_id").alias("session_id")))
    latest_ids = {r["user_id"]: r["session_id"] for r in latest.collect()}
    assert set(latest_ids) == set(items)  # every player who played has an item

    decision = as_of.select("user_id", F.lit(DECISION).alias("session_id"), F.col("as_of").alias("session_start"),
                            F.col("as_of").alias("session_end"))
    with_decisions = sessions.unionByName(decision, allowMissingColumns=True)
    new_rows = training_examples(with_decisions, events, _training_spec(tmp, f"session_id = '{DECISION}'"), None)
    new_session = {r["user_id"]: r.asDict() for r in new_rows.collect()}
    all_rows = training_examples(sessions, events, _training_spec(tmp, "true"), None)
    in_session = {r["user_id"]: r.asDict() for r in all_rows.join(latest, ["user_id"]).where(
        F.col("anchor_session_id") == F.col("session_id")).collect()}

    windows = ("last_session_games_played", "last_session_win_ratio", "prev_week_purchase_amount")
    with OnlineFeatureReader(store) as reader:
        fresh = reader.get_many(items)
        ongoing = reader.get_many(items, latest_ids)
    differ = 0
    for user in items:
        for name in ("country", "facebook_connected", *windows):
            assert _close(fresh[user][name], new_session[user][name]), ("new session", user, name)
        for name in windows:
            assert _close(ongoing[user][name], in_session[user][name]), ("in session", user, name)
        differ += any(not _close(fresh[user][n], ongoing[user][n]) for n in windows)
    assert differ > 0  # the two moments are not the same values, so both were checked
    return len(items)


def test_a_multi_batch_stream_serves_the_values_training_computes_and_takes_each_file_once(
        spark, generated, store, tmp_path):
    raw, lake = tmp_path / "raw", tmp_path / "lake"
    first = _land(generated, raw, range(0, 3))
    summary = _stream(raw, lake, store, "--set", "sessionize.max_files_per_trigger=2")
    assert summary["files"] == len(first) and summary["batches"] == -(-len(first) // 2) and summary["reconciled"]
    assert summary["items_written"] > 0
    _assert_parity(spark, lake, store, tmp_path)
    assert _stream(raw, lake, store)["batches"] == 0  # nothing new: nothing read
    later = _land(generated, raw, range(3, 5))
    late = later.pop()  # one of the last day's files lands in the second day's folder, after that day ran
    moved = raw / sorted(p.name for p in raw.glob("date=*"))[1] / f"late-{late.name}"
    late.rename(moved)
    summary = _stream(raw, lake, store, "--set", "sessionize.max_files_per_trigger=2")
    assert summary["files"] == len(later) + 1 and summary["batches"] == -(-(len(later) + 1) // 2)
    assert summary["online_skipped"] == 0
    assert _assert_parity(spark, lake, store, tmp_path) == 40
    _batch_reference(raw, tmp_path / "reference")
    _assert_same_tables(spark, lake, tmp_path / "reference")


def test_a_stream_killed_in_the_middle_of_a_batch_restarts_with_nothing_lost_or_doubled(
        spark, generated, store, dynamodb_endpoint, tmp_path):
    """kill -9 after the batch's events are stored and before its sessions: the restart replays
    it. (A kill in the middle of the DynamoDB writes is test_export_features_job's.)"""
    point = "sessionize.after_events"
    raw, lake = tmp_path / "raw", tmp_path / "lake"
    _land(generated, raw, range(0, 5))
    command = ["./spark-submit.sh", "jobs/sessionize.py", "--trigger", "available-now", "--set", f"raw.root={raw}",
               "--lake", str(lake), *_store_args(store)]
    killed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, start_new_session=True,
                            env={**os.environ, "OFFER_AI_FAULT": point})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]  # a power cut in the middle of the batch
    assert (lake / "events").exists() and not (lake / "sessions").exists()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["batches"] == 1 and summary["events_accepted"] == 0  # the batch again: every event already there
    reference = OnlineStoreSettings(table=f"reference_{uuid.uuid4().hex[:12]}", region="us-east-1",
                                    endpoint_url=dynamodb_endpoint, create_table=True, ttl_days=30)
    _batch_reference(raw, tmp_path / "reference", reference)
    _assert_same_tables(spark, lake, tmp_path / "reference", (*TABLES, "online_features"))
    assert _items(store) == _items(reference)


def test_a_processing_time_stream_keeps_taking_new_files_until_it_is_stopped(spark, generated, store, tmp_path):
    raw, lake = tmp_path / "raw", tmp_path / "lake"
    _land(generated, raw, range(0, 2))
    # spark-submit hands the Python driver's stderr to its own stdout: progress and summary share it
    out = tmp_path / "stream.out"
    with open(out, "w") as stdout:
        process = subprocess.Popen(
            ["./spark-submit.sh", "jobs/sessionize.py", "--trigger", "processing-time=1s", "--set", f"raw.root={raw}",
             "--lake", str(lake), *_store_args(store)], cwd=REPO, stdout=stdout, stderr=subprocess.DEVNULL, text=True)
    try:
        _wait_for(lambda: out.read_text().count("micro-batch") >= 1, process)
        _land(generated, raw, range(2, 5))
        _wait_for(lambda: out.read_text().count("micro-batch") >= 2, process)
        # the driver's Python process is the one that stops the query cleanly (the JVM above it
        # would just exit): SIGTERM goes to it, as the README says
        # (by its command line: Spark's Python workers are the JVM's children too)
        driver = next(p for p in psutil.Process(process.pid).children(recursive=True)
                      if _runs_sessionize(p))
        driver.send_signal(signal.SIGTERM)
        assert process.wait(timeout=300) == 0, out.read_text()[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
    summary = json.loads((tmp_path / "stream.out").read_text().strip().splitlines()[-1])
    assert summary["batches"] >= 2 and summary["trigger"] == "processing-time=1 seconds"
    assert summary["items_written"] >= len(_items(store)) > 0
    _batch_reference(raw, tmp_path / "reference")
    _assert_same_tables(spark, lake, tmp_path / "reference")


def _runs_sessionize(process: psutil.Process) -> bool:
    """The job's driver (not one of Spark's Python workers; a finished one may be a zombie)."""
    try:
        return "python" in process.name() and any(a.endswith("jobs/sessionize.py") for a in process.cmdline())
    except psutil.Error:
        return False


def _wait_for(condition, process, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, "the stream ended early"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(1)


def test_a_trigger_is_either_available_now_or_a_processing_time():
    from offer_ai.ingest.stream import parse_trigger

    assert parse_trigger("available-now") == "available-now"
    assert parse_trigger("processing-time=30s") == "processing-time=30 seconds"
    assert parse_trigger("processing-time=2m") == "processing-time=120 seconds"
    for bad in ("processing-time=0s", "once", "processing-time=fast"):
        with pytest.raises(ValueError):
            parse_trigger(bad)
