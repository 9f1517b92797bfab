"""Delta tables of the lake (DESIGN §3): create-if-missing, append-unseen-keys, upsert, watermarks.

Path-based tables (`<lake root>/<name>`), so any Delta reader opens them without a metastore.
Every write is one atomic commit and idempotent by key (an append of the keys the table does
not hold yet, or a MERGE that changes only rows whose values differ), which is what makes a
rerun of a job leave every table as it was.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, Observation, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

_USER_METADATA = "spark.databricks.delta.commitInfo.userMetadata"


#: For tables a night updates a few rows per file of: deletion vectors mark the old rows instead
#: of rewriting whole files, so a MERGE writes what changed, not the history around it.
UPDATED_IN_PLACE = {"delta.enableDeletionVectors": "true"}


@dataclass(frozen=True)
class MergeCounts:
    inserted: int = 0
    updated: int = 0
    deleted: int = 0


def exists(spark: SparkSession, path: str) -> bool:
    return DeltaTable.isDeltaTable(spark, path)


def read(spark: SparkSession, path: str) -> DataFrame:
    return spark.read.format("delta").load(path)


def empty(spark: SparkSession, schema: StructType | str) -> DataFrame:
    """An empty DataFrame built in the JVM (createDataFrame([]) would start Python workers)."""
    fields = StructType.fromDDL(schema) if isinstance(schema, str) else schema
    return spark.range(0).select(*[F.lit(None).cast(f.dataType).alias(f.name) for f in fields.fields])


def read_or_empty(spark: SparkSession, path: str, schema: StructType | str) -> DataFrame:
    """The table, or an empty DataFrame of `schema` when it does not exist yet."""
    return read(spark, path) if exists(spark, path) else empty(spark, schema)


def qualified(spark: SparkSession, path: str) -> str:
    """``path`` as a fully qualified URI of its file system (``file:/abs/…``, ``s3a://…``).

    Delta's SQL names a table by path only when the path is absolute: a relative one such as
    ``demo-output/lake/events`` is read as a table *name* and refused. Hadoop qualifies it the
    way every reader and writer resolves it (against the working directory locally, the user's
    home on HDFS), so the table is the same one either way.
    """
    jvm = spark.sparkContext._jvm
    hadoop_path = jvm.org.apache.hadoop.fs.Path(path)
    fs = hadoop_path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    return str(fs.makeQualified(hadoop_path).toString())


def ensure_table(
    spark: SparkSession,
    path: str,
    schema: StructType,
    partition_by: Sequence[str] = (),
    properties: dict[str, str] | None = None,
) -> bool:
    """Create the table if missing (True when it was created); add columns `schema` has and the
    table lacks (a new feature in features.yaml becomes a new, initially null, column rather than
    a failed MERGE), and `properties` it does not have yet."""
    if not exists(spark, path):
        builder = DeltaTable.createIfNotExists(spark).location(qualified(spark, path)).addColumns(schema)
        if partition_by:
            builder = builder.partitionedBy(*partition_by)
        for key, value in (properties or {}).items():
            builder = builder.property(key, value)
        builder.execute()
        return True
    current = set(read(spark, path).columns)
    missing = [f for f in schema.fields if f.name not in current]
    if missing:
        columns = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in missing)
        spark.sql(f"ALTER TABLE delta.`{qualified(spark, path)}` ADD COLUMNS ({columns})")
    if properties:  # a table made by an older version gets them once
        ensure_properties(spark, path, properties)
    return False


def ensure_properties(spark: SparkSession, path: str, properties: dict[str, str]) -> None:
    """Set the table properties the table does not have yet (one ALTER, only when needed)."""
    table = f"delta.`{qualified(spark, path)}`"
    have = {r["key"]: r["value"] for r in spark.sql(f"SHOW TBLPROPERTIES {table}").collect()}
    wanted = {k: v for k, v in properties.items() if have.get(k) != v}
    if wanted:
        pairs = ", ".join(f"'{k}' = '{v}'" for k, v in wanted.items())
        spark.sql(f"ALTER TABLE {table} SET TBLPROPERTIES ({pairs})")


def append(spark: SparkSession, path: str, source: DataFrame) -> int:
    """Append rows (to a table known to hold none of their keys); return how many were written.

    Cheaper than a MERGE into a table that was just created: no join, no second pass."""
    rows = Observation("appended")
    source.observe(rows, F.count(F.lit(1)).alias("rows")).write.format("delta").mode("append").save(path)
    return int(rows.get["rows"])  # counted as they were written (an empty append leaves no commit to read)


def append_unseen(
    spark: SparkSession, path: str, source: DataFrame, keys: Sequence[str], target_filter: Column | None = None
) -> int:
    """Append the source rows whose key the table does not hold; return how many were appended.

    One read of the target's keys (`target_filter` prunes it: it must not exclude a row that
    could match) and one append — about half the Spark jobs of an
    insert-only MERGE, which also materialises a cached source first. Unlike a MERGE, two
    writers appending at once are not checked against each other: callers hold the run lock.
    """
    existing = read(spark, path)
    if target_filter is not None:
        existing = existing.where(target_filter)
    return append(spark, path, source.join(existing.select(*keys), list(keys), "left_anti"))


def upsert(
    spark: SparkSession,
    path: str,
    source: DataFrame,
    keys: Sequence[str],
    delete_flag: str | None = None,
    target_filter: Column | None = None,
) -> MergeCounts:
    """MERGE by key: insert new keys, update rows whose values differ (null-safe), and, where
    `delete_flag` is true in the source, delete the row. Unchanged rows are not rewritten, so a
    recompute that finds nothing new commits nothing. `target_filter` (on alias t) limits the
    rows that can match, so that files outside it are skipped by their statistics."""
    columns = [c for c in source.columns if c != delete_flag]
    values = {f"`{c}`": f"s.`{c}`" for c in columns}
    condition = F.expr(" AND ".join(f"t.`{k}` = s.`{k}`" for k in keys))
    if target_filter is not None:
        condition = condition & target_filter
    differs = " OR ".join(f"NOT (t.`{c}` <=> s.`{c}`)" for c in columns if c not in keys) or "false"
    keep = f"NOT s.`{delete_flag}`" if delete_flag else "true"
    builder = DeltaTable.forPath(spark, path).alias("t").merge(source.alias("s"), condition)
    if delete_flag:
        builder = builder.whenMatchedDelete(condition=f"s.`{delete_flag}`")
    builder = builder.whenMatchedUpdate(condition=f"{keep} AND ({differs})", set=values)
    builder = builder.whenNotMatchedInsert(condition=keep, values=values)
    return _counts(builder.execute())


def _counts(result: DataFrame | None) -> MergeCounts:
    row = result.first() if result is not None else None
    if row is None:
        return MergeCounts()
    return MergeCounts(
        inserted=int(row["num_inserted_rows"] or 0),
        updated=int(row["num_updated_rows"] or 0),
        deleted=int(row["num_deleted_rows"] or 0),
    )


@contextmanager
def commit_metadata(spark: SparkSession, values: dict[str, Any]) -> Iterator[None]:
    """Record `values` (JSON) in the commitInfo.userMetadata of the commits made inside."""
    previous = spark.conf.get(_USER_METADATA, None)
    spark.conf.set(_USER_METADATA, json.dumps(values, sort_keys=True, default=str))
    try:
        yield
    finally:
        if previous is None:
            spark.conf.unset(_USER_METADATA)
        else:
            spark.conf.set(_USER_METADATA, previous)


def latest_metadata(spark: SparkSession, path: str, key: str) -> Any | None:
    """The value of `key` in the newest commit that recorded it, else None."""
    recorded = latest_commit_metadata(spark, path, key)
    return None if recorded is None else recorded[key]


def latest_commit_metadata(spark: SparkSession, path: str, key: str) -> dict[str, Any] | None:
    """The userMetadata (a dict) of the newest commit whose metadata holds `key`, else None.

    Read straight from the table's `_delta_log/` through Hadoop's FileSystem, newest commit
    first: no Spark job (DeltaTable.history is one), and no fixed look-back, so any number of
    maintenance commits (OPTIMIZE, VACUUM, ALTER) since the last write cannot hide the value.
    Only commits Delta has already cleaned up (log retention, 30 days by default) are out of
    reach; then the answer is None, as for a table that never recorded the key.
    """
    for info in _commit_infos_newest_first(spark, path):
        try:
            recorded = json.loads(info.get("userMetadata") or "null")
        except ValueError:
            continue
        if isinstance(recorded, dict) and key in recorded:
            return recorded
    return None


_COMMIT_FILE = re.compile(r"^(\d{20})\.json$")


def _commit_infos_newest_first(spark: SparkSession, path: str) -> Iterator[dict[str, Any]]:
    """The commitInfo action of each commit in the table's log, newest first (read lazily)."""
    jvm = spark.sparkContext._jvm  # type: ignore[union-attr]
    log_dir = jvm.org.apache.hadoop.fs.Path(f"{path.rstrip('/')}/_delta_log")
    fs = log_dir.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())  # type: ignore[union-attr]
    if not fs.exists(log_dir):
        return
    names = sorted((s.getPath().getName() for s in fs.listStatus(log_dir)), reverse=True)
    for name in names:
        if not _COMMIT_FILE.match(name):
            continue
        stream = fs.open(jvm.org.apache.hadoop.fs.Path(log_dir, name))
        try:
            text = jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")
        finally:
            stream.close()
        for line in text.splitlines():
            if line.startswith('{"commitInfo"'):
                yield json.loads(line)["commitInfo"]
                break
