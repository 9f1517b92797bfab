"""Reading users' features back, for the decision step (DESIGN §6).

:class:`OnlineFeatureReader` turns GetItem, BatchGetItem and a small Scan into plain Python
values, with :func:`~offer_ai.online.items.default_features` for users the store does not
know or whose item is past its TTL. botocore's retry mode re-sends throttled calls;
UnprocessedKeys come back in a successful answer, which no botocore or boto3 helper retries
(boto3's resource ``batch_get_item`` is the bare call), so :meth:`OnlineFeatureReader.get_many`
re-asks for them itself, with the same backoff as the writer and a bounded budget that ends in
:class:`OnlineStoreReadError` naming how many users were not read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError

from offer_ai.config import OnlineStoreSettings
from offer_ai.errors import UserError
from offer_ai.online.client import RETRYABLE_CODES, call, error_code, make_client, missing_table
from offer_ai.online.items import KEY_ATTRIBUTE, TTL_ATTRIBUTE, decode_item, default_features, for_session
from offer_ai.online.pacing import backoff_delay

MAX_BATCH_GET = 100


class OnlineStoreReadError(RuntimeError):
    """Keys were still unprocessed when the read retry budget ran out."""

    def __init__(self, not_read: int, table: str, reason: str) -> None:
        self.not_read = not_read
        self.table = table
        self.reason = reason
        super().__init__(f"{not_read} users could not be read from DynamoDB table '{table}': {reason}.")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.not_read, self.table, self.reason))


@dataclass(frozen=True)
class ReadOptions:
    """How hard a reader tries: rounds of re-asking for UnprocessedKeys, their backoff, botocore's attempts."""

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

    def _features(self, user_id: str, raw: Mapping[str, Any] | None, session_id: str | None) -> dict[str, Any]:
        if raw is None or self._expired(raw):
            return default_features(user_id)
        return for_session(decode_item({name: self._deserialize(value) for name, value in raw.items()}), session_id)

    def get(self, user_id: str, session_id: str | None = None) -> dict[str, Any]:
        """GetItem for one user, with the values for a decision in `session_id` (None: a new session)."""
        try:
            response = call(
                self.store,
                self.client.get_item,
                TableName=self.store.table,
                Key={KEY_ATTRIBUTE: {"S": user_id}},
                ConsistentRead=self.options.consistent_read,
            )
        except ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException":
                raise missing_table(self.store) from None
            raise
        return self._features(user_id, response.get("Item"), session_id)

    def get_many(self, user_ids: Iterable[str], session_ids: Mapping[str, str] | None = None) -> dict[str, dict[str, Any]]:
        """BatchGetItem in requests of <= 100 distinct keys; UnprocessedKeys re-sent with backoff.

        Returns {user_id: features} for every distinct id asked for, in the order first asked;
        `session_ids` names the session each decision is made in (absent: a new session).
        """
        wanted = list(dict.fromkeys(user_ids))
        found: dict[str, Mapping[str, Any]] = {}
        for start in range(0, len(wanted), MAX_BATCH_GET):
            keys = [{KEY_ATTRIBUTE: {"S": uid}} for uid in wanted[start : start + MAX_BATCH_GET]]
            retries = 0
            while keys:
                request = {self.store.table: {"Keys": keys, "ConsistentRead": self.options.consistent_read}}
                try:
                    response = call(self.store, self.client.batch_get_item, RequestItems=request)
                except ClientError as exc:
                    code = error_code(exc)
                    if code == "ResourceNotFoundException":
                        raise missing_table(self.store) from None
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
        sessions = session_ids or {}
        return {uid: self._features(uid, found.get(uid), sessions.get(uid)) for uid in wanted}

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
                response = call(self.store, self.client.scan, **request)
            except ClientError as exc:
                if error_code(exc) == "ResourceNotFoundException":
                    raise missing_table(self.store) from None
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
