"""conf/features.yaml: the declarative feature definition (DESIGN §5), loaded and checked.

Two checks, both before any data is read: the YAML's shape (no Spark needed), then every Spark
SQL expression compiled and analysed against an empty DataFrame with the `events` schema, so a
typo in a column, a non-aggregate where an aggregate is due, or a type error fails naming the
entry (`session_aggregates.win_ratio: ...`), not half-way through a nightly run.

Sections this module interprets: `session_aggregates`, `identity`. Sections issue #4 adds
(`anchor`, `windows`, `label`) are accepted and kept, uninterpreted, in `FeatureSpec.sections`.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pyspark.logger import PySparkLogger
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType, TimestampType

from offer_ai.errors import UserError
from offer_ai.ingest.events import EVENTS_SCHEMA

#: Sections this module checks, and those a later stage interprets (kept as given).
KNOWN_SECTIONS = ("session_aggregates", "identity")
LATER_SECTIONS = ("anchor", "windows", "label")
#: DESIGN §3: the `sessions` columns other parts rely on (keys excluded).
REQUIRED_SESSION_COLUMNS = (
    "session_start", "session_end", "games_played", "games_won", "win_ratio", "purchase_amount",
    "offer_purchase_amount", "offers_shown", "offer_type", "offer_price", "offer_purchased",
    "offer_propensity", "offer_time", "country", "facebook_connected",
)
#: Aggregates the pipeline itself uses, with the type it needs.
TIMESTAMP_AGGREGATES = ("session_start", "session_end")
SESSION_KEYS = ("user_id", "session_id")
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


@dataclass(frozen=True)
class IdentitySpec:
    events: tuple[str, ...]
    fields: tuple[str, ...]
    derived: dict[str, str]

    @property
    def columns(self) -> tuple[str, ...]:
        return self.fields + tuple(self.derived)


@dataclass(frozen=True)
class FeatureSpec:
    path: str
    session_aggregates: dict[str, str]
    identity: IdentitySpec
    #: Sections for later stages (anchor, windows, label), as parsed from YAML.
    sections: dict[str, Any] = field(default_factory=dict)
    #: Hash of the file's bytes (DESIGN §6 spec_version): what produced a feature value.
    version: str = ""

    @property
    def check_key(self) -> str:
        """What a passed `check` depends on: the definition and the events schema it is analysed
        against. A job whose last successful write recorded this key may skip the check."""
        schema = hashlib.sha256(EVENTS_SCHEMA.json().encode()).hexdigest()[:8]
        return f"{self.version}-{schema}"

    @property
    def session_columns(self) -> tuple[str, ...]:
        """Columns of `sessions`, in order: keys, aggregates, identity fields, derived fields."""
        return SESSION_KEYS + tuple(self.session_aggregates) + self.identity.columns

    def aggregate_columns(self) -> list[Column]:
        return [F.expr(expr).alias(name) for name, expr in self.session_aggregates.items()]

    def derived_columns(self) -> dict[str, Column]:
        return {name: F.expr(expr) for name, expr in self.identity.derived.items()}

    def check(self, spark: SparkSession) -> None:
        """Compile and analyse every expression against empty typed inputs; fail naming the entry."""
        empty_events = spark.createDataFrame([], EVENTS_SCHEMA)  # analysed only, never executed
        grouped = empty_events.groupBy(*SESSION_KEYS)
        with quiet_spark_errors():
            try:  # one analysis for the whole section; only on failure look for the culprit
                schema = grouped.agg(*self.aggregate_columns()).schema
            except Exception as exc:  # noqa: BLE001 - re-analysed entry by entry below
                for name, expr in self.session_aggregates.items():
                    analyse_entry(self.path, f"session_aggregates.{name}", lambda e=expr: grouped.agg(F.expr(e)).schema)
                raise UserError(f"{self.path}: session_aggregates: {_first_line(exc)}") from None
            for name in TIMESTAMP_AGGREGATES:
                if not isinstance(schema[name].dataType, TimestampType):
                    raise UserError(
                        f"{self.path}: session_aggregates.{name} must be a timestamp "
                        f"(got {schema[name].dataType.simpleString()})."
                    )
            identity_rows: DataFrame = spark.createDataFrame(
                [], StructType([StructField(f, StringType(), True) for f in self.identity.fields])
            )
            for name, expr in self.identity.derived.items():
                analyse_entry(self.path, f"identity.derived.{name}", lambda e=expr: identity_rows.withColumn("_x", F.expr(e)).schema)


def load_feature_spec(path: str | Path) -> FeatureSpec:
    """Read and check the YAML's shape (no Spark needed); `FeatureSpec.check` analyses the SQL."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Feature definition {path} does not exist.")
    data = path.read_bytes()
    try:
        tree = yaml.safe_load(data) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"Feature definition {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(tree, dict):
        raise UserError(f"Feature definition {path} must be a mapping of sections.")
    for section in tree:
        if section not in KNOWN_SECTIONS + LATER_SECTIONS:
            raise UserError(
                f"{path}: unknown section '{section}' (expected {', '.join(KNOWN_SECTIONS + LATER_SECTIONS)})."
            )
    aggregates = _expressions(path, tree, "session_aggregates")
    if not aggregates:
        raise UserError(f"{path}: 'session_aggregates' must map at least one column to an aggregate expression.")
    identity = _identity(path, tree.get("identity"))
    columns = list(SESSION_KEYS) + list(aggregates) + list(identity.columns)
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if duplicated:
        raise UserError(f"{path}: column '{duplicated[0]}' is defined twice (session keys, aggregates and identity share one table).")
    missing = [c for c in REQUIRED_SESSION_COLUMNS if c not in columns]
    if missing:
        raise UserError(f"{path}: the sessions contract (DESIGN §3) needs '{missing[0]}', which no entry defines.")
    return FeatureSpec(
        path=str(path),
        session_aggregates=aggregates,
        identity=identity,
        sections={k: v for k, v in tree.items() if k in LATER_SECTIONS},
        version=hashlib.sha256(data).hexdigest()[:16],
    )


def _expressions(path: Path, tree: dict[str, Any], section: str) -> dict[str, str]:
    entries = tree.get(section)
    if entries is None:
        return {}
    if not isinstance(entries, dict):
        raise UserError(f"{path}: '{section}' must map column names to Spark SQL expressions.")
    out: dict[str, str] = {}
    for name, expr in entries.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise UserError(f"{path}: {section}.{name}: column names are lower_snake_case identifiers.")
        if not isinstance(expr, str) or not expr.strip():
            raise UserError(f"{path}: {section}.{name} must be a Spark SQL expression (a non-empty string).")
        out[name] = " ".join(expr.split())
    return out


def _identity(path: Path, node: Any) -> IdentitySpec:
    if not isinstance(node, dict):
        raise UserError(f"{path}: 'identity' must have 'events', 'fields' and optionally 'derived'.")
    unknown = set(node) - {"events", "fields", "derived"}
    if unknown:
        raise UserError(f"{path}: identity.{sorted(unknown)[0]} is not a known key (events, fields, derived).")
    events, fields = node.get("events"), node.get("fields")
    if not isinstance(events, list) or not events or not all(isinstance(e, str) and e for e in events):
        raise UserError(f"{path}: identity.events must be a non-empty list of event types.")
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        raise UserError(f"{path}: identity.fields must be a list of event columns.")
    text_columns = {f.name for f in EVENTS_SCHEMA.fields if isinstance(f.dataType, StringType)}
    for name in fields:
        if name not in text_columns or name in ("event_key", "user_id", "event_id", "payload", "source_file"):
            raise UserError(f"{path}: identity.fields: '{name}' is not an identity text column of events.")
    derived = _expressions(path, {"derived": node.get("derived") or {}}, "derived")
    return IdentitySpec(events=tuple(events), fields=tuple(fields), derived=derived)


def analyse_entry(path: str, entry: str, analyse: Any) -> Any:
    """Run one analysis; any Spark error means the entry is bad: one sentence naming it."""
    try:
        return analyse()
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - ParseException, AnalysisException, ValueError: a bad entry
        raise UserError(f"{path}: {entry}: {_first_line(exc)}") from None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = re.sub(r"\s*SQLSTATE: \w+\.?", "", text)
    return text if text.endswith(".") else text + "."


@contextmanager
def quiet_spark_errors() -> Iterator[None]:
    """PySpark logs every analysis error with its JVM stack; here an error is an expected answer."""
    # PySpark's own class: a plain Logger made here first would later reject PySpark's
    # logger.exception(..., errorClass=...) with a TypeError on top of the real error
    logger = PySparkLogger.getLogger("SQLQueryContextLogger")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)
