"""The one place a SparkSession is built, and where the venv's Spark runtime is described.

Three ways in, one session: `./spark-submit.sh jobs/x.py` (spark-submit already set the
extensions and master), plain `spark-submit jobs/x.py` inside the venv, and `python jobs/x.py`
or a notebook or pytest (no JVM yet). In each case the builder adds what is missing: the Delta
extension and catalog, UTC, the s3a:// settings of the `storage` section, and — only when
`make venv` has not installed the jars into the venv's Spark (scripts/spark_runtime.py) — the
Delta and S3A packages, resolved by Ivy on start.

Start-up is most of a small job's cost, so a local driver also maps the class-data-sharing
archive that `make venv` builds (JDK AppCDS: the classes Spark, Delta and the jobs load,
pre-parsed): measured on 2 cores, the trivial job through spark-submit takes ~5.5 s with it,
~8.5 s without it, ~11 s with Ivy resolving the packages on every start.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

from pyspark import SparkConf, SparkContext
from pyspark.find_spark_home import _find_spark_home
from pyspark.sql import SparkSession

from offer_ai.config import Settings, StorageSettings
from offer_ai.errors import UserError

#: Delta for Spark 4.2 / Scala 2.13 (DESIGN §8). spark-submit.sh and the Makefile use the same.
DELTA_PACKAGE = "io.delta:delta-spark_4.2_2.13:4.4.0"
DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
#: The Hadoop inside the venv's Spark (pyspark/jars/hadoop-client-api-<version>.jar): the S3A
#: connector must be the same version (tests/test_cluster_config.py checks it against the jar).
HADOOP_VERSION = "3.5.0"
#: s3a:// — hadoop-aws and the two AWS SDK v2 modules it calls (S3, its transfer manager), at
#: the SDK version hadoop-project 3.5.0 pins. hadoop-aws declares the SDK's "bundle" instead:
#: one 686 MB jar of every AWS service; these resolve to ~18 MB (~11 MB not already in Spark).
S3A_PACKAGES: tuple[str, ...] = (
    f"org.apache.hadoop:hadoop-aws:{HADOOP_VERSION}",
    "software.amazon.awssdk:s3:2.35.4",
    "software.amazon.awssdk:s3-transfer-manager:2.35.4",
)
#: Left out of every resolution (spark-submit --exclude-packages, spark.jars.excludes).
PACKAGE_EXCLUDES: tuple[str, ...] = ("software.amazon.awssdk:bundle",)
#: Maven packages the jobs need beyond Spark itself; scripts/spark_runtime.py installs their jars.
SPARK_PACKAGES: tuple[str, ...] = (DELTA_PACKAGE, *S3A_PACKAGES)
#: Delta's log store for concurrent writers on S3 (storage.delta_log_store=dynamodb): not
#: installed by make venv, since the registry these machines reach does not serve it.
DYNAMODB_LOG_STORE_PACKAGE = "io.delta:delta-storage-s3-dynamodb:4.4.0"
DYNAMODB_LOG_STORE_CLASS = "io.delta.storage.S3DynamoDBLogStore"
S3A_FILESYSTEM_CLASS = "org.apache.hadoop.fs.s3a.S3AFileSystem"
#: Hosts that are this machine: an endpoint there is a local stand-in (moto), never AWS.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
#: Beside the jars, the list of packages installed there (spark-submit.sh reads it too).
PACKAGES_MARKER = "offer-ai-packages.txt"
#: The class-data-sharing archive, inside the Spark home it was built for.
CDS_DIR = "offer-ai-cds"
#: JVM options that map the archive; a stale one (another JDK, other jars) is silently ignored.
CDS_OPTIONS = "-XX:SharedArchiveFile={archive} -Xshare:auto -Xlog:cds=off -Xlog:cds+dynamic=off"
#: The driver's collector: the parallel one spends less CPU than G1 on a few cores (sessionize of
#: 1.8 M lines on 2 cores: 115 s with G1, 98 s with it).
GC_OPTIONS = "-XX:+UseParallelGC"
#: OFFER_AI_JIT=quick: compile with C1 only. A short job on small data runs ~20 % faster (no
#: profiled tier-3 code, no C2 compiles competing for the cores); a parse of millions of lines
#: ~35 % slower. `peak` (the default) is the JVM's tiered compilation. bench/README.md has the figures.
JIT_OPTIONS = {"peak": "", "quick": "-XX:TieredStopAtLevel=1"}


def driver_java_options(archive: Path | None = None) -> str:
    """The JVM options of a driver on this machine (= spark-submit.sh's): collector, compiler
    (OFFER_AI_JIT) and, when `archive` is given, the class-data-sharing archive."""
    jit = os.environ.get("OFFER_AI_JIT") or "peak"
    if jit not in JIT_OPTIONS:
        raise UserError(f"OFFER_AI_JIT must be 'quick' or 'peak' (got '{jit}').")
    options = [GC_OPTIONS, JIT_OPTIONS[jit], CDS_OPTIONS.format(archive=archive) if archive else ""]
    return " ".join(o for o in options if o)


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


def is_loopback(url: str | None) -> bool:
    """True for an endpoint or master URL on this machine (http://127.0.0.1:5055, spark://localhost:7077)."""
    return url is not None and urlparse(url).hostname in LOOPBACK_HOSTS


def storage_conf(storage: StorageSettings) -> dict[str, str]:
    """Spark properties for s3a:// and Delta's S3 log store, from the `storage` section.

    `spark.hadoop.*` reaches every executor's Hadoop configuration, so a cluster needs nothing
    else. Dummy keys only for a loopback endpoint, and then always: whatever keys the
    environment holds are not sent to a local stand-in, nor written into Spark's conf.
    """
    conf: dict[str, str] = {}
    if storage.s3_endpoint:
        conf["spark.hadoop.fs.s3a.endpoint"] = storage.s3_endpoint.rstrip("/")
    if storage.s3_region:
        conf["spark.hadoop.fs.s3a.endpoint.region"] = storage.s3_region
    if storage.s3_path_style:
        conf["spark.hadoop.fs.s3a.path.style.access"] = "true"
    if is_loopback(storage.s3_endpoint):
        conf.update({
            "spark.hadoop.fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
            "spark.hadoop.fs.s3a.access.key": "local",
            "spark.hadoop.fs.s3a.secret.key": "local",
        })
    if storage.delta_log_store == "dynamodb":
        prefix = f"spark.io.delta.storage.{DYNAMODB_LOG_STORE_CLASS.rsplit('.', 1)[1]}"
        conf.update({
            "spark.delta.logStore.s3a.impl": DYNAMODB_LOG_STORE_CLASS,
            "spark.delta.logStore.s3.impl": DYNAMODB_LOG_STORE_CLASS,
            f"{prefix}.ddb.tableName": storage.delta_log_table,
            f"{prefix}.ddb.region": storage.delta_log_region,
        })
    return conf


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
    master = submitted.get("spark.master") or settings.spark.master
    local = master.startswith("local")

    defaults: dict[str, str] = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(settings.spark.shuffle_partitions),
        "spark.sql.extensions": DELTA_EXTENSION,
        "spark.sql.catalog.spark_catalog": DELTA_CATALOG,
        # Delta's MERGE and OPTIMIZE on small local tables are slow with Spark's 200-file default.
        "spark.databricks.delta.snapshotPartitions": "2",
        "spark.sql.sources.parallelPartitionDiscovery.parallelism": "4",
        # Constraint propagation multiplies with every aliased CASE of the raw-line parser: the
        # optimizer ran out of a 1 GiB heap on parse -> dedup. It only infers IS NOT NULL filters.
        "spark.sql.constraintPropagation.enabled": "false",
        # smaller files than snappy, and no slower to write here (measured: 71 vs 121 MB of events)
        "spark.sql.parquet.compression.codec": "zstd",
    }
    if local or is_loopback(master):  # a cluster on 127.0.0.1 must reach its driver there too
        defaults.update({"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"})
    if local:
        defaults.update({"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false"})
    if not _launched_by_spark_submit():
        packages = [p for p in submitted.get("spark.jars.packages", "").split(",") if p]
        given = {tuple(p.split(":")[:2]) for p in packages}  # a package given by the user, any version, wins
        wanted = [*SPARK_PACKAGES, *([DYNAMODB_LOG_STORE_PACKAGE] if settings.storage.delta_log_store == "dynamodb" else [])]
        missing = [p for p in wanted if p not in installed_packages() and tuple(p.split(":")[:2]) not in given]
        if missing:
            defaults["spark.jars.packages"] = ",".join(packages + missing)
            defaults["spark.jars.excludes"] = ",".join(PACKAGE_EXCLUDES)
        if local:
            defaults["spark.driver.extraJavaOptions"] = driver_java_options(
                cds_archive() if cds_archive().is_file() else None)
    defaults.update(storage_conf(settings.storage))
    defaults.update(settings.spark.conf)

    for key, value in defaults.items():
        if not submitted.contains(key):
            builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    _require_delta(spark)
    require_storage_classes(spark, settings)
    return spark


def _require_delta(spark: SparkSession) -> None:
    from py4j.java_gateway import JavaClass

    if not isinstance(spark._jvm.io.delta.tables.DeltaTable, JavaClass):  # type: ignore[union-attr]
        raise UserError(
            "Delta Lake is not on Spark's classpath: run the job with ./spark-submit.sh, or pass "
            f"--packages {DELTA_PACKAGE} to spark-submit (make venv installs it into the venv's Spark)."
        )


def _loadable(spark: SparkSession, class_name: str) -> bool:
    return bool(spark._jvm.org.apache.spark.util.Utils.classIsLoadable(class_name))  # type: ignore[union-attr]


def require_storage_classes(spark: SparkSession, settings: Settings) -> None:
    """Fail at start-up, in a sentence, when the config needs a connector Spark lacks —
    not minutes later with "No FileSystem for scheme s3a" or a Delta commit error."""
    s3a = [root for root in (settings.lake.root, settings.raw.root) if urlparse(root).scheme == "s3a"]
    if s3a and not _loadable(spark, S3A_FILESYSTEM_CLASS):
        raise UserError(
            f"{s3a[0]} needs the S3A connector, which is not on Spark's classpath: run the job with ./spark-submit.sh "
            f"after make venv, or pass --packages {','.join(S3A_PACKAGES)} --exclude-packages {','.join(PACKAGE_EXCLUDES)}."
        )
    if settings.storage.delta_log_store == "dynamodb" and not _loadable(spark, DYNAMODB_LOG_STORE_CLASS):
        raise UserError(
            f"storage.delta_log_store is dynamodb but {DYNAMODB_LOG_STORE_CLASS} is not on Spark's classpath: "
            f"pass --packages {DYNAMODB_LOG_STORE_PACKAGE} to ./spark-submit.sh (or install it on the cluster)."
        )
