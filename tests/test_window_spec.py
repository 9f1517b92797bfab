"""The anchor / windows / label sections of features.yaml: a bad entry fails before any data is
read, with a message naming it; and how a window feature's aggregates get their frame."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from offer_ai.errors import UserError
from offer_ai.features.spec_check import check_spec
from offer_ai.features.window_spec import WindowSpec, load_window_spec, window_sql
from offer_ai.ingest.feature_spec import load_feature_spec

REPO = Path(__file__).resolve().parents[1]
DEFAULT = yaml.safe_load((REPO / "conf" / "features.yaml").read_text())


def spec_from(tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> WindowSpec:
    tree = copy.deepcopy(DEFAULT)
    edit(tree)
    path = tmp_path / "features.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return load_window_spec(load_feature_spec(path))


def setter(dotted: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(tree: dict[str, Any]) -> None:
        keys = dotted.split(".")
        node = tree
        for key in keys[:-1]:
            node = node[key]
        if value is DELETE:
            del node[keys[-1]]
        else:
            node[keys[-1]] = value
    return edit


DELETE = object()


def test_the_default_definition_gives_the_design_columns(spark):
    spec = load_window_spec(load_feature_spec(REPO / "conf" / "features.yaml"))
    check_spec(spark, spec)
    # DESIGN §3, plus anchor_session_start (the windows' reference time)
    assert spec.training_columns == (
        "user_id", "anchor_session_id", "anchor_session_start", "decision_time", "country", "facebook_connected",
        "last_session_games_played", "last_session_win_ratio", "prev_week_purchase_amount",
        "offer_type", "offer_price", "offer_propensity", "next_week_purchase_amount", "label_complete",
    )
    assert spec.online_columns == (
        "user_id", "as_of", "country", "facebook_connected",
        "last_session_games_played", "last_session_win_ratio", "prev_week_purchase_amount",
    )
    assert spec.label.length_us == 7 * 86_400_000_000 and spec.anchor.max_per_user_per_day == 1


@pytest.mark.parametrize(
    ("dotted", "value", "message"),
    [
        ("windows.prev_week.kind", "rolling", "windows.prev_week.kind: unknown window kind 'rolling'"),
        ("windows.prev_week.direction", "forward", "windows.prev_week.direction: features may only look backward"),
        ("windows.prev_week.weeks", 1, "windows.prev_week.weeks is not a known key"),
        ("windows.prev_week.hours", 3, "windows.prev_week needs exactly one of 'days' or 'hours'"),
        ("windows.prev_week.days", 0, "windows.prev_week.days must be a whole number >= 1"),
        ("windows.prev_week.source", "users", "windows.prev_week.source must be one of sessions, events"),
        ("windows.prev_week.features", {}, "windows.prev_week.features must map at least one"),
        ("windows.last_session.count", 0, "windows.last_session.count must be a whole number >= 1"),
        ("windows.last_session.days", 7, "windows.last_session.days: a count window has 'count'"),
        ("windows.last_session.features.LastGames", "games_played", "windows.last_session.features.LastGames: column names"),
        ("windows.prev_week.features.last_session_games_played", "count(*)", "column 'last_session_games_played' is produced twice"),
        ("windows.prev_week.features.decision_time", "max(session_start)", "column 'decision_time' is reserved"),
        ("anchor.identity_features", ["country", "planet"], "anchor.identity_features: 'planet' is not an identity field"),
        ("anchor.max_per_user_per_day", 0, "anchor.max_per_user_per_day must be a whole number >= 1"),
        ("anchor.condition", "", "anchor.condition must be a Spark SQL expression"),
        ("anchor.offer", "x", "anchor.offer is not a known key"),
        ("label.direction", "backward", "label.direction must be forward"),
        ("label.aggregate", DELETE, "label.aggregate must be a Spark SQL expression"),
        ("label", DELETE, "the 'label' section is missing"),
    ],
)
def test_a_malformed_entry_fails_naming_it_without_spark(tmp_path, dotted, value, message):
    with pytest.raises(UserError) as err:
        spec_from(tmp_path, setter(dotted, value))
    assert message in str(err.value)
    assert str(tmp_path / "features.yaml") in str(err.value)


@pytest.mark.parametrize(
    ("dotted", "value", "message"),
    [
        ("windows.prev_week.features.prev_week_purchase_amount", "coalesce(sum(purchase_amountt), 0)",
         "windows.prev_week.features.prev_week_purchase_amount: [UNRESOLVED_COLUMN"),
        ("windows.prev_week.features.prev_week_purchase_amount", "sum(purchase_amount",
         "windows.prev_week.features.prev_week_purchase_amount: "),
        ("windows.prev_week.features.prev_week_purchase_amount", "purchase_amount",
         "windows.prev_week.features.prev_week_purchase_amount: 'purchase_amount' has no aggregate function: a window of 7 days"),
        ("windows.prev_week.features.prev_week_purchase_amount", "sum(purchase_amount) OVER (ORDER BY session_start)",
         "has its own OVER clause"),
        ("windows.prev_week.features.prev_week_purchase_amount", "sum(purchase_amount) + games_played",
         "windows.prev_week.features.prev_week_purchase_amount: "),
        ("windows.prev_week.features.prev_week_purchase_amount", "count(DISTINCT games_played)",
         "windows.prev_week.features.prev_week_purchase_amount: [DISTINCT_WINDOW_FUNCTION_UNSUPPORTED]"),
        ("windows.prev_week.source", "events",  # events have no purchase_amount column
         "windows.prev_week.features.prev_week_purchase_amount: [UNRESOLVED_COLUMN"),
        ("windows.last_session.count", 3, "windows.last_session.features.last_session_games_played: 'games_played' has no aggregate"),
        ("windows.last_session.features.last_session_games_played", "games_playd",
         "windows.last_session.features.last_session_games_played: [UNRESOLVED_COLUMN"),
        ("windows.prev_week.condition", "offers_shown", "windows.prev_week.condition must be a boolean"),
        ("anchor.condition", "offers_shown >", "anchor.condition: "),
        ("anchor.condition", "offers_shown", "anchor.condition must be a boolean (got bigint"),
        ("anchor.decision_time", "offer_price", "anchor.decision_time must be a timestamp (got double"),
        ("anchor.action", ["offer_type", "offer_colour"], "anchor.action: 'offer_colour' is not a column of sessions"),
        ("label.condition", "event_idd = 'purchase'", "label.condition: [UNRESOLVED_COLUMN"),
        ("label.aggregate", "max(offer_type)", "label.aggregate must be a number (got string)"),
        ("label.aggregate", "txn_amount", "label.aggregate: 'txn_amount' has no aggregate function"),
    ],
)
def test_a_bad_expression_fails_the_check_naming_the_entry(spark, tmp_path, dotted, value, message):
    spec = spec_from(tmp_path, setter(dotted, value))  # the shape is fine: only Spark's analysis objects
    with pytest.raises(UserError) as err:
        check_spec(spark, spec)
    assert message in str(err.value)
    assert str(err.value).startswith(str(tmp_path / "features.yaml") + ": ")
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------------
# window_sql: aggregates get FILTER (the mask) and OVER (the frame); everything else is untouched
# ---------------------------------------------------------------------------------------------

AGGREGATES = {"sum", "count", "max", "first", "min_by"}


def rewrite(expr: str) -> tuple[str, int]:
    return window_sql(expr, "m", "w", lambda name: name.lower() in AGGREGATES)


@pytest.mark.parametrize(
    ("expr", "expected", "calls"),
    [
        ("coalesce(sum(x), 0)", "coalesce(sum(x) FILTER (WHERE m) OVER (w), 0)", 1),
        ("sum(x) / count(*)", "sum(x) FILTER (WHERE m) OVER (w) / count(*) FILTER (WHERE m) OVER (w)", 2),
        ("SUM (x)", "SUM (x) FILTER (WHERE m) OVER (w)", 1),
        ("min_by(a, struct(t, k))", "min_by(a, struct(t, k)) FILTER (WHERE m) OVER (w)", 1),
        ("sum(x) FILTER (WHERE y > 0)", "sum(x) FILTER (WHERE (y > 0) AND m) OVER (w)", 1),
        ("first(x) ignore nulls", "first(x) FILTER (WHERE m) IGNORE NULLS OVER (w)", 1),
        ("max(CASE WHEN a = ')' THEN 1 END)", "max(CASE WHEN a = ')' THEN 1 END) FILTER (WHERE m) OVER (w)", 1),
        # not calls of an aggregate: a string, a column named like one, a qualified name, a number
        ("concat('sum(x)', summary, t.sum, 1e5)", "concat('sum(x)', summary, t.sum, 1e5)", 0),
        ("games_played", "games_played", 0),
        ("`sum`(x)", "`sum`(x)", 0),
    ],
)
def test_window_sql_gives_every_aggregate_call_the_mask_and_the_frame(expr, expected, calls):
    assert rewrite(expr) == (expected, calls)


def test_window_sql_refuses_an_expression_with_its_own_over():
    with pytest.raises(ValueError, match="has its own OVER clause"):
        rewrite("sum(x) OVER (ORDER BY t)")
