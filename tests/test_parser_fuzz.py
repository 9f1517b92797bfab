"""Issue #15, fault tests: generated raw lines through sessionize never stop the run.

A fixed seed generates about 2,400 lines (5.6 MB) — random bytes, deep nesting, huge and tiny numbers,
odd Unicode and bytes that are not UTF-8, byte-order marks, overlong lines, NaN/Infinity, and
every field the parser reads given a value of every JSON type (object, array, string, number,
bool, null) — written as raw .jsonl files and one .jsonl.gz. One sessionize run in this process
must exit 0 with every line accounted for (lines read = events accepted + duplicates +
quarantined, and = the lines written), a reason on every quarantine row, and exactly the
accepted events in the events table. What each line should become is not predicted here: the
parser's own tests do that for hand-written lines; this one looks for what nobody wrote down.

What it found: an event_time of year 0 ("0000-01-01T00:00:00Z", quarantined as implausible)
still had an event_date, which the batch count collected into Python, whose dates start at
year 1 — a ValueError that failed the whole run, on every retry. A rejected line now has no
event_date (events.parse_lines).
"""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

from job_runner import load_job, run_in_process  # tests/ is on sys.path
from pyspark.sql import functions as F

from offer_ai.ingest.events import BOOLEAN_FIELDS, JSON_FIELDS, REASONS, TEXT_FIELDS

SESSIONIZE = load_job("sessionize")
SEED = 15
BOM = "\ufeff".encode()

#: One valid event with every field the parser reads (March 2024: plausible on any machine whose
#: clock is later, and after sessionize.earliest_event_time).
VALID: dict[str, object] = {
    "customer_identifier": "user-0", "event_id": "purchase", "event_time": "2024-03-01T10:00:00Z",
    **{f: f"{f}-value" for f in TEXT_FIELDS}, "won": True, "offer_purchased": False,
    "txn_amount": 4.99, "offer_price": 0.99, "offer_propensity": 0.25,
}
#: Values of every JSON type, as raw JSON text (some are not JSON at all: NaN, Infinity, 01).
OBJECTS = ['{}', '{"a":1,"b":[true,null]}', '{"customer_identifier":"nested"}']
ARRAYS = ['[]', '[1,"x",null]', '[[[]]]']
STRINGS = [
    '""', '"   "', '"text"', '"1e15"', '"NaN"', '"Infinity"', '"-1"', '"0"', '"true"', '"FALSE"', '" 1 "',
    '"2024-03-01T10:00:00Z"', '"\\u0000"', '"\\ud800"', '"\\udfff\\ud800"', '"\\ud83d\\ude00"', '"\\u202e\\u200d"',
    '"\\u2028\\u2029\\u0085"', '"\\uffff\\ufffe"', json.dumps("x" * 300), json.dumps("y" * 2_000),
    '"１２"', '"٢٠٢٦"', '"e\\u0301"', '"\\u00e9"', '"\\ufeff"',
]
NUMBERS = [
    '0', '-0.0', '-1', '1', '1.5', '1.50', '1E+2', '1e15', '1e308', '1e309', '-1e400', '1e-400', '4.9e-324',
    '123456789012345678901234567890123456789012345678901234567890', '1' + '0' * 400, '0.' + '0' * 400 + '1',
    'NaN', 'Infinity', '-Infinity', '+1', '.5', '01', '0x10', '1.',
]
BOOLS = ['true', 'false']
NULLS = ['null']
EVERY_TYPE = OBJECTS + ARRAYS + STRINGS + NUMBERS + BOOLS + NULLS
TIMES = [
    '"2026-02-30T10:00:00Z"', '"2024-03-01T24:00:00Z"', '"2024-03-01T23:59:60Z"', '"+10000-01-01T00:00:00Z"',
    '"2024-03-01T10:00:00+99:99"', '"2024-03-01T10:00:00.1234567891Z"', '"2024-03-01 10:00"', '"2024-03-01T10:00Z"',
    '"1999-12-31T23:59:59Z"', '"2099-01-01T00:00:00Z"', '"0000-01-01T00:00:00Z"', '"2024-03-01T10:00:00-00:00"',
    '"9999-12-31T23:59:59-23:59"', '"2024-03-01T10:00:00+0530"', '"2024-03-01"', '"10:00:00"', '1790000000',
    '"2024-03-01T10:00:00.000000001Z"',
]
#: Fields left out of a line altogether (not merely null).
REQUIRED_OR_KEYS = ("customer_identifier", "event_id", "event_time", "session_id", "txn_amount")


def _json(fields: dict[str, str]) -> str:
    """An object from raw JSON value texts, in the given order."""
    return "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in fields.items()) + "}"


def _valid(rng: random.Random, n: int) -> dict[str, str]:
    """A valid event of one of a few users and sessions, as raw JSON value texts."""
    user = n % 37
    fields = {k: json.dumps(v) for k, v in VALID.items()}
    fields["customer_identifier"] = json.dumps(f"user-{user}")
    fields["session_id"] = json.dumps(f"s-{user}-{n // 300}")
    fields["event_id"] = json.dumps(rng.choice(["game_start", "game_end", "purchase", "offer_shown"]))
    fields["event_time"] = json.dumps(f"2024-03-{1 + n % 28:02d}T{n % 24:02d}:{rng.randrange(60):02d}:00Z")
    fields["txn_amount"] = f"{rng.randrange(1, 10_000) / 100}"
    return fields


def _random_bytes(rng: random.Random, size: int) -> bytes:
    """Bytes of any value but the line breaks Hadoop splits on, so one generated line is one line read."""
    return bytes(rng.choice([b for b in range(256) if b not in (0x0A, 0x0D)]) for _ in range(size))


def _nested(depth: int, kind: str) -> str:
    return ('{"a":' * depth + "1" + "}" * depth) if kind == "object" else ("[" * depth + "1" + "]" * depth)


def generate_lines(rng: random.Random) -> list[bytes]:
    lines: list[bytes] = []
    add = lines.append

    # Valid events (the baseline the sessions step works on), then some again: duplicates, also
    # with their members reordered and a number spelled differently (the same event).
    valid = [_valid(rng, n) for n in range(300)]
    for fields in valid:
        add(_json(fields).encode())
    for fields in rng.sample(valid, 40):
        add(_json(fields).encode())
    for fields in rng.sample(valid, 20):
        shuffled = list(fields.items())
        rng.shuffle(shuffled)
        add(_json({k: (v + "0" if k == "txn_amount" and "." in v else v) for k, v in shuffled}).encode())

    # Every field the parser reads, with a value of every JSON type.
    for name in JSON_FIELDS:
        for value in EVERY_TYPE:
            add(_json({**_valid(rng, rng.randrange(300)), name: value}).encode())
    for value in TIMES:
        add(_json({**_valid(rng, rng.randrange(300)), "event_time": value}).encode())
    for name in BOOLEAN_FIELDS:
        for value in ['"1"', '"0"', '" True "', '"yes"', '1', '0', '2', '-1']:
            add(_json({**_valid(rng, rng.randrange(300)), name: value}).encode())
    for name in REQUIRED_OR_KEYS:  # absent altogether, not merely null (a purchase needs its amount)
        fields = {**_valid(rng, rng.randrange(300)), "event_id": '"purchase"'}
        del fields[name]
        add(_json(fields).encode())

    # Random bytes, and valid lines with bytes flipped, cut short or with junk around them.
    for _ in range(150):
        add(_random_bytes(rng, rng.randrange(0, 200)))
    for _ in range(150):
        line = bytearray(_json(_valid(rng, rng.randrange(300))).encode())
        action = rng.choice(["flip", "cut", "insert", "prefix", "suffix"])
        at = rng.randrange(len(line))
        if action == "flip":
            line[at] = rng.choice([b for b in range(256) if b not in (0x0A, 0x0D)])
        elif action == "cut":
            del line[at:]
        elif action == "insert":
            line[at:at] = _random_bytes(rng, rng.randrange(1, 8))
        elif action == "prefix":
            line[0:0] = _random_bytes(rng, rng.randrange(1, 4))
        else:
            line += _random_bytes(rng, rng.randrange(1, 4))
        add(bytes(line))

    # Deep nesting: alone, unbalanced, and inside an otherwise valid event (its payload).
    for depth in (100, 1_000, 1_001, 5_000):
        for kind in ("object", "array"):
            add(_nested(depth, kind).encode())
            add(_json({**_valid(rng, rng.randrange(300)), "extra": _nested(depth, kind)}).encode())
            add(_json({**_valid(rng, rng.randrange(300)), "customer_identifier": _nested(depth, kind)}).encode())
    add(b"{" * 10_000)
    add(b"[" * 10_000)

    # Not UTF-8: overlong encodings, surrogates as bytes, cut multi-byte sequences, Latin-1.
    for bad in (b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"caf\xe9", b"\xf4\x90\x80\x80", b"\xff\xfe", b"\x80"):
        add(_json({**_valid(rng, rng.randrange(300)), "country": '"@@"'}).encode().replace(b"@@", bad))
        add(_json({**_valid(rng, rng.randrange(300)), "customer_identifier": '"@@"'}).encode().replace(b"@@", bad))
    # Odd but valid Unicode, raw (not escaped), in the key fields and elsewhere.
    for odd in ("👩‍👩‍👧", "\u202eevil", "\u0000", "ｕｓｅｒ", "\u2028", "e\u0301", "\ud7ff\ue000", "\U0010ffff", "\x7f"):
        for name in ("customer_identifier", "session_id"):
            add(_json({**_valid(rng, rng.randrange(300)), name: json.dumps(odd, ensure_ascii=False)}).encode())

    # Byte-order marks: one opening a line (not part of it), two, one inside a value, UTF-16's.
    add(BOM + _json(_valid(rng, 1)).encode())
    add(BOM + BOM + _json(_valid(rng, 2)).encode())
    add(_json({**_valid(rng, 3), "country": '"\ufeffDE"'}).encode())
    add(b"\xff\xfe" + _json(_valid(rng, 4)).encode())

    # Overlong lines: a valid shape with a 1.5 MB text, a 1 MB customer id, 1 MB of junk.
    add(_json({**_valid(rng, 5), "country": json.dumps("c" * 1_500_000)}).encode())
    add(_json({**_valid(rng, 6), "customer_identifier": json.dumps("u" * 1_000_000)}).encode())
    add(bytes(rng.choice(b"{}[]\":,0123456789abc \t") for _ in range(1_000_000)))

    # Not JSON objects, and JSON the strict parser refuses.
    for text in ['', ' ', '\t', 'null', '[]', '{}', '"str"', '123', 'true', '{"a":1,"a":2}', "{'a':1}",
                 '{"a":1,}', '{"a":1} {"b":2}', '{"a":1} junk', '/* c */ {"a":1}', '{"a":1}//c', '[{"a":1}]',
                 _json({**_valid(rng, 7), "customer_identifier": '"dup"', "event_id": '"game_end"'}).replace(
                     '"customer_identifier":"dup"', '"customer_identifier":"dup","customer_identifier":"dup2"')]:
        add(text.encode())
    return lines


def _write(raw: Path, lines: list[bytes]) -> None:
    """Four plain files (the first opening with a byte-order mark) and one gzipped file."""
    raw.mkdir(parents=True)
    parts = [lines[i::5] for i in range(5)]
    for number, part in enumerate(parts[:4]):
        data = b"\n".join(part) + b"\n"
        (raw / f"part-{number}.jsonl").write_bytes(BOM + data if number == 0 else data)
    (raw / "part-4.jsonl.gz").write_bytes(gzip.compress(b"\n".join(parts[4]) + b"\n"))


def test_generated_lines_never_stop_sessionize_and_every_line_is_accounted_for(spark, tmp_path):
    lines = generate_lines(random.Random(SEED))
    assert all(b"\n" not in line and b"\r" not in line for line in lines)  # one generated line = one line read
    raw, lake = tmp_path / "raw", tmp_path / "lake"
    _write(raw, lines)

    code, summary, err = run_in_process(SESSIONIZE, "--input", str(raw), "--lake", str(lake), "--max-bad-ratio", "1.0")
    assert code == 0, err[-3000:]
    assert "Traceback" not in err
    assert (summary["files"], summary["files_unreadable"], summary["held_back"]) == (5, 0, 0)
    assert summary["lines_read"] == len(lines)
    assert summary["lines_read"] == summary["events_accepted"] + summary["duplicates"] + summary["quarantined"]
    assert summary["reconciled"]

    quarantine = spark.read.format("delta").load(str(lake / "events_quarantine"))
    rows = quarantine.select("reason", "reasons", F.col("raw").isNull().alias("no_raw")).collect()
    assert len(rows) == summary["quarantined"] == summary["quarantine_rows_added"]
    assert all(r["reason"] in REASONS and r["reasons"] and r["reasons"][0] == r["reason"] for r in rows)
    assert all(set(r["reasons"]) <= set(REASONS) and not r["no_raw"] for r in rows)
    by_reason = {reason: n for reason, n in summary["quarantined_by_reason"].items() if n}
    assert by_reason == {r: sum(1 for row in rows if row["reason"] == r) for r in {row["reason"] for row in rows}}

    events = spark.read.format("delta").load(str(lake / "events"))
    assert events.count() == summary["events_accepted"]
    assert events.where(F.col("user_id").isNull() | F.col("event_time").isNull()).count() == 0
    # the fuzz reached the parser's corners, not only its front door
    assert summary["events_accepted"] >= 300 and summary["duplicates"] >= 40
    assert set(by_reason) == set(REASONS), by_reason  # every rule was broken at least once
