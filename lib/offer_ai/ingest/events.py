"""Raw JSON lines -> typed events, quarantine reasons and the event key (DESIGN §4).

Every line is parsed once, by Spark's own JSON parser into a VARIANT (strict: single quotes,
NaN tokens and duplicate keys are not JSON), then each field is read as text and converted with
native functions (try_cast, an ISO-8601 pattern, an explicit boolean mapping). Reading with a
typed schema instead would null a field and mark the whole line corrupt when a number comes as
a string, which is exactly what clients send.

What "the same JSON object" means (the event key): the object's members sorted by key at every
level, written without spacing, with each value keeping its JSON type (the string "1" is not the
number 1) and numbers compared by value (1, 1.0 and 1.00 are the same number). Two lines whose
objects are equal in that sense are one event sent twice: `event_key` is the SHA-256 of that
canonical text. The canonical text is kept as `payload`, so fields without a column are not lost.

These are pure DataFrame -> DataFrame functions: no configuration, no storage.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DateType,
    DoubleType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

#: JSON fields kept as text: the pipeline reads them as they come, so no value is invalid.
TEXT_FIELDS: tuple[str, ...] = (
    "session_id",
    "country",
    "language",
    "signin_method",
    "package_name",
    "package_version",
    "os",
    "os_version",
    "device_type",
    "device_make",
    "device_model",
    "device_id",
    "currency_balance",
    "level",
    "score",
    "badge",
    "sku",
    "purchase_source",
    "offer_type",
    "offer_dismissed",
)
BOOLEAN_FIELDS: tuple[str, ...] = ("won", "offer_purchased")
AMOUNT_FIELDS: tuple[str, ...] = ("txn_amount", "offer_price")
REQUIRED_FIELDS: tuple[str, ...] = ("customer_identifier", "event_id", "event_time")
JSON_FIELDS: tuple[str, ...] = REQUIRED_FIELDS + TEXT_FIELDS + BOOLEAN_FIELDS + AMOUNT_FIELDS + ("offer_propensity",)

#: Key fields: stored as table keys and DynamoDB's partition key (2,048 bytes at most there).
ID_FIELDS: tuple[str, ...] = ("customer_identifier", "session_id", "event_id")

#: Quarantine reasons in precedence order: a line's `reason` is the first rule it breaks.
#: The names are shared with the synthetic generator's malformed kinds.
REASONS: tuple[str, ...] = (
    "invalid_encoding",
    "invalid_json",
    "not_an_object",
    "missing_customer_identifier",
    "missing_event_id",
    "missing_event_time",
    "invalid_event_time",
    "implausible_event_time",
    "text_too_long",
    "invalid_won",
    "invalid_offer_purchased",
    "missing_txn_amount",
    "invalid_txn_amount",
    "invalid_offer_price",
    "invalid_offer_propensity",
)

EVENTS_SCHEMA = StructType(
    [
        StructField("event_key", StringType(), False),
        StructField("user_id", StringType(), False),
        StructField("session_id", StringType(), True),
        StructField("event_id", StringType(), False),
        StructField("event_time", TimestampType(), False),
        StructField("event_date", DateType(), False),
        *[StructField(f, BooleanType(), True) for f in BOOLEAN_FIELDS],
        *[StructField(f, DoubleType(), True) for f in AMOUNT_FIELDS],
        StructField("offer_propensity", DoubleType(), True),
        *[StructField(f, StringType(), True) for f in TEXT_FIELDS if f != "session_id"],
        StructField("payload", StringType(), False),
        StructField("source_file", StringType(), False),
        StructField("ingested_at", TimestampType(), False),
    ]
)
EVENT_COLUMNS: tuple[str, ...] = tuple(EVENTS_SCHEMA.fieldNames())

QUARANTINE_SCHEMA = StructType(
    [
        StructField("quarantine_key", StringType(), False),
        StructField("reason", StringType(), False),
        StructField("reasons", ArrayType(StringType(), True), False),
        StructField("raw", StringType(), False),
        StructField("source_file", StringType(), False),
        StructField("ingested_at", TimestampType(), False),
    ]
)
QUARANTINE_COLUMNS: tuple[str, ...] = tuple(QUARANTINE_SCHEMA.fieldNames())

#: A byte-order mark: some tools open a UTF-8 file with one.
BOM = "\ufeff"
#: ISO-8601 date and time, 'T' or a space between, optional seconds, fraction and offset.
ISO_TIME = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}(:?\d{2})?)?$"
#: Every text field shares one struct extraction: one pass over the parsed object.
_FIELDS_STRUCT = "struct<" + ",".join(f"`{f}`: string" for f in JSON_FIELDS) + ">"


@dataclass(frozen=True)
class ParseLimits:
    """Bounds on values that parse but cannot be right, so that one line cannot wedge a night.

    Amounts above `max_amount` (the sums stay far from any overflow), event times more than
    `max_future` after ingestion or before `earliest_event_time` (a device clock in 2099 or
    1970 would otherwise move the lake's latest-event clock or span decades), and text longer
    than `max_text_length` characters (`max_id_length` for the key fields) are quarantined.
    """

    max_amount: float = 1_000_000.0
    max_future: dt.timedelta = dt.timedelta(days=1)
    earliest_event_time: dt.datetime = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
    max_id_length: int = 256
    max_text_length: int = 1024


def present(text: Column) -> Column:
    """Blank text counts as missing: clients send "" where they mean 'no value'."""
    return F.when(F.trim(text) != "", text)


def to_boolean(text: Column) -> Column:
    """true/false, "true"/"false", "1"/"0", 1/0 (any case, spaces ignored); anything else is null."""
    t = F.lower(F.trim(text))
    return F.when(t.isin("true", "1"), F.lit(True)).when(t.isin("false", "0"), F.lit(False))


def to_amount(text: Column, maximum: float = float("inf")) -> Column:
    """A finite, non-negative number (text or JSON number) no larger than `maximum`, else null."""
    x = text.try_cast(DoubleType())
    return F.when(~F.isnan(x) & (x >= 0) & (x < float("inf")) & (x <= maximum), x)


def to_propensity(text: Column) -> Column:
    """A number in (0, 1], else null."""
    x = text.try_cast(DoubleType())
    return F.when(~F.isnan(x) & (x > 0) & (x <= 1), x)


def to_utc_timestamp(text: Column) -> Column:
    """ISO-8601 text -> UTC instant; naive times are UTC, offsets are applied; else null.

    The 'Z' appended to naive times makes the result independent of the session time zone.
    One regular expression validates the shape; the rest are position checks on text already
    known to match it (a regex per check cost ~1 s per million lines).
    """
    t = F.trim(text)
    # Spark's cast needs the seconds when an offset follows ('10:00Z' -> '10:00:00Z'): in a
    # valid time the 17th character is ':' exactly when the seconds are there.
    with_seconds = F.when(F.substring(t, 17, 1) == ":", t).otherwise(
        F.concat(t.substr(F.lit(1), F.lit(16)), F.lit(":00"), t.substr(F.lit(17), F.length(t)))
    )
    # after the date, a '+' or '-' can only start an offset
    has_offset = t.endswith("Z") | (F.locate("+", t, 12) > 0) | (F.locate("-", t, 12) > 0)
    zoned = F.when(has_offset, with_seconds).otherwise(F.concat(with_seconds, F.lit("Z")))
    return F.when(t.rlike(ISO_TIME), zoned.try_cast(TimestampType()))


def parse_lines(lines: DataFrame, ingested_at: dt.datetime, limits: ParseLimits = ParseLimits()) -> DataFrame:
    """One row per raw line: every `events` column, plus `reason`/`reasons` (null/empty when valid)
    and `raw` (the line, kept only when rejected).

    `lines` has `value` (the line) and `source_file`. `ingested_at` must be timezone-aware.
    """
    if ingested_at.tzinfo is None:
        raise ValueError("ingested_at must be timezone-aware (UTC)")
    # Spark keeps a line's bytes as they were read: bytes that are not UTF-8 would turn into
    # U+FFFD further on, and two different ids into one. A byte-order mark opening a file is
    # not part of its first line.
    lines = lines.select(
        F.when(F.col("value").startswith(BOM), F.expr("substring(value, 2)")).otherwise(F.col("value")).alias("value"),
        "source_file",
        F.expr("is_valid_utf8(value)").alias("_is_utf8"),
    )
    # Wrapping the line in [ ] makes the parser reject trailing text after the object
    # ('{"a":1} {"b":2}', '{"a":1} junk'), which it would otherwise silently ignore.
    parsed = lines.select(
        "value",
        "source_file",
        "_is_utf8",
        F.expr("try_variant_get(try_parse_json('[' || value || ']'), '$[0]')").alias("_json"),
    ).select(
        "value",
        "source_file",
        "_is_utf8",
        "_json",
        F.expr("try_variant_get(_json, '$', 'map<string,variant>')").alias("_object"),
        F.expr(f"try_variant_get(_json, '$', '{_FIELDS_STRUCT}')").alias("_f"),
    )
    # Staged projections, each value computed once and then referred to by name: validation
    # reuses the typed values instead of re-running the regexes and casts (and stays in
    # generated code; a higher-order function such as filter() would run interpreted).
    texts = parsed.select(
        "value",
        "source_file",
        "_is_utf8",
        F.col("_json").isNotNull().alias("_is_json"),
        F.col("_object").isNotNull().alias("_is_object"),
        F.to_json("_object").alias("_canonical"),
        *[present(F.col(f"_f.`{f}`")).alias(f"_t_{f}") for f in JSON_FIELDS],
    )
    text = {f: F.col(f"_t_{f}") for f in JSON_FIELDS}
    typed = texts.select(
        "*",
        to_utc_timestamp(text["event_time"]).alias("_event_time"),
        *[to_boolean(text[f]).alias(f"_v_{f}") for f in BOOLEAN_FIELDS],
        *[to_amount(text[f], limits.max_amount).alias(f"_v_{f}") for f in AMOUNT_FIELDS],
        to_propensity(text["offer_propensity"]).alias("_v_offer_propensity"),
    )
    is_object = F.col("_is_object")

    def invalid(field: str, value: str) -> Column:
        return text[field].isNotNull() & F.col(value).isNull()

    ingested = F.lit(ingested_at).cast(TimestampType())
    plausible = F.col("_event_time").between(
        F.lit(limits.earliest_event_time).cast(TimestampType()), ingested + F.lit(limits.max_future)
    )
    # one greatest() per bound keeps the expression small (22 ORs inflate the optimizer's constraints)
    longest_id = F.greatest(*[F.length(text[f]) for f in ID_FIELDS])
    longest_text = F.greatest(*[F.length(text[f]) for f in TEXT_FIELDS if f not in ID_FIELDS])
    too_long = F.coalesce((longest_id > limits.max_id_length) | (longest_text > limits.max_text_length), F.lit(False))
    checks = [
        ("invalid_encoding", ~F.col("_is_utf8")),
        ("invalid_json", F.col("_is_utf8") & ~F.col("_is_json")),
        ("not_an_object", F.col("_is_json") & ~is_object),
        ("missing_customer_identifier", is_object & text["customer_identifier"].isNull()),
        ("missing_event_id", is_object & text["event_id"].isNull()),
        ("missing_event_time", is_object & text["event_time"].isNull()),
        ("invalid_event_time", invalid("event_time", "_event_time")),
        ("implausible_event_time", F.col("_event_time").isNotNull() & ~plausible),
        ("text_too_long", too_long),
        ("invalid_won", invalid("won", "_v_won")),
        ("invalid_offer_purchased", invalid("offer_purchased", "_v_offer_purchased")),
        ("missing_txn_amount", is_object & (text["event_id"] == "purchase") & text["txn_amount"].isNull()),
        ("invalid_txn_amount", invalid("txn_amount", "_v_txn_amount")),
        ("invalid_offer_price", invalid("offer_price", "_v_offer_price")),
        ("invalid_offer_propensity", invalid("offer_propensity", "_v_offer_propensity")),
    ]
    assert tuple(name for name, _ in checks) == REASONS
    broken = [F.when(cond, F.lit(name)) for name, cond in checks]
    joined = F.concat_ws(",", *broken)  # skips nulls: the names of the rules broken, in order
    judged = typed.select("*", F.coalesce(*broken).alias("reason"))
    valid = F.col("reason").isNull()
    # the list of every broken rule only where one is broken: most lines are valid
    judged = judged.withColumn(
        "reasons", F.when(valid, F.array().cast("array<string>")).otherwise(F.split(joined, ","))
    )
    return judged.select(
        F.sha2(F.col("_canonical"), 256).alias("event_key"),
        text["customer_identifier"].alias("user_id"),
        text["session_id"].alias("session_id"),
        text["event_id"].alias("event_id"),
        F.col("_event_time").alias("event_time"),
        F.when(valid, F.to_date("_event_time")).alias("event_date"),  # a rejected year 0 or 10000 must not reach Python
        *[F.col(f"_v_{f}").alias(f) for f in BOOLEAN_FIELDS + AMOUNT_FIELDS + ("offer_propensity",)],
        *[text[f].alias(f) for f in TEXT_FIELDS if f != "session_id"],
        # the payload only where it is stored, the raw text only where it is needed: the parsed
        # batch is cached, and this halves it
        F.when(valid, F.col("_canonical")).alias("payload"),
        F.col("source_file"),
        F.lit(ingested_at).cast(TimestampType()).alias("ingested_at"),
        "reason",
        "reasons",
        # undecodable bytes are shown as U+FFFD; the quarantine key is made from the bytes read
        F.when(~valid, F.expr("make_valid_utf8(value)")).alias("raw"),
        F.when(~valid, F.col("value")).alias("raw_read"),
    )


def accepted_events(parsed: DataFrame) -> DataFrame:
    """The valid lines of a parsed batch as `events` rows (duplicates still in)."""
    return parsed.where(F.col("reason").isNull()).select(*EVENT_COLUMNS)


def distinct_events(accepted: DataFrame) -> DataFrame:
    """One row per event_key: a line sent twice in the same input is one event.

    Which copy's source_file is kept is not defined (all other columns are equal by construction).
    Duplicates are few, so whole rows never move to find them: only a 64-bit hash of each key is
    shuffled, the hashes seen more than once are broadcast, and the rows carrying one of them
    (the duplicates, and the rare hash collision) are deduplicated by their full key. Every other
    row streams through a broadcast anti-join. The broadcast holds 8 bytes per repeated key.
    """
    hashed = accepted.withColumn("_key_hash", F.xxhash64("event_key"))
    repeated = F.broadcast(
        hashed.groupBy("_key_hash").agg(F.count(F.lit(1)).alias("_n")).where(F.col("_n") > 1).select("_key_hash")
    )
    once = hashed.join(repeated, "_key_hash", "left_anti")
    twice = hashed.join(repeated, "_key_hash", "left_semi").dropDuplicates(["event_key"])
    return once.unionByName(twice).drop("_key_hash")


def quarantine_rows(parsed: DataFrame) -> DataFrame:
    """The rejected lines of a parsed batch as `events_quarantine` rows.

    quarantine_key = SHA-256 of (source file, line, n) where n numbers identical lines within one
    file: rereading the same file yields the same keys, so a rerun adds nothing, while a junk
    line repeated in a file is still stored as often as it was read. The line is hashed as its
    bytes were read, so two lines that differ only in undecodable bytes keep two keys.
    """
    rejected = parsed.where(F.col("reason").isNotNull())
    occurrence = F.row_number().over(Window.partitionBy("source_file", "raw_read").orderBy("raw_read"))
    key = F.sha2(F.concat_ws("\u0001", "source_file", "raw_read", occurrence.cast("string")), 256)
    return rejected.select(
        key.alias("quarantine_key"),
        "reason",
        "reasons",
        "raw",
        "source_file",
        "ingested_at",
    )
