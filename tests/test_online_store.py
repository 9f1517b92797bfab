"""The online store library (DESIGN §3, §6): items, writer, reader — against a real moto server.

Expected values are worked out by hand in each test (item encodings, batch sizes, retry
counts, not-written counts); no test compares the store with the data that filled it through
the same code path alone.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import pickle
import time
from decimal import Decimal
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError

from offer_ai.config import OnlineStoreSettings
from offer_ai.errors import UserError
from offer_ai.online.local_dynamodb import free_port
from offer_ai.online.store import (
    DEFAULT_FEATURES,
    TTL_ATTRIBUTE,
    InvalidFeatureValue,
    OnlineFeatureReader,
    OnlineStoreReadError,
    OnlineStoreWriteError,
    ReadOptions,
    TokenBucket,
    WriteOptions,
    WriteStats,
    backoff_delay,
    decode_item,
    default_features,
    encode_item,
    ensure_table,
    make_client,
    write_items,
    write_partition,
)

UTC = dt.timezone.utc
AS_OF = dt.datetime(2026, 1, 28, 12, 0, tzinfo=UTC)
NOW = 1_800_000_000.0  # 2027-01-15: fixed write time, so TTLs are hand-computable
TTL_30_DAYS = 1_800_000_000 + 30 * 86_400  # = 1_802_592_000
FAST = WriteOptions(base_delay_s=0.001, max_delay_s=0.01)


def row(user_id: str, **overrides: Any) -> dict[str, Any]:
    values = {
        "user_id": user_id,
        "as_of": AS_OF,
        "country": "DE",
        "facebook_connected": True,
        "last_session_games_played": 3,
        "last_session_win_ratio": 2 / 3,
        "prev_week_purchase_amount": 0.1 + 0.2,
        "spec_version": "spec-1",
    }
    return {**values, **overrides}


def reader_for(store: OnlineStoreSettings, **kwargs: Any) -> OnlineFeatureReader:
    return OnlineFeatureReader(store, clock=lambda: NOW + 60, **kwargs)


def raw_item(store: OnlineStoreSettings, user_id: str) -> dict[str, Any] | None:
    client = make_client(store)
    try:
        return client.get_item(TableName=store.table, Key={"user_id": {"S": user_id}}, ConsistentRead=True).get("Item")
    finally:
        client.close()


def table_size(store: OnlineStoreSettings) -> int:
    client = make_client(store)
    try:
        return sum(page["Count"] for page in client.get_paginator("scan").paginate(TableName=store.table, Select="COUNT"))
    finally:
        client.close()


# ---------------------------------------------------------------------------------- items


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


# ------------------------------------------------------------------------- rate and backoff


def test_backoff_doubles_from_base_up_to_the_cap_with_jitter_below():
    top = [backoff_delay(r, 0.05, 5.0, rng=lambda: 1.0) for r in range(1, 10)]
    assert top == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0])
    assert backoff_delay(3, 0.05, 5.0, rng=lambda: 0.5) == pytest.approx(0.1)


def test_token_bucket_200_items_at_400_per_second_takes_half_a_second_of_fake_time():
    clock = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    bucket = TokenBucket(400.0, capacity=25, clock=lambda: clock[0], sleep=sleep)
    for _ in range(8):
        bucket.take(25)
    assert clock[0] == pytest.approx(0.5)  # 200 / 400, the bucket starts empty
    assert slept == pytest.approx([25 / 400] * 8)
    with pytest.raises(ValueError):
        bucket.take(26)


def test_write_stats_add_up_across_partitions():
    a = WriteStats(considered=30, duplicates=1, written=29, retried=4, requests=3, max_request_items=25, seconds=1.0)
    b = WriteStats(considered=5, written=5, requests=1, throttled=2, sdk_retries=1, max_request_items=5, seconds=2.0)
    assert (a + b).as_dict() == {
        "considered": 35, "duplicates": 1, "written": 34, "retried": 4, "requests": 4,
        "throttled": 2, "sdk_retries": 1, "max_request_items": 25, "seconds": 2.0,
    }


def test_write_error_survives_pickling_for_spark_tasks():
    error = pickle.loads(pickle.dumps(OnlineStoreWriteError(7, 18, "t", "still throttled")))
    assert (error.not_written, error.written, str(error)) == (
        7, 18, "7 items were not written to DynamoDB table 't' (18 were): still throttled."
    )


# -------------------------------------------------------------------------- table and endpoint


def test_ensure_table_creates_with_user_id_key_and_ttl_then_finds_it(dynamodb_endpoint):
    store = OnlineStoreSettings(table="created_here", endpoint_url=dynamodb_endpoint, create_table=True)
    assert ensure_table(store) == "created"
    assert ensure_table(store) == "exists"
    client = make_client(store)
    described = client.describe_table(TableName="created_here")["Table"]
    assert described["KeySchema"] == [{"AttributeName": "user_id", "KeyType": "HASH"}]
    ttl = client.describe_time_to_live(TableName="created_here")["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}


def test_missing_table_is_a_user_error_when_creation_is_not_allowed(dynamodb_endpoint):
    store = OnlineStoreSettings(table="never_made", endpoint_url=dynamodb_endpoint, create_table=False)
    with pytest.raises(UserError, match="DynamoDB table 'never_made' does not exist in us-east-1"):
        ensure_table(store)
    with pytest.raises(UserError, match="does not exist"):
        write_items([row("u1")], store, client=make_client(store))


def test_table_with_another_key_is_a_user_error(dynamodb_endpoint):
    store = OnlineStoreSettings(table="wrong_key", endpoint_url=dynamodb_endpoint, create_table=True)
    make_client(store).create_table(
        TableName="wrong_key",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    with pytest.raises(UserError, match="not the partition key user_id"):
        ensure_table(store)


def test_endpoint_that_does_not_answer_is_a_user_error_naming_the_make_target():
    url = f"http://127.0.0.1:{free_port()}"
    store = OnlineStoreSettings(endpoint_url=url, create_table=True)
    with pytest.raises(UserError) as caught:
        ensure_table(store)
    assert str(caught.value) == f"No DynamoDB at {url}: start it with `make dynamodb-start`."


# ------------------------------------------------------------------------------ round trip


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


def test_write_partition_yields_the_partition_stats_once(dynamodb_table):
    out = list(write_partition(iter([row("a"), row("b")]), dynamodb_table, writers=1))
    assert len(out) == 1 and out[0]["written"] == 2 and out[0]["requests"] == 1


# ---------------------------------------------------------------------------- batches


def record_batch_sizes(client: Any, table: str, operation: str = "BatchWriteItem") -> list[int]:
    """Sizes of the requests botocore actually serialised, from the before-call event."""
    sizes: list[int] = []

    def hook(params: dict[str, Any], **_: Any) -> None:
        body = json.loads(params["body"])["RequestItems"][table]
        sizes.append(len(body) if operation == "BatchWriteItem" else len(body["Keys"]))

    client.meta.events.register(f"before-call.dynamodb.{operation}", hook)
    return sizes


def test_no_request_carries_more_than_25_items(dynamodb_table):
    client = make_client(dynamodb_table)
    sizes = record_batch_sizes(client, dynamodb_table.table)
    stats = write_items((row(f"u{i}") for i in range(260)), dynamodb_table, client=client, now=NOW)
    assert sizes == [25] * 10 + [10]
    assert (stats.written, stats.requests, stats.max_request_items) == (260, 11, 25)
    assert table_size(dynamodb_table) == 260


def test_duplicate_keys_in_a_batch_are_sent_once_and_the_last_row_wins(dynamodb_table):
    # u0..u9, then u0 again (still 10 distinct keys), u10..u24 fills the batch at 25, u25..u28 follow.
    rows = [row(f"u{i}") for i in range(10)]
    rows.append(row("u0", country="FR"))
    rows += [row(f"u{i}") for i in range(10, 29)]
    client = make_client(dynamodb_table)
    sizes = record_batch_sizes(client, dynamodb_table.table)
    stats = write_items(rows, dynamodb_table, client=client, now=NOW)
    assert sizes == [25, 4]
    assert (stats.considered, stats.duplicates, stats.written) == (30, 1, 29)
    assert reader_for(dynamodb_table).get("u0")["country"] == "FR"


# ----------------------------------------------------------------- retries and throttling


class FlakyClient:
    """Wraps a real client; its first BatchWriteItem calls follow a script of failures.

    "throttle" raises ProvisionedThroughputExceededException (as botocore does once its own
    retries are used up); an int n writes only the first n items for real and returns the
    rest as UnprocessedItems; "none" writes nothing and returns everything unprocessed.
    Calls past the script pass through, unless `then` says otherwise.
    """

    def __init__(self, client: Any, script: list[Any], then: Any = None) -> None:
        self._client, self._script, self._then = client, list(script), then
        self.calls: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def batch_write_item(self, RequestItems: dict[str, list[Any]], **kwargs: Any) -> dict[str, Any]:
        (table, requests), = RequestItems.items()
        self.calls.append(len(requests))
        step = self._script.pop(0) if self._script else self._then
        if step == "throttle":
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}, "BatchWriteItem"
            )
        if step is None:
            return self._client.batch_write_item(RequestItems=RequestItems, **kwargs)
        taken = 0 if step == "none" else step
        if taken:
            self._client.batch_write_item(RequestItems={table: requests[:taken]})
        return {"UnprocessedItems": {table: requests[taken:]} if requests[taken:] else {}}


def test_unprocessed_items_and_throttling_errors_are_retried_until_every_item_is_in(dynamodb_table):
    flaky = FlakyClient(make_client(dynamodb_table), ["throttle", 10, "throttle"])
    stats = write_items((row(f"u{i}") for i in range(60)), dynamodb_table, client=flaky, options=FAST, now=NOW)
    # batch 1: 25 throttled -> 25 sent, 10 taken -> 15 throttled -> 15 taken; batches 2 and 3 pass.
    assert flaky.calls == [25, 25, 15, 15, 25, 10]
    assert (stats.written, stats.requests, stats.throttled, stats.retried) == (60, 6, 2, 25 + 15 + 15)
    assert table_size(dynamodb_table) == 60


def test_throttling_answered_by_the_service_is_retried_by_botocore(dynamodb_table):
    """The first HTTP send of a BatchWriteItem gets a real 400 throttling answer; botocore's retry mode resends."""
    client = make_client(dynamodb_table, retry_mode="standard", max_attempts=3)
    throttled: list[str] = []

    class Body:
        def stream(self, **_: Any) -> Any:
            yield json.dumps({
                "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                "message": "The level of configured provisioned throughput for the table was exceeded.",
            }).encode()

    def send(request: Any, **_: Any) -> AWSResponse | None:
        if not throttled:
            throttled.append(request.url)
            headers = {"x-amzn-RequestId": "test", "Content-Type": "application/x-amz-json-1.0"}
            return AWSResponse(request.url, 400, headers, Body())
        return None

    client.meta.events.register("before-send.dynamodb.BatchWriteItem", send)
    stats = write_items((row(f"u{i}") for i in range(30)), dynamodb_table, client=client, now=NOW)
    assert len(throttled) == 1
    assert (stats.written, stats.requests, stats.sdk_retries, stats.throttled) == (30, 2, 1, 0)
    assert table_size(dynamodb_table) == 30


def test_retry_budget_exhausted_raises_with_the_count_of_items_not_written(dynamodb_table):
    options = WriteOptions(max_retries=3, base_delay_s=0.001, max_delay_s=0.01)
    # Batch 1 (25 items) goes through; from then on nothing is ever processed.
    flaky = FlakyClient(make_client(dynamodb_table), [None], then="none")
    with pytest.raises(OnlineStoreWriteError) as caught:
        write_items((row(f"u{i}") for i in range(60)), dynamodb_table, client=flaky, options=options, now=NOW)
    # Batch 2: 25 items, 1 try + 3 retries, all unprocessed; the last 10 rows were never tried.
    assert flaky.calls == [25, 25, 25, 25, 25]
    assert (caught.value.not_written, caught.value.written) == (35, 25)
    assert str(caught.value).startswith(f"35 items were not written to DynamoDB table '{dynamodb_table.table}' (25 were)")
    assert "the 10 rows after it were not attempted" in str(caught.value)
    assert table_size(dynamodb_table) == 25


def test_endless_throttling_errors_also_exhaust_the_budget_loudly(dynamodb_table):
    options = WriteOptions(max_retries=2, base_delay_s=0.001, max_delay_s=0.01)
    flaky = FlakyClient(make_client(dynamodb_table), [], then="throttle")
    with pytest.raises(OnlineStoreWriteError, match="^7 items were not written .*ProvisionedThroughputExceededException"):
        write_items([row(f"u{i}") for i in range(7)], dynamodb_table, client=flaky, options=options, now=NOW)
    assert flaky.calls == [7, 7, 7]


def test_rate_cap_holds_200_items_at_400_per_second_take_at_least_half_a_second(dynamodb_table):
    capped = dynamodb_table.model_copy(update={"max_items_per_second": 800.0})
    started = time.monotonic()
    stats = write_items((row(f"u{i}") for i in range(200)), capped, writers=2, now=NOW)  # 800 / 2 = 400/s
    elapsed = time.monotonic() - started
    assert stats.written == 200
    assert elapsed >= 0.48, f"200 items at 400/s took {elapsed:.3f} s; the bucket allows no less than 0.5 s"


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


def test_written_item_has_the_ttl_attribute_the_table_expires_on(dynamodb_table):
    write_items([row("u1")], dynamodb_table, now=NOW)
    assert raw_item(dynamodb_table, "u1")[TTL_ATTRIBUTE] == {"N": str(TTL_30_DAYS)}
