"""Sessions and events -> `users`: one row per user with the latest identity and activity totals.

Pure DataFrame -> DataFrame functions; the job feeds them the users with new events.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from offer_ai.ingest.feature_spec import FeatureSpec
from offer_ai.ingest.sessions import add_identity

ACTIVITY_COLUMNS = ("first_seen", "last_seen", "sessions", "games_played", "purchase_amount")


def build_users(
    new_events: DataFrame, known: DataFrame, sessions: DataFrame, identities: DataFrame, spec: FeatureSpec
) -> DataFrame:
    """`users` rows for the users of `new_events`.

    first_seen / last_seen: the user's first and last event time (any event), combined with the
    stored row (`known`, may be empty) so that only new events need reading; sessions,
    games_played and purchase_amount (lifetime revenue): totals over the user's `sessions`;
    identity: as of the last event, by the same rule as for sessions.
    """
    seen = new_events.groupBy("user_id").agg(
        F.min("event_time").alias("_first"), F.max("event_time").alias("_last")
    )
    seen = seen.join(known.select("user_id", "first_seen", "last_seen"), "user_id", "left").select(
        "user_id",
        F.least("_first", "first_seen").alias("first_seen"),
        F.greatest("_last", "last_seen").alias("last_seen"),
    )
    totals = sessions.join(seen.select("user_id"), "user_id", "left_semi").groupBy("user_id").agg(
        F.count(F.lit(1)).alias("sessions"),
        F.sum("games_played").alias("games_played"),
        # decimal, like the session sums: the total must not depend on the order of addition
        F.sum(F.col("purchase_amount").cast("decimal(38,6)")).cast("double").alias("purchase_amount"),
    )
    rows = seen.join(totals, "user_id", "left").select(
        "user_id",
        "first_seen",
        "last_seen",
        F.coalesce("sessions", F.lit(0)).cast("long").alias("sessions"),
        F.coalesce("games_played", F.lit(0)).cast("long").alias("games_played"),
        F.coalesce("purchase_amount", F.lit(0.0)).alias("purchase_amount"),
    )
    return add_identity(rows, identities, spec, at="last_seen")
