"""Calling DynamoDB: one client per process, and what its failures mean.

botocore does the retrying of failed calls: :func:`make_client` configures its ``standard``
(or ``adaptive``) retry mode, which re-sends throttling errors and 5xx answers with
exponential backoff and jitter before any of our code sees them. What is left here is what
botocore cannot know: which surviving error codes still mean "slow down" to the writer's and
reader's own retry budgets (:data:`RETRYABLE_CODES`), and the failures a user fixes (no
endpoint, no credentials, no table) told as sentences instead of tracebacks.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import EndpointConnectionError, NoCredentialsError

from offer_ai.config import OnlineStoreSettings
from offer_ai.errors import UserError

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


def _is_local(endpoint_url: str | None) -> bool:
    return endpoint_url is not None and urlparse(endpoint_url).hostname in {"127.0.0.1", "localhost", "::1"}


def make_client(
    store: OnlineStoreSettings,
    *,
    retry_mode: Literal["standard", "adaptive"] = "standard",
    max_attempts: int = 10,
    connect_timeout_s: float = 5.0,
    read_timeout_s: float = 30.0,
    max_pool_connections: int = 10,
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
            max_pool_connections=max_pool_connections,  # one per thread that calls it at once
        ),
        **kwargs,
    )


def _unreachable(store: OnlineStoreSettings) -> UserError:
    if _is_local(store.endpoint_url):
        return UserError(f"No DynamoDB at {store.endpoint_url}: start it with `make dynamodb-start`.")
    where = store.endpoint_url or f"the AWS endpoint of region {store.region}"
    return UserError(f"Cannot reach DynamoDB at {where}: check online_store.endpoint_url/region and the network.")


def call(store: OnlineStoreSettings, fn: Callable[..., Any], **kwargs: Any) -> Any:
    """One API call, with the two failures a user fixes (no endpoint, no credentials) as sentences."""
    try:
        return fn(**kwargs)
    except EndpointConnectionError:
        raise _unreachable(store) from None
    except NoCredentialsError:
        raise UserError(
            "No AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE, or run with an IAM role."
        ) from None


def error_code(exc: Exception) -> str:
    """The AWS error code of a ClientError ('' for anything else), for deciding what it means."""
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def missing_table(store: OnlineStoreSettings) -> UserError:
    """What ResourceNotFoundException means to a user: the table named in the config is not there."""
    return UserError(
        f"DynamoDB table '{store.table}' does not exist in {store.region}: create it (partition key user_id, string) "
        "or set online_store.create_table=true."
    )
