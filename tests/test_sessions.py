"""DESIGN §4, sessions: one test per rule, on tiny inline events, against hand-worked values.

The aggregates come from the repository's conf/features.yaml, so these tests pin down what that
file defines, through the same functions the job uses.
"""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

import pytest
from chispa import assert_df_equality

from offer_ai.ingest.events import EVENTS_SCHEMA
from offer_ai.ingest.feature_spec import load_feature_spec
from offer_ai.ingest.sessions import (
    aggregate_sessions,
    assign_sessions,
    build_sessions,
    events_in_scope,
    identity_events,
    identity_touched,
    replaced_sessions,
    touched_scope,
)

REPO = Path(__file__).resolve().parents[1]
SPEC = load_feature_spec(REPO / "conf" / "features.yaml")
_keys = itertools.count()


def t(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def ev(user: str, session: str | None, time: str, event_id: str, **fields) -> dict:
    when = t(time)
    row = dict.fromkeys(EVENTS_SCHEMA.fieldNames())
    row.update(
        event_key=f"k{next(_keys):06d}", user_id=user, session_id=session, event_id=event_id, event_time=when,
        event_date=when.date(), payload="{}", source_file="f", ingested_at=t("2026-02-01T00:00:00"),
    )
    row.update(fields)
    return row


def events(spark, rows: list[dict]):
    return spark.createDataFrame([tuple(r[c] for c in EVENTS_SCHEMA.fieldNames()) for r in rows], EVENTS_SCHEMA)


def sessions(spark, rows: list[dict], split: str = "session_id", gap: int = 30):
    df = events(spark, rows)
    return build_sessions(df, identity_events(df, SPEC), SPEC, split, gap)


def one(spark, rows: list[dict], *columns: str, split: str = "session_id") -> dict:
    got = sessions(spark, rows, split).collect()
    assert len(got) == 1
    return {c: got[0][c] for c in columns}


def test_session_start_and_end_are_min_and_max_event_time(spark):
    rows = [ev("u", "s", "2026-01-01T10:05:00", "game_end"), ev("u", "s", "2026-01-01T10:00:00", "app_launched"),
            ev("u", "s", "2026-01-01T10:09:30", "purchase", txn_amount=1.0)]  # out of order on purpose
    assert one(spark, rows, "session_start", "session_end") == {
        "session_start": t("2026-01-01T10:00:00"), "session_end": t("2026-01-01T10:09:30")}


def test_games_played_counts_game_start_and_games_won_counts_won_game_end(spark):
    rows = [ev("u", "s", "2026-01-01T10:00:00", "game_start"), ev("u", "s", "2026-01-01T10:01:00", "game_end", won=True),
            ev("u", "s", "2026-01-01T10:02:00", "game_start"), ev("u", "s", "2026-01-01T10:03:00", "game_end", won=False),
            ev("u", "s", "2026-01-01T10:04:00", "game_start"), ev("u", "s", "2026-01-01T10:05:00", "game_end"),  # won unknown
            ev("u", "s", "2026-01-01T10:06:00", "game_start"), ev("u", "s", "2026-01-01T10:07:00", "game_end", won=True)]
    assert one(spark, rows, "games_played", "games_won", "win_ratio") == {"games_played": 4, "games_won": 2, "win_ratio": 0.5}


def test_win_ratio_is_null_when_no_game_was_played(spark):
    rows = [ev("u", "s", "2026-01-01T10:00:00", "app_launched"), ev("u", "s", "2026-01-01T10:01:00", "game_end", won=True)]
    assert one(spark, rows, "games_played", "games_won", "win_ratio") == {"games_played": 0, "games_won": 1, "win_ratio": None}


def test_purchase_amount_sums_every_txn_amount_and_offer_purchase_amount_only_offer_sourced(spark):
    rows = [ev("u", "s", "2026-01-01T10:00:00", "purchase", txn_amount=0.1, purchase_source="shop"),
            ev("u", "s", "2026-01-01T10:01:00", "purchase", txn_amount=0.2, purchase_source="offer"),
            ev("u", "s", "2026-01-01T10:02:00", "purchase", txn_amount=9.99),  # no source: revenue, not offer revenue
            ev("u", "s", "2026-01-01T10:03:00", "purchase", txn_amount=4.99, purchase_source="offer")]
    # 0.1 + 0.2 + 9.99 + 4.99 = 15.28 exactly (decimal sum; the double sum would give 15.280000000000001)
    assert one(spark, rows, "purchase_amount", "offer_purchase_amount") == {
        "purchase_amount": 15.28, "offer_purchase_amount": 5.19}


def test_purchase_amount_is_zero_without_purchases(spark):
    rows = [ev("u", "s", "2026-01-01T10:00:00", "game_start")]
    assert one(spark, rows, "purchase_amount", "offer_purchase_amount") == {"purchase_amount": 0.0, "offer_purchase_amount": 0.0}


def test_offer_fields_come_from_the_first_offer_shown_and_offers_shown_counts_them(spark):
    rows = [ev("u", "s", "2026-01-01T10:09:00", "offer_shown", offer_type="vip_pass", offer_price=49.99,
               offer_purchased=True, offer_propensity=0.5),
            ev("u", "s", "2026-01-01T10:02:00", "offer_shown", offer_type="xmas", offer_price=4.99,
               offer_purchased=False, offer_propensity=0.125),
            ev("u", "s", "2026-01-01T10:00:00", "game_start")]
    assert one(spark, rows, "offers_shown", "offer_type", "offer_price", "offer_purchased", "offer_propensity", "offer_time") == {
        "offers_shown": 2, "offer_type": "xmas", "offer_price": 4.99, "offer_purchased": False,
        "offer_propensity": 0.125, "offer_time": t("2026-01-01T10:02:00")}


def test_offer_propensity_is_null_when_not_logged_and_offer_fields_null_without_offer(spark):
    shown = [ev("u", "s", "2026-01-01T10:02:00", "offer_shown", offer_type="xmas", offer_price=4.99)]
    assert one(spark, shown, "offer_propensity", "offer_purchased") == {"offer_propensity": None, "offer_purchased": None}
    none = [ev("u", "s", "2026-01-01T10:02:00", "game_start")]
    assert one(spark, none, "offers_shown", "offer_type", "offer_time") == {"offers_shown": 0, "offer_type": None, "offer_time": None}


def test_identity_is_as_of_session_end_and_carries_forward(spark):
    rows = [
        ev("u", "s1", "2026-01-01T10:00:00", "app_launched", country="DE", language="DE"),
        ev("u", "s1", "2026-01-01T10:05:00", "game_start"),
        ev("u", "s2", "2026-01-02T10:00:00", "game_start"),  # no identity event: carried from s1
        ev("u", "s3", "2026-01-03T10:00:00", "app_launched", country="FR"),  # language missing: carried
        ev("u", "s3", "2026-01-03T10:10:00", "user_updated", country="GB"),  # at the very end of s3: counts
        ev("u", None, "2026-01-03T10:20:00", "user_updated", country="US"),  # after s3's end: does not count
        ev("v", "s1", "2026-01-01T09:00:00", "game_start"),  # another user's session of the same id, no identity
    ]
    got = {(r.user_id, r.session_id): (r.country, r.language) for r in sessions(spark, rows).collect()}
    assert got == {("u", "s1"): ("DE", "DE"), ("u", "s2"): ("DE", "DE"), ("u", "s3"): ("GB", "DE"), ("v", "s1"): (None, None)}


def test_facebook_connected_from_the_latest_known_signin_method(spark):
    methods = {"fb": True, "https://www.facebook.com/DepictNone.2002": True, "http://m.facebook.com": True,
               "HTTPS://FACEBOOK.COM/x": True, "email": False, "https://www.instagram.com/fb": False,
               "https://notfacebook.com/x": False, "https://facebook.com.evil.io/x": False, None: False}
    rows = [ev(f"u{i}", "s", "2026-01-01T10:00:00", "app_launched", signin_method=m) for i, m in enumerate(methods)]
    # the latest value wins: fb earlier, email later -> not connected
    rows += [ev("w", "s", "2026-01-01T10:00:00", "app_launched", signin_method="fb"),
             ev("w", "s", "2026-01-01T10:01:00", "user_updated", signin_method="email")]
    got = {r.user_id: r.facebook_connected for r in sessions(spark, rows).collect()}
    assert got == {**{f"u{i}": want for i, want in enumerate(methods.values())}, "w": False}


def test_events_without_session_id_belong_to_no_session_but_carry_identity(spark):
    rows = [ev("u", None, "2026-01-01T09:00:00", "user_updated", country="JP"),
            ev("u", None, "2026-01-01T09:30:00", "purchase", txn_amount=1.0),
            ev("u", "s", "2026-01-01T10:00:00", "game_start")]
    assert one(spark, rows, "session_id", "purchase_amount", "country") == {"session_id": "s", "purchase_amount": 0.0, "country": "JP"}


def test_split_by_day_makes_one_session_per_utc_calendar_day(spark):
    rows = [ev("u", "a", "2026-01-01T23:50:00", "game_start"), ev("u", "a", "2026-01-02T00:10:00", "game_start"),
            ev("u", "b", "2026-01-02T20:00:00", "game_start"), ev("u", None, "2026-01-02T21:00:00", "game_start")]
    got = {r.session_id: (r.games_played, r.session_start) for r in sessions(spark, rows, "day").collect()}
    assert got == {"2026-01-01": (1, t("2026-01-01T23:50:00")), "2026-01-02": (3, t("2026-01-02T00:10:00"))}


def test_split_by_gap_starts_a_session_after_more_than_gap_minutes(spark):
    rows = [ev("u", "a", "2026-01-01T10:00:00", "game_start"),
            ev("u", "a", "2026-01-01T10:30:00", "game_start"),  # exactly 30 min later: same session
            ev("u", "a", "2026-01-01T11:00:00.000001", "game_start"),  # 30 min + 1 µs: a new one
            ev("u", None, "2026-01-01T11:20:00", "game_start"),  # no session id needed
            ev("v", "x", "2026-01-01T10:10:00", "game_start")]
    got = sorted((r.user_id, r.session_id, r.games_played, r.session_end) for r in sessions(spark, rows, "gap").collect())
    assert got == [("u", "2026-01-01T10:00:00.000000Z", 2, t("2026-01-01T10:30:00")),
                   ("u", "2026-01-01T11:00:00.000001Z", 2, t("2026-01-01T11:20:00")),
                   ("v", "2026-01-01T10:10:00.000000Z", 1, t("2026-01-01T10:10:00"))]


def test_unknown_split_is_refused(spark):
    with pytest.raises(ValueError, match="unknown split"):
        assign_sessions(events(spark, [ev("u", "s", "2026-01-01T10:00:00", "x")]), "week", 30)


# --- incremental recompute -------------------------------------------------------------------------


def _stored(spark, rows, split="session_id"):
    return sessions(spark, rows, split)


def test_a_late_event_rereads_every_event_of_its_session(spark):
    old = [ev("u", "s", "2026-01-01T23:50:00", "game_start"), ev("u", "s", "2026-01-02T00:05:00", "game_end", won=True),
           ev("u", "t", "2026-01-03T10:00:00", "game_start")]
    late = [ev("u", "s", "2026-01-02T00:01:00", "game_start")]
    stored = _stored(spark, old)
    scope = touched_scope(events(spark, late), stored, "session_id", 30)
    assert [(r.session_id, r.lo, r.hi) for r in scope.collect()] == [("s", t("2026-01-01T23:50:00"), t("2026-01-02T00:05:00"))]
    again = aggregate_sessions(events_in_scope(events(spark, old + late), scope, "session_id"), SPEC)
    assert [(r.session_id, r.games_played, r.games_won) for r in again.collect()] == [("s", 2, 1)]


def test_gap_recompute_merges_sessions_a_late_event_bridges(spark):
    old = [ev("u", None, "2026-01-01T10:00:00", "game_start"), ev("u", None, "2026-01-01T10:50:00", "game_start"),
           ev("u", None, "2026-01-01T15:00:00", "game_start")]
    late = [ev("u", None, "2026-01-01T10:25:00", "game_start")]  # within 30 min of both 10:00 and 10:50
    stored = _stored(spark, old, "gap")
    scope = touched_scope(events(spark, late), stored, "gap", 30)
    assert [(r.lo, r.hi) for r in scope.collect()] == [(t("2026-01-01T10:00:00"), t("2026-01-01T10:50:00"))]
    again = aggregate_sessions(assign_sessions(events_in_scope(events(spark, old + late), scope, "gap"), "gap", 30), SPEC)
    assert [(r.session_id, r.games_played) for r in again.collect()] == [("2026-01-01T10:00:00.000000Z", 3)]
    gone = replaced_sessions(stored, scope, again, "gap")
    assert [r.session_id for r in gone.collect()] == ["2026-01-01T10:50:00.000000Z"]


def test_a_late_identity_event_reaches_the_sessions_after_it(spark):
    old = [ev("u", "s1", "2026-01-01T10:00:00", "app_launched", country="DE"),
           ev("u", "s2", "2026-01-02T10:00:00", "game_start"), ev("u", "s3", "2026-01-03T10:00:00", "game_start")]
    late = [ev("u", None, "2026-01-01T12:00:00", "user_updated", country="FR")]
    stored = _stored(spark, old)
    nothing = stored.select("user_id", "session_id").limit(0)
    touched = identity_touched(events(spark, late), stored, SPEC, exclude=nothing)
    assert sorted(r.session_id for r in touched.collect()) == ["s2", "s3"]
    expected = spark.createDataFrame([("u", "s1", "DE"), ("u", "s2", "FR"), ("u", "s3", "FR")],
                                     "user_id string, session_id string, country string")
    assert_df_equality(_stored(spark, old + late).select("user_id", "session_id", "country"), expected,
                       ignore_row_order=True, ignore_nullable=True)
