"""The one place a SparkSession is built.

Three ways in, one session: `./spark-submit.sh jobs/x.py` (spark-submit already set the Delta
packages, extensions and master), plain `spark-submit jobs/x.py` inside the venv (`make venv`
writes the same settings into the venv's spark-defaults.conf), and `python jobs/x.py` or a
notebook or pytest (no JVM yet: this builder adds the Delta packages itself, the way
`configure_spark_with_delta_pip` does).
"""

from __future__ import annotations

import os

from pyspark import SparkConf, SparkContext
from pyspark.sql import SparkSession

from offer_ai.config import Settings
from offer_ai.errors import UserError

#: Delta for Spark 4.2 / Scala 2.13 (DESIGN §8). spark-submit.sh and the Makefile use the same.
DELTA_PACKAGE = "io.delta:delta-spark_4.2_2.13:4.4.0"
DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"


def _launched_by_spark_submit() -> bool:
    """spark-submit starts the JVM first and hands Python the gateway through these variables."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def build_spark(settings: Settings, app_name: str | None = None) -> SparkSession:
    """Return the active session, or build one configured for Delta, UTC and `settings.spark`.

    What spark-submit was told (--master, --conf) wins over the config file, so the same job
    runs unchanged on YARN or Kubernetes.
    """
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    if _launched_by_spark_submit():
        # Connect to spark-submit's JVM first: only then does SparkConf() see what it was given.
        SparkContext._ensure_initialized()
    submitted = SparkConf()
    builder = SparkSession.builder.appName(app_name or settings.spark.app_name)
    if not submitted.contains("spark.master"):
        builder = builder.master(settings.spark.master)
    local = (submitted.get("spark.master") or settings.spark.master).startswith("local")

    defaults: dict[str, str] = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(settings.spark.shuffle_partitions),
        "spark.sql.extensions": DELTA_EXTENSION,
        "spark.sql.catalog.spark_catalog": DELTA_CATALOG,
        # Delta's MERGE and OPTIMIZE on small local tables are slow with Spark's 200-file default.
        "spark.databricks.delta.snapshotPartitions": "2",
        "spark.sql.sources.parallelPartitionDiscovery.parallelism": "4",
    }
    if local:
        defaults.update({
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
        })
    if not _launched_by_spark_submit():
        packages = [p for p in submitted.get("spark.jars.packages", "").split(",") if p]
        if not any(p.startswith("io.delta:") for p in packages):
            packages.append(DELTA_PACKAGE)
        defaults["spark.jars.packages"] = ",".join(packages)
    defaults.update(settings.spark.conf)

    for key, value in defaults.items():
        if not submitted.contains(key):
            builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    _require_delta(spark)
    return spark


def _require_delta(spark: SparkSession) -> None:
    from py4j.java_gateway import JavaClass

    if not isinstance(spark._jvm.io.delta.tables.DeltaTable, JavaClass):  # type: ignore[union-attr]
        raise UserError(
            "Delta Lake is not on Spark's classpath: run the job with ./spark-submit.sh, or pass "
            f"--packages {DELTA_PACKAGE} to spark-submit."
        )
