"""Point-in-time features around each decision (anchors), and the same features as of any time.

One definition, two uses (DESIGN §4): `training_examples` puts an anchor point at each anchor
session's start (identity and label at its decision time); `features_as_of` puts one at `as_of`
for every user. Both then run the same code: the points are unioned with each window's source
rows, partitioned by user, and every window feature is an aggregate over a range frame of that
union (time frames on microseconds; count frames on a running count of source rows, which is
how "the last N sessions before t" stays exact when points sit between sessions). Anchor rows
are masked out of every aggregate (FILTER), so any number of points per user can share a
partition: no self-join of sessions with sessions, no Python UDF, no collect.

Pure DataFrame -> DataFrame functions: no configuration, no storage.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from offer_ai.features.window_spec import SOURCES, WindowDef, WindowSpec, window_sql
from offer_ai.ingest.events import EVENTS_SCHEMA
from offer_ai.ingest.feature_spec import FeatureSpec
from offer_ai.ingest.sessions import add_identity, build_sessions, identity_events

_DAY_US = 86_400_000_000
_SRC = "__window_source"  # true on source rows, false on anchor points
_TIME = "__window_time"  # source rows: their time (microseconds)
_TIE = "__window_tie"  # source rows: tie-break key among equal times
_POINT = "__window_point"  # anchor points: all their columns, in one struct


def anchor_candidates(sessions: DataFrame, spec: WindowSpec) -> DataFrame:
    """Every session that meets the anchor condition and has a decision time (before the daily limit)."""
    decision = F.expr(spec.anchor.decision_time)
    return sessions.where(F.expr(spec.anchor.condition) & decision.isNotNull()).select(
        "user_id",
        F.col("session_id").alias("anchor_session_id"),
        F.col("session_start").alias("anchor_session_start"),
        decision.alias("decision_time"),
        *spec.anchor.action,
    )


def anchors(sessions: DataFrame, spec: WindowSpec) -> DataFrame:
    """The anchors: at most `max_per_user_per_day` per user per UTC day of the decision time,
    earliest first (ties by session id, so that a rerun keeps the same ones).

    Columns: user_id, anchor_session_id, anchor_session_start, decision_time, the action columns.
    """
    candidates = anchor_candidates(sessions, spec)
    limit = spec.anchor.max_per_user_per_day
    if limit is None:
        return candidates
    day = F.floor(F.unix_micros("decision_time") / F.lit(_DAY_US))  # the UTC day, whatever the session zone
    rank = F.row_number().over(Window.partitionBy("user_id", day).orderBy("decision_time", "anchor_session_id"))
    return candidates.withColumn("_rank", rank).where(F.col("_rank") <= limit).drop("_rank")


def training_examples(
    sessions: DataFrame,
    events: DataFrame,
    spec: WindowSpec,
    latest_event_time: dt.datetime | None,
    since: Recompute | None = None,
) -> DataFrame:
    """One row per anchor (DESIGN §3 `training_examples`): identity as of the decision time,
    window features relative to the anchor session's start, the action, the label over
    [decision time, + label length), and `label_complete` (that window ends at or before
    `latest_event_time`, the latest event ingested; None: nothing is complete).

    `since`: only the anchors decided, or whose session started, at or after `since.anchors`
    (a day boundary, so that the daily limit ranks whole days), with each window source read
    only as far back as those anchors can see (`recent_sources`). The rows are the same as
    those of the full computation for the same anchors.
    """
    candidates = anchors(sessions, spec)
    if since is not None:
        at = F.lit(_utc(since.anchors))
        candidates = candidates.where((F.col("decision_time") >= at) | (F.col("anchor_session_start") >= at))
        sessions, window_events = recent_sources(sessions, events, spec, since)
    else:
        window_events = events
    points = _identity(candidates, events, spec, at="decision_time")
    rows = _windows(points, sessions, window_events, spec, window_at="anchor_session_start", label_at="decision_time")
    assert spec.label.length_us is not None
    if latest_event_time is None:
        complete = F.lit(False)
    else:
        label_end = F.unix_micros("decision_time") + F.lit(spec.label.length_us)
        complete = label_end <= F.unix_micros(F.lit(_utc(latest_event_time)))
    return rows.withColumn("label_complete", complete).select(*spec.training_columns)


@dataclass(frozen=True)
class Recompute:
    """Which anchors a partial recompute covers, and how far back their windows reach.

    anchors: anchors decided, or whose session started, at or after it.
    windows_from: the earliest anchor session start among them (backward windows end there).
    labels_from: the earliest decision time among them (forward windows start there).
    """

    anchors: dt.datetime
    windows_from: dt.datetime
    labels_from: dt.datetime


def recent_sources(
    sessions: DataFrame, events: DataFrame, spec: WindowSpec, since: Recompute
) -> tuple[DataFrame, DataFrame]:
    """The sessions and events rows that the windows of anchors in `since` can see.

    Time windows (and the label) need the rows from their own length before the earliest anchor
    (or from the earliest decision); a count window needs, besides those, each user's last
    `count` qualifying rows before that bound. Nothing older can enter any window, so a night
    reads the recent days and, per player, a handful of older rows — not all history.
    """
    frames = {"sessions": sessions, "events": events}
    for name, frame in frames.items():
        reach = [(w, since.windows_from) for w in spec.windows if w.source == name]
        if spec.label.source == name:
            reach.append((spec.label, since.labels_from))
        if not reach:
            continue
        time_column, tie_column = SOURCES[name]
        micros = F.unix_micros(time_column)
        bound = min(
            _micros(at) - (w.length_us if w.kind == "time" and w.direction == "backward" else 0) for w, at in reach
        )
        keep = micros >= F.lit(bound)
        recent = frame.where(keep)
        if name == "events":  # the table is partitioned by day: prune the old ones outright
            recent = recent.where(F.col("event_date") >= F.lit(from_micros(bound).date()))
        counted = [w for w, _ in reach if w.kind == "count"]
        if counted:
            older = frame.where(~keep)
            tail = F.lit(False)
            for i, w in enumerate(counted):
                condition = F.expr(w.condition) if w.condition else F.lit(True)
                rank = F.row_number().over(
                    Window.partitionBy("user_id", condition).orderBy(F.col(time_column).desc(), F.col(tie_column).desc())
                )
                older = older.withColumn(f"__tail_{i}", condition & (rank <= w.count))
                tail = tail | F.col(f"__tail_{i}")
            recent = recent.unionByName(older.where(tail).drop(*[f"__tail_{i}" for i in range(len(counted))]))
        frames[name] = recent
    return frames["sessions"], frames["events"]


def features_as_of(
    sessions: DataFrame, events: DataFrame, spec: WindowSpec, as_of: dt.datetime | DataFrame
) -> DataFrame:
    """Each user's features as of `as_of` (DESIGN §3 `online_features`, less spec_version): the
    same windows with a virtual anchor at as_of (last session = the latest that started before
    it, prev week = sessions started in [as_of - 7 days, as_of)), identity as of as_of.

    `as_of` is one time for every user of `sessions`, or a DataFrame of (user_id, as_of) points
    (any number per user: what the parity test uses). A user with nothing before as_of gets a
    row of nulls / defaults; callers that do not want it filter by first_seen.
    """
    window_sessions, window_events = sessions, events
    if isinstance(as_of, DataFrame):
        points = as_of.select("user_id", F.col("as_of").cast("timestamp").alias("as_of"))
    else:
        points = sessions.select("user_id").distinct().select("user_id", F.lit(_utc(as_of)).alias("as_of"))
        # one point in time: the windows see only the rows shortly before it (and a few per player)
        window_sessions, window_events = recent_sources(sessions, events, spec, Recompute(as_of, as_of, as_of))
    points = _identity(points, events, spec, at="as_of")
    rows = _windows(points, window_sessions, window_events, spec, window_at="as_of", label_at=None)
    return rows.select(*spec.online_columns)


#: The online row's struct of the values for a decision inside the player's latest session.
IN_SESSION = "in_session"


def online_features(
    sessions: DataFrame, events: DataFrame, spec: WindowSpec, as_of: dt.datetime, users: DataFrame | None = None
) -> DataFrame:
    """What a player's online item holds (DESIGN §6): for a decision at `as_of` in a new session,
    `features_as_of` (last session = the latest that started before as_of); and, in the struct
    `in_session`, for a decision inside that latest session, which is still under way: its
    `session_id`, `session_start` and every window feature as a training row anchored at that
    session computes it (windows end at its start, so its own events never count as its "last
    session"). Identity is as of as_of for both: a decision is made now.

    Only players with a session that started before as_of; `users` (a DataFrame of user_id)
    restricts them further (a micro-batch refreshes the players it touched). Both points of a
    player go through one `_windows` pass (one shuffle per source).
    """
    at = _utc(as_of)
    if users is not None:
        sessions = sessions.join(users, "user_id", "left_semi")
        events = events.join(users, "user_id", "left_semi")
    started = sessions.where(F.col("session_start") < F.lit(at))
    latest = started.groupBy("user_id").agg(
        F.max(F.struct("session_start", "session_id")).alias("_latest")
    ).select("user_id", F.col("_latest.session_start").alias("session_start"),
             F.col("_latest.session_id").alias("session_id"))
    now_points = latest.select("user_id", F.lit(at).alias("as_of"), F.lit(None).cast("string").alias("_in"))
    in_points = latest.select("user_id", F.col("session_start").alias("as_of"), F.col("session_id").alias("_in"))
    points = now_points.unionByName(in_points)
    bound = latest.agg(F.min(F.unix_micros("session_start")).alias("t")).first()
    if bound is not None and bound["t"] is not None:  # nothing older than the earliest point can be seen
        earliest = from_micros(bound["t"])
        window_sessions, window_events = recent_sources(sessions, events, spec, Recompute(earliest, earliest, earliest))
    else:
        window_sessions, window_events = sessions, events
    rows = _windows(points, window_sessions, window_events, spec, window_at="as_of", label_at=None)
    names = list(spec.window_feature_columns)
    now_rows = _identity(rows.where(F.col("_in").isNull()).drop("_in"), events, spec, at="as_of")
    in_rows = rows.where(F.col("_in").isNotNull()).select(
        "user_id",
        F.struct(F.col("_in").alias("session_id"), F.col("as_of").alias("session_start"), *names).alias(IN_SESSION),
    )
    return now_rows.join(in_rows, "user_id").select(*spec.online_columns, IN_SESSION)


def latest_event_time(events: DataFrame) -> dt.datetime | None:
    """The latest event time ingested (None when there is none): labels end no later than it."""
    # max() of the column itself, so that Delta can answer it from file statistics
    row = events.agg(F.unix_micros(F.max("event_time")).alias("t")).first()
    return None if row is None or row["t"] is None else from_micros(row["t"])


def from_micros(micros: int) -> dt.datetime:
    """Microseconds since the epoch -> aware UTC datetime. Times are collected as numbers because
    a collected timestamp comes back naive in the driver's local zone, not in UTC."""
    return dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(microseconds=int(micros))


def empty_sources(spark: SparkSession, features: FeatureSpec) -> tuple[DataFrame, DataFrame]:
    """Empty `sessions` and `events` with the schemas the spec gives them (for checks: no data)."""
    events = spark.createDataFrame([], EVENTS_SCHEMA)
    sessions = build_sessions(events, identity_events(events, features), features, "session_id", 30)
    return sessions, events


def required_session_columns(spec: WindowSpec) -> tuple[str, ...]:
    """sessions columns the windows read beyond the spec's own (so a stale table fails early)."""
    return ("user_id", "session_id", "session_start", *spec.anchor.action)


# ---------------------------------------------------------------------------------------------


def _identity(points: DataFrame, events: DataFrame, spec: WindowSpec, at: str) -> DataFrame:
    """points + the spec's identity features as of `points[at]` (sessions.py's as-of rule)."""
    wanted = spec.anchor.identity_features
    if not wanted:
        return points
    with_identity = add_identity(points, identity_events(events, spec.features), spec.features, at=at)
    return with_identity.select(*[c for c in points.columns if c not in wanted], *wanted)


def _windows(
    points: DataFrame, sessions: DataFrame, events: DataFrame, spec: WindowSpec, window_at: str, label_at: str | None
) -> DataFrame:
    """points + every window feature (and the label when label_at is given), in spec order."""
    relative: list[tuple[WindowDef, str]] = [(w, window_at) for w in spec.windows]
    if label_at is not None:
        relative.append((spec.label, label_at))
    sources = {"sessions": sessions, "events": events}
    rows = points
    for source in SOURCES:  # one union (one shuffle) per source that a window reads
        group = [(w, at) for w, at in relative if w.source == source]
        if group:
            rows = _over_source(rows, sources[source], group, spec)
    names = [*spec.window_feature_columns, *([spec.label_name] if label_at is not None else [])]
    out = rows.select(*[c for c in points.columns], *names)
    if label_at is not None:
        out = out.withColumn(spec.label_name, F.col(spec.label_name).cast("double"))
    return out


def _over_source(points: DataFrame, source: DataFrame, group: list[tuple[WindowDef, str]], spec: WindowSpec) -> DataFrame:
    """points + the features of windows that all read `source`, each relative to its point column."""
    time_column, tie_column = SOURCES[group[0][0].source]
    conditions = [w.condition for w, _ in group]
    if all(c is not None for c in conditions):  # only rows some window counts need to travel
        source = source.where(" OR ".join(f"({c})" for c in dict.fromkeys(conditions)))
    at_columns = list(dict.fromkeys(at for _, at in group))
    source_rows = source.select(
        *source.columns,
        F.lit(True).alias(_SRC),
        F.unix_micros(time_column).alias(_TIME),
        F.col(tie_column).cast("string").alias(_TIE),
    )
    point_rows = points.select(
        "user_id",
        F.lit(False).alias(_SRC),
        *[F.unix_micros(at).alias(f"__at_{i}") for i, at in enumerate(at_columns)],
        F.struct(*points.columns).alias(_POINT),
    )
    rows = source_rows.unionByName(point_rows, allowMissingColumns=True)

    spark = points.sparkSession
    orders: dict[int, Column] = {}
    features: list[Column] = []
    for i, (window, at) in enumerate(group):
        mask = _SRC if window.condition is None else f"{_SRC} AND ({window.condition})"
        # a point sorts before source rows of the same instant: they are not "before" it
        order = F.when(F.col(_SRC), F.col(_TIME)).otherwise(F.col(f"__at_{at_columns.index(at)}"))
        if window.kind == "count":  # how many counted source rows come before (points) / up to (rows)
            running = Window.partitionBy("user_id").orderBy(order, _SRC, _TIE).rowsBetween(Window.unboundedPreceding, 0)
            orders[i] = F.sum(F.when(F.expr(mask), 1).otherwise(0)).over(running)
        else:
            orders[i] = order
        for name, expr in window.features.items():
            sql, calls = window_sql(expr, mask, window.frame(f"__order_{i}"), lambda n: spec.is_aggregate(spark, n))
            if calls == 0:  # a window of one row: that row's value (checked by spec_check)
                sql, _ = window_sql(f"first({expr})", mask, window.frame(f"__order_{i}"), lambda n: n == "first")
            features.append(F.expr(sql).alias(name))
    ordered = rows.select("*", *[col.alias(f"__order_{i}") for i, col in orders.items()])
    names = [name for window, _ in group for name in window.features]
    return ordered.select(_SRC, _POINT, *features).where(~F.col(_SRC)).select(f"{_POINT}.*", *names)


def _micros(moment: dt.datetime) -> int:
    return (_utc(moment) - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) // dt.timedelta(microseconds=1)


def _utc(moment: dt.datetime) -> dt.datetime:
    """Naive times are UTC (DESIGN §4), not the driver's local time."""
    return moment.replace(tzinfo=dt.timezone.utc) if moment.tzinfo is None else moment.astimezone(dt.timezone.utc)
