"""The training export -> a SageMaker training job (the weekly retrain of the nightly DAG).

Takes <lake>/exports/training/<run id> (default: the newest complete export), uploads it to
s3://<sagemaker.bucket>/<prefix>/exports/<run id>/ unless the lake is in S3 already, stages the
code and starts the job with the `sagemaker` section's image, instance and hyperparameters.
When a job on the same export is still running (a retried task), it follows that job instead
of starting another. With --wait it follows the job, one log line per status change, and exits
1 unless it completes (or when the wait times out: the job then runs on, and a rerun follows
it). Not a Spark job: run it with the venv's python. The last stdout line is the JSON summary
(job name, channels, output path, final status and model artifact).

AWS access comes from the environment or the instance role; AWS_ENDPOINT_URL redirects every
client (the tests point it at a moto server).
"""

from __future__ import annotations

import argparse
from typing import Any

from offer_ai.cli import JobFailed, job_parser, log, run_job
from offer_ai.config import Settings
from offer_ai.errors import UserError
from offer_ai.features.export_reader import RUN_ID, RUN_ID_RULE


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got '{text}'") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got '{text}'")
    return value


def _run_id(text: str) -> str:
    if not RUN_ID.match(text):
        raise argparse.ArgumentTypeError(f"'{text}' is not a run id: {RUN_ID_RULE}")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = job_parser("train_sagemaker", __doc__)
    add = parser.add_argument
    add("--run-id", metavar="ID", type=_run_id, help="train on <lake>/exports/training/ID (default: the newest complete export)")
    add("--hyperparameter", metavar="NAME=VALUE", action="append", default=[], dest="hyperparameters",
        help="override one of sagemaker.hyperparameters for this job, e.g. num_round=300 (repeatable)")
    add("--wait", action="store_true", help="follow the job to its end; exit 1 unless it completes")
    add("--poll-seconds", type=_positive, default=30.0, metavar="S", help="status poll interval with --wait (default 30)")
    add("--timeout-seconds", type=_positive, metavar="S",
        help="give up waiting after S seconds (default: sagemaker.max_runtime_s + 1 h for queueing and upload)")
    return parser


def _hyperparameters(pairs: list[str]) -> dict[str, str]:
    parsed = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise UserError(f"--hyperparameter expects NAME=VALUE, got '{pair}'.")
        parsed[name.strip()] = value.strip()
    return parsed


def main(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    import boto3

    from offer_ai.model import sagemaker_launch as launch

    sm = settings.sagemaker
    hyperparameters = _hyperparameters(args.hyperparameters)
    session = boto3.Session(region_name=sm.region)
    lake_root = settings.lake.root
    if args.run_id:
        export = settings.table_path(f"{launch.EXPORTS}/{args.run_id}")
    else:
        export = launch.latest_export(lake_root, session.client("s3") if launch.is_s3(lake_root) else None)
    log.info("train_sagemaker: export %s", export)

    result = launch.launch_training(settings, export, hyperparameters, wait=False, boto_session=session)
    log.info("train_sagemaker: %s %s (%s on %d x %s)", "following the running job" if result.reattached else "started",
             result.job_name, result.image_uri, sm.instance_count, sm.instance_type)
    summary: dict[str, Any] = {
        "run_id": result.upload.run_id, "export": export, "job_name": result.job_name, "image": result.image_uri,
        "reattached": result.reattached, "hyperparameters": result.hyperparameters, "channels": result.channels,
        "output_path": result.output_path,
        "uploaded_objects": 0 if launch.is_s3(export) else len(result.upload.keys), "status": "InProgress",
    }
    if not args.wait:
        return summary

    timeout = args.timeout_seconds or sm.max_runtime_s + 3600
    try:
        described = launch.wait_for_job(session.client("sagemaker"), result.job_name, poll_s=args.poll_seconds,
                                        timeout_s=timeout, on_change=lambda line: log.info("train_sagemaker: %s", line))
    except launch.WaitTimedOut as exc:
        raise JobFailed(f"{exc} A rerun follows it.", summary) from None
    summary["status"] = described["TrainingJobStatus"]
    summary["model_artifact"] = described.get("ModelArtifacts", {}).get("S3ModelArtifacts")
    if summary["status"] != "Completed":
        reason = described.get("FailureReason") or "no reason given"
        raise JobFailed(f"training job {result.job_name} ended {summary['status']}: {reason}", summary)
    return summary


if __name__ == "__main__":
    run_job(build_parser(), main)
