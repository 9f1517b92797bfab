"""What the online store tests share: a hand-written feature row, a fixed write time, and
views of what the server holds that do not go through the reader under test."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from offer_ai.config import OnlineStoreSettings
from offer_ai.online.client import make_client
from offer_ai.online.reader import OnlineFeatureReader

UTC = dt.timezone.utc
AS_OF = dt.datetime(2026, 1, 28, 12, 0, tzinfo=UTC)
NOW = 1_800_000_000.0  # 2027-01-15: fixed write time, so TTLs are hand-computable
TTL_30_DAYS = 1_800_000_000 + 30 * 86_400  # = 1_802_592_000


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


def record_batch_sizes(client: Any, table: str, operation: str = "BatchWriteItem") -> list[int]:
    """Sizes of the requests botocore actually serialised, from the before-call event."""
    sizes: list[int] = []

    def hook(params: dict[str, Any], **_: Any) -> None:
        body = json.loads(params["body"])["RequestItems"][table]
        sizes.append(len(body) if operation == "BatchWriteItem" else len(body["Keys"]))

    client.meta.events.register(f"before-call.dynamodb.{operation}", hook)
    return sizes
