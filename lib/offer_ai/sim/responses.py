"""Generated players responding to offers someone else served: the other half of the loop.

The decision service decides; the simulator knows how each generated player responds. For a
served decision (an ``offer_shown`` line the service logged) this module replays the
player's generated history to the end of the range — the same random stream, so the same
hidden traits and the same state — then plays on: the session the player opened when the
service was called (``app_launched`` at that moment with the session id the client sent), the
offer bought with the player model's true take probability given the observable features at
that moment, the session's games and shop purchases, and further sessions without offers for
``days_after`` days, so the decision's 7-day label window closes.

Output: ``<out>/date=YYYY-MM-DD/responses-00000.jsonl`` (written under a '.' name, then
renamed), beside the generator's ``part-*`` and the service's ``decisions-*``. The served
``offer_shown`` lines themselves are the service's: they are not written again here.
"""

from __future__ import annotations

import calendar
import datetime as dt
import math
import os
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from offer_ai.errors import UserError
from offer_ai.model.offers import Offer
from offer_ai.sim.clock import DAY, Clock, extend_by_day
from offer_ai.sim.event_lines import EventTimes, purchase_line, session_tail
from offer_ai.sim.identity import customer_identifier, derive_seed, session_token, signin_at_launch
from offer_ai.sim.options import GeneratorOptions
from offer_ai.sim.players import (
    MIN_SESSION_GAP,
    NO_GAME_RATE,
    DecisionContext,
    ObservableFeatures,
    is_facebook_signin,
    take_probabilities,
)
from offer_ai.sim.simulator import Simulator, _close_session, _Player, _Session
from offer_ai.sim.writer import _empty_counts

RESPONSES = "responses-00000.jsonl"


def _epoch(moment: dt.datetime) -> int:
    return calendar.timegm(moment.astimezone(dt.timezone.utc).timetuple())


def _parse_time(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment.replace(tzinfo=dt.timezone.utc) if moment.tzinfo is None else moment


def open_sessions(options: GeneratorOptions, user_indices: Iterable[int], at: dt.datetime) -> list[tuple[str, str]]:
    """(customer_identifier, session id) of the session each player opens at ``at``: what the game
    client sends the decision service. Deterministic in (seed, user, time)."""
    stamp = _epoch(at)
    return [(customer_identifier(options.seed, i),
             session_token(random.Random(derive_seed(options.seed, i, "served-session", stamp)).getrandbits(64)))
            for i in user_indices]


@dataclass(frozen=True)
class Response:
    """What one player did with a served offer (the truth behind their lines)."""

    user_id: str
    session_id: str
    offer: Offer
    take_probability: float
    purchased: bool
    session_start: int
    decision_time: dt.datetime


class _Continuation(Simulator):
    """The generator's simulator, with a clock long enough to play past the generated range."""

    def __init__(self, options: GeneratorOptions, days_after: int) -> None:
        super().__init__(options)
        self.long_clock = Clock(options.start_date, options.days + days_after + 2)

    def replay(self, index: int) -> _Player:
        """The player at the end of the generated range, exactly as the generator left it."""
        player = self.simulate_player(index, _empty_counts())
        player.event_times = EventTimes(self.long_clock, player.rng.random)
        return player

    def served_session(self, player: _Player, start: int, session_id: str, offer: Offer, decided: int) -> Response:
        """The opened session: launch, the served offer (maybe bought), the games."""
        r = player.rng.random
        signin = signin_at_launch(r, player.handle, player.signin)
        player.identity_changes += signin != player.signin
        player.signin = signin
        games = 0 if r() < NO_GAME_RATE else 1 + int(math.log(1.0 - r()) / player.games_log_q)
        session = _Session(start, session_id, session_tail(player.customer_id, session_id), games, [])
        features = ObservableFeatures(
            country=player.country, facebook_connected=is_facebook_signin(player.signin),
            prev_week_purchase_amount=player.prev_week_cents(start) / 100.0,
            last_session_games_played=player.last_games, last_session_win_ratio=player.last_ratio,
        )
        first_purchase = len(player.stream.purchases)
        player.add(start, player.app_head + player.signin + player.app_middle + player.event_times.stamp(start)
                   + session.tail + "}\n")
        choice = self.catalogue.index(offer)
        context = DecisionContext(player.traits, features, self.catalogue, remaining_games_in_session=games)
        probability = take_probabilities(context)[choice]
        bought = r() < probability
        t = max(start, decided)
        if bought:
            t += 2 + int(r() * 8)
            cents = self.lines.offer_cents[choice]
            player.balance += cents
            player.add(t, purchase_line(player.event_times.stamp(t), session.tail, player.balance,
                                        self.lines.offer_purchase_parts[choice]))
            player.stream.purchases.append((t, cents))
        wins = 0
        for _ in range(games):
            t, won = self._play_game(player, session.tail, t)
            wins += won
        _close_session(player, session, t, wins, first_purchase, self.long_clock)
        return Response(player.customer_id, session_id, offer, probability, bought, start,
                        dt.datetime.fromtimestamp(decided, dt.timezone.utc))

    def play_on(self, player: _Player, after: int, until: int) -> None:
        """Sessions without offers (decisions are the service's now) from ``after`` until ``until``."""
        gap_rate = player.traits.sessions_per_day / DAY
        start = after + MIN_SESSION_GAP + int(player.rng.expovariate(gap_rate))
        while start < until:
            r = player.rng.random
            player.signin = signin_at_launch(r, player.handle, player.signin)
            session_id = session_token(player.rng.getrandbits(64))
            games = 0 if r() < NO_GAME_RATE else 1 + int(math.log(1.0 - r()) / player.games_log_q)
            session = _Session(start, session_id, session_tail(player.customer_id, session_id), games, [])
            first_purchase = len(player.stream.purchases)
            end, wins = self._play_session(player, session)
            _close_session(player, session, end, wins, first_purchase, self.long_clock)
            start = end + MIN_SESSION_GAP + int(player.rng.expovariate(gap_rate))


def respond(options: GeneratorOptions, served: Sequence[Mapping[str, Any]], opened_at: dt.datetime,
            days_after: int = 8) -> tuple[list[Response], dict[str, Any]]:
    """Play each served player's response (first decision per player); write their lines under ``options.out``.

    ``served`` are the service's logged ``offer_shown`` events; ``opened_at`` is when the
    players opened the sessions the service decided in (at or after the generated range's end).
    Players the generator does not know (new ids) are skipped and counted.
    """
    sim = _Continuation(options, days_after)
    start = _epoch(opened_at)
    if start < sim.clock.end:
        raise UserError(f"Sessions must open at or after the generated range's end ({sim.clock.utc(sim.clock.end)}Z).")
    index_of = {customer_identifier(options.seed, i): i for i in range(options.users)}
    buffers: list[list[str]] = [[] for _ in range(sim.long_clock.days)]
    responses: list[Response] = []
    seen: set[str] = set()
    unknown = 0
    for event in served:
        user = str(event["customer_identifier"])
        if user in seen:
            continue
        seen.add(user)
        if user not in index_of:
            unknown += 1
            continue
        offer = Offer(str(event["offer_type"]), float(event["offer_price"]))
        if offer not in sim.catalogue:
            raise UserError(f"Served offer {offer.offer_type} at {offer.offer_price:g} is not in the generator's catalogue.")
        player = sim.replay(index_of[user])
        mark = len(player.stream.times)
        decided = math.ceil(_parse_time(str(event["event_time"])).timestamp())
        response = sim.served_session(player, start, str(event["session_id"]), offer, decided)
        sim.play_on(player, player.stream.times[-1], start + days_after * DAY)
        extend_by_day(buffers, sim.long_clock.t0, player.stream.times, player.stream.lines, mark, len(player.stream.times))
        responses.append(response)
    out = Path(options.out)
    files = 0
    for day, lines in enumerate(buffers):
        if lines:
            folder = out / sim.long_clock.folders[day]
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{RESPONSES}.tmp"
            tmp.write_text("".join(lines))
            os.replace(tmp, folder / RESPONSES)
            files += 1
    summary = {"players": len(responses), "unknown_players": unknown, "files": files,
               "purchases": sum(r.purchased for r in responses), "lines": sum(len(b) for b in buffers)}
    return responses, summary
