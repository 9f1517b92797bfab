"""The online store: each user's latest features as one DynamoDB item (DESIGN §3, §6).

Three parts, each usable without Spark:

- items: :func:`encode_item` / :func:`decode_item` — the one mapping between a feature row and
  a DynamoDB item, so the writer, the reader and the export job's diff agree on it;
- writing: :func:`write_items` (and :func:`write_partition` for ``mapPartitions``) — a plain
  function of an iterator of rows plus picklable settings that builds its own boto3 client,
  because it runs on the executors, one call per partition;
- reading: :class:`OnlineFeatureReader` — what the decision step calls, with defaults for
  users the store does not know.

Value rules (the same on every path):

- numbers become ``Decimal`` through ``repr`` (the shortest string that reads back to the same
  float), so a float survives the round trip bit for bit;
- ``None`` is omitted — DynamoDB has no null worth storing and an absent attribute reads back
  as ``None``;
- NaN (float or Decimal) is treated as null and omitted: it is how pandas and Spark spell a
  missing double. ±infinity is rejected with :class:`InvalidFeatureValue` naming the user and
  the attribute: no feature definition produces it, so it is a bug upstream, and DynamoDB
  cannot store it anyway;
- ``as_of`` is stored as an ISO-8601 UTC string (``2026-01-28T12:00:00.000000Z``: sortable and
  readable in the console) and read back as an aware UTC ``datetime``; naive datetimes are UTC
  (DESIGN §4);
- every item gets ``expires_at`` (epoch seconds, write time + ``online_store.ttl_days``), the
  table's TTL attribute, so users the export stops refreshing eventually disappear; the
  reader treats an item past ``expires_at`` as absent, since DynamoDB deletes expired items
  only lazily (up to days later).
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import urlparse

import boto3
from boto3.dynamodb.types import DYNAMODB_CONTEXT, TypeDeserializer, TypeSerializer
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from offer_ai.config import OnlineStoreSettings
from offer_ai.errors import UserError

KEY_ATTRIBUTE = "user_id"
TTL_ATTRIBUTE = "expires_at"
FEATURE_ATTRIBUTES: tuple[str, ...] = (
    "country",
    "facebook_connected",
    "last_session_games_played",
    "last_session_win_ratio",
    "prev_week_purchase_amount",
)
#: The fixed attributes of every item (DESIGN §3), besides the TTL attribute.
ITEM_ATTRIBUTES: tuple[str, ...] = ("user_id", "as_of", *FEATURE_ATTRIBUTES, "spec_version")
#: Numbers read back as int / float by name; any other number is an int when integral, else a float.
INTEGER_ATTRIBUTES = frozenset({"last_session_games_played"})
FLOAT_ATTRIBUTES = frozenset({"last_session_win_ratio", "prev_week_purchase_amount"})

#: What a user the store does not know gets (and a known user's item is read on top of): the
#: values DESIGN §4 gives a player with no history — no last session (null), nothing bought in
#: the previous week (0.0), Facebook not connected (false when unknown), country unknown.
#: ``as_of`` is ``None`` exactly when the user was not found (or their item has expired).
DEFAULT_FEATURES: Mapping[str, Any] = MappingProxyType(
    {
        "as_of": None,
        "country": None,
        "facebook_connected": False,
        "last_session_games_played": None,
        "last_session_win_ratio": None,
        "prev_week_purchase_amount": 0.0,
        "spec_version": None,
    }
)

MAX_BATCH_WRITE = 25  # DynamoDB's limit; moto does not enforce it (DESIGN §8), so we must
MAX_BATCH_GET = 100
#: Error codes that mean "slow down / try again": botocore's retry modes already retry these;
#: when they still surface, they count against our own retry budget instead of failing at once.
RETRYABLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
    }
)
_AS_OF_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


class InvalidFeatureValue(ValueError):
    """A row that cannot become an item (infinite number, missing key, unsupported type)."""


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


class OnlineStoreReadError(RuntimeError):
    """Keys were still unprocessed when the read retry budget ran out."""

    def __init__(self, not_read: int, table: str, reason: str) -> None:
        self.not_read = not_read
        self.table = table
        self.reason = reason
        super().__init__(f"{not_read} users could not be read from DynamoDB table '{table}': {reason}.")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.not_read, self.table, self.reason))


# --------------------------------------------------------------------------------------------
# Items


def _to_utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


def _encode_as_of(value: Any, user_id: str) -> str:
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            raise InvalidFeatureValue(f"user {user_id!r}: as_of {value!r} is not an ISO-8601 time.") from None
    if not isinstance(value, dt.datetime):
        raise InvalidFeatureValue(f"user {user_id!r}: as_of must be a datetime, got {type(value).__name__}.")
    return _to_utc(value).strftime(_AS_OF_FORMAT)


def _encode_value(name: str, value: Any, user_id: str) -> Any:
    """Python value -> DynamoDB-ready value, or None to omit the attribute."""
    if type(value).__module__ == "numpy":  # numpy scalars from pandas-based callers
        value = value.item()
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            raise InvalidFeatureValue(f"user {user_id!r}: {name} is {value}, which DynamoDB cannot store.")
        number = Decimal(repr(value))
    elif isinstance(value, Decimal):
        if value.is_nan():
            return None
        if value.is_infinite():
            raise InvalidFeatureValue(f"user {user_id!r}: {name} is {value}, which DynamoDB cannot store.")
        number = value
    elif isinstance(value, dt.datetime):
        return _to_utc(value).strftime(_AS_OF_FORMAT)
    else:
        raise InvalidFeatureValue(f"user {user_id!r}: {name} has unsupported type {type(value).__name__}.")
    try:  # DynamoDB numbers: 38 significant digits and a bounded exponent
        return DYNAMODB_CONTEXT.create_decimal(number)
    except decimal.DecimalException:
        raise InvalidFeatureValue(f"user {user_id!r}: {name} = {value!r} is outside DynamoDB's number range.") from None


def _as_mapping(row: Any) -> Mapping[str, Any]:
    if isinstance(row, Mapping):
        return row
    if hasattr(row, "asDict"):  # pyspark.sql.Row
        return row.asDict()
    raise InvalidFeatureValue(f"a row must be a mapping or a Spark Row, got {type(row).__name__}.")


def encode_item(row: Mapping[str, Any] | Any, *, ttl_days: int, now: float | None = None) -> dict[str, Any]:
    """One feature row -> one item (``Decimal`` numbers, no nulls, ``as_of`` string, TTL added).

    Every column of the row becomes an attribute, so a feature added to features.yaml reaches
    the store without touching this code. ``now`` (epoch seconds, default: the clock) anchors
    the TTL.
    """
    values = _as_mapping(row)
    user_id = values.get(KEY_ATTRIBUTE)
    if not isinstance(user_id, str) or not user_id:
        raise InvalidFeatureValue(f"every row needs a non-empty string user_id, got {user_id!r}.")
    spec_version = values.get("spec_version")
    if not isinstance(spec_version, str) or not spec_version:
        raise InvalidFeatureValue(f"user {user_id!r}: spec_version must be a non-empty string, got {spec_version!r}.")
    if values.get("as_of") is None:
        raise InvalidFeatureValue(f"user {user_id!r}: as_of is missing.")
    if TTL_ATTRIBUTE in values:
        raise InvalidFeatureValue(f"user {user_id!r}: '{TTL_ATTRIBUTE}' is reserved for the table's TTL.")
    item: dict[str, Any] = {}
    for name, value in values.items():
        encoded = _encode_as_of(value, user_id) if name == "as_of" else _encode_value(name, value, user_id)
        if encoded is not None:
            item[name] = encoded
    written_at = time.time() if now is None else now
    item[TTL_ATTRIBUTE] = Decimal(int(written_at) + ttl_days * 86_400)
    return item


def _decode_value(name: str, value: Any) -> Any:
    if isinstance(value, Decimal):
        integral = value == value.to_integral_value()
        if name in INTEGER_ATTRIBUTES and integral:
            return int(value)
        if name in FLOAT_ATTRIBUTES or not integral:
            return float(value)
        return int(value)
    if name == "as_of" and isinstance(value, str):
        return _to_utc(dt.datetime.fromisoformat(value))
    return value


def decode_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """An item (as boto3 deserialises it) -> plain Python: int/float, bool, str, datetime.

    Every attribute of :data:`ITEM_ATTRIBUTES` is present; one that was null on write (so
    omitted) reads as ``None``. The TTL attribute is storage detail and is dropped.
    """
    features: dict[str, Any] = {name: None for name in ITEM_ATTRIBUTES}
    for name, value in item.items():
        if name != TTL_ATTRIBUTE:
            features[name] = _decode_value(name, value)
    return features


def default_features(user_id: str) -> dict[str, Any]:
    """The features of a user the store does not know: :data:`DEFAULT_FEATURES`."""
    return {KEY_ATTRIBUTE: user_id, **DEFAULT_FEATURES}


# --------------------------------------------------------------------------------------------
# Client and table


def _is_local(endpoint_url: str | None) -> bool:
    return endpoint_url is not None and urlparse(endpoint_url).hostname in {"127.0.0.1", "localhost", "::1"}


def make_client(
    store: OnlineStoreSettings,
    *,
    retry_mode: Literal["standard", "adaptive"] = "standard",
    max_attempts: int = 10,
    connect_timeout_s: float = 5.0,
    read_timeout_s: float = 30.0,
) -> Any:
    """A DynamoDB client for `store`, with botocore's own retries for throttling and 5xx.

    A fresh boto3 Session each time: sessions are not thread-safe, and each executor process
    needs its own client anyway. Against a local endpoint, and only when the environment names
    no key, dummy credentials are used, since moto ignores them and a real key has no business
    there; elsewhere credentials come from the environment or an IAM role.
    """
    kwargs: dict[str, Any] = {}
    if _is_local(store.endpoint_url) and "AWS_ACCESS_KEY_ID" not in os.environ:
        kwargs = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}
    return boto3.session.Session().client(
        "dynamodb",
        region_name=store.region,
        endpoint_url=store.endpoint_url,
        config=Config(
            retries={"mode": retry_mode, "max_attempts": max_attempts},
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
        ),
        **kwargs,
    )


def _unreachable(store: OnlineStoreSettings) -> UserError:
    if _is_local(store.endpoint_url):
        return UserError(f"No DynamoDB at {store.endpoint_url}: start it with `make dynamodb-start`.")
    where = store.endpoint_url or f"the AWS endpoint of region {store.region}"
    return UserError(f"Cannot reach DynamoDB at {where}: check online_store.endpoint_url/region and the network.")


def _call(store: OnlineStoreSettings, fn: Callable[..., Any], **kwargs: Any) -> Any:
    """One API call, with the two failures a user fixes (no endpoint, no credentials) as sentences."""
    try:
        return fn(**kwargs)
    except EndpointConnectionError:
        raise _unreachable(store) from None
    except NoCredentialsError:
        raise UserError(
            "No AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE, or run with an IAM role."
        ) from None


def _error_code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _missing_table(store: OnlineStoreSettings) -> UserError:
    return UserError(
        f"DynamoDB table '{store.table}' does not exist in {store.region}: create it (partition key user_id, string) "
        "or set online_store.create_table=true."
    )


def create_table(client: Any, table: str) -> None:
    """Create the features table: partition key ``user_id`` (S), on-demand capacity, TTL on ``expires_at``.

    On-demand because the export writes in bursts once a night and reads are spiky; the TTL
    lets users the export stopped refreshing age out instead of being served forever.
    """
    try:
        client.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": KEY_ATTRIBUTE, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": KEY_ATTRIBUTE, "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    except ClientError as exc:
        if _error_code(exc) != "ResourceInUseException":  # another driver created it just now
            raise
    client.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    client.update_time_to_live(
        TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE}
    )


def ensure_table(store: OnlineStoreSettings, client: Any = None) -> Literal["exists", "created"]:
    """Check the table before any executor writes (fail fast, on the driver, with a sentence).

    Creates it only when ``online_store.create_table`` allows (local development); in
    production a missing table or a wrong key is a UserError, never an implicit create.
    """
    own = client is None
    if own:  # few attempts: an endpoint that is down should fail in seconds, not minutes
        client = make_client(store, max_attempts=2, connect_timeout_s=3.0)
    try:
        try:
            table = _call(store, client.describe_table, TableName=store.table)["Table"]
        except ClientError as exc:
            if _error_code(exc) != "ResourceNotFoundException":
                raise
            if not store.create_table:
                raise _missing_table(store) from None
            _call(store, create_table, client=client, table=store.table)
            return "created"
        keys = [(k["AttributeName"], k["KeyType"]) for k in table["KeySchema"]]
        if keys != [(KEY_ATTRIBUTE, "HASH")]:
            raise UserError(
                f"DynamoDB table '{store.table}' has key {keys}, not the partition key user_id alone: point "
                "online_store.table at the features table."
            )
        if store.create_table:
            ttl = client.describe_time_to_live(TableName=store.table)["TimeToLiveDescription"]
            if ttl.get("TimeToLiveStatus") in (None, "DISABLED"):
                client.update_time_to_live(
                    TableName=store.table, TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE}
                )
        return "exists"
    finally:
        if own:
            client.close()


# --------------------------------------------------------------------------------------------
# Writing


@dataclass(frozen=True)
class WriteOptions:
    """How hard a writer tries. Picklable: it travels to the executors with the settings.

    ``max_retries`` bounds the rounds of re-sending one batch's UnprocessedItems (or a
    throttling error that outlived botocore's own ``max_attempts``); past it the writer raises
    :class:`OnlineStoreWriteError` with the count. Worst case per batch, with the defaults:
    about 20 s of backoff (0.05 s doubling, capped at 5 s, full jitter).
    """

    max_retries: int = 10
    base_delay_s: float = 0.05
    max_delay_s: float = 5.0
    retry_mode: Literal["standard", "adaptive"] = "standard"
    max_attempts: int = 10


def backoff_delay(retry: int, base_s: float, cap_s: float, rng: Callable[[], float] = random.random) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**(retry-1))].

    Jitter keeps many executors that were throttled together from retrying together.
    """
    return rng() * min(cap_s, base_s * 2 ** (retry - 1))


class TokenBucket:
    """A simple rate cap: `take(n)` waits until n tokens accrued at `rate` per second.

    Starts empty, so that the items sent by time t never exceed rate x t: the cap holds from
    the first request on, not only on average over a long run.
    """

    def __init__(
        self,
        rate: float,
        capacity: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0 or capacity <= 0:
            raise ValueError("rate and capacity must be positive")
        self.rate, self.capacity = rate, capacity
        self._clock, self._sleep = clock, sleep
        self._tokens = 0.0
        self._last = clock()

    def take(self, n: int) -> None:
        if n > self.capacity:
            raise ValueError(f"cannot take {n} tokens from a bucket of {self.capacity}")
        while True:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens >= n:
                self._tokens -= n
                return
            self._sleep((n - self._tokens) / self.rate)


@dataclass
class WriteStats:
    """What one writer did. ``considered`` = rows read, ``duplicates`` = rows replaced by a later
    row for the same user in the same batch, ``written`` = items DynamoDB accepted,
    ``retried`` = items re-sent (UnprocessedItems or throttling errors), ``requests`` =
    BatchWriteItem calls made, ``throttled`` = calls that failed with a throttling error after
    botocore's retries, ``sdk_retries`` = botocore's own retry attempts, ``max_request_items`` =
    the largest batch sent."""

    considered: int = 0
    duplicates: int = 0
    written: int = 0
    retried: int = 0
    requests: int = 0
    throttled: int = 0
    sdk_retries: int = 0
    max_request_items: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __add__(self, other: WriteStats) -> WriteStats:
        """Combine partitions' stats (max for the batch size and the time, which overlap)."""
        merged = {f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        merged["max_request_items"] = max(self.max_request_items, other.max_request_items)
        merged["seconds"] = max(self.seconds, other.seconds)
        return WriteStats(**merged)


class _BatchFailed(Exception):
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
    retries = 0
    while requests:
        bucket.take(len(requests))
        stats.requests += 1
        stats.max_request_items = max(stats.max_request_items, len(requests))
        try:
            response = _call(store, client.batch_write_item, RequestItems={store.table: requests})
        except ClientError as exc:
            code = _error_code(exc)
            if code == "ResourceNotFoundException":
                raise _missing_table(store) from None
            if code not in RETRYABLE_CODES:
                raise _BatchFailed(len(requests), f"BatchWriteItem failed with {code or exc}") from exc
            stats.throttled += 1
            unprocessed, reason = requests, f"still {code} after {retries} retries"
        else:
            stats.sdk_retries += int(response.get("ResponseMetadata", {}).get("RetryAttempts", 0))
            unprocessed = response.get("UnprocessedItems", {}).get(store.table, [])
            reason = f"still UnprocessedItems after {retries} retries"
        stats.written += len(requests) - len(unprocessed)
        if not unprocessed:
            return
        if retries >= options.max_retries:
            raise _BatchFailed(len(unprocessed), reason + " (the table's write capacity is exhausted)")
        retries += 1
        stats.retried += len(unprocessed)
        time.sleep(backoff_delay(retries, options.base_delay_s, options.max_delay_s))
        requests = unprocessed


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
    budget runs out; it never drops an item silently. ``client`` is for tests (a wrapper or
    a client with event hooks); by default each call builds its own.
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
        raise OnlineStoreWriteError(failed.unwritten + unread, stats.written, store.table, reason) from failed
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

    (``foreachPartition`` works too, but throws the stats away.)
    """
    yield write_items(rows, store, writers=writers, options=options).as_dict()


# --------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class ReadOptions:
    max_retries: int = 8
    base_delay_s: float = 0.05
    max_delay_s: float = 2.0
    max_attempts: int = 5
    consistent_read: bool = False


@dataclass
class OnlineFeatureReader:
    """One user's or many users' features, as plain Python values, for the decision step.

    Users without an item — or whose item is past its TTL — get :func:`default_features`,
    recognisable by ``as_of is None``. Build one per process and reuse it (it holds a client).
    """

    store: OnlineStoreSettings
    client: Any = None
    options: ReadOptions = field(default_factory=ReadOptions)
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        self._own_client = self.client is None
        if self.client is None:
            self.client = make_client(self.store, max_attempts=self.options.max_attempts)
        self._deserialize = TypeDeserializer().deserialize

    def _expired(self, raw: Mapping[str, Any]) -> bool:
        """Past its TTL: DynamoDB deletes such items late (up to days), so a read must skip them itself."""
        expires_at = raw.get(TTL_ATTRIBUTE, {}).get("N")
        return expires_at is not None and Decimal(expires_at) <= Decimal(str(self.clock()))

    def _features(self, user_id: str, raw: Mapping[str, Any] | None) -> dict[str, Any]:
        if raw is None or self._expired(raw):
            return default_features(user_id)
        return decode_item({name: self._deserialize(value) for name, value in raw.items()})

    def get(self, user_id: str) -> dict[str, Any]:
        """GetItem for one user."""
        try:
            response = _call(
                self.store,
                self.client.get_item,
                TableName=self.store.table,
                Key={KEY_ATTRIBUTE: {"S": user_id}},
                ConsistentRead=self.options.consistent_read,
            )
        except ClientError as exc:
            if _error_code(exc) == "ResourceNotFoundException":
                raise _missing_table(self.store) from None
            raise
        return self._features(user_id, response.get("Item"))

    def get_many(self, user_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """BatchGetItem in requests of <= 100 distinct keys; UnprocessedKeys re-sent with backoff.

        Returns {user_id: features} for every distinct id asked for, in the order first asked.
        """
        wanted = list(dict.fromkeys(user_ids))
        found: dict[str, Mapping[str, Any]] = {}
        for start in range(0, len(wanted), MAX_BATCH_GET):
            keys = [{KEY_ATTRIBUTE: {"S": uid}} for uid in wanted[start : start + MAX_BATCH_GET]]
            retries = 0
            while keys:
                request = {self.store.table: {"Keys": keys, "ConsistentRead": self.options.consistent_read}}
                try:
                    response = _call(self.store, self.client.batch_get_item, RequestItems=request)
                except ClientError as exc:
                    code = _error_code(exc)
                    if code == "ResourceNotFoundException":
                        raise _missing_table(self.store) from None
                    if code not in RETRYABLE_CODES:
                        raise
                    unprocessed, reason = keys, f"still {code} after {retries} retries"
                else:
                    for raw in response.get("Responses", {}).get(self.store.table, []):
                        found[raw[KEY_ATTRIBUTE]["S"]] = raw
                    unprocessed = response.get("UnprocessedKeys", {}).get(self.store.table, {}).get("Keys", [])
                    reason = f"still UnprocessedKeys after {retries} retries"
                if not unprocessed:
                    break
                if retries >= self.options.max_retries:
                    not_read = len(unprocessed) + max(0, len(wanted) - start - MAX_BATCH_GET)
                    raise OnlineStoreReadError(not_read, self.store.table, reason)
                retries += 1
                time.sleep(backoff_delay(retries, self.options.base_delay_s, self.options.max_delay_s))
                keys = unprocessed
        return {uid: self._features(uid, found.get(uid)) for uid in wanted}

    def sample_user_ids(self, n: int) -> list[str]:
        """Up to ``n`` distinct user ids present in the table, by a Scan that reads no more than it must.

        For spot checks and demos: each page asks only for the ids still missing (``Limit``)
        and projects only the key and the TTL, and the scan stops at ``n`` or at the end of the
        table, so a large table costs a few items' read capacity, not a full scan. Not a
        uniform sample: Scan returns items in the table's hash order. Items past their TTL are
        skipped (:meth:`get_many` would treat them as unknown), which is the one reason to
        read a further page.
        """
        if n < 1:
            raise UserError(f"The sample size must be at least 1, got {n}.")
        ids: list[str] = []
        start_key: dict[str, Any] | None = None
        while len(ids) < n:
            request: dict[str, Any] = {
                "TableName": self.store.table,
                "Limit": n - len(ids),
                "ProjectionExpression": "#k, #t",
                "ExpressionAttributeNames": {"#k": KEY_ATTRIBUTE, "#t": TTL_ATTRIBUTE},
                "ConsistentRead": self.options.consistent_read,
            }
            if start_key is not None:
                request["ExclusiveStartKey"] = start_key
            try:
                response = _call(self.store, self.client.scan, **request)
            except ClientError as exc:
                if _error_code(exc) == "ResourceNotFoundException":
                    raise _missing_table(self.store) from None
                raise
            for raw in response.get("Items", []):
                if self._expired(raw):
                    continue
                uid = raw[KEY_ATTRIBUTE]["S"]
                if uid not in ids:
                    ids.append(uid)
            start_key = response.get("LastEvaluatedKey")
            if start_key is None:
                break
        return ids

    def close(self) -> None:
        if self._own_client:
            self.client.close()

    def __enter__(self) -> OnlineFeatureReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def get_features(store: OnlineStoreSettings, user_id: str) -> dict[str, Any]:
    """One-off GetItem (a reader for one call); prefer :class:`OnlineFeatureReader` in a loop."""
    with OnlineFeatureReader(store) as reader:
        return reader.get(user_id)


def get_features_many(store: OnlineStoreSettings, user_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """One-off BatchGetItem for many users; see :meth:`OnlineFeatureReader.get_many`."""
    with OnlineFeatureReader(store) as reader:
        return reader.get_many(user_ids)
