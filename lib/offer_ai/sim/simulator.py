"""One player's timeline as raw events: sessions, games, shop purchases and logged offers.

Why one user at a time, in time order: each user has its own random stream (derived from
(seed, user index)), so a user's events do not depend on the shard layout, and the DESIGN §4
features at each decision (start-based windows) are known as the timeline is built — the truth
needs no second pass. Offers are shown by a uniform logging policy (propensity 1/K, logged in
`offer_propensity`) and bought with the player model's take probability.

The order of the random draws is part of the output: reordering two draws changes every byte
after them (tests/test_sim_bytes.py holds the digests).
"""

from __future__ import annotations

import bisect
import math
import random
from collections import deque
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

from offer_ai.sim.clock import DAY, WEEK, Clock
from offer_ai.sim.event_lines import (
    BOOLEAN_JSON_FRACTION,
    OFFER_FLAGS,
    WON_VALUES,
    CatalogueLines,
    EventTimes,
    app_launched_template,
    game_end_line,
    game_start_line,
    offer_shown_line,
    purchase_line,
    session_tail,
)
from offer_ai.sim.identity import customer_identifier, derive_seed, draw_identity, session_token, signin_at_launch
from offer_ai.sim.options import GeneratorOptions
from offer_ai.sim.players import (
    MIN_SESSION_GAP,
    NO_GAME_RATE,
    OFFER_RATE,
    SECOND_OFFER_RATE,
    SHOP_SKUS,
    DecisionContext,
    ObservableFeatures,
    UserTraits,
    draw_traits,
    is_facebook_signin,
    shop_weights,
    take_probabilities,
)
from offer_ai.sim.truth import DecisionRecords, SessionTruth, features_record, hidden_record

EVENT_TYPES: tuple[str, ...] = ("app_launched", "game_start", "game_end", "offer_shown", "purchase")
END_MARGIN = 3600  #: every valid event lies before range end - margin, so late lines still fit
FIRST_SESSION_SPREAD = 0.35  #: users start within the first 35 % of the range


@dataclass
class UserStream:
    """One user's valid events in time order (strictly increasing seconds) and decisions."""

    times: list[int]
    lines: list[str]
    decisions: list[dict[str, Any]]
    purchases: list[tuple[int, int]]  # (time, cents)


@dataclass(slots=True)
class _Session:
    """A session as drawn at its start: id, game count and offer slots (the hidden state behind
    the truth's remaining_games_in_session and pending_offers_in_session)."""

    start: int
    session_id: str
    tail: str  #: closes each event_time value: customer and session ids
    games: int
    offer_slots: list[int]  #: offers are shown after these games (0: before the first game)
    truth: SessionTruth | None = None  #: shared by the session's decision records, when it has any
    features: ObservableFeatures | None = None


@dataclass(slots=True)
class _Player:
    """One user's state while simulated: the running balance, the last week's purchases, the
    last session, and the events so far."""

    index: int
    customer_id: str
    traits: UserTraits
    rng: random.Random
    event_times: EventTimes  #: formats (and counts) the event_time strings
    country: str
    handle: str
    signin: str
    app_head: str
    app_middle: str
    balance: int
    hidden: dict[str, Any]
    shop_cumulative: list[float]
    games_log_q: float  #: log(1 - 1 / mean_games): games per session are geometric
    wins_total: int = 0
    week: deque[tuple[int, int]] = field(default_factory=deque)  #: (session start, cents) of kept sessions
    week_cents: int = 0
    last_games: int | None = None
    last_ratio: float | None = None
    stream: UserStream = field(default_factory=lambda: UserStream([], [], [], []))
    sessions: int = 0
    games: int = 0
    sessions_crossing_midnight: int = 0
    identity_changes: int = 0
    times_with_offset: int = 0  #: as of the last kept session

    def add(self, t: int, line: str) -> None:
        """Append one valid event (times strictly increase within a user)."""
        self.stream.times.append(t)
        self.stream.lines.append(line)

    def prev_week_cents(self, start: int) -> int:
        """Purchases of sessions that started in [start - 7 days, start): DESIGN §4's window.

        Sessions come in time order, so older ones leave the window for good.
        """
        while self.week and self.week[0][0] < start - WEEK:
            self.week_cents -= self.week.popleft()[1]
        return self.week_cents


class Simulator:
    """Simulates users of one shard; holds what every user shares (clock, catalogue, options)."""

    def __init__(self, options: GeneratorOptions) -> None:
        self.options = options
        self.clock = Clock(options.start_date, options.days)
        self.limit = self.clock.end - END_MARGIN
        self.catalogue = tuple(options.offers)
        self.offer_types = tuple(sorted({o.offer_type for o in self.catalogue}))
        self.lines = CatalogueLines(self.catalogue)
        self.records = DecisionRecords(self.catalogue, self.clock, self.lines.propensity)

    def simulate_user(self, index: int, counts: dict[str, Any]) -> UserStream:
        """All sessions of user `index`, from its own random stream; adds its tallies to `counts`.

        A session that would end past the range's end (less a margin) is dropped, and the
        user's timeline ends there.
        """
        return self.simulate_player(index, counts).stream

    def simulate_player(self, index: int, counts: dict[str, Any]) -> _Player:
        """:meth:`simulate_user`, returning the player as it stands at the end of the range (its
        random stream included), so a later simulation can go on from there (`responses`)."""
        player = self._new_player(index)
        gap_rate = player.traits.sessions_per_day / DAY
        start = self.clock.t0 + int(player.rng.random() * max(1, int(FIRST_SESSION_SPREAD * self.options.days * DAY)))
        while start < self.limit:
            if player.sessions:  # a later launch may come with another signin method
                signin = signin_at_launch(player.rng.random, player.handle, player.signin)
                player.identity_changes += signin != player.signin
                player.signin = signin
            session = self._plan_session(player, start)
            marks = (len(player.stream.times), len(player.stream.decisions), len(player.stream.purchases))
            end, wins = self._play_session(player, session)
            if end >= self.limit:
                _drop_since(player.stream, marks)
                break
            _close_session(player, session, end, wins, marks[2], self.clock)
            start = end + MIN_SESSION_GAP + int(player.rng.expovariate(gap_rate))
        _add_tallies(counts, player)
        return player

    # -- a user and a session ----------------------------------------------------------------

    def _new_player(self, index: int) -> _Player:
        """Hidden traits, identity and starting balance, drawn in this order from the user's stream."""
        seed = self.options.seed
        rng = random.Random(derive_seed(seed, index, "events"))
        traits = draw_traits(rng, self.offer_types)
        identity = draw_identity(rng.random, seed, index, traits.spend)
        app_head, app_middle = app_launched_template(identity)
        return _Player(
            index=index,
            customer_id=customer_identifier(seed, index),
            traits=traits,
            rng=rng,
            event_times=EventTimes(self.clock, rng.random),
            country=identity.country,
            handle=identity.handle,
            signin=identity.signin,
            app_head=app_head,
            app_middle=app_middle,
            balance=500 + int(rng.random() * 1500),
            hidden=hidden_record(traits),
            shop_cumulative=list(accumulate(shop_weights(traits.spend))),
            games_log_q=math.log((traits.mean_games - 1.0) / traits.mean_games),
        )

    def _plan_session(self, player: _Player, start: int) -> _Session:
        """Session id, number of games (geometric) and offer slots; the features when it shows offers."""
        r = player.rng.random
        session_id = session_token(player.rng.getrandbits(64))
        games = 0 if r() < NO_GAME_RATE else 1 + int(math.log(1.0 - r()) / player.games_log_q)
        slots: list[int] = []
        if r() < OFFER_RATE:
            slots.append(int(r() * (games + 1)))
            if r() < SECOND_OFFER_RATE:
                slots.append(slots[0] + int(r() * (games - slots[0] + 1)))
        session = _Session(start, session_id, session_tail(player.customer_id, session_id), games, slots)
        if slots:  # built only when needed: most sessions show no offer
            session.features = ObservableFeatures(
                country=player.country,
                facebook_connected=is_facebook_signin(player.signin),
                prev_week_purchase_amount=player.prev_week_cents(start) / 100.0,
                last_session_games_played=player.last_games,
                last_session_win_ratio=player.last_ratio,
            )
            session.truth = SessionTruth(
                head={"user_id": player.customer_id, "user_index": player.index, "session_id": session_id},
                session_start=self.clock.utc(start) + "Z",
                features=features_record(session.features),
                hidden=player.hidden,
            )
        return session

    def _play_session(self, player: _Player, session: _Session) -> tuple[int, int]:
        """app_launched, then the games with the offers at their slots; returns (end time, wins)."""
        t = session.start
        stamp = player.event_times.stamp(t)
        player.add(t, player.app_head + player.signin + player.app_middle + stamp + session.tail + "}\n")
        wins = 0
        slots, shown = session.offer_slots, 0
        for game in range(session.games + 1):
            if game:
                t, won = self._play_game(player, session.tail, t)
                wins += won
            while shown < len(slots) and slots[shown] == game:
                t = self._show_offer(player, session, game, shown, t)
                shown += 1
        return t, wins

    # -- events ------------------------------------------------------------------------------

    def _play_game(self, player: _Player, tail: str, t: int) -> tuple[int, bool]:
        """game_start, game_end and maybe a shop purchase; returns (time of the last, won)."""
        r, stamp, add = player.rng.random, player.event_times.stamp, player.add
        level = 1 + player.wins_total // 3
        t += 2 + int(r() * 25)
        add(t, game_start_line(stamp(t), tail, player.balance, level))
        t += 20 + int(-100.0 * math.log(1.0 - r()))  # exponential, mean 100 s
        won = r() < player.traits.skill
        if won:
            player.wins_total += 1
            player.balance += 100
            score = 5000 + int(r() * 5000)
        else:
            player.balance += 20
            score = int(r() * 5000)
        won_text = WON_VALUES[(r() < BOOLEAN_JSON_FRACTION) * 2 + won]
        add(t, game_end_line(stamp(t), tail, player.balance, level, score, won_text))
        if r() < player.traits.shop_probability:
            cumulative = player.shop_cumulative
            k = min(bisect.bisect_right(cumulative, r() * cumulative[-1]), len(SHOP_SKUS) - 1)
            t += 3 + int(r() * 40)
            cents = SHOP_SKUS[k][1]
            player.balance += cents
            add(t, purchase_line(stamp(t), tail, player.balance, self.lines.shop_parts[k]))
            player.stream.purchases.append((t, cents))
        return t, won

    def _show_offer(self, player: _Player, session: _Session, game: int, slot: int, t: int) -> int:
        """offer_shown (uniform choice), its truth record, and the purchase if the player takes it."""
        assert session.features is not None and session.truth is not None
        r, lines, tail = player.rng.random, self.lines, session.tail
        t += 1 + int(r() * 10)
        choice = int(r() * len(self.catalogue))
        context = DecisionContext(
            traits=player.traits,
            features=session.features,
            catalogue=self.catalogue,
            remaining_games_in_session=session.games - game,
            pending_offers_in_session=len(session.offer_slots) - slot - 1,
        )
        probabilities = take_probabilities(context)
        bought = r() < probabilities[choice]
        flags = OFFER_FLAGS[(r() < BOOLEAN_JSON_FRACTION) * 2 + bought]
        stamp = player.event_times.stamp(t)
        offer_part = lines.offer_parts[choice]
        player.add(t, offer_shown_line(stamp, tail, player.balance, offer_part, flags, lines.propensity_text))
        player.stream.decisions.append(self.records.decision(session.truth, context, probabilities, choice, bought, t))
        if bought:
            t += 2 + int(r() * 8)
            cents = lines.offer_cents[choice]
            player.balance += cents
            stamp = player.event_times.stamp(t)
            player.add(t, purchase_line(stamp, tail, player.balance, lines.offer_purchase_parts[choice]))
            player.stream.purchases.append((t, cents))
        return t


def _drop_since(stream: UserStream, marks: tuple[int, int, int]) -> None:
    """Remove what a session that does not fit appended: events, decisions, purchases."""
    events, decisions, purchases = marks
    del stream.times[events:], stream.lines[events:], stream.decisions[decisions:], stream.purchases[purchases:]


def _close_session(player: _Player, session: _Session, end: int, wins: int, first_purchase: int, clock: Clock) -> None:
    """A kept session becomes the player's last session and enters its purchase week."""
    player.sessions += 1
    player.games += session.games
    player.times_with_offset = player.event_times.with_offset
    if clock.day(end) != clock.day(session.start):
        player.sessions_crossing_midnight += 1
    cents = sum(c for _, c in player.stream.purchases[first_purchase:])
    player.week.append((session.start, cents))
    player.week_cents += cents
    player.last_games = session.games
    player.last_ratio = wins / session.games if session.games else None


def _add_tallies(counts: dict[str, Any], player: _Player) -> None:
    """Add the user's event and session counts to the shard's summary counts."""
    by_type = counts["events_by_type"]
    by_type["app_launched"] += player.sessions
    by_type["game_start"] += player.games
    by_type["game_end"] += player.games
    by_type["offer_shown"] += len(player.stream.decisions)
    by_type["purchase"] += len(player.stream.purchases)
    counts["sessions"] += player.sessions
    counts["sessions_crossing_midnight"] += player.sessions_crossing_midnight
    counts["identity_changes"] += player.identity_changes
    counts["event_times_with_offset"] += player.times_with_offset
