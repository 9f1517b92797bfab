"""What a promotion judges, brought to a local folder: the candidate model and the export it is judged on.

A candidate is a model folder (notebook 02's ``<output_dir>/model``), a SageMaker artifact
(``s3://…/model.tar.gz``), a training job by name, or the newest completed training job on
an export — what the nightly DAG promotes after ``train_sagemaker``, found by the export's
train channel exactly as a retried launch finds its running job. The export is
``<lake>/exports/training/<run id>``, local or in S3 (only its manifest and validation split
are fetched).
"""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any

from offer_ai.config import Settings
from offer_ai.errors import UserError
from offer_ai.features.export_reader import MANIFEST, is_part_file
from offer_ai.model import sagemaker_launch as launch


def _s3_client(settings: Settings) -> Any:
    import boto3

    return boto3.Session(region_name=settings.sagemaker.region).client("s3")


def export_location(settings: Settings, run_id: str | None) -> str:
    """``<lake>/exports/training/<run id>``; without a run id the newest finished export."""
    if run_id:
        return settings.table_path(f"{launch.EXPORTS}/{run_id}")
    lake_root = settings.lake.root
    return launch.latest_export(lake_root, _s3_client(settings) if launch.is_s3(lake_root) else None)


def local_export(settings: Settings, export: str, scratch: Path) -> Path:
    """The export as a local folder: itself, or its manifest and validation split fetched from S3."""
    if not launch.is_s3(export):
        path = launch.local_path(export)
        if not (path / MANIFEST).is_file():
            raise UserError(f"There is no finished training export at {path}: run jobs/build_features.py first.")
        return path
    s3 = _s3_client(settings)
    bucket, key = launch.split_s3_uri(launch.as_s3_uri(export).rstrip("/"))
    dest = scratch / "export"
    prefix = f"{key}/validation/parquet/"
    parts = [o["Key"] for o in launch._objects(s3, bucket, prefix) if is_part_file(o["Key"].rsplit("/", 1)[-1], "parquet")]
    if not parts:
        raise UserError(f"{launch.s3_uri(bucket, prefix)} holds no Parquet part files: the export is missing or unfinished.")
    (dest / "validation" / "parquet").mkdir(parents=True)
    for part in parts:
        s3.download_file(bucket, part, str(dest / "validation" / "parquet" / part.rsplit("/", 1)[-1]))
    s3.download_file(bucket, f"{key}/{MANIFEST}", str(dest / MANIFEST))
    return dest


def train_channel(settings: Settings, export: str) -> str:
    """The S3 URI a training job on ``export`` reads its train split from (as launch_training sets it)."""
    sm = settings.sagemaker
    if launch.is_s3(export):
        base_uri = launch.as_s3_uri(export).rstrip("/") + "/"
    else:
        if not sm.bucket:
            raise UserError("sagemaker.bucket is not set: there is no S3 upload of a local export to look for.")
        _, base = launch.upload_base(launch.local_path(export), sm.prefix)
        base_uri = launch.s3_uri(sm.bucket, base + "/")
    return f"{base_uri}train/{sm.data_format}/"


def completed_job(client: Any, base_job_name: str, train_uri: str) -> str:
    """The newest Completed training job named ``<base_job_name>-…`` that trained on ``train_uri``."""
    request: dict[str, Any] = {"NameContains": base_job_name, "StatusEquals": "Completed",
                               "SortBy": "CreationTime", "SortOrder": "Descending"}
    while True:
        page = client.list_training_jobs(**request)
        for summary in page.get("TrainingJobSummaries", []):
            described = client.describe_training_job(TrainingJobName=summary["TrainingJobName"])
            if launch._channel_uris(described).get("train") == train_uri:
                return str(described["TrainingJobName"])
        if not page.get("NextToken"):
            raise UserError(f"No completed SageMaker training job named {base_job_name}-… trained on {train_uri}: "
                            "run jobs/train_sagemaker.py --wait for this export first.")
        request["NextToken"] = page["NextToken"]


def fetch_archive(settings: Settings, uri: str, dest: Path) -> Path:
    """A SageMaker ``model.tar.gz`` at ``uri`` unpacked into ``dest`` (a model folder)."""
    bucket, key = launch.split_s3_uri(launch.as_s3_uri(uri))
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest.parent / "model.tar.gz"
    try:
        _s3_client(settings).download_file(bucket, key, str(archive))
    except Exception as exc:  # botocore's ClientError and friends: say which object, in a sentence
        raise UserError(f"Cannot download the model artifact {uri}: {exc}") from None
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")  # no absolute paths, links out or devices
    return dest


def candidate_folder(settings: Settings, scratch: Path, *, model: str | None = None, training_job: str | None = None,
                     export: str | None = None) -> tuple[Path, str]:
    """(local model folder, where it came from) for a folder, an S3 artifact, a job, or the export's newest job."""
    if model is not None:
        if launch.is_s3(model):
            return fetch_archive(settings, model, scratch / "model"), model
        path = Path(model)
        if not path.is_dir():
            raise UserError(f"There is no model folder at {model}: pass the <output_dir>/model of notebook 02 "
                            "or an s3://…/model.tar.gz.")
        return path, str(path)
    import boto3

    session = boto3.Session(region_name=settings.sagemaker.region)
    if training_job is None:
        if export is None:
            raise UserError("Name the model: --model, --training-job or --from-sagemaker with an export.")
        training_job = completed_job(session.client("sagemaker"), settings.sagemaker.base_job_name,
                                     train_channel(settings, export))
    return launch.download_model(training_job, scratch / "model", boto_session=session), f"sagemaker:{training_job}"
