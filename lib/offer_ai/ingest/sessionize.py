"""The storage steps of `sessionize`: raw batch -> quarantine and events, then the sessions and
users the new events touch. Each step is one Delta MERGE (lake.py) of a pure transform's output
(events.py, sessions.py, users.py).

Which events are "new" for sessions and users: those stored after the watermark that the last
successful sessions/users MERGE recorded in its commit. So a run that crashed between storing
events and updating sessions is completed by the next run (even with no new input), and a
rerun with nothing new recomputes nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlparse

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from offer_ai import faults, lake
from offer_ai.cli import JobFailed, log, step
from offer_ai.config import SessionizeSettings, Settings
from offer_ai.errors import UserError
from offer_ai.ingest.events import (
    EVENTS_SCHEMA,
    QUARANTINE_SCHEMA,
    REASONS,
    ParseLimits,
    accepted_events,
    distinct_events,
    parse_lines,
    quarantine_rows,
)
from offer_ai.ingest.feature_spec import SESSION_KEYS, FeatureSpec
from offer_ai.ingest.raw_files import read_lines
from offer_ai.ingest.sessions import (
    add_identity,
    aggregate_sessions,
    assign_sessions,
    build_sessions,
    events_in_scope,
    identity_events,
    identity_touched,
    replaced_sessions,
    scope_dates,
    touched_scope,
)
from offer_ai.ingest.users import build_users

WATERMARK = "sessionize.events_ingested_through"
#: The FeatureSpec.check_key of the definition the last successful run checked and used.
SPEC_CHECKED = "sessionize.spec_checked"
#: Stats only on the columns that prune: a long payload is not worth min/max statistics.
EVENTS_PROPERTIES = {"delta.dataSkippingStatsColumns": "event_time,user_id,session_id,event_id,ingested_at"}


@dataclass(frozen=True)
class Tables:
    events: str
    quarantine: str
    sessions: str
    users: str


@dataclass
class BatchCounts:
    lines_read: int = 0
    quarantined_by_reason: dict[str, int] = field(default_factory=dict)
    valid: int = 0
    distinct_valid: int = 0
    dates: list[dt.date] = field(default_factory=list)
    #: the files the rejected lines came from (a rerun's quarantine rows can only be in those)
    quarantined_files: list[str] = field(default_factory=list)

    @property
    def quarantined(self) -> int:
        return sum(self.quarantined_by_reason.values())

    @property
    def bad_ratio(self) -> float:
        return round(self.quarantined / self.lines_read, 6) if self.lines_read else 0.0

    def reconciliation(self, accepted: int | None) -> dict[str, Any]:
        """lines read = events accepted + duplicates + quarantined (+ held back: the valid lines of
        a batch that was not loaded, `accepted` None)."""
        loaded = accepted is not None
        accepted = accepted or 0
        duplicates = self.valid - accepted if loaded else 0
        held_back = 0 if loaded else self.valid
        return {
            "lines_read": self.lines_read, "events_loaded": loaded, "events_accepted": accepted,
            "duplicates": duplicates,
            "duplicates_within_input": self.valid - self.distinct_valid if loaded else 0,
            "duplicates_already_stored": self.distinct_valid - accepted if loaded else 0,
            "quarantined": self.quarantined, "quarantined_by_reason": self.quarantined_by_reason,
            "held_back": held_back, "bad_ratio": self.bad_ratio,
            "reconciled": self.lines_read == accepted + duplicates + self.quarantined + held_back,
        }


def parse_limits(settings: SessionizeSettings) -> ParseLimits:
    """The configured bounds on parsed values (sessionize.max_amount, ...)."""
    earliest = settings.earliest_event_time
    return ParseLimits(
        max_amount=settings.max_amount,
        max_future=dt.timedelta(hours=settings.max_future_hours),
        earliest_event_time=earliest.replace(tzinfo=dt.timezone.utc) if earliest.tzinfo is None else earliest,
        max_id_length=settings.max_id_length,
        max_text_length=settings.max_text_length,
    )


def require_utc(spark: SparkSession) -> None:
    """event_date and the day split are UTC days: a session in another zone would shift them."""
    zone = spark.conf.get("spark.sql.session.timeZone")
    if zone not in ("UTC", "Etc/UTC", "Z", "+00:00"):
        raise UserError(f"spark.sql.session.timeZone must be UTC for sessionize (got {zone}).")


@dataclass(frozen=True)
class IngestState:
    """What the last successful run left behind, read from the sessions and users commits."""

    #: Events stored up to this time are reflected in both sessions and users (None: rebuild).
    mark: dt.datetime | None
    #: The check key of the feature definition that run checked (None: check it now).
    spec_checked: str | None


def ingest_state(spark: SparkSession, tables: Tables) -> IngestState:
    recorded = [lake.latest_commit_metadata(spark, path, WATERMARK) for path in (tables.sessions, tables.users)]
    if any(r is None for r in recorded):
        return IngestState(None, None)
    mark = min(dt.datetime.fromisoformat(r[WATERMARK]) for r in recorded)  # type: ignore[index]
    checked = {r.get(SPEC_CHECKED) for r in recorded}  # type: ignore[union-attr]
    return IngestState(mark, checked.pop() if len(checked) == 1 else None)


def ingest_time(mark: dt.datetime | None) -> dt.datetime:
    """Now (UTC, milliseconds), kept after the watermark should the clock have gone back."""
    now = dt.datetime.now(dt.timezone.utc)
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)
    return max(now, mark + dt.timedelta(milliseconds=1)) if mark else now


@dataclass(frozen=True)
class UnreadableFile:
    """A raw file Spark could not read (a truncated gzip, a file without read permission)."""

    path: str
    error: str


_FAILED_FILE = re.compile(r"Encountered error while reading file (\S+?)\.(?:\s|$)")


def read_batch(
    spark: SparkSession, files: list[str], ingested_at: dt.datetime, limits: ParseLimits
) -> tuple[DataFrame, BatchCounts, list[UnreadableFile]]:
    """Parse and cache the lines of `files` (cache_batch). A file Spark cannot read is set aside
    with its error and the rest are read again: one bad file must not fail the day, nor keep
    failing it on every retry. The set-aside files are recorded in the quarantine."""
    remaining, unreadable = list(files), []
    while True:
        parsed = parse_lines(read_lines(spark, remaining), ingested_at, limits) if remaining else None
        if parsed is None:
            return _empty_batch(spark), BatchCounts(quarantined_by_reason=dict.fromkeys(REASONS, 0)), unreadable
        try:
            batch, counts = cache_batch(parsed)
            return batch, counts, unreadable
        except Exception as exc:  # noqa: BLE001 - only a read failure naming one of our files is handled
            parsed.unpersist()
            failed = _failed_file(exc, remaining)
            if failed is None:
                raise
            remaining.remove(failed)
            error = str(exc).splitlines()[1] if len(str(exc).splitlines()) > 1 else str(exc)
            cause = _root_cause(exc)
            unreadable.append(UnreadableFile(failed, f"{error.split(': ', 1)[-1].strip()} ({cause})" if cause else error))
            log.warning("sessionize: %s cannot be read (%s); it is set aside and the other files are read", failed,
                        cause or "see Spark's log")


def _failed_file(exc: Exception, files: list[str]) -> str | None:
    match = _FAILED_FILE.search(str(exc))
    if not match:
        return None
    wanted = _same_file_key(match.group(1))
    return next((f for f in files if _same_file_key(f) == wanted), None)


def _same_file_key(uri: str) -> tuple[str, str, str]:
    """'file:/x' and 'file:///x' name one file: compare scheme, host and the decoded path."""
    parts = urlparse(uri)
    return parts.scheme, parts.netloc, unquote(parts.path)


def _root_cause(exc: Exception) -> str | None:
    """The innermost Java cause ('java.io.EOFException: Unexpected end of input stream')."""
    java = getattr(exc, "java_exception", None)
    if java is None:
        return None
    cause = java
    while cause.getCause() is not None and cause.getCause() != cause:
        cause = cause.getCause()
    return str(cause.toString())


def _empty_batch(spark: SparkSession) -> DataFrame:
    """No readable line: a parsed batch with no rows (every later step then has nothing to do)."""
    lines = lake.empty(spark, "value string, source_file string")
    return parse_lines(lines, dt.datetime.now(dt.timezone.utc))


def unreadable_rows(spark: SparkSession, unreadable: list[UnreadableFile], ingested_at: dt.datetime) -> DataFrame:
    """One `events_quarantine` row per file set aside: reason unreadable_file, the error as its text."""
    rows = [(hashlib.sha256(f"{u.path}\u0001unreadable_file".encode()).hexdigest(), "unreadable_file",
             ["unreadable_file"], u.error, u.path, ingested_at) for u in unreadable]
    return spark.createDataFrame(rows, QUARANTINE_SCHEMA)


def cache_batch(parsed: DataFrame) -> tuple[DataFrame, BatchCounts]:
    """Cache the parsed batch (the input is read and parsed once) and count it in the same pass.

    The count of distinct valid events is not taken here (a distinct count per group costs a
    second shuffle): the events write reports it (`store_events`)."""
    parsed = parsed.persist(StorageLevel.MEMORY_AND_DISK)
    rejected_file = F.when(F.col("reason").isNotNull(), F.col("source_file")).alias("rejected_file")
    rows = parsed.groupBy("reason", "event_date", rejected_file).agg(F.count(F.lit(1)).alias("lines")).collect()
    counts = BatchCounts(quarantined_by_reason=dict.fromkeys(REASONS, 0))
    dates: set[dt.date] = set()
    files: set[str] = set()
    for row in rows:
        counts.lines_read += row["lines"]
        if row["reason"] is None:
            counts.valid += row["lines"]
            dates.add(row["event_date"])
        else:
            counts.quarantined_by_reason[row["reason"]] += row["lines"]
            files.add(row["rejected_file"])
    counts.dates, counts.quarantined_files = sorted(dates), sorted(files)
    return parsed, counts


def store_quarantine(
    spark: SparkSession, path: str, parsed: DataFrame, counts: BatchCounts,
    unreadable: list[UnreadableFile] | None = None, ingested_at: dt.datetime | None = None,
) -> int:
    """Add the batch's rejected lines (and a row per unreadable file) not stored yet; return how
    many rows were added."""
    created = lake.ensure_table(spark, path, QUARANTINE_SCHEMA)
    unreadable = unreadable or []
    if not counts.quarantined and not unreadable:
        return 0
    rows = quarantine_rows(parsed) if counts.quarantined else lake.empty(spark, QUARANTINE_SCHEMA)
    if unreadable:
        assert ingested_at is not None
        rows = rows.unionByName(unreadable_rows(spark, unreadable, ingested_at))
    files = [*counts.quarantined_files, *(u.path for u in unreadable)]
    return lake.append(spark, path, rows) if created else lake.append_unseen(
        spark, path, rows, ["quarantine_key"], F.col("source_file").isin(files))


def store_events(spark: SparkSession, path: str, parsed: DataFrame, counts: BatchCounts) -> int:
    """Insert the batch's events whose key is not stored yet; only the batch's days are scanned.

    Returns how many were inserted, and sets `counts.distinct_valid`: from the write's own metrics
    when the table is new, else by counting the deduplicated batch (a MERGE that inserts nothing
    does not commit, so it has no metrics to read)."""
    created = lake.ensure_table(spark, path, EVENTS_SCHEMA, partition_by=["event_date"], properties=EVENTS_PROPERTIES)
    if not counts.valid:
        return 0
    events = distinct_events(accepted_events(parsed))
    if created:
        inserted = lake.append(spark, path, events)
        counts.distinct_valid = inserted
        return inserted
    counts.distinct_valid = events.count()
    return lake.append_unseen(spark, path, events, ["event_date", "event_key"], F.col("event_date").isin(counts.dates))


def ingest_files(
    spark: SparkSession, settings: Settings, spec: FeatureSpec, tables: Tables, files: list[str], max_bad: float,
    mark: dt.datetime | None,
) -> dict[str, Any]:
    """What one sessionize run does with a list of raw files, for the batch job and for each
    micro-batch of the stream alike: parse and count, quarantine, events, then the sessions and
    users the new events touch. Returns the run's summary; above `max_bad` the quarantine is
    written and JobFailed raised with the counts (events, sessions and users unchanged)."""
    split, gap = settings.sessionize.split, settings.sessionize.gap_minutes
    ingested_at = ingest_time(mark)
    with step("parse"):
        batch, counts, unreadable = read_batch(spark, files, ingested_at, parse_limits(settings.sessionize))
    summary: dict[str, Any] = {
        "files": len(files), "lake": settings.lake.root, "ingested_at": ingested_at.isoformat(),
        "split": split, "spec_version": spec.version, "max_bad_ratio": max_bad,
        "files_unreadable": len(unreadable), "unreadable_files": [u.path for u in unreadable],
    }
    with step("quarantine"):
        summary["quarantine_rows_added"] = store_quarantine(spark, tables.quarantine, batch, counts, unreadable, ingested_at)
    if counts.bad_ratio > max_bad:  # the quarantine is written; the rest of the batch is held back
        batch.unpersist()
        raise JobFailed(
            f"{counts.quarantined} of {counts.lines_read} lines ({counts.bad_ratio:.2%}) were quarantined, "
            f"above the maximum bad ratio {max_bad:.2%}: the quarantine was written to {tables.quarantine}, "
            f"and the {counts.valid} valid lines were held back (events, sessions and users are unchanged).",
            {**summary, **counts.reconciliation(None)},
        )
    with step("events"):
        added = store_events(spark, tables.events, batch, counts)
    faults.point("sessionize.after_events")  # events stored, sessions not yet: the next run completes them
    summary.update(counts.reconciliation(added))
    batch.unpersist()
    log.info("sessionize: %(lines_read)d lines, %(events_accepted)d new events, %(duplicates)d duplicates, "
             "%(quarantined)d quarantined", summary)
    with step("sessions_users"):
        summary.update(update_sessions_and_users(spark, tables, spec, split, gap, mark, ingested_at, added > 0))
    return summary


def update_sessions_and_users(
    spark: SparkSession, tables: Tables, spec: FeatureSpec, split: str, gap_minutes: int,
    mark: dt.datetime | None, ingested_at: dt.datetime, events_added: bool = False,
) -> dict[str, Any]:
    """Recompute the sessions the events stored after `mark` touch (from all their events, old and
    new) and their users, and MERGE them in; `mark` None rebuilds every session from every event.

    `events_added`: this run stored events, so there is work (no need to look for it)."""
    events = lake.read(spark, tables.events)
    pending = events if mark is None else events.where(F.col("ingested_at") > F.lit(mark))
    pending = pending.where(F.col("ingested_at") <= F.lit(ingested_at)).select(
        "event_key", "user_id", "session_id", "event_id", "event_time", "event_date"
    )
    cached = [pending.persist(StorageLevel.MEMORY_AND_DISK)]
    try:
        if not events_added and pending.isEmpty():
            return {"sessions_rebuilt": False, **dict.fromkeys(
                ("sessions_inserted", "sessions_updated", "sessions_deleted", "users_inserted", "users_updated"), 0)}
        identities = identity_events(events, spec)
        if mark is not None:
            identities = identities.join(pending.select("user_id").distinct(), "user_id", "left_semi")
        cached.append(identities.persist(StorageLevel.MEMORY_AND_DISK))
        sessions, gone = _session_changes(spark, tables, spec, split, gap_minutes, events, pending, identities, mark, cached)
        created = lake.ensure_table(spark, tables.sessions, sessions.schema, properties=lake.UPDATED_IN_PLACE)
        source = sessions.withColumn("_delete", F.lit(False)).unionByName(
            gone.select(*SESSION_KEYS, F.lit(True).alias("_delete")), allowMissingColumns=True
        ) if gone is not None else sessions
        with lake.commit_metadata(spark, {WATERMARK: ingested_at.isoformat(), SPEC_CHECKED: spec.check_key}):
            merged = (lake.MergeCounts(inserted=lake.append(spark, tables.sessions, sessions)) if created
                      else lake.upsert(spark, tables.sessions, source, SESSION_KEYS, "_delete" if gone is not None else None))
            known = lake.read_or_empty(spark, tables.users, "user_id string, first_seen timestamp, last_seen timestamp")
            users = build_users(pending, known, lake.read(spark, tables.sessions), identities, spec)
            created = lake.ensure_table(spark, tables.users, users.schema, properties=lake.UPDATED_IN_PLACE)
            merged_users = (lake.MergeCounts(inserted=lake.append(spark, tables.users, users)) if created
                            else lake.upsert(spark, tables.users, users, ["user_id"]))
        return {"sessions_rebuilt": mark is None, "sessions_inserted": merged.inserted,
                "sessions_updated": merged.updated, "sessions_deleted": merged.deleted,
                "users_inserted": merged_users.inserted, "users_updated": merged_users.updated}
    finally:
        for df in cached:
            df.unpersist()


def _session_changes(
    spark: SparkSession, tables: Tables, spec: FeatureSpec, split: str, gap_minutes: int, events: DataFrame,
    pending: DataFrame, identities: DataFrame, mark: dt.datetime | None, cached: list[DataFrame],
) -> tuple[DataFrame, DataFrame | None]:
    """The recomputed `sessions` rows, and the keys of stored sessions they replace (or None)."""
    existing = lake.read(spark, tables.sessions) if lake.exists(spark, tables.sessions) else None
    if mark is None:  # no watermark: (re)build every session from every event
        rebuilt = build_sessions(events, identities, spec, split, gap_minutes)
        if existing is None:
            return rebuilt, None
        cached.append(rebuilt.persist(StorageLevel.MEMORY_AND_DISK))
        return rebuilt, existing.select(*SESSION_KEYS).join(rebuilt.select(*SESSION_KEYS), list(SESSION_KEYS), "left_anti")
    assert existing is not None  # a watermark is only recorded by a sessions MERGE
    scope = touched_scope(pending, existing, split, gap_minutes)
    cached.append(scope.persist(StorageLevel.MEMORY_AND_DISK))
    dates = [row["event_date"] for row in scope_dates(scope).collect()]
    scoped = events_in_scope(events.where(F.col("event_date").isin(dates)), scope, split)
    core = aggregate_sessions(assign_sessions(scoped, split, gap_minutes), spec)
    cached.append(core.persist(StorageLevel.MEMORY_AND_DISK))
    replaced = replaced_sessions(existing, scope, core, split)
    again = identity_touched(pending, existing, spec, exclude=core.select(*SESSION_KEYS).unionByName(replaced))
    recompute = core.unionByName(again.select(*core.columns))
    sessions = add_identity(recompute, identities, spec, at="session_end").select(*spec.session_columns)
    return sessions, (replaced if split == "gap" else None)
