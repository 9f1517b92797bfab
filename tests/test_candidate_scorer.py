"""The request-time scorer gives exactly what the model's own (pandas, DMatrix) path gives.

The reference is ``OfferModel.score_candidates`` on a DataFrame built here; the model is a
real XGBoost model trained on rows where every context column and the offer matter, so a
column filled in wrongly (a null that became 0, a country in the wrong one-hot slot) changes
the score.
"""

from __future__ import annotations

import itertools
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from offer_ai.errors import UserError
from offer_ai.model.candidate_scorer import CandidateScorer
from offer_ai.model.model import train
from offer_ai.model.offers import load_offers

REPO = Path(__file__).resolve().parents[1]
OFFERS = load_offers(REPO / "conf" / "offers.yaml")
CONTEXT = ("country", "facebook_connected", "last_session_games_played", "last_session_win_ratio",
           "prev_week_purchase_amount")


@pytest.fixture(scope="module")
def model():
    rng = np.random.default_rng(3)
    n = 2000
    games = rng.integers(0, 12, n).astype(float)
    games[rng.random(n) < 0.2] = np.nan
    offer = rng.integers(0, len(OFFERS), n)
    country = rng.choice(["US", "DE", "BR", None], n)
    fb = rng.random(n) < 0.4
    ratio = np.where(np.isnan(games), np.nan, rng.random(n))
    label = (10 * fb + np.nan_to_num(games) + 5 * (country == "US") + 3 * offer
             + np.where(np.isnan(ratio), 4.0, ratio) + rng.exponential(1.0, n))
    rows = pd.DataFrame({
        "country": country, "facebook_connected": fb, "last_session_games_played": games,
        "last_session_win_ratio": ratio, "prev_week_purchase_amount": rng.exponential(5.0, n),
        "offer_type": [OFFERS[k].offer_type for k in offer], "offer_price": [OFFERS[k].offer_price for k in offer],
        "next_week_purchase_amount": label,
    })
    return train(rows, rows, "reg:squarederror", {"max_depth": 5}, offers=OFFERS, num_boost_round=60)


CONTEXTS = [
    {"country": c, "facebook_connected": fb, "last_session_games_played": g, "last_session_win_ratio": r,
     "prev_week_purchase_amount": p}
    for c, fb, (g, r), p in itertools.product(
        ["US", "DE", "FR", None],  # FR was never seen in training: the unknown column
        [True, False, None],
        [(None, None), (0, None), (3, 2 / 3), (11, 0.0)],
        [0.0, 4.99, 123.4],
    )
]


def test_every_context_scores_as_the_models_own_path_does(model):
    scorer = CandidateScorer(model, OFFERS)
    reference = model.score_candidates(pd.DataFrame([{c: ctx[c] for c in CONTEXT} for ctx in CONTEXTS]), OFFERS)
    got = np.vstack([scorer.scores(ctx) for ctx in CONTEXTS])
    assert got.shape == (len(CONTEXTS), len(OFFERS))
    np.testing.assert_array_equal(got, reference)
    # and the scores do depend on the context (a scorer that ignored it would pass nothing above)
    assert len({tuple(np.round(row, 4)) for row in got}) > 30


def test_a_subset_of_candidates_scores_those_rows_only(model):
    scorer = CandidateScorer(model, OFFERS)
    ctx = CONTEXTS[17]
    full = scorer.scores(ctx)
    np.testing.assert_array_equal(scorer.scores(ctx, [6, 1, 3]), full[[6, 1, 3]])


def test_decimals_from_dynamodb_and_missing_keys_are_read_like_the_encoder(model):
    scorer = CandidateScorer(model, OFFERS)
    as_floats = {"country": "DE", "facebook_connected": True, "last_session_games_played": 3,
                 "last_session_win_ratio": 0.5, "prev_week_purchase_amount": 9.99}
    as_decimals = {**as_floats, "last_session_games_played": Decimal("3"), "prev_week_purchase_amount": Decimal("9.99")}
    np.testing.assert_array_equal(scorer.scores(as_decimals), scorer.scores(as_floats))
    missing = {"country": None}  # a cold start without the optional attributes at all
    reference = model.score_candidates(pd.DataFrame([{c: None for c in CONTEXT}]), OFFERS)[0]
    np.testing.assert_array_equal(scorer.scores(missing), reference)


def test_a_text_value_in_a_numeric_feature_is_refused_in_a_sentence(model):
    with pytest.raises(UserError, match="last_session_games_played must be numeric"):
        CandidateScorer(model, OFFERS).scores({**CONTEXTS[0], "last_session_games_played": "3"})
