"""The nightly DAG, run for real: `airflow dags test` on a small generated lake.

Airflow's own CLI runs the DAG in a subprocess (its own AIRFLOW_HOME and SQLite metadata
database), so every task is the bash command a worker would run: three ./spark-submit.sh jobs
and the SageMaker launch with the venv's python, against a temp lake and the moto server
(DynamoDB, S3 and SageMaker on one port). Expected values come from the raw files themselves
(line counts, distinct users, file names), not from the jobs.

The lake a run finds: days 1-6 were ingested by the last run before the scheduler was paused
(sessionize --trigger available-now, so the stream's checkpoint holds them), then, while no run
happened, days 7, 8 and 9 landed, and so did a late file in day 3's folder. The first run
after the pause, at 00:00 on the 10th (logical date 2026-01-10: Airflow infers the interval of
the 9th, as the scheduler would give it; catchup is off, so it is the only run), must ingest
every line of every one of those files — the missed nights are not skipped — export the
training rows under run id 20260109, write every user's features to DynamoDB and, with
retrain_weekday=friday (the 9th is a Friday), start one training job on that export. The next
run (the 10th, a Saturday), with the Spark tasks marked successful without running (to keep CI
short), checks that the gate skips the retrain and nothing else.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from job_runner import load_job, run_in_process  # tests/ is on sys.path

REPO = Path(__file__).resolve().parents[1]
DAG_ID = "offer_ai_nightly"
USERS, DAYS = 40, 9
MISSED = ("2026-01-07", "2026-01-08", "2026-01-09")  # landed while the scheduler was paused
LATE = "date=2026-01-03/part-late.jsonl"  # landed late, in an old day's folder, during the pause
LATE_LINES = 25


def _airflow(env: dict[str, str], *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "airflow", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=env["AIRFLOW_HOME"])
    assert done.returncode == 0, f"airflow {' '.join(args)} exited {done.returncode}:\n{(done.stdout + done.stderr)[-6000:]}"
    return done


def _json_out(done: subprocess.CompletedProcess) -> list[dict]:
    """The JSON table an `airflow ... -o json` printed (its last line; warnings may come first on stdout)."""
    return json.loads([line for line in done.stdout.splitlines() if line.startswith("[")][-1])


def _raw_lines(raw: Path, dates: list[str]) -> list[dict]:
    return [json.loads(line) for d in dates for f in sorted((raw / f"date={d}").glob("part-*")) for line in f.open()]


def _lines_per_file(raw: Path) -> dict[str, int]:
    """{"date=D/part-....jsonl": lines} for every raw file under `raw`."""
    return {f"{f.parent.name}/{f.name}": sum(1 for _ in f.open()) for f in sorted(raw.glob("date=*/part-*"))}


@pytest.fixture(scope="module")
def world(dynamodb_endpoint, tmp_path_factory, spark):
    """Raw events for 9 days, days 1-8 sessionized, a config for the DAG, an Airflow home with its database."""
    import boto3

    root = tmp_path_factory.mktemp("dag-run")
    raw, lake = root / "raw", root / "lake"
    code, _, err = run_in_process(load_job("generate_events"), "--out", str(raw), "--users", str(USERS),
                                  "--days", str(DAYS), "--seed", "3", "--start-date", "2026-01-01")
    assert code == 0, err
    dates = [f"2026-01-0{d}" for d in range(1, DAYS + 1)]
    # Hold back what lands during the pause: the missed days' folders, and the last lines of day 3
    # as a file of their own.
    held = root / "held"
    for day in MISSED:
        (held / f"date={day}").parent.mkdir(parents=True, exist_ok=True)
        (raw / f"date={day}").rename(held / f"date={day}")
    (day3,) = (raw / "date=2026-01-03").glob("part-*")
    lines = day3.read_text().splitlines(keepends=True)
    day3.write_text("".join(lines[:-LATE_LINES]))
    (held / LATE).parent.mkdir(parents=True)
    (held / LATE).write_text("".join(lines[-LATE_LINES:]))

    bucket, table = f"dag-run-{uuid.uuid4().hex[:8]}", f"dag_run_{uuid.uuid4().hex[:8]}"
    boto3.Session(region_name="us-east-1").client("s3", endpoint_url=dynamodb_endpoint).create_bucket(Bucket=bucket)
    config = root / "offer-ai.yaml"
    config.write_text(
        f"spark: {{master: 'local[2]', shuffle_partitions: 2}}\n"
        f"lake: {{root: {lake}}}\nraw: {{root: {raw}}}\n"
        f"online_store: {{endpoint_url: '{dynamodb_endpoint}', table: {table}, create_table: true}}\n"
        f"sagemaker: {{bucket: {bucket}, role_arn: 'arn:aws:iam::123456789012:role/offer-ai-sagemaker',"
        f" hyperparameters: {{num_round: 20}}}}\n"
        f"offers_file: {REPO / 'conf' / 'offers.yaml'}\nfeatures_file: {REPO / 'conf' / 'features.yaml'}\n"
    )
    # The last run before the pause: the nightly command's sessionize, which records in the stream's
    # checkpoint every file it ingested.
    code, _, err = run_in_process(load_job("sessionize"), "--config", str(config), "--trigger", "available-now")
    assert code == 0, err
    before_pause = _lines_per_file(raw)
    for folder in held.iterdir():  # the pause: files land, no run happens
        for f in folder.iterdir():
            (raw / folder.name).mkdir(exist_ok=True)
            f.rename(raw / folder.name / f.name)

    home = root / "airflow-home"
    home.mkdir()
    sagemaker_config = root / "sagemaker-config.yaml"  # no telemetry calls from a test
    sagemaker_config.write_text("SchemaVersion: '1.0'\nSageMaker:\n  PythonSDK:\n    Modules:\n      TelemetryOptOut: true\n")
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AWS_ENDPOINT_URL": dynamodb_endpoint,
           "AWS_DEFAULT_REGION": "us-east-1", "SAGEMAKER_VALIDATE_ROLE": "false",
           "SAGEMAKER_USER_CONFIG_OVERRIDE": str(sagemaker_config)}
    _airflow(env, "db", "migrate")
    events_before = spark.read.format("delta").load(str(lake / "events")).count()
    return {"raw": raw, "lake": lake, "dates": dates, "config": config, "env": env, "bucket": bucket, "table": table,
            "endpoint": dynamodb_endpoint, "events_before": events_before, "before_pause": before_pause}


def _run(world, day: str, weekday: str, *extra: str) -> dict[str, str]:
    """`airflow dags test` for one day; {task_id: state} of the run it made."""
    conf = json.dumps({"config": str(world["config"]), "retrain_weekday": weekday})
    _airflow(world["env"], "dags", "test", DAG_ID, day, "-c", conf, *extra)
    runs = _json_out(_airflow(world["env"], "dags", "list-runs", DAG_ID, "-o", "json"))
    (run,) = [r for r in runs if r["logical_date"].startswith(day)]
    assert run["state"] == "success", run
    states = _json_out(_airflow(world["env"], "tasks", "states-for-dag-run", DAG_ID, run["run_id"], "-o", "json"))
    return {s["task_id"]: s["state"] for s in states}


@pytest.fixture(scope="module")
def retrain_day(world):
    # moto's training jobs complete without running, so no model.tar.gz exists to promote: promote_model
    # is marked successful here, and tests/test_promote_model.py runs the same command against moto.
    return _run(world, "2026-01-10", "friday", "--mark-success-pattern", "^promote_model$")


def test_the_nightly_run_loads_the_day_exports_features_and_starts_the_retrain(world, retrain_day, spark):
    import boto3

    assert retrain_day == {"sessionize": "success", "build_features": "success", "export_features": "success",
                           "weekly_retrain_gate": "success", "train_sagemaker": "success", "promote_model": "success"}
    # One run after the pause: sessionize --trigger available-now ingested every line of every file that
    # landed meanwhile — days 7, 8 and 9 and the late file in day 3's folder — and nothing twice (a clean
    # generator run: no duplicates, no malformed lines), with no Airflow catchup run for the 7th or the 8th.
    from pyspark.sql import functions as F

    lines = _raw_lines(world["raw"], world["dates"])
    per_file = _lines_per_file(world["raw"])
    missed = {name: n for name, n in per_file.items() if name not in world["before_pause"]}
    assert set(missed) == {LATE} | {f"date={d}/part-00000.jsonl" for d in MISSED} and missed[LATE] == LATE_LINES
    assert world["events_before"] == sum(world["before_pause"].values()) == len(lines) - sum(missed.values())
    events = spark.read.format("delta").load(str(world["lake"] / "events"))
    assert events.count() == len(lines)
    stored = events.groupBy(F.regexp_extract("source_file", r"(date=[^/]+/[^/]+)$", 1).alias("file")).count()
    assert {r["file"]: r["count"] for r in stored.collect()} == per_file  # each file whole, under its own name
    # build_features --run-id 20260109 wrote a complete export under that id.
    manifest = json.loads((world["lake"] / "exports" / "training" / "20260109" / "manifest.json").read_text())
    assert manifest["run_id"] == "20260109" and manifest["rows"]["train"] > 0
    # export_features: one item per user who has a session.
    session = boto3.Session(region_name="us-east-1")
    dynamodb = session.client("dynamodb", endpoint_url=world["endpoint"])
    users = {line["customer_identifier"] for line in lines if line.get("customer_identifier")}
    assert dynamodb.scan(TableName=world["table"], Select="COUNT")["Count"] == len(users) == USERS
    # train_sagemaker: one job, on that export, in the config's bucket.
    sagemaker = session.client("sagemaker", endpoint_url=world["endpoint"])
    jobs = [j["TrainingJobName"] for j in sagemaker.list_training_jobs()["TrainingJobSummaries"]]
    ours = [sagemaker.describe_training_job(TrainingJobName=name) for name in jobs]
    ours = [j for j in ours if j["OutputDataConfig"]["S3OutputPath"].startswith(f"s3://{world['bucket']}/")]
    assert len(ours) == 1
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in ours[0]["InputDataConfig"]}
    assert channels["train"] == f"s3://{world['bucket']}/offer-ai/exports/20260109/train/parquet/"
    assert ours[0]["HyperParameters"]["num_round"] == "20"


def test_on_other_days_the_gate_skips_the_retrain_and_nothing_else(world, retrain_day):
    # It processes 2026-01-10, a Saturday. The Spark tasks are marked successful without running: this run is about the gate.
    states = _run(world, "2026-01-11", "friday", "--mark-success-pattern", "^(sessionize|build_features|export_features)$")
    assert states == {"sessionize": "success", "build_features": "success", "export_features": "success",
                      "weekly_retrain_gate": "success", "train_sagemaker": "skipped", "promote_model": "skipped"}
