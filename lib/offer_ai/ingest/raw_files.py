"""Finding and reading raw JSON-lines files (a file, a folder or a glob; local, HDFS or s3a).

Listing goes through Hadoop's FileSystem, like Spark's own, so the same paths work on a cluster.
Inside a folder (recursively) or a glob, only JSON-lines files are read (.jsonl / .json,
optionally .gz, decompressed by Hadoop's codec) and names starting with '_' or '.' are skipped at
any depth (the generator's `_truth/`, Spark's `_SUCCESS`, editors' dot-files); a file named
exactly is read whatever its name.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from offer_ai.errors import UserError

JSON_LINES_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz")
_GLOB_CHARS = set("*?[{")


def list_input_files(spark: SparkSession, paths: Sequence[str]) -> list[str]:
    """Every JSON-lines file under `paths`, as fully qualified URIs, sorted; a path that does not
    exist, or inputs without any such file, are a UserError."""
    jvm = spark.sparkContext._jvm  # type: ignore[union-attr]
    conf = spark.sparkContext._jsc.hadoopConfiguration()  # type: ignore[union-attr]
    found: set[str] = set()
    for text in paths:
        path = jvm.org.apache.hadoop.fs.Path(text)
        fs = path.getFileSystem(conf)
        statuses = fs.globStatus(path)
        is_glob = any(c in _GLOB_CHARS for c in text)
        if statuses is None or len(statuses) == 0:
            raise UserError(f"Input path {text} {'matches no file' if is_glob else 'does not exist'}.")
        for status in statuses:
            if status.isFile():
                name = status.getPath().getName()
                if not is_glob or _is_json_lines(name):
                    found.add(status.getPath().toString())
                continue
            root = status.getPath().toUri().getPath().rstrip("/")
            files = fs.listFiles(status.getPath(), True)
            while files.hasNext():
                child = files.next().getPath()
                relative = child.toUri().getPath()[len(root) + 1 :]
                if _is_json_lines(child.getName()) and not any(p.startswith(("_", ".")) for p in relative.split("/")):
                    found.add(child.toString())
    if not found:
        raise UserError(f"No JSON-lines files (.jsonl or .json, optionally .gz) under {', '.join(paths)}.")
    return sorted(found)


def read_lines(spark: SparkSession, files: Sequence[str]) -> DataFrame:
    """One row per line: `value` (the text) and `source_file` (the file's URI)."""
    return spark.read.text(list(files)).select("value", F.col("_metadata.file_path").alias("source_file"))


def _is_json_lines(name: str) -> bool:
    return name.lower().endswith(JSON_LINES_SUFFIXES)
