"""The player model: hidden traits, observable features, and the true response to an offer.

Why it is separate from the event writer: this is the generator's ground truth. The simulator
draws purchases with exactly these probabilities, the truth records carry these expected
revenues, and tests and the off-policy evaluation call the same functions, so there is one
definition of "what this player would do".

An offer is bought with a probability that is a logistic function of the OBSERVABLE features
exactly as DESIGN §4 defines them at that decision, of the offer, and of the hidden traits
(noise a model cannot see). A purchase changes no hidden trait, so the best offer is the argmax
of take probability x price.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from offer_ai.model.offers import Offer
from offer_ai.sim.clock import DAY, WEEK

# Behaviour constants (the generative model); see true_expected_revenue for how they combine.
OFFER_RATE = 0.40  #: P(an offer is shown in a session)
SECOND_OFFER_RATE = 0.05  #: P(a second offer | an offer was shown)
NO_GAME_RATE = 0.08  #: P(a session has no game at all)
MIN_SESSION_GAP = 300  #: seconds between one session's last event and the next start (plus Exp)
_MEAN_GAME_CYCLE = 14.0 + 20.0 + 99.5  #: mean gap before a game + mean game duration (seconds)
_SESSION_OVERHEAD = 30.0  #: mean seconds of offers and shop purchases per session (approx.)

SHOP_SKUS: tuple[tuple[str, int], ...] = (
    ("coins-pack-1", 99),
    ("coins-pack-2", 199),
    ("coins-pack-3", 499),
    ("coins-pack-4", 999),
    ("coins-pack-5", 1999),
    ("coins-pack-6", 4999),
)
RICH_COUNTRIES = frozenset({"US", "GB", "DE", "FR", "JP", "CA", "AU"})
XMAS_COUNTRIES = frozenset({"US", "GB", "DE", "FR"})


@dataclass(frozen=True)
class UserTraits:
    """Hidden per-user traits: what shapes behaviour but never appears in the events."""

    sessions_per_day: float  #: engagement: rate of the session renewal process
    mean_games: float  #: mean games per session that has games
    skill: float  #: P(win) of each game
    spend: float  #: standard-normal spend level: shop purchase rate and pack size, willingness
    shop_probability: float  #: P(shop purchase) after each game_end
    shop_mean_amount: float  #: mean shop transaction amount
    price_sensitivity: float  #: in [0, 1]: how fast take probability falls away from the ideal price
    affinity: Mapping[str, float] = field(default_factory=dict)  #: per offer type, added to the logit


@dataclass(frozen=True)
class ObservableFeatures:
    """The DESIGN §4 features at a decision, computed from the events the pipeline sees."""

    country: str | None
    facebook_connected: bool
    prev_week_purchase_amount: float
    last_session_games_played: int | None
    last_session_win_ratio: float | None


@dataclass(frozen=True)
class DecisionContext:
    """Everything the true response depends on at one offer decision.

    `remaining_games_in_session` and `pending_offers_in_session` are hidden session state (the
    generator draws the session's game count and offer slots when the session starts).
    """

    traits: UserTraits
    features: ObservableFeatures
    catalogue: tuple[Offer, ...]
    remaining_games_in_session: int = 0
    pending_offers_in_session: int = 0


def is_facebook_signin(signin_method: str | None) -> bool:
    """DESIGN §4: facebook_connected when the latest signin_method is 'fb' or a facebook.com URL."""
    if not signin_method:
        return False
    return signin_method == "fb" or "facebook.com/" in signin_method


def _type_bonus(offer_type: str, f: ObservableFeatures) -> float:
    """Observable offer-type preferences: what makes the best offer differ between users."""
    pw = f.prev_week_purchase_amount
    if offer_type == "starter_pack":  # new or non-paying players take the cheap starter
        return 0.9 if (f.last_session_games_played is None or pw == 0.0) else -0.3
    if offer_type == "coins_bundle":  # players who lose (and play a lot) need coins
        bonus = 0.3 if (f.last_session_games_played or 0) >= 5 else 0.0
        if f.last_session_win_ratio is not None:
            bonus += 1.5 * (0.5 - f.last_session_win_ratio)
        return bonus
    if offer_type == "xmas":
        return 0.4 if f.country in XMAS_COUNTRIES else -0.2
    if offer_type == "vip_pass":  # social big spenders want status
        return -0.6 + 1.0 * f.facebook_connected + 0.25 * math.log1p(pw)
    return 0.0


def ideal_log_price(context: DecisionContext) -> float:
    """log(price) the user is most willing to pay: observable terms plus hidden spend."""
    f = context.features
    return (
        0.35
        + 0.45 * math.log1p(f.prev_week_purchase_amount)
        + 0.8 * f.facebook_connected
        + 0.6 * (f.country in RICH_COUNTRIES)
        + 0.03 * min(f.last_session_games_played or 0, 20)
        + 0.35 * context.traits.spend
    )


def _price_curvature(traits: UserTraits) -> float:
    """How sharply willingness falls away from the ideal price: sensitive players, sharper."""
    return 0.25 + 0.35 * traits.price_sensitivity


def take_probabilities(context: DecisionContext) -> list[float]:
    """true_offer_take_probability of every catalogue candidate, in catalogue order.

    The one implementation of the take model (per-type terms computed once: a hot path).
    """
    ideal, k = ideal_log_price(context), _price_curvature(context.traits)
    features, affinity = context.features, context.traits.affinity
    type_terms: dict[str, float] = {}
    out = []
    exp, log = math.exp, math.log
    for offer in context.catalogue:
        term = type_terms.get(offer.offer_type)
        if term is None:
            term = type_terms[offer.offer_type] = -1.6 + _type_bonus(offer.offer_type, features) + affinity.get(
                offer.offer_type, 0.0
            )
        gap = log(offer.offer_price) - ideal
        out.append(1.0 / (1.0 + exp(-(term - k * gap * gap))))
    return out


def true_offer_take_probability(context: DecisionContext, offer: Offer) -> float:
    """P(the user buys `offer` if it is shown now): the exact probability the generator draws.

    logit = -1.6 + type_bonus(type, features) + affinity[type]
            - (0.25 + 0.35 * price_sensitivity) * (log(price) - ideal_log_price)^2
    """
    return take_probabilities(replace(context, catalogue=(offer,)))[0]


def expected_sessions_per_week(traits: UserTraits) -> float:
    """Sessions starting in 7 days by the renewal rate 1 / (mean duration + gap): approximate."""
    duration = (1.0 - NO_GAME_RATE) * traits.mean_games * _MEAN_GAME_CYCLE + _SESSION_OVERHEAD
    return WEEK / (duration + MIN_SESSION_GAP + DAY / traits.sessions_per_day)


def expected_other_revenue(context: DecisionContext, probabilities: Sequence[float] | None = None) -> float:
    """Expected revenue in [decision, decision + 7 days) other than the shown offer's purchase.

    It does not depend on which offer is shown (a purchase changes no hidden trait), so the best
    offer is the argmax of p * price. Two parts:
    - rest of the current session, EXACT given the hidden session state: each remaining game_end
      triggers a shop purchase with `shop_probability` (mean `shop_mean_amount`), plus each
      pending uniformly logged offer of this session (same features, so exact too);
    - later sessions, an EXPECTATION that holds the observable state fixed: the renewal-rate
      session count of `expected_sessions_per_week` times (shop revenue per session + offer
      rate x uniform-policy offer revenue at TODAY's features). In the data, features drift
      (purchases raise prev_week) and the session process has a phase; both are ignored here.

    `probabilities` (take_probabilities(context)) may be passed to avoid recomputing them.
    """
    traits = context.traits
    if probabilities is None:
        probabilities = take_probabilities(context)
    offers = context.catalogue
    per_offer = sum(p * o.offer_price for p, o in zip(probabilities, offers)) / len(offers)
    shop_per_game = traits.shop_probability * traits.shop_mean_amount
    current = context.remaining_games_in_session * shop_per_game + context.pending_offers_in_session * per_offer
    per_session = (1.0 - NO_GAME_RATE) * traits.mean_games * shop_per_game + OFFER_RATE * (
        1.0 + SECOND_OFFER_RATE
    ) * per_offer
    return current + expected_sessions_per_week(traits) * per_session


def true_expected_revenue(context: DecisionContext, offer: Offer) -> float:
    """Expected revenue in [decision time, decision time + 7 days) if `offer` is shown now.

    = true_offer_take_probability * price (EXACT: the offer purchase is drawn with that
    probability and logged seconds later, always inside the window)
    + expected_other_revenue(context) (exact for the current session, an expectation holding
    the observable state fixed for later sessions; see there).
    """
    return true_offer_take_probability(context, offer) * offer.offer_price + expected_other_revenue(context)


def best_offer(context: DecisionContext) -> Offer:
    """The oracle's choice: the candidate with the highest true expected revenue."""
    return max(context.catalogue, key=lambda o: true_offer_take_probability(context, o) * o.offer_price)


def _clamp(x: float, lo: float, hi: float) -> float:
    return max(lo, min(x, hi))


def draw_traits(rng: random.Random, offer_types: Sequence[str]) -> UserTraits:
    """Hidden traits; spend also drives the observable facebook and prev-week signals."""
    gauss = rng.gauss
    z_engagement = gauss(0.0, 1.0)
    # rounded once, then used as written to the truth: the generator draws with these exact values
    sessions_per_day = round(_clamp(math.exp(0.6 * z_engagement), 0.15, 6.0), 6)
    mean_games = round(_clamp(3.0 * math.exp(0.35 * gauss(0.0, 1.0) + 0.1 * z_engagement), 1.2, 9.0), 6)
    skill = round(_clamp(gauss(0.5, 0.15), 0.1, 0.9), 6)
    spend = round(gauss(0.0, 1.0), 6)
    sensitivity = round(_clamp(0.5 - 0.2 * spend + gauss(0.0, 0.25), 0.0, 1.0), 6)
    affinity = {t: round(gauss(0.0, 0.3), 6) for t in offer_types}
    weights = shop_weights(spend)
    return UserTraits(
        sessions_per_day=sessions_per_day,
        mean_games=mean_games,
        skill=skill,
        spend=spend,
        shop_probability=min(0.3, 0.012 * math.exp(spend)),
        shop_mean_amount=sum(w * c for w, (_, c) in zip(weights, SHOP_SKUS)) / sum(weights) / 100.0,
        price_sensitivity=sensitivity,
        affinity=affinity,
    )


def shop_weights(spend: float) -> list[float]:
    """Relative weights of SHOP_SKUS: big spenders buy bigger packs (a bell around their level)."""
    centre = _clamp(1.0 + 1.2 * spend, 0.0, 5.0)
    return [math.exp(-0.5 * (k - centre) ** 2) for k in range(len(SHOP_SKUS))]

