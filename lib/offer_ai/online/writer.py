"""Writing feature rows to DynamoDB with BatchWriteItem, from the driver or Spark's executors.

:func:`write_items` is a plain function of an iterator of rows plus picklable settings that
builds its own boto3 client, because it runs on the executors, one call per partition
(:func:`write_partition` is its ``mapPartitions`` shape). Its guarantees (DESIGN §6): at most
25 items per request (moto does not enforce DynamoDB's limit, DESIGN §8, so the code must);
UnprocessedItems re-sent with exponential backoff and full jitter; a write-rate cap per job;
nothing dropped silently — a write that runs out of retries raises
:class:`OnlineStoreWriteError` with the number of items not written; an item DynamoDB refuses
(ValidationException: a key over 2,048 bytes, an item over 400 KB) is set aside, counted and
logged, and the rest of its batch is still written (:func:`_set_aside`).

What boto3/botocore do here: the client's retry mode (``standard``/``adaptive``) re-sends
throttled and 5xx calls with its own backoff, and ``TypeSerializer`` turns items into the wire
format. Why not boto3's ``Table.batch_writer``: it batches by 25 and (with
``overwrite_by_pkeys``) keeps the last row per user as we do, but it re-sends UnprocessedItems
at once on its next flush, with no backoff and no retry limit (on exit it flushes until its
buffer is empty, so a table out of capacity spins there), has no rate cap, and a throttling
error that outlives botocore's retries escapes as a bare ``ClientError`` after the items of
that request have left its buffer, with no count of what was lost. Wrapping it cannot fix
that, since the backoff and the count belong inside its flush; so the loop in
:func:`_send_batch`, the part it would have replaced, stays.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from boto3.dynamodb.types import TypeSerializer
from botocore.exceptions import ClientError

from offer_ai import faults
from offer_ai.config import OnlineStoreSettings
from offer_ai.online.client import RETRYABLE_CODES, call, error_code, make_client, missing_table
from offer_ai.online.items import KEY_ATTRIBUTE, encode_item
from offer_ai.online.pacing import TokenBucket, backoff_delay

MAX_BATCH_WRITE = 25  # DynamoDB's limit; moto does not enforce it (DESIGN §8), so we must
#: Refused items logged one line each per writer; past it one more line says the rest are only counted.
MAX_REFUSAL_LOG_LINES = 20
#: How much of a refused user id a log line shows (the id itself may be the 2,048-byte problem).
LOGGED_ID_CHARS = 64

log = logging.getLogger("offer_ai")


@dataclass(frozen=True)
class WriteOptions:
    """How hard a writer tries. Picklable: it travels to the executors with the settings.

    ``max_retries`` bounds the rounds of re-sending one batch's UnprocessedItems (or a
    throttling error that outlived botocore's own ``max_attempts``); past it the writer raises
    :class:`OnlineStoreWriteError` with the count. Worst case per batch, with the defaults:
    about 20 s of backoff (0.05 s doubling, capped at 5 s, full jitter); each request of a
    refused batch's bisection has a budget of its own.

    ``max_refused`` bounds the items one writer sets aside because DynamoDB refused them
    (ValidationException); past it the writer raises :class:`OnlineStoreWriteError`, since so
    many refusals are the table or the rows as a whole (a key attribute of another type), not
    a stray bad row.
    """

    max_retries: int = 10
    base_delay_s: float = 0.05
    max_delay_s: float = 5.0
    retry_mode: Literal["standard", "adaptive"] = "standard"
    max_attempts: int = 10
    max_refused: int = 100


@dataclass
class WriteStats:
    """What one writer did. ``considered`` = rows read, ``duplicates`` = rows replaced by a later
    row for the same user in the same batch, ``written`` = items DynamoDB accepted,
    ``retried`` = items re-sent (UnprocessedItems or throttling errors), ``requests`` =
    BatchWriteItem calls made, ``throttled`` = calls that failed with a throttling error after
    botocore's retries, ``sdk_retries`` = botocore's own retry attempts, ``max_request_items`` =
    the largest batch sent, ``refused`` = items DynamoDB refused (ValidationException) and the
    writer set aside, never written and not in ``written``; ``refused_user_ids`` = their user
    ids, in full, so the caller can leave them out of what it records as written."""

    considered: int = 0
    duplicates: int = 0
    written: int = 0
    retried: int = 0
    requests: int = 0
    throttled: int = 0
    sdk_retries: int = 0
    max_request_items: int = 0
    seconds: float = 0.0
    refused: int = 0
    refused_user_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __add__(self, other: WriteStats) -> WriteStats:
        """Combine partitions' stats (max for the batch size and the time, which overlap; ids concatenated)."""
        merged = {f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        merged["max_request_items"] = max(self.max_request_items, other.max_request_items)
        merged["seconds"] = max(self.seconds, other.seconds)
        return WriteStats(**merged)


class OnlineStoreWriteError(RuntimeError):
    """Items were not written: raised instead of losing them silently."""

    def __init__(self, not_written: int, written: int, table: str, reason: str) -> None:
        self.not_written = not_written
        self.written = written
        self.table = table
        self.reason = reason
        super().__init__(
            f"{not_written} items were not written to DynamoDB table '{table}' ({written} were): {reason}."
        )

    def __reduce__(self) -> tuple[Any, ...]:  # Spark ships task errors between processes
        return (type(self), (self.not_written, self.written, self.table, self.reason))


class _BatchFailed(Exception):
    """One batch gave up; :func:`write_items` adds the rows it never tried and raises the public error."""

    def __init__(self, unwritten: int, reason: str) -> None:
        super().__init__(reason)
        self.unwritten = unwritten
        self.reason = reason


def _send_batch(
    client: Any,
    store: OnlineStoreSettings,
    items: list[dict[str, Any]],
    bucket: TokenBucket,
    options: WriteOptions,
    stats: WriteStats,
    serialize: Callable[[Any], Any],
) -> None:
    """Write one batch of <= 25 distinct items; re-send what DynamoDB did not take, with backoff."""
    requests = [{"PutRequest": {"Item": {k: serialize(v) for k, v in item.items()}}} for item in items]
    _send_requests(client, store, requests, bucket, options, stats)


def _send_requests(
    client: Any,
    store: OnlineStoreSettings,
    requests: list[dict[str, Any]],
    bucket: TokenBucket,
    options: WriteOptions,
    stats: WriteStats,
) -> None:
    retries = 0
    while requests:
        bucket.take(len(requests))
        stats.requests += 1
        stats.max_request_items = max(stats.max_request_items, len(requests))
        try:
            response = call(store, client.batch_write_item, RequestItems={store.table: requests})
        except ClientError as exc:
            code = error_code(exc)
            if code == "ResourceNotFoundException":
                raise missing_table(store) from None
            if code == "ValidationException":  # DynamoDB refused the request for (at least) one of its items
                _set_aside(client, store, requests, exc, bucket, options, stats)
                return
            if code not in RETRYABLE_CODES:
                raise _BatchFailed(len(requests), f"BatchWriteItem failed with {code or exc}") from exc
            stats.throttled += 1
            unprocessed, reason = requests, f"still {code} after {retries} retries"
        else:
            stats.sdk_retries += int(response.get("ResponseMetadata", {}).get("RetryAttempts", 0))
            unprocessed = response.get("UnprocessedItems", {}).get(store.table, [])
            reason = f"still UnprocessedItems after {retries} retries"
        stats.written += len(requests) - len(unprocessed)
        faults.point("online.mid_write")  # some items of the run written, others not (the fault tests)
        if not unprocessed:
            return
        if retries >= options.max_retries:
            raise _BatchFailed(len(unprocessed), reason + " (the table's write capacity is exhausted)")
        retries += 1
        stats.retried += len(unprocessed)
        time.sleep(backoff_delay(retries, options.base_delay_s, options.max_delay_s))
        requests = unprocessed


def _set_aside(
    client: Any,
    store: OnlineStoreSettings,
    requests: list[dict[str, Any]],
    refusal: ClientError,
    bucket: TokenBucket,
    options: WriteOptions,
    stats: WriteStats,
) -> None:
    """A request DynamoDB refused with a ValidationException: find the item(s) it refuses by bisection.

    DynamoDB refuses the whole BatchWriteItem for one bad item (a key over 2,048 bytes, an item
    over 400 KB) and writes none of it (moto may have written the items before the bad one;
    writing them again is harmless). Each half is sent again as its own request, with its own
    retry budget, down to single items: a single item refused is set aside — counted, its user
    id kept, logged — and every other item is written. Cost: about 2·log2(25) ≈ 10 extra
    requests for one bad item in a batch of 25, 2n − 1 requests when all n are bad.
    """
    if len(requests) == 1:
        _refuse(store, requests[0], refusal, options, stats)
        return
    middle = len(requests) // 2
    halves = (requests[:middle], requests[middle:])
    for number, half in enumerate(halves):
        try:
            _send_requests(client, store, half, bucket, options, stats)
        except _BatchFailed as failed:  # the halves after it were never tried: count them too
            untried = sum(len(h) for h in halves[number + 1 :])
            raise _BatchFailed(failed.unwritten + untried, failed.reason) from failed


def _refuse(
    store: OnlineStoreSettings, request: dict[str, Any], refusal: ClientError, options: WriteOptions, stats: WriteStats
) -> None:
    """Set one refused item aside: count it, keep its user id, log it (a bounded number of lines)."""
    user_id = str(request["PutRequest"]["Item"].get(KEY_ATTRIBUTE, {}).get("S", ""))
    message = str(refusal.response.get("Error", {}).get("Message", "")) or str(refusal)
    stats.refused += 1
    stats.refused_user_ids.append(user_id)
    if stats.refused <= MAX_REFUSAL_LOG_LINES:
        shown = user_id
        if len(user_id) > LOGGED_ID_CHARS:
            shown = f"{user_id[:LOGGED_ID_CHARS]}… ({len(user_id.encode())} bytes)"
        log.warning(
            "DynamoDB table '%s' refused the item of user %r, set aside and not written: %s",
            store.table, shown, message[:300],
        )
    elif stats.refused == MAX_REFUSAL_LOG_LINES + 1:
        log.warning("DynamoDB table '%s' refused more items: they are counted, no longer logged one by one", store.table)
    if stats.refused > options.max_refused:
        raise _BatchFailed(
            0,
            f"DynamoDB refused {stats.refused} items, more than max_refused={options.max_refused} "
            f"(last: {message[:300]}); so many refusals mean the table's key or the rows as a whole are wrong, not one bad row",
        )


def write_items(
    rows: Iterable[Mapping[str, Any] | Any],
    store: OnlineStoreSettings,
    *,
    writers: int = 1,
    options: WriteOptions | None = None,
    client: Any = None,
    now: float | None = None,
) -> WriteStats:
    """Write feature rows as items with BatchWriteItem; return what happened.

    Streams: holds at most one batch in memory. A batch has at most 25 distinct users; a
    user seen twice while a batch fills keeps the later row (last wins). The write rate is
    capped at ``store.max_items_per_second / writers`` — pass the number of writers that run
    at once (e.g. the partition count) so the job as a whole stays under the cap. Raises
    :class:`OnlineStoreWriteError` naming how many rows were not written when the retry
    budget runs out; it never drops an item silently. An item DynamoDB refuses
    (ValidationException) is set aside — in ``stats.refused`` and ``stats.refused_user_ids``,
    logged, not written — and the rest of its batch is written; more than
    ``options.max_refused`` of them raise. Any other error that is neither throttling nor
    refusal (access denied, say) raises :class:`OnlineStoreWriteError` at once; a missing table
    is a UserError. ``client`` is for tests (a wrapper or a client with event hooks); by
    default each call builds its own.
    """
    options = options or WriteOptions()
    own = client is None
    if own:
        client = make_client(store, retry_mode=options.retry_mode, max_attempts=options.max_attempts)
    rate = store.max_items_per_second / max(1, writers)
    bucket = TokenBucket(rate, capacity=max(float(MAX_BATCH_WRITE), rate))
    serialize = TypeSerializer().serialize
    written_at = time.time() if now is None else now
    stats = WriteStats()
    started = time.monotonic()
    pending: dict[str, dict[str, Any]] = {}
    remaining = iter(rows)
    try:
        for row in remaining:
            item = encode_item(row, ttl_days=store.ttl_days, now=written_at)
            stats.considered += 1
            if pending.pop(item[KEY_ATTRIBUTE], None) is not None:
                stats.duplicates += 1
            pending[item[KEY_ATTRIBUTE]] = item
            if len(pending) == MAX_BATCH_WRITE:
                batch = list(pending.values())
                pending.clear()
                _send_batch(client, store, batch, bucket, options, stats, serialize)
        if pending:
            batch = list(pending.values())
            pending.clear()
            _send_batch(client, store, batch, bucket, options, stats, serialize)
    except _BatchFailed as failed:
        unread = sum(1 for _ in remaining)  # so the count covers the whole partition
        reason = failed.reason + (f"; the {unread} rows after it were not attempted" if unread else "")
        if stats.refused:
            reason += f"; the count includes {stats.refused} items DynamoDB refused"
        not_written = failed.unwritten + unread + stats.refused
        raise OnlineStoreWriteError(not_written, stats.written, store.table, reason) from failed
    finally:
        stats.seconds = round(time.monotonic() - started, 6)
        if own:
            client.close()
    return stats


def write_partition(
    rows: Iterable[Any],
    store: OnlineStoreSettings,
    writers: int = 1,
    options: WriteOptions | None = None,
) -> Iterator[dict[str, Any]]:
    """:func:`write_items` shaped for ``mapPartitions``: yields the partition's stats once.

        stats = df.rdd.mapPartitions(functools.partial(write_partition, store=s.online_store,
                                                        writers=df.rdd.getNumPartitions())).collect()

    (``foreachPartition`` works too, but throws the stats away.) The stats dict carries
    ``refused_user_ids``: the users whose items DynamoDB refused, which a caller recording what
    it wrote (the ``online_features`` snapshot) must leave out — ``WriteStats(**p)`` of every
    partition, summed, holds them all.
    """
    yield write_items(rows, store, writers=writers, options=options).as_dict()
