"""A nightly build_features recomputes the tail of training_examples, not all history.

A training row depends on the sessions before its anchor (windows), the events after its
decision (the label), identity events up to its decision, and the latest event time
(label_complete). So when the lake changed only from some moment T on, every row decided
before T − label length (and whose session started before T) is exactly what it was. The
previous build records, in its commit, the spec version, the latest event time it saw and the
sessionize watermark it built on; this module finds T from the events stored since (and the
start of the sessions they touched), recomputes only the anchors from that day on, and MERGEs
them in, deleting anchors that are gone.

A new feature definition, a missing record, or a lake without a sessionize watermark means a
full rebuild (one overwrite), as does any doubt: the partial path must give the same table.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from offer_ai import lake
from offer_ai.features.training import Recompute, anchors, from_micros
from offer_ai.features.window_spec import WindowSpec

#: Commit metadata of a build: what it was computed from.
SPEC_VERSION = "spec_version"
LATEST_EVENT_TIME = "latest_event_time"
EVENTS_THROUGH = "events_ingested_through"
_DAY = dt.timedelta(days=1)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class BuildRecord:
    """What the last successful build recorded."""

    spec_version: str | None
    latest_event_time: dt.datetime | None
    events_through: dt.datetime


def last_build(spark: SparkSession, path: str) -> BuildRecord | None:
    recorded = lake.latest_commit_metadata(spark, path, EVENTS_THROUGH)
    if recorded is None or recorded.get(EVENTS_THROUGH) is None:
        return None
    latest = recorded.get(LATEST_EVENT_TIME)
    return BuildRecord(
        recorded.get(SPEC_VERSION),
        dt.datetime.fromisoformat(latest) if latest else None,
        dt.datetime.fromisoformat(recorded[EVENTS_THROUGH]),
    )


def metadata(spec: WindowSpec, latest: dt.datetime | None, events_through: dt.datetime | None) -> dict[str, Any]:
    return {SPEC_VERSION: spec.version, LATEST_EVENT_TIME: latest.isoformat() if latest else None,
            EVENTS_THROUGH: events_through.isoformat() if events_through else None}


def first_change(sessions: DataFrame, events: DataFrame, since: dt.datetime) -> dt.datetime | None:
    """The earliest moment the lake changed since the build that saw events ingested through
    `since`: the earliest new event, or the start of a session of the same player that ends at
    or after that player's first new event (it holds the event, or took a new identity). None
    when no event was stored since."""
    first = (
        events.where(F.col("ingested_at") > F.lit(since))
        .groupBy("user_id").agg(F.min("event_time").alias("_first"))
    )
    touched = first.join(sessions.select("user_id", "session_start", "session_end"), "user_id", "left").where(
        F.col("session_end").isNull() | (F.col("session_end") >= F.col("_first"))
    )
    row = touched.agg(F.min(F.unix_micros(F.least("_first", F.coalesce("session_start", "_first")))).alias("t")).first()
    return None if row is None or row["t"] is None else from_micros(row["t"])


def recompute_from(
    sessions: DataFrame, spec: WindowSpec, changed: dt.datetime | None, previous_latest: dt.datetime | None
) -> Recompute | None:
    """The anchors to recompute: from the UTC day of (the first change, or the previous latest event
    time, whichever is earlier) minus the label length — the label windows that can see a change,
    and every label that was still incomplete. None when there is no anchor from then on."""
    assert spec.label.length_us is not None
    label = dt.timedelta(microseconds=spec.label.length_us)
    moments = [m for m in (changed, previous_latest) if m is not None]
    if not moments:
        return None
    reach = min(moments) - label
    day = _EPOCH + (reach - _EPOCH) // _DAY * _DAY
    at = F.lit(day)
    scope = anchors(sessions, spec).where((F.col("decision_time") >= at) | (F.col("anchor_session_start") >= at))
    row = scope.agg(F.min(F.unix_micros("anchor_session_start")).alias("s"),
                    F.min(F.unix_micros("decision_time")).alias("d")).first()
    if row is None or row["s"] is None:
        return Recompute(day, day, day)
    return Recompute(day, min(day, from_micros(row["s"])), min(day, from_micros(row["d"])))


def in_scope(since: Recompute, alias: str = "") -> Column:
    """The rows a partial recompute replaces (as a predicate on `training_examples` columns)."""
    at = F.lit(since.anchors)
    prefix = f"{alias}." if alias else ""
    return (F.col(f"{prefix}decision_time") >= at) | (F.col(f"{prefix}anchor_session_start") >= at)


def replace_tail(spark: SparkSession, path: str, rows: DataFrame, since: Recompute) -> lake.MergeCounts:
    """MERGE the recomputed rows in: changed values updated, new anchors inserted, and stored
    anchors of the same span that the recompute no longer yields deleted. Rows outside the
    span are not touched (nor read beyond their file statistics)."""
    keys = ["user_id", "anchor_session_id"]
    stored = lake.read(spark, path).where(in_scope(since)).select(*keys)
    gone = stored.join(rows.select(*keys), keys, "left_anti")
    source = rows.withColumn("_delete", F.lit(False)).unionByName(
        gone.withColumn("_delete", F.lit(True)), allowMissingColumns=True
    )
    return lake.upsert(spark, path, source, keys, "_delete", target_filter=in_scope(since, "t"))

