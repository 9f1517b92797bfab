"""A lake built night by night equals a lake built once from the same files (issue #11 item 4).

The nightly jobs are incremental (sessionize touches only the sessions of new events,
build_features recomputes only the tail of training_examples, export_features writes only
changed items), so their shortcuts must never change a value. Here a generated lake with
duplicates, events arriving a day late and junk lines is loaded one day at a time; on top of
that, after the seventh night a file lands in the third day's folder with events of that day,
a line already stored, and a player's country change (identity), and the third day is run
again. Every table, the training export and the DynamoDB items must then equal those of one
run of each job over all the files into a fresh lake — the independent result.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F
from job_runner import load_job, run_in_process  # tests/ is on sys.path

REPO = Path(__file__).resolve().parents[1]
DAYS = 9
START = dt.date(2026, 3, 1)
SESSIONIZE, BUILD, EXPORT = load_job("sessionize"), load_job("build_features"), load_job("export_features")
#: Columns that say when and from which file a row arrived: they differ between the two lakes by
#: design. An online item is rewritten only when one of its values changed, so an unchanged one
#: keeps the as_of (and the expiry) of its last write (checked apart below).
LINEAGE = {"events": ("ingested_at", "source_file"), "events_quarantine": ("ingested_at",),
           "online_features": ("written_at", "expires_at", "as_of")}
TABLES = ("events", "events_quarantine", "sessions", "users", "training_examples", "online_features")


def day(n: int) -> str:
    return (START + dt.timedelta(days=n - 1)).isoformat()


def _day3_sessions(raw: Path) -> dict[str, dict[str, list[dt.datetime]]]:
    """user -> session -> the times of its day-3 events, from every valid line in any folder."""
    out: dict[str, dict[str, list[dt.datetime]]] = {}
    for path in raw.rglob("*.jsonl"):
        for line in path.read_text().splitlines():
            try:
                e = json.loads(line)
                at = dt.datetime.fromisoformat(e["event_time"].replace("Z", "+00:00")).replace(tzinfo=None)
                user, session = e["customer_identifier"], e["session_id"]
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
            if at.date().isoformat() == day(3) and isinstance(user, str) and isinstance(session, str):
                out.setdefault(user, {}).setdefault(session, []).append(at)
    return out


def _late_file(raw: Path) -> tuple[Path, list[str], tuple[str, str]]:
    """A file for day 3's folder: a player's country change, in a session of its own, one second
    after the start of that player's last session of the day (a stored session the file adds no
    event to, so only the identity rule can change it), two new events inside the player's first
    session of the day, and one line that is already stored. Returns the file, its lines and the
    (player, session) the change must reach."""
    source = sorted((raw / f"date={day(3)}").glob("*.jsonl"))[0]
    lines = source.read_text().splitlines()

    def spans(sessions: dict[str, list[dt.datetime]]) -> list[tuple[dt.datetime, dt.datetime, str]]:
        return sorted((min(t), max(t), s) for s, t in sessions.items())

    user, (first, *_, last) = next(
        (u, spans(s)) for u, s in sorted(_day3_sessions(raw).items())
        if len(s) >= 2 and spans(s)[-1][1] - spans(s)[-1][0] > dt.timedelta(seconds=5)
    )
    at = first[0] + (first[1] - first[0]) / 2
    added = [
        json.dumps({"customer_identifier": user, "session_id": "late-identity", "event_id": "user_updated",
                    "event_time": f"{(last[0] + dt.timedelta(seconds=1)).isoformat()}Z", "country": "ZZ"}),
        json.dumps({"customer_identifier": user, "session_id": first[2], "event_id": "game_start",
                    "event_time": f"{at.isoformat()}Z"}),
        json.dumps({"customer_identifier": user, "session_id": first[2], "event_id": "purchase",
                    "event_time": f"{(at + dt.timedelta(seconds=1)).isoformat()}Z", "txn_amount": "7.25",
                    "purchase_source": "shop"}),
        lines[0],  # sent again, three nights later
    ]
    return raw / f"date={day(3)}" / "late-arrivals.jsonl", added, (user, last[2])


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("raw")
    done = subprocess.run([sys.executable, "jobs/generate_events.py", "--out", str(out), "--users", "60", "--days",
                           str(DAYS), "--start-date", START.isoformat(), "--seed", "23", "--duplicates", "0.05",
                           "--out-of-order", "0.05", "--malformed", "0.02"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def _run(job, *argv: str) -> dict:
    code, summary, err = run_in_process(job, *argv)
    assert code == 0, err[-3000:]
    return summary


@pytest.fixture(scope="module")
def nightly(raw, tmp_path_factory, dynamodb_endpoint) -> tuple[Path, str, list[dict]]:
    """The lake run night by night (and day 3 again after its late file landed)."""
    lake = tmp_path_factory.mktemp("nightly")
    table = f"nightly_{dt.datetime.now().strftime('%H%M%S%f')}"
    store = ["--set", f"online_store.endpoint_url={dynamodb_endpoint}", "--set", f"online_store.table={table}",
             "--set", "online_store.create_table=true"]
    builds = []

    def night(n: int, export: bool) -> None:
        _run(SESSIONIZE, "--run-date", day(n), "--set", f"raw.root={raw}", "--lake", str(lake))
        builds.append(_run(BUILD, "--lake", str(lake), "--run-id", "same"))
        if export:  # some nights only: each export writes just the items that changed since the last
            _run(EXPORT, "--lake", str(lake), *store)

    for n in range(1, 8):
        night(n, export=n in (2, 5))
    path, lines, reached = _late_file(raw)
    path.write_text("\n".join(lines) + "\n")
    night(3, export=True)
    for n in range(8, DAYS + 1):
        night(n, export=n == DAYS)
    return lake, table, builds, reached


@pytest.fixture(scope="module")
def scratch(raw, nightly, tmp_path_factory, dynamodb_endpoint) -> tuple[Path, str]:
    """Every file at once, into a fresh lake (after the nightly lake, so the late file is there)."""
    lake = tmp_path_factory.mktemp("scratch")
    table = f"scratch_{dt.datetime.now().strftime('%H%M%S%f')}"
    _run(SESSIONIZE, "--input", str(raw), "--lake", str(lake))
    _run(BUILD, "--lake", str(lake), "--run-id", "same", "--full")
    _run(EXPORT, "--lake", str(lake), "--set", f"online_store.endpoint_url={dynamodb_endpoint}",
         "--set", f"online_store.table={table}", "--set", "online_store.create_table=true")
    return lake, table


def test_the_nights_took_the_partial_path(nightly):
    """Otherwise the comparison below proves nothing about it."""
    _, _, builds, _ = nightly
    assert builds[0]["mode"] == "full"
    assert {b["mode"] for b in builds[1:]} == {"tail"}
    late = builds[7]  # the rerun of day 3 reaches back to day 3 minus the label's week
    assert late["recomputed_from"] < builds[6]["recomputed_from"]


@pytest.mark.parametrize("name", TABLES)
def test_every_table_equals_the_one_built_from_scratch(spark, nightly, scratch, name):
    a = spark.read.format("delta").load(str(nightly[0] / name)).drop(*LINEAGE.get(name, ()))
    b = spark.read.format("delta").load(str(scratch[0] / name)).drop(*LINEAGE.get(name, ()))
    assert a.count() == b.count() > 0
    assert_df_equality(a, b, ignore_row_order=True, ignore_column_order=True, ignore_nullable=True)


def test_the_late_identity_change_reached_the_stored_session_after_it(spark, nightly):
    lake, _, _, (user, session) = nightly
    rows = spark.read.format("delta").load(str(lake / "sessions")).where(
        (F.col("user_id") == user) & (F.col("session_id") == session)).collect()
    assert [r["country"] for r in rows] == ["ZZ"]


@pytest.mark.parametrize("split", ["train", "validation"])
def test_the_training_export_equals_the_one_built_from_scratch(spark, nightly, scratch, split):
    def rows(lake: Path):
        return spark.read.parquet(str(lake / "exports" / "training" / "same" / split / "parquet"))

    a, b = rows(nightly[0]), rows(scratch[0])
    assert a.count() == b.count() > 0
    assert_df_equality(a, b, ignore_row_order=True, ignore_nullable=True)
    manifests = [json.loads((lake / "exports/training/same/manifest.json").read_text()) for lake in (nightly[0], scratch[0])]
    for m in manifests:  # when and where it was written
        for key in ("created_at", "source_table", "files"):
            m.pop(key)
    assert manifests[0] == manifests[1]


def test_the_dynamodb_items_equal_those_exported_from_scratch(nightly, scratch, dynamodb_endpoint):
    import boto3

    client = boto3.client("dynamodb", endpoint_url=dynamodb_endpoint, region_name="us-east-1")

    def items(table: str) -> dict[str, dict]:
        pages = client.get_paginator("scan").paginate(TableName=table)
        return {i["user_id"]["S"]: i for page in pages for i in page["Items"]}

    a, b = items(nightly[1]), items(scratch[1])
    assert len(a) == len(b) > 0
    assert {u: {k: v for k, v in i.items() if k not in ("as_of", "expires_at")} for u, i in a.items()} == \
        {u: {k: v for k, v in i.items() if k not in ("as_of", "expires_at")} for u, i in b.items()}
    # an item that kept its values kept the as_of of the export that last wrote it: never a later one
    assert all(a[u]["as_of"]["S"] <= b[u]["as_of"]["S"] for u in a)
    assert any(a[u]["as_of"] == b[u]["as_of"] for u in a)
