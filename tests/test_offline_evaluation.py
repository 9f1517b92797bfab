"""offer_ai.model.offline_evaluation on hand-computed logged data and hand-made truth records."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from offer_ai.errors import UserError
from offer_ai.model import offline_evaluation as oe
from offer_ai.model.offers import Offer

A, B = Offer("a", 1.0), Offer("b", 2.0)
OFFERS = [A, B]

# Four logged decisions under a uniform logging policy over {A, B} (propensity 1/2 each).
LOGGED = pd.DataFrame({
    "offer_type": ["a", "b", "a", "b"],
    "offer_price": [1.0, 2.0, 1.0, 2.0],
    "offer_propensity": [0.5] * 4,
    "next_week_purchase_amount": [2.0, 4.0, 0.0, 6.0],
})
# The model's predictions per candidate: greedy picks B, A, A (tie -> first), B.
SCORES = np.array([[1.0, 3.0], [2.0, 1.0], [0.5, 0.5], [1.0, 5.0]])
# The simulator's true expected revenue per candidate.
TRUE = np.array([[1.0, 4.0], [2.0, 3.0], [1.0, 1.0], [0.0, 6.0]])


def test_greedy_probabilities_break_ties_to_the_first_offer_and_mix_in_epsilon():
    assert oe.greedy_probabilities(SCORES).tolist() == [[0, 1], [1, 0], [1, 0], [0, 1]]
    assert oe.greedy_probabilities(SCORES, 0.5).tolist() == [[0.25, 0.75], [0.75, 0.25], [0.75, 0.25], [0.25, 0.75]]
    with pytest.raises(UserError, match="epsilon"):
        oe.greedy_probabilities(SCORES, 1.5)


def test_expected_value_is_the_mean_of_each_rows_probability_weighted_values():
    assert oe.expected_value(TRUE, np.full((4, 2), 0.5)) == pytest.approx((2.5 + 2.5 + 1.0 + 3.0) / 4)
    with pytest.raises(UserError, match="same non-empty"):
        oe.expected_value(TRUE, np.ones((3, 2)))


def test_policy_values_match_hand_computed_estimates_and_truth():
    got = oe.evaluate_policies(SCORES, LOGGED, OFFERS, 0.5, true_revenue=TRUE, n_bootstrap=0)
    greedy, explore = got["greedy"], got["epsilon_greedy"]
    # greedy weights π(a_i)/p_i = 0, 0, 2, 2:  IPS = (2·0 + 2·6) / 4,  SNIPS = 12 / 4
    assert greedy["ips"] == pytest.approx(3.0) and greedy["snips"] == pytest.approx(3.0)
    # DR = mean(q̂(x, greedy) + w (r − q̂(x, a))) = ((3 + 2 + 0.5 + 5) + (0 + 0 − 1 + 2)) / 4
    assert greedy["dr"] == pytest.approx(11.5 / 4)
    assert greedy["true_value"] == pytest.approx((4 + 2 + 1 + 6) / 4)
    # ε = 0.5: weights 0.5, 0.5, 1.5, 1.5 -> Σ w r = 1 + 2 + 0 + 9
    assert explore["ips"] == pytest.approx(12 / 4) and explore["snips"] == pytest.approx(12 / 4)
    assert explore["true_value"] == pytest.approx(0.5 * 3.25 + 0.5 * 2.25)
    assert got["logging_value"] == pytest.approx(3.0)
    assert got["true_logging_value"] == pytest.approx(2.25)
    assert got["true_logged_value"] == pytest.approx((1 + 3 + 1 + 6) / 4)
    assert got["true_oracle_value"] == pytest.approx((4 + 3 + 1 + 6) / 4)
    assert got["greedy_offer_share"] == {"a@1.00": 0.5, "b@2.00": 0.5}
    assert math.isnan(greedy["dr_ci"][0])  # no resamples asked, no interval


def test_bootstrap_intervals_bracket_the_estimates():
    got = oe.evaluate_policies(SCORES, LOGGED, OFFERS, 0.1, n_bootstrap=200, seed=1)
    for key in ("ips", "snips", "dr"):
        low, high = got["greedy"][f"{key}_ci"]
        assert low <= got["greedy"][key] <= high
    assert "true_logging_value" not in got and got["greedy"]["true_value"] is None


def test_the_true_logging_value_needs_a_uniform_logging_policy():
    skewed = LOGGED.assign(offer_propensity=[0.9, 0.1, 0.9, 0.1])
    with pytest.raises(UserError, match="not uniform"):
        oe.evaluate_policies(SCORES, skewed, OFFERS, 0.1, true_revenue=TRUE, n_bootstrap=0)
    # without the truth the estimators take any logged propensities
    assert oe.evaluate_policies(SCORES, skewed, OFFERS, 0.1, n_bootstrap=0)["greedy"]["ips"] == pytest.approx(
        (6 / 0.1) / 4)


def test_logged_rows_need_a_propensity_and_an_offer_from_the_catalogue():
    with pytest.raises(UserError, match="1 logged rows have no propensity"):
        oe.logged_arrays(LOGGED.assign(offer_propensity=[0.5, None, 0.5, 0.5]), OFFERS)
    with pytest.raises(UserError, match="not in the catalogue"):
        oe.logged_arrays(LOGGED.assign(offer_price=[1.0, 2.0, 1.0, 3.0]), OFFERS)
    with pytest.raises(UserError, match=r"predictions must be \[n=4, K=2\]"):
        oe.evaluate_policies(SCORES[:3], LOGGED, OFFERS, 0.1, n_bootstrap=0)


# --- pairing validation rows with truth records -----------------------------------------------------

T = pd.Timestamp("2026-01-10T00:00:00Z")


def truth_record(user: str, session: str, hours: float, first_in_day: bool = True, **features) -> dict:
    base = {"user_id": user, "session_id": session, "decision_time": T + pd.Timedelta(hours=hours),
            "first_in_day": first_in_day, "country": "US", "facebook_connected": False,
            "prev_week_purchase_amount": 0.0, "last_session_games_played": None, "last_session_win_ratio": None,
            "offer_type": "a", "offer_price": 1.0, "realised_next_week_purchase_amount": 0.0,
            "expected_revenue": {"a@1.00": hours, "b@2.00": 2 * hours}}
    base.update(features)
    return base


TRUTH = pd.DataFrame([
    truth_record("u2", "s1", 5.0, country="DE", realised_next_week_purchase_amount=9.99),
    truth_record("u1", "s2", 5.0, facebook_connected=True, offer_type="b", offer_price=2.0),
    truth_record("u1", "s3", 6.0, first_in_day=False),       # a second offer that day: not an anchor
    truth_record("u3", "s4", -1.0),                          # before the validation cut-off
    truth_record("u3", "s5", 9.0, last_session_games_played=4, last_session_win_ratio=0.25),
    truth_record("u4", "s6", 30.0),                          # after the last complete decision
])
#: The validation rows as the export holds them: decision time, then user id, order; no keys.
ROWS = pd.DataFrame({
    "country": ["US", "DE", "US"],
    "facebook_connected": pd.array([True, False, False], dtype="boolean"),
    "prev_week_purchase_amount": [0.0, 0.0, 0.0],
    "last_session_games_played": [np.nan, np.nan, 4.0],
    "last_session_win_ratio": [np.nan, np.nan, 0.25],
    "offer_type": ["b", "a", "a"],
    "offer_price": [2.0, 1.0, 1.0],
    "next_week_purchase_amount": [0.0, 9.99, 0.0],
})


def test_truth_is_aligned_with_the_exports_row_order_and_checked():
    aligned = oe.align_truth(ROWS, TRUTH, first=T, last=T + pd.Timedelta(hours=24))
    assert aligned["session_id"].tolist() == ["s2", "s1", "s5"]
    assert oe.true_revenue_matrix(aligned, OFFERS).tolist() == [[5.0, 10.0], [5.0, 10.0], [9.0, 18.0]]


@pytest.mark.parametrize(("column", "value", "message"), [
    ("country", ["US", "FR", "US"], "row 1 .* disagree on country: 'FR' vs 'DE'"),
    ("next_week_purchase_amount", [0.0, 9.98, 0.0], "row 1 .* disagree on next_week_purchase_amount"),
    ("last_session_games_played", [np.nan, 0.0, 4.0], "row 1 .* disagree on last_session_games_played"),
])
def test_a_row_that_disagrees_with_its_truth_record_fails_naming_the_column(column, value, message):
    with pytest.raises(UserError, match=message):
        oe.align_truth(ROWS.assign(**{column: value}), TRUTH, first=T, last=T + pd.Timedelta(hours=24))


def test_a_different_number_of_rows_and_anchors_fails():
    with pytest.raises(UserError, match="3 validation rows but 4 truth anchors"):
        oe.align_truth(ROWS, TRUTH, first=T, last=T + pd.Timedelta(hours=48))


def test_rows_with_keys_are_joined_on_them_in_any_order():
    keyed = ROWS.assign(user_id=["u1", "u2", "u3"], anchor_session_id=["s2", "s1", "s5"]).iloc[[2, 0, 1]]
    aligned = oe.align_truth(keyed, TRUTH)
    assert aligned["session_id"].tolist() == ["s5", "s2", "s1"]


def test_a_catalogue_offer_missing_from_the_truth_is_an_error():
    with pytest.raises(UserError, match="no expected revenue for c@3.00"):
        oe.true_revenue_matrix(TRUTH, [A, Offer("c", 3.0)])


# --- report tables ---------------------------------------------------------------------------------


def test_calibration_bins_rows_by_prediction():
    table = oe.calibration_table([0.0, 1.0, 2.0, 3.0], [3.0, 2.0, 1.0, 0.0], bins=2)
    assert table[["rows", "mean_predicted", "mean_actual"]].values.tolist() == [[2, 0.5, 2.5], [2, 2.5, 0.5]]


def test_revenue_by_offer_groups_logged_rows_by_the_offer_shown():
    table = oe.revenue_by_offer(LOGGED, [1.0, 2.0, 3.0, 4.0])
    assert table[["offer", "rows", "mean_actual", "mean_predicted"]].values.tolist() == [
        ["a@1.00", 2, 1.0, 2.0], ["b@2.00", 2, 5.0, 3.0]]


def test_policy_table_and_summary_metrics_carry_the_headline_numbers():
    policies = oe.evaluate_policies(SCORES, LOGGED, OFFERS, 0.5, true_revenue=TRUE, n_bootstrap=0)
    table = oe.policy_table(policies)
    assert table.index.tolist() == ["logging", "greedy", "epsilon_greedy(0.5)", "oracle"]
    assert table.loc["greedy", "dr"] == pytest.approx(11.5 / 4) and table.loc["oracle", "true_value"] == 3.5
    assert math.isnan(table.loc["logging", "ips"]) and table.loc["logging", "observed"] == 3.0
    metrics = oe.jsonable(oe.summary_metrics({"validation": {"rmse": 1.0, "baseline_rmse": 2.0}}, policies))
    assert metrics["validation"] == {"rmse": 1.0, "baseline_rmse": 2.0}
    assert {k: metrics["policy"][k] for k in ("ips", "snips", "dr", "logging_value", "true_value",
                                              "true_logging_value", "true_oracle_value")} == {
        "ips": 3.0, "snips": 3.0, "dr": 2.875, "logging_value": 3.0, "true_value": 3.25, "true_logging_value": 2.25,
        "true_oracle_value": 3.5}
    assert metrics["policy"]["dr_ci"] == [None, None]  # NaN is not JSON


def test_feature_importance_names_every_model_feature_and_ranks_the_informative_one_first():
    from offer_ai.model.model import train

    rng = np.random.default_rng(0)
    n = 300
    rows = pd.DataFrame({
        "country": rng.choice(["DE", "US"], n), "facebook_connected": rng.integers(0, 2, n).astype(bool),
        "last_session_games_played": rng.integers(0, 9, n).astype(float), "last_session_win_ratio": rng.random(n),
        "prev_week_purchase_amount": rng.exponential(3.0, n), "offer_type": rng.choice(["a", "b"], n),
        "offer_price": rng.choice([1.0, 2.0], n), "decision_time": pd.Timestamp("2026-01-01", tz="UTC"),
    })
    rows["next_week_purchase_amount"] = 10.0 * rows["facebook_connected"] + rng.exponential(0.5, n)
    model = train(rows.iloc[:200], rows.iloc[200:], "reg:squarederror", num_boost_round=20)
    importance = oe.feature_importance(model)
    assert list(importance.index)[0] == "facebook_connected"
    assert set(importance.index) == set(model.feature_names) and (importance >= 0).all()
