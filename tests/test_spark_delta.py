"""The session the jobs build is Delta-enabled, UTC and local: write, MERGE, read back."""

from __future__ import annotations

from chispa import assert_df_equality
from delta.tables import DeltaTable
from pyspark.sql import Row
from pyspark.sql import functions as F


def test_session_is_utc_local_and_small(spark):
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    assert spark.sparkContext.master == "local[2]"
    assert spark.conf.get("spark.sql.shuffle.partitions") == "2"
    assert spark.conf.get("spark.driver.host") == "127.0.0.1"


def test_naive_timestamps_are_read_as_utc(spark):
    row = spark.sql("select unix_timestamp(timestamp'2026-01-01 00:00:00') as s").first()
    assert row.s == 1767225600  # worked out: 56 years * 365 d + 14 leap days = 20454 d * 86400 s


def test_delta_write_merge_read_back(spark, tmp_path):
    path = str(tmp_path / "sessions")
    spark.createDataFrame(
        [("u1", "s1", 2), ("u1", "s2", 5), ("u2", "s3", 1)], "user_id string, session_id string, games_played int"
    ).write.format("delta").save(path)

    updates = spark.createDataFrame(
        [("u1", "s2", 7), ("u3", "s4", 4)], "user_id string, session_id string, games_played int"
    )
    (
        DeltaTable.forPath(spark, path).alias("t")
        .merge(updates.alias("u"), "t.user_id = u.user_id and t.session_id = u.session_id")
        .whenMatchedUpdateAll()
        .whenNotMatchedInsertAll()
        .execute()
    )

    expected = spark.createDataFrame(
        [("u1", "s1", 2), ("u1", "s2", 7), ("u2", "s3", 1), ("u3", "s4", 4)],
        "user_id string, session_id string, games_played int",
    )
    actual = spark.read.format("delta").load(path)
    assert_df_equality(actual, expected, ignore_row_order=True)
    history = DeltaTable.forPath(spark, path).history().select("operation").orderBy("version")
    assert [r.operation for r in history.collect()] == ["WRITE", "MERGE"]


def test_delta_time_travel_keeps_the_version_before_the_merge(spark, tmp_path):
    path = str(tmp_path / "t")
    spark.range(3).withColumn("v", F.lit(1)).write.format("delta").save(path)
    spark.range(3).withColumn("v", F.lit(2)).write.format("delta").mode("overwrite").save(path)
    old = spark.read.format("delta").option("versionAsOf", 0).load(path)
    assert sorted(r.v for r in old.collect()) == [1, 1, 1]
    assert Row(v=2) in spark.read.format("delta").load(path).select("v").distinct().collect()
