"""jobs/promote_model.py: the guard's figures worked out here, the pointer, a refusal, a rollback,
and a SageMaker artifact found by its export against the moto server.

The export is written by hand (no Spark): a label of 20 · facebook_connected + 15 · [vip_pass] +
noise, logged under a uniform policy (propensity 1/8). A model trained on it predicts and
ranks well; one trained on rows where starter_pack pays instead still predicts the facebook
half (so it beats the baseline RMSE) but ranks the offers backwards, so its policy earns less
than the logging one. The guard's numbers are recomputed below with numpy from the rows this
file wrote — the DR formula written out again, not called.
"""

from __future__ import annotations

import json
import tarfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from job_runner import load_job, run_in_process  # tests/ is on sys.path

from offer_ai.model import model_registry as registry
from offer_ai.model.model import OfferModel, train
from offer_ai.model.offers import Offer, load_offers

REPO = Path(__file__).resolve().parents[1]
OFFERS = load_offers(REPO / "conf" / "offers.yaml")
K = len(OFFERS)
COUNTRIES = {"DE": 0, "US": 1}
OFFER_TYPES = {"coins_bundle": 0, "starter_pack": 1, "vip_pass": 2, "xmas": 3}
SPEC = "spec-promote"
EPSILON = 0.1
PROMOTE = load_job("promote_model")
pytestmark = pytest.mark.filterwarnings("ignore:sagemaker.train.configs has been moved:DeprecationWarning")


def decoded_rows(n: int, seed: int, pays: str = "vip_pass") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    offer = rng.integers(0, K, n)
    fb = rng.integers(0, 2, n).astype(bool)
    games = rng.integers(0, 12, n).astype(float)
    label = 20.0 * fb + 15.0 * np.array([OFFERS[k].offer_type == pays for k in offer]) + rng.exponential(2.0, n)
    return pd.DataFrame({
        "next_week_purchase_amount": np.round(label, 2),
        "country": rng.choice(list(COUNTRIES), n),
        "facebook_connected": fb,
        "last_session_games_played": games,
        "last_session_win_ratio": np.round(rng.random(n), 3),
        "prev_week_purchase_amount": np.round(rng.exponential(5.0, n), 2),
        "offer_type": [OFFERS[k].offer_type for k in offer],
        "offer_price": [OFFERS[k].offer_price for k in offer],
        "offer_propensity": np.full(n, 1 / K),
    })


def write_export(root: Path, run_id: str, train_rows: pd.DataFrame, valid_rows: pd.DataFrame) -> Path:
    """An export folder as offer_ai.features.training_export lays it out (codes + manifest)."""
    base = root / run_id
    columns = []
    for i, name in enumerate(train_rows.columns):
        column = {"index": i, "name": name, "type": "double"}
        if name in ("country", "facebook_connected", "offer_type"):
            column.update(type="int", categorical=True, source_type="boolean" if name == "facebook_connected" else "string")
        columns.append(column)
    codes = {"country": COUNTRIES, "facebook_connected": {"false": 0, "true": 1}, "offer_type": OFFER_TYPES}
    for split, frame in (("train", train_rows), ("validation", valid_rows)):
        encoded = frame.assign(country=frame["country"].map(COUNTRIES), offer_type=frame["offer_type"].map(OFFER_TYPES),
                               facebook_connected=frame["facebook_connected"].astype(int))
        (base / split / "parquet").mkdir(parents=True)
        encoded.to_parquet(base / split / "parquet" / "part-00000.parquet", index=False)
    manifest = {"format": "offer-ai training export", "format_version": 1, "run_id": run_id, "spec_version": SPEC,
                "label": "next_week_purchase_amount", "columns": columns, "categorical_encodings": codes,
                "created_at": "2026-02-01T00:00:00Z", "rows": {"train": len(train_rows), "validation": len(valid_rows)}}
    (base / "manifest.json").write_text(json.dumps(manifest))
    return base


def model_folder(path: Path, rows: pd.DataFrame, valid: pd.DataFrame) -> Path:
    model = train(rows, valid, "reg:squarederror", {"max_depth": 3, "eta": 0.3}, offers=OFFERS, spec_version=SPEC,
                  num_boost_round=40)
    model.metrics["export_run_id"] = "hand"
    return model.save(path)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("promote")
    train_rows, valid_rows = decoded_rows(800, 1), decoded_rows(300, 2)
    export = write_export(root / "lake" / "exports" / "training", "hand", train_rows, valid_rows)
    return {
        "root": root, "lake": root / "lake", "export": export, "train": train_rows, "valid": valid_rows,
        "good": model_folder(root / "good", train_rows, valid_rows),
        "backwards": model_folder(root / "backwards", decoded_rows(800, 3, pays="starter_pack"), valid_rows),
    }


def args(world: dict, models: Path, *extra: str) -> list[str]:
    return ["--lake", str(world["lake"]), "--set", f"serving.models_root={models}", "--set", f"serving.epsilon={EPSILON}",
            *extra]


def hand_guard(model: OfferModel, train_rows: pd.DataFrame, valid: pd.DataFrame) -> dict[str, float]:
    """RMSE against the training mean, and DR / logging value, written out with numpy."""
    y = valid["next_week_purchase_amount"].to_numpy()
    baseline = np.sqrt(np.mean((y - train_rows["next_week_purchase_amount"].mean()) ** 2))
    rmse = np.sqrt(np.mean((y - model.predict(valid)) ** 2))
    q = model.score_candidates(valid, OFFERS)
    pi = np.full(q.shape, EPSILON / K)
    pi[np.arange(len(q)), q.argmax(axis=1)] += 1 - EPSILON
    a = np.array([OFFERS.index(Offer(t, p)) for t, p in zip(valid["offer_type"], valid["offer_price"])])
    rows = np.arange(len(q))
    dr = np.mean((pi * q).sum(axis=1) + pi[rows, a] / (1 / K) * (y - q[rows, a]))
    return {"validation_rmse": rmse, "baseline_rmse": baseline, "policy_dr": dr, "logging_value": y.mean()}


def test_a_model_that_predicts_and_earns_is_promoted_and_pointed_at(world, tmp_path):
    models = tmp_path / "models"
    code, summary, err = run_in_process(PROMOTE, *args(world, models, "--model", str(world["good"])))
    assert code == 0, err
    good = OfferModel.load(world["good"])
    guard, want = summary["guard"], hand_guard(good, world["train"], world["valid"])
    for key, value in want.items():
        assert guard[key] == pytest.approx(value, rel=1e-6), key
    assert guard["passed"] and guard["rows"] == 300
    assert want["policy_dr"] > want["logging_value"] + 3  # a clear margin, not a coin flip
    assert (models / "CURRENT").read_text() == f"{good.model_version}\n"
    installed = models / "versions" / good.model_version
    assert OfferModel.load(installed).model_version == good.model_version
    assert json.loads((installed / "promotion.json").read_text())["guard"]["passed"] is True
    history = [json.loads(line) for line in (models / "promotions.jsonl").read_text().splitlines()]
    assert [(h["version"], h["previous"]) for h in history] == [(good.model_version, None)]
    assert summary["export"].endswith("exports/training/hand")  # the model's own export, found from its metrics


def test_a_model_whose_policy_earns_less_than_logging_is_refused_in_a_sentence(world, tmp_path):
    models = tmp_path / "models"
    code, summary, err = run_in_process(PROMOTE, *args(world, models, "--model", str(world["backwards"])))
    assert code == 1
    backwards = OfferModel.load(world["backwards"])
    want = hand_guard(backwards, world["train"], world["valid"])
    assert want["validation_rmse"] < want["baseline_rmse"]  # it does predict: only the second rule refuses it
    assert want["policy_dr"] < want["logging_value"]
    assert summary["guard"]["policy_dr"] == pytest.approx(want["policy_dr"], rel=1e-6)
    assert summary["promoted"] is False and not (models / "CURRENT").exists()
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"promote_model: error: Model {backwards.model_version} is not promoted: the doubly-robust value")
    assert "below the logging policy's" in line and "Traceback" not in err


def test_force_promotes_past_a_refusal_and_records_it(world, tmp_path):
    models = tmp_path / "models"
    code, summary, err = run_in_process(PROMOTE, *args(world, models, "--model", str(world["backwards"]), "--force"))
    assert code == 0, err
    version = OfferModel.load(world["backwards"]).model_version
    assert summary["forced"] is True and summary["guard"]["passed"] is False
    assert registry.current_version(models) == version
    record = registry.record(models, version)
    assert record["forced"] is True and record["guard"]["reasons"]
    assert "forced past the guard" in err
    # a forced version is not one to roll back to
    code, _, err = run_in_process(PROMOTE, *args(world, models, "--version", version))
    assert code == 2 and "has no promotion that passed the guard" in err


def test_a_model_that_does_not_beat_the_constant_is_refused(world, tmp_path):
    noise = decoded_rows(800, 5).assign(next_week_purchase_amount=np.random.default_rng(5).exponential(10.0, 800))
    folder = model_folder(tmp_path / "noise", noise, world["valid"])
    code, summary, err = run_in_process(PROMOTE, *args(world, tmp_path / "models", "--model", str(folder)))
    assert code == 1 and "does not beat the no-skill baseline" in err
    assert summary["guard"]["validation_rmse"] > summary["guard"]["baseline_rmse"]


def test_check_only_reports_without_promoting_and_a_rollback_points_back(world, tmp_path):
    models = tmp_path / "models"
    code, summary, _ = run_in_process(PROMOTE, *args(world, models, "--model", str(world["good"]), "--check-only"))
    assert code == 0 and summary["guard"]["passed"] and not (models / "CURRENT").exists()

    first = OfferModel.load(world["good"]).model_version
    assert run_in_process(PROMOTE, *args(world, models, "--model", str(world["good"])))[0] == 0
    retrained = train(world["train"], world["valid"], "reg:squarederror", {"max_depth": 3, "eta": 0.2}, offers=OFFERS,
                      spec_version=SPEC, num_boost_round=40).save(tmp_path / "retrained")
    second = OfferModel.load(retrained).model_version
    assert second != first
    assert run_in_process(PROMOTE, *args(world, models, "--model", str(retrained)))[0] == 0
    assert registry.current_version(models) == second
    code, summary, err = run_in_process(PROMOTE, *args(world, models, "--version", first))
    assert code == 0, err
    assert registry.current_version(models) == first and summary["previous"] == second
    code, _, err = run_in_process(PROMOTE, *args(world, models, "--version", "never-promoted"))
    assert code == 2 and "has no promotion that passed the guard" in err


def test_a_model_of_other_features_or_without_a_model_is_refused(world, tmp_path):
    other = train(world["train"], world["valid"], "reg:squarederror", offers=OFFERS, spec_version="another-spec",
                  num_boost_round=5).save(tmp_path / "other")
    code, _, err = run_in_process(PROMOTE, *args(world, tmp_path / "models", "--model", str(other), "--run-id", "hand"))
    assert code == 2 and "judge it on an export of its own features" in err
    code, _, err = run_in_process(PROMOTE, *args(world, tmp_path / "models"))
    assert code == 2 and "Name the model to promote" in err
    code, _, err = run_in_process(PROMOTE, *args(world, tmp_path / "models", "--model", str(tmp_path / "nowhere")))
    assert code == 2 and "There is no model folder" in err


def test_readers_of_current_never_see_a_torn_pointer(world, tmp_path):
    """CURRENT flips between two versions while a thread reads it: every read names one of them."""
    models = tmp_path / "models"
    a = registry.install(models, world["good"])
    b = registry.install(models, world["backwards"])
    seen: set[str | None] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.add(registry.current_version(models))

    reader = threading.Thread(target=read)
    registry.point_current(models, a, {})
    reader.start()
    for i in range(200):
        registry.point_current(models, (a, b)[i % 2], {})
    stop.set()
    reader.join()
    assert seen <= {a, b} and len(seen) == 2
    assert not [p for p in models.iterdir() if p.name.startswith(".")]  # no temporary file left behind


# --- a SageMaker artifact, found by the export it was trained on (what the DAG runs) -----------------------


@pytest.fixture
def aws(dynamodb_endpoint, tmp_path) -> Iterator[str]:
    config = tmp_path / "sagemaker-config.yaml"  # no telemetry calls from a test
    config.write_text("SchemaVersion: '1.0'\nSageMaker:\n  PythonSDK:\n    Modules:\n      TelemetryOptOut: true\n")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ENDPOINT_URL", dynamodb_endpoint)
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        env.setenv("SAGEMAKER_VALIDATE_ROLE", "false")
        env.setenv("SAGEMAKER_USER_CONFIG_OVERRIDE", str(config))
        yield dynamodb_endpoint


def test_the_newest_completed_job_on_the_export_is_downloaded_judged_and_promoted(aws, world, tmp_path):
    import boto3

    from offer_ai.config import load_settings
    from offer_ai.model.sagemaker_launch import launch_training, split_s3_uri

    bucket = f"promote-{uuid.uuid4().hex[:8]}"
    session = boto3.Session(region_name="us-east-1")
    session.client("s3").create_bucket(Bucket=bucket)
    settings = load_settings(REPO / "conf" / "local.yaml", [f"sagemaker.bucket={bucket}"])
    launched = launch_training(settings, world["export"], {"num_round": 10}, wait=False, boto_session=session)
    job = session.client("sagemaker").describe_training_job(TrainingJobName=launched.job_name)
    # moto never runs the container: put the artifact where SageMaker would (<output>/<job>/output/model.tar.gz).
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in Path(world["good"]).iterdir():
            tar.add(path, arcname=path.name)
    session.client("s3").upload_file(str(archive), *split_s3_uri(job["ModelArtifacts"]["S3ModelArtifacts"]))

    models = tmp_path / "models"
    code, summary, err = run_in_process(PROMOTE, *args(world, models, "--set", f"sagemaker.bucket={bucket}",
                                                       "--run-id", "hand", "--from-sagemaker"))
    assert code == 0, err
    assert summary["source"] == f"sagemaker:{launched.job_name}"
    assert registry.current_version(models) == OfferModel.load(world["good"]).model_version
