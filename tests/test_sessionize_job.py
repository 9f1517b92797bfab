"""jobs/sessionize.py end to end: through ./spark-submit.sh once, then in-process (the same job
code with the shared session) on generated and hand-written raw files, into temporary lakes.

Expected values come from the generator's exact counts, from hand-counted files, or from a small
pure-Python reference (no Spark) — never from the job's own output.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import hashlib
import importlib.util
import io
import json
import math
import os
import subprocess
import sys
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlparse

import pytest
from chispa import assert_df_equality
from delta.tables import DeltaTable

from offer_ai.cli import run_job

REPO = Path(__file__).resolve().parents[1]
TABLES = ("events", "events_quarantine", "sessions", "users")
#: Lineage columns: when and from which file a row arrived, which differs between runs by design.
LINEAGE = {"events": ("ingested_at", "source_file"), "events_quarantine": ("ingested_at",), "sessions": (), "users": ()}
GENERATOR_ARGS = ["--users", "150", "--days", "10", "--seed", "7", "--duplicates", "0.05", "--out-of-order", "0.05",
                  "--malformed", "0.02"]


def _load_job():
    spec = importlib.util.spec_from_file_location("sessionize_job", REPO / "jobs" / "sessionize.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


JOB = _load_job()


def run(*argv: str) -> tuple[int, dict | None, str]:
    """Run the job in this process as the CLI would: (exit code, summary JSON, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.raises(SystemExit) as done:
        run_job(JOB.build_parser(), JOB.main, list(argv))
    lines = out.getvalue().strip().splitlines()
    return done.value.code, (json.loads(lines[-1]) if lines else None), err.getvalue()


def table(spark, lake: Path, name: str):
    return spark.read.format("delta").load(str(lake / name))


def version(spark, lake: Path, name: str) -> int:
    return DeltaTable.forPath(spark, str(lake / name)).history(1).first()["version"]


def assert_same_tables(spark, lake: Path, other: Path) -> None:
    for name in TABLES:
        a, b = table(spark, lake, name).drop(*LINEAGE[name]), table(spark, other, name).drop(*LINEAGE[name])
        if name == "events":  # big: compare in Spark
            assert a.count() == b.count() and a.exceptAll(b).count() == 0 and b.exceptAll(a).count() == 0, name
        else:
            assert_df_equality(a, b, ignore_row_order=True, ignore_column_order=True, ignore_nullable=True)


# --- generated input, and one run through spark-submit ---------------------------------------------


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("raw")
    done = subprocess.run([sys.executable, "jobs/generate_events.py", "--out", str(out), *GENERATOR_ARGS],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return out, json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def cli_process(generated, tmp_path_factory) -> tuple[Path, subprocess.Popen]:
    """All generated files in one run through ./spark-submit.sh (a fresh JVM, as a user runs it).

    Started in the background by the first tests that ask for it, so that the JVM's start
    overlaps with in-process tests; `one_run` waits for it."""
    raw, _ = generated
    lake = tmp_path_factory.mktemp("lake_one_run")
    process = subprocess.Popen(["./spark-submit.sh", "jobs/sessionize.py", "--input", str(raw), "--lake", str(lake)],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    yield lake, process
    if process.poll() is None:
        process.kill()
        process.communicate()


@pytest.fixture(scope="module")
def one_run(cli_process) -> tuple[Path, dict]:
    lake, process = cli_process
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-3000:]
    return lake, json.loads(stdout.strip().splitlines()[-1])


# --- hand-written files -------------------------------------------------------------------------------------

U = '"customer_identifier":"u1","session_id":"s1"'
VALID = [
    f'{{"event_id":"game_start",{U},"event_time":"2026-01-01T10:00:00"}}',
    f'{{"event_id":"game_end",{U},"event_time":"2026-01-01T10:01:00","won":"1"}}',
    f'{{"event_id":"offer_shown",{U},"event_time":"2026-01-01T10:02:00+01:00","offer_type":"xmas","offer_price":"4.99",'
    f'"offer_purchased":true,"offer_propensity":0.125}}',
    f'{{"event_id":"purchase",{U},"event_time":"2026-01-01T10:03:00Z","txn_amount":4.99,"purchase_source":"offer"}}',
]
RESPELLED = ('{ "won" : "1" , "event_time" : "2026-01-01T10:01:00", "session_id":"s1", "event_id":"game_end",'
             ' "customer_identifier" : "u1" }')
BAD = {
    '{"event_id":"game_end",' + U: "invalid_json",
    "[1, 2, 3]": "not_an_object",
    '{"event_id":"game_end","event_time":"2026-01-01T10:00:00"}': "missing_customer_identifier",
    f'{{{U},"event_time":"2026-01-01T10:00:00"}}': "missing_event_id",
    f'{{"event_id":"game_end",{U}}}': "missing_event_time",
    f'{{"event_id":"game_end",{U},"event_time":"yesterday"}}': "invalid_event_time",
    f'{{"event_id":"game_end",{U},"event_time":"2026-01-01T10:05:00","won":"maybe"}}': "invalid_won",
    f'{{"event_id":"offer_shown",{U},"event_time":"2026-01-01T10:05:00","offer_purchased":"n/a"}}': "invalid_offer_purchased",
    f'{{"event_id":"purchase",{U},"event_time":"2026-01-01T10:05:00"}}': "missing_txn_amount",
    f'{{"event_id":"purchase",{U},"event_time":"2026-01-01T10:05:00","txn_amount":"-1"}}': "invalid_txn_amount",
    f'{{"event_id":"offer_shown",{U},"event_time":"2026-01-01T10:05:00","offer_price":"NaN"}}': "invalid_offer_price",
    f'{{"event_id":"offer_shown",{U},"event_time":"2026-01-01T10:05:00","offer_propensity":1.5}}': "invalid_offer_propensity",
}
LAUNCH = f'{{"event_id":"app_launched",{U},"event_time":"2026-01-01T09:59:00","country":"DE","signin_method":"fb"}}'


@pytest.fixture()
def mixed_files(tmp_path) -> Path:
    """In raw/date=2026-01-01/: mixed.jsonl: 4 events, 1 retry of one of them, 12 bad lines (one
    per reason); later.jsonl.gz: a retry from the first file, a new app_launched, the first file's
    truncated line; plus files a folder read must skip."""
    raw = tmp_path / "raw"
    day = raw / "date=2026-01-01"
    (raw / "_truth").mkdir(parents=True)
    day.mkdir()
    (day / "mixed.jsonl").write_text("\n".join([*VALID[:2], RESPELLED, *BAD, *VALID[2:]]) + "\n")
    (day / "later.jsonl.gz").write_bytes(gzip.compress(f"{VALID[0]}\n{LAUNCH}\n{next(iter(BAD))}\n".encode()))
    (day / "notes.txt").write_text("not an input: skipped inside a folder\n")
    (raw / "_truth" / "decisions.jsonl").write_text("{}\n")
    return raw


# The first in-process tests ask for `cli_process` only to start the spark-submit run early.


def test_a_file_mixing_valid_and_malformed_lines_reconciles_exactly(spark, cli_process, mixed_files, tmp_path):
    lake = tmp_path / "lake"
    code, summary, err = run("--input", str(mixed_files), "--lake", str(lake), "--max-bad-ratio", "0.5")
    # 13 of 20 lines are bad: the run fails, but the quarantine is written and nothing else changes
    assert code == 1
    assert "13 of 20 lines (65.00%) were quarantined, above the maximum bad ratio 50.00%" in err.strip().splitlines()[-1]
    assert (summary["events_loaded"], summary["quarantine_rows_added"], summary["held_back"]) == (False, 13, 7)
    assert not (lake / "events").exists() and not (lake / "sessions").exists()
    quarantine = {(r["reason"], r["raw"], Path(r["source_file"]).name)
                  for r in table(spark, lake, "events_quarantine").collect()}
    expected_quarantine = {(reason, text, "mixed.jsonl") for text, reason in BAD.items()}
    expected_quarantine.add(("invalid_json", next(iter(BAD)), "later.jsonl.gz"))
    assert quarantine == expected_quarantine

    # the nightly way this time: the day's folder under raw.root
    code, summary, err = run("--run-date", "2026-01-01", "--set", f"raw.root={mixed_files}", "--lake", str(lake),
                             "--max-bad-ratio", "0.7")
    assert code == 0, err
    assert summary["inputs"] == [f"{mixed_files}/date=2026-01-01"]
    # every reason is listed, the ones this file does not hit with 0
    assert summary["quarantined_by_reason"] == {**dict.fromkeys(BAD.values(), 1), "invalid_json": 2,
                                                "invalid_encoding": 0, "implausible_event_time": 0, "text_too_long": 0}
    assert (summary["lines_read"], summary["events_accepted"], summary["duplicates"], summary["quarantined"]) == (20, 5, 2, 13)
    assert (summary["quarantine_rows_added"], summary["files"]) == (0, 2)  # the failed run wrote them already
    assert table(spark, lake, "events_quarantine").count() == 13 and table(spark, lake, "events").count() == 5
    session = table(spark, lake, "sessions").collect()
    assert [(s.session_start, s.session_end, s.games_played, s.games_won, s.purchase_amount, s.offer_type,
             s.offer_time, s.offer_purchased, s.country, s.facebook_connected) for s in session] == [
        (dt.datetime(2026, 1, 1, 9, 2), dt.datetime(2026, 1, 1, 10, 3), 1, 1, 4.99, "xmas", dt.datetime(2026, 1, 1, 9, 2),
         True, "DE", True)]  # 10:02+01:00 is 09:02 UTC, the session's first event


def test_a_relative_lake_path_with_a_hyphen_works_as_make_demo_passes_it(spark, mixed_files, tmp_path):
    # `make demo` passes --lake demo-output/lake: Delta's SQL once took that for a table name. The JVM
    # resolves a relative path against its own working directory, so the path is relative to that.
    lake = tmp_path / "demo-output" / "lake"
    relative = os.path.relpath(lake, spark.sparkContext._jvm.System.getProperty("user.dir"))
    assert not os.path.isabs(relative) and "-" in relative
    code, summary, err = run("--input", str(mixed_files), "--lake", relative, "--max-bad-ratio", "0.7")
    assert code == 0, err
    assert (summary["events_accepted"], summary["quarantined"]) == (5, 13)
    assert table(spark, lake, "events").count() == 5 and table(spark, lake, "events_quarantine").count() == 13


def test_gap_split_merges_sessions_when_a_late_event_bridges_them(spark, cli_process, tmp_path):
    raw, lake = tmp_path / "raw", tmp_path / "lake"
    raw.mkdir()
    times = {"a.jsonl": ["10:00:00", "10:50:00", "15:00:00"], "b.jsonl": ["10:25:00"]}
    for name, clock in times.items():
        (raw / name).write_text("".join(
            f'{{"event_id":"game_start","customer_identifier":"u","event_time":"2026-01-01T{c}"}}\n' for c in clock))
    gap = ("--set", "sessionize.split=gap", "--set", "sessionize.gap_minutes=30", "--lake", str(lake))
    code, first, err = run("--input", str(raw / "a.jsonl"), *gap)
    assert code == 0 and first["sessions_inserted"] == 3, err
    code, second, err = run("--input", str(raw / "b.jsonl"), *gap)
    assert code == 0, err
    assert (second["sessions_updated"], second["sessions_deleted"], second["sessions_inserted"]) == (1, 1, 0)
    got = sorted((r.session_id, r.games_played) for r in table(spark, lake, "sessions").collect())
    assert got == [("2026-01-01T10:00:00.000000Z", 3), ("2026-01-01T15:00:00.000000Z", 1)]


def test_bad_feature_definition_exits_2_naming_the_entry_before_reading_data(spark, cli_process, tmp_path):
    features = tmp_path / "features.yaml"
    features.write_text((REPO / "conf" / "features.yaml").read_text().replace(
        "games_played: count_if(event_id = 'game_start')", "games_played: count_if(event_type = 'game_start')"))
    code, summary, err = run("--input", str(tmp_path / "absent"), "--lake", str(tmp_path / "lake"),
                             "--set", f"features_file={features}")
    assert (code, summary) == (2, None)
    last = err.strip().splitlines()[-1]
    assert last.startswith("sessionize: error: ") and "session_aggregates.games_played" in last and "event_type" in last


def test_missing_input_path_exits_2_with_one_sentence(spark, tmp_path):
    code, summary, err = run("--input", str(tmp_path / "nowhere"), "--lake", str(tmp_path / "lake"))
    assert (code, summary) == (2, None)
    assert err.strip().splitlines()[-1] == f"sessionize: error: Input path {tmp_path / 'nowhere'} does not exist."


# --- generated input ------------------------------------------------------------------------------------


def test_cli_run_reconciles_exactly_with_the_generator(generated, one_run):
    _, truth = generated
    _, summary = one_run
    assert summary["lines_read"] == truth["lines"]
    assert summary["events_accepted"] == truth["events"]
    assert summary["duplicates"] == truth["duplicates"] > 0
    expected_reasons = {reason: truth["malformed_by_kind"].get(reason, 0) for reason in summary["quarantined_by_reason"]}
    assert summary["quarantined_by_reason"] == expected_reasons
    assert summary["quarantined"] == truth["malformed"] > 0
    assert summary["lines_read"] == summary["events_accepted"] + summary["duplicates"] + summary["quarantined"]
    assert summary["reconciled"] is True
    assert (summary["sessions_inserted"], summary["users_inserted"]) == (truth["sessions"], truth["users_with_events"])


# --- the independent reference -----------------------------------------------------------------------------


def _text(obj: dict, key: str) -> str | None:
    value = obj.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return value if isinstance(value, str) else json.dumps(value)


def _boolean(obj: dict, key: str) -> tuple[bool, bool | None]:
    value = obj.get(key)
    if value is None:
        return True, None
    spelled = str(value).strip().lower() if not isinstance(value, bool) else str(value).lower()
    return spelled in ("true", "1", "false", "0"), spelled in ("true", "1")


def _number(obj: dict, key: str, low: float, low_open: bool, high: float = math.inf) -> tuple[bool, float | None]:
    value = obj.get(key)
    if value is None:
        return True, None
    try:
        x = float(value) if not isinstance(value, bool) else math.nan
    except ValueError:
        return False, None
    ok = math.isfinite(x) and (x > low if low_open else x >= low) and x <= high
    return ok, x if ok else None


def reference_event(obj: dict) -> dict | None:
    """DESIGN §4 written out in plain Python: the typed event, or None when the line is rejected."""
    user, kind, when = _text(obj, "customer_identifier"), _text(obj, "event_id"), _text(obj, "event_time")
    if user is None or kind is None or when is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(when)
    except ValueError:
        return None
    parsed = parsed.astimezone(dt.timezone.utc).replace(tzinfo=None) if parsed.tzinfo else parsed
    won_ok, won = _boolean(obj, "won")
    bought_ok, bought = _boolean(obj, "offer_purchased")
    txn_ok, txn = _number(obj, "txn_amount", 0.0, False)
    price_ok, price = _number(obj, "offer_price", 0.0, False)
    prop_ok, prop = _number(obj, "offer_propensity", 0.0, True, 1.0)
    if not (won_ok and bought_ok and txn_ok and price_ok and prop_ok) or (kind == "purchase" and txn is None):
        return None
    return {"user": user, "session": _text(obj, "session_id"), "kind": kind, "time": parsed, "won": won,
            "offer_purchased": bought, "txn": obj.get("txn_amount"), "price": price, "propensity": prop,
            "offer_type": obj.get("offer_type"), "source": obj.get("purchase_source"),
            "country": _text(obj, "country"), "signin": _text(obj, "signin_method")}


def canonical(obj: dict) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def reference_events(raw: Path) -> dict[str, dict]:
    """canonical JSON -> event, for every valid line of every generated file."""
    out: dict[str, dict] = {}
    for path in sorted(raw.glob("date=*/part-*.jsonl")):
        for text in path.read_text().splitlines():
            try:
                obj = json.loads(text)
            except ValueError:
                continue
            if isinstance(obj, dict) and (event := reference_event(obj)) is not None:
                out[canonical(obj)] = event
    return out


def _facebook(signin: str | None) -> bool:
    if signin == "fb":
        return True
    host = urlparse(signin).hostname if signin and "://" in signin else None
    return bool(host) and (host == "facebook.com" or host.endswith(".facebook.com"))


def reference_sessions(events: list[dict]) -> dict[tuple[str, str], dict]:
    """A per-user loop over the events: the DESIGN §4 session aggregates."""
    by_user: dict[str, list[dict]] = defaultdict(list)
    for e in events:
        by_user[e["user"]].append(e)
    out = {}
    for user, evs in by_user.items():
        evs.sort(key=lambda e: e["time"])
        identity = [e for e in evs if e["kind"] in ("app_launched", "user_updated")]
        groups: dict[str, list[dict]] = defaultdict(list)
        for e in evs:
            if e["session"] is not None:
                groups[e["session"]].append(e)
        for session, es in groups.items():
            end = max(e["time"] for e in es)
            played = sum(e["kind"] == "game_start" for e in es)
            won = sum(e["kind"] == "game_end" and e["won"] is True for e in es)
            offers = [e for e in es if e["kind"] == "offer_shown"]
            first = min(offers, key=lambda e: e["time"]) if offers else {}
            assert sum(o["time"] == first.get("time") for o in offers) <= 1, "a tie would need the event_key rule"
            country = signin = None
            for e in identity:
                if e["time"] <= end:
                    country = e["country"] if e["country"] is not None else country
                    signin = e["signin"] if e["signin"] is not None else signin
            out[(user, session)] = {
                "session_start": min(e["time"] for e in es), "session_end": end,
                "games_played": played, "games_won": won, "win_ratio": won / played if played else None,
                "purchase_amount": float(sum((Decimal(str(e["txn"])) for e in es if e["txn"] is not None), Decimal(0))),
                "offer_purchase_amount": float(sum((Decimal(str(e["txn"])) for e in es
                                                    if e["txn"] is not None and e["source"] == "offer"), Decimal(0))),
                "offers_shown": len(offers), "offer_type": first.get("offer_type"), "offer_price": first.get("price"),
                "offer_purchased": first.get("offer_purchased"), "offer_propensity": first.get("propensity"),
                "offer_time": first.get("time"), "country": country, "facebook_connected": _facebook(signin),
            }
    return out


def test_sessions_equal_an_independent_pure_python_reference(spark, generated, one_run):
    raw, truth = generated
    lake, _ = one_run
    expected = reference_sessions(list(reference_events(raw).values()))
    assert len(expected) == truth["sessions"] > 1000
    columns = list(next(iter(expected.values())))
    got = {(r["user_id"], r["session_id"]): r.asDict() for r in table(spark, lake, "sessions").select(
        "user_id", "session_id", *columns).collect()}
    assert set(got) == set(expected)
    mismatches = [(key, c, got[key][c], want[c]) for key, want in expected.items() for c in columns if got[key][c] != want[c]]
    assert mismatches == []


def test_duplicated_lines_with_shuffled_key_order_are_stored_once(spark, generated, one_run):
    raw, truth = generated
    lake, _ = one_run
    spellings: dict[str, set[str]] = defaultdict(set)
    for path in sorted(raw.glob("date=*/part-*.jsonl")):
        for text in path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                obj = json.loads(text)
                if isinstance(obj, dict) and reference_event(obj) is not None:
                    spellings[canonical(obj)].add(text)
    respelled = [k for k, texts in spellings.items() if len(texts) > 1]
    assert len(respelled) > 50  # the input really holds the same objects with other key orders and spacing
    # event_key = SHA-256 of the canonical JSON, computed here independently of Spark
    expected_keys = {hashlib.sha256(k.encode()).hexdigest() for k in spellings}
    stored = table(spark, lake, "events").select("event_key")
    assert stored.count() == len(expected_keys) == truth["events"]
    assert {r["event_key"] for r in stored.collect()} == expected_keys


def test_rerun_of_the_same_input_leaves_every_table_identical(spark, generated, one_run):
    raw, truth = generated
    lake, _ = one_run
    before = {name: version(spark, lake, name) for name in TABLES}
    code, summary, err = run("--input", str(raw), "--lake", str(lake))
    assert code == 0, err
    assert (summary["events_accepted"], summary["quarantine_rows_added"]) == (0, 0)
    assert summary["duplicates"] == truth["events"] + truth["duplicates"]
    assert summary["duplicates_already_stored"] == truth["events"]
    assert [summary[k] for k in ("sessions_inserted", "sessions_updated", "sessions_deleted", "users_inserted",
                                 "users_updated")] == [0] * 5
    assert {name: version(spark, lake, name) for name in TABLES} == before  # not even an empty commit


def test_events_split_over_runs_with_late_arrivals_give_the_same_tables_as_one_run(spark, generated, one_run, tmp_path):
    raw, truth = generated
    lake, _ = one_run
    two = tmp_path / "lake"
    days = sorted(p.name for p in raw.glob("date=*"))
    assert len(days) == 10
    # days 1-5 by a glob, then days 6-10 as five --input folders: lines of days 1-5 that arrived
    # in later folders (late events, client retries) reach what the first run stored
    first = run("--input", str(raw / "date=2026-01-0[1-5]"), "--lake", str(two))
    second = run(*[a for d in days[5:] for a in ("--input", str(raw / d))], "--lake", str(two))
    for code, summary, err in (first, second):
        assert code == 0, err
        assert summary["reconciled"] is True
    assert (first[1]["files"], second[1]["files"]) == (5, 5)
    assert first[1]["lines_read"] + second[1]["lines_read"] == truth["lines"]
    assert first[1]["events_accepted"] + second[1]["events_accepted"] == truth["events"]
    assert second[1]["sessions_updated"] > 0 and second[1]["duplicates_already_stored"] > 0
    assert first[1]["sessions_rebuilt"] and not second[1]["sessions_rebuilt"]
    assert_same_tables(spark, two, lake)
