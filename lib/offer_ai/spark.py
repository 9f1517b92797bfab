"""The one place a SparkSession is built, and where the venv's Spark runtime is described.

Three ways in, one session: `./spark-submit.sh jobs/x.py` (spark-submit already set the
extensions and master), plain `spark-submit jobs/x.py` inside the venv, and `python jobs/x.py`
or a notebook or pytest (no JVM yet). In each case the builder adds what is missing: the Delta
extension and catalog, UTC, and — only when `make venv` has not installed the Delta jars into
the venv's Spark (scripts/spark_runtime.py) — the Delta packages, resolved by Ivy on start.

Start-up is most of a small job's cost, so a local driver also maps the class-data-sharing
archive that `make venv` builds (JDK AppCDS: the classes Spark, Delta and the jobs load,
pre-parsed): measured on 2 cores, the trivial job through spark-submit takes ~5.5 s with it,
~8.5 s without it, ~11 s with Ivy resolving the packages on every start.
"""

from __future__ import annotations

import os
from pathlib import Path

from pyspark import SparkConf, SparkContext
from pyspark.find_spark_home import _find_spark_home
from pyspark.sql import SparkSession

from offer_ai.config import Settings
from offer_ai.errors import UserError

#: Delta for Spark 4.2 / Scala 2.13 (DESIGN §8). spark-submit.sh and the Makefile use the same.
DELTA_PACKAGE = "io.delta:delta-spark_4.2_2.13:4.4.0"
DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
#: Maven packages the jobs need beyond Spark itself; scripts/spark_runtime.py installs their jars.
SPARK_PACKAGES: tuple[str, ...] = (DELTA_PACKAGE,)
#: Beside the jars, the list of packages installed there (spark-submit.sh reads it too).
PACKAGES_MARKER = "offer-ai-packages.txt"
#: The class-data-sharing archive, inside the Spark home it was built for.
CDS_DIR = "offer-ai-cds"
#: JVM options that map the archive; a stale one (another JDK, other jars) is silently ignored.
CDS_OPTIONS = "-XX:SharedArchiveFile={archive} -Xshare:auto -Xlog:cds=off -Xlog:cds+dynamic=off"


def spark_home() -> Path:
    """The Spark distribution pyspark runs (the venv's, normally)."""
    return Path(_find_spark_home())


def installed_packages() -> set[str]:
    """The SPARK_PACKAGES whose jars are already on Spark's own classpath."""
    marker = spark_home() / "jars" / PACKAGES_MARKER
    lines = marker.read_text().splitlines() if marker.is_file() else []
    return {line for line in lines if line and not line.startswith("jar ")}


def cds_archive() -> Path:
    return spark_home() / CDS_DIR / "classes.jsa"


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
        given = {tuple(p.split(":")[:2]) for p in packages}  # a package given by the user, any version, wins
        missing = [p for p in SPARK_PACKAGES if p not in installed_packages() and tuple(p.split(":")[:2]) not in given]
        if missing:
            defaults["spark.jars.packages"] = ",".join(packages + missing)
        if local and cds_archive().is_file():
            defaults["spark.driver.extraJavaOptions"] = CDS_OPTIONS.format(archive=cds_archive())
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
            f"--packages {DELTA_PACKAGE} to spark-submit (make venv installs it into the venv's Spark)."
        )
