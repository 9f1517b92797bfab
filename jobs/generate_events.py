"""Generate seeded synthetic raw events (and their truth) into <out>/date=YYYY-MM-DD/part-*.jsonl.

Defaults come from the `generator` and `raw` settings; flags override them. The same options give
the same bytes. The last stdout line is the JSON summary with exact messiness counts.
"""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from offer_ai.cli import job_parser, log, run_job
from offer_ai.config import Settings
from offer_ai.errors import UserError
from offer_ai.model.offers import load_offers
from offer_ai.sim import GeneratorOptions, generate


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got '{text}'") from None


def build_parser() -> argparse.ArgumentParser:
    parser = job_parser("generate_events", __doc__)
    gen = parser.add_argument_group("generator (defaults: the generator / raw settings)")
    gen.add_argument("--out", metavar="DIR", help="output folder (default: raw.root)")
    gen.add_argument("--users", type=int, help="number of users")
    gen.add_argument("--days", type=int, help="number of days")
    gen.add_argument("--start-date", type=_date, metavar="YYYY-MM-DD", help="first day (UTC)")
    gen.add_argument("--seed", type=int, help="random seed")
    gen.add_argument("--duplicates", type=float, metavar="F", help="fraction of events sent twice")
    gen.add_argument("--out-of-order", type=float, metavar="F", help="fraction of events written late")
    gen.add_argument("--malformed", type=float, metavar="F", help="junk lines per valid event")
    gen.add_argument("--gzip", action=argparse.BooleanOptionalAction, default=None, help="write .jsonl.gz")
    gen.add_argument("--workers", type=int, default=1, help="processes, each writing its own part files (default 1)")
    return parser


def _pick(value: Any, default: Any) -> Any:
    return default if value is None else value


def main(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    g = settings.generator
    options = GeneratorOptions(
        out=_pick(args.out, settings.raw.root),
        offers=tuple(load_offers(settings.offers_path)),
        users=_pick(args.users, g.users),
        days=_pick(args.days, g.days),
        start_date=_pick(args.start_date, g.start_date),
        seed=_pick(args.seed, g.seed),
        duplicate_fraction=_pick(args.duplicates, g.duplicate_fraction),
        out_of_order_fraction=_pick(args.out_of_order, g.out_of_order_fraction),
        malformed_fraction=_pick(args.malformed, g.malformed_fraction),
        gzip=_pick(args.gzip, g.gzip),
        workers=args.workers,
    )
    if options.out.startswith(("s3://", "s3a://", "gs://", "abfss://")):
        raise UserError(f"--out must be a local folder (got {options.out}); copy the files to object storage after.")
    options.validate()
    log.info("generating %d users x %d days into %s", options.users, options.days, options.out)
    summary = generate(options)
    log.info("wrote %d lines (%d events) in %d files", summary["lines"], summary["events"], summary["files"])
    return summary


if __name__ == "__main__":
    run_job(build_parser(), main)
