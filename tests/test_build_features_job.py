"""jobs/build_features.py end to end on one generated, sessionized lake (200 users x 14 days).

The lake is built once per module (the generator, then the sessionize library's transforms);
build_features then runs once through ./spark-submit.sh in the background while the in-process
tests (including two in-process runs of the job on a copy of the lake) run beside it.
Expected values come from a pure-Python reference over the raw JSON lines, from the generator's
own truth file, or from hand-made changes to the input — never from the code's own output.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from chispa import assert_df_equality
from job_runner import load_job, run_in_process, sessionized_lake  # tests/ is on sys.path
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from offer_ai.features.training import features_as_of, latest_event_time, training_examples
from offer_ai.features.window_spec import WindowSpec, load_window_spec
from offer_ai.ingest.feature_spec import load_feature_spec
from offer_ai.sim import iter_truth_records

REPO = Path(__file__).resolve().parents[1]
DAY_US, WEEK_US = 86_400_000_000, 7 * 86_400_000_000
WINDOW_FEATURES = ("last_session_games_played", "last_session_win_ratio", "prev_week_purchase_amount")
FEATURES = ("country", "facebook_connected", *WINDOW_FEATURES)
ACTION = ("offer_type", "offer_price", "offer_propensity")
FACEBOOK = re.compile(r"(?i)^https?://([a-z0-9-]+[.])*facebook[.]com(/|$)")
BUILD = load_job("build_features")


@pytest.fixture(scope="module")
def spec() -> WindowSpec:
    return load_window_spec(load_feature_spec(REPO / "conf" / "features.yaml"))


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory) -> tuple[Path, Path]:
    """(raw folder, lake root): generated events, and the `events` / `sessions` tables built from
    them by the sessionize library (its job adds incremental MERGEs that a fresh lake does not
    need, and which jobs/sessionize.py's own tests cover)."""
    raw, root = tmp_path_factory.mktemp("raw"), tmp_path_factory.mktemp("lake")
    done = subprocess.run([sys.executable, "jobs/generate_events.py", "--out", str(raw), "--users", "200",
                           "--days", "14", "--seed", "11"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    sessionized_lake(spark, raw, root, dt.datetime(2026, 2, 1, tzinfo=dt.timezone.utc))
    return raw, root


@pytest.fixture(scope="module")
def cli_process(lake, tmp_path_factory) -> tuple[subprocess.Popen, Path]:
    """build_features through ./spark-submit.sh (a fresh JVM, as a user runs it), started in the
    background so that its start-up overlaps with the in-process tests; `cli_run` waits for it.
    Its output goes to files: a full pipe would stall it until someone reads."""
    _, root = lake
    logs = tmp_path_factory.mktemp("cli_logs")
    with open(logs / "stdout", "w") as out, open(logs / "stderr", "w") as err:
        process = subprocess.Popen(
            ["./spark-submit.sh", "jobs/build_features.py", "--lake", str(root), "--run-id", "cli-run",
             "--set", "spark.shuffle_partitions=2"],
            cwd=REPO, stdout=out, stderr=err, text=True)
    yield process, logs
    if process.poll() is None:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def cli_run(cli_process) -> dict:
    process, logs = cli_process
    process.wait(timeout=600)
    assert process.returncode == 0, (logs / "stderr").read_text()[-3000:]
    return json.loads((logs / "stdout").read_text().strip().splitlines()[-1])


@pytest.fixture(scope="module")
def sources(spark, lake, cli_process) -> tuple[DataFrame, DataFrame]:
    _, root = lake
    return spark.read.format("delta").load(str(root / "sessions")), spark.read.format("delta").load(str(root / "events"))


@pytest.fixture(scope="module")
def examples(sources, spec) -> tuple[DataFrame, dt.datetime]:
    sessions, events = sources
    latest = latest_event_time(events)
    return training_examples(sessions, events, spec, latest).cache(), latest


# --- an independent pure-Python reference over the raw JSON lines ---------------------------------


def micros(text: str) -> int:
    moment = dt.datetime.fromisoformat(text)
    moment = moment.replace(tzinfo=dt.timezone.utc) if moment.tzinfo is None else moment
    return (moment - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) // dt.timedelta(microseconds=1)


def cents(text: Any) -> int:
    return round(float(text) * 100)


def reference(raw: Path, as_of: int | None = None) -> tuple[dict, dict, int, int]:
    """(training rows by (user, anchor session), online rows by user at `as_of`, candidates, latest)."""
    by_user: dict[str, list[dict]] = defaultdict(list)
    for path in sorted(raw.glob("date=*/part-*.jsonl")):
        for line in path.open():
            event = json.loads(line)
            event["_t"] = micros(event["event_time"])
            by_user[event["customer_identifier"]].append(event)
    latest = max(e["_t"] for events in by_user.values() for e in events)
    rows, online, candidates = {}, {}, 0
    for user, events in by_user.items():
        events.sort(key=lambda e: e["_t"])
        grouped: dict[str, list[dict]] = defaultdict(list)
        for e in events:
            grouped[e["session_id"]].append(e)
        sessions = []
        for sid, evs in grouped.items():
            games = sum(e["event_id"] == "game_start" for e in evs)
            won = sum(e["event_id"] == "game_end" and str(e["won"]).lower() in ("true", "1") for e in evs)
            offers = [e for e in evs if e["event_id"] == "offer_shown"]
            sessions.append({"id": sid, "start": min(e["_t"] for e in evs), "games": games,
                             "ratio": won / games if games else None, "offer": min(offers, key=lambda e: e["_t"]) if offers else None,
                             "cents": sum(cents(e["txn_amount"]) for e in evs if e["event_id"] == "purchase")})
        purchases = [(e["_t"], cents(e["txn_amount"])) for e in events if e["event_id"] == "purchase"]
        identity = [e for e in events if e["event_id"] in ("app_launched", "user_updated")]

        def features(window_t: int, identity_t: int) -> tuple:
            before = [s for s in sessions if s["start"] < window_t]
            last = max(before, key=lambda s: s["start"]) if before else None
            week = sum(s["cents"] for s in before if s["start"] >= window_t - WEEK_US) / 100
            known = [e for e in identity if e["_t"] <= identity_t]
            country = next((e["country"] for e in reversed(known) if e.get("country")), None)
            signin = next((e["signin_method"] for e in reversed(known) if e.get("signin_method")), None)
            facebook = signin == "fb" or bool(signin and FACEBOOK.match(signin))
            return (country, facebook, last and last["games"], last and last["ratio"], week)

        offered = sorted((s for s in sessions if s["offer"]), key=lambda s: (s["offer"]["_t"], s["id"]))
        candidates += len(offered)
        days: set[int] = set()
        for s in offered:
            decision = s["offer"]["_t"]
            if decision // DAY_US in days:
                continue
            days.add(decision // DAY_US)
            label = sum(c for t, c in purchases if decision <= t < decision + WEEK_US) / 100
            offer = s["offer"]
            rows[(user, s["id"])] = (s["start"], decision, *features(s["start"], decision), offer["offer_type"],
                                     float(offer["offer_price"]), offer["offer_propensity"], label, decision + WEEK_US <= latest)
        if as_of is not None:
            online[user] = features(as_of, as_of)
    return rows, online, candidates, latest


def spark_rows(frame: DataFrame) -> dict:
    cols = [F.unix_micros("anchor_session_start"), F.unix_micros("decision_time"), *FEATURES, *ACTION,
            "next_week_purchase_amount", "label_complete"]
    return {(r[0], r[1]): tuple(r[2:]) for r in frame.select("user_id", "anchor_session_id", *cols).collect()}


# --- tests ---------------------------------------------------------------------------------------------


def test_training_examples_equal_a_pure_python_reference(lake, examples):
    raw, _ = lake
    frame, latest = examples
    expected, _, _, latest_us = reference(raw)
    assert latest_us == micros(latest.isoformat())
    got = spark_rows(frame)
    assert len(expected) > 500 and sum(r[-1] for r in expected.values()) > 100  # not a vacuous comparison
    assert got == expected


def test_training_examples_agree_with_the_generators_truth(lake, examples):
    raw, _ = lake
    truth = {(r["user_id"], r["session_id"]): r for r in iter_truth_records(raw) if r["first_in_day"]}
    got = {key: dict(zip((*FEATURES, "label"), row[2:7] + (row[10],))) for key, row in spark_rows(examples[0]).items()}
    assert set(got) == set(truth)
    for key, record in truth.items():
        assert got[key] == {**record["features"], "label": record["realised_next_week_purchase_amount"]}, key


def test_features_as_of_equal_the_reference_at_the_latest_event(lake, sources, spec, examples):
    raw, _ = lake
    sessions, events = sources
    latest = examples[1]
    _, expected, _, _ = reference(raw, as_of=micros(latest.isoformat()))
    got = {r["user_id"]: tuple(r[c] for c in FEATURES) for r in features_as_of(sessions, events, spec, latest).collect()}
    assert got == expected


def test_features_as_of_each_anchor_start_equal_the_training_rows(spark, sources, spec, examples):
    """Parity: the online definition at the anchor session's start gives the training row's
    window features, for every anchor (many points per user in one call)."""
    sessions, events = sources
    frame = examples[0]
    points = frame.select("user_id", F.col("anchor_session_start").alias("as_of"))
    online = features_as_of(sessions, events, spec, points).select("user_id", "as_of", *WINDOW_FEATURES)
    training = frame.select("user_id", F.col("anchor_session_start").alias("as_of"), *WINDOW_FEATURES)
    assert training.count() > 500
    assert_df_equality(online, training, ignore_row_order=True, ignore_nullable=True)


def test_nothing_after_a_decision_changes_its_features_only_its_label(spark, sources, spec, examples):
    """Leakage: after each user's last decision (and inside its anchor session, after the anchor
    started), add large purchases, busy sessions and a new identity; every feature of every row
    must stay as it was, and labels move by exactly the purchases added inside their week."""
    sessions, events = sources
    before, latest = examples
    last = before.groupBy("user_id").agg(F.max("decision_time").alias("d"), F.max("anchor_session_start").alias("s"))
    plus = lambda col, seconds: F.col(col) + F.make_dt_interval(secs=F.lit(seconds))  # noqa: E731
    extra_sessions = last.select("user_id", F.lit("leak-1").alias("session_id"), plus("s", 0.000001).alias("session_start"),
                                 F.lit(50).cast("long").alias("games_played"), F.lit(50).cast("long").alias("games_won"),
                                 F.lit(1.0).alias("win_ratio"), F.lit(5000.0).alias("purchase_amount")).unionByName(
        last.select("user_id", F.lit("leak-2").alias("session_id"), plus("d", 3600).alias("session_start"),
                    F.lit(9).cast("long").alias("games_played"), F.lit(0).cast("long").alias("games_won"),
                    F.lit(0.0).alias("win_ratio"), F.lit(7000.0).alias("purchase_amount")))
    extra_events = last.select("user_id", F.lit("purchase").alias("event_id"), plus("d", 1).alias("event_time"),
                               F.lit(1000.0).alias("txn_amount")).unionByName(
        last.select("user_id", F.lit("purchase").alias("event_id"), plus("d", 3 * 86400).alias("event_time"),
                    F.lit(3000.0).alias("txn_amount"))).unionByName(
        last.select("user_id", F.lit("app_launched").alias("event_id"), plus("d", 1).alias("event_time"),
                    F.lit("ZZ").alias("country"), F.lit("https://www.facebook.com/leak").alias("signin_method")),
        allowMissingColumns=True).withColumn("event_key", F.concat(F.lit("leak-"), F.monotonically_increasing_id().cast("string")))
    after = training_examples(sessions.unionByName(extra_sessions, allowMissingColumns=True),
                              events.unionByName(extra_events, allowMissingColumns=True), spec, latest)

    keys = ("user_id", "anchor_session_id", "decision_time")
    assert_df_equality(after.select(*keys, *FEATURES, *ACTION), before.select(*keys, *FEATURES, *ACTION),
                       ignore_row_order=True, ignore_nullable=True)
    old = {(r[0], r[1]): (r[2], r[3]) for r in before.select("user_id", "anchor_session_id", F.unix_micros("decision_time"),
                                                                     "next_week_purchase_amount").collect()}
    last_d = {r[0]: r[1] for r in last.select("user_id", F.unix_micros("d")).collect()}
    new = {(r[0], r[1]): r[2] for r in after.select("user_id", "anchor_session_id", "next_week_purchase_amount").collect()}
    moved = 0
    for (user, sid), (decision, label) in old.items():
        added = sum(amount for offset, amount in ((1_000_000, 1000.0), (3 * DAY_US, 3000.0))
                    if decision <= last_d[user] + offset < decision + WEEK_US)
        assert new[(user, sid)] == pytest.approx(label + added, abs=1e-9), (user, sid)
        moved += added > 0
    assert moved > len(last_d)  # every user's last row, and earlier rows within a week of it


@pytest.fixture(scope="module")
def lake_copy(lake, tmp_path_factory) -> Path:
    """The same sessions and events in a second lake: in-process runs there overlap the CLI run."""
    _, root = lake
    copy = tmp_path_factory.mktemp("lake_copy")
    for name in ("sessions", "events"):
        shutil.copytree(root / name, copy / name)
    return copy


def test_a_rerun_leaves_the_table_and_the_export_as_they_were(spark, lake_copy, cli_process):
    root = lake_copy
    code, summary, err = run_in_process(BUILD, "--lake", str(root), "--run-id", "again")
    assert code == 0, err[-3000:]
    path = str(root / "training_examples")
    first = spark.read.format("delta").load(path).collect()
    export = root / "exports" / "training" / "again"
    parts = sorted(p.relative_to(export).parent for p in export.rglob("part-*"))
    manifest = json.loads((export / "manifest.json").read_text())

    code, again_summary, err = run_in_process(BUILD, "--lake", str(root), "--run-id", "again")
    assert code == 0, err[-3000:]
    again = spark.read.format("delta").load(path)
    assert_df_equality(again, spark.createDataFrame(first, again.schema), ignore_row_order=True)
    timings = ("seconds", "steps")
    assert {k: v for k, v in again_summary.items() if k not in timings} == \
        {k: v for k, v in summary.items() if k not in timings}
    rerun = json.loads((export / "manifest.json").read_text())
    assert {k: v for k, v in rerun.items() if k != "created_at"} == {k: v for k, v in manifest.items() if k != "created_at"}
    assert sorted(p.relative_to(export).parent for p in export.rglob("part-*")) == parts  # no stale files left
    assert list((root / "exports" / "training").iterdir()) == [export]


def test_a_lake_without_sessions_is_a_user_error_naming_sessionize(tmp_path):
    code, summary, err = run_in_process(BUILD, "--lake", str(tmp_path / "empty"))
    assert code == 2 and summary is None
    # one sentence after the step timings logged so far: no traceback, nothing after it
    errors = [line for line in err.strip().splitlines() if " INFO step " not in line]
    assert len(errors) == 1 and "run sessionize first" in errors[0]


def test_a_validation_fraction_outside_0_1_is_a_user_error(tmp_path):
    code, _, err = run_in_process(BUILD, "--lake", str(tmp_path), "--validation-fraction", "1")
    assert code == 2 and "--validation-fraction must be between 0 and 1" in err


@pytest.mark.parametrize(("good", "bad", "message"), [
    ("kind: time", "kind: rolling", "windows.prev_week.kind: unknown window kind 'rolling'"),  # the shape
    ("condition: event_id = 'purchase'", "condition: event_idd = 'purchase'", "label.condition: [UNRESOLVED_COLUMN"),  # SQL
])
def test_a_bad_entry_fails_naming_it_before_any_data_is_read(tmp_path, good, bad, message):
    text = (REPO / "conf" / "features.yaml").read_text()
    assert good in text
    (tmp_path / "features.yaml").write_text(text.replace(good, bad))
    # no lake at all: the definition must be refused before the tables are even looked for
    code, _, err = run_in_process(BUILD, "--lake", str(tmp_path / "no-lake"),
                                  "--set", f"features_file={tmp_path / 'features.yaml'}")
    assert code == 2
    assert message in err and "sessionize" not in err


def test_the_cli_run_writes_every_anchor_and_exports_only_complete_rows(spark, lake, lake_copy, cli_run):
    raw, root = lake
    expected, _, candidates, _ = reference(raw)
    complete = sum(r[-1] for r in expected.values())
    assert (cli_run["anchors_found"], cli_run["anchors_kept"]) == (candidates, len(expected))
    assert (cli_run["labels_complete"], cli_run["labels_incomplete"]) == (complete, len(expected) - complete)
    table = spark.read.format("delta").load(str(root / "training_examples"))
    assert spark_rows(table) == expected  # the job's table, through spark-submit, equals the reference
    in_process = spark.read.format("delta").load(str(lake_copy / "training_examples"))  # same input, other run
    assert_df_equality(table, in_process, ignore_row_order=True)

    export = root / "exports" / "training" / "cli-run"
    assert cli_run["export"] == str(export) and cli_run["run_id"] == "cli-run"
    manifest = json.loads((export / "manifest.json").read_text())
    assert manifest["rows"] == cli_run["export_rows"]
    assert manifest["rows"]["train"] + manifest["rows"]["validation"] == complete
    assert manifest["rows"]["train"] > 0 and manifest["rows"]["validation"] > 0
    assert manifest["spec_version"] == cli_run["spec_version"]
    cutoff = micros(manifest["split"]["cutoff"].replace("Z", "+00:00"))
    first, last = (micros(manifest["split"][k].replace("Z", "+00:00")) for k in ("first_decision_time", "last_decision_time"))
    assert cutoff == first + -(-(last - first) * 8 // 10)  # the last 20 % of the span (micro-rounded up)
    decided = sorted(r[1] for r in expected.values() if r[-1])
    assert decided[0] == first and decided[-1] == last
    assert sum(d >= cutoff for d in decided) == manifest["rows"]["validation"]
    codes = manifest["categorical_encodings"]
    for split in ("train", "validation"):
        lines = [row for f in (export / split / "csv").glob("part-*.csv") for row in csv.reader(f.open())]
        assert len(lines) == manifest["rows"][split]
        assert all(len(row) == len(manifest["columns"]) for row in lines)
        assert {row[1] for row in lines} <= {str(c) for c in codes["country"].values()}
        parquet = spark.read.parquet(str(export / split / "parquet"))
        keys = ["user_id", "anchor_session_id", "decision_time"]
        assert manifest["key_columns"] == keys
        assert parquet.columns == [c["name"] for c in manifest["columns"]] + keys and parquet.count() == len(lines)
        # the keys name exactly the reference's complete decisions on this side of the cutoff
        in_split = {k: r[1] for k, r in expected.items() if r[-1] and (r[1] >= cutoff) == (split == "validation")}
        exported = {(r[0], r[1]): micros(r[2].isoformat()) for r in parquet.select(*keys).collect()}
        assert exported == in_split
