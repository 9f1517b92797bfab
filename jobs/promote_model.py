"""A trained model -> the one the decision service serves, only when it passes the guard.

The guard (offer_ai.model.promotion) judges the model on the validation split of its training
export: its validation RMSE must beat the no-skill baseline, and the doubly-robust value of
the ε-greedy policy it would serve must be at least the logging policy's. A passing model is
copied to <serving.models_root>/versions/<model version>/ and CURRENT is pointed at it
(atomically); a running service picks it up within serving.model_poll_s. A refused model
exits 1 with the reason in a sentence and the figures in the summary. --version V points
CURRENT back at an earlier promoted version (a rollback). Plain Python, no Spark.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from offer_ai.cli import JobFailed, job_parser, log, run_job
from offer_ai.config import Settings
from offer_ai.errors import UserError
from offer_ai.features.export_reader import RUN_ID, RUN_ID_RULE, read_manifest, read_split
from offer_ai.model import model_registry as registry
from offer_ai.model import promotion, promotion_inputs
from offer_ai.model.model import OfferModel
from offer_ai.model.offers import load_offers


def _run_id(text: str) -> str:
    if not RUN_ID.match(text):
        raise argparse.ArgumentTypeError(f"'{text}' is not a run id: {RUN_ID_RULE}")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = job_parser("promote_model", __doc__)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", metavar="DIR|S3URI", help="a model folder (notebook 02's <output_dir>/model) or a SageMaker s3://…/model.tar.gz")
    source.add_argument("--training-job", metavar="NAME", help="the model of this completed SageMaker training job")
    source.add_argument("--from-sagemaker", action="store_true", help="the model of the newest completed SageMaker job trained on the export")
    source.add_argument("--version", metavar="V", help="point CURRENT back at this installed, earlier promoted version (rollback)")
    parser.add_argument("--run-id", metavar="ID", type=_run_id,
                        help="judge on <lake>/exports/training/ID (default: the export the model was trained on, else the newest)")
    parser.add_argument("--check-only", action="store_true", help="run the guard and report, promote nothing")
    parser.add_argument("--force", action="store_true",
                        help="promote even when the guard refuses (a first deployment, a small demo); the refusal is "
                             "recorded with the promotion. The nightly DAG never forces.")
    return parser


def _rollback(root: str, version: str) -> dict[str, Any]:
    record = registry.record(root, version)
    if record is None or not (record.get("guard") or {}).get("passed"):
        raise UserError(f"Model version {version} has no promotion that passed the guard under {root}: promote it with --model first.")
    entry = registry.point_current(root, version, {"source": "rollback", "guard": record["guard"]})
    return {"promoted": True, "model_version": version, "previous": entry["previous"], "models_root": root,
            "source": "rollback", "guard": record["guard"]}


def _check_catalogue(model: OfferModel, settings: Settings) -> None:
    """The service refuses a model that never saw a catalogue offer type; refuse it here first."""
    known = set(model.encoder.vocabularies["offer_type"])
    unknown = sorted({o.offer_type for o in load_offers(settings.offers_path)} - known)
    if unknown:
        raise UserError(f"Model {model.model_version} was never trained on offer type(s) {', '.join(unknown)} of "
                        f"{settings.offers_path}: the service could not serve it.")


def main(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    root = settings.serving.models_root
    if args.version:
        return _rollback(root, args.version)
    if not (args.model or args.training_job or args.from_sagemaker):
        raise UserError("Name the model to promote: --model DIR|s3://…/model.tar.gz, --training-job NAME, "
                        "--from-sagemaker, or --version V for a rollback.")
    with tempfile.TemporaryDirectory(prefix="offer-ai-promote-") as tmp:
        scratch = Path(tmp)
        export = promotion_inputs.export_location(settings, args.run_id) if (args.run_id or args.from_sagemaker) else None
        folder, source = promotion_inputs.candidate_folder(settings, scratch, model=args.model,
                                                           training_job=args.training_job, export=export)
        model = OfferModel.load(folder)
        if export is None:
            export = promotion_inputs.export_location(settings, model.metrics.get("export_run_id"))
        log.info("promote_model: model %s from %s, judged on %s", model.model_version, source, export)
        _check_catalogue(model, settings)
        export_dir = promotion_inputs.local_export(settings, export, scratch)
        manifest = read_manifest(export_dir)
        if model.spec_version is not None and manifest.get("spec_version") != model.spec_version:
            raise UserError(f"Model {model.model_version} was trained on features {model.spec_version}, the export "
                            f"{export} holds {manifest.get('spec_version')}: judge it on an export of its own features.")
        report = promotion.check(model, read_split(export_dir / "validation", manifest), settings.serving.epsilon)
        summary: dict[str, Any] = {"model_version": model.model_version, "source": source, "export": export,
                                   "models_root": root, "guard": report.as_dict(), "promoted": False,
                                   "current": registry.current_version(root)}
        if not report.passed and not args.force:
            raise JobFailed(promotion.refusal(report), summary)
        if not report.passed:
            log.warning("promote_model: forced past the guard: %s", promotion.refusal(report))
        if args.check_only:
            return summary
        version = registry.install(root, folder)
    forced = not report.passed
    entry = registry.point_current(root, version, {"source": source, "export": export, "guard": report.as_dict(),
                                                   "forced": forced})
    log.info("promote_model: %s now serves (was %s)", version, entry["previous"])
    return {**summary, "promoted": True, "forced": forced, "previous": entry["previous"], "current": version}


if __name__ == "__main__":
    run_job(build_parser(), main)
