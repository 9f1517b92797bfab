"""Print each lake table's row count and first rows: a quick look at what the pipeline wrote."""

from __future__ import annotations

import argparse

from offer_ai import lake
from offer_ai.cli import job_parser, log, run_job
from offer_ai.config import Settings
from offer_ai.spark import build_spark

#: DESIGN §3's tables, in pipeline order.
TABLES = ("events", "events_quarantine", "sessions", "users", "training_examples", "online_features")


def main(args: argparse.Namespace, settings: Settings) -> dict:
    spark = build_spark(settings, app_name="offer-ai-show-tables")
    counts: dict[str, int | None] = {}
    for name in args.table or TABLES:
        path = settings.table_path(name)
        if not lake.exists(spark, path):
            log.info("%s: no table at %s", name, path)
            counts[name] = None
            continue
        df = lake.read(spark, path)
        counts[name] = df.count()
        print(f"\n== {name} ({counts[name]} rows) at {path}")
        df.show(args.rows, truncate=args.truncate, vertical=args.vertical)
    return {"lake": settings.lake.root, "rows": counts}


if __name__ == "__main__":
    parser = job_parser("show_tables", __doc__)
    parser.add_argument("--table", action="append", help="table name (repeatable; default: all tables)")
    parser.add_argument("--rows", type=int, default=5, help="rows to show per table (default 5)")
    parser.add_argument("--truncate", type=int, default=20, help="truncate cells to this many characters")
    parser.add_argument("--vertical", action="store_true", help="one field per line")
    run_job(parser, main)
