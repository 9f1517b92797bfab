"""Off-policy estimators and regression metrics against values worked out by hand.

The hand-worked log (4 decisions, 2 offers) used throughout:

    row  action  logged p   reward   π(0|x) π(1|x)   q̂(x,0) q̂(x,1)
     1     0       0.50       2.0     1.0    0.0      1.5     0.5
     2     1       0.25       4.0     0.5    0.5      1.0     3.0
     3     0       0.80       0.0     0.0    1.0      0.5     2.0
     4     1       0.50       1.0     0.2    0.8      2.0     1.0

Importance weights w = π(a|x)/p:  2.0, 2.0, 0.0, 1.6
w·r:                              4.0, 8.0, 0.0, 1.6   (sum 13.6)
IPS   = 13.6 / 4                = 3.4
SNIPS = 13.6 / (2 + 2 + 0 + 1.6) = 13.6 / 5.6 = 17/7 ≈ 2.428571
DR direct  Σ_a π q̂:  1.5, 0.5·1 + 0.5·3 = 2.0, 0·0.5 + 1·2 = 2.0, 0.2·2 + 0.8·1 = 1.2  (sum 6.7)
DR correction w(r − q̂(a)):  2·(2 − 1.5) = 1, 2·(4 − 3) = 2, 0, 1.6·(1 − 1) = 0     (sum 3.0)
DR = (6.7 + 3.0) / 4 = 2.425
Logging value = (2 + 4 + 0 + 1) / 4 = 1.75
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from offer_ai.errors import UserError
from offer_ai.model.evaluation import (
    Estimate,
    action_indices,
    doubly_robust,
    ips,
    logging_policy_value,
    off_policy_report,
    regression_metrics,
    snips,
)
from offer_ai.model.offers import Offer

ACTIONS = np.array([0, 1, 0, 1])
PROPENSITIES = np.array([0.5, 0.25, 0.8, 0.5])
REWARDS = np.array([2.0, 4.0, 0.0, 1.0])
TARGET = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0], [0.2, 0.8]])
Q_HAT = np.array([[1.5, 0.5], [1.0, 3.0], [0.5, 2.0], [2.0, 1.0]])


def test_ips_matches_hand_computed_value() -> None:
    assert ips(ACTIONS, REWARDS, PROPENSITIES, TARGET).value == pytest.approx(3.4)


def test_snips_matches_hand_computed_value() -> None:
    assert snips(ACTIONS, REWARDS, PROPENSITIES, TARGET).value == pytest.approx(17 / 7)


def test_doubly_robust_matches_hand_computed_value() -> None:
    assert doubly_robust(ACTIONS, REWARDS, PROPENSITIES, TARGET, Q_HAT).value == pytest.approx(2.425)


def test_logging_policy_value_is_mean_observed_reward() -> None:
    assert logging_policy_value(REWARDS).value == pytest.approx(1.75)


def test_doubly_robust_with_zero_reward_model_reduces_to_ips() -> None:
    # With q̂ ≡ 0 the direct term vanishes and the correction is exactly w·r.
    dr = doubly_robust(ACTIONS, REWARDS, PROPENSITIES, TARGET, np.zeros_like(Q_HAT)).value
    assert dr == pytest.approx(3.4)


def test_actions_may_be_offers_from_the_catalogue() -> None:
    catalogue = [Offer("coins", 4.99), Offer("vip", 9.99)]
    logged = [catalogue[a] for a in ACTIONS]
    assert ips(logged, REWARDS, PROPENSITIES, TARGET, offers=catalogue).value == pytest.approx(3.4)


def test_action_indices_match_prices_to_the_cent_and_reject_unknown_offers() -> None:
    catalogue = [Offer("coins", 4.99), Offer("vip", 9.99)]
    got = action_indices(["vip", "coins", "vip"], [9.990000001, 4.99, 9.99], catalogue)
    np.testing.assert_array_equal(got, [1, 0, 1])
    with pytest.raises(UserError, match="not in the catalogue"):
        action_indices(["vip"], [19.99], catalogue)


def test_doubly_robust_with_a_perfect_reward_model_equals_the_true_value() -> None:
    # Noise-free rewards r = μ(x, a) and q̂ = μ: every residual is 0, so DR is the exact value of
    # π on these contexts, Σ_i Σ_a π(a|x_i) μ(x_i, a) / n — computed here by an explicit loop.
    rng = np.random.default_rng(7)
    n, k = 500, 3
    mu = rng.gamma(2.0, 2.0, size=(n, k))
    logging = rng.dirichlet(np.ones(k), size=n)
    actions = np.array([rng.choice(k, p=row) for row in logging])
    propensities = logging[np.arange(n), actions]
    rewards = mu[np.arange(n), actions]
    target = rng.dirichlet(np.ones(k), size=n)
    truth = sum(sum(target[i, a] * mu[i, a] for a in range(k)) for i in range(n)) / n
    est = doubly_robust(actions, rewards, propensities, target, mu)
    assert est.value == pytest.approx(truth, rel=1e-12)
    # Zero residuals leave no sampling noise from the correction term, but the contexts
    # themselves still vary: the interval must hold the value and be non-degenerate.
    assert est.ci_low < est.value < est.ci_high


def _simulated_log(seed: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two contexts, three actions, a skewed logging policy; returns actions, rewards, p, π."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2, size=n)
    logging = np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])[x]
    cdf = logging.cumsum(axis=1)
    actions = (cdf > rng.random(n)[:, None]).argmax(axis=1)
    mean_reward = np.array([[1.0, 3.0, 0.0], [2.0, 0.5, 5.0]])
    # Zero-inflated rewards like revenue: buy with probability 0.25, then 4× the mean.
    rewards = rng.binomial(1, 0.25, size=n) * 4.0 * mean_reward[x, actions]
    target = np.array([[0.1, 0.8, 0.1], [0.7, 0.1, 0.2]])[x]
    return actions, rewards, logging[np.arange(n), actions], target


# True value of that target policy: contexts equally likely,
# x=0: 0.1·1 + 0.8·3 + 0.1·0 = 2.5;  x=1: 0.7·2 + 0.1·0.5 + 0.2·5 = 2.45;  mean 2.475.
SIMULATED_TRUTH = 2.475


def test_ips_is_unbiased_on_a_simulated_bandit() -> None:
    estimates = [ips(*_simulated_log(seed, 400), n_bootstrap=0).value for seed in range(300)]
    # One estimate has sd ≈ 0.5 here; the mean of 300 has sd ≈ 0.03, so 0.1 is > 3 sd.
    assert np.mean(estimates) == pytest.approx(SIMULATED_TRUTH, abs=0.1)


def test_bootstrap_interval_covers_the_truth_at_about_its_nominal_rate() -> None:
    covered = 0
    runs = 120
    for seed in range(runs):
        est = ips(*_simulated_log(seed + 1000, 600), n_bootstrap=300, seed=seed)
        covered += est.ci_low <= SIMULATED_TRUTH <= est.ci_high
    # Nominal 95 %: 120 runs give a binomial sd of 2 %; percentile bootstraps run a little short.
    assert 0.85 <= covered / runs <= 1.0


def test_bootstrap_interval_width_matches_the_normal_approximation() -> None:
    rng = np.random.default_rng(3)
    rewards = rng.normal(10.0, 2.0, size=2000)
    est = logging_policy_value(rewards, n_bootstrap=2000, seed=1)
    half_width = 1.96 * rewards.std(ddof=1) / math.sqrt(rewards.size)
    assert (est.ci_high - est.ci_low) / 2 == pytest.approx(half_width, rel=0.1)
    assert est.ci_low < rewards.mean() < est.ci_high


def test_bootstrap_is_reproducible_with_a_seed_and_varies_with_another() -> None:
    log = _simulated_log(5, 400)
    a, b, c = (snips(*log, seed=s) for s in (11, 11, 12))
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    assert a.n == 400
    assert (a.ci_low, a.ci_high) != (c.ci_low, c.ci_high)


def test_snips_interval_ignores_resamples_with_no_weighted_row() -> None:
    # Row 3 has weight 0; a resample of only row 3 has 0/0. The interval must stay finite
    # and lie within the range of the per-row w·r/w ratios (2, 4 and 1 for rows 1, 2, 4).
    est = snips(ACTIONS, REWARDS, PROPENSITIES, TARGET, seed=11)
    assert 1.0 <= est.ci_low <= est.value <= est.ci_high <= 4.0


def test_constant_terms_give_a_degenerate_interval_at_the_value() -> None:
    # Every row has w·r = 2 (w = 1, r = 2): any resample has IPS exactly 2.
    est = ips([0, 1, 0], [2.0, 2.0, 2.0], [0.5, 0.5, 0.5], np.full((3, 2), 0.5))
    assert (est.value, est.ci_low, est.ci_high) == pytest.approx((2.0, 2.0, 2.0))


def test_no_resamples_gives_nan_bounds() -> None:
    est = ips(ACTIONS, REWARDS, PROPENSITIES, TARGET, n_bootstrap=0)
    assert est.value == pytest.approx(3.4) and math.isnan(est.ci_low) and math.isnan(est.ci_high)


def test_snips_is_nan_when_the_target_never_takes_a_logged_action() -> None:
    est = snips([0, 0], [1.0, 2.0], [0.5, 0.5], np.array([[0.0, 1.0], [0.0, 1.0]]))
    assert math.isnan(est.value)


def test_off_policy_report_lists_every_estimate() -> None:
    report = off_policy_report(ACTIONS, REWARDS, PROPENSITIES, TARGET, Q_HAT, n_bootstrap=50)
    assert {k: round(v.value, 6) for k, v in report.items()} == {
        "logging": 1.75,
        "ips": 3.4,
        "snips": round(17 / 7, 6),
        "dr": 2.425,
    }
    assert all(isinstance(v, Estimate) for v in report.values())


@pytest.mark.parametrize(
    "propensities, target, match",
    [
        ([0.5, 0.0, 0.8, 0.5], TARGET, "propensities"),
        ([0.5, 0.25, 1.2, 0.5], TARGET, "propensities"),
        (PROPENSITIES, TARGET * 0.9, "distribution"),
        (PROPENSITIES, TARGET[:3], r"\[n=4, K\]"),
    ],
)
def test_invalid_logged_data_is_rejected(propensities: list[float], target: np.ndarray, match: str) -> None:
    with pytest.raises(UserError, match=match):
        ips(ACTIONS, REWARDS, propensities, target)


def test_regression_metrics_against_hand_computed_values() -> None:
    # y = [0, 0, 3, 5], model [1, 0, 3, 3], baseline = training mean 1.5 for all rows.
    # Model errors 1, 0, 0, 2:  MSE = 5/4, RMSE = √1.25, MAE = 3/4.
    # Baseline errors 1.5, 1.5, 1.5, 3.5: MSE = (2.25·3 + 12.25)/4 = 4.75, MAE = 8/4 = 2.
    # R² around mean(y) = 2: SST = 4 + 4 + 1 + 9 = 18, SSE = 5, R² = 13/18.
    # Skill = 1 − 1.25/4.75 = 14/19.
    m = regression_metrics([0, 0, 3, 5], [1, 0, 3, 3], 1.5)
    assert m["rmse"] == pytest.approx(math.sqrt(1.25))
    assert m["mae"] == pytest.approx(0.75)
    assert m["baseline_rmse"] == pytest.approx(math.sqrt(4.75))
    assert m["baseline_mae"] == pytest.approx(2.0)
    assert m["r2"] == pytest.approx(13 / 18)
    assert m["skill"] == pytest.approx(14 / 19)
    assert m["n"] == 4


def test_regression_metrics_rejects_mismatched_lengths() -> None:
    with pytest.raises(UserError, match="same length"):
        regression_metrics([1.0, 2.0], [1.0], 0.0)
