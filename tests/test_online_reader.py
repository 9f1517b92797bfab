"""Reading items back against a real moto server: exact round trips, TTL, BatchGetItem in
requests of <= 100 keys with UnprocessedKeys retried, and a loud count when users are not
read. Server contents are checked with raw GetItem calls, not only through the reader."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pytest
from online_store_support import AS_OF, NOW, TTL_30_DAYS, UTC, raw_item, reader_for, record_batch_sizes, row

from offer_ai.online.client import make_client
from offer_ai.online.items import default_features
from offer_ai.online.reader import OnlineFeatureReader, OnlineStoreReadError, ReadOptions
from offer_ai.online.writer import write_items


def test_items_round_trip_exactly_through_the_server(dynamodb_table):
    rows = [
        row("u1"),
        row("u2", country=None, facebook_connected=False, last_session_games_played=0,
            last_session_win_ratio=math.nan, prev_week_purchase_amount=0.0),
        row("u3", last_session_games_played=None, last_session_win_ratio=None,
            prev_week_purchase_amount=123456789.123, as_of=dt.datetime(2026, 1, 28, 12, 0, 0, 5)),
        row("u4", prev_week_purchase_amount=1e-7, last_session_win_ratio=1.0),
    ]
    stats = write_items(rows, dynamodb_table, now=NOW)
    assert (stats.considered, stats.written, stats.requests, stats.retried) == (4, 4, 1, 0)

    # What the server holds: numbers as the repr strings, nulls and NaN absent, the TTL.
    assert raw_item(dynamodb_table, "u2") == {
        "user_id": {"S": "u2"},
        "as_of": {"S": "2026-01-28T12:00:00.000000Z"},
        "facebook_connected": {"BOOL": False},
        "last_session_games_played": {"N": "0"},
        "prev_week_purchase_amount": {"N": "0.0"},
        "spec_version": {"S": "spec-1"},
        "expires_at": {"N": "1802592000"},
    }
    assert raw_item(dynamodb_table, "u1")["prev_week_purchase_amount"] == {"N": "0.30000000000000004"}

    with reader_for(dynamodb_table) as reader:
        got = reader.get_many(["u1", "u2", "u3", "u4"])
        assert reader.get("u2") == got["u2"]
    expected_u1 = {
        "user_id": "u1", "as_of": AS_OF, "country": "DE", "facebook_connected": True,
        "last_session_games_played": 3, "last_session_win_ratio": 0.6666666666666666,
        "prev_week_purchase_amount": 0.30000000000000004, "spec_version": "spec-1",
    }
    assert got["u1"] == expected_u1
    assert got["u2"] == {
        "user_id": "u2", "as_of": AS_OF, "country": None, "facebook_connected": False,
        "last_session_games_played": 0, "last_session_win_ratio": None,
        "prev_week_purchase_amount": 0.0, "spec_version": "spec-1",
    }
    assert got["u3"]["as_of"] == dt.datetime(2026, 1, 28, 12, 0, 0, 5, tzinfo=UTC)
    assert got["u3"]["prev_week_purchase_amount"] == 123456789.123
    assert (got["u3"]["last_session_games_played"], got["u3"]["last_session_win_ratio"]) == (None, None)
    assert got["u4"]["prev_week_purchase_amount"] == 1e-7
    assert type(got["u4"]["last_session_win_ratio"]) is float and got["u4"]["last_session_win_ratio"] == 1.0
    assert not any(isinstance(v, float) and math.isnan(v) for f in got.values() for v in f.values())


def test_reader_treats_an_item_past_its_ttl_as_unknown(dynamodb_table):
    write_items([row("u1")], dynamodb_table, now=NOW)
    late = OnlineFeatureReader(dynamodb_table, clock=lambda: TTL_30_DAYS + 1)
    assert late.get("u1") == default_features("u1")
    assert reader_for(dynamodb_table).get("u1")["as_of"] == AS_OF


# --------------------------------------------------------------------------------- reader


def test_batch_get_of_more_than_100_keys_splits_requests_and_defaults_unknown_users(dynamodb_table):
    write_items((row(f"u{i}", last_session_games_played=i) for i in range(230)), dynamodb_table, now=NOW)
    reader = reader_for(dynamodb_table)
    sizes = record_batch_sizes(reader.client, dynamodb_table.table, "BatchGetItem")
    wanted = [f"u{i}" for i in range(250)] + ["u0", "u5"]  # 20 unknown, 2 repeated
    got = reader.get_many(wanted)
    assert sizes == [100, 100, 50]
    assert list(got) == [f"u{i}" for i in range(250)]
    assert [got[f"u{i}"]["last_session_games_played"] for i in (0, 229)] == [0, 229]
    assert all(got[f"u{i}"] == default_features(f"u{i}") for i in range(230, 250))
    assert reader.get("nobody") == default_features("nobody")


class FlakyReadClient:
    """Its first `partial` BatchGetItem calls ask the server for only the first half of the keys
    and return the rest as UnprocessedKeys; with partial=None, every call returns all unprocessed."""

    def __init__(self, client: Any, partial: int | None) -> None:
        self._client, self._partial = client, partial
        self.calls: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def batch_get_item(self, RequestItems: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        (table, request), = RequestItems.items()
        keys = request["Keys"]
        self.calls.append(len(keys))
        if self._partial is None:
            return {"Responses": {table: []}, "UnprocessedKeys": {table: {"Keys": keys}}}
        if len(self.calls) > self._partial:
            return self._client.batch_get_item(RequestItems=RequestItems, **kwargs)
        half = len(keys) // 2
        answer = self._client.batch_get_item(RequestItems={table: {**request, "Keys": keys[:half]}})
        answer["UnprocessedKeys"] = {table: {**request, "Keys": keys[half:]}}
        return answer


def test_batch_get_retries_unprocessed_keys(dynamodb_table):
    write_items((row(f"u{i}") for i in range(120)), dynamodb_table, now=NOW)
    flaky = FlakyReadClient(make_client(dynamodb_table), partial=2)
    reader = reader_for(dynamodb_table, client=flaky, options=ReadOptions(base_delay_s=0.001))
    got = reader.get_many([f"u{i}" for i in range(130)])
    # chunk 1: 100 -> 50 unprocessed -> 25 unprocessed -> 25 passes; chunk 2: 30 passes.
    assert flaky.calls == [100, 50, 25, 30]
    assert all(got[f"u{i}"]["as_of"] == AS_OF for i in range(120))
    assert all(got[f"u{i}"] == default_features(f"u{i}") for i in range(120, 130))


def test_batch_get_budget_exhausted_raises_with_the_count(dynamodb_table):
    flaky = FlakyReadClient(make_client(dynamodb_table), partial=None)
    reader = reader_for(dynamodb_table, client=flaky, options=ReadOptions(max_retries=2, base_delay_s=0.001))
    with pytest.raises(OnlineStoreReadError, match="^130 users could not be read") as caught:
        reader.get_many([f"u{i}" for i in range(130)])
    assert caught.value.not_read == 130  # 100 of chunk 1 unprocessed + the 30 of chunk 2 never asked
    assert flaky.calls == [100, 100, 100]
