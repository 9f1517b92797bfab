"""Events -> sessions: the split, the aggregates, identity as of a time, and what to recompute.

Pure DataFrame -> DataFrame functions (DESIGN §4): no configuration, no storage. The aggregates
and identity fields come from the FeatureSpec (conf/features.yaml).

The split decides which events form one session; `session_id` in `sessions` is:
- `session_id`: the client's session id (events without one belong to no session; they still
  count for identity and for the user's first/last seen);
- `day`: the UTC calendar day, 'YYYY-MM-DD';
- `gap`: a new session starts when a user's next event comes more than `gap_minutes` after the
  previous one (a gap of exactly `gap_minutes` does not split); its id is the session's start
  time, 'YYYY-MM-DDTHH:MM:SS.ffffffZ' (unique per user, as a user's gap sessions never overlap).
  A late event can merge two sessions or move a start, so a recompute may replace ids.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from offer_ai.ingest.feature_spec import SESSION_KEYS, FeatureSpec

SPLITS = ("session_id", "day", "gap")
_GAP_ID_FORMAT = "yyyy-MM-dd'T'HH:mm:ss.SSSSSS'Z'"


def assign_sessions(events: DataFrame, split: str, gap_minutes: int) -> DataFrame:
    """`events` with `session_id` replaced by the session the split puts each event in."""
    if split == "session_id":
        return events.where(F.col("session_id").isNotNull())
    if split == "day":
        return events.withColumn("session_id", F.date_format("event_date", "yyyy-MM-dd"))
    if split == "gap":
        by_time = Window.partitionBy("user_id").orderBy("event_time", "event_key")
        micros = F.unix_micros("event_time")
        previous = F.lag(micros).over(by_time)
        starts = (previous.isNull() | (micros - previous > gap_minutes * 60_000_000)).cast("int")
        numbered = events.withColumn("_n", F.sum(starts).over(by_time.rowsBetween(Window.unboundedPreceding, 0)))
        start = F.min("event_time").over(Window.partitionBy("user_id", "_n"))
        return numbered.withColumn("session_id", F.date_format(start, _GAP_ID_FORMAT)).drop("_n")
    raise ValueError(f"unknown split '{split}' (expected one of {', '.join(SPLITS)})")


def aggregate_sessions(session_events: DataFrame, spec: FeatureSpec) -> DataFrame:
    """One row per (user_id, session_id): the spec's session aggregates (identity not yet added)."""
    return session_events.groupBy(*SESSION_KEYS).agg(*spec.aggregate_columns())


def identity_events(events: DataFrame, spec: FeatureSpec) -> DataFrame:
    """The events that carry identity, with only what the as-of join needs."""
    return events.where(F.col("event_id").isin(*spec.identity.events)).select(
        "user_id", "event_time", "event_key", *spec.identity.fields
    )


def identity_as_of(rows: DataFrame, identities: DataFrame, at: str, fields: tuple[str, ...]) -> DataFrame:
    """`rows` plus each identity field's latest non-null value among the user's identity events at
    or before `rows[at]` (an as-of join, done as one union sorted per user with a carry-forward).

    An identity event at exactly `at` counts; two at the same instant are ordered by event_key.
    """
    base = rows.drop(*[f for f in fields if f in rows.columns])
    marked = base.select(
        "*", F.col(at).alias("_t"), F.lit(1).alias("_side"), F.lit(None).cast("string").alias("_tie")
    )
    sources = identities.select(
        "user_id", F.col("event_time").alias("_t"), F.lit(0).alias("_side"), F.col("event_key").alias("_tie"), *fields
    )
    carry = (
        Window.partitionBy("user_id").orderBy("_t", "_side", "_tie")
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    merged = marked.unionByName(sources, allowMissingColumns=True)
    return merged.select(
        *[c for c in base.columns], *[F.last(f, ignorenulls=True).over(carry).alias(f) for f in fields], "_side"
    ).where(F.col("_side") == 1).drop("_side")


def add_identity(rows: DataFrame, identities: DataFrame, spec: FeatureSpec, at: str) -> DataFrame:
    """identity_as_of, then the spec's derived identity fields (e.g. facebook_connected)."""
    with_fields = identity_as_of(rows, identities, at, spec.identity.fields)
    derived = spec.derived_columns()
    return with_fields.select(*with_fields.columns, *[col.alias(name) for name, col in derived.items()])


def build_sessions(events: DataFrame, identities: DataFrame, spec: FeatureSpec, split: str, gap_minutes: int) -> DataFrame:
    """All sessions of `events`, as `sessions` rows (columns in spec order)."""
    core = aggregate_sessions(assign_sessions(events, split, gap_minutes), spec)
    return add_identity(core, identities, spec, at="session_end").select(*spec.session_columns)


# ---------------------------------------------------------------------------------------------
# Incremental recompute: which sessions the newly stored events touch
# ---------------------------------------------------------------------------------------------


def touched_scope(pending: DataFrame, existing: DataFrame, split: str, gap_minutes: int) -> DataFrame:
    """What to recompute: user_id, session_id (null for gap), and [lo, hi], a time range holding
    every event, old and new, of the touched sessions (used to prune event_date partitions).

    gap: per user, the range of the new events widened to every stored session within
    gap_minutes of it; all events of the user in that range are split again. Sessions outside it
    are more than gap_minutes away from everything inside, so they cannot change.
    """
    if split == "session_id":
        new = pending.where(F.col("session_id").isNotNull()).groupBy(*SESSION_KEYS).agg(
            F.min("event_time").alias("lo"), F.max("event_time").alias("hi")
        )
        old = existing.select(*SESSION_KEYS, "session_start", "session_end")
        return new.join(old, list(SESSION_KEYS), "left").select(
            *SESSION_KEYS, F.least("lo", "session_start").alias("lo"), F.greatest("hi", "session_end").alias("hi")
        )
    if split == "day":
        return pending.groupBy("user_id", F.date_format("event_date", "yyyy-MM-dd").alias("session_id")).agg(
            F.min("event_time").alias("lo"), F.max("event_time").alias("hi")
        )
    if split == "gap":
        new = pending.groupBy("user_id").agg(F.min("event_time").alias("lo"), F.max("event_time").alias("hi"))
        gap = F.expr(f"INTERVAL {int(gap_minutes)} MINUTES")
        near = (
            new.alias("n").join(existing.alias("s"), "user_id")
            .where((F.col("s.session_end") >= F.col("n.lo") - gap) & (F.col("s.session_start") <= F.col("n.hi") + gap))
            .groupBy("user_id").agg(F.min("session_start").alias("s_lo"), F.max("session_end").alias("s_hi"))
        )
        return new.join(near, "user_id", "left").select(
            "user_id",
            F.lit(None).cast("string").alias("session_id"),
            F.least("lo", "s_lo").alias("lo"),
            F.greatest("hi", "s_hi").alias("hi"),
        )
    raise ValueError(f"unknown split '{split}'")


def scope_dates(scope: DataFrame) -> DataFrame:
    """The distinct event_date partitions the scope's events can lie in (a small list)."""
    return scope.select(F.explode(F.sequence(F.to_date("lo"), F.to_date("hi"))).alias("event_date")).distinct()


def events_in_scope(events: DataFrame, scope: DataFrame, split: str) -> DataFrame:
    """Every stored event of the touched sessions (old and new)."""
    if split == "session_id":
        return events.join(scope.select(*SESSION_KEYS), list(SESSION_KEYS), "left_semi")
    if split == "day":
        day = F.date_format("event_date", "yyyy-MM-dd")
        return events.join(scope.select("user_id", "session_id").alias("s"),
                           (events["user_id"] == F.col("s.user_id")) & (day == F.col("s.session_id")), "left_semi")
    if split == "gap":
        s = scope.select("user_id", "lo", "hi").alias("s")
        inside = (events["user_id"] == F.col("s.user_id")) & events["event_time"].between(F.col("s.lo"), F.col("s.hi"))
        return events.join(s, inside, "left_semi")
    raise ValueError(f"unknown split '{split}'")


def replaced_sessions(existing: DataFrame, scope: DataFrame, recomputed: DataFrame, split: str) -> DataFrame:
    """Keys of stored sessions that the recompute makes disappear (only the gap split moves ids)."""
    if split != "gap":
        return existing.select(*SESSION_KEYS).limit(0)
    s = scope.select("user_id", "lo", "hi").alias("s")
    overlaps = (
        (existing["user_id"] == F.col("s.user_id"))
        & (existing["session_start"] <= F.col("s.hi")) & (existing["session_end"] >= F.col("s.lo"))
    )
    return existing.join(s, overlaps, "left_semi").select(*SESSION_KEYS).join(
        recomputed.select(*SESSION_KEYS), list(SESSION_KEYS), "left_anti"
    )


def identity_touched(pending: DataFrame, existing: DataFrame, spec: FeatureSpec, exclude: DataFrame) -> DataFrame:
    """Stored sessions (not in `exclude`) whose identity a new identity event can change: those of
    its user that end at or after it. A late `user_updated` thus reaches the sessions after it."""
    since = pending.where(F.col("event_id").isin(*spec.identity.events)).groupBy("user_id").agg(
        F.min("event_time").alias("_since")
    )
    return (
        existing.join(since, "user_id").where(F.col("session_end") >= F.col("_since")).drop("_since")
        .join(exclude.select(*SESSION_KEYS), list(SESSION_KEYS), "left_anti")
    )

