"""Feature row <-> DynamoDB item (DESIGN §3, §6): encodings worked out by hand, no server needed."""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal

import pytest
from online_store_support import AS_OF, NOW, row

from offer_ai.online.items import (
    DEFAULT_FEATURES,
    InvalidFeatureValue,
    decode_item,
    default_features,
    encode_item,
    for_session,
)


def test_encode_item_uses_decimal_repr_iso_as_of_and_ttl_from_write_time():
    item = encode_item(row("u1"), ttl_days=30, now=NOW)
    assert item == {
        "user_id": "u1",
        "as_of": "2026-01-28T12:00:00.000000Z",
        "country": "DE",
        "facebook_connected": True,
        "last_session_games_played": Decimal("3"),
        "last_session_win_ratio": Decimal("0.6666666666666666"),
        "prev_week_purchase_amount": Decimal("0.30000000000000004"),
        "spec_version": "spec-1",
        "expires_at": Decimal("1802592000"),
    }


def test_encode_item_omits_nulls_and_nan_but_keeps_false_and_zero():
    item = encode_item(
        row("u2", country=None, last_session_win_ratio=math.nan, last_session_games_played=None,
            facebook_connected=False, prev_week_purchase_amount=Decimal("NaN")),
        ttl_days=1, now=NOW,
    )
    assert sorted(item) == ["as_of", "expires_at", "facebook_connected", "spec_version", "user_id"]
    assert item["facebook_connected"] is False
    zero = encode_item(row("u3", prev_week_purchase_amount=0.0), ttl_days=1, now=NOW)
    assert zero["prev_week_purchase_amount"] == Decimal("0.0")


@pytest.mark.parametrize("bad", [math.inf, -math.inf, Decimal("Infinity")])
def test_encode_item_rejects_infinity_naming_user_and_attribute(bad):
    with pytest.raises(InvalidFeatureValue, match=r"user 'u4': last_session_win_ratio is"):
        encode_item(row("u4", last_session_win_ratio=bad), ttl_days=1, now=NOW)


def test_encode_item_reads_naive_as_of_as_utc_and_converts_offsets():
    naive = encode_item(row("u5", as_of=dt.datetime(2026, 1, 28, 12, 0)), ttl_days=1, now=NOW)
    plus_one = dt.timezone(dt.timedelta(hours=1))
    shifted = encode_item(row("u5", as_of=dt.datetime(2026, 1, 28, 13, 0, tzinfo=plus_one)), ttl_days=1, now=NOW)
    assert naive["as_of"] == shifted["as_of"] == "2026-01-28T12:00:00.000000Z"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"user_id": None}, "non-empty string user_id"),
        ({"user_id": ""}, "non-empty string user_id"),
        ({"spec_version": None}, "spec_version must be"),
        ({"as_of": None}, "as_of is missing"),
        ({"as_of": "yesterday"}, "not an ISO-8601 time"),
        ({"country": ["DE"]}, "country has unsupported type list"),
        ({"expires_at": 5}, "reserved"),
        ({"prev_week_purchase_amount": 10**40}, "outside DynamoDB's number range"),
    ],
)
def test_encode_item_rejects_rows_that_cannot_be_items(overrides, message):
    with pytest.raises(InvalidFeatureValue, match=message):
        encode_item({**row("u6"), **overrides}, ttl_days=1, now=NOW)


def test_decode_item_gives_plain_python_and_none_for_omitted_attributes():
    decoded = decode_item(
        {
            "user_id": "u7",
            "as_of": "2026-01-28T12:00:00.000000Z",
            "facebook_connected": False,
            "last_session_games_played": Decimal("4"),
            "prev_week_purchase_amount": Decimal("10"),  # DynamoDB may normalise 10.0 to 10
            "spec_version": "spec-1",
            "new_feature": Decimal("2.5"),
            "expires_at": Decimal("1802592000"),
        }
    )
    assert decoded == {
        "user_id": "u7",
        "as_of": AS_OF,
        "country": None,
        "facebook_connected": False,
        "last_session_games_played": 4,
        "last_session_win_ratio": None,
        "prev_week_purchase_amount": 10.0,
        "spec_version": "spec-1",
        "new_feature": 2.5,
    }
    assert type(decoded["last_session_games_played"]) is int
    assert type(decoded["prev_week_purchase_amount"]) is float


def test_default_features_are_the_documented_no_history_values():
    assert default_features("ghost") == {
        "user_id": "ghost",
        "as_of": None,
        "country": None,
        "facebook_connected": False,
        "last_session_games_played": None,
        "last_session_win_ratio": None,
        "prev_week_purchase_amount": 0.0,
        "spec_version": None,
    }
    with pytest.raises(TypeError):
        DEFAULT_FEATURES["country"] = "DE"  # type: ignore[index]


def test_the_in_session_struct_becomes_a_map_that_keeps_its_nulls_and_reads_back():
    start = dt.datetime(2026, 1, 28, 11, 30, tzinfo=dt.timezone.utc)
    ongoing = {"session_id": "s9", "session_start": start, "last_session_games_played": 3,
               "last_session_win_ratio": None, "prev_week_purchase_amount": 0.1}
    item = encode_item(row("u1", in_session=ongoing), ttl_days=30, now=NOW)
    assert item["in_session"] == {"session_id": "s9", "session_start": "2026-01-28T11:30:00.000000Z",
                                  "last_session_games_played": Decimal(3), "last_session_win_ratio": None,
                                  "prev_week_purchase_amount": Decimal("0.1")}
    assert decode_item(item)["in_session"] == ongoing


def test_for_session_takes_the_in_session_values_only_for_the_latest_session():
    features = {"user_id": "u", "as_of": AS_OF, "country": "DE", "last_session_games_played": 7,
                "last_session_win_ratio": 0.5, "prev_week_purchase_amount": 9.99,
                "in_session": {"session_id": "s9", "session_start": AS_OF, "last_session_games_played": 2,
                               "last_session_win_ratio": None, "prev_week_purchase_amount": 0.0}}
    new_session = {k: v for k, v in features.items() if k != "in_session"}
    assert for_session(features, None) == new_session  # a new session: the latest one is the last
    assert for_session(features, "s10") == new_session
    assert for_session(features, "s9") == {**new_session, "last_session_games_played": 2,
                                           "last_session_win_ratio": None, "prev_week_purchase_amount": 0.0}
    older = {k: v for k, v in features.items() if k != "in_session"}  # an item written before the map existed
    assert for_session(older, "s9") == older
