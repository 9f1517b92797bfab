"""The features table against a real moto server: created with its key and TTL, or refused
with a sentence (missing table, wrong key, no endpoint)."""

from __future__ import annotations

import pytest
from online_store_support import row

from offer_ai.config import OnlineStoreSettings
from offer_ai.errors import UserError
from offer_ai.online.client import make_client
from offer_ai.online.local_dynamodb import free_port
from offer_ai.online.table import ensure_table
from offer_ai.online.writer import write_items


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
