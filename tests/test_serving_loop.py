"""The loop closed, end to end: served decisions come back as training rows with their propensities.

Generated players (60 x 14 days) are sessionized, feature-built and exported to the moto
DynamoDB as of the range's end; a model trained on that export is promoted and served over
HTTP. Each player opens a session an hour after the range (the simulator gives the session
ids a game client would send), the service decides and logs; the simulator plays each
player's response to the offer it was served (bought or not, with the player model's true
take probability) and their next eight days; sessionize and build_features run again. Then:
every served decision is a training row of its session, at the service's decision time, with
the served offer and propensity and a closed label that holds the offer's purchase when the
player bought it; and the off-policy estimators read those propensities — IPS of the logged
policy itself (its distribution is in the decision log) equals the observed mean, as it must
when every weight is 1.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
from job_runner import load_job, run_in_process  # tests/ is on sys.path
from service_support import running

from offer_ai.config import load_settings
from offer_ai.features.export_reader import load_export
from offer_ai.model import model_registry as registry
from offer_ai.model import sagemaker_entry
from offer_ai.model.evaluation import ips
from offer_ai.model.model import OfferModel
from offer_ai.model.offers import Offer, load_offers
from offer_ai.model.offline_evaluation import evaluate_policies, logged_arrays
from offer_ai.online.decision_log import read_decisions
from offer_ai.online.service import create_app
from offer_ai.sim import GeneratorOptions
from offer_ai.sim.responses import open_sessions, respond

REPO = Path(__file__).resolve().parents[1]
USERS, DAYS, SEED = 60, 14, 11
START = dt.date(2026, 1, 1)
END = dt.datetime(2026, 1, 15, tzinfo=dt.timezone.utc)
OPENED = END + dt.timedelta(hours=1)
DECIDED = OPENED + dt.timedelta(seconds=5, microseconds=250_000)
OFFERS = load_offers(REPO / "conf" / "offers.yaml")
EPSILON = 0.3  # explores often, so both kinds of propensity come back


@pytest.fixture(scope="module")
def loop(spark, dynamodb_endpoint, tmp_path_factory) -> dict:
    import httpx

    root = tmp_path_factory.mktemp("loop")
    raw, lake, models = root / "raw", root / "lake", root / "models"
    table = f"loop_{root.name[-8:]}".replace("-", "_")
    common = ["--lake", str(lake), "--set", f"raw.root={raw}", "--set", f"online_store.endpoint_url={dynamodb_endpoint}",
              "--set", f"online_store.table={table}", "--set", "online_store.create_table=true"]
    code, _, err = run_in_process(load_job("generate_events"), "--out", str(raw), "--users", str(USERS), "--days",
                                  str(DAYS), "--start-date", START.isoformat(), "--seed", str(SEED))
    assert code == 0, err
    for job, args in (("sessionize", ["--input", str(raw)]), ("build_features", ["--run-id", "before"]),
                      ("export_features", ["--as-of", END.isoformat()])):
        code, _, err = run_in_process(load_job(job), *common, *args)
        assert code == 0, f"{job}: {err[-3000:]}"
    model_dir = root / "model"
    assert sagemaker_entry.main(sagemaker_entry.local_argv(lake / "exports" / "training" / "before", model_dir,
                                                           {"num_round": 30, "max_depth": 3})) == 0
    version = registry.install(models, model_dir)
    registry.point_current(models, version, {"source": "test"})

    settings = load_settings(REPO / "conf" / "local.yaml", [
        f"raw.root={raw}", f"online_store.endpoint_url={dynamodb_endpoint}", f"online_store.table={table}",
        f"serving.models_root={models}", f"serving.epsilon={EPSILON}", "serving.store_timeout_ms=3000",
        "serving.store_read_timeout_ms=3000", "serving.store_connect_timeout_ms=3000"])
    options = GeneratorOptions(out=str(raw), offers=tuple(OFFERS), users=USERS, days=DAYS, start_date=START, seed=SEED)
    opened = open_sessions(options, range(USERS), OPENED) + [("new-player-0001", "new-session-1")]
    answers = {}
    with running(create_app(settings, clock=lambda: DECIDED)) as url, httpx.Client(base_url=url) as client:
        for user, session in opened:
            response = client.post("/v1/decisions", json={"user_id": user, "session_id": session})
            assert response.status_code == 200, response.text
            answers[session] = response.json()
    served = read_decisions(raw)
    responses, summary = respond(options, served, OPENED, days_after=8)
    assert summary["unknown_players"] == 1 and summary["players"] == USERS

    new_days = [str(raw / "date=2026-01-1[5-9]"), str(raw / "date=2026-01-2[0-9]")]  # what the nightly runs would read
    for job, args in (("sessionize", ["--input", new_days[0], "--input", new_days[1]]),
                      ("build_features", ["--run-id", "after"])):
        code, _, err = run_in_process(load_job(job), *common, *args)
        assert code == 0, f"{job}: {err[-3000:]}"
    rows = spark.read.format("delta").load(str(lake / "training_examples")).toPandas()
    return {"answers": answers, "served": served, "responses": responses, "rows": rows, "lake": lake,
            "model": OfferModel.load(model_dir), "opened": opened}


def test_every_served_decision_is_a_training_row_with_its_offer_propensity_and_time(loop):
    rows = loop["rows"].set_index("anchor_session_id")
    served = {line["session_id"]: line for line in loop["served"]}
    assert len(served) == USERS + 1 and set(served) == {s for _, s in loop["opened"]}
    for session, answer in loop["answers"].items():
        row = rows.loc[session]
        assert row["user_id"] == served[session]["customer_identifier"]
        assert (row["offer_type"], row["offer_price"]) == (answer["offer_type"], answer["offer_price"])
        assert row["offer_propensity"] == pytest.approx(answer["propensity"], abs=1e-12)
        assert row["decision_time"].tz_localize("UTC") == DECIDED.replace(microsecond=250_000)
        assert bool(row["label_complete"])  # the players played on for eight days
    # ε = 0.3, K = 8: the greedy offer 0.7 + 0.3/8 = 0.7375, any other 0.3/8 = 0.0375; both came back.
    propensities = {round(float(rows.loc[s, "offer_propensity"]), 6) for s in served}
    assert propensities == {0.7375, 0.0375}


def test_the_label_of_a_served_session_holds_the_offer_when_the_simulated_player_bought_it(loop):
    rows = loop["rows"].set_index("anchor_session_id")
    bought = [r for r in loop["responses"] if r.purchased]
    assert 0 < len(bought) < USERS  # some players took their offer, some did not
    for response in loop["responses"]:
        label = rows.loc[response.session_id, "next_week_purchase_amount"]
        if response.purchased:
            assert label >= response.offer.offer_price - 1e-9
        assert 0.0 < response.take_probability < 1.0
    # the cold start: no history, no response, nothing bought within the week
    (new_session,) = [s for u, s in loop["opened"] if u == "new-player-0001"]
    assert rows.loc[new_session, "next_week_purchase_amount"] == 0.0


def test_the_off_policy_evaluation_reads_the_served_propensities(loop):
    manifest, _, valid = load_export(loop["lake"] / "exports" / "training" / "after")
    served = {line["session_id"]: line for line in loop["served"]}
    valid = valid[valid["anchor_session_id"].isin(served)].reset_index(drop=True)
    assert len(valid) == USERS + 1  # the latest decisions: all in the validation split
    actions, rewards, propensities = logged_arrays(valid, OFFERS)
    logged = [served[s] for s in valid["anchor_session_id"]]
    np.testing.assert_allclose(propensities, [line["offer_propensity"] for line in logged])
    # The logging policy's own distribution, from the decision log: every importance weight is 1.
    own = np.array([[c["probability"] for c in line["candidates"]] for line in logged])
    assert [Offer(c["offer_type"], c["offer_price"]) for c in logged[0]["candidates"]] == OFFERS
    assert ips(actions, rewards, propensities, own, n_bootstrap=0).value == pytest.approx(rewards.mean())
    report = evaluate_policies(loop["model"].score_candidates(valid, OFFERS), valid, OFFERS, EPSILON, n_bootstrap=0)
    assert report["rows"] == USERS + 1 and report["logging_value"] == pytest.approx(rewards.mean())
    assert np.isfinite(report["greedy"]["dr"])
