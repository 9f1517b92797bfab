"""The nightly run on a Spark standalone cluster against an s3a:// lake equals a local[2] run (#14).

What `local[*]` hides: code that works only because the driver and executors share a process,
paths that work only on a local file system, Delta on object storage. So, with the README's
commands: `make cluster-start` (a master and two workers on 127.0.0.1: every executor its own
JVM), the moto server of the other tests answering S3 as well as DynamoDB, generated raw files
uploaded to s3a:// by scripts/local_s3.py, then ./spark-submit.sh --master spark://…:
sessionize of the first days, sessionize --run-date of one more day, build_features,
export_features. The same files on local disk go through the same jobs in local[2] (this
process's session). Every table, the training export (manifest and part files) and the
DynamoDB items must be equal; only lineage (ingest time, source file URI, write time, TTL)
differs by design. train_sagemaker then starts a job on moto that reads that export in place.

Delta's DynamoDB log store (storage.delta_log_store=dynamodb) does not run here: its artifact,
io.delta:delta-storage-s3-dynamodb, is not served by the package registry these machines
reach, so tests/test_cluster_config.py checks its configuration and start-up error instead.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from job_runner import load_job, run_in_process  # tests/ is on sys.path
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType

from offer_ai.config import load_settings
from offer_ai.online.local_dynamodb import free_port
from offer_ai.spark import storage_conf

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore:sagemaker.train.configs has been moved:DeprecationWarning")]

REPO = Path(__file__).resolve().parents[1]
USERS, DAYS = 20, 9  # a label needs 7 days after its decision: 9 days leave two days of complete rows
FIRST_DAYS, LAST_DAY = "date=2026-01-0[1-8]", "2026-01-09"
RUN_ID = "20260109"
TABLES = ("events", "events_quarantine", "sessions", "users", "training_examples", "online_features")
#: When and from which copy a row arrived or was written: different between two runs by design.
#: An event sent twice keeps one copy's source_file (which one depends on partitioning), and a
#: quarantined line's key hashes its file's URI; the quarantine's source_file is compared
#: relative to the raw root, so a path lost or mangled on s3a:// still shows.
LINEAGE = {"events": ("ingested_at", "source_file"), "events_quarantine": ("ingested_at", "quarantine_key"),
           "online_features": ("written_at", "expires_at")}
#: Summary fields that name a place, a moment or how the work was split rather than a result.
VOLATILE = {"seconds", "steps", "inputs", "lake", "ingested_at", "training_examples", "export", "export_files",
            "online_features", "table", "table_state", "items_per_second", "requests", "max_request_items"}


def _make(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # --no-print-directory: under `make test` a nested make would print "Leaving directory" last.
    return subprocess.run(["make", "--no-print-directory", f"CLUSTER_DIR={state}", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=600)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def cluster(dynamodb_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`make cluster-start` on a free port; `make cluster-stop` after, which must leave no daemon."""
    state = tmp_path_factory.mktemp("cluster")
    port = free_port()
    started = _make(state, "cluster-start", f"SPARK_MASTER_PORT={port}")
    pids = json.loads((state / "cluster.json").read_text())["pids"] if (state / "cluster.json").exists() else {}
    try:
        assert started.returncode == 0, (started.stdout + started.stderr)[-3000:]
        assert started.stdout.strip().splitlines()[-1] == f"spark://127.0.0.1:{port}"  # the last line: the URL
        assert set(pids) == {"master", "worker-1", "worker-2"}
        yield {"url": f"spark://127.0.0.1:{port}", "state": state}
    finally:
        stopped = _make(state, "cluster-stop")
        assert stopped.returncode == 0, stopped.stderr
        assert not [name for name, pid in pids.items() if _alive(pid)], "cluster-stop left daemons running"


def _submit(master: str, job: str, *args: str) -> dict[str, Any]:
    """One job as the README runs it: ./spark-submit.sh --master spark://… jobs/<job>.py …"""
    done = subprocess.run(["./spark-submit.sh", "--master", master, f"jobs/{job}.py", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    quiet = "\n".join(line for line in done.stderr.splitlines() if " INFO " not in line)  # Spark's start-up chatter
    assert done.returncode == 0, f"{job} on the cluster failed:\n{quiet[-5000:]}\n{done.stdout[-1000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def _local(job: str, *args: str) -> dict[str, Any]:
    code, summary, err = run_in_process(load_job(job), *args)
    assert code == 0, f"{job} in local[2] failed:\n{err[-3000:]}"
    assert summary is not None
    return summary


@pytest.fixture(scope="module")
def runs(spark: SparkSession, cluster: dict[str, Any], dynamodb_endpoint: str,
         tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The nightly sequence twice on the same generated files: on the cluster into s3a://, and in local[2] on disk."""
    tag = uuid.uuid4().hex[:8]
    raw = tmp_path_factory.mktemp("raw")
    _local("generate_events", "--out", str(raw), "--users", str(USERS), "--days", str(DAYS),
           "--duplicates", "0.03", "--out-of-order", "0.03", "--malformed", "0.01")

    lake_bucket, raw_bucket = f"offer-ai-lake-{tag}", f"offer-ai-raw-{tag}"
    endpoint = ["--set", f"storage.s3_endpoint={dynamodb_endpoint}"]
    for command in (["mb", f"s3://{lake_bucket}"], ["put", str(raw), f"s3://{raw_bucket}/events"]):
        done = subprocess.run([sys.executable, "scripts/local_s3.py", *command, *endpoint], cwd=REPO,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    on_cluster = ["--config", "conf/local-cluster.yaml", *endpoint,
                  "--set", f"online_store.endpoint_url={dynamodb_endpoint}", "--set", f"online_store.table=cluster_{tag}",
                  "--set", f"lake.root=s3a://{lake_bucket}/lake", "--set", f"raw.root=s3a://{raw_bucket}/events",
                  "--set", f"sagemaker.bucket={lake_bucket}"]
    local_lake = tmp_path_factory.mktemp("local-lake")
    on_disk = ["--config", "conf/local.yaml", "--lake", str(local_lake), "--set", f"raw.root={raw}",
               "--set", f"online_store.endpoint_url={dynamodb_endpoint}", "--set", f"online_store.table=local_{tag}"]

    master = cluster["url"]
    started = time.monotonic()
    cluster_summaries = [
        _submit(master, "sessionize", *on_cluster, "--input", f"s3a://{raw_bucket}/events/{FIRST_DAYS}"),
        _submit(master, "sessionize", *on_cluster, "--run-date", LAST_DAY),
        _submit(master, "build_features", *on_cluster, "--run-id", RUN_ID),
        _submit(master, "export_features", *on_cluster),
    ]
    cluster_seconds = time.monotonic() - started
    local_summaries = [
        _local("sessionize", *on_disk, "--input", f"{raw}/{FIRST_DAYS}"),
        _local("sessionize", *on_disk, "--run-date", LAST_DAY),
        _local("build_features", *on_disk, "--run-id", RUN_ID),
        _local("export_features", *on_disk),
    ]
    finished = time.time()
    print(f"\ncluster nightly run: {cluster_seconds:.0f} s; local[2]: {time.monotonic() - started - cluster_seconds:.0f} s")

    settings = load_settings(REPO / "conf" / "local-cluster.yaml", [f"storage.s3_endpoint={dynamodb_endpoint}"])
    hadoop = spark.sparkContext._jsc.hadoopConfiguration()  # this session reads the s3a:// lake too
    for key, value in storage_conf(settings.storage).items():
        hadoop.set(key.removeprefix("spark.hadoop."), value)
    return {"cluster_lake": f"s3a://{lake_bucket}/lake", "local_lake": str(local_lake), "raw": raw,
            "raw_uri": f"s3a://{raw_bucket}/events", "lake_bucket": lake_bucket, "tag": tag,
            "cluster": cluster_summaries, "local": local_summaries, "endpoint": dynamodb_endpoint,
            "finished": finished, "state": cluster["state"]}


def _comparable(frame: DataFrame, table: str, raw_roots: tuple[str, ...]) -> DataFrame:
    """Lineage dropped, source files relative to the raw root, doubles to 9 decimals (sums over
    differently partitioned data may differ in the last bit), columns in one order."""
    frame = frame.drop(*LINEAGE.get(table, ()))
    if "source_file" in frame.columns:
        relative = F.col("source_file")
        for root in raw_roots:
            relative = F.regexp_replace(relative, "^" + root.rstrip("/").replace(".", "\\.") + "/", "")
        frame = frame.withColumn("source_file", relative)
    rounded = [F.round(c.name, 9).alias(c.name) if isinstance(c.dataType, DoubleType) else F.col(c.name)
               for c in frame.schema.fields]
    return frame.select(*rounded).select(*sorted(frame.columns))


def test_executors_ran_in_their_own_jvms_on_both_workers_with_the_shipped_package(runs):
    """Each job's executors: one folder per executor under each worker, the --py-files zip fetched into it."""
    state = runs["state"]
    for worker in ("worker-1", "worker-2"):
        executors = sorted((state / worker).glob("app-*/*/"))
        assert len({e.parent.name for e in executors}) == 4, f"{worker} ran executors for {len(executors)} apps"
        for executor in executors:
            assert list(executor.glob("offer_ai-*.zip")), f"{executor} has no offer_ai package"


def test_each_job_reports_the_same_counts_as_the_local_run(runs):
    for on_cluster, local in zip(runs["cluster"], runs["local"], strict=True):
        assert {k: v for k, v in on_cluster.items() if k not in VOLATILE} == \
               {k: v for k, v in local.items() if k not in VOLATILE}, on_cluster["job"]
    assert runs["cluster"][2]["labels_complete"] > 0 and runs["cluster"][3]["items_written"] == USERS


@pytest.mark.parametrize("table", TABLES)
def test_every_table_equals_the_local_run(runs, spark, table):
    roots = (runs["raw_uri"], f"file:{runs['raw']}", str(runs["raw"]))
    on_s3 = _comparable(spark.read.format("delta").load(f"{runs['cluster_lake']}/{table}"), table, roots)
    on_disk = _comparable(spark.read.format("delta").load(f"{runs['local_lake']}/{table}"), table, roots)
    assert on_s3.schema == on_disk.schema
    assert on_disk.count() > 0 and on_s3.count() == on_disk.count(), table
    assert on_s3.exceptAll(on_disk).count() == 0 and on_disk.exceptAll(on_s3).count() == 0, table


def _s3(endpoint: str, service: str = "s3") -> Any:
    import boto3

    return boto3.session.Session().client(service, endpoint_url=endpoint, region_name="us-east-1")


def _cluster_export(runs: dict[str, Any]) -> dict[str, bytes]:
    """Every object of the cluster's export: key relative to the export folder -> content."""
    s3 = _s3(runs["endpoint"])
    prefix = f"lake/exports/training/{RUN_ID}/"
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=runs["lake_bucket"], Prefix=prefix)
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    return {k[len(prefix):]: s3.get_object(Bucket=runs["lake_bucket"], Key=k)["Body"].read() for k in keys}


def _parts(files: dict[str, bytes], folder: str) -> list[bytes]:
    return [files[name] for name in sorted(files) if name.startswith(f"{folder}/part-")]


def test_the_training_export_equals_the_local_run(runs):
    on_s3 = _cluster_export(runs)
    base = Path(runs["local_lake"]) / "exports" / "training" / RUN_ID
    on_disk = {p.relative_to(base).as_posix(): p.read_bytes() for p in base.rglob("*") if p.is_file()}

    def manifest(files: dict[str, bytes], lake: str) -> dict[str, Any]:
        loaded = json.loads(files["manifest.json"].decode().replace(lake, "<lake>"))
        assert dt.datetime.fromisoformat(loaded.pop("created_at"))  # when it was written: differs by design
        return loaded

    local = manifest(on_disk, runs["local_lake"])
    assert manifest(on_s3, runs["cluster_lake"]) == local
    assert local["rows"]["train"] > 0 and local["files"]["train"]["csv"] == f"<lake>/exports/training/{RUN_ID}/train/csv"
    for split in ("train", "validation"):
        csv_s3, csv_disk = _parts(on_s3, f"{split}/csv"), _parts(on_disk, f"{split}/csv")
        assert len(csv_s3) == len(csv_disk) == 1 and csv_s3 == csv_disk, split  # label first, no header: byte for byte
        assert sum(part.count(b"\n") for part in csv_disk) == local["rows"][split]
        parquet_s3, parquet_disk = _parts(on_s3, f"{split}/parquet"), _parts(on_disk, f"{split}/parquet")
        assert len(parquet_s3) == len(parquet_disk) == 1, split
        assert [pq.read_table(io.BytesIO(p)).to_pylist() for p in parquet_s3] == \
               [pq.read_table(io.BytesIO(p)).to_pylist() for p in parquet_disk], split


def test_the_dynamodb_items_equal_the_local_run(runs):
    client = _s3(runs["endpoint"], "dynamodb")

    def items(table: str) -> list[dict[str, Any]]:
        pages = client.get_paginator("scan").paginate(TableName=table)
        found = sorted((item for page in pages for item in page["Items"]), key=lambda i: i["user_id"]["S"])
        ttl_days = load_settings(REPO / "conf" / "local.yaml").online_store.ttl_days
        for item in found:  # written during this test run, to expire ttl_days later
            expires = int(item.pop("expires_at")["N"])
            assert 0 <= runs["finished"] + ttl_days * 86_400 - expires < 3_600
        return found

    local = items(f"local_{runs['tag']}")
    assert len(local) == USERS and items(f"cluster_{runs['tag']}") == local


def test_train_sagemaker_reads_the_clusters_export_in_place(runs, tmp_path, monkeypatch):
    """The README's last command: the export stays where build_features wrote it (s3a://), nothing is uploaded."""
    config = tmp_path / "sagemaker-config.yaml"  # no telemetry calls from a test
    config.write_text("SchemaVersion: '1.0'\nSageMaker:\n  PythonSDK:\n    Modules:\n      TelemetryOptOut: true\n")
    monkeypatch.setenv("AWS_ENDPOINT_URL", runs["endpoint"])
    monkeypatch.setenv("SAGEMAKER_VALIDATE_ROLE", "false")
    monkeypatch.setenv("SAGEMAKER_USER_CONFIG_OVERRIDE", str(config))
    bucket, lake = runs["lake_bucket"], runs["cluster_lake"]
    before = _cluster_export(runs)
    code, summary, err = run_in_process(load_job("train_sagemaker"), "--config", "conf/local-cluster.yaml",
                                        "--set", f"lake.root={lake}", "--set", f"sagemaker.bucket={bucket}")
    assert code == 0, err
    base = f"s3://{bucket}/lake/exports/training/{RUN_ID}"
    assert summary["export"] == f"{lake}/exports/training/{RUN_ID}"  # the newest (only) export, found in S3
    assert summary["channels"] == {"train": f"{base}/train/parquet/", "validation": f"{base}/validation/parquet/",
                                   "manifest": f"{base}/manifest.json"}
    assert summary["uploaded_objects"] == 0 and summary["status"] == "InProgress"
    job = _s3(runs["endpoint"], "sagemaker").describe_training_job(TrainingJobName=summary["job_name"])
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in job["InputDataConfig"]}
    assert {k: channels[k] for k in ("train", "validation", "manifest")} == summary["channels"]
    assert _cluster_export(runs) == before  # read in place: not copied, not rewritten
    s3 = _s3(runs["endpoint"])
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="offer-ai/exports/")


def test_a_cluster_that_cannot_start_stops_what_it_started(tmp_path):
    """A worker that refuses its options: the start fails in a sentence, and the master is stopped too."""
    done = subprocess.run([sys.executable, "scripts/local_cluster.py", "start", "--state-dir", str(tmp_path),
                           "--port", str(free_port()), "--worker-memory", "lots"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert re.search(r"error: The Spark (worker-[12]) exited at start-up with code 1: see \S+/\1\.log", done.stderr)
    assert not (tmp_path / "cluster.json").exists()
    assert not _running_in(tmp_path), "a daemon of the failed start is still running"


def _running_in(folder: Path) -> list[int]:
    """Live processes whose working directory is `folder` (every daemon runs in the state folder)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if Path(os.readlink(proc / "cwd")) == folder and _alive(int(proc.name)):
                found.append(int(proc.name))
        except OSError:
            continue
    return found
