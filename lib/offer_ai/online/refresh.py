"""The online refresh: players' items computed from the lake, written to DynamoDB, recorded.

One function for the nightly export (`export_features`: every player) and for each micro-batch
of the streaming ingest (`sessionize --trigger`: the players whose events arrived since the
last refresh). Both compute `online_features` (the new-session values and the in-session map,
DESIGN §6), write only the items that differ from the `online_features` snapshot (or are due a
TTL refresh), and record the written rows in the snapshot only after DynamoDB accepted them.
Before writing, the snapshot marks the rows about to change as in flight (their expiry
unknown): if the run then dies half-way, DynamoDB may hold values the snapshot does not, and
the mark makes the next refresh rewrite those items whatever it computes. It records them
with, in the commit, the as_of and the ingest time of the newest event they saw: the next
refresh starts from there, so a refresh that failed or was killed is simply redone by the next
one. The caller holds the lake's "online" lock.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from offer_ai import faults, lake
from offer_ai.cli import log, step
from offer_ai.config import Settings
from offer_ai.errors import UserError
from offer_ai.features.spec_check import check_spec
from offer_ai.features.training import from_micros, online_features
from offer_ai.features.window_spec import WindowSpec
from offer_ai.online import export as online_export
from offer_ai.online import table as online_table
from offer_ai.online import writer as online_writer


def _utc(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text)
    return moment.replace(tzinfo=dt.timezone.utc) if moment.tzinfo is None else moment.astimezone(dt.timezone.utc)


def refresh_online(
    spark: SparkSession, settings: Settings, spec: WindowSpec, *, touched_only: bool,
    as_of: dt.datetime | None = None, force: bool = False,
) -> dict[str, Any]:
    """Refresh the items of every player (`touched_only=False`) or of those with events ingested
    since the last refresh; the summary of what was written."""
    store = settings.online_store
    paths = {name: settings.table_path(name) for name in ("sessions", "events", "online_features")}
    last = lake.latest_commit_metadata(spark, paths["online_features"], online_export.EXPORT_AS_OF) or {}
    if last.get("spec_version") != spec.version:  # the last refresh checked and used this definition
        with step("check_spec"):
            check_spec(spark, spec)
    for name in ("sessions", "events"):
        if not lake.exists(spark, paths[name]):
            raise UserError(f"There is no {name} table at {paths[name]}: run sessionize first.")
    sessions, events = lake.read(spark, paths["sessions"]), lake.read(spark, paths["events"])

    bounds = events.agg(F.unix_micros(F.max("event_time")).alias("t"), F.unix_micros(F.max("ingested_at")).alias("i")).first()
    if bounds is None or bounds["t"] is None:
        raise UserError(f"The events table at {paths['events']} is empty: there is nothing to export.")
    through = from_micros(bounds["i"])
    as_of = as_of or from_micros(bounds["t"])
    last_as_of = last.get(online_export.EXPORT_AS_OF)
    if last_as_of is not None and as_of < _utc(last_as_of) and not force:
        raise UserError(f"as_of {as_of.isoformat()} is older than the last export's ({last_as_of}): "
                        "pass --force to export it anyway.")

    since = last.get(online_export.EVENTS_THROUGH)
    partial = touched_only and since is not None and last.get("spec_version") == spec.version
    users = None
    if partial:
        users = events.where(F.col("ingested_at") > F.lit(_utc(since))).select("user_id").distinct()
    summary: dict[str, Any] = {"as_of": as_of.isoformat(), "table": store.table, "spec_version": spec.version,
                               "scope": "touched" if partial else "all"}

    with step("features"):
        current = online_export.with_spec_version(online_features(sessions, events, spec, as_of, users), spec.version)
        current = current.persist(StorageLevel.MEMORY_AND_DISK)
        schema = online_export.snapshot_schema(current.schema)
        previous = online_export.aligned(lake.read_or_empty(spark, paths["online_features"], schema), schema)
        if users is not None:
            previous = previous.join(users, "user_id", "left_semi")
        # a micro-batch rewrites every player it touched, so that as_of says how fresh the item is;
        # the nightly export rewrites only changed values (a new as_of alone is not worth a write)
        compared = [c for c in current.columns if c != "user_id" and (partial or c != "as_of")]
        now = dt.datetime.now(dt.timezone.utc)
        to_write = online_export.changed(current, previous, compared, now + dt.timedelta(days=store.ttl_days / 2))
        to_write = to_write.persist(StorageLevel.MEMORY_AND_DISK)
        considered, changed = current.count(), to_write.count()
    log.info("online: %d players as of %s, %d items to write to %s", considered, as_of, changed, store.table)

    if changed and lake.exists(spark, paths["online_features"]):
        with step("mark"):  # a write that fails half-way must not leave DynamoDB ahead of the snapshot unseen
            online_export.mark_in_flight(spark, paths["online_features"], to_write)
    with step("dynamodb"):
        table_state = online_table.ensure_table(store) if store.create_table else "exists"
        writers = max(1, to_write.rdd.getNumPartitions())
        write = functools.partial(online_writer.write_partition, store=store, writers=writers)
        parts = online_export.item_rows(to_write, list(current.columns)).rdd.mapPartitions(write).collect()
        stats = functools.reduce(lambda a, b: a + b, (online_writer.WriteStats(**p) for p in parts),
                                 online_writer.WriteStats())
    faults.point("online.after_dynamodb")  # items written, snapshot not: the next refresh writes them again

    with step("snapshot"):
        accepted = to_write
        if stats.refused_user_ids:  # they keep their old row, as DynamoDB keeps their old item; tried again next time
            refused = spark.createDataFrame([(u,) for u in stats.refused_user_ids], "user_id string")
            accepted = to_write.join(F.broadcast(refused), "user_id", "left_anti")
        written = online_export.written_rows(accepted, now, store.ttl_days)
        record = {online_export.EXPORT_AS_OF: as_of.isoformat(), "spec_version": spec.version,
                  online_export.EVENTS_THROUGH: through.isoformat()}
        with lake.commit_metadata(spark, record):
            if partial:  # the touched players' rows; everyone else's stay as they are
                lake.upsert(spark, paths["online_features"], written, ["user_id"])
                if changed == 0:  # still a commit: it records how far this refresh saw
                    written.limit(0).write.format("delta").mode("append").save(paths["online_features"])
            else:
                (online_export.next_snapshot(previous, written).write.format("delta").mode("overwrite")
                 .option("overwriteSchema", "true").save(paths["online_features"]))
    to_write.unpersist()
    current.unpersist()
    return {
        **summary, "table_state": table_state,
        "items_considered": considered, "items_changed": changed, "items_written": stats.written,
        "items_refused": stats.refused,
        "items_retried": stats.retried, "requests": stats.requests, "max_request_items": stats.max_request_items,
        "items_per_second": round(stats.written / stats.seconds, 1) if stats.seconds else None,
        "online_features": paths["online_features"],
    }
