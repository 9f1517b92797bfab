"""Fixtures for the local DynamoDB: one moto server per test run, a fresh table per test.

A real HTTP endpoint on a free port (never :5055, which a developer's `make dynamodb-start`
may hold), started with the same module the Makefile uses. Fake credentials are set in the
environment for the whole run, so no test can reach a real account with real keys.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

#: Obviously fake; moto ignores them. IMDS off so boto3 never waits on a metadata endpoint.
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@pytest.fixture(scope="session")
def dynamodb_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a moto server on 127.0.0.1 that lives for the whole test run."""
    from offer_ai.online import local_dynamodb

    state_dir = tmp_path_factory.mktemp("local-dynamodb")
    port = local_dynamodb.free_port()
    with pytest.MonkeyPatch.context() as env:
        for name, value in FAKE_AWS_ENV.items():
            env.setenv(name, value)
        env.delenv("AWS_PROFILE", raising=False)
        server = local_dynamodb.start(port, state_dir)
        try:
            yield server.endpoint_url
        finally:
            local_dynamodb.stop(port, state_dir)


@pytest.fixture
def dynamodb_table(dynamodb_endpoint: str) -> "OnlineStoreSettings":  # noqa: F821
    """OnlineStoreSettings for a new, empty features table on the test server (created with its TTL)."""
    from offer_ai.config import OnlineStoreSettings
    from offer_ai.online.table import ensure_table

    store = OnlineStoreSettings(
        table=f"features_{uuid.uuid4().hex[:12]}",
        region="us-east-1",
        endpoint_url=dynamodb_endpoint,
        create_table=True,
        ttl_days=30,
        max_items_per_second=1_000_000,
    )
    assert ensure_table(store) == "created"
    return store
