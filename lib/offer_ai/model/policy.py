"""Which offer to show: ε-greedy over the catalogue, logging the propensity of each choice.

The propensity is the reason this module exists. Every served offer is logged with the
probability the policy gave it, so the next model can be evaluated off-policy (IPS, DR in
:mod:`offer_ai.model.evaluation`) and the bandit keeps learning; ε > 0 keeps every offer's
propensity positive, which those estimators need.

Probabilities per context row, with K candidates: the greedy offer (highest predicted
revenue; ties to the earliest in catalogue order, so a decision is reproducible) gets
1 − ε + ε/K, every other offer ε/K.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from offer_ai.errors import UserError
from offer_ai.model.offers import Offer

#: Anything that scores each context row against each candidate: [n_rows, n_offers].
Scorer = Callable[[pd.DataFrame, Sequence[Offer]], np.ndarray]


@runtime_checkable
class CandidateModel(Protocol):
    """What the policy needs from a model (``offer_ai.model.model.OfferModel`` is one)."""

    model_version: str

    def score_candidates(self, context_rows: pd.DataFrame, offers: Sequence[Offer] | None = None) -> np.ndarray: ...


@dataclass(frozen=True)
class Decision:
    """One served offer with what must be logged beside it."""

    offer: Offer
    offer_index: int
    propensity: float
    model_version: str
    scores: tuple[float, ...]
    #: π(· | context) over every candidate, in candidate order: what a log needs to replay the policy.
    probabilities: tuple[float, ...] = ()


class _Policy:
    """Shared sampling: a policy defines ``probabilities``; choosing is the same for all."""

    model_version: str

    def __init__(self, offers: Sequence[Offer], seed: int | None) -> None:
        if not offers:
            raise UserError("A policy needs at least one candidate offer.")
        if len(set(offers)) != len(offers):
            raise UserError("The offer candidates contain a duplicate.")
        self.offers: list[Offer] = list(offers)
        self._rng = np.random.default_rng(seed)

    def scores(self, context_rows: pd.DataFrame) -> np.ndarray:
        """[n, K] scores the probabilities derive from (logged with each decision)."""
        raise NotImplementedError

    def _probabilities_from_scores(self, scores: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def probabilities(self, context_rows: pd.DataFrame) -> np.ndarray:
        """π(offer | row) as [n, K]; each row sums to 1. Column order is the catalogue order."""
        return self._probabilities_from_scores(self.scores(context_rows))

    def _decide(self, scores: np.ndarray, probs: np.ndarray) -> list[Decision]:
        n = probs.shape[0]
        # Inverse-CDF sampling, one uniform per row: vectorised and reproducible from the seed.
        u = self._rng.random(n)
        cdf = np.cumsum(probs, axis=1)
        cdf[:, -1] = 1.0  # float round-off must never push u past the last bucket
        chosen = (cdf > u[:, None]).argmax(axis=1)
        return [
            Decision(
                offer=self.offers[k],
                offer_index=int(k),
                propensity=float(probs[i, k]),
                model_version=self.model_version,
                scores=tuple(float(s) for s in scores[i]),
                probabilities=tuple(float(p) for p in probs[i]),
            )
            for i, k in enumerate(chosen)
        ]

    def choose(self, context_rows: pd.DataFrame) -> list[Decision]:
        """One decision per context row, sampled from :meth:`probabilities` with the policy's seeded RNG."""
        scores = self.scores(context_rows)
        return self._decide(scores, self._probabilities_from_scores(scores))

    def choose_from_scores(self, scores: np.ndarray) -> list[Decision]:
        """:meth:`choose` for scores computed elsewhere ([n, K], catalogue order): the request-time
        path, which scores one player without a DataFrame (``offer_ai.model.candidate_scorer``)."""
        scores = np.asarray(scores, dtype=float)
        if scores.ndim != 2 or scores.shape[1] != len(self.offers):
            raise UserError(f"Scores must be [n, {len(self.offers)}] (rows × offers), got shape {scores.shape}.")
        if not np.all(np.isfinite(scores)):
            raise UserError("The scorer returned a NaN or infinite score; the greedy offer would be arbitrary.")
        return self._decide(scores, self._probabilities_from_scores(scores))


class EpsilonGreedyPolicy(_Policy):
    """Show the best-scoring offer, except with probability ε a uniformly random one.

    ``model_or_scorer`` is an ``OfferModel`` (its ``model_version`` is logged with every
    decision) or any callable ``(context_rows, offers) -> [n, K]`` scores, so tests and
    baselines can plug in a hand-made scorer.
    """

    def __init__(
        self,
        model_or_scorer: CandidateModel | Scorer,
        offers: Sequence[Offer],
        epsilon: float,
        seed: int | None = None,
        model_version: str | None = None,
    ) -> None:
        super().__init__(offers, seed)
        if isinstance(epsilon, bool) or not 0.0 <= float(epsilon) <= 1.0:
            raise UserError(f"epsilon must be in [0, 1], got {epsilon!r}.")
        self.epsilon = float(epsilon)
        if isinstance(model_or_scorer, CandidateModel):
            model = model_or_scorer
            self._scorer: Scorer = lambda rows, offers: model.score_candidates(rows, offers)
            self.model_version = model_version or model.model_version
        elif callable(model_or_scorer):
            self._scorer = model_or_scorer
            self.model_version = model_version or getattr(model_or_scorer, "model_version", "custom-scorer")
        else:
            raise UserError("model_or_scorer must be an OfferModel or a callable (context_rows, offers) -> scores.")

    def scores(self, context_rows: pd.DataFrame) -> np.ndarray:
        """Predicted reward of every candidate for every row, checked for shape and NaN."""
        scores = np.asarray(self._scorer(context_rows, self.offers), dtype=float)
        expected = (len(context_rows), len(self.offers))
        if scores.shape != expected:
            raise UserError(f"The scorer returned shape {scores.shape}, expected {expected} (rows × offers).")
        if not np.all(np.isfinite(scores)):
            raise UserError("The scorer returned a NaN or infinite score; the greedy offer would be arbitrary.")
        return scores

    def _probabilities_from_scores(self, scores: np.ndarray) -> np.ndarray:
        n, k = scores.shape
        probs = np.full((n, k), self.epsilon / k)
        # np.argmax returns the first maximum: ties go to the earliest offer in the catalogue.
        probs[np.arange(n), scores.argmax(axis=1)] += 1.0 - self.epsilon
        return probs


class UniformPolicy(_Policy):
    """Every candidate with probability 1/K: the pure-exploration logging policy (no model)."""

    def __init__(self, offers: Sequence[Offer], seed: int | None = None, model_version: str = "uniform") -> None:
        super().__init__(offers, seed)
        self.model_version = model_version

    def scores(self, context_rows: pd.DataFrame) -> np.ndarray:
        return np.zeros((len(context_rows), len(self.offers)))

    def _probabilities_from_scores(self, scores: np.ndarray) -> np.ndarray:
        return np.full(scores.shape, 1.0 / scores.shape[1])
