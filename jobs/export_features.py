"""sessions + events -> each user's features as of AS_OF -> DynamoDB (changed items only) + online_features.

The features come from the same definition as the training rows (features.training.online_features:
the values for a decision in a new session, and for one inside the player's latest session).
The work is offer_ai.online.refresh's, which the streaming ingest runs for the players each
micro-batch touches. Only items whose values changed since the last successful export are
written (plus items due a TTL refresh); the online_features snapshot advances only after DynamoDB accepted every item, so a
failed run is simply run again. An AS_OF older than the last export's is refused (--force to
override). The last stdout line is the JSON summary.
"""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from offer_ai.cli import job_parser, run_job, step
from offer_ai.config import Settings
from offer_ai.features.window_spec import load_window_spec
from offer_ai.ingest.feature_spec import load_feature_spec
from offer_ai.online.refresh import refresh_online
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
        return refresh_online(spark, settings, spec, touched_only=False, as_of=args.as_of, force=args.force)


if __name__ == "__main__":
    run_job(build_parser(), main)
