"""Seeded synthetic game events with a known truth (DESIGN §3 `generate_events`, §7 evaluation).

Why a simulator: the pipeline, the model and the off-policy estimators need data whose answer is
known. Each user has hidden traits (engagement, skill, spend, price sensitivity, offer-type
affinity) that shape sessions, games, wins and purchases. Offers are shown by a uniform logging
policy (propensity 1/K, logged in `offer_propensity`) and bought with a probability that is a
logistic function of the OBSERVABLE features exactly as DESIGN §4 defines them at that decision,
of the offer, and of the hidden traits (noise a model cannot see). Every decision is written to
`<out>/_truth/decisions-WWWWW.jsonl` with the expected revenue of every catalogue candidate, so a
policy's true value can be computed (`load_truth`, `policy_value`, `oracle_value`).

Raw output: `<out>/date=YYYY-MM-DD/part-WWWWW.jsonl[.gz]`, one JSON object per line in the shapes
of the product brief, the folder being the (UTC) day the line arrived. Messiness is extra and
counted exactly in the summary: duplicate lines (same object, other key order and spacing, some in
the next day's folder), events moved later in the stream (some into the next day's folder), and
junk lines of named kinds (`MALFORMED_KINDS`) that never replace a real event. The valid event
stream is the same whatever the messiness options, so it stays the truth.

Truth records (`<out>/_truth/decisions-WWWWW.jsonl`, one JSON object per offer_shown, in each
user's time order): user_id (= customer_identifier), user_index, session_id, session_start and
decision_time (ISO UTC with 'Z'), offer_type, offer_price, offer_propensity, offer_purchased,
take_probability (of the shown offer), `features` {country, facebook_connected,
prev_week_purchase_amount, last_session_games_played, last_session_win_ratio} exactly as DESIGN §4
computes them at the decision, `hidden` {the UserTraits fields, remaining_games_in_session,
pending_offers_in_session, expected_sessions_per_week}, expected_other_revenue,
`take_probabilities` and `expected_revenue` (dicts keyed 'type@price' over the whole catalogue),
realised_next_week_purchase_amount (purchases in [decision, +7 days) as generated),
window_inside_range (decision + 7 days <= end of the generated range), first_in_session, and
first_in_day (the session's first offer and the user's first such in that UTC day: DESIGN §4's
default anchor).

Pure Python (random.Random per user, f-string templates, orjson); no Spark. Work is split over
processes by contiguous user shards; each user's random streams derive from (seed, user index),
so the content does not depend on the number of workers, and the bytes are identical for the
same options.
"""

from __future__ import annotations

import bisect
import calendar
import datetime as dt
import gzip
import hashlib
import math
import multiprocessing
import random
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import accumulate
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

import orjson

from offer_ai.errors import UserError
from offer_ai.model.offers import Offer, offer_key, parse_offer_key  # noqa: F401  (re-exported)

if TYPE_CHECKING:  # pandas is imported lazily: workers never need it
    import pandas as pd

# --------------------------------------------------------------------------------------------
# Contract constants
# --------------------------------------------------------------------------------------------

EVENT_TYPES: tuple[str, ...] = ("app_launched", "game_start", "game_end", "offer_shown", "purchase")
MALFORMED_KINDS: tuple[str, ...] = (
    "invalid_json",
    "not_an_object",
    "missing_customer_identifier",
    "missing_event_id",
    "invalid_event_time",
    "invalid_won",
    "invalid_txn_amount",
    "invalid_offer_price",
    "invalid_offer_propensity",
)
#: Junk kinds that need a source event of one type (the others apply to any event).
_KIND_FOR_TYPE: dict[str, tuple[str, ...]] = {
    "game_end": ("invalid_won",),
    "offer_shown": ("invalid_offer_price", "invalid_offer_propensity"),
    "purchase": ("invalid_txn_amount",),
}
_UNIVERSAL_KINDS = MALFORMED_KINDS[:5]

DAY = 86_400
WEEK = 7 * DAY
TRUTH_DIR = "_truth"
MANIFEST = "_generator.json"

# Behaviour constants (the generative model); see true_expected_revenue for how they combine.
OFFER_RATE = 0.40  #: P(an offer is shown in a session)
SECOND_OFFER_RATE = 0.05  #: P(a second offer | an offer was shown)
NO_GAME_RATE = 0.08  #: P(a session has no game at all)
MIN_SESSION_GAP = 300  #: seconds between one session's last event and the next start (plus Exp)
END_MARGIN = 3600  #: every valid event lies before range end - margin, so late lines still fit
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
_COUNTRIES: tuple[tuple[str, str, float], ...] = (
    ("US", "EN", 0.24), ("DE", "DE", 0.10), ("GB", "EN", 0.08), ("FR", "FR", 0.06),
    ("JP", "JA", 0.06), ("CA", "EN", 0.04), ("AU", "EN", 0.03), ("BR", "PT", 0.12),
    ("IN", "HI", 0.11), ("MX", "ES", 0.07), ("ID", "ID", 0.05), ("TR", "TR", 0.04),
)
_DEVICES: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("Android", "phone", "Samsung", ("Galaxy S23", "Galaxy A54", "Galaxy S21")),
    ("Android", "phone", "Xiaomi", ("Redmi Note 12", "Mi 11")),
    ("Android", "phone", "Acer", ("Liquid Z6", "BlackBerry 10 Z30")),
    ("Android", "phone", "Google", ("Pixel 7", "Pixel 8")),
    ("Android", "tablet", "Samsung", ("Galaxy Tab S8",)),
    ("iOS", "phone", "Apple", ("iPhone 13", "iPhone 14", "iPhone 15")),
    ("iOS", "tablet", "Apple", ("iPad Air", "iPad 10")),
)
_OS_VERSIONS = {"Android": ("11", "12", "13", "14.1", "6.4.5"), "iOS": ("16.4.1", "17.2", "17.5.1")}
_WORDS_A = ("Depict", "Silent", "Rapid", "Lucky", "Cosmic", "Quiet", "Bold", "Frozen", "Pixel", "Amber")
_WORDS_B = ("None", "Fox", "River", "Storm", "Otter", "Comet", "Maple", "Raven", "Tiger", "Echo")
_TZ_OFFSETS: tuple[tuple[int, str], ...] = (
    (0, "Z"), (0, "Z"), (3600, "+01:00"), (7200, "+02:00"), (19800, "+05:30"),
    (32400, "+09:00"), (-10800, "-03:00"), (-18000, "-05:00"), (-28800, "-08:00"),
)
OFFSET_TIME_FRACTION = 0.05  #: share of event_time strings with an explicit offset or 'Z'
BOOLEAN_JSON_FRACTION = 0.2  #: share of won / offer_purchased written as JSON booleans
#: offer_shown flags by [as JSON booleans * 2 + purchased]
_OFFER_FLAGS = (
    ',"offer_purchased":"false","offer_dismissed":"true"',
    ',"offer_purchased":"true","offer_dismissed":"false"',
    ',"offer_purchased":false,"offer_dismissed":true',
    ',"offer_purchased":true,"offer_dismissed":false',
)


# --------------------------------------------------------------------------------------------
# The behaviour model and the truth API
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GeneratorOptions:
    out: str
    offers: tuple[Offer, ...]
    users: int = 1000
    days: int = 28
    start_date: dt.date = dt.date(2026, 1, 1)
    seed: int = 42
    duplicate_fraction: float = 0.0
    out_of_order_fraction: float = 0.0
    malformed_fraction: float = 0.0
    gzip: bool = False
    workers: int = 1

    def validate(self) -> None:
        """User mistakes become one sentence (UserError), before anything is written."""
        if self.users < 1:
            raise UserError(f"--users must be at least 1 (got {self.users}).")
        if self.days < 1:
            raise UserError(f"--days must be at least 1 (got {self.days}).")
        if self.workers < 1:
            raise UserError(f"--workers must be at least 1 (got {self.workers}).")
        for name in ("duplicate_fraction", "out_of_order_fraction", "malformed_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise UserError(f"{name} must be between 0 and 1 (got {value}).")
        if not self.offers:
            raise UserError("The offer catalogue is empty.")
        for o in self.offers:
            if abs(o.offer_price * 100 - round(o.offer_price * 100)) > 1e-6:
                raise UserError(f"Offer {o.offer_type}@{o.offer_price}: prices must have at most 2 decimals.")


def _cents_str(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def _derive_seed(*parts: object) -> int:
    """A stable 128-bit seed from (seed, user index, stream): independent of shard layout."""
    text = ":".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=16).digest(), "big")


def _uuid_like(*parts: object) -> str:
    h = hashlib.blake2b(":".join(str(p) for p in parts).encode(), digest_size=16).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def customer_identifier(seed: int, user_index: int) -> str:
    """The deterministic UUID-looking id of user `user_index` under `seed`."""
    return _uuid_like("customer", seed, user_index)


_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_BASE36_TRIPLES: list[str] = []


def _session_token(bits: int) -> str:
    """A random 'ey3je39-932u73'-shaped token from 64 random bits (base 36, three digits a step)."""
    table = _BASE36_TRIPLES
    if not table:
        table.extend(a + b + c for a in _BASE36 for b in _BASE36 for c in _BASE36)
    b0, r0 = divmod(bits, 46656)
    b1, r1 = divmod(b0, 46656)
    b2, r2 = divmod(b1, 46656)
    b3, r3 = divmod(b2, 46656)
    text = table[r0] + table[r1] + table[r2] + table[r3] + _BASE36[b3 % 36]
    return text[:7] + "-" + text[7:]


# --------------------------------------------------------------------------------------------
# Time formatting
# --------------------------------------------------------------------------------------------

_HMS: list[str] = []


def _hms_table() -> list[str]:
    """All 86,400 'HH:MM:SS' strings: a list lookup is several times faster than formatting."""
    if not _HMS:
        _HMS.extend(f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60))
    return _HMS


class _Clock:
    """Epoch seconds <-> ISO strings and day folders for the generated range."""

    def __init__(self, start_date: dt.date, days: int) -> None:
        self.t0 = calendar.timegm(start_date.timetuple())
        self.days = days
        self.end = self.t0 + days * DAY
        #: prefix[d + 1] = 'YYYY-MM-DDT' of day index d, for d in -1 .. days + 1 (local offsets)
        self.prefix = [(start_date + dt.timedelta(days=d)).isoformat() + "T" for d in range(-1, days + 2)]
        self.folders = [f"date={(start_date + dt.timedelta(days=d)).isoformat()}" for d in range(days)]
        self.hms = _hms_table()

    def utc(self, t: int) -> str:
        d, s = divmod(t - self.t0, DAY)
        return self.prefix[d + 1] + self.hms[s]


# --------------------------------------------------------------------------------------------
# Per-user simulation
# --------------------------------------------------------------------------------------------


@dataclass
class _UserStream:
    """One user's valid events in time order (strictly increasing seconds) and decisions."""

    times: list[int]
    lines: list[str]
    decisions: list[dict[str, Any]]
    purchases: list[tuple[int, int]]  # (time, cents)


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
    weights = _shop_weights(spend)
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


def _shop_weights(spend: float) -> list[float]:
    centre = _clamp(1.0 + 1.2 * spend, 0.0, 5.0)
    return [math.exp(-0.5 * (k - centre) ** 2) for k in range(len(SHOP_SKUS))]


class _Simulator:
    """Simulates users of one shard; holds what every user shares (clock, catalogue, options)."""

    def __init__(self, options: GeneratorOptions) -> None:
        self.options = options
        self.clock = _Clock(options.start_date, options.days)
        self.catalogue = tuple(options.offers)
        self.offer_types = tuple(sorted({o.offer_type for o in self.catalogue}))
        self.offer_cents = [round(o.offer_price * 100) for o in self.catalogue]
        self.offer_keys = [offer_key(o) for o in self.catalogue]
        self.offer_prices = [o.offer_price for o in self.catalogue]
        k = len(self.catalogue)
        self.propensity = 1.0 / k
        self.propensity_text = repr(self.propensity)
        #: offer_shown line pieces per candidate: ',"offer_type":"x","offer_price":"9.99"'
        self.offer_parts = [
            f',"offer_type":"{o.offer_type}","offer_price":"{_cents_str(c)}"'
            for o, c in zip(self.catalogue, self.offer_cents)
        ]
        self.offer_purchase_parts = [
            f',"sku":"offer-{o.offer_type}-{_cents_str(c)}","txn_amount":"{_cents_str(c)}",'
            f'"purchase_source":"offer"}}\n'
            for o, c in zip(self.catalogue, self.offer_cents)
        ]
        self.shop_parts = [
            f',"sku":"{sku}","txn_amount":"{_cents_str(c)}","purchase_source":"shop"}}\n' for sku, c in SHOP_SKUS
        ]
        self.country_cum = list(accumulate(w for _, _, w in _COUNTRIES))

    # -- one user ----------------------------------------------------------------------------

    def simulate_user(self, index: int, counts: dict[str, Any]) -> _UserStream:
        """All sessions of user `index`, from its own random stream; adds its tallies to `counts`."""
        opts, clock = self.options, self.clock
        rng = random.Random(_derive_seed(opts.seed, index, "events"))
        r = rng.random
        expo = rng.expovariate
        traits = draw_traits(rng, self.offer_types)
        cid = customer_identifier(opts.seed, index)

        # identity and device (constant except the signin method)
        c = bisect.bisect_right(self.country_cum, r() * self.country_cum[-1])
        country, language, _ = _COUNTRIES[min(c, len(_COUNTRIES) - 1)]
        os_name, device_type, make, models = _DEVICES[int(r() * len(_DEVICES))]
        model = models[int(r() * len(models))]
        versions = _OS_VERSIONS[os_name]
        os_version = versions[int(r() * len(versions))]
        package_version = ("1.0", "1.1", "1.2", "2.0")[int(r() * 4)]
        handle = f"{_WORDS_A[int(r() * 10)]}{_WORDS_B[int(r() * 10)]}.{1970 + int(r() * 40)}"
        fb_start = r() < 1.0 / (1.0 + math.exp(0.8 - 0.6 * traits.spend))
        signin = _draw_signin(r, handle, facebook=fb_start)
        device_id = _uuid_like("device", opts.seed, index)
        app_head = f'{{"country":"{country}","language":"{language}","signin_method":"'
        app_mid = (
            f'","package_name":"my_app","package_version":"{package_version}","os":"{os_name}",'
            f'"os_version":"{os_version}","device_type":"{device_type}","device_make":"{make}",'
            f'"device_model":"{model}","device_id":"{device_id}","event_id":"app_launched","event_time":"'
        )

        # hot-loop locals
        t0, prefix, hms = clock.t0, clock.prefix, clock.hms
        limit = clock.end - END_MARGIN
        offer_parts, purchase_parts, shop_parts = self.offer_parts, self.offer_purchase_parts, self.shop_parts
        offer_cents, catalogue = self.offer_cents, self.catalogue
        n_offers = len(catalogue)
        shop_cum = list(accumulate(_shop_weights(traits.spend)))
        shop_total = shop_cum[-1]
        skill, shop_p = traits.skill, traits.shop_probability
        geo_log = math.log((traits.mean_games - 1.0) / traits.mean_games)
        gap_rate = traits.sessions_per_day / DAY
        p_offset, p_bool = OFFSET_TIME_FRACTION, BOOLEAN_JSON_FRACTION
        tz = _TZ_OFFSETS
        n_tz = len(tz)

        offset_log: list[int] = []  # one entry per event_time written with an explicit offset

        def offset_ts(t: int) -> str:
            offset_log.append(t)
            shift, suffix = tz[int(r() * n_tz)]
            d, s = divmod(t + shift - t0, DAY)
            return prefix[d + 1] + hms[s] + suffix

        def ts(t: int) -> str:
            if r() < p_offset:
                return offset_ts(t)
            d, s = divmod(t - t0, DAY)
            return prefix[d + 1] + hms[s]

        times: list[int] = []
        lines: list[str] = []
        decisions: list[dict[str, Any]] = []
        purchases: list[tuple[int, int]] = []
        add_time, add_line, add_purchase = times.append, lines.append, purchases.append
        history: deque[tuple[int, int]] = deque()  # (session start, purchase cents) of the last 7 days
        history_cents = 0
        last_games: int | None = None
        last_ratio: float | None = None
        balance = 500 + int(r() * 1500)
        wins_total = 0
        identity_changes = sessions = crossing = offsets = games = 0
        propensity_text = self.propensity_text
        hidden_record = {
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
        n_skus = len(SHOP_SKUS)
        log = math.log
        offer_flags = _OFFER_FLAGS

        start = t0 + int(r() * max(1, int(0.35 * opts.days * DAY)))
        first = True
        while start < limit:
            # identity change at app launch: mostly a player connecting facebook
            if not first:
                u = r()
                if u < 0.01:
                    new = _draw_signin(r, handle, facebook=not is_facebook_signin(signin))
                    if is_facebook_signin(new) or u < 0.002:
                        identity_changes += new != signin
                        signin = new
            first = False
            sid = _session_token(rng.getrandbits(64))
            tail = f'","customer_identifier":"{cid}","session_id":"{sid}"'
            n_games = 0 if r() < NO_GAME_RATE else 1 + int(math.log(1.0 - r()) / geo_log)
            slots: list[int] = []
            if r() < OFFER_RATE:
                slots.append(int(r() * (n_games + 1)))
                if r() < SECOND_OFFER_RATE:
                    slots.append(slots[0] + int(r() * (n_games - slots[0] + 1)))
            next_slot = slots[0] if slots else -1

            # observable features at this session's decisions (DESIGN §4, start-based windows)
            while history and history[0][0] < start - WEEK:
                history_cents -= history.popleft()[1]
            if slots:  # built only when needed: most sessions show no offer
                features = ObservableFeatures(
                    country=country,
                    facebook_connected=is_facebook_signin(signin),
                    prev_week_purchase_amount=history_cents / 100.0,
                    last_session_games_played=last_games,
                    last_session_win_ratio=last_ratio,
                )
                features_record = {
                    "country": country,
                    "facebook_connected": features.facebook_connected,
                    "prev_week_purchase_amount": features.prev_week_purchase_amount,
                    "last_session_games_played": last_games,
                    "last_session_win_ratio": last_ratio,
                }
                head = {"user_id": cid, "user_index": index, "session_id": sid}

            # the session's events go straight into the user's lists; cut back if it does not fit
            mark_events, mark_decisions, mark_purchases = len(times), len(decisions), len(purchases)
            add_time(start)
            add_line(app_head + signin + app_mid + ts(start) + tail + "}\n")
            t = start
            wins = 0
            for g in range(n_games + 1):
                if g:
                    level = 1 + wins_total // 3
                    t += 2 + int(r() * 25)
                    if r() < p_offset:  # ts(t), inlined for the two most frequent events
                        stamp = offset_ts(t)
                    else:
                        d, sec = divmod(t - t0, DAY)
                        stamp = prefix[d + 1] + hms[sec]
                    add_time(t)
                    add_line(
                        f'{{"event_id":"game_start","event_time":"{stamp}{tail},'
                        f'"currency_balance":"{balance}","level":"{level}"}}\n'
                    )
                    t += 20 + int(-100.0 * log(1.0 - r()))  # exponential, mean 100 s
                    if r() < skill:
                        wins += 1
                        wins_total += 1
                        balance += 100
                        score = 5000 + int(r() * 5000)
                        won_text = "true" if r() < p_bool else '"1"'
                    else:
                        balance += 20
                        score = int(r() * 5000)
                        won_text = "false" if r() < p_bool else '"0"'
                    if r() < p_offset:
                        stamp = offset_ts(t)
                    else:
                        d, sec = divmod(t - t0, DAY)
                        stamp = prefix[d + 1] + hms[sec]
                    add_time(t)
                    add_line(
                        f'{{"event_id":"game_end","event_time":"{stamp}{tail},"currency_balance":"{balance}",'
                        f'"level":"{level}","score":"{score}","badge":"{score // 2000}","won":{won_text}}}\n'
                    )
                    if r() < shop_p:
                        k = min(bisect.bisect_right(shop_cum, r() * shop_total), n_skus - 1)
                        t += 3 + int(r() * 40)
                        cents = SHOP_SKUS[k][1]
                        balance += cents
                        add_time(t)
                        add_line(
                            f'{{"event_id":"purchase","event_time":"{ts(t)}{tail},'
                            f'"currency_balance":"{balance}"{shop_parts[k]}'
                        )
                        add_purchase((t, cents))
                while next_slot == g:
                    slot_index = len(decisions) - mark_decisions
                    next_slot = slots[slot_index + 1] if slot_index + 1 < len(slots) else -1
                    t += 1 + int(r() * 10)
                    choice = int(r() * n_offers)
                    context = DecisionContext(
                        traits=traits,
                        features=features,
                        catalogue=catalogue,
                        remaining_games_in_session=n_games - g,
                        pending_offers_in_session=len(slots) - slot_index - 1,
                    )
                    probabilities = take_probabilities(context)
                    bought = r() < probabilities[choice]
                    flags = offer_flags[(r() < p_bool) * 2 + bought]
                    add_time(t)
                    add_line(
                        f'{{"event_id":"offer_shown","event_time":"{ts(t)}{tail},"currency_balance":"{balance}"'
                        f'{offer_parts[choice]}{flags},"offer_propensity":{propensity_text}}}\n'
                    )
                    decisions.append(
                        self._decision(
                            context, probabilities, choice, bought, head, features_record, hidden_record, start, t
                        )
                    )
                    if bought:
                        t += 2 + int(r() * 8)
                        cents = offer_cents[choice]
                        balance += cents
                        add_time(t)
                        add_line(
                            f'{{"event_id":"purchase","event_time":"{ts(t)}{tail},'
                            f'"currency_balance":"{balance}"{purchase_parts[choice]}'
                        )
                        add_purchase((t, cents))
            if t >= limit:  # the session would not fit in the range: the user's timeline ends here
                del times[mark_events:], lines[mark_events:], decisions[mark_decisions:], purchases[mark_purchases:]
                break
            sessions += 1
            games += n_games
            offsets = len(offset_log)
            if (t - t0) // DAY != (start - t0) // DAY:
                crossing += 1
            session_cents = sum(c for _, c in purchases[mark_purchases:])
            history.append((start, session_cents))
            history_cents += session_cents
            last_games = n_games
            last_ratio = wins / n_games if n_games else None
            start = t + MIN_SESSION_GAP + int(expo(gap_rate))

        by_type = counts["events_by_type"]
        by_type["app_launched"] += sessions
        by_type["game_start"] += games
        by_type["game_end"] += games
        by_type["offer_shown"] += len(decisions)
        by_type["purchase"] += len(purchases)
        counts["sessions"] += sessions
        counts["sessions_crossing_midnight"] += crossing
        counts["identity_changes"] += identity_changes
        counts["event_times_with_offset"] += offsets
        return _UserStream(times, lines, decisions, purchases)

    def _decision(
        self,
        context: DecisionContext,
        probabilities: list[float],
        choice: int,
        bought: bool,
        head: dict[str, Any],
        features: dict[str, Any],
        hidden: dict[str, Any],
        start: int,
        t: int,
    ) -> dict[str, Any]:
        """The truth record of one offer decision (realised label and flags filled in later).

        `head` (user ids, session id), `features` (per session) and `hidden` (per user) are
        prebuilt by the caller: a decision happens every ~20 events, so this is a hot path.
        """
        other = expected_other_revenue(context, probabilities)
        offer = self.catalogue[choice]
        return {
            **head,
            "session_start": self.clock.utc(start) + "Z",
            "decision_time": self.clock.utc(t) + "Z",
            "_t": t,
            "offer_type": offer.offer_type,
            "offer_price": offer.offer_price,
            "offer_propensity": self.propensity,
            "offer_purchased": bought,
            "take_probability": probabilities[choice],
            "features": features,
            "hidden": {
                **hidden,
                "remaining_games_in_session": context.remaining_games_in_session,
                "pending_offers_in_session": context.pending_offers_in_session,
            },
            "expected_other_revenue": other,
            "take_probabilities": dict(zip(self.offer_keys, probabilities)),
            "expected_revenue": {
                key: p * price + other for key, p, price in zip(self.offer_keys, probabilities, self.offer_prices)
            },
        }


def _draw_signin(r: Callable[[], float], handle: str, facebook: bool) -> str:
    """The brief's signin shapes: 'fb', social profile URLs, 'email'."""
    u = r()
    if facebook:
        return "fb" if u < 0.5 else f"https://www.facebook.com/{handle}"
    if u < 0.5:
        return "email"
    if u < 0.8:
        return f"https://www.instagram.com/{handle}"
    return f"https://twitter.com/{handle}"


def _finish_decisions(stream: _UserStream, clock: _Clock) -> list[bytes]:
    """Realised next-week revenue, first-in-session/day flags; serialise the truth records."""
    times = [t for t, _ in stream.purchases]
    cumulative = [0]
    for _, cents in stream.purchases:
        cumulative.append(cumulative[-1] + cents)
    out: list[bytes] = []
    last_day = None
    last_session = None
    for record in stream.decisions:
        t = record.pop("_t")
        lo = bisect.bisect_left(times, t)
        hi = bisect.bisect_left(times, t + WEEK)
        record["realised_next_week_purchase_amount"] = (cumulative[hi] - cumulative[lo]) / 100.0
        record["window_inside_range"] = t + WEEK <= clock.end
        # DESIGN §4 anchors: a session's first offer; at most one per user per UTC day by default
        first_in_session = record["session_id"] != last_session
        day = (t - clock.t0) // DAY
        record["first_in_session"] = first_in_session
        record["first_in_day"] = first_in_session and day != last_day
        if first_in_session:
            last_day, last_session = day, record["session_id"]
        out.append(orjson.dumps(record) + b"\n")
    return out


# --------------------------------------------------------------------------------------------
# Messiness: duplicates, late / out-of-order lines, junk
# --------------------------------------------------------------------------------------------

_SPACINGS: tuple[tuple[str, str, str, str], ...] = (
    ("{", ", ", ": ", "}"),
    ("{ ", ", ", ": ", " }"),
    ("{", " , ", " : ", "}"),
    ("{", ",", ": ", "}"),
    ("{ ", ",  ", ":", "}"),
)
_BAD_TIMES = ("not-a-time", "2026-13-45T25:61:99", "17:53:57 last tuesday", "??")


def respell(line: str, rng: random.Random) -> str:
    """The same JSON object with shuffled key order and different spacing (a client retry)."""
    items = list(orjson.loads(line).items())
    rng.shuffle(items)
    head, sep, colon, end = _SPACINGS[int(rng.random() * len(_SPACINGS))]
    body = sep.join(orjson.dumps(k).decode() + colon + orjson.dumps(v).decode() for k, v in items)
    return head + body + end + "\n"


def _junk(line: str, rng: random.Random) -> tuple[str, str]:
    """A malformed extra line derived from a real one; returns (kind, text).

    Half the lines from a game_end / offer_shown / purchase get a kind specific to that type.
    """
    r = rng.random
    text = line.rstrip("\n")
    obj: dict[str, Any] = orjson.loads(text)
    specific = _KIND_FOR_TYPE.get(obj["event_id"])
    if specific and r() < 0.5:
        kind = specific[int(r() * len(specific))]
    else:
        kind = _UNIVERSAL_KINDS[int(r() * len(_UNIVERSAL_KINDS))]
    if kind == "invalid_json":
        u = r()
        if u < 0.6:  # truncated in transit: a prefix of an object is never valid JSON
            junk = text[: max(20, int(len(text) * (0.3 + 0.6 * r())))]
        elif u < 0.8:  # a Python dict repr, as in the brief's examples
            junk = str(obj)
        else:
            junk = "&".join(f"{k}={v}" for k, v in obj.items())  # form-encoded by a broken client
    elif kind == "not_an_object":
        if r() < 0.5:
            junk = orjson.dumps(list(obj.values())[:3]).decode()
        else:
            junk = orjson.dumps(text).decode()
    else:
        if kind == "missing_customer_identifier":
            del obj["customer_identifier"]
        elif kind == "missing_event_id":
            del obj["event_id"]
        elif kind == "invalid_event_time":
            obj["event_time"] = _BAD_TIMES[int(r() * len(_BAD_TIMES))]
        elif kind == "invalid_won":
            obj["won"] = "maybe" if r() < 0.5 else "n/a"
        elif kind == "invalid_txn_amount":
            obj["txn_amount"] = "-" + obj["txn_amount"] if r() < 0.5 else "abc"
        elif kind == "invalid_offer_price":
            obj["offer_price"] = "NaN" if r() < 0.5 else "-" + obj["offer_price"]
        else:  # invalid_offer_propensity
            obj["offer_propensity"] = 0 if r() < 0.5 else 1.5
        junk = orjson.dumps(obj).decode()
    return kind, junk + "\n"


def _late_arrival(anchor: int, t: int, r: Callable[[], float], clock: _Clock) -> int:
    """Arrival time of an event moved behind a strictly later one (`anchor`); 1 in 4 next day."""
    if r() < 0.25:
        midnight = clock.t0 + ((t - clock.t0) // DAY + 1) * DAY
        candidate = max(anchor, midnight) + 1 + int(r() * 4 * 3600)
        if candidate < clock.end - 600:  # room left for a duplicate's short retry
            return candidate
    return anchor + 1 + int(r() * 600)


def _retry_arrival(arrival: int, r: Callable[[], float], clock: _Clock) -> int:
    """Arrival of a duplicate: seconds to minutes after the original, 1 in 5 the next day."""
    if r() < 0.2:
        midnight = clock.t0 + ((arrival - clock.t0) // DAY + 1) * DAY
        candidate = midnight + 1 + int(r() * 6 * 3600)
        if candidate < clock.end:
            return candidate
    return arrival + 1 + int(r() * 120)


def _extend_by_day(buffers: list[list[str]], t0: int, times: list[int], lines: list[str], lo: int, hi: int) -> None:
    """Append lines[lo:hi] (times ascending) to their day buffers, one slice per day."""
    while lo < hi:
        day = (times[lo] - t0) // DAY
        cut = bisect.bisect_left(times, t0 + (day + 1) * DAY, lo, hi)
        buffers[day].extend(lines[lo:cut])
        lo = cut


def _sample_indices(n: int, fraction: float, r: Callable[[], float]) -> list[int]:
    """Each index of range(n) independently with P = fraction, by geometric skips (few draws)."""
    if fraction <= 0.0 or n == 0:
        return []
    if fraction >= 1.0:
        return list(range(n))
    log_q = math.log(1.0 - fraction)
    picked: list[int] = []
    j = int(math.log(1.0 - r()) / log_q)
    while j < n:
        picked.append(j)
        j += 1 + int(math.log(1.0 - r()) / log_q)
    return picked


def _write_messy(
    stream: _UserStream,
    options: GeneratorOptions,
    clock: _Clock,
    index: int,
    buffers: list[list[str]],
    counts: dict[str, Any],
) -> int:
    """Append one user's lines, messed up, to the day buffers in arrival order; return lines written.

    Rows are (arrival, event index, sub, line) with sub 0 = event, 1 = junk, 2 = duplicate. A moved
    event arrives after a later, unmoved event of the same user (its anchor), so every moved
    event is out of order in the files and no unmoved one is: the count is exact.
    """
    rng = random.Random(_derive_seed(options.seed, index, "mess"))
    r = rng.random
    times, lines = stream.times, stream.lines
    n = len(times)
    arrival = times
    moved = _sample_indices(n, options.out_of_order_fraction, r)
    if moved:
        arrival = list(times)
        anchor: int | None = None
        marked = set(moved)
        for j in range(n - 1, -1, -1):
            if j in marked and anchor is not None:
                arrival[j] = _late_arrival(anchor, times[j], r, clock)
            else:
                anchor = times[j]
    extra: list[tuple[int, int, int, str]] = []
    for j in _sample_indices(n, options.duplicate_fraction, r):
        extra.append((_retry_arrival(arrival[j], r, clock), j, 2, respell(lines[j], rng)))
    kinds = counts["malformed_by_kind"]
    for j in _sample_indices(n, options.malformed_fraction, r):
        kind, junk = _junk(lines[j], rng)
        kinds[kind] += 1
        extra.append((arrival[j], j, 1, junk))
    t0 = clock.t0
    moved_rows = [(arrival[j], j, 0, lines[j]) for j in moved if arrival[j] != times[j]]
    displaced = sorted(moved_rows + extra)
    if moved_rows:
        is_moved = {row[1] for row in moved_rows}
        keep = [j for j in range(n) if j not in is_moved]
        order_t, order_lines = [times[j] for j in keep], [lines[j] for j in keep]
    else:
        keep, order_t, order_lines = list(range(n)), times, lines
    # Merge the in-order events with the displaced rows by (arrival, event index, sub) and count
    # exactly, by the definitions a reader of the files would use.
    running_max = -1
    out_of_order = late = duplicates = duplicates_late = 0
    done = 0
    for when, k, sub, line in displaced:
        pos = bisect.bisect_left(order_t, when, done)
        if pos < len(order_t) and order_t[pos] == when and (keep[pos] < k or (keep[pos] == k and sub > 0)):
            pos += 1
        _extend_by_day(buffers, t0, order_t, order_lines, done, pos)
        if pos > done:
            running_max = max(running_max, order_t[pos - 1])
        done = pos
        day = (when - t0) // DAY
        buffers[day].append(line)
        t = times[k]
        if sub == 0:
            if t < running_max:
                out_of_order += 1
            running_max = max(running_max, t)
            late += day > (t - t0) // DAY
        elif sub == 2:
            duplicates += 1
            duplicates_late += day > (t - t0) // DAY
    _extend_by_day(buffers, t0, order_t, order_lines, done, len(order_t))
    counts["out_of_order"] += out_of_order
    counts["late_arrivals"] += late
    counts["duplicates"] += duplicates
    counts["duplicates_in_later_folder"] += duplicates_late
    return n + len(extra)


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


class _PartWriter:
    """One worker's part file per date folder, opened lazily, buffered, deterministic bytes."""

    FLUSH_LINES = 100_000

    def __init__(self, out: Path, worker: int, clock: _Clock, use_gzip: bool) -> None:
        self.out, self.worker, self.clock, self.use_gzip = out, worker, clock, use_gzip
        self.buffers: list[list[str]] = [[] for _ in range(clock.days)]
        self.files: dict[int, IO[bytes]] = {}
        self.raw_files: list[IO[bytes]] = []
        self.pending = 0
        self.lines = 0

    def add_clean(self, times: list[int], lines: list[str]) -> None:
        _extend_by_day(self.buffers, self.clock.t0, times, lines, 0, len(times))
        self.added(len(lines))

    def added(self, n: int) -> None:
        """Account for n lines appended to `buffers`; flush when enough are pending."""
        self.pending += n
        self.lines += n
        if self.pending >= self.FLUSH_LINES:
            self.flush()

    def _file(self, day: int) -> IO[bytes]:
        handle = self.files.get(day)
        if handle is None:
            folder = self.out / self.clock.folders[day]
            folder.mkdir(parents=True, exist_ok=True)
            suffix = ".jsonl.gz" if self.use_gzip else ".jsonl"
            raw: IO[bytes] = open(folder / f"part-{self.worker:05d}{suffix}", "wb")  # noqa: SIM115 - closed in close()
            self.raw_files.append(raw)
            # mtime=0 and no file name in the header: the same lines give the same bytes
            handle = (
                cast(IO[bytes], gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=3))
                if self.use_gzip
                else raw
            )
            self.files[day] = handle
        return handle

    def flush(self) -> None:
        for day, buffer in enumerate(self.buffers):
            if buffer:
                self._file(day).write("".join(buffer).encode())
                buffer.clear()
        self.pending = 0

    def close(self) -> int:
        self.flush()
        if self.use_gzip:
            for handle in self.files.values():
                handle.close()
        for raw in self.raw_files:
            raw.close()
        return len(self.files)


def _empty_counts() -> dict[str, Any]:
    return {
        "events": 0,
        "events_by_type": dict.fromkeys(EVENT_TYPES, 0),
        "lines": 0,
        "duplicates": 0,
        "duplicates_in_later_folder": 0,
        "out_of_order": 0,
        "late_arrivals": 0,
        "malformed": 0,
        "malformed_by_kind": dict.fromkeys(MALFORMED_KINDS, 0),
        "sessions": 0,
        "sessions_crossing_midnight": 0,
        "users_with_events": 0,
        "decisions": 0,
        "offer_purchases": 0,
        "revenue": 0,
        "identity_changes": 0,
        "event_times_with_offset": 0,
        "files": 0,
    }


def _merge(into: dict[str, Any], other: Mapping[str, Any]) -> None:
    for key, value in other.items():
        if isinstance(value, dict):
            _merge(into[key], value)
        else:
            into[key] += value


def shard_bounds(users: int, workers: int, worker: int) -> tuple[int, int]:
    """Contiguous user range [lo, hi) of one worker."""
    return users * worker // workers, users * (worker + 1) // workers


def _run_shard(task: tuple[GeneratorOptions, int]) -> dict[str, Any]:
    """One worker: simulate its users, stream their lines into its part files and truth file."""
    options, worker = task
    sim = _Simulator(options)
    clock = sim.clock
    out = Path(options.out)
    counts = _empty_counts()
    writer = _PartWriter(out, worker, clock, options.gzip)
    messy = options.duplicate_fraction > 0 or options.out_of_order_fraction > 0 or options.malformed_fraction > 0
    truth_path = out / TRUTH_DIR / f"decisions-{worker:05d}.jsonl"
    with open(truth_path, "wb") as truth:
        truth_buffer: list[bytes] = []
        lo, hi = shard_bounds(options.users, options.workers, worker)
        for index in range(lo, hi):
            stream = sim.simulate_user(index, counts)
            if stream.times:
                counts["users_with_events"] += 1
            counts["events"] += len(stream.times)
            counts["decisions"] += len(stream.decisions)
            counts["offer_purchases"] += sum(1 for d in stream.decisions if d["offer_purchased"])
            counts["revenue"] += sum(c for _, c in stream.purchases)
            if messy:
                writer.added(_write_messy(stream, options, clock, index, writer.buffers, counts))
            else:
                writer.add_clean(stream.times, stream.lines)
            truth_buffer.extend(_finish_decisions(stream, clock))
            if len(truth_buffer) > 20_000:
                truth.write(b"".join(truth_buffer))
                truth_buffer.clear()
        truth.write(b"".join(truth_buffer))
    counts["files"] = writer.close()
    counts["lines"] = writer.lines
    counts["malformed"] = sum(counts["malformed_by_kind"].values())
    return counts


def _clear_previous(out: Path) -> None:
    """Remove a previous generation's files (only names this generator writes): reruns replace."""
    for folder in out.glob("date=*"):
        if folder.is_dir():
            for part in list(folder.glob("part-*.jsonl")) + list(folder.glob("part-*.jsonl.gz")):
                part.unlink()
            if not any(folder.iterdir()):
                folder.rmdir()
    for truth in (out / TRUTH_DIR).glob("decisions-*.jsonl"):
        truth.unlink()
    (out / MANIFEST).unlink(missing_ok=True)


def generate(options: GeneratorOptions) -> dict[str, Any]:
    """Write the raw events and the truth; return the exact summary (also in `<out>/_generator.json`).

    Reconciliation: lines == events + duplicates + malformed.
    """
    options.validate()
    out = Path(options.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder.")
    out.mkdir(parents=True, exist_ok=True)
    _clear_previous(out)
    (out / TRUTH_DIR).mkdir(exist_ok=True)
    workers = min(options.workers, options.users)
    if workers != options.workers:
        options = replace(options, workers=workers)
    tasks = [(options, w) for w in range(workers)]
    if workers == 1:
        results = [_run_shard(tasks[0])]
    else:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            results = pool.map(_run_shard, tasks, chunksize=1)
    counts = _empty_counts()
    for result in results:
        _merge(counts, result)
    counts["revenue"] = counts["revenue"] / 100.0
    summary: dict[str, Any] = {
        "out": str(out),
        "users": options.users,
        "days": options.days,
        "start_date": options.start_date.isoformat(),
        "seed": options.seed,
        "workers": workers,
        "gzip": options.gzip,
        "duplicate_fraction": options.duplicate_fraction,
        "out_of_order_fraction": options.out_of_order_fraction,
        "malformed_fraction": options.malformed_fraction,
        "offers": [offer_key(o) for o in options.offers],
        **counts,
    }
    (out / MANIFEST).write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")
    return summary


# --------------------------------------------------------------------------------------------
# Reading the truth back
# --------------------------------------------------------------------------------------------

_FEATURES = (
    "country",
    "facebook_connected",
    "prev_week_purchase_amount",
    "last_session_games_played",
    "last_session_win_ratio",
)


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
