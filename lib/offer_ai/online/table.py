"""The features table itself: its creation, its key check and its TTL (DESIGN §6).

Run once on the driver before any executor writes, so a missing or wrong table fails fast with
a sentence rather than as a task error on every partition. Waiting for a new table uses
botocore's ``table_exists`` waiter rather than a polling loop of our own.
"""

from __future__ import annotations

from typing import Any, Literal

from botocore.exceptions import ClientError

from offer_ai.config import OnlineStoreSettings
from offer_ai.errors import UserError
from offer_ai.online.client import call, error_code, make_client, missing_table
from offer_ai.online.items import KEY_ATTRIBUTE, TTL_ATTRIBUTE


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
        if error_code(exc) != "ResourceInUseException":  # another driver created it just now
            raise
    client.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    _enable_ttl(client, table)


def _enable_ttl(client: Any, table: str) -> None:
    """Expire items on ``expires_at``: users the export stops refreshing age out instead of being served forever."""
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
            table = call(store, client.describe_table, TableName=store.table)["Table"]
        except ClientError as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise
            if not store.create_table:
                raise missing_table(store) from None
            call(store, create_table, client=client, table=store.table)
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
                _enable_ttl(client, store.table)
        return "exists"
    finally:
        if own:
            client.close()
