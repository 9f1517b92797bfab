"""The truth: one record per offer decision with every candidate's true expected revenue.

Why it is written at all: the off-policy estimators and the model can only be checked against an
answer, and the generator is the one place that knows it. `<out>/_truth/decisions-WWWWW.jsonl`
holds one JSON object per offer_shown, in each user's time order:

user_id (= customer_identifier), user_index, session_id, session_start and decision_time (ISO
UTC with 'Z'), offer_type, offer_price, offer_propensity, offer_purchased, take_probability (of
the shown offer), `features` {country, facebook_connected, prev_week_purchase_amount,
last_session_games_played, last_session_win_ratio} exactly as DESIGN §4 computes them at the
decision, `hidden` {the UserTraits fields, remaining_games_in_session, pending_offers_in_session,
expected_sessions_per_week}, expected_other_revenue, `take_probabilities` and `expected_revenue`
(dicts keyed 'type@price' over the whole catalogue), realised_next_week_purchase_amount
(purchases in [decision, +7 days) as generated), window_inside_range (decision + 7 days <= end
of the generated range), first_in_session, and first_in_day (the session's first offer and the
user's first such in that UTC day: DESIGN §4's default anchor).

Reading back: `load_truth` (a pandas frame), `context_from_truth` (the DecisionContext of a row),
and the true values of policies (`policy_value`, `oracle_value`, `uniform_value`, `logged_value`).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from offer_ai.model.offers import Offer, offer_key, parse_offer_key
from offer_ai.sim.clock import WEEK, Clock
from offer_ai.sim.players import (
    DecisionContext,
    ObservableFeatures,
    UserTraits,
    expected_other_revenue,
    expected_sessions_per_week,
)

if TYPE_CHECKING:  # pandas is imported lazily: workers never need it
    import pandas as pd

TRUTH_DIR = "_truth"


# --------------------------------------------------------------------------------------------
# Writing: built while a user is simulated, finished when its whole timeline is known
# --------------------------------------------------------------------------------------------


def hidden_record(traits: UserTraits) -> dict[str, Any]:
    """The per-user part of `hidden`: the traits as drawn, and the renewal-rate session count."""
    return {
        "sessions_per_day": traits.sessions_per_day,
        "mean_games": traits.mean_games,
        "skill": traits.skill,
        "spend": traits.spend,
        "shop_probability": traits.shop_probability,
        "shop_mean_amount": traits.shop_mean_amount,
        "price_sensitivity": traits.price_sensitivity,
        "affinity": dict(traits.affinity),
        "expected_sessions_per_week": expected_sessions_per_week(traits),
    }


def features_record(features: ObservableFeatures) -> dict[str, Any]:
    """`features` as written: the DESIGN §4 values the pipeline must reproduce."""
    return {
        "country": features.country,
        "facebook_connected": features.facebook_connected,
        "prev_week_purchase_amount": features.prev_week_purchase_amount,
        "last_session_games_played": features.last_session_games_played,
        "last_session_win_ratio": features.last_session_win_ratio,
    }


@dataclass(slots=True)
class SessionTruth:
    """What a session's decisions share, built once per session (a decision is a hot path)."""

    head: dict[str, Any]  #: user_id, user_index, session_id
    session_start: str  #: ISO UTC with 'Z'
    features: dict[str, Any]  #: features_record at the session's start
    hidden: dict[str, Any]  #: hidden_record of the user


class DecisionRecords:
    """Truth records of one catalogue: built at each decision, finished per user."""

    def __init__(self, catalogue: Sequence[Offer], clock: Clock, propensity: float) -> None:
        self.catalogue, self.clock, self.propensity = tuple(catalogue), clock, propensity
        self.offer_keys = [offer_key(o) for o in self.catalogue]
        self.offer_prices = [o.offer_price for o in self.catalogue]

    def decision(
        self,
        session: SessionTruth,
        context: DecisionContext,
        probabilities: list[float],
        choice: int,
        bought: bool,
        t: int,
    ) -> dict[str, Any]:
        """The record of one offer decision; `finish` fills in the realised label and flags."""
        other = expected_other_revenue(context, probabilities)
        offer = self.catalogue[choice]
        return {
            **session.head,
            "session_start": session.session_start,
            "decision_time": self.clock.utc(t) + "Z",
            "_t": t,
            "offer_type": offer.offer_type,
            "offer_price": offer.offer_price,
            "offer_propensity": self.propensity,
            "offer_purchased": bought,
            "take_probability": probabilities[choice],
            "features": session.features,
            "hidden": {
                **session.hidden,
                "remaining_games_in_session": context.remaining_games_in_session,
                "pending_offers_in_session": context.pending_offers_in_session,
            },
            "expected_other_revenue": other,
            "take_probabilities": dict(zip(self.offer_keys, probabilities)),
            "expected_revenue": {
                key: p * price + other for key, p, price in zip(self.offer_keys, probabilities, self.offer_prices)
            },
        }

    def finish(self, decisions: list[dict[str, Any]], purchases: list[tuple[int, int]]) -> list[bytes]:
        """Realised next-week revenue, first-in-session/day flags; serialise the user's records.

        `purchases` are the user's (time, cents) in time order, so each window is two bisects.
        """
        clock = self.clock
        times = [t for t, _ in purchases]
        cumulative = [0]
        for _, cents in purchases:
            cumulative.append(cumulative[-1] + cents)
        out: list[bytes] = []
        last_day = None
        last_session = None
        for record in decisions:
            t = record.pop("_t")
            lo = bisect.bisect_left(times, t)
            hi = bisect.bisect_left(times, t + WEEK)
            record["realised_next_week_purchase_amount"] = (cumulative[hi] - cumulative[lo]) / 100.0
            record["window_inside_range"] = t + WEEK <= clock.end
            # DESIGN §4 anchors: a session's first offer; at most one per user per UTC day by default
            first_in_session = record["session_id"] != last_session
            day = clock.day(t)
            record["first_in_session"] = first_in_session
            record["first_in_day"] = first_in_session and day != last_day
            if first_in_session:
                last_day, last_session = day, record["session_id"]
            out.append(orjson.dumps(record) + b"\n")
        return out


# --------------------------------------------------------------------------------------------
# Reading the truth back
# --------------------------------------------------------------------------------------------


def iter_truth_records(out_dir: str | Path) -> Iterable[dict[str, Any]]:
    """Raw truth records (nested as written), in worker then time order."""
    for path in sorted((Path(out_dir) / TRUTH_DIR).glob("decisions-*.jsonl")):
        with open(path, "rb") as handle:
            for line in handle:
                yield orjson.loads(line)


def load_truth(out_dir: str | Path) -> pd.DataFrame:
    """One row per offer decision: features flattened, hidden traits as hidden_<name>.

    `expected_revenue` and `take_probabilities` stay dicts keyed 'type@price'; times are UTC
    pandas Timestamps.
    """
    import pandas as pd

    rows = []
    for record in iter_truth_records(out_dir):
        row = {k: v for k, v in record.items() if k not in ("features", "hidden")}
        row.update(record["features"])
        row.update({f"hidden_{k}": v for k, v in record["hidden"].items()})
        row["offer_key"] = f"{record['offer_type']}@{record['offer_price']:.2f}"
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    for column in ("session_start", "decision_time"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    frame["last_session_games_played"] = frame["last_session_games_played"].astype("Int64")
    return frame


def context_from_truth(row: Mapping[str, Any] | pd.Series) -> DecisionContext:
    """Rebuild the DecisionContext of a load_truth row (catalogue from its candidate keys)."""
    games = row["last_session_games_played"]
    ratio = row["last_session_win_ratio"]
    features = ObservableFeatures(
        country=row["country"],
        facebook_connected=bool(row["facebook_connected"]),
        prev_week_purchase_amount=float(row["prev_week_purchase_amount"]),
        last_session_games_played=None if _is_missing(games) else int(games),
        last_session_win_ratio=None if _is_missing(ratio) else float(ratio),
    )
    traits = UserTraits(
        sessions_per_day=row["hidden_sessions_per_day"],
        mean_games=row["hidden_mean_games"],
        skill=row["hidden_skill"],
        spend=row["hidden_spend"],
        shop_probability=row["hidden_shop_probability"],
        shop_mean_amount=row["hidden_shop_mean_amount"],
        price_sensitivity=row["hidden_price_sensitivity"],
        affinity=dict(row["hidden_affinity"]),
    )
    return DecisionContext(
        traits=traits,
        features=features,
        catalogue=tuple(parse_offer_key(k) for k in row["expected_revenue"]),
        remaining_games_in_session=int(row["hidden_remaining_games_in_session"]),
        pending_offers_in_session=int(row["hidden_pending_offers_in_session"]),
    )


def _is_missing(value: Any) -> bool:
    """None, NaN or pd.NA: how a missing feature comes back from a pandas row."""
    if value is None:
        return True
    import pandas as pd

    return bool(pd.isna(value))


def _choice_key(choice: Offer | str) -> str:
    return choice if isinstance(choice, str) else offer_key(choice)


def policy_value(truth: pd.DataFrame, choices: Sequence[Offer | str] | pd.Series) -> float:
    """A policy's true value: mean true expected revenue of the offer it picks at each decision.

    `choices` is aligned with `truth`'s rows: an Offer or a 'type@price' key per row.
    """
    values = [er[_choice_key(c)] for er, c in zip(truth["expected_revenue"], list(choices), strict=True)]
    return sum(values) / len(values) if values else float("nan")


def oracle_choices(truth: pd.DataFrame) -> list[str]:
    """The argmax-of-truth candidate key at each decision."""
    return [max(er, key=er.__getitem__) for er in truth["expected_revenue"]]


def oracle_value(truth: pd.DataFrame) -> float:
    """The best achievable value: mean of each decision's highest true expected revenue."""
    values = [max(er.values()) for er in truth["expected_revenue"]]
    return sum(values) / len(values) if values else float("nan")


def uniform_value(truth: pd.DataFrame) -> float:
    """The uniform logging policy's value: mean over decisions of the candidates' mean."""
    values = [sum(er.values()) / len(er) for er in truth["expected_revenue"]]
    return sum(values) / len(values) if values else float("nan")


def logged_value(truth: pd.DataFrame) -> float:
    """True value of the offers actually shown (an unbiased draw of the uniform policy)."""
    return policy_value(truth, truth["offer_key"])
