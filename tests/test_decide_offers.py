"""The decision step against a real HTTP DynamoDB (moto server) and a real, small XGBoost model.

The model is trained here on hand-made rows in which each country clearly prefers one offer,
so the greedy offer differs between players; every expected choice and propensity is worked
out beside the code under test — the argmax of ``score_candidates`` on a DataFrame this file
builds, and ε-greedy's 1 − ε + ε/K or ε/K by hand.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from job_runner import load_job, run_in_process

from offer_ai.config import OnlineStoreSettings
from offer_ai.errors import UserError
from offer_ai.model.model import OfferModel, train
from offer_ai.model.offers import Offer, load_offers
from offer_ai.online.decisions import decide_for_users
from offer_ai.online.local_dynamodb import free_port
from offer_ai.online.client import make_client
from offer_ai.online.reader import OnlineFeatureReader
from offer_ai.online.writer import write_items

REPO = Path(__file__).resolve().parents[1]
OFFERS = load_offers(REPO / "conf" / "offers.yaml")  # the job's default catalogue: 8 offers
K = len(OFFERS)
SPEC = "spec-test-1"
AS_OF = dt.datetime(2026, 1, 28, 12, 0, tzinfo=dt.timezone.utc)
#: Which offer pays in each country in the training rows (everything else earns ~1).
FAVOURITE = {"US": Offer("vip_pass", 49.99), "DE": Offer("starter_pack", 0.99), "FR": Offer("coins_bundle", 9.99)}
CONTEXT = ("country", "facebook_connected", "last_session_games_played", "last_session_win_ratio", "prev_week_purchase_amount")


@pytest.fixture(scope="module")
def model() -> OfferModel:
    """Squared error, 40 shallow trees on 144 rows: trains in well under a second."""
    records = []
    for country, fb, games in itertools.product(FAVOURITE, (True, False), (0, 3, 10)):
        for offer in OFFERS:
            records.append({
                "country": country, "facebook_connected": fb, "last_session_games_played": float(games),
                "last_session_win_ratio": 0.5 if games else None, "prev_week_purchase_amount": float(games),
                "offer_type": offer.offer_type, "offer_price": offer.offer_price,
                "next_week_purchase_amount": 20.0 if offer == FAVOURITE[country] else 1.0,
            })
    rows = pd.DataFrame(records)
    return train(rows, rows, "reg:squarederror", {"max_depth": 3, "eta": 0.3}, offers=OFFERS,
                 spec_version=SPEC, num_boost_round=40)


def item(user_id: str, country: str | None = "US", **overrides: Any) -> dict[str, Any]:
    base = {"user_id": user_id, "as_of": AS_OF, "country": country, "facebook_connected": True,
            "last_session_games_played": 3, "last_session_win_ratio": 0.5, "prev_week_purchase_amount": 4.99,
            "spec_version": SPEC}
    return {**base, **overrides}


def hand_scores(model: OfferModel, rows: list[dict[str, Any]]) -> np.ndarray:
    """Scores of a context DataFrame built here, from the values written to the store."""
    frame = pd.DataFrame({c: [r[c] for r in rows] for c in CONTEXT})
    return model.score_candidates(frame, OFFERS)


def test_epsilon_zero_serves_the_argmax_of_the_models_scores_for_each_user(dynamodb_table, model):
    users = [item("us-1", "US"), item("de-1", "DE", facebook_connected=False, last_session_games_played=10,
                                       prev_week_purchase_amount=10.0),
             item("fr-1", "FR", last_session_games_played=0, last_session_win_ratio=None, prev_week_purchase_amount=0.0)]
    write_items(users, dynamodb_table)
    scores = hand_scores(model, users)
    best = scores.argmax(axis=1)
    # The model learnt the countries' favourites, so the users' greedy offers differ: a mix-up would show.
    assert [OFFERS[k] for k in best] == [FAVOURITE["US"], FAVOURITE["DE"], FAVOURITE["FR"]]

    with OnlineFeatureReader(dynamodb_table) as reader:
        got = decide_for_users(reader, model, OFFERS, 0.0, 7, ["us-1", "de-1", "fr-1"])

    assert [d.user_id for d in got] == ["us-1", "de-1", "fr-1"]
    for d, row, k, s in zip(got, users, best, scores):
        assert d.offer == OFFERS[k] == d.greedy_offer
        assert d.propensity == 1.0 and not d.explored and not d.cold_start
        assert d.expected_revenue == pytest.approx(s[k], rel=1e-6)
        assert d.as_of == AS_OF
        assert d.features == {c: row[c] for c in CONTEXT}
        assert d.model_version == model.model_version


def test_propensity_is_one_minus_epsilon_plus_epsilon_over_k_for_greedy_else_epsilon_over_k(dynamodb_table, model):
    countries = list(FAVOURITE)
    users = [item(f"u{i:02d}", countries[i % 3], last_session_games_played=i % 11) for i in range(60)]
    write_items(users, dynamodb_table)
    scores = hand_scores(model, users)
    greedy = [OFFERS[k] for k in scores.argmax(axis=1)]

    with OnlineFeatureReader(dynamodb_table) as reader:
        got = decide_for_users(reader, model, OFFERS, 0.1, 3, [u["user_id"] for u in users])

    # ε = 0.1, K = 8: greedy 1 − 0.1 + 0.1/8 = 0.9125, any other offer 0.1/8 = 0.0125.
    explored = 0
    for d, want, s in zip(got, greedy, scores):
        assert d.greedy_offer == want
        assert d.expected_revenue == pytest.approx(s[OFFERS.index(d.offer)], rel=1e-6)  # the chosen offer's score
        if d.offer == want:
            assert d.propensity == pytest.approx(0.9125)
        else:
            explored += 1
            assert d.propensity == pytest.approx(0.0125)
    assert 0 < explored < 20  # both branches seen; ~60 × 0.0875 ≈ 5 expected

    with OnlineFeatureReader(dynamodb_table) as reader:  # same seed, same decisions
        again = decide_for_users(reader, model, OFFERS, 0.1, 3, [u["user_id"] for u in users])
    assert [d.offer for d in again] == [d.offer for d in got]


def test_a_user_without_an_item_is_a_cold_start_with_the_default_features(dynamodb_table, model):
    write_items([item("known")], dynamodb_table)
    with OnlineFeatureReader(dynamodb_table) as reader:
        known, new = decide_for_users(reader, model, OFFERS, 0.0, 0, ["known", "new-player-0001", "known"])

    assert not known.cold_start and new.cold_start and new.as_of is None
    # DESIGN §4's no-history player: no country, no Facebook, no last session, nothing bought.
    defaults = {"country": None, "facebook_connected": False, "last_session_games_played": None,
                "last_session_win_ratio": None, "prev_week_purchase_amount": 0.0}
    assert new.features == defaults
    scores = model.score_candidates(pd.DataFrame([defaults]), OFFERS)[0]
    assert new.offer == OFFERS[int(scores.argmax())]
    assert new.expected_revenue == pytest.approx(scores.max(), rel=1e-6)


def test_features_from_another_feature_spec_are_refused(dynamodb_table, model):
    write_items([item("ok"), item("old-1", spec_version="spec-old"), item("old-2", spec_version="spec-old")], dynamodb_table)
    with OnlineFeatureReader(dynamodb_table) as reader, pytest.raises(UserError) as caught:
        decide_for_users(reader, model, OFFERS, 0.1, 0, ["ok", "old-1", "old-2"])
    message = str(caught.value)
    assert "'old-1' (and 1 more user(s))" in message
    assert "spec-old" in message and SPEC in message


def test_an_offer_type_the_model_never_saw_is_refused(dynamodb_table, model):
    with OnlineFeatureReader(dynamodb_table) as reader, pytest.raises(UserError, match="never trained on offer type.*mystery_box"):
        decide_for_users(reader, model, [*OFFERS, Offer("mystery_box", 3.0)], 0.1, 0, ["u"])


class ScanSpy:
    """A client that records what each Scan asked for and how many items it evaluated."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.scans: list[tuple[int, int]] = []  # (Limit, ScannedCount)
        self.returned: list[list[str]] = []  # the user ids of each page

    def scan(self, **kwargs: Any) -> dict[str, Any]:
        response = self._client.scan(**kwargs)
        self.scans.append((kwargs["Limit"], response["ScannedCount"]))
        self.returned.append([i["user_id"]["S"] for i in response["Items"]])
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_sample_reads_exactly_n_distinct_users_and_no_more_items_than_it_needs(dynamodb_table):
    ids = [f"p{i}" for i in range(7)]
    write_items([item(u) for u in ids], dynamodb_table)
    spy = ScanSpy(make_client(dynamodb_table))
    reader = OnlineFeatureReader(dynamodb_table, client=spy)

    three = reader.sample_user_ids(3)
    assert len(three) == len(set(three)) == 3 and set(three) <= set(ids)
    assert spy.scans == [(3, 3)]

    assert sorted(reader.sample_user_ids(50)) == ids  # the table ends first


def test_sample_skips_expired_items_and_pages_on_for_the_missing_ones(dynamodb_table):
    # 5 items written 40 days ago with a 30-day TTL: expired, yet still in the table (DynamoDB deletes lazily).
    write_items([item(f"gone{i}") for i in range(5)], dynamodb_table, now=dt.datetime.now().timestamp() - 40 * 86_400)
    write_items([item(f"live{i}") for i in range(4)], dynamodb_table)
    spy = ScanSpy(make_client(dynamodb_table))
    got = OnlineFeatureReader(dynamodb_table, client=spy).sample_user_ids(4)
    assert sorted(got) == [f"live{i}" for i in range(4)]
    # moto scans in key order, so the expired "gone*" items come first and force further pages;
    # each page asked only for the live ids still missing.
    assert len(spy.scans) > 1
    live_before = 0
    for (limit, scanned), page in zip(spy.scans, spy.returned):
        assert limit == 4 - live_before and scanned == len(page) <= limit
        live_before += sum(uid.startswith("live") for uid in page)
    assert live_before == 4


# ------------------------------------------------------------------------------ the job


@pytest.fixture(scope="module")
def decide_job() -> Any:
    return load_job("decide_offers")


@pytest.fixture(scope="module")
def model_dir(model: OfferModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return model.save(tmp_path_factory.mktemp("offer-model") / "model")


def store_args(store: OnlineStoreSettings) -> list[str]:
    return ["--set", f"online_store.endpoint_url={store.endpoint_url}", "--set", f"online_store.table={store.table}"]


def test_job_summary_has_the_right_counts_and_decisions(dynamodb_table, model_dir, decide_job):
    write_items([item("us-1", "US"), item("de-1", "DE"), item("fr-1", "FR"), item("us-2", "US")], dynamodb_table)
    code, summary, err = run_in_process(
        decide_job, "--model", str(model_dir), "--user", "us-1", "--user", "new-player-0001", "--sample", "2",
        "--epsilon", "0", "--seed", "5", *store_args(dynamodb_table),
    )
    assert code == 0, err
    ids = [d["user_id"] for d in summary["decisions"]]
    assert ids[:2] == ["us-1", "new-player-0001"]
    # us-1 may be among the 2 sampled: then it is decided once, and 3 users remain.
    assert len(ids) == len(set(ids)) == summary["users"] and summary["users"] in (3, 4)
    assert set(ids[2:]) <= {"us-1", "de-1", "fr-1", "us-2"}
    assert summary["cold_starts"] == 1 and summary["explored"] == 0
    assert (summary["epsilon"], summary["seed"], summary["offers"]) == (0.0, 5, K)
    assert summary["model_version"] == json.loads((model_dir / "metadata.json").read_text())["model_version"]
    us1, new = summary["decisions"][:2]
    assert (us1["offer_type"], us1["offer_price"], us1["propensity"]) == ("vip_pass", 49.99, 1.0)
    assert us1["as_of"] == AS_OF.isoformat() and new["as_of"] is None and new["cold_start"]


def test_job_output_table_lists_every_decision_before_the_json_line(dynamodb_table, model_dir, decide_job):
    import contextlib
    import io

    from offer_ai.cli import run_job

    write_items([item("de-1", "DE")], dynamodb_table)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()), pytest.raises(SystemExit):
        run_job(decide_job.build_parser(), decide_job.main,
                ["--model", str(model_dir), "--user", "de-1", "--user", "new-player-0001", "--epsilon", "0",
                 "--seed", "1", *store_args(dynamodb_table)])
    lines = out.getvalue().strip().splitlines()
    json.loads(lines[-1])
    assert lines[0].split()[:3] == ["user_id", "as_of", "country"]
    assert lines[1].split()[:5] == ["de-1", "2026-01-28", "12:00", "DE", "yes"]
    assert "starter_pack 0.99" in lines[1]
    assert lines[2].startswith("new-player-0001") and "cold start" in lines[2]
    assert len(lines) == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--user", "u"], "--model DIR is required"),
        (["--model", "{missing}", "--user", "u"], "There is no model folder at {missing}"),
        (["--model", "{model}"], "No users given: pass --user ID"),
        (["--model", "{model}", "--sample", "3"], "DynamoDB table '{table}' holds no user to sample: run export_features first"),
    ],
)
def test_job_user_errors_exit_2_with_one_sentence(dynamodb_table, model_dir, decide_job, tmp_path, args, message):
    paths = {"missing": str(tmp_path / "no-model"), "model": str(model_dir), "table": dynamodb_table.table}
    argv = [a.format(**paths) for a in args]
    code, summary, err = run_in_process(decide_job, *argv, *store_args(dynamodb_table))
    assert (code, summary) == (2, None)
    assert err.strip().splitlines()[-1].startswith(f"decide_offers: error: {message.format(**paths)}")
    assert "Traceback" not in err



@pytest.mark.parametrize(
    ("args", "message"),
    [
        # numpy's default_rng refused a negative seed with a ValueError traceback.
        (["--user", "u", "--seed", "-1"], "argument --seed: expected a whole number >= 0, got '-1'"),
        (["--user", "u", "--seed", "1.5"], "argument --seed: expected a whole number >= 0, got '1.5'"),
        # An empty key reached DynamoDB and came back as a ClientError (ValidationException) traceback.
        (["--user", ""], "argument --user: expected a non-empty user id, got ''"),
        (["--user", "u", "--user", "  "], "argument --user: expected a non-empty user id, got '  '"),
    ],
)
def test_job_refuses_a_negative_seed_and_an_empty_user_id_with_exit_2_and_one_line(model_dir, decide_job, args, message):
    # Refused while parsing, before any DynamoDB call: the endpoint below need not answer.
    url = f"http://127.0.0.1:{free_port()}"
    code, summary, err = run_in_process(decide_job, "--model", str(model_dir), *args,
                                        "--set", f"online_store.endpoint_url={url}")
    assert (code, summary) == (2, None)
    assert err.strip().splitlines()[-1] == f"decide_offers: error: {message}"
    assert "Traceback" not in err


def test_job_accepts_seed_zero(dynamodb_table, model_dir, decide_job):
    write_items([item("us-1", "US")], dynamodb_table)
    code, summary, err = run_in_process(decide_job, "--model", str(model_dir), "--user", "us-1", "--seed", "0",
                                        *store_args(dynamodb_table))
    assert code == 0, err
    assert summary["seed"] == 0 and summary["users"] == 1

def test_job_with_no_dynamodb_answering_names_the_make_target(model_dir, decide_job):
    url = f"http://127.0.0.1:{free_port()}"
    code, _, err = run_in_process(decide_job, "--model", str(model_dir), "--user", "u", "--set", f"online_store.endpoint_url={url}")
    assert code == 2
    assert err.strip().splitlines()[-1] == f"decide_offers: error: No DynamoDB at {url}: start it with `make dynamodb-start`."
