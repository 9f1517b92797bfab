"""The BatchWriteItem writer against a real moto server (DESIGN §6): <= 25 items a request,
UnprocessedItems and throttling retried with backoff, a rate cap, a loud count when items
are not written, and an item DynamoDB refuses set aside while the rest of its batch is written.
Expected batch sizes, retry counts and not-written counts are worked out by hand in each test."""

from __future__ import annotations

import json
import logging
import pickle
import time
import uuid
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from online_store_support import NOW, TTL_30_DAYS, raw_item, reader_for, record_batch_sizes, row, table_size

from offer_ai.config import OnlineStoreSettings
from offer_ai.online.client import make_client
from offer_ai.online.items import TTL_ATTRIBUTE
from offer_ai.errors import UserError
from offer_ai.online.writer import (
    MAX_REFUSAL_LOG_LINES,
    OnlineStoreWriteError,
    WriteOptions,
    WriteStats,
    write_items,
    write_partition,
)

FAST = WriteOptions(base_delay_s=0.001, max_delay_s=0.01)


def test_write_stats_add_up_across_partitions():
    a = WriteStats(considered=30, duplicates=1, written=28, retried=4, requests=3, max_request_items=25, seconds=1.0,
                   refused=1, refused_user_ids=["x"])
    b = WriteStats(considered=5, written=5, requests=1, throttled=2, sdk_retries=1, max_request_items=5, seconds=2.0)
    assert (a + b).as_dict() == {
        "considered": 35, "duplicates": 1, "written": 33, "retried": 4, "requests": 4,
        "throttled": 2, "sdk_retries": 1, "max_request_items": 25, "seconds": 2.0,
        "refused": 1, "refused_user_ids": ["x"],
    }
    assert sum([a, b, b], WriteStats()).refused_user_ids == ["x"] and a.refused_user_ids == ["x"]  # nothing shared


def test_write_error_survives_pickling_for_spark_tasks():
    error = pickle.loads(pickle.dumps(OnlineStoreWriteError(7, 18, "t", "still throttled")))
    assert (error.not_written, error.written, str(error)) == (
        7, 18, "7 items were not written to DynamoDB table 't' (18 were): still throttled."
    )


def test_write_partition_yields_the_partition_stats_once(dynamodb_table):
    out = list(write_partition(iter([row("a"), row("b")]), dynamodb_table, writers=1))
    assert len(out) == 1 and out[0]["written"] == 2 and out[0]["requests"] == 1
    assert (out[0]["refused"], out[0]["refused_user_ids"]) == (0, [])
    assert WriteStats(**out[0]).written == 2  # the shape the export job sums


# ---------------------------------------------------------------------------- batches


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


def test_written_item_has_the_ttl_attribute_the_table_expires_on(dynamodb_table):
    write_items([row("u1")], dynamodb_table, now=NOW)
    assert raw_item(dynamodb_table, "u1")[TTL_ATTRIBUTE] == {"N": str(TTL_30_DAYS)}


# ------------------------------------------------------- items DynamoDB refuses (#15 item 3)
# What the moto server of these tests answers (checked by hand): a BatchWriteItem holding a key
# over 2,048 bytes fails as a whole with ValidationException "One or more parameter values were
# invalid: Size of hashkey has exceeded the maximum size limit of2048 bytes", one holding an item
# over 400 KB with ValidationException "Item size has exceeded the maximum allowed size" — as
# DynamoDB does (moto may already have stored the items before the bad one; DynamoDB stores none).

LONG_KEY = "k" * 2_049  # one byte over DynamoDB's partition key limit
HUGE_COUNTRY = "c" * 500_000  # the item is over 400 KB


def test_an_item_dynamodb_refuses_is_set_aside_and_the_rest_of_its_batch_is_written(dynamodb_table, caplog):
    rows = [row(f"u{i}") for i in range(30)]
    rows[5] = row(LONG_KEY)  # batch 1 (rows 0-24): the key at index 5
    rows[27] = row("u27", country=HUGE_COUNTRY)  # batch 2 (rows 25-29): the item at index 2
    client = make_client(dynamodb_table)
    sizes = record_batch_sizes(client, dynamodb_table.table)
    with caplog.at_level(logging.WARNING, logger="offer_ai"):
        stats = write_items(rows, dynamodb_table, client=client, options=FAST, now=NOW)
    # Batch 1 bisected: 25 -> 12 (refused) -> 6 (refused) -> 3 ok, 3 (refused) -> 1 ok, 2 (refused)
    # -> 1 ok, 1 refused: set aside; then 6 ok and 13 ok. Batch 2: 5 (refused) -> 2 ok, 3 (refused)
    # -> 1 refused: set aside, 2 ok.
    assert sizes == [25, 12, 6, 3, 3, 1, 2, 1, 1, 6, 13] + [5, 2, 3, 1, 2]
    assert (stats.considered, stats.written, stats.refused, stats.requests) == (30, 28, 2, 16)
    assert stats.refused_user_ids == [LONG_KEY, "u27"]
    assert (stats.retried, stats.throttled) == (0, 0)
    assert table_size(dynamodb_table) == 28
    assert raw_item(dynamodb_table, "u27") is None and raw_item(dynamodb_table, "u26") is not None
    lines = [r.getMessage() for r in caplog.records if "refused the item" in r.getMessage()]
    assert len(lines) == 2
    assert f"user '{'k' * 64}… (2049 bytes)'" in lines[0] and "Size of hashkey has exceeded" in lines[0]
    assert "user 'u27'" in lines[1] and "Item size has exceeded the maximum allowed size" in lines[1]
    assert all(len(line) < 600 for line in lines)  # neither the key nor the value is logged whole


def test_refusals_are_logged_a_bounded_number_of_times_and_all_counted(dynamodb_table, caplog):
    bad = MAX_REFUSAL_LOG_LINES + 10
    rows = [row(f"{i:02d}{LONG_KEY}") for i in range(bad)] + [row("good")]
    with caplog.at_level(logging.WARNING, logger="offer_ai"):
        stats = write_items(rows, dynamodb_table, options=FAST, now=NOW)
    assert (stats.written, stats.refused, len(stats.refused_user_ids)) == (1, bad, bad)
    assert len(caplog.records) == MAX_REFUSAL_LOG_LINES + 1
    assert "no longer logged one by one" in caplog.records[-1].getMessage()
    assert raw_item(dynamodb_table, "good") is not None


def test_a_table_whose_key_has_another_type_fails_the_run_instead_of_refusing_every_item(dynamodb_endpoint):
    """A whole-table ValidationException (key user_id of type N) is not a stray bad row: past max_refused it raises."""
    store = OnlineStoreSettings(table=f"wrong_key_{uuid.uuid4().hex[:8]}", region="us-east-1",
                                endpoint_url=dynamodb_endpoint, max_items_per_second=1_000_000)
    client = make_client(store)
    client.create_table(TableName=store.table, KeySchema=[{"AttributeName": "user_id", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "user_id", "AttributeType": "N"}],
                        BillingMode="PAY_PER_REQUEST")
    options = WriteOptions(max_refused=3, base_delay_s=0.001, max_delay_s=0.01)
    with pytest.raises(OnlineStoreWriteError) as caught:
        write_items([row(f"u{i}") for i in range(10)], store, client=client, options=options, now=NOW)
    # 10 -> 5 -> 2 -> 1 refused, 1 refused; 3 -> 1 refused, 2 -> 1 refused (the 4th: over 3, raise),
    # its sibling 1 and the second 5 never tried: 4 refused + 1 + 5 untried = all 10 not written.
    assert (caught.value.not_written, caught.value.written) == (10, 0)
    assert "more than max_refused=3" in str(caught.value) and "includes 4 items DynamoDB refused" in str(caught.value)
    assert client.scan(TableName=store.table)["Count"] == 0


class ErrorClient(FlakyClient):
    """A FlakyClient whose scripted step ("error", code) raises that AWS error code."""

    def batch_write_item(self, RequestItems: dict[str, list[Any]], **kwargs: Any) -> dict[str, Any]:
        if self._script and isinstance(self._script[0], tuple):
            (table, requests), = RequestItems.items()
            self.calls.append(len(requests))
            _, code = self._script.pop(0)
            raise ClientError({"Error": {"Code": code, "Message": f"{code} says no"}}, "BatchWriteItem")
        return super().batch_write_item(RequestItems=RequestItems, **kwargs)


def test_access_denied_still_fails_the_run_and_is_not_set_aside(dynamodb_table):
    flaky = ErrorClient(make_client(dynamodb_table), [None, ("error", "AccessDeniedException")])
    with pytest.raises(OnlineStoreWriteError, match="^5 items were not written .*AccessDeniedException"):
        write_items([row(f"u{i}") for i in range(30)], dynamodb_table, client=flaky, options=FAST, now=NOW)
    assert flaky.calls == [25, 5]


def test_throttling_during_a_bisection_is_retried_and_a_missing_table_is_still_a_sentence(dynamodb_table):
    # The batch is refused (the long key), its first half is throttled once, then all passes.
    rows = [row(f"u{i}") for i in range(4)] + [row(LONG_KEY)]
    flaky = FlakyClient(make_client(dynamodb_table), [None, "throttle"])
    stats = write_items(rows, dynamodb_table, client=flaky, options=FAST, now=NOW)
    # 5 (refused) -> 2 throttled, 2 ok; 3 (refused) -> 1 ok; 2 (refused) -> 1 ok, 1 refused.
    assert flaky.calls == [5, 2, 2, 3, 1, 2, 1, 1]
    assert (stats.written, stats.refused, stats.throttled, stats.retried) == (4, 1, 1, 2)
    gone = dynamodb_table.model_copy(update={"table": "no_such_table"})
    with pytest.raises(UserError, match="does not exist"):
        write_items([row("u1")], gone, options=FAST, now=NOW)
