"""The decision step: which offer each player sees now, from their online features.

Serving is where three things built apart must agree — the features in DynamoDB
(``export_features``), the model (notebook 02) and the ε-greedy policy — so this module checks
them against each other before it scores anything: a feature item built from another
``features.yaml`` than the model's is refused (its columns may mean something else, and the
trees would split on them silently), and a catalogue offer whose type the model never saw is
refused (its score would come from an unknown-bucket column no training row ever set).

A user the online store does not know (or whose item expired) is a cold start: they get
:func:`offer_ai.online.items.default_features`, the documented no-history values, and are still
served an offer, with ``as_of`` ``None`` so the log tells them apart.

Everything here is plain Python and pandas (no Spark): a decision is made for a handful of
players at request time, not for a table.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from offer_ai.errors import UserError
from offer_ai.model.model import OfferModel
from offer_ai.model.offers import Offer
from offer_ai.model.policy import EpsilonGreedyPolicy
from offer_ai.online.items import FEATURE_ATTRIBUTES, KEY_ATTRIBUTE


class FeatureSource(Protocol):
    """What the decision step needs from the online store (``OnlineFeatureReader`` is one)."""

    def get_many(self, user_ids: Iterable[str]) -> dict[str, dict[str, Any]]: ...


@dataclass(frozen=True)
class UserDecision:
    """One player's served offer, with what must be logged beside it (and shown to a human)."""

    user_id: str
    #: When the features were computed; None = cold start (the store has no item for the user).
    as_of: dt.datetime | None
    #: The context features the model scored, exactly as read (or defaulted).
    features: dict[str, Any]
    offer: Offer
    #: π(offer | context): what an off-policy estimator divides by.
    propensity: float
    #: The best-scoring offer; differs from ``offer`` when the policy explored.
    greedy_offer: Offer
    #: The model's predicted next-week revenue of the chosen offer for this player.
    expected_revenue: float
    model_version: str

    @property
    def cold_start(self) -> bool:
        return self.as_of is None

    @property
    def explored(self) -> bool:
        return self.offer != self.greedy_offer

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: ISO time, plain numbers, offers as type and price."""
        return {
            "user_id": self.user_id,
            "as_of": None if self.as_of is None else self.as_of.isoformat(),
            "cold_start": self.cold_start,
            "features": dict(self.features),
            "offer_type": self.offer.offer_type,
            "offer_price": self.offer.offer_price,
            "propensity": self.propensity,
            "greedy_offer_type": self.greedy_offer.offer_type,
            "greedy_offer_price": self.greedy_offer.offer_price,
            "explored": self.explored,
            "expected_revenue": self.expected_revenue,
            "model_version": self.model_version,
        }


def context_columns(model: OfferModel) -> list[str]:
    """The store's feature attributes plus any context column the model's encoder needs.

    The union, so a model trained on an extra feature still gets a column (null for a cold
    start, which XGBoost treats as missing) rather than a missing-column error.
    """
    return list(dict.fromkeys([*FEATURE_ATTRIBUTES, *model.encoder.numeric_context, "country"]))


def check_offers(model: OfferModel, offers: Sequence[Offer]) -> None:
    """Refuse candidates the model cannot score meaningfully (an offer type unseen in training)."""
    if not offers:
        raise UserError("The offer catalogue is empty: there is nothing to choose from.")
    known = set(model.encoder.vocabularies["offer_type"])
    unknown = sorted({o.offer_type for o in offers} - known)
    if unknown:
        raise UserError(
            f"Model {model.model_version} was never trained on offer type(s) {', '.join(unknown)}: "
            "drop them from the catalogue or retrain the model with them."
        )


def check_spec_versions(model: OfferModel, features: Mapping[str, Mapping[str, Any]]) -> None:
    """Every known user's features must come from the model's features.yaml (cold starts have none)."""
    for user_id, values in features.items():
        try:
            model.check_spec_version(values.get("spec_version"))
        except UserError as exc:
            foreign = sum(1 for v in features.values() if v.get("spec_version") not in (None, model.spec_version))
            more = f" (and {foreign - 1} more user(s))" if foreign > 1 else ""
            raise UserError(
                f"User {user_id!r}{more}: {exc} Re-export the features with the model's features.yaml, "
                "or decide with a model trained on these features."
            ) from None


def context_frame(features: Mapping[str, Mapping[str, Any]], columns: Sequence[str]) -> pd.DataFrame:
    """One row per user (in the given order), the user id and the context columns."""
    records = [{KEY_ATTRIBUTE: uid, **{c: values.get(c) for c in columns}} for uid, values in features.items()]
    return pd.DataFrame.from_records(records, columns=[KEY_ATTRIBUTE, *columns])


def decide_for_users(
    reader: FeatureSource,
    model: OfferModel,
    offers: Sequence[Offer],
    epsilon: float,
    seed: int | None,
    user_ids: Iterable[str],
) -> list[UserDecision]:
    """Read the users' features in one batch, check them, score every offer, choose ε-greedily.

    One decision per distinct user id, in the order first given. Same seed, same features and
    same model give the same decisions, so a logged decision can be replayed.
    """
    wanted = list(dict.fromkeys(user_ids))
    if not wanted:
        raise UserError("No users to decide for.")
    check_offers(model, offers)
    features = reader.get_many(wanted)
    check_spec_versions(model, features)
    columns = context_columns(model)
    rows = context_frame(features, columns)
    policy = EpsilonGreedyPolicy(model, offers, epsilon=epsilon, seed=seed)
    decisions = []
    for (uid, values), chosen in zip(features.items(), policy.choose(rows)):
        # np.argmax's first maximum: the same tie rule as the policy's greedy offer.
        greedy = int(np.argmax(chosen.scores))
        decisions.append(
            UserDecision(
                user_id=uid,
                as_of=values.get("as_of"),
                features={c: values.get(c) for c in columns},
                offer=chosen.offer,
                propensity=chosen.propensity,
                greedy_offer=policy.offers[greedy],
                expected_revenue=chosen.scores[chosen.offer_index],
                model_version=chosen.model_version,
            )
        )
    return decisions


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def format_table(decisions: Sequence[UserDecision]) -> str:
    """A fixed-width table for a human: one line per user, ``*`` marks an explored (non-greedy) offer."""
    header = ("user_id", "as_of", "country", "fb", "games", "win", "prev_week", "offer", "p", "greedy", "E[revenue]")
    lines = [header]
    for d in decisions:
        f = d.features
        lines.append((
            d.user_id,
            "cold start" if d.as_of is None else d.as_of.strftime("%Y-%m-%d %H:%M"),
            _cell(f.get("country")),
            _cell(f.get("facebook_connected")),
            _cell(f.get("last_session_games_played")),
            _cell(f.get("last_session_win_ratio")),
            _cell(f.get("prev_week_purchase_amount")),
            f"{d.offer.offer_type} {d.offer.offer_price:.2f}" + (" *" if d.explored else ""),
            f"{d.propensity:.4f}",
            f"{d.greedy_offer.offer_type} {d.greedy_offer.offer_price:.2f}",
            f"{d.expected_revenue:.3f}",
        ))
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in lines)
