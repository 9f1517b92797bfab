"""Raw JSON-lines events -> events (typed, deduplicated), events_quarantine, sessions and users.

Incremental and idempotent: only unseen events are stored, only the sessions and users they
touch are recomputed, and a rerun of the same input changes nothing. The last stdout line is
the JSON summary; lines read = events accepted + duplicates + quarantined (+ held back).
"""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from offer_ai.cli import JobFailed, job_parser, log, run_job, step
from offer_ai.config import Settings
from offer_ai.errors import UserError
from offer_ai.run_lock import run_lock
from offer_ai.ingest import sessionize as ingest
from offer_ai.ingest.feature_spec import load_feature_spec
from offer_ai.ingest.raw_files import list_input_files
from offer_ai.spark import build_spark


def build_parser() -> argparse.ArgumentParser:
    parser = job_parser("sessionize", __doc__)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--input", action="append", metavar="PATH",
                        help="JSON-lines file, folder or glob (.jsonl/.json, optionally .gz); repeatable (default: raw.root)")
    source.add_argument("--run-date", type=dt.date.fromisoformat, metavar="YYYY-MM-DD",
                        help="read only <raw.root>/date=YYYY-MM-DD/ (the nightly run)")
    parser.add_argument("--max-bad-ratio", type=float, metavar="R",
                        help="above this quarantined/read ratio the quarantine is written, the valid lines are held "
                             "back and the job exits 1 (default: sessionize.max_bad_ratio)")
    return parser


def main(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    spec = load_feature_spec(settings.features_path)
    max_bad = settings.sessionize.max_bad_ratio if args.max_bad_ratio is None else args.max_bad_ratio
    if not 0.0 <= max_bad <= 1.0:
        raise UserError(f"--max-bad-ratio must be between 0 and 1 (got {max_bad}).")
    inputs = args.input or [f"{settings.raw.root.rstrip('/')}/date={args.run_date}" if args.run_date else settings.raw.root]
    tables = ingest.Tables(*(settings.table_path(n) for n in ("events", "events_quarantine", "sessions", "users")))

    with step("spark_start"):
        spark = build_spark(settings, app_name="offer-ai sessionize")
    ingest.require_utc(spark)
    with run_lock(spark, settings.lake.root, "ingest", "sessionize"):  # one writer of events, sessions, users
        return _ingest(args, settings, spark, spec, inputs, tables, max_bad)


def _ingest(args: argparse.Namespace, settings: Settings, spark: Any, spec: Any, inputs: list[str],
            tables: ingest.Tables, max_bad: float) -> dict[str, Any]:
    split, gap = settings.sessionize.split, settings.sessionize.gap_minutes
    state = ingest.ingest_state(spark, tables)  # events stored after state.mark still need sessionizing
    if state.spec_checked != spec.check_key:
        with step("check_spec"):
            spec.check(spark)  # a bad features.yaml entry fails here, before any data is read
    with step("list_files"):
        files = list_input_files(spark, inputs)
    mark = state.mark
    ingested_at = ingest.ingest_time(mark)
    log.info("sessionize: %d file(s) from %s into %s (split=%s)", len(files), ", ".join(inputs), settings.lake.root, split)

    with step("parse"):
        batch, counts, unreadable = ingest.read_batch(spark, files, ingested_at, ingest.parse_limits(settings.sessionize))
    summary: dict[str, Any] = {
        "inputs": inputs, "files": len(files), "lake": settings.lake.root, "ingested_at": ingested_at.isoformat(),
        "split": split, "spec_version": spec.version, "max_bad_ratio": max_bad,
        "files_unreadable": len(unreadable), "unreadable_files": [u.path for u in unreadable],
    }
    with step("quarantine"):
        summary["quarantine_rows_added"] = ingest.store_quarantine(
            spark, tables.quarantine, batch, counts, unreadable, ingested_at)
    if counts.bad_ratio > max_bad:  # the quarantine is written; the rest of the batch is held back
        batch.unpersist()
        raise JobFailed(
            f"{counts.quarantined} of {counts.lines_read} lines ({counts.bad_ratio:.2%}) were quarantined, "
            f"above the maximum bad ratio {max_bad:.2%}: the quarantine was written to {tables.quarantine}, "
            f"and the {counts.valid} valid lines were held back (events, sessions and users are unchanged).",
            {**summary, **counts.reconciliation(None)},
        )
    with step("events"):
        added = ingest.store_events(spark, tables.events, batch, counts)
    summary.update(counts.reconciliation(added))
    batch.unpersist()
    log.info("sessionize: %(lines_read)d lines, %(events_accepted)d new events, %(duplicates)d duplicates, "
             "%(quarantined)d quarantined", summary)
    with step("sessions_users"):
        summary.update(ingest.update_sessions_and_users(spark, tables, spec, split, gap, mark, ingested_at, added > 0))
    return summary


if __name__ == "__main__":
    run_job(build_parser(), main)
