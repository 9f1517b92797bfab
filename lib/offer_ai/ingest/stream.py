"""The ingest as a Structured Streaming query over the raw landing folder (issue #12).

Spark's file source keeps, in a checkpoint under the lake, which files of `raw.root` it has
handed over, so each file is processed exactly once however late it lands and in whichever
date folder: a night the scheduler missed, or an upload that arrives after its day ran, is
picked up by the next run. The source is the binaryFile format reduced to its `path` column:
it lists new files without reading them. Each micro-batch's paths then go through
`ingest_files`, the very steps a batch run takes (parse, quarantine, events, sessions, users),
so malformed lines and unreadable files behave exactly as in batch, and a micro-batch that is
replayed after a crash stores nothing twice (every step is idempotent by key).

Triggers: `available-now` processes every file not processed yet and stops (the nightly
run); `processing-time=<interval>` runs until stopped (SIGTERM or SIGINT: the batch under way
finishes, then the query stops). After each micro-batch `on_batch` (the online refresh) runs.
"""

from __future__ import annotations

import re
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from offer_ai.cli import log
from offer_ai.config import Settings
from offer_ai.errors import UserError
from offer_ai.ingest.feature_spec import FeatureSpec
from offer_ai.ingest.raw_files import JSON_LINES_SUFFIXES
from offer_ai.ingest.sessionize import Tables, ingest_files, ingest_state

AVAILABLE_NOW = "available-now"
_INTERVAL = re.compile(r"^processing-time=(\d+)\s*(s|sec|secs|seconds?|m|min|mins|minutes?)$")
#: the binaryFile source's fixed schema (only `path` is ever read)
_LISTING = "path string, modificationTime timestamp, length long, content binary"
#: Counts that add up over micro-batches.
_TOTALS = ("files", "files_unreadable", "lines_read", "events_accepted", "duplicates", "quarantined",
           "quarantine_rows_added", "held_back", "sessions_inserted", "sessions_updated", "sessions_deleted",
           "users_inserted", "users_updated", "items_changed", "items_written", "online_skipped")


def parse_trigger(text: str) -> str:
    """'available-now', or 'processing-time=<n><unit>' normalised to Spark's 'N seconds'."""
    if text == AVAILABLE_NOW:
        return text
    match = _INTERVAL.match(text.strip())
    if not match:
        raise ValueError(f"expected '{AVAILABLE_NOW}' or 'processing-time=<n>s|m', got '{text}'")
    seconds = int(match.group(1)) * (60 if match.group(2).startswith("m") else 1)
    if seconds < 1:
        raise ValueError("a processing-time trigger needs an interval of at least 1 second")
    return f"processing-time={seconds} seconds"


def checkpoint_path(settings: Settings) -> str:
    return settings.sessionize.checkpoint or f"{settings.lake.root.rstrip('/')}/_checkpoints/sessionize"


def new_files(spark: SparkSession, root: str, max_files: int | None) -> DataFrame:
    """The paths of raw JSON-lines files under `root` (any depth; '_' and '.' names skipped, as in
    batch), as a stream: each file once."""
    suffixes = [s.lstrip(".") for s in JSON_LINES_SUFFIXES]
    globs = ",".join([*suffixes, *(s.upper() for s in suffixes)])  # batch compares them case-blind
    reader = (
        spark.readStream.format("binaryFile").schema(_LISTING)
        .option("pathGlobFilter", f"*.{{{globs}}}")
        .option("recursiveFileLookup", "true")
        # Spark forgets, and then ignores, files older than maxFileAge (default 7 days) behind the
        # newest one it saw: a late upload keeping its original time must still be read.
        .option("maxFileAge", "36500d")
    )
    if max_files:
        reader = reader.option("maxFilesPerTrigger", max_files)
    return reader.load(root).select("path")


def run_stream(
    spark: SparkSession, settings: Settings, spec: FeatureSpec, tables: Tables, max_bad: float, trigger: str,
    on_batch: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run the ingest query until it ends (available-now) or is stopped; return the totals."""
    root = settings.raw.root
    jvm = spark.sparkContext._jvm  # type: ignore[union-attr]
    path = jvm.org.apache.hadoop.fs.Path(root)
    if not path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).exists(path):  # type: ignore[union-attr]
        raise UserError(f"The raw landing folder {root} (raw.root) does not exist.")
    totals: dict[str, Any] = dict.fromkeys(_TOTALS, 0)
    totals.update({"batches": 0, "reconciled": True, "raw_root": root, "checkpoint": checkpoint_path(settings)})
    failures: list[BaseException] = []

    def handle(batch: DataFrame, batch_id: int) -> None:
        try:
            files = sorted(row["path"] for row in batch.collect())  # paths only: at most maxFilesPerTrigger
            if not files:
                return
            mark = ingest_state(spark, tables).mark
            summary = ingest_files(spark, settings, spec, tables, files, max_bad, mark)
            if on_batch is not None:
                summary.update(on_batch(summary))
            for key in _TOTALS:
                totals[key] += summary.get(key) or 0
            totals["batches"] += 1
            totals["reconciled"] = totals["reconciled"] and summary["reconciled"]
            totals["ingested_at"] = summary["ingested_at"]
            log.info("sessionize: micro-batch %d: %d file(s), %d lines, %d new events", batch_id, len(files),
                     summary["lines_read"], summary["events_accepted"])
        except BaseException as exc:  # the query ends; the job reports this error, not Spark's wrapper
            failures.append(exc)
            raise

    writer = (
        new_files(spark, root, settings.sessionize.max_files_per_trigger)
        .writeStream.foreachBatch(handle).option("checkpointLocation", checkpoint_path(settings))
        .queryName("offer-ai sessionize")
    )
    if trigger == AVAILABLE_NOW:
        writer = writer.trigger(availableNow=True)
    else:
        writer = writer.trigger(processingTime=trigger.split("=", 1)[1])
    query = writer.start()
    with _stop_on_signals() as stop:
        try:
            while not query.awaitTermination(1):
                if stop.is_set():  # a clean stop: the batch under way finishes first
                    log.info("sessionize: stopping the stream after the current micro-batch")
                    query.stop()
                    break
        except Exception:
            if failures:
                raise failures[0] from None
            raise
    if failures:
        raise failures[0]
    return totals


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """SIGTERM / SIGINT set an event the main loop checks (a py4j call from a signal handler could
    re-enter the gateway); the previous handlers are put back afterwards."""
    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
