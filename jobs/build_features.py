"""sessions + events -> training_examples (one point-in-time row per anchor) and the SageMaker export.

A night recomputes only the tail of the table: the anchors whose windows or labels can have
changed since the last build (features/refresh.py), MERGEd in; a new feature definition, or a
table without a record of its last build, is rebuilt from full history. The export of the
complete rows goes to <lake>/exports/training/<run id>/. A rerun on the same input leaves the
same table and rewrites the same export folder. The last stdout line is the JSON summary.
"""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import functions as F

from offer_ai import lake
from offer_ai.cli import job_parser, log, run_job, step
from offer_ai.config import Settings
from offer_ai.errors import UserError
from offer_ai.features import refresh
from offer_ai.features.spec_check import check_spec
from offer_ai.features.training import anchor_candidates, latest_event_time, required_session_columns, training_examples
from offer_ai.features.training_export import default_run_id, export_training, write_training_examples
from offer_ai.features.window_spec import load_window_spec
from offer_ai.ingest.feature_spec import load_feature_spec
from offer_ai.ingest.sessionize import WATERMARK
from offer_ai.run_lock import run_lock
from offer_ai.spark import build_spark


def build_parser() -> argparse.ArgumentParser:
    parser = job_parser("build_features", __doc__)
    add = parser.add_argument
    add("--validation-fraction", type=float, metavar="F", help="latest share of the decision-time span for validation")
    add("--validation-cutoff", type=dt.datetime.fromisoformat, metavar="TIME", help="fixed UTC cut-off instead")
    add("--run-id", metavar="ID", help="export folder (default: <latest event time>-<spec version>)")
    add("--full", action="store_true", help="rebuild the table from full history instead of its changed tail")
    return parser


def main(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    spec = load_window_spec(load_feature_spec(settings.features_path))
    training = settings.training
    fraction = training.validation_fraction if args.validation_fraction is None else args.validation_fraction
    cutoff = args.validation_cutoff or training.validation_cutoff
    if not 0.0 < fraction < 1.0:
        raise UserError(f"--validation-fraction must be between 0 and 1, exclusive (got {fraction}).")
    with step("spark_start"):
        spark = build_spark(settings, app_name="offer-ai build_features")
    with run_lock(spark, settings.lake.root, "training", "build_features"):  # one writer of the table and export
        return _build(args, settings, spark, spec, fraction, cutoff)


def _build(args: argparse.Namespace, settings: Settings, spark: Any, spec: Any, fraction: float,
           cutoff: dt.datetime | None) -> dict[str, Any]:
    training = settings.training
    paths = {name: settings.table_path(name) for name in ("sessions", "events", "training_examples")}
    previous = refresh.last_build(spark, paths["training_examples"])
    if previous is None or previous.spec_version != spec.version:
        with step("check_spec"):
            check_spec(spark, spec)  # a bad anchor/window/label entry fails here, before any data is read
    for name in ("sessions", "events"):
        if not lake.exists(spark, paths[name]):
            raise UserError(f"There is no {name} table at {paths[name]}: run sessionize first "
                            f"(./spark-submit.sh jobs/sessionize.py --lake {settings.lake.root}).")
    sessions, events = lake.read(spark, paths["sessions"]), lake.read(spark, paths["events"])
    stale = [c for c in (*spec.features.session_columns, *required_session_columns(spec)) if c not in sessions.columns]
    if stale:
        raise UserError(f"The sessions table lacks column '{stale[0]}', which {settings.features_path} defines: "
                        "rerun sessionize.")

    with step("plan"):
        latest = latest_event_time(events)
        through = lake.latest_metadata(spark, paths["sessions"], WATERMARK)
        events_through = dt.datetime.fromisoformat(through) if through else None
        mode, since = _plan(args.full, previous, spec, events_through, sessions, events)
    latest_iso = latest.isoformat() if latest else None
    record = refresh.metadata(spec, latest, events_through)
    log.info("build_features: %s, labels up to %s", mode if since is None else f"{mode} from {since.anchors.date()}",
             latest_iso)
    merged = lake.MergeCounts()
    with step("training_examples"):
        if mode == "full":
            write_training_examples(spark, paths["training_examples"], training_examples(sessions, events, spec, latest),
                                    record)
        elif mode == "tail" and since is not None:
            rows = training_examples(sessions, events, spec, latest, since).persist(StorageLevel.MEMORY_AND_DISK)
            try:
                with lake.commit_metadata(spark, record):
                    merged = refresh.replace_tail(spark, paths["training_examples"], rows, since)
            finally:
                rows.unpersist()
    with step("export"):
        stored = lake.read(spark, paths["training_examples"])
        totals = stored.agg(F.count(F.lit(1)).alias("kept"), F.count_if("label_complete").alias("complete")).first()
        run_id = args.run_id or default_run_id(latest, spec)
        export = export_training(
            spark, stored, spec, settings.table_path("exports/training"), run_id, fraction, cutoff,
            training.rows_per_file, extra={"source_table": paths["training_examples"], "latest_event_time": latest_iso},
        )
    log.info("build_features: %d anchors, export %s: %s", totals["kept"], export.path, export.rows)
    return {
        "lake": settings.lake.root, "spec_version": spec.version, "latest_event_time": latest_iso,
        "mode": mode, "recomputed_from": since.anchors.isoformat() if since else None,
        "anchors_inserted": merged.inserted, "anchors_updated": merged.updated, "anchors_deleted": merged.deleted,
        "anchors_found": anchor_candidates(sessions, spec).count(), "anchors_kept": totals["kept"],
        "labels_complete": totals["complete"], "labels_incomplete": totals["kept"] - totals["complete"],
        "training_examples": paths["training_examples"], "run_id": run_id, "export": export.path,
        "validation_cutoff": export.manifest["split"]["cutoff"], "export_rows": export.rows, "export_files": export.files,
    }


def _plan(full: bool, previous: refresh.BuildRecord | None, spec: Any, events_through: dt.datetime | None,
          sessions: Any, events: Any) -> tuple[str, refresh.Recompute | None]:
    """'full' (rebuild), 'tail' (recompute from a day on) or 'unchanged' (nothing new since)."""
    if full or previous is None or previous.spec_version != spec.version or events_through is None:
        return "full", None
    changed = refresh.first_change(sessions, events, previous.events_through)
    if changed is None and previous.latest_event_time is not None:
        return "unchanged", None
    since = refresh.recompute_from(sessions, spec, changed, previous.latest_event_time)
    return ("tail", since) if since is not None else ("unchanged", None)


if __name__ == "__main__":
    run_job(build_parser(), main)
