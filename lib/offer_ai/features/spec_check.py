"""Every expression of conf/features.yaml analysed by Spark before any data is read.

The shape of the definition is checked without Spark (feature_spec, window_spec); this module
then compiles each Spark SQL entry against empty `events` / `sessions` DataFrames, and finally
runs the whole training and online pipeline once on empty inputs, so a typo in a column, a
non-aggregate where an aggregate is due, or a type error fails naming the entry
(`windows.prev_week.features.prev_week_purchase_amount: ...`), not half-way through a night.

It sits apart from window_spec because it needs the transforms (training), which themselves
build on window_spec's definitions: one direction of import, no circle.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType, NumericType, TimestampType

from offer_ai.errors import UserError
from offer_ai.features.training import empty_sources, features_as_of, training_examples
from offer_ai.features.window_spec import WindowDef, WindowSpec, describe_window, window_sql
from offer_ai.ingest.feature_spec import analyse_entry, quiet_spark_errors


def check_spec(spark: SparkSession, spec: WindowSpec) -> None:
    """The session/identity sections, then anchor, windows and label; fail naming the entry."""
    spec.features.check(spark)
    sessions, events = empty_sources(spark, spec.features)
    path = spec.features.path
    sources = {"sessions": sessions, "events": events}
    with quiet_spark_errors():
        _typed(path, "anchor.condition", sessions, spec.anchor.condition, BooleanType)
        _typed(path, "anchor.decision_time", sessions, spec.anchor.decision_time, TimestampType)
        for name in spec.anchor.action:
            if name not in sessions.columns:
                raise UserError(f"{path}: anchor.action: '{name}' is not a column of sessions.")
        for window in (*spec.windows, spec.label):
            source = sources[window.source]
            if window.condition is not None:
                _typed(path, f"{window.entry}.condition", source, window.condition, BooleanType)
            for name, expr in window.features.items():
                entry = f"{window.entry}.features.{name}" if window is not spec.label else "label.aggregate"
                _check_feature(spark, spec, path, entry, window, source, expr)
        label_type = analyse_entry(path, "label.aggregate", lambda: _label_type(spec, sources[spec.label.source]))
        if not isinstance(label_type, NumericType):
            raise UserError(f"{path}: label.aggregate must be a number (got {label_type.simpleString()}).")
        # The whole pipeline once on empty inputs: nothing may fail later for want of a column.
        latest = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
        analyse_entry(path, "anchor/windows/label", lambda: training_examples(sessions, events, spec, latest).schema)
        analyse_entry(path, "anchor/windows", lambda: features_as_of(sessions, events, spec, latest).schema)


def _check_feature(
    spark: SparkSession, spec: WindowSpec, path: str, entry: str, window: WindowDef, source: DataFrame, expr: str
) -> None:
    """First the user's own text (their column names in the message), then the windowed form."""
    is_aggregate = lambda n: spec.is_aggregate(spark, n)  # noqa: E731
    calls = analyse_entry(path, entry, lambda: window_sql(expr, "true", "x", is_aggregate)[1])
    if calls == 0:
        if window.kind == "count" and window.count == 1:
            analyse_entry(path, entry, lambda: source.select(F.expr(expr)).schema)
            return
        raise UserError(
            f"{path}: {entry}: '{expr}' has no aggregate function: a window of "
            f"{describe_window(window)} needs one (e.g. sum(...), max(...)); only a window of one row "
            "takes a plain value."
        )
    analyse_entry(path, entry, lambda: source.groupBy("user_id").agg(F.expr(expr)).schema)
    # then as a window function (e.g. DISTINCT aggregates are not allowed there)
    ordered = source.withColumn("__order", F.lit(0).cast("long"))
    windowed, _ = window_sql(expr, "true", window.frame("__order"), is_aggregate)
    analyse_entry(path, entry, lambda: ordered.select(F.expr(windowed)).schema)


def _label_type(spec: WindowSpec, source: DataFrame) -> Any:
    """The type of the label as written (before the cast to double training.py applies)."""
    return source.groupBy("user_id").agg(F.expr(spec.label.features[spec.label_name]).alias("x")).schema["x"].dataType


def _typed(path: str, entry: str, frame: DataFrame, expr: str, expected: type) -> None:
    data_type = analyse_entry(path, entry, lambda: frame.select(F.expr(expr).alias("x")).schema["x"].dataType)
    if not isinstance(data_type, expected):
        wanted = {BooleanType: "a boolean", TimestampType: "a timestamp"}[expected]
        raise UserError(f"{path}: {entry} must be {wanted} (got {data_type.simpleString()}: '{expr}').")
