"""Anchors, windows and the label (DESIGN §4 "Anchors and windows"): one hand-worked example per rule.

Tiny `sessions` / `events` frames are built inline with the real schemas; the definition is the
default conf/features.yaml, so these tests pin the offer-ai semantics it encodes.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession

from offer_ai.features.spec_check import check_spec
from offer_ai.features.training import anchor_candidates, anchors, empty_sources, features_as_of, training_examples
from offer_ai.features.training_export import export_training
from offer_ai.features.window_spec import WindowSpec, load_window_spec
from offer_ai.ingest.feature_spec import load_feature_spec

REPO = Path(__file__).resolve().parents[1]
UTC = dt.timezone.utc
US = dt.timedelta(microseconds=1)
DAY = dt.timedelta(days=1)
WEEK = 7 * DAY
FAR = dt.datetime(2030, 1, 1, tzinfo=UTC)  # latest event time when completeness does not matter
WINDOW_FEATURES = ["last_session_games_played", "last_session_win_ratio", "prev_week_purchase_amount"]


def ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture(scope="module")
def spec() -> WindowSpec:
    return load_window_spec(load_feature_spec(REPO / "conf" / "features.yaml"))


@pytest.fixture(scope="module")
def frames(spark: SparkSession, spec: WindowSpec) -> tuple[DataFrame, DataFrame]:
    return empty_sources(spark, spec.features)


def session(user: str, sid: str, start: dt.datetime, *, end: dt.datetime | None = None, games: int = 0, won: int = 0,
            purchase: float = 0.0, offer: dt.datetime | None = None, offer_type: str = "xmas", price: float = 4.99) -> dict[str, Any]:
    return {
        "user_id": user, "session_id": sid, "session_start": start, "session_end": end or max(start, offer or start),
        "games_played": games, "games_won": won, "win_ratio": won / games if games else None,
        "purchase_amount": purchase, "offer_purchase_amount": 0.0, "offers_shown": 1 if offer else 0, "offer_time": offer,
        "offer_type": offer_type if offer else None, "offer_price": price if offer else None,
        "offer_purchased": False if offer else None, "offer_propensity": 0.125 if offer else None,
        "facebook_connected": False,
    }


def purchase(user: str, at: dt.datetime, amount: float) -> dict[str, Any]:
    return {"user_id": user, "event_id": "purchase", "event_time": at, "txn_amount": amount}


def launch(user: str, at: dt.datetime, country: str | None = None, signin: str | None = None) -> dict[str, Any]:
    return {"user_id": user, "event_id": "app_launched", "event_time": at, "country": country, "signin_method": signin}


def sessions_frame(spark: SparkSession, frames: tuple[DataFrame, DataFrame], rows: list[dict[str, Any]]) -> DataFrame:
    schema = frames[0].schema
    return spark.createDataFrame([tuple(r.get(f.name) for f in schema.fields) for r in rows], schema)


def events_frame(spark: SparkSession, frames: tuple[DataFrame, DataFrame], rows: list[dict[str, Any]]) -> DataFrame:
    schema = frames[1].schema
    filled = []
    for n, r in enumerate(rows):
        r = {"event_key": f"k{n:04d}", "session_id": None, "event_date": r["event_time"].date(), "payload": "{}",
             "source_file": "inline", "ingested_at": FAR, **r}
        filled.append(tuple(r.get(f.name) for f in schema.fields))
    return spark.createDataFrame(filled, schema)


def expect(actual: DataFrame, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
    """chispa: `actual` restricted to `columns` holds exactly `rows` (any order)."""
    got = actual.select(*columns)
    expected = got.sparkSession.createDataFrame(rows, got.schema)
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def build(spark, frames, spec, sessions, events=(), latest=FAR) -> DataFrame:
    return training_examples(sessions_frame(spark, frames, sessions), events_frame(spark, frames, list(events)), spec, latest)


# ---------------------------------------------------------------------------------------------
# windows
# ---------------------------------------------------------------------------------------------

T0 = ts("2026-01-08 12:00:00")


def test_prev_week_counts_sessions_started_in_the_7_days_before_the_anchor_start(spark, frames, spec):
    rows = build(spark, frames, spec, [
        session("u", "too-early", T0 - WEEK - US, purchase=100.0),  # 1 µs before the window: out
        session("u", "edge", T0 - WEEK, end=T0 - WEEK + dt.timedelta(hours=1), purchase=10.0),  # start inclusive
        session("u", "just-before", T0 - US, games=2, won=1, purchase=1.0),  # in
        session("u", "anchor", T0, offer=T0 + dt.timedelta(minutes=5), purchase=1000.0),  # its own: out
        session("u", "after", T0 + dt.timedelta(hours=1), purchase=5000.0),  # the future: out
    ])
    expect(rows, ["anchor_session_id", *WINDOW_FEATURES], [("anchor", 2, 0.5, 11.0)])


def test_label_counts_purchases_from_the_decision_time_for_7_days(spark, frames, spec):
    decision = T0 + dt.timedelta(minutes=2)
    rows = build(spark, frames, spec, [session("v", "anchor", T0, offer=decision)], [
        purchase("v", decision - US, 1000.0),  # in the anchor session, before the offer: out
        purchase("v", decision, 1.0),  # at the decision: start inclusive
        purchase("v", decision + dt.timedelta(minutes=1), 2.0),  # the offer's own purchase: in
        purchase("v", decision + WEEK - US, 4.0),  # last microsecond: in
        purchase("v", decision + WEEK, 100.0),  # end exclusive: out
        purchase("other-user", decision, 50.0),
    ])
    expect(rows, ["anchor_session_id", "decision_time", "next_week_purchase_amount"], [("anchor", decision, 7.0)])


def test_offer_in_a_users_first_session_keeps_the_row_with_null_last_session(spark, frames, spec):
    rows = build(spark, frames, spec, [session("w", "first", T0, offer=T0 + dt.timedelta(seconds=30))])
    expect(rows, ["user_id", "anchor_session_id", "country", "facebook_connected", *WINDOW_FEATURES, "next_week_purchase_amount"],
           [("w", "first", None, False, None, None, 0.0, 0.0)])


def test_last_session_is_the_latest_that_started_before_even_without_games(spark, frames, spec):
    rows = build(spark, frames, spec, [
        session("z", "s1", ts("2026-01-08 10:00:00"), games=3, won=1),
        # started before the anchor and still running at its start; no game: games 0, ratio null
        # (the earlier session's values must not show through)
        session("z", "s2", ts("2026-01-08 11:00:00"), end=ts("2026-01-08 12:30:00")),
        session("z", "anchor", T0, offer=T0 + dt.timedelta(minutes=1)),
    ])
    expect(rows, ["anchor_session_id", "last_session_games_played", "last_session_win_ratio"], [("anchor", 0, None)])


def test_a_session_starting_at_the_same_instant_is_not_before_the_anchor(spark, frames, spec):
    rows = build(spark, frames, spec, [
        session("t", "a", T0, games=7, won=7, purchase=70.0),  # sorts first by id, but is not *before*
        session("t", "b", T0, offer=T0 + dt.timedelta(minutes=1)),
        session("t", "c", T0 - dt.timedelta(hours=1), games=2, won=0, purchase=3.0),
    ])
    expect(rows, ["anchor_session_id", *WINDOW_FEATURES], [("b", 2, 0.0, 3.0)])


def test_identity_is_taken_as_of_the_decision_time(spark, frames, spec):
    decision = T0 + dt.timedelta(minutes=10)
    rows = build(spark, frames, spec, [session("i", "anchor", T0, offer=decision)], [
        launch("i", T0 - DAY, country="DE", signin="email"),
        launch("i", decision, signin="https://www.facebook.com/some.one"),  # at the decision: counts
        launch("i", decision + dt.timedelta(seconds=1), country="FR", signin="email"),  # after: does not
    ])
    expect(rows, ["anchor_session_id", "country", "facebook_connected"], [("anchor", "DE", True)])


# ---------------------------------------------------------------------------------------------
# anchors
# ---------------------------------------------------------------------------------------------


def _day_of_offers() -> list[dict[str, Any]]:
    return [
        session("x", "d1-0800", ts("2026-01-10 08:00:00"), offer=ts("2026-01-10 08:05:00")),
        session("x", "d1-1200", ts("2026-01-10 12:00:00"), offer=ts("2026-01-10 12:01:00")),
        session("x", "d1-2300", ts("2026-01-10 23:00:00"), offer=ts("2026-01-10 23:10:00")),
        session("x", "d2-0100", ts("2026-01-11 01:00:00"), offer=ts("2026-01-11 01:05:00")),
        session("x", "no-offer", ts("2026-01-10 06:00:00")),
        session("y", "other-user", ts("2026-01-10 09:00:00"), offer=ts("2026-01-10 09:00:01")),
    ]


def test_several_offers_in_one_day_keep_the_earliest(spark, frames, spec):
    sessions = sessions_frame(spark, frames, _day_of_offers())
    assert anchor_candidates(sessions, spec).count() == 5
    expect(anchors(sessions, spec), ["user_id", "anchor_session_id"], [("x", "d1-0800"), ("x", "d2-0100"), ("y", "other-user")])


@pytest.mark.parametrize(("limit", "kept"), [(2, ["d1-0800", "d1-1200", "d2-0100"]), (None, ["d1-0800", "d1-1200", "d1-2300", "d2-0100"])])
def test_max_per_user_per_day_is_configurable(spark, frames, spec, limit, kept):
    two = dataclasses.replace(spec, anchor=dataclasses.replace(spec.anchor, max_per_user_per_day=limit))
    chosen = anchors(sessions_frame(spark, frames, _day_of_offers()), two).where("user_id = 'x'")
    expect(chosen, ["anchor_session_id"], [(k,) for k in kept])


def test_a_session_crossing_midnight_anchors_on_the_day_of_its_decision(spark, frames, spec):
    rows = build(spark, frames, spec, [
        session("m", "yesterday", ts("2026-01-10 10:00:00"), games=4, won=1, purchase=2.5),
        # starts on the 10th, shows its offer on the 11th: the 11th's earliest decision
        session("m", "crossing", ts("2026-01-10 23:50:00"), end=ts("2026-01-11 00:20:00"), offer=ts("2026-01-11 00:05:00")),
        session("m", "later-same-day", ts("2026-01-11 09:00:00"), offer=ts("2026-01-11 09:05:00")),
    ])
    expect(rows, ["anchor_session_id", "anchor_session_start", "decision_time", *WINDOW_FEATURES],
           [("crossing", ts("2026-01-10 23:50:00"), ts("2026-01-11 00:05:00"), 4, 0.25, 2.5)])


def test_the_action_is_the_offer_shown(spark, frames, spec):
    rows = build(spark, frames, spec, [session("a", "s", T0, offer=T0, offer_type="vip_pass", price=49.99)])
    expect(rows, ["offer_type", "offer_price", "offer_propensity"], [("vip_pass", 49.99, 0.125)])


# ---------------------------------------------------------------------------------------------
# completeness and the export
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("latest", "complete"), [(T0 + WEEK - US, False), (T0 + WEEK, True)])
def test_label_is_complete_only_once_its_week_has_been_ingested(spark, frames, spec, latest, complete):
    rows = build(spark, frames, spec, [session("c", "s", T0 - dt.timedelta(minutes=1), offer=T0)], latest=latest)
    expect(rows, ["anchor_session_id", "label_complete"], [("s", complete)])


def test_incomplete_rows_are_never_exported_and_the_split_is_by_time(spark, frames, spec, tmp_path):
    d = [ts("2026-01-02 00:00:00"), ts("2026-01-03 00:00:00"), ts("2026-01-04 00:00:00"), ts("2026-01-12 00:00:00")]
    sessions = [
        session("e1", "early", d[0], offer=d[0], offer_type="xmas", price=4.99, purchase=4.99),
        session("e2", "middle", d[1], offer=d[1], offer_type="vip_pass", price=9.99),
        session("e1", "late", d[2], offer=d[2], offer_type="coins_bundle", price=4.99, games=2, won=1),
        session("e2", "incomplete", d[3], offer=d[3], offer_type="starter_pack", price=0.99),
    ]
    events = [launch("e1", d[0], "US", "fb"), launch("e2", d[1], "BR", "email"),
              purchase("e1", d[0] + US, 4.99), purchase("e2", d[3] + US, 0.99)]
    latest = d[3] + US  # only the first three labels have a full week: d[2] + 7 days <= latest
    examples = build(spark, frames, spec, sessions, events, latest=latest)
    assert examples.where("label_complete").count() == 3

    result = export_training(spark, examples, spec, str(tmp_path), "run-1", validation_fraction=0.5)
    # span d0..d2 = 2 days, the last half is validation: cutoff = d1 exactly (inclusive)
    assert result.cutoff == d[1]
    assert result.rows == {"train": 1, "validation": 2}
    manifest = json.loads((tmp_path / "run-1" / "manifest.json").read_text())
    assert [c["name"] for c in manifest["columns"]] == [
        "next_week_purchase_amount", "country", "facebook_connected", *WINDOW_FEATURES, "offer_type", "offer_price", "offer_propensity"]
    assert manifest["categorical_encodings"] == {
        "country": {"BR": 0, "US": 1}, "facebook_connected": {"false": 0, "true": 1},
        "offer_type": {"coins_bundle": 0, "vip_pass": 1, "xmas": 2},  # starter_pack only in the incomplete row
    }
    assert manifest["rows"] == {"train": 1, "validation": 2} and manifest["spec_version"] == spec.version

    def csv_rows(split: str) -> list[list[str]]:
        return [row for f in sorted((tmp_path / "run-1" / split / "csv").glob("part-*.csv")) for row in csv.reader(f.open())]

    # label first, no header, codes for categories, empty = missing
    assert csv_rows("train") == [["4.99", "1", "1", "", "", "0.0", "2", "4.99", "0.125"]]
    assert csv_rows("validation") == [
        ["0.0", "0", "0", "", "", "0.0", "1", "9.99", "0.125"],
        ["0.0", "1", "1", "0", "", "4.99", "0", "4.99", "0.125"],
    ]
    parquet = spark.read.parquet(str(tmp_path / "run-1" / "validation" / "parquet"))
    assert parquet.columns[0] == "next_week_purchase_amount"
    assert sorted(r["offer_type"] for r in parquet.collect()) == [0, 1]


# ---------------------------------------------------------------------------------------------
# the same definition as of a time (online features)
# ---------------------------------------------------------------------------------------------


def test_features_as_of_use_a_virtual_anchor_at_as_of(spark, frames, spec):
    as_of = T0
    sessions = sessions_frame(spark, frames, [
        session("o", "old", as_of - WEEK - US, games=1, won=1, purchase=100.0),  # out of the week
        session("o", "edge", as_of - WEEK, games=3, won=3, purchase=10.0),
        session("o", "last", as_of - dt.timedelta(hours=2), end=as_of + dt.timedelta(hours=1), games=4, won=1, purchase=1.0),
        session("o", "at-as-of", as_of, games=9, won=9, purchase=1000.0),  # not before as_of
        session("n", "newcomer", as_of + DAY, games=1),  # nothing before as_of: a row of nulls / 0
    ])
    events = events_frame(spark, frames, [launch("o", as_of - DAY, "JP", "email"), launch("o", as_of, None, "fb"),
                                          launch("o", as_of + US, "GB", "email")])
    expect(features_as_of(sessions, events, spec, as_of),
           ["user_id", "as_of", "country", "facebook_connected", *WINDOW_FEATURES],
           [("o", as_of, "JP", True, 4, 0.25, 11.0), ("n", as_of, None, False, None, None, 0.0)])


# ---------------------------------------------------------------------------------------------
# other window kinds the definition allows (count N, hours, events, conditions)
# ---------------------------------------------------------------------------------------------


def test_count_windows_hours_and_event_sources_from_a_custom_definition(spark, frames, tmp_path):
    tree = yaml.safe_load((REPO / "conf" / "features.yaml").read_text())
    tree["windows"] = {
        "last_two": {"kind": "count", "count": 2, "features": {"games_last_two": "sum(games_played)",
                                                                 "sessions_last_two": "count(*)"}},
        "last_hour": {"kind": "time", "hours": 1, "source": "events", "condition": "event_id = 'game_start'",
                      "features": {"games_started_last_hour": "count(*)"}},
        "last_big_purchase": {"kind": "count", "count": 1, "source": "events",
                              "condition": "event_id = 'purchase' AND txn_amount >= 10",
                              "features": {"last_big_purchase": "txn_amount"}},
    }
    path = tmp_path / "features.yaml"
    path.write_text(yaml.safe_dump(tree))
    custom = load_window_spec(load_feature_spec(path))
    check_spec(spark, custom)
    at = T0
    sessions = [
        session("g", "s1", at - dt.timedelta(hours=5), games=1),
        session("g", "s2", at - dt.timedelta(hours=3), games=2),
        session("g", "s3", at - dt.timedelta(hours=2), games=4),
        session("g", "anchor", at, offer=at, games=100),
        session("g2", "a2", at, offer=at),  # no history: sum null, count 0
    ]
    game = lambda t: {"user_id": "g", "event_id": "game_start", "event_time": t}  # noqa: E731
    events = [game(at - dt.timedelta(hours=1) - US), game(at - dt.timedelta(hours=1)), game(at - US), game(at),
              purchase("g", at - dt.timedelta(hours=4), 20.0), purchase("g", at - dt.timedelta(hours=2), 5.0),
              purchase("g", at + US, 50.0)]
    rows = build(spark, frames, custom, sessions, events)
    expect(rows, ["anchor_session_id", "games_last_two", "sessions_last_two", "games_started_last_hour", "last_big_purchase"],
           [("anchor", 6, 2, 2, 20.0), ("a2", None, 0, 0, None)])
