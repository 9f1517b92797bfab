"""The SageMaker path, offline: the script-mode entry point, and the SDK v3 launch against moto.

The launch runs the real SDK (`ModelTrainer.train(wait=False)`) against the moto server of
conftest_dynamodb (all AWS services on one local port, fake credentials) through
`AWS_ENDPOINT_URL`; the recorded job is read back with boto3's `describe_training_job` and
checked against literal expectations (image URI, hyperparameters, channel URIs, output path).
moto never runs a container, so `test_the_recorded_job_trains_when_run_like_the_container`
rehearses what the container would do with that job: it downloads the job's channels from
moto's S3 into an /opt/ml-like folder and runs the SDK's own staged driver on them.

The export used here is written by hand with pandas (no Spark): a small dataset whose label
depends on facebook_connected and the offer, so a model that learns anything beats the mean.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from job_runner import load_job, run_in_process  # tests/ is on sys.path

from offer_ai.config import load_settings
from offer_ai.errors import UserError
from offer_ai.model import sagemaker_entry
from offer_ai.model.model import OfferModel
from offer_ai.model.offers import load_offers

REPO = Path(__file__).resolve().parents[1]
COUNTRIES = {"DE": 0, "US": 1}
OFFER_TYPES = {"coins_bundle": 0, "starter_pack": 1, "vip_pass": 2, "xmas": 3}
CATALOGUE = [("starter_pack", 0.99), ("starter_pack", 2.99), ("coins_bundle", 4.99), ("coins_bundle", 9.99),
             ("xmas", 4.99), ("xmas", 19.99), ("vip_pass", 9.99), ("vip_pass", 49.99)]
#: The SageMaker XGBoost 3.0-5 image in us-east-1, as AWS publishes it (not computed by our code).
XGBOOST_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5"
#: The SDK's own ModelTrainer still imports its moved configs module; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:sagemaker.train.configs has been moved:DeprecationWarning")


def hand_rows(n: int, seed: int) -> pd.DataFrame:
    """Export-encoded rows: label ≈ 20·facebook + 15·[vip_pass] + noise, some nulls."""
    rng = np.random.default_rng(seed)
    offer = rng.integers(0, len(CATALOGUE), n)
    fb = rng.integers(0, 2, n)
    games = rng.integers(0, 12, n).astype(float)
    games[rng.random(n) < 0.2] = np.nan
    label = 20.0 * fb + 15.0 * (offer >= 6) + rng.exponential(2.0, n)
    return pd.DataFrame({
        "next_week_purchase_amount": np.round(label, 2),
        "country": rng.integers(0, 2, n).astype("int32"),
        "facebook_connected": fb.astype("int32"),
        "last_session_games_played": games,
        "last_session_win_ratio": np.where(np.isnan(games), np.nan, np.round(rng.random(n), 3)),
        "prev_week_purchase_amount": np.round(rng.exponential(5.0, n), 2),
        "offer_type": np.array([OFFER_TYPES[CATALOGUE[k][0]] for k in offer], dtype="int32"),
        "offer_price": np.array([CATALOGUE[k][1] for k in offer]),
        "offer_propensity": np.full(n, 1 / 8),
    })


def write_export(root: Path, run_id: str = "hand-run") -> Path:
    """An export folder laid out as offer_ai.features.training_export writes it, Spark side files included."""
    base = root / run_id
    columns = []
    for i, name in enumerate(hand_rows(1, 0).columns):
        column = {"index": i, "name": name, "role": "label" if i == 0 else "action" if name.startswith("offer") else "feature",
                  "type": "double"}
        if name in ("country", "facebook_connected", "offer_type"):
            column.update(type="int", categorical=True, source_type="boolean" if name == "facebook_connected" else "string")
        columns.append(column)
    rows = {"train": hand_rows(400, 1), "validation": hand_rows(120, 2)}
    for split, frame in rows.items():
        for kind in ("parquet", "csv"):
            folder = base / split / kind
            folder.mkdir(parents=True)
            (folder / "_SUCCESS").write_text("")
            (folder / f".part-00000-x.{kind}.crc").write_bytes(b"crc")
        frame.to_parquet(base / split / "parquet" / "part-00000-x.snappy.parquet", index=False)
        frame.to_csv(base / split / "csv" / "part-00000-x.csv", header=False, index=False, na_rep="")
    manifest = {
        "format": "offer-ai training export", "format_version": 1, "run_id": run_id, "spec_version": "test-spec",
        "label": "next_week_purchase_amount", "columns": columns,
        "categorical_encodings": {"country": COUNTRIES, "facebook_connected": {"false": 0, "true": 1},
                                  "offer_type": OFFER_TYPES},
        "split": {"cutoff": "2026-01-10T00:00:00Z"}, "rows": {k: len(v) for k, v in rows.items()},
    }
    (base / "manifest.json").write_text(json.dumps(manifest, indent=2))
    (base / ".manifest.json.crc").write_bytes(b"crc")
    return base


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    return write_export(tmp_path_factory.mktemp("exports"))


# --- the entry point ------------------------------------------------------------------------------


def test_entry_point_follows_the_script_mode_contract(export, tmp_path):
    """Channels and model dir from SM_* variables, hyperparameters as flags, as the SageMaker driver runs it."""
    manifest_channel = tmp_path / "manifest"
    manifest_channel.mkdir()
    shutil.copy(export / "manifest.json", manifest_channel)
    env = {**os.environ, "SM_CHANNEL_TRAIN": str(export / "train" / "parquet"),
           "SM_CHANNEL_VALIDATION": str(export / "validation" / "parquet"),
           "SM_CHANNEL_MANIFEST": str(manifest_channel), "SM_MODEL_DIR": str(tmp_path / "model")}
    done = subprocess.run([sys.executable, "-m", "offer_ai.model.sagemaker_entry", "--num_round", "40", "--max_depth", "3",
                           "--eta", "0.3", "--objective", "reg:squarederror"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert "validation-rmse=" in done.stdout  # the line a SageMaker metric definition would match
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["metadata.json", "model.json"]
    meta = json.loads((tmp_path / "model" / "metadata.json").read_text())
    # categorical codes were decoded back to the values: the model one-hot encodes names, not codes
    assert meta["encoder"]["categorical"] == {"country": ["DE", "US"],
                                              "offer_type": ["coins_bundle", "starter_pack", "vip_pass", "xmas"]}
    assert "country=DE" in meta["features"] and "offer_type=vip_pass" in meta["features"]
    assert [(o["offer_type"], o["offer_price"]) for o in meta["offers"]] == CATALOGUE  # conf/offers.yaml, in order
    assert meta["spec_version"] == "test-spec" and meta["objective"] == "reg:squarederror"
    assert meta["params"]["max_depth"] == 3 and meta["params"]["eta"] == 0.3 and meta["params"]["num_boost_round"] == 40
    assert summary["rows"] == {"train": 400, "validation": 120}
    valid = meta["metrics"]["validation"]
    assert valid["rmse"] < 0.5 * valid["baseline_rmse"]  # label is ~all signal: the model must find it
    model = OfferModel.load(tmp_path / "model")
    scores = model.score_candidates(pd.DataFrame({"country": ["US"], "facebook_connected": [True],
                                                  "last_session_games_played": [3.0], "last_session_win_ratio": [0.5],
                                                  "prev_week_purchase_amount": [0.0]}))
    assert scores.shape == (1, 8) and int(scores.argmax()) in (6, 7)  # a vip_pass offer is worth most


def test_csv_and_parquet_copies_train_the_same_model(export, tmp_path):
    versions = []
    for fmt in ("csv", "parquet"):
        argv = sagemaker_entry.local_argv(export, tmp_path / fmt, {"num_round": 20, "seed": 3}, data_format=fmt)
        assert sagemaker_entry.main(argv) == 0
        versions.append(json.loads((tmp_path / fmt / "metadata.json").read_text())["model_version"])
    assert versions[0] == versions[1]


def test_a_missing_channel_is_a_user_error(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SM_CHANNEL_TRAIN", raising=False)
    assert sagemaker_entry.main(["--validation", str(tmp_path), "--model-dir", str(tmp_path / "m")]) == 2
    assert "--train is required (or set $SM_CHANNEL_TRAIN)" in capsys.readouterr().err


def test_hyperparameters_accept_both_spellings_and_reject_unknown_ones():
    args = sagemaker_entry.build_parser().parse_args(["--num-round", "7", "--max_depth", "2", "--lambda", "3"])
    assert (args.num_round, args.max_depth, args.reg_lambda) == (7, 2, 3.0)
    assert sagemaker_entry.booster_params(args) == {"max_depth": 2, "lambda": 3.0}
    with pytest.raises(SystemExit):
        sagemaker_entry.build_parser().parse_args(["--num_rounds", "7"])


# --- the launch against moto ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def aws(dynamodb_endpoint, tmp_path_factory) -> Iterator[str]:
    """Every boto3 client (ours and the SDK's) pointed at the local moto server; role checks off."""
    config = tmp_path_factory.mktemp("sagemaker-config") / "config.yaml"  # no telemetry calls from a test
    config.write_text("SchemaVersion: '1.0'\nSageMaker:\n  PythonSDK:\n    Modules:\n      TelemetryOptOut: true\n")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ENDPOINT_URL", dynamodb_endpoint)
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        env.setenv("SAGEMAKER_VALIDATE_ROLE", "false")
        env.setenv("SAGEMAKER_USER_CONFIG_OVERRIDE", str(config))
        yield dynamodb_endpoint


@pytest.fixture(scope="module")
def launched(aws, export):
    """(settings, launch result, boto3 session) of one job created through the SDK."""
    import boto3

    from offer_ai.model.sagemaker_launch import launch_training

    bucket = f"offer-ai-test-{uuid.uuid4().hex[:8]}"
    settings = load_settings(REPO / "conf" / "local.yaml", [f"sagemaker.bucket={bucket}", "sagemaker.instance_count=2",
                                                             "sagemaker.hyperparameters={eta: 0.3, max_depth: 5}"])
    session = boto3.Session(region_name="us-east-1")
    session.client("s3").create_bucket(Bucket=bucket)
    result = launch_training(settings, export, {"num_round": 30, "max_depth": 3, "objective": "reg:tweedie"},
                             wait=False, boto_session=session)
    return settings, result, session


def test_the_launch_creates_a_job_with_the_configured_image_code_data_and_output(launched, export):
    settings, result, session = launched
    bucket = settings.sagemaker.bucket
    job = session.client("sagemaker").describe_training_job(TrainingJobName=result.job_name)
    assert job["TrainingJobName"].startswith("offer-ai-xgboost-")
    assert job["AlgorithmSpecification"]["TrainingImage"] == XGBOOST_IMAGE
    assert job["AlgorithmSpecification"]["TrainingInputMode"] == "File"
    assert job["RoleArn"] == "arn:aws:iam::123456789012:role/offer-ai-sagemaker"
    # config defaults, overridden per call; values are strings on the wire
    assert job["HyperParameters"] == {"eta": "0.3", "max_depth": "3", "num_round": "30", "objective": "reg:tweedie",
                                      "data_format": "parquet", "offers": "offers.yaml"}
    assert job["ResourceConfig"] == {"InstanceType": "ml.m5.xlarge", "InstanceCount": 2, "VolumeSizeInGB": 30}
    assert job["StoppingCondition"]["MaxRuntimeInSeconds"] == 3600
    assert job["OutputDataConfig"]["S3OutputPath"] == f"s3://{bucket}/offer-ai/output"
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in job["InputDataConfig"]}
    base = f"s3://{bucket}/offer-ai/exports/hand-run"
    assert {k: channels[k] for k in ("train", "validation", "manifest")} == {
        "train": f"{base}/train/parquet/", "validation": f"{base}/validation/parquet/", "manifest": f"{base}/manifest.json"}
    assert set(channels) == {"train", "validation", "manifest", "code", "sm_drivers"}  # + the SDK's code channels
    # the uploaded objects: exactly the part files and the manifest, byte for byte
    s3 = session.client("s3")
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="offer-ai/exports/")["Contents"]
    assert sorted(o["Key"] for o in listed) == [
        "offer-ai/exports/hand-run/manifest.json",
        "offer-ai/exports/hand-run/train/parquet/part-00000-x.snappy.parquet",
        "offer-ai/exports/hand-run/validation/parquet/part-00000-x.snappy.parquet",
    ]
    for split in ("train", "validation"):
        key = f"offer-ai/exports/hand-run/{split}/parquet/part-00000-x.snappy.parquet"
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert body == (export / split / "parquet" / "part-00000-x.snappy.parquet").read_bytes()
    # the staged code: the entry shim beside the package and the catalogue
    code_bucket, _, code_prefix = channels["code"].removeprefix("s3://").partition("/")
    code = {o["Key"].removeprefix(code_prefix).lstrip("/")
            for o in s3.list_objects_v2(Bucket=code_bucket, Prefix=code_prefix)["Contents"]}
    assert {"train_offer_model.py", "offers.yaml", "offer_ai/model/sagemaker_entry.py", "offer_ai/model/model.py",
            "offer_ai/features/export_reader.py"} <= code
    assert not any("__pycache__" in k for k in code)


def _download_prefix(s3, uri: str, dest: Path) -> None:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    for obj in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]:
        rel = obj["Key"][len(prefix):].lstrip("/") or Path(obj["Key"]).name
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, obj["Key"], str(target))


def test_the_recorded_job_trains_when_run_like_the_container(launched, tmp_path):
    """Channels into <root>/input/data/<channel>, then the SDK's staged basic_script_driver with the job's hyperparameters."""
    settings, result, session = launched
    s3 = session.client("s3")
    job = session.client("sagemaker").describe_training_job(TrainingJobName=result.job_name)
    data = tmp_path / "opt_ml" / "input" / "data"
    for channel in job["InputDataConfig"]:
        _download_prefix(s3, channel["DataSource"]["S3DataSource"]["S3Uri"], data / channel["ChannelName"])
    model_dir = tmp_path / "opt_ml" / "model"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "AWS_ENDPOINT"))}
    env.update({f"SM_CHANNEL_{c['ChannelName'].upper()}": str(data / c["ChannelName"]) for c in job["InputDataConfig"]})
    env.update(SM_MODEL_DIR=str(model_dir), SM_ENTRY_SCRIPT="train_offer_model.py",
               SM_HPS=json.dumps(job["HyperParameters"]), PYTHONPATH="")
    driver = data / "sm_drivers" / "distributed_drivers" / "basic_script_driver.py"
    done = subprocess.run([sys.executable, str(driver)], cwd=data / "code", env=env, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert f'"code": "{(data / "code" / "offer_ai").resolve()}"' in done.stdout  # the shipped copy ran, not the dev install
    model = OfferModel.load(model_dir)
    assert model.params["num_boost_round"] == 30 and model.params["max_depth"] == 3 and model.params["eta"] == 0.3
    assert model.objective == "reg:tweedie" and model.spec_version == "test-spec"
    assert model.offers == load_offers(REPO / "conf" / "offers.yaml")

    # What SageMaker then does: tar the model dir to <output>/<job>/output/model.tar.gz; download_model reads it back.
    from offer_ai.model.sagemaker_launch import download_model, split_s3_uri

    bucket, key = split_s3_uri(job["ModelArtifacts"]["S3ModelArtifacts"])
    assert key == f"offer-ai/output/{result.job_name}/output/model.tar.gz"
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in model_dir.iterdir():
            tar.add(path, arcname=path.name)
    s3.upload_file(str(archive), bucket, key)
    fetched = download_model(result.job_name, tmp_path / "fetched", boto_session=session)
    assert OfferModel.load(fetched).model_version == model.model_version


def test_the_launch_needs_a_role_and_a_bucket(aws, export):
    from offer_ai.model.sagemaker_launch import launch_training

    settings = load_settings(REPO / "conf" / "local.yaml", ["sagemaker.role_arn=null"])
    with pytest.raises(UserError, match="sagemaker.role_arn is not set"):
        launch_training(settings, export)
    settings = load_settings(REPO / "conf" / "local.yaml", ["sagemaker.bucket=null"])
    with pytest.raises(UserError, match="sagemaker.bucket is not set"):
        launch_training(settings, export)


def test_a_role_that_is_not_an_iam_role_arn_is_refused_at_start_up():
    with pytest.raises(UserError, match="sagemaker.role_arn"):
        load_settings(REPO / "conf" / "local.yaml", ["sagemaker.role_arn=AKIAEXAMPLEKEY"])


def test_the_source_dir_holds_the_shim_the_package_and_the_catalogue(tmp_path):
    from offer_ai.model.sagemaker_launch import ENTRY_SCRIPT, build_source_dir

    source = build_source_dir(tmp_path / "src", REPO / "conf" / "offers.yaml")
    assert (source / ENTRY_SCRIPT).read_text().count("from offer_ai.model.sagemaker_entry import main") == 1
    assert (source / "offers.yaml").read_bytes() == (REPO / "conf" / "offers.yaml").read_bytes()
    shipped = {p.relative_to(source / "offer_ai").as_posix() for p in (source / "offer_ai").rglob("*")}
    assert {"__init__.py", "errors.py", "model/__init__.py", "model/sagemaker_entry.py", "model/model.py",
            "model/evaluation.py", "model/offers.py", "features/__init__.py", "features/export_reader.py"} <= shipped
    assert not any("__pycache__" in name for name in shipped)


# --- the weekly retrain job (jobs/train_sagemaker.py) -------------------------------------------------


def _bucket(session) -> str:
    bucket = f"offer-ai-test-{uuid.uuid4().hex[:8]}"
    session.client("s3").create_bucket(Bucket=bucket)
    return bucket


def _created(export_dir: Path, created_at: str) -> Path:
    manifest = json.loads((export_dir / "manifest.json").read_text())
    (export_dir / "manifest.json").write_text(json.dumps({**manifest, "created_at": created_at}))
    return export_dir


def test_the_job_trains_on_the_newest_complete_export_and_follows_it_to_the_end(aws, tmp_path):
    import boto3


    session = boto3.Session(region_name="us-east-1")
    bucket = _bucket(session)
    exports = tmp_path / "lake" / "exports" / "training"
    _created(write_export(exports, "20260308"), "2026-03-09T00:10:00+00:00")
    _created(write_export(exports, "20260301"), "2026-03-09T00:20:00+00:00")   # rewritten last: the newest
    unfinished = write_export(exports, "20260315")
    (unfinished / "manifest.json").unlink()                      # still being written: never chosen

    code, summary, err = run_in_process(load_job("train_sagemaker"), "--lake", str(tmp_path / "lake"),
                                        "--set", f"sagemaker.bucket={bucket}", "--hyperparameter", "num_round=12",
                                        "--wait", "--poll-seconds", "0.01")
    assert code == 0, err
    assert summary["run_id"] == "20260301" and summary["export"] == str(exports / "20260301")
    assert summary["status"] == "Completed"
    assert summary["model_artifact"] == f"s3://{bucket}/offer-ai/output/{summary['job_name']}/output/model.tar.gz"
    assert summary["uploaded_objects"] == 3  # two part files and the manifest
    assert f"{summary['job_name']}: Completed / Completed" in err  # the status line a scheduler's log shows
    job = session.client("sagemaker").describe_training_job(TrainingJobName=summary["job_name"])
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in job["InputDataConfig"]}
    assert channels["train"] == f"s3://{bucket}/offer-ai/exports/20260301/train/parquet/"
    assert job["HyperParameters"]["num_round"] == "12"


def test_an_export_the_lake_already_holds_in_s3_is_used_in_place(aws, tmp_path):
    import boto3


    session = boto3.Session(region_name="us-east-1")
    s3 = session.client("s3")
    bucket = _bucket(session)
    local = write_export(tmp_path, "20260308")
    for path in sorted(p for p in local.rglob("*") if p.is_file() and not p.name.endswith(".crc")):
        s3.upload_file(str(path), bucket, f"lake/exports/training/20260308/{path.relative_to(local)}")
    s3.put_object(Bucket=bucket, Key="lake/exports/training/20260301/train/parquet/part-0.parquet", Body=b"")  # no manifest

    code, summary, err = run_in_process(load_job("train_sagemaker"), "--lake", f"s3a://{bucket}/lake",
                                        "--set", f"sagemaker.bucket={bucket}")
    assert code == 0, err
    base = f"s3://{bucket}/lake/exports/training/20260308"
    assert summary["export"] == f"s3a://{bucket}/lake/exports/training/20260308"
    assert summary["channels"] == {"train": f"{base}/train/parquet/", "validation": f"{base}/validation/parquet/",
                                   "manifest": f"{base}/manifest.json"}
    assert summary["uploaded_objects"] == 0 and summary["status"] == "InProgress"  # no --wait: started, not followed
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="offer-ai/exports/")  # nothing copied


def test_an_s3_export_without_manifest_or_part_files_is_refused_before_a_job_starts(aws, tmp_path):
    import boto3

    from offer_ai.model.sagemaker_launch import s3_export

    s3 = boto3.Session(region_name="us-east-1").client("s3")
    bucket = _bucket(boto3.Session(region_name="us-east-1"))
    with pytest.raises(UserError, match=r"no export manifest at s3://.*/exports/r1/manifest.json"):
        s3_export(f"s3a://{bucket}/exports/r1", s3)
    local = write_export(tmp_path, "r1")
    s3.upload_file(str(local / "manifest.json"), bucket, "exports/r1/manifest.json")
    s3.upload_file(str(local / "train" / "csv" / "part-00000-x.csv"), bucket, "exports/r1/train/csv/part-00000-x.csv")
    with pytest.raises(UserError, match=r"exports/r1/train/parquet/ holds no parquet part files"):
        s3_export(f"s3://{bucket}/exports/r1", s3)


def test_the_job_says_so_when_there_is_no_export(aws, tmp_path):

    (tmp_path / "lake" / "exports" / "training" / "half-written").mkdir(parents=True)
    code, summary, err = run_in_process(load_job("train_sagemaker"), "--lake", str(tmp_path / "lake"))
    assert code == 2 and summary is None
    assert err.strip() == (f"train_sagemaker: error: No finished training export under "
                           f"{tmp_path / 'lake' / 'exports' / 'training'}: run jobs/build_features.py first.")


class _ScriptedSageMaker:
    """What DescribeTrainingJob answers over a job's life; moto's jobs are Completed at once and never fail."""

    def __init__(self, states: list[tuple[str, str]], reason: str = "") -> None:
        self.states, self.reason, self.calls = states, reason, 0

    def describe_training_job(self, TrainingJobName: str) -> dict:
        status, secondary = self.states[min(self.calls, len(self.states) - 1)]
        self.calls += 1
        described = {"TrainingJobName": TrainingJobName, "TrainingJobStatus": status, "SecondaryStatus": secondary,
                     # a job just created has no transition yet; later ones carry SageMaker's message
                     "SecondaryStatusTransitions": [] if secondary == "Starting" else
                     [{"Status": secondary, "StatusMessage": f"{secondary.lower()} message"}]}
        if status == "Failed":
            described["FailureReason"] = self.reason
        return described


def test_waiting_logs_each_status_change_once_and_returns_the_terminal_state():
    from offer_ai.model.sagemaker_launch import wait_for_job

    client = _ScriptedSageMaker([("InProgress", "Starting"), ("InProgress", "Starting"), ("InProgress", "Training"),
                                 ("Failed", "Failed")], reason="AlgorithmError: bad data")
    lines, sleeps = [], []
    described = wait_for_job(client, "job-1", poll_s=7, on_change=lines.append, sleep=sleeps.append)
    assert described["TrainingJobStatus"] == "Failed" and client.calls == 4
    assert lines == ["job-1: InProgress / Starting", "job-1: InProgress / Training (training message)",
                     "job-1: Failed / Failed (failed message)"]
    assert sleeps == [7, 7, 7]


def test_waiting_gives_up_after_the_timeout_but_says_the_job_runs_on():
    from offer_ai.model.sagemaker_launch import wait_for_job

    now = iter(range(0, 1000, 60))
    with pytest.raises(UserError, match=r"job-2 is still InProgress after 150 s; it keeps running on SageMaker"):
        wait_for_job(_ScriptedSageMaker([("InProgress", "Training")]), "job-2", poll_s=60, timeout_s=150,
                     clock=lambda: next(now), sleep=lambda s: None)


def test_a_job_that_ends_failed_fails_the_task_with_its_reason(aws, tmp_path, monkeypatch):
    import boto3

    from offer_ai.model import sagemaker_launch

    bucket = _bucket(boto3.Session(region_name="us-east-1"))
    write_export(tmp_path / "lake" / "exports" / "training", "20260308")
    scripted = _ScriptedSageMaker([("InProgress", "Training"), ("Failed", "Failed")], reason="AlgorithmError: boom")
    real_wait = sagemaker_launch.wait_for_job
    monkeypatch.setattr(sagemaker_launch, "wait_for_job", lambda client, name, **kw: real_wait(scripted, name, **kw))
    code, summary, err = run_in_process(load_job("train_sagemaker"), "--lake", str(tmp_path / "lake"), "--run-id",
                                        "20260308", "--set", f"sagemaker.bucket={bucket}", "--wait",
                                        "--poll-seconds", "0.01")
    assert code == 1
    assert summary["status"] == "Failed" and summary["run_id"] == "20260308"
    assert err.strip().endswith(f"train_sagemaker: error: training job {summary['job_name']} ended Failed: AlgorithmError: boom")


def test_a_wait_that_times_out_fails_the_task_but_keeps_the_summary(aws, tmp_path, monkeypatch):
    import boto3

    from offer_ai.model import sagemaker_launch

    bucket = _bucket(boto3.Session(region_name="us-east-1"))
    write_export(tmp_path / "lake" / "exports" / "training", "20260308")
    scripted = _ScriptedSageMaker([("InProgress", "Training")])
    real_wait = sagemaker_launch.wait_for_job
    monkeypatch.setattr(sagemaker_launch, "wait_for_job", lambda client, name, **kw: real_wait(scripted, name, **kw))
    code, summary, err = run_in_process(load_job("train_sagemaker"), "--lake", str(tmp_path / "lake"),
                                        "--set", f"sagemaker.bucket={bucket}", "--wait", "--poll-seconds", "0.01",
                                        "--timeout-seconds", "0.05")
    assert code == 1
    assert summary["status"] == "InProgress" and summary["job_name"].startswith("offer-ai-xgboost-")
    assert err.strip().endswith(f"train_sagemaker: error: Training job {summary['job_name']} is still InProgress "
                                "after 0 s; it keeps running on SageMaker. A rerun follows it.")


class _ListedJobs:
    """ListTrainingJobs pages and DescribeTrainingJob answers for jobs moto cannot hold (still running)."""

    def __init__(self, pages: list[list[tuple[str, str]]]) -> None:
        self.pages, self.requests = pages, []

    def list_training_jobs(self, **request) -> dict:
        self.requests.append(request)
        index = int(request.get("NextToken", 0))
        page = {"TrainingJobSummaries": [{"TrainingJobName": name} for name, _ in self.pages[index]]}
        if index + 1 < len(self.pages):
            page["NextToken"] = str(index + 1)
        return page

    def describe_training_job(self, TrainingJobName: str) -> dict:
        train = dict(job for page in self.pages for job in page)[TrainingJobName]
        return {"TrainingJobName": TrainingJobName, "TrainingJobStatus": "InProgress",
                "InputDataConfig": [{"ChannelName": "train", "DataSource": {"S3DataSource": {"S3Uri": train}}}]}


def test_a_running_job_on_the_same_export_is_found_across_pages():
    from offer_ai.model.sagemaker_launch import find_running_job

    ours = "s3://b/offer-ai/exports/20260308/train/parquet/"
    client = _ListedJobs([[("offer-ai-xgboost-3", "s3://b/offer-ai/exports/20260315/train/parquet/")],
                          [("offer-ai-xgboost-2", ours), ("offer-ai-xgboost-1", ours)]])
    assert find_running_job(client, "offer-ai-xgboost", ours)["TrainingJobName"] == "offer-ai-xgboost-2"
    assert client.requests[0] == {"NameContains": "offer-ai-xgboost", "StatusEquals": "InProgress",
                                  "SortBy": "CreationTime", "SortOrder": "Descending"}
    assert client.requests[1]["NextToken"] == "1"
    assert find_running_job(client, "offer-ai-xgboost", "s3://b/offer-ai/exports/20260101/train/parquet/") is None


def test_a_retry_follows_the_running_job_instead_of_starting_another(aws, tmp_path, monkeypatch):
    import boto3

    from offer_ai.model import sagemaker_launch

    session = boto3.Session(region_name="us-east-1")
    bucket = _bucket(session)
    lake = tmp_path / "lake"
    write_export(lake / "exports" / "training", "20260308")
    first_code, first, err = run_in_process(load_job("train_sagemaker"), "--lake", str(lake),
                                            "--set", f"sagemaker.bucket={bucket}")
    assert first_code == 0, err
    sagemaker = session.client("sagemaker")
    running = {**sagemaker.describe_training_job(TrainingJobName=first["job_name"]), "TrainingJobStatus": "InProgress"}
    seen = []

    def still_running(client, base_job_name, train_uri):  # moto's jobs complete at once; this one has not
        seen.append(train_uri)
        return running if train_uri == first["channels"]["train"] else None

    monkeypatch.setattr(sagemaker_launch, "find_running_job", still_running)
    s3 = session.client("s3")
    before = s3.list_objects_v2(Bucket=bucket)["KeyCount"]
    jobs_before = len(sagemaker.list_training_jobs()["TrainingJobSummaries"])
    code, summary, err = run_in_process(load_job("train_sagemaker"), "--lake", str(lake),
                                        "--set", f"sagemaker.bucket={bucket}")
    assert code == 0, err
    assert seen == [f"s3://{bucket}/offer-ai/exports/20260308/train/parquet/"]
    assert summary["reattached"] is True and summary["job_name"] == first["job_name"]
    assert summary["channels"] == first["channels"] and summary["uploaded_objects"] == 0
    assert len(sagemaker.list_training_jobs()["TrainingJobSummaries"]) == jobs_before  # no second job
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == before                       # nothing uploaded again


def test_uploading_a_rebuilt_export_leaves_no_part_of_the_last_upload(aws, tmp_path):
    import boto3

    from offer_ai.model.sagemaker_launch import upload_export

    s3 = boto3.Session(region_name="us-east-1").client("s3")
    bucket = _bucket(boto3.Session(region_name="us-east-1"))
    export = write_export(tmp_path / "first", "20260308")
    upload_export(export, bucket, "offer-ai", s3)
    for split in ("train", "validation"):  # a rebuild: Spark names its part files anew each time
        old = export / split / "parquet" / "part-00000-x.snappy.parquet"
        old.rename(old.with_name("part-00000-y.snappy.parquet"))
    uploaded = upload_export(export, bucket, "offer-ai", s3)
    listed = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="offer-ai/exports/")["Contents"])
    assert listed == sorted(uploaded.keys) == [
        "offer-ai/exports/20260308/manifest.json",
        "offer-ai/exports/20260308/train/parquet/part-00000-y.snappy.parquet",
        "offer-ai/exports/20260308/validation/parquet/part-00000-y.snappy.parquet",
    ]


def test_unreadable_s3_exports_and_bad_run_ids_are_refused_in_a_sentence(aws, tmp_path):
    import boto3

    from offer_ai.model.sagemaker_launch import s3_export

    s3 = boto3.Session(region_name="us-east-1").client("s3")
    with pytest.raises(UserError, match=r"^Cannot read s3://no-such-bucket-x/exports/r1/manifest.json: NoSuchBucket"):
        s3_export("s3://no-such-bucket-x/exports/r1", s3)
    bucket = _bucket(boto3.Session(region_name="us-east-1"))
    s3.put_object(Bucket=bucket, Key="exports/r1/manifest.json", Body=b"{not json")
    with pytest.raises(UserError, match=r"exports/r1/manifest.json is not an offer-ai training export manifest"):
        s3_export(f"s3://{bucket}/exports/r1", s3)
    code, summary, err = run_in_process(load_job("train_sagemaker"), "--lake", str(tmp_path), "--run-id", "../x")
    assert code == 2 and summary is None
    assert "argument --run-id: '../x' is not a run id: letters, digits, '.', '_' or '-'" in err
