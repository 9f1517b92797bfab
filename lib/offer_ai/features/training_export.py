"""Storing training rows: the `training_examples` Delta table and the SageMaker-ready export.

The export (DESIGN §3, §7) holds only complete rows, split by decision time (train: earlier,
validation: later; never random), under `<root>/<run id>/`:

    train/csv/part-*.csv            label first, no header, categoricals as integer codes,
    train/parquet/part-*.parquet    the same columns and values, with their names, then the
                                    keys user_id, anchor_session_id, decision_time
    validation/csv/ ... validation/parquet/ ...
    manifest.json                   columns, types, encodings, split, row counts, spec_version

SageMaker's built-in XGBoost reads `train/csv/` as the `train` channel (text/csv, label in
column 0, empty field = missing). manifest.json is written last: a folder without one is an
unfinished export. The keys are in the Parquet copy only (the CSV must be the model's
columns alone): a reader joins rows back to their decisions by key, not by file order, and
every consumer selects the manifest's columns by name. The number of files grows with the
rows (`rows_per_file`), so a cluster writes in parallel and a laptop writes one file per split.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType, DataType, NumericType, StringType

from offer_ai import faults, lake
from offer_ai.errors import UserError
from offer_ai.features.export_reader import MANIFEST, RUN_ID, RUN_ID_RULE
from offer_ai.features.training import from_micros
from offer_ai.features.window_spec import WindowSpec

SPLITS = ("train", "validation")
#: Which decision a row is; after the model columns, in the Parquet copy only.
KEY_COLUMNS = ("user_id", "anchor_session_id", "decision_time")
#: More distinct values than this is not a category but an identifier: refuse, do not collect it.
MAX_CATEGORIES = 10_000


@dataclass(frozen=True)
class ExportResult:
    run_id: str
    path: str
    cutoff: dt.datetime | None
    rows: dict[str, int]
    files: dict[str, dict[str, str]]
    manifest: dict[str, Any]


def write_training_examples(spark: SparkSession, path: str, rows: DataFrame, metadata: dict[str, Any]) -> None:
    """Replace the table with `rows` (one atomic Delta overwrite; the schema follows the spec).

    For a rebuild from full history (a new definition, a first run): the overwrite is the whole
    truth and a rerun leaves the same rows. Nights after it MERGE their recomputed tail
    (features/refresh.py), so the table keeps deletion vectors.
    """
    with lake.commit_metadata(spark, metadata):
        rows.write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(path)
    lake.ensure_properties(spark, path, lake.UPDATED_IN_PLACE)


def model_columns(spec: WindowSpec) -> tuple[str, ...]:
    """Export columns in order: the label, then features and action (what the model sees)."""
    return (spec.label_name, *spec.anchor.identity_features, *spec.window_feature_columns, *spec.anchor.action)


def default_run_id(latest_event_time: dt.datetime | None, spec: WindowSpec) -> str:
    """Named after the data and the definition, so that a rerun on the same input rewrites the
    same folder rather than adding one (jobs are idempotent)."""
    stamp = latest_event_time.strftime("%Y%m%dT%H%M%SZ") if latest_event_time else "empty"
    return f"{stamp}-{spec.version[:8]}"


def split_cutoff(
    complete: DataFrame, validation_fraction: float
) -> tuple[dt.datetime | None, dt.datetime | None, dt.datetime | None]:
    """(cutoff, first, last) decision time: validation = decision_time >= cutoff, the last
    `validation_fraction` of the span between the first and the last complete decision."""
    if not 0.0 < validation_fraction < 1.0:
        raise UserError(f"The validation fraction must be between 0 and 1, exclusive (got {validation_fraction}).")
    micros = F.unix_micros("decision_time")
    row = complete.agg(F.min(micros).alias("lo"), F.max(micros).alias("hi")).first()
    if row is None or row["lo"] is None:
        return None, None, None
    lo, hi = from_micros(row["lo"]), from_micros(row["hi"])
    span_us = (hi - lo) // dt.timedelta(microseconds=1)
    cutoff = lo + dt.timedelta(microseconds=math.ceil(span_us * (1.0 - validation_fraction)))
    return cutoff, lo, hi


def categorical_encodings(complete: DataFrame, columns: tuple[str, ...]) -> dict[str, dict[str, int]]:
    """Integer codes for the text and boolean columns: booleans false=0/true=1; text values in
    sorted order from 0. Only the distinct values are collected (bounded by MAX_CATEGORIES)."""
    encodings: dict[str, dict[str, int]] = {}
    for name in columns:
        data_type = complete.schema[name].dataType
        if isinstance(data_type, BooleanType):
            encodings[name] = {"false": 0, "true": 1}
        elif isinstance(data_type, StringType):
            distinct = complete.select(name).where(F.col(name).isNotNull()).distinct()
            values = [r[0] for r in distinct.limit(MAX_CATEGORIES + 1).collect()]
            if len(values) > MAX_CATEGORIES:
                raise UserError(
                    f"Column '{name}' has more than {MAX_CATEGORIES} distinct values: it cannot be exported as a category."
                )
            encodings[name] = {value: code for code, value in enumerate(sorted(values))}
    return encodings


def encode(rows: DataFrame, encodings: dict[str, dict[str, int]]) -> DataFrame:
    """Categorical columns replaced by their codes (null, or a value without a code, stays null)."""
    out: list[Column] = []
    for name in rows.columns:
        if name not in encodings:
            out.append(F.col(name))
        elif isinstance(rows.schema[name].dataType, BooleanType):
            out.append(F.col(name).cast("int").alias(name))
        else:
            codes = F.create_map(*[F.lit(x) for pair in encodings[name].items() for x in pair])
            out.append(F.element_at(codes, F.col(name)).cast("int").alias(name))
    return rows.select(*out)


def export_training(
    spark: SparkSession,
    examples: DataFrame,
    spec: WindowSpec,
    root: str,
    run_id: str,
    validation_fraction: float = 0.2,
    validation_cutoff: dt.datetime | None = None,
    rows_per_file: int = 1_000_000,
    extra: dict[str, Any] | None = None,
) -> ExportResult:
    """Write the complete rows of `examples` (a `training_examples` table) as train/validation
    CSV + Parquet and the manifest under `<root>/<run_id>/`; rewriting that folder if it exists."""
    if not RUN_ID.match(run_id):
        raise UserError(f"Run id '{run_id}' must be {RUN_ID_RULE}.")
    base = f"{root.rstrip('/')}/{run_id}"
    _delete(spark, f"{base}/{MANIFEST}")  # from here until the new manifest, the folder is unfinished
    # read by several small actions (span, categories, counts) and two writes per split: once
    complete = examples.where(F.col("label_complete")).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        return _export(spark, complete, spec, base, run_id, validation_fraction, validation_cutoff, rows_per_file, extra)
    finally:
        complete.unpersist()


def _export(
    spark: SparkSession, complete: DataFrame, spec: WindowSpec, base: str, run_id: str, validation_fraction: float,
    validation_cutoff: dt.datetime | None, rows_per_file: int, extra: dict[str, Any] | None,
) -> ExportResult:
    cutoff, first, last = split_cutoff(complete, validation_fraction)
    if validation_cutoff is not None:
        cutoff = _aware(validation_cutoff)
    columns = model_columns(spec)
    encodings = categorical_encodings(complete, columns)
    encoded_schema = encode(complete.select(*columns), encodings).schema
    described = [  # before writing anything: a column that cannot be exported fails here
        _column(i, name, encoded_schema[name].dataType, complete.schema[name].dataType, spec, name in encodings)
        for i, name in enumerate(columns)
    ]
    is_validation = F.lit(False) if cutoff is None else F.col("decision_time") >= F.lit(cutoff)
    labelled = complete.withColumn("_split", F.when(is_validation, "validation").otherwise("train"))
    counts = {r["_split"]: r["count"] for r in labelled.groupBy("_split").count().collect()}
    rows = {split: int(counts.get(split, 0)) for split in SPLITS}
    order = ("decision_time", "user_id", "anchor_session_id")
    files: dict[str, dict[str, str]] = {}
    for split in SPLITS:
        part = labelled.where(F.col("_split") == split)
        n_files = max(1, math.ceil(rows[split] / rows_per_file))
        ordered = part.repartitionByRange(n_files, *order).sortWithinPartitions(*order)
        out = encode(ordered.select(*columns, *KEY_COLUMNS), encodings)
        files[split] = {"csv": f"{base}/{split}/csv", "parquet": f"{base}/{split}/parquet"}
        out.select(*columns).write.mode("overwrite").option("header", "false").option("nullValue", "").csv(files[split]["csv"])
        out.write.mode("overwrite").parquet(files[split]["parquet"])
        faults.point(f"build_features.export_{split}_written")  # a folder without its manifest
    manifest = {
        "format": "offer-ai training export",
        "format_version": 1,
        "run_id": run_id,
        "spec_version": spec.version,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "label": spec.label_name,
        "columns": described,
        "key_columns": list(KEY_COLUMNS),  # Parquet only, after the columns
        "categorical_encodings": encodings,
        "split": {
            "by": "decision_time",
            "rule": "train: decision_time < cutoff; validation: decision_time >= cutoff",
            "cutoff": _iso(cutoff),
            "validation_fraction": None if validation_cutoff is not None else validation_fraction,
            "first_decision_time": _iso(first),
            "last_decision_time": _iso(last),
        },
        "rows": rows,
        "files": files,
        "csv": {"header": False, "label_column": 0, "missing_value": "", "content_type": "text/csv"},
        **(extra or {}),
    }
    _write_text(spark, f"{base}/{MANIFEST}", json.dumps(manifest, indent=2, default=str) + "\n")
    return ExportResult(run_id, base, cutoff, rows, files, manifest)


def _column(
    index: int, name: str, encoded: DataType, original: DataType, spec: WindowSpec, categorical: bool
) -> dict[str, Any]:
    role = "label" if name == spec.label_name else "action" if name in spec.anchor.action else "feature"
    column: dict[str, Any] = {"index": index, "name": name, "role": role, "type": encoded.simpleString()}
    if categorical:
        column.update(categorical=True, source_type=original.simpleString())
    elif not isinstance(encoded, NumericType):
        raise UserError(
            f"Column '{name}' ({encoded.simpleString()}) is neither a number nor a category: it cannot be exported."
        )
    return column


def _write_text(spark: SparkSession, path: str, text: str) -> None:
    """One small file through Hadoop's FileSystem: the same call writes to a local disk or to s3a://."""
    jvm = spark._jvm  # type: ignore[attr-defined]
    target = jvm.org.apache.hadoop.fs.Path(path)
    fs = target.getFileSystem(spark._jsc.hadoopConfiguration())  # type: ignore[attr-defined]
    stream = fs.create(target, True)
    try:
        stream.write(bytearray(text.encode("utf-8")))
    finally:
        stream.close()


def _delete(spark: SparkSession, path: str) -> None:
    jvm = spark._jvm  # type: ignore[attr-defined]
    target = jvm.org.apache.hadoop.fs.Path(path)
    fs = target.getFileSystem(spark._jsc.hadoopConfiguration())  # type: ignore[attr-defined]
    if fs.exists(target):
        fs.delete(target, False)


def _aware(moment: dt.datetime) -> dt.datetime:
    """Naive times are UTC (DESIGN §4)."""
    return moment.replace(tzinfo=dt.timezone.utc) if moment.tzinfo is None else moment.astimezone(dt.timezone.utc)


def _iso(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")
