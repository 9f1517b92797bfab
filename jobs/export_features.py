"""sessions + events -> each user's features as of AS_OF -> DynamoDB (changed items only) + online_features.

The features come from the same definition as the training rows (features_as_of). Only items
whose values changed since the last successful export are written (plus items due a TTL
refresh); the online_features snapshot advances only after DynamoDB accepted every item, so a
failed run is simply run again. An AS_OF older than the last export's is refused (--force to
override). The last stdout line is the JSON summary.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import functions as F

from offer_ai import lake
from offer_ai.cli import job_parser, log, run_job, step
from offer_ai.config import Settings
from offer_ai.errors import UserError
from offer_ai.features.spec_check import check_spec
from offer_ai.features.training import features_as_of, latest_event_time
from offer_ai.features.window_spec import load_window_spec
from offer_ai.ingest.feature_spec import load_feature_spec
from offer_ai.online import export as online_export
from offer_ai.online import table as online_table
from offer_ai.online import writer as online_writer
from offer_ai.run_lock import run_lock
from offer_ai.spark import build_spark


def _utc_time(text: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO-8601 time, got '{text}'") from None
    return moment.replace(tzinfo=dt.timezone.utc) if moment.tzinfo is None else moment.astimezone(dt.timezone.utc)


def build_parser() -> argparse.ArgumentParser:
    parser = job_parser("export_features", __doc__)
    parser.add_argument("--as-of", type=_utc_time, metavar="TIME", help="features as of this UTC time (default: the latest event time)")
    parser.add_argument("--force", action="store_true", help="allow an as_of older than the last export's")
    return parser


def main(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    spec = load_window_spec(load_feature_spec(settings.features_path))
    with step("spark_start"):
        spark = build_spark(settings, app_name="offer-ai export_features")
    with run_lock(spark, settings.lake.root, "online", "export_features"):  # one writer of the items and snapshot
        return _export(args, settings, spark, spec)


def _export(args: argparse.Namespace, settings: Settings, spark: Any, spec: Any) -> dict[str, Any]:
    store = settings.online_store
    paths = {name: settings.table_path(name) for name in ("sessions", "events", "online_features")}
    last = lake.latest_commit_metadata(spark, paths["online_features"], online_export.EXPORT_AS_OF) or {}
    if last.get("spec_version") != spec.version:  # the last export checked and used this definition
        with step("check_spec"):
            check_spec(spark, spec)
    for name in ("sessions", "events"):
        if not lake.exists(spark, paths[name]):
            raise UserError(f"There is no {name} table at {paths[name]}: run sessionize first.")
    sessions, events = lake.read(spark, paths["sessions"]), lake.read(spark, paths["events"])

    as_of = args.as_of or latest_event_time(events)
    if as_of is None:
        raise UserError(f"The events table at {paths['events']} is empty: there is nothing to export.")
    last_as_of = last.get(online_export.EXPORT_AS_OF)
    if last_as_of is not None and as_of < _utc_time(last_as_of) and not args.force:
        raise UserError(f"as_of {as_of.isoformat()} is older than the last export's ({last_as_of}): "
                        "pass --force to export it anyway.")

    with step("features"):
        played = sessions.where(F.col("session_start") < F.lit(as_of)).select("user_id")  # who has features then
        current = online_export.with_spec_version(
            features_as_of(sessions, events, spec, as_of).join(played, "user_id", "left_semi"), spec.version
        ).persist(StorageLevel.MEMORY_AND_DISK)
        previous = lake.read_or_empty(spark, paths["online_features"], online_export.snapshot_schema(current.schema))
        compared = [c for c in current.columns if c not in ("user_id", "as_of")]
        now = dt.datetime.now(dt.timezone.utc)
        to_write = online_export.changed(current, previous, compared, now - dt.timedelta(days=store.ttl_days / 2))
        to_write = to_write.persist(StorageLevel.MEMORY_AND_DISK)
        considered, changed = current.count(), to_write.count()
    log.info("export_features: %d users as of %s, %d items to write to %s", considered, as_of, changed, store.table)

    with step("dynamodb"):
        table_state = online_table.ensure_table(store) if store.create_table else "exists"
        writers = max(1, to_write.rdd.getNumPartitions())
        write = functools.partial(online_writer.write_partition, store=store, writers=writers)
        parts = online_export.item_rows(to_write, list(current.columns)).rdd.mapPartitions(write).collect()
        stats = functools.reduce(lambda a, b: a + b, (online_writer.WriteStats(**p) for p in parts),
                                 online_writer.WriteStats())

    with step("snapshot"):
        snapshot = online_export.next_snapshot(current, previous, to_write, now)
        with lake.commit_metadata(spark, {online_export.EXPORT_AS_OF: as_of.isoformat(), "spec_version": spec.version}):
            snapshot.write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(paths["online_features"])
    to_write.unpersist()
    current.unpersist()
    return {
        "as_of": as_of.isoformat(), "table": store.table, "table_state": table_state, "spec_version": spec.version,
        "items_considered": considered, "items_changed": changed, "items_written": stats.written,
        "items_retried": stats.retried, "requests": stats.requests, "max_request_items": stats.max_request_items,
        "items_per_second": round(stats.written / stats.seconds, 1) if stats.seconds else None,
        "online_features": paths["online_features"],
    }


if __name__ == "__main__":
    run_job(build_parser(), main)
