"""DESIGN §4, raw events: one test per rule, on tiny inline lines, against hand-worked values."""

from __future__ import annotations

import datetime as dt
import hashlib

from chispa import assert_df_equality
from pyspark.sql import functions as F

from offer_ai.ingest.events import (
    EVENT_COLUMNS,
    QUARANTINE_COLUMNS,
    ParseLimits,
    accepted_events,
    distinct_events,
    parse_lines,
    quarantine_rows,
)

NOW = dt.datetime(2026, 2, 1, 12, 0, tzinfo=dt.timezone.utc)
FILE = "file:/raw/date=2026-01-01/part-00000.jsonl"
BASE = '"customer_identifier":"u1","session_id":"s1","event_time":"2026-01-01T10:00:00"'


def line(event_id: str = "game_end", **fields: str) -> str:
    """A valid line plus `fields`, each given as raw JSON text (so '"1"' is a string, '1' a number)."""
    extra = "".join(f',"{k}":{v}' for k, v in fields.items())
    return f'{{"event_id":"{event_id}",{BASE}{extra}}}'


def parse(spark, lines: list[str], source: str = FILE):
    return parse_lines(spark.createDataFrame([(x, source) for x in lines], "value string, source_file string"), NOW)


def _numbered(spark, lines: list[str]):
    """Parse with each line's position as its source file, so results map back to inputs."""
    df = spark.createDataFrame([(x, f"{i:04d}") for i, x in enumerate(lines)], "value string, source_file string")
    return parse_lines(df, NOW)


def reasons(spark, lines: list[str]) -> list[str | None]:
    rows = _numbered(spark, lines).select("source_file", "reason").collect()
    return [r["reason"] for r in sorted(rows, key=lambda r: r["source_file"])]


def typed(spark, lines: list[str], *columns: str) -> list[tuple]:
    """The given typed columns of each line, in input order; every line must be accepted."""
    parsed = _numbered(spark, lines)
    rows = sorted(parsed.select("source_file", "reason", *columns).collect(), key=lambda r: r["source_file"])
    assert [r["reason"] for r in rows] == [None] * len(lines)
    return [tuple(r[c] for c in columns) for r in rows]


# --- lines that are not events ------------------------------------------------------------


def test_line_that_is_not_json_is_quarantined_as_invalid_json(spark):
    lines = [
        '{"event_id":"game_end","customer_identifier":"u1"',  # truncated in transit
        "{'event_id': 'game_end', 'customer_identifier': 'u1'}",  # a Python dict repr
        line() + " trailing words",  # the parser alone would ignore what follows the object
        line() + line(),  # two objects on one line
        '{"a":1,"a":2}',  # a key twice: which value would be the event's?
        "",
        "event_id=game_end&customer_identifier=u1",
    ]
    assert reasons(spark, lines) == ["invalid_json"] * len(lines)


def test_json_that_is_not_an_object_is_quarantined_as_not_an_object(spark):
    lines = ['["game_end","u1"]', '"{\\"event_id\\":\\"game_end\\"}"', "42", "null", "true"]
    assert reasons(spark, lines) == ["not_an_object"] * len(lines)


def test_missing_customer_identifier_event_id_or_event_time_is_quarantined(spark):
    lines = [
        '{"event_id":"game_end","session_id":"s1","event_time":"2026-01-01T10:00:00"}',
        '{"event_id":"game_end","customer_identifier":"  ","event_time":"2026-01-01T10:00:00"}',  # blank = missing
        '{"customer_identifier":"u1","event_time":"2026-01-01T10:00:00"}',
        '{"event_id":null,"customer_identifier":"u1","event_time":"2026-01-01T10:00:00"}',  # null = missing
        '{"event_id":"game_end","customer_identifier":"u1"}',
    ]
    assert reasons(spark, lines) == [
        "missing_customer_identifier",
        "missing_customer_identifier",
        "missing_event_id",
        "missing_event_id",
        "missing_event_time",
    ]


def test_unparseable_event_time_is_quarantined_as_invalid_event_time(spark):
    times = ["not-a-time", "2026-13-45T25:61:99", "17:53:57 last tuesday", "2026-01-01", "2026", "1767261600",
             "2026-01-01T10:00:00z", "2026-02-30T10:00:00"]
    lines = [f'{{"event_id":"game_end","customer_identifier":"u1","event_time":"{t}"}}' for t in times]
    lines.append('{"event_id":"game_end","customer_identifier":"u1","event_time":1767261600}')
    assert reasons(spark, lines) == ["invalid_event_time"] * len(lines)


def test_naive_times_are_utc_and_offsets_are_converted_to_utc(spark):
    times = {
        "2026-01-01T10:00:00": dt.datetime(2026, 1, 1, 10, 0),
        "2026-01-01 10:00:00": dt.datetime(2026, 1, 1, 10, 0),
        "2026-01-01T10:00": dt.datetime(2026, 1, 1, 10, 0),
        "2026-01-01T10:00:00.250": dt.datetime(2026, 1, 1, 10, 0, 0, 250000),
        "2026-01-01T10:00:00Z": dt.datetime(2026, 1, 1, 10, 0),
        "2026-01-01T10:00:00+02:00": dt.datetime(2026, 1, 1, 8, 0),
        "2026-01-01T10:00:00+0530": dt.datetime(2026, 1, 1, 4, 30),
        "2026-01-01T22:30:00-05:00": dt.datetime(2026, 1, 2, 3, 30),  # the next UTC day
    }
    lines = [f'{{"event_id":"x","customer_identifier":"u1","event_time":"{t}"}}' for t in times]
    got = typed(spark, lines, "event_time", "event_date")
    assert got == [(want, want.date()) for want in times.values()]


# --- booleans ----------------------------------------------------------------------------------


def test_booleans_accept_true_false_strings_and_one_zero(spark):
    spellings = {"true": True, '"true"': True, '"1"': True, "1": True, '"TRUE"': True, '" true "': True,
                 "false": False, '"false"': False, '"0"': False, "0": False, '"False"': False}
    lines = [line(won=text, score=f'"{i}"') for i, text in enumerate(spellings)]
    assert typed(spark, lines, "won") == [(v,) for v in spellings.values()]
    lines = [line("offer_shown", offer_purchased=text, score=f'"{i}"') for i, text in enumerate(spellings)]
    assert typed(spark, lines, "offer_purchased") == [(v,) for v in spellings.values()]


def test_other_boolean_spellings_are_quarantined_naming_the_field(spark):
    bad = ['"maybe"', '"n/a"', '"yes"', "2", '"t"', "1.5", "[true]"]
    lines = [line(won=text) for text in bad] + [line("offer_shown", offer_purchased=text) for text in bad]
    assert reasons(spark, lines) == ["invalid_won"] * len(bad) + ["invalid_offer_purchased"] * len(bad)


# --- amounts and propensity -------------------------------------------------------------------


def test_amounts_parse_from_strings_and_json_numbers(spark):
    values = {'"9.99"': 9.99, "9.99": 9.99, '"0"': 0.0, "0": 0.0, "1e2": 100.0, '" 4.99 "': 4.99}
    lines = [line("purchase", txn_amount=text, score=f'"{i}"') for i, text in enumerate(values)]
    assert typed(spark, lines, "txn_amount") == [(v,) for v in values.values()]
    lines = [line("offer_shown", offer_price=text, score=f'"{i}"') for i, text in enumerate(values)]
    assert typed(spark, lines, "offer_price") == [(v,) for v in values.values()]


def test_amounts_must_be_finite_non_negative_numbers(spark):
    bad = ['"-4.99"', "-0.01", '"abc"', '"NaN"', '"Infinity"', "1e400", "true", '"4,99"']
    lines = [line("purchase", txn_amount=text) for text in bad] + [line("offer_shown", offer_price=text) for text in bad]
    assert reasons(spark, lines) == ["invalid_txn_amount"] * len(bad) + ["invalid_offer_price"] * len(bad)


def test_amounts_above_the_maximum_are_quarantined_so_no_sum_can_overflow(spark):
    # 1e15 was accepted once, then overflowed the decimal session sums every night after (#15)
    limits = ParseLimits(max_amount=1000.0)
    lines = [line("purchase", txn_amount="1e15"), line("purchase", txn_amount='"1000.01"'),
             line("offer_shown", offer_price="2e6"), line("purchase", txn_amount="1000"),
             line("offer_shown", offer_price='"999.99"')]
    df = parse_lines(spark.createDataFrame([(x, f"{i}") for i, x in enumerate(lines)], "value string, source_file string"),
                     NOW, limits)
    got = [r["reason"] for r in sorted(df.select("source_file", "reason").collect(), key=lambda r: r["source_file"])]
    assert got == ["invalid_txn_amount", "invalid_txn_amount", "invalid_offer_price", None, None]
    assert ParseLimits().max_amount == 1_000_000.0  # the default


def test_event_times_beyond_the_plausible_window_are_quarantined(spark):
    # NOW is the ingest time: a day ahead is the most a device clock may be off; 2000 the earliest
    times = {"2026-02-02T12:00:00Z": None, "2026-02-02T12:00:01Z": "implausible_event_time",
             "2099-01-01T00:00:00": "implausible_event_time", "1970-01-01T00:00:00": "implausible_event_time",
             "2000-01-01T00:00:00Z": None, "1999-12-31T23:59:59Z": "implausible_event_time"}
    lines = [f'{{"event_id":"game_start","customer_identifier":"u1","event_time":"{t}"}}' for t in times]
    assert reasons(spark, lines) == list(times.values())


def test_text_longer_than_its_bound_is_quarantined(spark):
    limits, n = ParseLimits(), ParseLimits().max_id_length
    lines = [
        f'{{"event_id":"game_start","customer_identifier":"{"u" * n}","event_time":"2026-01-01T10:00:00"}}',
        f'{{"event_id":"game_start","customer_identifier":"{"u" * (n + 1)}","event_time":"2026-01-01T10:00:00"}}',
        f'{{"event_id":"app_launched","customer_identifier":"u1","session_id":"{"s" * (n + 1)}",'
        '"event_time":"2026-01-01T10:00:00"}',
        line("app_launched", country=f'"{"c" * limits.max_text_length}"'),
        line("app_launched", country=f'"{"c" * (limits.max_text_length + 1)}"'),
        line("app_launched", sku=f'"{"k" * 500_000}"'),  # a 500 KB value: no item could hold it
    ]
    assert reasons(spark, lines) == [None, "text_too_long", "text_too_long", None, "text_too_long", "text_too_long"]


def test_bytes_that_are_not_utf8_are_quarantined_and_never_merge_two_ids(spark, tmp_path):
    from offer_ai.ingest.raw_files import read_lines

    good = line().encode()
    a = good.replace(b'"u1"', b'"u\xff1"')  # two ids that U+FFFD would make one
    b = good.replace(b'"u1"', b'"u\xfe1"')
    path = tmp_path / "bytes.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + good + b"\n" + a + b"\n" + b + b"\n")  # a byte-order mark opens the file
    parsed = parse_lines(read_lines(spark, [str(path)]), NOW)
    rows = parsed.select("reason", "user_id", "raw").collect()
    assert sorted(r["reason"] or "" for r in rows) == ["", "invalid_encoding", "invalid_encoding"]
    assert [r["user_id"] for r in rows if r["reason"] is None] == ["u1"]
    assert {r["raw"] for r in rows if r["reason"]} == {good.decode().replace('"u1"', '"u\ufffd1"')}
    keys = quarantine_rows(parsed).select("quarantine_key").collect()
    assert len({k[0] for k in keys}) == 2  # the bytes as read, not as shown, make the key


def test_txn_amount_is_required_on_purchase_only(spark):
    lines = [line("purchase", sku='"coins-pack-1"'), line("purchase", txn_amount='""'), line("game_start")]
    assert reasons(spark, lines) == ["missing_txn_amount", "missing_txn_amount", None]


def test_offer_propensity_when_present_lies_in_zero_exclusive_one_inclusive(spark):
    good = {"1": 1.0, "0.125": 0.125, '"0.5"': 0.5, "1e-9": 1e-9}
    lines = [line("offer_shown", offer_propensity=text, score=f'"{i}"') for i, text in enumerate(good)]
    assert typed(spark, lines, "offer_propensity") == [(v,) for v in good.values()]
    bad = ["0", '"0"', "1.5", "-0.25", '"NaN"', '"high"']
    assert reasons(spark, [line("offer_shown", offer_propensity=t) for t in bad]) == ["invalid_offer_propensity"] * len(bad)


# --- missing vs invalid, unknown types -------------------------------------------------------------


def test_missing_optional_field_is_null_not_an_error(spark):
    lines = [line("offer_shown"), line("offer_shown", won="null", offer_price="null", offer_propensity='""', country='""')]
    got = typed(spark, lines, "won", "offer_price", "offer_propensity", "offer_purchased", "txn_amount", "country", "sku")
    assert got == [(None,) * 7, (None,) * 7]


def test_unknown_event_types_and_fields_are_kept(spark):
    text = '{"event_id":"level_up","customer_identifier":"u1","event_time":"2026-01-01T10:00:00","xp":{"gained":10}}'
    df = accepted_events(parse(spark, [text]))
    row = df.first()
    assert (df.count(), row["event_id"], row["payload"]) == (
        1, "level_up", '{"customer_identifier":"u1","event_id":"level_up","event_time":"2026-01-01T10:00:00","xp":{"gained":10}}'
    )


def test_first_broken_rule_is_the_reason_and_all_are_listed(spark):
    text = '{"event_id":"purchase","event_time":"soon","won":"maybe"}'
    row = parse(spark, [text]).first()
    assert (row["reason"], row["reasons"]) == (
        "missing_customer_identifier", ["missing_customer_identifier", "invalid_event_time", "invalid_won", "missing_txn_amount"]
    )


# --- the same event sent twice ------------------------------------------------------------------------


def test_same_object_with_other_key_order_and_spacing_has_the_same_event_key(spark):
    a = '{"event_id":"game_end","customer_identifier":"u1","event_time":"2026-01-01T10:00:00","won":"1","score":17}'
    b = '{ "score" : 17 ,  "won":"1","event_time": "2026-01-01T10:00:00", "customer_identifier":"u1","event_id":"game_end" }'
    keys = [r["event_key"] for r in accepted_events(parse(spark, [a, b])).collect()]
    # worked out by hand: members sorted by key, no spacing, values as written in JSON
    canonical = '{"customer_identifier":"u1","event_id":"game_end","event_time":"2026-01-01T10:00:00","score":17,"won":"1"}'
    assert keys == [hashlib.sha256(canonical.encode()).hexdigest()] * 2


def test_a_string_is_not_a_number_but_equal_numbers_are_equal(spark):
    as_string, as_number, as_decimal = line(won='"1"'), line(won="1"), line(won="1.0")
    keys = {r["payload"]: r["event_key"] for r in accepted_events(parse(spark, [as_string, as_number, as_decimal])).collect()}
    assert len(keys) == 2  # "1" differs from 1; 1 and 1.0 are the same number (canonical text "1")


def test_duplicate_lines_in_one_batch_become_one_event(spark):
    a = line(won='"1"')
    b = '{ "won" : "1", "event_time":"2026-01-01T10:00:00", "session_id":"s1","customer_identifier":"u1","event_id":"game_end"}'
    c = line(won='"0"')
    parsed = parse(spark, [a, b, a, c])
    assert accepted_events(parsed).count() == 4
    assert sorted(r["won"] for r in distinct_events(accepted_events(parsed)).collect()) == [False, True]


def test_event_columns_are_the_events_table_contract(spark):
    assert accepted_events(parse(spark, [line()])).columns == list(EVENT_COLUMNS)
    assert EVENT_COLUMNS[:6] == ("event_key", "user_id", "session_id", "event_id", "event_time", "event_date")


# --- quarantine -------------------------------------------------------------------------------------------


def test_quarantine_keeps_raw_text_reason_source_file_and_ingest_time(spark):
    bad = line(won='"maybe"')
    got = quarantine_rows(parse(spark, [bad, line()])).drop("quarantine_key")
    expected = spark.createDataFrame(
        [("invalid_won", ["invalid_won"], bad, FILE, NOW)],
        "reason string, reasons array<string>, raw string, source_file string, ingested_at timestamp",
    )
    assert_df_equality(got, expected, ignore_nullable=True)
    assert quarantine_rows(parse(spark, [bad])).columns == list(QUARANTINE_COLUMNS)


def test_quarantine_key_is_stable_across_reruns_and_counts_repeated_lines(spark):
    junk = "not json"
    first = quarantine_rows(parse(spark, [junk, junk, "also not json"])).select("quarantine_key")
    again = quarantine_rows(parse(spark, ["also not json", junk, junk])).select("quarantine_key")
    other_file = quarantine_rows(parse(spark, [junk], source="file:/raw/other.jsonl")).select("quarantine_key")
    assert first.distinct().count() == 3  # the same junk twice in a file is two rejected lines
    assert_df_equality(first, again, ignore_row_order=True)
    assert other_file.join(first, "quarantine_key").count() == 0


def test_parse_does_not_depend_on_row_order_or_partitioning(spark):
    lines = [line(won=f'"{i % 2}"', score=f'"{i}"') for i in range(20)] + ["junk"]
    one = parse(spark, lines).select(*EVENT_COLUMNS[:6], "reason")
    many = parse_lines(
        spark.createDataFrame([(x, FILE) for x in reversed(lines)], "value string, source_file string").repartition(3), NOW
    ).select(*EVENT_COLUMNS[:6], "reason")
    assert_df_equality(one, many, ignore_row_order=True)
    assert one.where(F.col("reason").isNull()).count() == 20
