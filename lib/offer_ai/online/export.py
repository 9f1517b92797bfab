"""Which users' items the export (re)writes, and the `online_features` snapshot it keeps.

The snapshot is the lake's copy of what DynamoDB holds: one row per user with the values last
written, the `as_of` they were computed for, and `written_at` (when DynamoDB accepted them).
Comparing a fresh `features_as_of` with it gives the diff: new users, users whose values (or
the feature definition, `spec_version`) changed — a prev-week sum changes as days pass even
without new sessions, and the comparison sees that — and users whose item would otherwise
expire (written more than half the TTL ago), so a player who stops playing keeps serving the
features they have rather than the defaults.

Pure DataFrame functions; the job decides when the snapshot may advance (only after DynamoDB
accepted every item).
"""

from __future__ import annotations

import datetime as dt
from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StructField, StructType, TimestampType

#: The commit metadata key that records the as_of of the last successful export.
EXPORT_AS_OF = "export_as_of"
AS_OF_FORMAT = "yyyy-MM-dd'T'HH:mm:ss.SSSSSS'Z'"


def snapshot_schema(current: StructType) -> StructType:
    """`online_features`: the item columns (features and spec_version), then written_at."""
    return StructType([*current.fields, StructField("written_at", TimestampType(), False)])


def with_spec_version(features: DataFrame, spec_version: str) -> DataFrame:
    return features.withColumn("spec_version", F.lit(spec_version))


def _differs(name: str) -> Column:
    return ~F.col(f"c.{name}").eqNullSafe(F.col(f"p.{name}"))


def changed(current: DataFrame, previous: DataFrame, compared: list[str], refresh_before: dt.datetime) -> DataFrame:
    """Rows of `current` whose item must be written: unknown to the snapshot, any `compared`
    column different (nulls equal to nulls), or last written before `refresh_before`."""
    joined = current.alias("c").join(previous.alias("p"), F.col("c.user_id") == F.col("p.user_id"), "left")
    reasons = [F.col("p.user_id").isNull(), F.col("p.written_at") < F.lit(refresh_before), *map(_differs, compared)]
    return joined.where(reduce(lambda a, b: a | b, reasons)).select("c.*")


def next_snapshot(current: DataFrame, previous: DataFrame, written: DataFrame, written_at: dt.datetime) -> DataFrame:
    """The snapshot after a successful write: written users get their new row and `written_at`;
    the others keep exactly the row DynamoDB still holds for them."""
    fresh = written.withColumn("written_at", F.lit(written_at))
    kept = previous.join(written.select("user_id"), "user_id", "left_anti")
    return fresh.unionByName(kept.select(*fresh.columns))


def item_rows(rows: DataFrame, item_columns: list[str]) -> DataFrame:
    """Just the item attributes, with as_of as an ISO-8601 UTC string (a collected timestamp would
    come back naive in the executor's local zone)."""
    return rows.select(
        *[F.date_format(c, AS_OF_FORMAT).alias(c) if c == "as_of" else F.col(c) for c in item_columns]
    )
