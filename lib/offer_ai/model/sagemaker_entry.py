"""Train the offer model from a training export: one script for a laptop and for SageMaker.

It follows SageMaker's script-mode contract (DESIGN §7), so the same file runs in the managed
XGBoost container and in the notebook:

* data: ``--train`` / ``--validation`` (default ``$SM_CHANNEL_TRAIN`` / ``$SM_CHANNEL_VALIDATION``),
  each a folder of the export's Parquet part files (or CSV part files, or an export split
  folder holding ``parquet/`` and ``csv/``); the export's ``manifest.json`` (column names and
  the categorical code tables) from ``--manifest``, ``$SM_CHANNEL_MANIFEST``, or found next to
  the data;
* hyperparameters as command-line flags (``--objective reg:tweedie --num_round 200 ...``; the
  SageMaker driver passes each hyperparameter as ``--<name> <value>``; dashes and underscores
  are both accepted);
* the artifact into ``--model-dir`` (default ``$SM_MODEL_DIR``): ``model.json`` (the booster)
  and ``metadata.json`` (features, encodings, offers catalogue, spec_version, metrics), which
  ``offer_ai.model.model.OfferModel.load`` reads back. SageMaker tars that folder to ``model.tar.gz``.

Locally::

    python -m offer_ai.model.sagemaker_entry --train <export>/train --validation <export>/validation \\
        --model-dir out/model --objective reg:tweedie --num_round 200

In a SageMaker job it runs as ``train_offer_model.py`` from a source folder built by
``offer_ai.model.sagemaker_launch.build_source_dir`` (this package + that shim + offers.yaml).
Imports stay light (pandas, numpy, xgboost, PyYAML — all in the SageMaker XGBoost image): no
Spark, no pydantic, no boto3.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from offer_ai.errors import UserError

#: Hyperparameters forwarded to XGBoost's params (flag name -> XGBoost name).
BOOSTER_PARAMS = {
    "max_depth": "max_depth",
    "eta": "eta",
    "min_child_weight": "min_child_weight",
    "subsample": "subsample",
    "colsample_bytree": "colsample_bytree",
    "reg_lambda": "lambda",
    "reg_alpha": "alpha",
    "gamma": "gamma",
    "tweedie_variance_power": "tweedie_variance_power",
    "nthread": "nthread",
}
OFFERS_FILE = "offers.yaml"


def _flag(parser: argparse.ArgumentParser, name: str, *aliases: str, **kwargs: Any) -> None:
    """One option under both spellings: SageMaker hyperparameters are usually snake_case."""
    spellings = {f"--{name}", f"--{name.replace('_', '-')}", *(f"--{a}" for a in aliases)}
    parser.add_argument(*sorted(spellings), dest=name, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="python -m offer_ai.model.sagemaker_entry",
        description="Train the XGBoost offer model from a training export (SageMaker script mode).",
    )
    data = parser.add_argument_group("data (SageMaker script-mode environment by default)")
    _flag(data, "train", default=env("SM_CHANNEL_TRAIN"), help="train split folder (default $SM_CHANNEL_TRAIN)")
    _flag(data, "validation", default=env("SM_CHANNEL_VALIDATION"),
          help="validation split folder (default $SM_CHANNEL_VALIDATION)")
    _flag(data, "manifest", default=env("SM_CHANNEL_MANIFEST"),
          help="the export's manifest.json or its folder (default $SM_CHANNEL_MANIFEST, else found beside the data)")
    _flag(data, "model_dir", default=env("SM_MODEL_DIR"), help="artifact folder (default $SM_MODEL_DIR)")
    _flag(data, "offers", default=None, help=f"offer catalogue YAML stored with the model (default: {OFFERS_FILE} "
          "beside this package's source folder or the repository's conf/, else the offers seen in training)")
    _flag(data, "data_format", "format", default="auto", choices=("auto", "parquet", "csv"))

    hp = parser.add_argument_group("hyperparameters")
    _flag(hp, "objective", default="reg:tweedie", choices=("reg:tweedie", "reg:squarederror"))
    _flag(hp, "num_round", "num_boost_round", type=int, default=200)
    _flag(hp, "max_depth", type=int, default=None)
    _flag(hp, "eta", "learning_rate", type=float, default=None)
    _flag(hp, "min_child_weight", type=float, default=None)
    _flag(hp, "subsample", type=float, default=None)
    _flag(hp, "colsample_bytree", type=float, default=None)
    _flag(hp, "reg_lambda", "lambda", type=float, default=None)
    _flag(hp, "reg_alpha", "alpha", type=float, default=None)
    _flag(hp, "gamma", type=float, default=None)
    _flag(hp, "tweedie_variance_power", type=float, default=None)
    _flag(hp, "early_stopping_rounds", type=int, default=None)
    _flag(hp, "min_count", type=int, default=1, help="rarer categories share the unknown bucket")
    _flag(hp, "seed", type=int, default=0)
    _flag(hp, "nthread", type=int, default=None)
    return parser


def _default_offers() -> Path | None:
    package = Path(__file__).resolve().parents[1]  # offer_ai/ (this module is offer_ai/model/)
    # beside the package in a job's source folder; the repository's conf/ in a checkout
    for candidate in (package.parent / OFFERS_FILE, package.parents[1] / "conf" / OFFERS_FILE):
        if candidate.is_file():
            return candidate
    return None


def booster_params(args: argparse.Namespace) -> dict[str, Any]:
    """XGBoost params from the flags that were given; the rest keep offer_ai.model.model's defaults."""
    return {xgb_name: getattr(args, flag) for flag, xgb_name in BOOSTER_PARAMS.items() if getattr(args, flag) is not None}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train, save the artifact, return a JSON-able summary (also printed as the last line)."""
    # Imported here so that `--help` works without xgboost, and errors above name a flag.
    from offer_ai.features.export_reader import find_manifest, read_manifest, read_split
    from offer_ai.model.model import train

    for name in ("train", "validation", "model_dir"):
        if not getattr(args, name):
            flag = "--" + name.replace("_", "-")
            env = "SM_MODEL_DIR" if name == "model_dir" else f"SM_CHANNEL_{name.upper()}"
            raise UserError(f"{flag} is required (or set ${env}).")
    started = time.monotonic()
    manifest = read_manifest(find_manifest(args.manifest, args.train, args.validation))
    rows_train = read_split(args.train, manifest, args.data_format)
    rows_valid = read_split(args.validation, manifest, args.data_format)

    offers = None
    offers_path = Path(args.offers) if args.offers else _default_offers()
    if offers_path is not None:
        from offer_ai.model.offers import load_offers

        offers = load_offers(offers_path)
    model = train(
        rows_train,
        rows_valid,
        objective=args.objective,
        params=booster_params(args),
        offers=offers,
        spec_version=manifest.get("spec_version"),
        num_boost_round=args.num_round,
        early_stopping_rounds=args.early_stopping_rounds,
        seed=args.seed,
        min_count=args.min_count,
    )
    model.metrics["export_run_id"] = manifest.get("run_id")
    model.save(args.model_dir)
    valid = model.metrics["validation"]
    # One `name=value` line per metric: what a SageMaker MetricDefinition regex picks up.
    for key in ("rmse", "baseline_rmse", "mae", "skill"):
        print(f"validation-{key}={valid[key]:.6f}")
    return {
        "model_dir": str(args.model_dir),
        "model_version": model.model_version,
        "objective": model.objective,
        "spec_version": model.spec_version,
        "rows": {"train": len(rows_train), "validation": len(rows_valid)},
        "offers": len(model.offers),
        "validation": valid,
        "code": str(Path(__file__).resolve().parents[1]),  # which copy of offer_ai ran (the shipped one, in a job)
        "seconds": round(time.monotonic() - started, 3),
    }


def local_argv(
    export_dir: str | Path,
    model_dir: str | Path,
    hyperparameters: dict[str, Any] | None = None,
    offers_file: str | Path | None = None,
    data_format: str = "auto",
) -> list[str]:
    """The command line for a local run on one export folder, hyperparameters as SageMaker passes them."""
    export_dir = Path(export_dir)
    argv = ["--train", str(export_dir / "train"), "--validation", str(export_dir / "validation"),
            "--manifest", str(export_dir), "--model-dir", str(model_dir), "--data-format", data_format]
    if offers_file is not None:
        argv += ["--offers", str(offers_file)]
    for name, value in (hyperparameters or {}).items():
        if value is not None:
            argv += [f"--{name}", str(value)]
    return argv


def main(argv: list[str] | None = None) -> int:
    """CLI: 0 on success (the summary JSON is the last stdout line), 2 on a user error."""
    args = build_parser().parse_args(argv)
    try:
        summary = run(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
