"""DynamoDB features + the trained model + the ε-greedy policy -> the offer each user would see now.

For a handful of users (--user, repeatable, and/or --sample N taken from the features table
by a bounded Scan): one BatchGetItem for their features, a check that they were built from
the model's features.yaml, every catalogue offer scored, one offer chosen with its
propensity. A user without an item is a cold start and gets the no-history defaults. Plain
Python, no Spark. Prints a table of the decisions, then the JSON summary as the last line.
"""

from __future__ import annotations

import argparse
import secrets
from pathlib import Path
from typing import Any

from offer_ai.cli import job_parser, log, run_job
from offer_ai.config import Settings
from offer_ai.errors import UserError
from offer_ai.model.model import OfferModel
from offer_ai.model.offers import load_offers
from offer_ai.online import decisions
from offer_ai.online.reader import OnlineFeatureReader


def _whole_number(text: str, minimum: int) -> int:
    # isdecimal, not isdigit: '²' is a digit that int() refuses.
    if not text.isdecimal() or int(text) < minimum:
        raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got '{text}'")
    return int(text)


def _positive_int(text: str) -> int:
    return _whole_number(text, 1)


def _seed(text: str) -> int:
    """numpy's default_rng takes only a non-negative seed."""
    return _whole_number(text, 0)


def _user_id(text: str) -> str:
    """DynamoDB refuses an empty key value (ValidationException), so an empty id stops here."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a non-empty user id, got '{text}'")
    return text


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got '{text}'")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = job_parser("decide_offers", __doc__)
    parser.add_argument("--model", metavar="DIR", help="model folder (model.json + metadata.json), e.g. <output_dir>/model of notebook 02 (required)")
    parser.add_argument("--user", metavar="ID", type=_user_id, action="append", default=[], dest="users", help="a user to decide for (repeatable)")
    parser.add_argument("--sample", metavar="N", type=_positive_int, help="also decide for N users taken from the features table")
    parser.add_argument("--epsilon", type=_probability, default=0.1, help="exploration rate of the ε-greedy policy (default: 0.1)")
    parser.add_argument("--seed", type=_seed, help="seed of the policy's draws, a whole number >= 0 (default: a fresh one, reported in the summary)")
    return parser


def main(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    if not args.model:
        raise UserError("--model DIR is required: the model folder notebook 02 writes (<output_dir>/model).")
    if not Path(args.model).is_dir():
        raise UserError(f"There is no model folder at {args.model}: train one with notebooks/02_train_offer_model.ipynb.")
    if not args.users and args.sample is None:
        raise UserError("No users given: pass --user ID (repeatable) and/or --sample N.")
    model = OfferModel.load(args.model)
    offers = load_offers(settings.offers_path)
    if offers != model.offers:
        log.warning("decide_offers: the catalogue %s differs from the one model %s was trained with", settings.offers_path, model.model_version)
    seed = args.seed if args.seed is not None else secrets.randbits(32)
    store = settings.online_store

    with OnlineFeatureReader(store) as reader:
        users = list(args.users)
        if args.sample is not None:
            sampled = reader.sample_user_ids(args.sample)
            if not sampled:
                raise UserError(f"DynamoDB table '{store.table}' holds no user to sample: run export_features first, or pass --user.")
            if len(sampled) < args.sample:
                log.warning("decide_offers: the table holds only %d users, fewer than --sample %d", len(sampled), args.sample)
            users += sampled
        log.info("decide_offers: %d users, model %s, %d offers, epsilon %g, seed %d", len(set(users)), model.model_version, len(offers), args.epsilon, seed)
        chosen = decisions.decide_for_users(reader, model, offers, args.epsilon, seed, users)

    print(decisions.format_table(chosen))
    return {
        "users": len(chosen), "cold_starts": sum(d.cold_start for d in chosen), "explored": sum(d.explored for d in chosen),
        "model_version": model.model_version, "spec_version": model.spec_version, "epsilon": args.epsilon, "seed": seed,
        "offers": len(offers), "table": store.table, "decisions": [d.as_dict() for d in chosen],
    }


if __name__ == "__main__":
    run_job(build_parser(), main)
