"""conf/features.yaml: a bad entry fails at start-up with a message naming it (DESIGN §5)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from offer_ai.errors import UserError
from offer_ai.ingest.feature_spec import REQUIRED_SESSION_COLUMNS, load_feature_spec

REPO = Path(__file__).resolve().parents[1]
#: The sections this stage interprets, from the repository's file (later stages add others).
GOOD = {k: v for k, v in yaml.safe_load((REPO / "conf" / "features.yaml").read_text()).items()
        if k in ("session_aggregates", "identity")}


def write(tmp_path: Path, tree: dict) -> Path:
    path = tmp_path / "features.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def with_aggregate(name: str, expr: str) -> dict:
    return {**GOOD, "session_aggregates": {**GOOD["session_aggregates"], name: expr}}


def check_fails(spark, tmp_path: Path, tree: dict) -> str:
    with pytest.raises(UserError) as info:
        load_feature_spec(write(tmp_path, tree)).check(spark)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_the_repository_definition_is_valid_and_covers_the_sessions_contract(spark):
    spec = load_feature_spec(REPO / "conf" / "features.yaml")
    spec.check(spark)
    assert set(REQUIRED_SESSION_COLUMNS) <= set(spec.session_columns)
    assert spec.session_columns[:2] == ("user_id", "session_id")
    assert spec.identity.events == ("app_launched", "user_updated")


def test_unknown_column_fails_naming_the_entry(spark, tmp_path):
    message = check_fails(spark, tmp_path, with_aggregate("games_lost", "count_if(event_id = 'game_end' AND NOT wonn)"))
    assert "session_aggregates.games_lost" in message and "wonn" in message


def test_expression_that_is_not_an_aggregate_fails_naming_the_entry(spark, tmp_path):
    message = check_fails(spark, tmp_path, with_aggregate("last_level", "level"))
    assert "session_aggregates.last_level" in message and "MISSING_AGGREGATION" in message


def test_syntax_error_fails_naming_the_entry(spark, tmp_path):
    message = check_fails(spark, tmp_path, with_aggregate("broken", "sum(txn_amount"))
    assert "session_aggregates.broken" in message


def test_session_start_must_be_a_timestamp(spark, tmp_path):
    tree = {**GOOD, "session_aggregates": {**GOOD["session_aggregates"], "session_start": "count(*)"}}
    assert "session_aggregates.session_start must be a timestamp (got bigint)" in check_fails(spark, tmp_path, tree)


def test_bad_derived_identity_expression_fails_naming_the_entry(spark, tmp_path):
    identity = {**GOOD["identity"], "derived": {"facebook_connected": "signin_method = 'fb'", "vip": "max(country)"}}
    message = check_fails(spark, tmp_path, {**GOOD, "identity": identity})
    assert "identity.derived.vip" in message


@pytest.mark.parametrize(
    ("tree", "needle"),
    [
        ({**GOOD, "sesion_aggregates": {}}, "unknown section 'sesion_aggregates'"),
        ({k: v for k, v in GOOD.items() if k != "session_aggregates"}, "'session_aggregates' must map"),
        ({**GOOD, "session_aggregates": {k: v for k, v in GOOD["session_aggregates"].items() if k != "win_ratio"}},
         "needs 'win_ratio'"),
        (with_aggregate("Bad Name", "count(*)"), "lower_snake_case"),
        (with_aggregate("empty", ""), "session_aggregates.empty must be a Spark SQL expression"),
        (with_aggregate("country", "max(country)"), "column 'country' is defined twice"),
        ({**GOOD, "identity": {**GOOD["identity"], "fields": ["country", "won"]}}, "identity.fields: 'won'"),
        ({**GOOD, "identity": {**GOOD["identity"], "events": []}}, "identity.events must be a non-empty list"),
        ({**GOOD, "identity": {**GOOD["identity"], "carry": []}}, "identity.carry is not a known key"),
    ],
)
def test_malformed_definition_fails_before_spark_naming_the_problem(tmp_path, tree, needle):
    with pytest.raises(UserError, match=None) as info:
        load_feature_spec(write(tmp_path, tree))
    assert needle in str(info.value)


def test_later_sections_are_kept_for_the_next_stages(tmp_path):
    spec = load_feature_spec(write(tmp_path, {**GOOD, "anchor": {"event": "offer_shown"}, "windows": {"prev_week": "7 days"}}))
    assert spec.sections == {"anchor": {"event": "offer_shown"}, "windows": {"prev_week": "7 days"}}


def test_spec_version_is_a_hash_of_the_file(tmp_path):
    first = load_feature_spec(write(tmp_path, GOOD)).version
    changed = load_feature_spec(write(tmp_path, with_aggregate("purchases", "count_if(event_id = 'purchase')"))).version
    assert first != changed and first == load_feature_spec(write(tmp_path, GOOD)).version and len(first) == 16


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_feature_spec(tmp_path / "nope.yaml")
