"""ε-greedy and uniform policies with hand-made scorers, so every probability is known on paper."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from offer_ai.errors import UserError
from offer_ai.model.offers import Offer, load_offers
from offer_ai.model.policy import Decision, EpsilonGreedyPolicy, UniformPolicy

OFFERS = [Offer("starter_pack", 0.99), Offer("coins_bundle", 4.99), Offer("xmas", 19.99), Offer("vip_pass", 49.99)]
# Rows: greedy offer is index 2, index 1 (a tie between 1 and 2 → earlier wins), index 0, index 3.
SCORES = np.array(
    [
        [1.0, 2.0, 5.0, 0.5],
        [0.0, 3.0, 3.0, 1.0],
        [9.0, 1.0, 1.0, 1.0],
        [0.1, 0.2, 0.3, 0.4],
    ]
)
GREEDY = [2, 1, 0, 3]


def context(n: int) -> pd.DataFrame:
    return pd.DataFrame({"user_id": [f"u{i}" for i in range(n)]})


def fixed_scorer(rows: pd.DataFrame, offers: list[Offer]) -> np.ndarray:
    """Cycle through SCORES so any number of rows has known scores."""
    return SCORES[np.arange(len(rows)) % len(SCORES), : len(offers)]


def test_epsilon_greedy_probabilities_match_hand_values() -> None:
    # ε = 0.2, K = 4: the greedy offer 1 − 0.2 + 0.2/4 = 0.85, every other 0.2/4 = 0.05.
    probs = EpsilonGreedyPolicy(fixed_scorer, OFFERS, epsilon=0.2).probabilities(context(4))
    expected = np.full((4, 4), 0.05)
    expected[np.arange(4), GREEDY] = 0.85
    np.testing.assert_allclose(probs, expected)


@pytest.mark.parametrize("epsilon", [0.0, 0.05, 0.3, 1.0])
def test_probabilities_sum_to_one_per_row(epsilon: float) -> None:
    probs = EpsilonGreedyPolicy(fixed_scorer, OFFERS, epsilon=epsilon).probabilities(context(8))
    np.testing.assert_allclose(probs.sum(axis=1), np.ones(8))
    assert (probs >= 0).all()


def test_epsilon_zero_is_greedy_with_ties_to_catalogue_order() -> None:
    policy = EpsilonGreedyPolicy(fixed_scorer, OFFERS, epsilon=0.0, seed=1)
    np.testing.assert_array_equal(policy.probabilities(context(4)), np.eye(4)[GREEDY])
    decisions = policy.choose(context(4))
    assert [d.offer for d in decisions] == [OFFERS[k] for k in GREEDY]
    assert all(d.propensity == 1.0 for d in decisions)


def test_epsilon_one_is_uniform() -> None:
    probs = EpsilonGreedyPolicy(fixed_scorer, OFFERS, epsilon=1.0).probabilities(context(4))
    np.testing.assert_allclose(probs, np.full((4, 4), 0.25))


def test_uniform_policy_is_one_over_k() -> None:
    policy = UniformPolicy(OFFERS, seed=3)
    np.testing.assert_allclose(policy.probabilities(context(3)), np.full((3, 4), 0.25))
    assert {d.propensity for d in policy.choose(context(50))} == {0.25}
    assert policy.choose(context(1))[0].model_version == "uniform"


def test_seeded_choices_are_reproducible_and_depend_on_the_seed() -> None:
    def picks(seed: int) -> list[int]:
        return [d.offer_index for d in EpsilonGreedyPolicy(fixed_scorer, OFFERS, 0.5, seed=seed).choose(context(200))]

    assert picks(42) == picks(42)
    assert picks(42) != picks(43)


def test_empirical_frequencies_match_probabilities() -> None:
    # ε = 0.4, K = 4: greedy 0.7, others 0.1. All rows share the scores of SCORES[0] (greedy 2).
    n = 40_000
    policy = EpsilonGreedyPolicy(lambda rows, offers: np.tile(SCORES[0], (len(rows), 1)), OFFERS, 0.4, seed=9)
    counts = np.bincount([d.offer_index for d in policy.choose(context(n))], minlength=4)
    expected = np.array([0.1, 0.1, 0.7, 0.1])
    # Binomial sd of a frequency is ≤ √(0.25/n) ≈ 0.0025; allow 4 sd.
    np.testing.assert_allclose(counts / n, expected, atol=0.01)


def test_decision_carries_the_propensity_of_the_chosen_offer_and_the_scores() -> None:
    policy = EpsilonGreedyPolicy(fixed_scorer, OFFERS, epsilon=0.2, seed=0, model_version="m-1")
    for i, d in enumerate(policy.choose(context(40))):
        assert isinstance(d, Decision)
        assert d.offer == OFFERS[d.offer_index]
        assert d.propensity == pytest.approx(0.85 if d.offer_index == GREEDY[i % 4] else 0.05)
        assert d.scores == tuple(SCORES[i % 4])
        assert d.model_version == "m-1"


class _StubModel:
    """Quacks like OfferModel: scores offers by price, logs its own version."""

    model_version = "abc123"

    def score_candidates(self, context_rows: pd.DataFrame, offers: list[Offer] | None = None) -> np.ndarray:
        return np.tile([o.offer_price for o in offers], (len(context_rows), 1))


def test_a_model_object_supplies_scores_and_model_version(repo_root: Path) -> None:
    catalogue = load_offers(repo_root / "conf" / "offers.yaml")
    policy = EpsilonGreedyPolicy(_StubModel(), catalogue, epsilon=0.0, seed=0)
    (decision,) = policy.choose(context(1))
    # The dearest offer in conf/offers.yaml is vip_pass at 49.99.
    assert decision.offer == Offer("vip_pass", 49.99)
    assert decision.model_version == "abc123"
    assert len(decision.scores) == len(catalogue)


def test_bad_epsilon_and_bad_scores_are_rejected() -> None:
    with pytest.raises(UserError, match="epsilon"):
        EpsilonGreedyPolicy(fixed_scorer, OFFERS, epsilon=1.5)
    with pytest.raises(UserError, match="shape"):
        EpsilonGreedyPolicy(lambda r, o: np.zeros((len(r), 2)), OFFERS, 0.1).probabilities(context(3))
    with pytest.raises(UserError, match="NaN"):
        EpsilonGreedyPolicy(lambda r, o: np.full((len(r), 4), np.nan), OFFERS, 0.1).probabilities(context(3))


def test_choosing_from_precomputed_scores_is_choosing_with_the_scorer() -> None:
    by_scorer = EpsilonGreedyPolicy(fixed_scorer, OFFERS, epsilon=0.4, seed=11).choose(context(40))
    by_scores = EpsilonGreedyPolicy(fixed_scorer, OFFERS, epsilon=0.4, seed=11).choose_from_scores(
        SCORES[np.arange(40) % len(SCORES)])
    assert by_scores == by_scorer
    # ε = 0.4, K = 4: greedy 1 − 0.4 + 0.1 = 0.7, others 0.1; the whole distribution travels with the decision.
    for i, d in enumerate(by_scores):
        expected = [0.1] * 4
        expected[GREEDY[i % 4]] = 0.7
        assert d.probabilities == pytest.approx(tuple(expected))
        assert d.propensity == pytest.approx(expected[d.offer_index])


def test_precomputed_scores_of_the_wrong_shape_or_with_nan_are_refused() -> None:
    policy = EpsilonGreedyPolicy(fixed_scorer, OFFERS, epsilon=0.1)
    with pytest.raises(UserError, match="rows × offers"):
        policy.choose_from_scores(np.zeros((1, 3)))
    with pytest.raises(UserError, match="NaN"):
        policy.choose_from_scores(np.array([[1.0, np.nan, 0.0, 0.0]]))
