"""Which users' items the export (re)writes, and the `online_features` snapshot it keeps.

The snapshot is the lake's copy of what DynamoDB holds: one row per user with the values last
written, the `as_of` they were computed for, and `written_at` (when DynamoDB accepted them).
Comparing a fresh `features_as_of` with it gives the diff: new users, users whose values (or
the feature definition, `spec_version`) changed — a prev-week sum changes as days pass even
without new sessions, and the comparison sees that — and users whose item would otherwise
expire (less than half of the current `ttl_days` left: the snapshot records each item's
`expires_at`, so raising the TTL refreshes items written under the old one in time), so a
player who stops playing keeps serving the features they have rather than the defaults. A
snapshot written before a column existed (a feature added to features.yaml) reads that column
as null, so the new value differs and reaches every user on the next run.

Pure DataFrame functions; the job decides when the snapshot may advance (only after DynamoDB
accepted every item).
"""

from __future__ import annotations

import datetime as dt
from functools import reduce

from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DataType, StructField, StructType, TimestampType

#: The commit metadata key that records the as_of of the last successful export.
EXPORT_AS_OF = "export_as_of"
AS_OF_FORMAT = "yyyy-MM-dd'T'HH:mm:ss.SSSSSS'Z'"


#: The commit metadata key that records the ingest time of the newest event the snapshot has seen.
EVENTS_THROUGH = "online_events_through"


def snapshot_schema(current: StructType) -> StructType:
    """`online_features`: the item columns (features and spec_version), then written_at and expires_at."""
    return StructType([*current.fields, StructField("written_at", TimestampType(), False),
                       StructField("expires_at", TimestampType(), True)])


def aligned(previous: DataFrame, schema: StructType) -> DataFrame:
    """The stored snapshot in `schema`: a column it lacks (a new feature, an older snapshot) reads
    as null, a column the definition dropped is left out."""
    have = {f.name: f.dataType.simpleString() for f in previous.schema.fields}  # types without nullability

    def column(name: str, kind: DataType) -> Column:
        if name not in have:
            return F.lit(None).cast(kind).alias(name)
        return F.col(name) if have[name] == kind.simpleString() else F.col(name).cast(kind).alias(name)

    return previous.select(*[column(f.name, f.dataType) for f in schema.fields])


def with_spec_version(features: DataFrame, spec_version: str) -> DataFrame:
    return features.withColumn("spec_version", F.lit(spec_version))


def _differs(name: str) -> Column:
    return ~F.col(f"c.{name}").eqNullSafe(F.col(f"p.{name}"))


def changed(current: DataFrame, previous: DataFrame, compared: list[str], refresh_before: dt.datetime) -> DataFrame:
    """Rows of `current` whose item must be written: unknown to the snapshot, any `compared`
    column different (nulls equal to nulls), or expiring before `refresh_before` (an item whose
    expiry the snapshot does not know is refreshed)."""
    joined = current.alias("c").join(previous.alias("p"), F.col("c.user_id") == F.col("p.user_id"), "left")
    expiring = F.coalesce(F.col("p.expires_at") < F.lit(refresh_before), F.lit(True))
    reasons = [F.col("p.user_id").isNull(), expiring, *map(_differs, compared)]
    return joined.where(reduce(lambda a, b: a | b, reasons)).select("c.*")


def written_rows(written: DataFrame, written_at: dt.datetime, ttl_days: int) -> DataFrame:
    """Snapshot rows of the items just written: when, and when DynamoDB will expire them (no
    later than the items' own expires_at, which the writers stamp a moment after)."""
    return written.withColumn("written_at", F.lit(written_at)).withColumn(
        "expires_at", F.lit(written_at + dt.timedelta(days=ttl_days)))


def mark_in_flight(spark: SparkSession, path: str, to_write: DataFrame) -> None:
    """Forget the expiry of the snapshot rows whose items are about to be written: until the
    write succeeds and the snapshot records it, those items may hold either value, and
    `changed` rewrites an item whose expiry it does not know."""
    (DeltaTable.forPath(spark, path).alias("t")
     .merge(to_write.select("user_id").alias("s"), "t.user_id = s.user_id")
     .whenMatchedUpdate(condition="t.expires_at IS NOT NULL", set={"expires_at": "CAST(NULL AS TIMESTAMP)"})
     .execute())


def next_snapshot(previous: DataFrame, written: DataFrame) -> DataFrame:
    """The snapshot after a successful write: written users get their new row (`written_rows`);
    the others keep exactly the row DynamoDB still holds for them."""
    kept = previous.join(written.select("user_id"), "user_id", "left_anti")
    return written.unionByName(kept.select(*written.columns))


def item_rows(rows: DataFrame, item_columns: list[str]) -> DataFrame:
    """Just the item attributes, with as_of as an ISO-8601 UTC string (a collected timestamp would
    come back naive in the executor's local zone)."""
    return rows.select(
        *[F.date_format(c, AS_OF_FORMAT).alias(c) if c == "as_of" else F.col(c) for c in item_columns]
    )
