"""The first look a data engineer takes at a lake, as small aggregates (notebooks/01_explore.ipynb).

Each function takes a lake table as a Spark DataFrame and returns an *aggregate* DataFrame —
tens to hundreds of rows whatever the data size — so the notebook can ``toPandas()`` it
safely and plot it; nothing here collects raw rows to the driver. Distributions are
histograms computed in Spark (fixed bins), not samples.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F


def events_per_day_and_type(events: DataFrame) -> DataFrame:
    """(event_date, event_id, events): the volume of each event type per UTC day."""
    return events.groupBy("event_date", "event_id").agg(F.count(F.lit(1)).alias("events")).orderBy(
        "event_date", "event_id"
    )


def sessions_per_user(sessions: DataFrame) -> DataFrame:
    """(sessions, users): how many users have each number of sessions — engagement at a glance."""
    per_user = sessions.groupBy("user_id").agg(F.count(F.lit(1)).alias("sessions"))
    return per_user.groupBy("sessions").agg(F.count(F.lit(1)).alias("users")).orderBy("sessions")


def histogram(frame: DataFrame, column: str | Column, edges: Sequence[float], name: str = "value") -> DataFrame:
    """(bin, lower, upper, rows) over fixed bin edges; below the first edge -> bin 0, above the last -> last bin.

    Nulls are counted in a separate bin -1 (a missing win ratio means "no game", not a zero).
    """
    if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError("edges must be at least two strictly increasing numbers.")
    value = F.col(column) if isinstance(column, str) else column
    n_bins = len(edges) - 1
    index = F.lit(0)
    for i, edge in enumerate(edges[1:-1], start=1):
        index = F.when(value >= F.lit(float(edge)), F.lit(i)).otherwise(index)
    index = F.when(value.isNull(), F.lit(-1)).otherwise(index)
    counts = frame.select(index.alias("bin")).groupBy("bin").agg(F.count(F.lit(1)).alias("rows"))
    bounds = frame.sparkSession.createDataFrame(
        [(-1, None, None)] + [(i, float(edges[i]), float(edges[i + 1])) for i in range(n_bins)],
        "bin int, lower double, upper double",
    )
    return (bounds.join(counts, "bin", "left").fillna(0, ["rows"])
            .withColumn("column", F.lit(name)).orderBy("bin"))


def games_and_win_ratio(sessions: DataFrame) -> tuple[DataFrame, DataFrame]:
    """Histograms of games played per session (0 … 30+) and of the win ratio (null = no game)."""
    games = histogram(sessions, "games_played", [float(i) for i in range(0, 31)] + [1e9], "games_played")
    ratio = histogram(sessions, "win_ratio", [i / 10 for i in range(0, 10)] + [1.0 + 1e-9], "win_ratio")
    return games, ratio


def revenue_distribution(sessions: DataFrame) -> DataFrame:
    """Per-user total revenue histogram on log-spaced edges (0, then 0.01 … 1000+): zero-inflated, long-tailed."""
    per_user = sessions.groupBy("user_id").agg(F.sum("purchase_amount").alias("revenue"))
    edges = [0.0, 0.005, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 1e12]
    return histogram(per_user, "revenue", edges, "revenue_per_user")


def offer_take_rate(sessions: DataFrame) -> DataFrame:
    """(offer_type, offer_price, shown, taken, take_rate, revenue_per_shown) of each session's first offer."""
    shown = sessions.where(F.col("offers_shown") > 0)
    return (
        shown.groupBy("offer_type", "offer_price")
        .agg(
            F.count(F.lit(1)).alias("shown"),
            F.count_if(F.col("offer_purchased")).alias("taken"),
        )
        .withColumn("take_rate", F.col("taken") / F.col("shown"))
        .withColumn("revenue_per_shown", F.col("take_rate") * F.col("offer_price"))
        .orderBy("offer_type", "offer_price")
    )


def totals(events: DataFrame, sessions: DataFrame) -> dict[str, float | int | dict[str, int]]:
    """Headline counts (events by type, sessions, users, offers shown and bought, revenue) in one dict."""
    by_type = {r["event_id"]: int(r["n"]) for r in events.groupBy("event_id").agg(F.count(F.lit(1)).alias("n")).collect()}
    row = sessions.agg(
        F.count(F.lit(1)).alias("sessions"),
        F.countDistinct("user_id").alias("users"),
        F.sum("offers_shown").alias("offers_shown"),
        F.count_if(F.col("offer_purchased")).alias("first_offers_taken"),
        F.sum(F.col("purchase_amount").cast("decimal(20, 6)")).alias("revenue"),
    ).first()
    return {
        "events_by_type": by_type,
        "sessions": int(row["sessions"]),
        "users": int(row["users"]),
        "offers_shown": int(row["offers_shown"] or 0),
        "first_offers_taken": int(row["first_offers_taken"] or 0),
        "revenue": round(float(row["revenue"] or 0), 2),
    }


TRAINING_NUMERIC = ("last_session_games_played", "last_session_win_ratio", "prev_week_purchase_amount",
                    "next_week_purchase_amount")


def training_feature_summary(examples: DataFrame) -> DataFrame:
    """(feature, rows, nulls, zeros, mean, p50, p90, p99, max) of each numeric training column."""
    parts = []
    for name in TRAINING_NUMERIC:
        col = F.col(name).cast("double")
        parts.append(examples.agg(
            F.lit(name).alias("feature"),
            F.count(F.lit(1)).alias("rows"),
            F.count_if(col.isNull()).alias("nulls"),
            F.count_if(col == 0).alias("zeros"),
            F.mean(col).alias("mean"),
            F.percentile_approx(col, 0.5).alias("p50"),
            F.percentile_approx(col, 0.9).alias("p90"),
            F.percentile_approx(col, 0.99).alias("p99"),
            F.max(col).alias("max"),
        ))
    out = parts[0]
    for part in parts[1:]:
        out = out.unionByName(part)
    return out


def training_categorical_counts(examples: DataFrame) -> DataFrame:
    """(feature, value, rows, complete) for country, facebook_connected and offer_type of the training rows."""
    parts = [
        examples.groupBy(F.lit(name).alias("feature"), F.coalesce(F.col(name).cast("string"), F.lit("(null)")).alias("value"))
        .agg(F.count(F.lit(1)).alias("rows"), F.count_if("label_complete").alias("complete"))
        for name in ("country", "facebook_connected", "offer_type")
    ]
    out = parts[0]
    for part in parts[1:]:
        out = out.unionByName(part)
    return out.orderBy("feature", F.desc("rows"))


def bin_labels(hist: "pd.DataFrame", integer: bool = False) -> list[str]:  # noqa: F821 - pandas only for the type
    """Readable labels of a collected :func:`histogram`: 'null', '0' for a [0, ~0) zero bin, '[5, 10)', '100+'.

    ``integer``: the values are counts, so a unit-wide bin [k, k+1) is just 'k'.
    """
    labels = []
    for b, lo, hi in zip(hist["bin"], hist["lower"], hist["upper"]):
        if b == -1:
            labels.append("null")
        elif lo == 0 and hi <= 0.01:
            labels.append("0")
        elif hi >= 1e8:
            labels.append(f"{lo:g}+")
        elif integer and hi - lo == 1 and float(lo).is_integer():
            labels.append(f"{lo:g}")
        else:
            labels.append(f"[{lo:g}, {hi:g})")
    return labels
