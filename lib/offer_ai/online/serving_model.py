"""The model a running service decides with, and the watcher that swaps in a newly promoted one.

A :class:`ServingModel` is immutable once built — the booster, its request-time scorer for
the catalogue, the ε-greedy policy — so a request that took it keeps it to the end even if a
promotion lands meanwhile. :class:`ModelWatcher` reads ``<models root>/CURRENT`` every few
seconds (a thread, off the event loop), builds the new version completely, then replaces one
reference: no request waits for a load and none fails because of one. A version that cannot
serve (a broken folder, an offer of the catalogue it never saw) is refused and logged, and
the one already serving stays.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from offer_ai.errors import UserError
from offer_ai.model import model_registry as registry
from offer_ai.model.candidate_scorer import CandidateScorer
from offer_ai.model.model import OfferModel
from offer_ai.model.offers import Offer
from offer_ai.model.policy import Decision, EpsilonGreedyPolicy
from offer_ai.online.decisions import check_offers, context_columns

log = logging.getLogger("offer_ai")
_POLICY_CACHE = 256  # distinct candidate subsets kept (a game server sends few)


@dataclass
class ServingModel:
    """One promoted model ready to decide: scorer over the whole catalogue, policies per candidate set."""

    version: str
    model: OfferModel
    catalogue: tuple[Offer, ...]
    epsilon: float
    scorer: CandidateScorer
    columns: tuple[str, ...]
    _policies: OrderedDict[tuple[int, ...], EpsilonGreedyPolicy] = field(default_factory=OrderedDict, repr=False)

    @classmethod
    def build(cls, version: str, model: OfferModel, catalogue: Sequence[Offer], epsilon: float) -> ServingModel:
        check_offers(model, catalogue)  # an offer type the model never saw is refused here, not served blind
        return cls(version, model, tuple(catalogue), epsilon, CandidateScorer(model, catalogue),
                   tuple(context_columns(model)))

    def _policy(self, rows: tuple[int, ...]) -> EpsilonGreedyPolicy:
        policy = self._policies.get(rows)
        if policy is None:
            policy = EpsilonGreedyPolicy(self.model, [self.catalogue[i] for i in rows], self.epsilon,
                                         model_version=self.version)
            self._policies[rows] = policy
            if len(self._policies) > _POLICY_CACHE:
                self._policies.popitem(last=False)
        return policy

    def decide(self, context: Mapping[str, Any], rows: tuple[int, ...]) -> Decision:
        """Score the candidates at catalogue ``rows`` for ``context`` in one call, choose ε-greedily."""
        scores = self.scorer.scores(context, rows)
        return self._policy(rows).choose_from_scores(scores.reshape(1, -1))[0]


class ModelWatcher:
    """Holds the serving model and replaces it when CURRENT names another version."""

    def __init__(self, root: str | Path, catalogue: Sequence[Offer], epsilon: float,
                 on_change: Callable[[ServingModel], None] | None = None,
                 on_error: Callable[[str], None] | None = None) -> None:
        self.root = Path(root)
        self.catalogue = tuple(catalogue)
        self.epsilon = epsilon
        self.current: ServingModel | None = None
        self._refused: str | None = None  # a version that failed to load: not retried every poll
        self._lock = threading.Lock()
        self._on_change = on_change or (lambda _m: None)
        self._on_error = on_error or (lambda _v: None)

    def load(self, version: str) -> ServingModel:
        """Build a version (raises UserError with a sentence when it cannot serve)."""
        model = OfferModel.load(registry.version_dir(self.root, version), nthread=1)
        return ServingModel.build(version, model, self.catalogue, self.epsilon)

    def poll(self) -> bool:
        """Look at CURRENT once; True when a new model now serves. Never raises for a bad version."""
        with self._lock:
            version = registry.current_version(self.root)
            if version is None or version == self._refused:
                return False
            if self.current is not None and self.current.version == version:
                return False
            try:
                loaded = self.load(version)
            except (UserError, OSError, ValueError) as exc:
                self._refused = version
                log.error("serve: model %s was promoted but cannot serve, keeping %s: %s", version,
                          self.current.version if self.current else "none", exc)
                self._on_error(version)
                return False
            previous, self.current, self._refused = self.current, loaded, None
            log.info("serve: now serving model %s (was %s)", version, previous.version if previous else "none")
            self._on_change(loaded)
            return True
