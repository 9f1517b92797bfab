"""Typed configuration: one YAML file (conf/local.yaml by default) plus dotted overrides.

Every job reads its settings through :func:`load_settings`, so a typo in a key or a value of
the wrong type stops the job at start-up with a sentence naming the key, before any data is
read. Relative data paths (lake, raw events) are relative to the working directory, like any
spark-submit argument; relative catalogue files (offers, features) are relative to the folder
of the config file that names them, so a config folder can carry its own catalogues.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from offer_ai.errors import UserError

CONFIG_ENV_VAR = "OFFER_AI_CONFIG"
CONF_DIR_ENV_VAR = "OFFER_AI_CONF_DIR"


def _conf_dir() -> Path:
    """The repository's conf/ folder.

    An editable install finds it beside lib/; under ./spark-submit.sh the package is imported
    from a zip, so the script names the folder in $OFFER_AI_CONF_DIR; else ./conf.
    """
    if CONF_DIR_ENV_VAR in os.environ:
        return Path(os.environ[CONF_DIR_ENV_VAR])
    beside_lib = Path(__file__).resolve().parents[2] / "conf"
    return beside_lib if beside_lib.is_dir() else Path.cwd() / "conf"


CONF_DIR = _conf_dir()
DEFAULT_CONFIG = CONF_DIR / "local.yaml"


class _Section(BaseModel):
    """Unknown keys are errors: a misspelt key must not silently fall back to a default."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SparkSettings(_Section):
    master: str = "local[2]"
    app_name: str = "offer-ai"
    shuffle_partitions: int = Field(4, ge=1)
    #: Any further Spark properties, passed through unchanged.
    conf: dict[str, str] = Field(default_factory=dict)


class LakeSettings(_Section):
    root: str = "./lake"


class RawSettings(_Section):
    #: Folder of raw JSON-lines events, laid out as <root>/date=YYYY-MM-DD/part-*.jsonl[.gz].
    root: str = "./lake/raw"


class StorageSettings(_Section):
    """How Spark reaches an s3a:// lake or raw folder (hadoop-aws), and how Delta commits there.

    No keys here: against AWS, S3A takes credentials from the environment or the instance's
    IAM role. Only a loopback endpoint (moto, MinIO on 127.0.0.1) gets dummy keys, since a
    real key has no business there.
    """

    #: None means AWS's endpoint for the bucket's region; e.g. http://127.0.0.1:5055 (moto).
    s3_endpoint: str | None = Field(None, pattern=r"^https?://[^/\s]+/?$")
    #: The endpoint's signing region (fs.s3a.endpoint.region); None lets S3A work it out.
    s3_region: str | None = None
    #: Path-style requests (http://host/bucket/key): what S3-compatible stores and moto expect.
    s3_path_style: bool = False
    #: Delta's commit protocol on S3: the default is safe with one writer per table at a time;
    #: dynamodb serialises concurrent writers through a DynamoDB table (io.delta:delta-storage-s3-dynamodb).
    delta_log_store: Literal["single_writer", "dynamodb"] = "single_writer"
    delta_log_table: str = "delta_log"
    delta_log_region: str = "us-east-1"


class SessionizeSettings(_Section):
    split: Literal["session_id", "day", "gap"] = "session_id"
    gap_minutes: int = Field(30, ge=1)
    max_bad_ratio: float = Field(0.05, ge=0.0, le=1.0)
    #: txn_amount / offer_price above this are quarantined (bounded so that no sum can overflow).
    max_amount: float = Field(1_000_000.0, gt=0, le=1e12)
    #: event times more than this many hours after the ingest time are quarantined.
    max_future_hours: float = Field(24.0, ge=0)
    #: event times before this are quarantined (naive = UTC).
    earliest_event_time: dt.datetime = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
    #: characters of customer_identifier, session_id and event_id (DynamoDB keys hold 2,048 bytes).
    max_id_length: int = Field(256, ge=1, le=512)
    #: characters of any other text field.
    max_text_length: int = Field(1024, ge=1, le=100_000)
    #: --trigger: where the stream records which raw files it processed (default <lake>/_checkpoints/sessionize).
    checkpoint: str | None = None
    #: --trigger: at most this many new files per micro-batch (default: all that are there).
    max_files_per_trigger: int | None = Field(None, ge=1)
    #: --trigger: after each micro-batch, refresh the online items (DynamoDB and online_features)
    #: of the players whose events it stored.
    online_refresh: bool = True


class GeneratorSettings(_Section):
    users: int = Field(1000, ge=1)
    days: int = Field(28, ge=1)
    start_date: dt.date = dt.date(2026, 1, 1)
    seed: int = 42
    duplicate_fraction: float = Field(0.0, ge=0.0, le=1.0)
    out_of_order_fraction: float = Field(0.0, ge=0.0, le=1.0)
    malformed_fraction: float = Field(0.0, ge=0.0, le=1.0)
    gzip: bool = False


class OnlineStoreSettings(_Section):
    table: str = "offer_ai_user_features"
    region: str = "us-east-1"
    #: None means the real AWS endpoint for the region; credentials come from the environment.
    endpoint_url: str | None = None
    create_table: bool = False
    ttl_days: int = Field(30, ge=1)
    max_items_per_second: float = Field(1000.0, gt=0)


class TrainingSettings(_Section):
    """build_features: the train/validation split and the size of the export's files."""

    #: The latest share of the decision-time span that becomes the validation set.
    validation_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    #: A fixed UTC cut-off instead: decisions at or after it are validation (naive = UTC).
    validation_cutoff: dt.datetime | None = None
    #: Rows per export file: the file count grows with the data (at least one per split).
    rows_per_file: int = Field(1_000_000, ge=1)


class SageMakerSettings(_Section):
    """Training on SageMaker (offer_ai.model.sagemaker_launch): where the export goes, which image, what runs it.

    No credentials: boto3 finds them in the environment or the instance role. The role ARN is
    the *execution* role the training job assumes, not a key.
    """

    region: str = "us-east-1"
    #: IAM role the training job runs as, e.g. arn:aws:iam::111122223333:role/offer-ai-sagemaker.
    role_arn: str | None = Field(None, pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$")
    #: Bucket for the uploaded export, the staged code and the model output.
    bucket: str | None = None
    #: Key prefix under the bucket: exports at <prefix>/exports/<run id>/, output at <prefix>/output/.
    prefix: str = "offer-ai"
    base_job_name: str = "offer-ai-xgboost"
    instance_type: str = "ml.m5.xlarge"
    #: The entry point trains on one node: more instances only repeat the same work.
    instance_count: int = Field(1, ge=1)
    volume_size_gb: int = Field(30, ge=1)
    max_runtime_s: int = Field(3600, ge=60)
    #: SageMaker XGBoost container version (sagemaker.core.image_uris.retrieve("xgboost", region, version=...)).
    framework_version: str = "3.0-5"
    #: Which export copy the job reads: parquet (with column names) or csv.
    data_format: Literal["parquet", "csv"] = "parquet"
    #: Defaults for the entry point's hyperparameters (a launch call may override each).
    hyperparameters: dict[str, str | int | float] = Field(default_factory=dict)


class ServingSettings(_Section):
    """The decision service (jobs/serve.py) and the model promotion (jobs/promote_model.py).

    The latency budget is the point: a decision must come back within it whatever the store
    does, so the feature read has its own deadline, after which the no-history defaults serve.
    """

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    #: uvicorn worker processes; behind a load balancer prefer more instances of one worker each.
    workers: int = Field(1, ge=1)
    #: Promoted models: <models_root>/versions/<model version>/ and the pointer <models_root>/CURRENT.
    models_root: str = "./models"
    #: How often the service looks at CURRENT for a newly promoted model.
    model_poll_s: float = Field(5.0, gt=0)
    #: The ε of the ε-greedy policy (also the policy the promotion guard evaluates).
    epsilon: float = Field(0.1, ge=0.0, le=1.0)
    #: Whole budget of one feature read (queueing, connect, retries); past it the defaults serve.
    store_timeout_ms: float = Field(50.0, gt=0)
    #: botocore's per-attempt timeouts and attempts for the feature read (tight: the budget rules).
    store_connect_timeout_ms: float = Field(50.0, gt=0)
    store_read_timeout_ms: float = Field(50.0, gt=0)
    store_max_attempts: int = Field(2, ge=1)
    #: Threads doing the blocking DynamoDB reads (boto3 has no async client).
    store_threads: int = Field(16, ge=1)
    #: After this many reads in a row fail or time out, the store is not asked for ...
    store_breaker_failures: int = Field(20, ge=1)
    #: ... this many seconds (requests get the defaults at once), then asked again.
    store_breaker_cooldown_s: float = Field(1.0, gt=0)
    #: Where decisions are logged as raw events; None = raw.root (a local or shared folder).
    decision_log_dir: str | None = None
    #: A decision-log file is written at least this often (and at shutdown) ...
    decision_log_flush_s: float = Field(10.0, gt=0)
    #: ... or as soon as this many decisions wait.
    decision_log_max_lines: int = Field(5000, ge=1)


class Settings(_Section):
    spark: SparkSettings = Field(default_factory=SparkSettings)
    lake: LakeSettings = Field(default_factory=LakeSettings)
    raw: RawSettings = Field(default_factory=RawSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    sessionize: SessionizeSettings = Field(default_factory=SessionizeSettings)
    generator: GeneratorSettings = Field(default_factory=GeneratorSettings)
    online_store: OnlineStoreSettings = Field(default_factory=OnlineStoreSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    sagemaker: SageMakerSettings = Field(default_factory=SageMakerSettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)
    offers_file: str = "offers.yaml"
    features_file: str = "features.yaml"
    #: Where the settings came from; set by load_settings, not by the file.
    source: str = Field("<defaults>", exclude=True)
    source_dir: str = Field(str(CONF_DIR), exclude=True)

    def table_path(self, name: str) -> str:
        """Path of the Delta table `name` under the lake root (DESIGN §3: path-based tables)."""
        return f"{self.lake.root.rstrip('/')}/{name}"

    def catalogue_path(self, relative: str) -> Path:
        path = Path(relative)
        return path if path.is_absolute() else Path(self.source_dir) / path

    @property
    def offers_path(self) -> Path:
        return self.catalogue_path(self.offers_file)

    @property
    def features_path(self) -> Path:
        return self.catalogue_path(self.features_file)


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise UserError(f"--set {dotted}: '{key}' is a value, not a section.")
        node = child
    node[keys[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """Split 'a.b=value'; the value is read as YAML so that numbers and booleans get their type."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UserError(f"--set expects dotted.key=value, got '{text}'.")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def _describe(error: ValidationError, source: str) -> str:
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"])
    if first["type"] == "extra_forbidden":
        return f"{source}: unknown configuration key '{key}'."
    return f"{source}: '{key}' {first['msg'][0].lower()}{first['msg'][1:]} (got {first.get('input')!r})."


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> Settings:
    """Load settings from `config_file`, else $OFFER_AI_CONFIG, else conf/local.yaml; apply overrides."""
    chosen = config_file or os.environ.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG
    path = Path(chosen)
    if not path.is_file():
        raise UserError(f"Config file {path} does not exist.")
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"Config file {path} is not valid YAML: {exc}".splitlines()[0]) from None
    if not isinstance(tree, dict):
        raise UserError(f"Config file {path} must hold a mapping of sections, not {type(tree).__name__}.")
    for override in overrides:
        key, value = parse_override(override)
        _set_dotted(tree, key, value)
    try:
        settings = Settings.model_validate(tree)
    except ValidationError as exc:
        raise UserError(_describe(exc, str(path))) from None
    settings.source = str(path)
    settings.source_dir = str(path.resolve().parent)
    return settings
