"""offer_ai.features.exploration: the explore notebook's aggregates on tiny hand-made tables."""

from __future__ import annotations

import pytest

from offer_ai.features import exploration as ex


def test_histogram_counts_rows_per_fixed_bin_with_nulls_apart(spark):
    frame = spark.createDataFrame([(v,) for v in (None, 0.0, 0.5, 1.0, 7.0, 100.0, -3.0)], "x double")
    hist = ex.histogram(frame, "x", [0, 1, 10, 1e9], "x").toPandas()
    assert hist[["bin", "rows"]].values.tolist() == [[-1, 1], [0, 3], [1, 2], [2, 1]]  # -3 falls in the first bin
    assert ex.bin_labels(hist) == ["null", "[0, 1)", "[1, 10)", "10+"]
    assert ex.bin_labels(hist, integer=True)[1] == "0"
    with pytest.raises(ValueError, match="increasing"):
        ex.histogram(frame, "x", [1, 1])


def test_sessions_per_user_and_take_rate_by_offer(spark):
    sessions = spark.createDataFrame(
        [("u1", 1, "xmas", 4.99, True), ("u1", 0, None, None, None), ("u2", 2, "xmas", 4.99, False),
         ("u2", 1, "vip_pass", 49.99, True), ("u2", 1, "xmas", 4.99, False)],
        "user_id string, offers_shown int, offer_type string, offer_price double, offer_purchased boolean")
    assert ex.sessions_per_user(sessions).toPandas().values.tolist() == [[2, 1], [3, 1]]
    take = ex.offer_take_rate(sessions).toPandas()
    assert take[["offer_type", "offer_price", "shown", "taken"]].values.tolist() == [
        ["vip_pass", 49.99, 1, 1], ["xmas", 4.99, 3, 1]]
    assert take["take_rate"].tolist() == pytest.approx([1.0, 1 / 3])
    assert take["revenue_per_shown"].tolist() == pytest.approx([49.99, 4.99 / 3])
