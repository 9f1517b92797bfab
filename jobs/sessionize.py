"""Raw JSON-lines events -> events (typed, deduplicated), events_quarantine, sessions and users.

Incremental and idempotent: only unseen events are stored, only the sessions and users they
touch are recomputed, and a rerun of the same input changes nothing. The last stdout line is
the JSON summary; lines read = events accepted + duplicates + quarantined (+ held back).
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Callable
from typing import Any

from offer_ai.cli import job_parser, log, run_job, step
from offer_ai.config import Settings
from offer_ai.errors import UserError
from offer_ai.features.window_spec import load_window_spec
from offer_ai.ingest import sessionize as ingest
from offer_ai.ingest.feature_spec import load_feature_spec
from offer_ai.ingest.raw_files import list_input_files
from offer_ai.ingest.stream import parse_trigger, run_stream
from offer_ai.online.refresh import refresh_online
from offer_ai.run_lock import LakeBusy, run_lock
from offer_ai.spark import build_spark


def build_parser() -> argparse.ArgumentParser:
    parser = job_parser("sessionize", __doc__)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--input", action="append", metavar="PATH",
                        help="JSON-lines file, folder or glob (.jsonl/.json, optionally .gz); repeatable (default: raw.root)")
    source.add_argument("--run-date", type=dt.date.fromisoformat, metavar="YYYY-MM-DD",
                        help="read only <raw.root>/date=YYYY-MM-DD/ (an explicit backfill of one day)")
    source.add_argument("--trigger", type=parse_trigger, metavar="TRIGGER",
                        help="read raw.root as a stream of files, each exactly once (checkpoint under the lake): "
                             "'available-now' processes every file not processed yet, then stops (the nightly run); "
                             "'processing-time=<interval>' (e.g. processing-time=30s) runs until stopped")
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
    state = ingest.ingest_state(spark, tables)  # events stored after state.mark still need sessionizing
    if state.spec_checked != spec.check_key:
        with step("check_spec"):
            spec.check(spark)  # a bad features.yaml entry fails here, before any data is read
    if args.trigger:
        on_batch = _online_refresh(spark, settings) if settings.sessionize.online_refresh else None
        return {"trigger": args.trigger, **run_stream(spark, settings, spec, tables, max_bad, args.trigger, on_batch)}
    with step("list_files"):
        files = list_input_files(spark, inputs)
    log.info("sessionize: %d file(s) from %s into %s", len(files), ", ".join(inputs), settings.lake.root)
    return {"inputs": inputs, **ingest.ingest_files(spark, settings, spec, tables, files, max_bad, state.mark)}


def _online_refresh(spark: Any, settings: Settings) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """After each micro-batch: the items of the players whose events arrived since the last refresh.
    Skipped while export_features holds the online lock: the next micro-batch covers them."""
    spec = load_window_spec(load_feature_spec(settings.features_path))

    def refresh(_: dict[str, Any]) -> dict[str, Any]:
        try:
            with run_lock(spark, settings.lake.root, "online", "sessionize (stream)"), step("online_refresh"):
                result = refresh_online(spark, settings, spec, touched_only=True)
        except LakeBusy as busy:
            log.warning("sessionize: online refresh skipped for this micro-batch: %s", busy)
            return {"online_skipped": 1}
        return {"items_changed": result["items_changed"], "items_written": result["items_written"],
                "online_scope": result["scope"], "online_as_of": result["as_of"]}

    return refresh


if __name__ == "__main__":
    run_job(build_parser(), main)
