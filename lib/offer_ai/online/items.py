"""One mapping between a feature row and a DynamoDB item (DESIGN §3, §6).

The writer, the reader and the export job's diff all go through :func:`encode_item` /
:func:`decode_item`, so they cannot disagree on how a value is stored. The number and type
conversion itself is boto3's (``TypeSerializer``/``TypeDeserializer`` with
``DYNAMODB_CONTEXT``); what is decided here is which values become which item.

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
  only lazily (up to days later);
- ``in_session`` (a map) holds what a decision inside the player's latest session uses: that
  session's ``session_id`` and ``session_start`` and the window features anchored at its start
  (nulls kept, as NULL, so that every one of them is replaced). :func:`for_session` picks the
  values for the session a request names (DESIGN §6 parity).
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import time
from collections.abc import Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from boto3.dynamodb.types import DYNAMODB_CONTEXT

KEY_ATTRIBUTE = "user_id"
TTL_ATTRIBUTE = "expires_at"
#: The map of values for a decision inside the latest session (features.training.IN_SESSION).
IN_SESSION_ATTRIBUTE = "in_session"
_SESSION_KEYS = ("session_id", "session_start")
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

_AS_OF_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


class InvalidFeatureValue(ValueError):
    """A row that cannot become an item (infinite number, missing key, unsupported type)."""


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
    elif isinstance(value, Mapping) or hasattr(value, "asDict"):  # a struct: a map with its nulls kept
        return {k: _encode_value(k, v, user_id) for k, v in _as_mapping(value).items()}
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
    if name in ("as_of", "session_start") and isinstance(value, str):
        return _to_utc(dt.datetime.fromisoformat(value))
    if isinstance(value, Mapping):
        return {k: _decode_value(k, v) for k, v in value.items()}
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


def for_session(features: Mapping[str, Any], session_id: str | None) -> dict[str, Any]:
    """The values a decision in `session_id` uses (DESIGN §6 parity), without the in-session map.

    The item's top-level values are those of a decision in a new session: the player's latest
    session is their last one. When the request names that latest session (the player is still
    in it), its own events must not count as "last session": the window features anchored at its
    start replace them. Identity stays as of the item's as_of either way.
    """
    values = dict(features)
    ongoing = values.pop(IN_SESSION_ATTRIBUTE, None)
    if session_id is not None and isinstance(ongoing, Mapping) and ongoing.get("session_id") == session_id:
        values.update({k: v for k, v in ongoing.items() if k not in _SESSION_KEYS})
    return values


def default_features(user_id: str) -> dict[str, Any]:
    """The features of a user the store does not know: :data:`DEFAULT_FEATURES`."""
    return {KEY_ATTRIBUTE: user_id, **DEFAULT_FEATURES}
