"""Issue #15: one bad value, one bad file, one crash or one overlapping run never stops the
nightly run for good nor loses data. Each test reproduces a failure the issue measured or
read in the code, on hand-made input whose expected outcome is worked out here."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from job_runner import load_job, run_in_process  # tests/ is on sys.path

from offer_ai.features.training import latest_event_time
from offer_ai.run_lock import LOCKS

SESSIONIZE = load_job("sessionize")
U = '"customer_identifier":"u1","session_id":"s1"'


def _day(raw: Path, day: str, name: str, lines: list[str], gz: bool = False) -> Path:
    folder = raw / f"date={day}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def _events(day: str, n: int, start_hour: int = 10) -> list[str]:
    return [f'{{"event_id":"game_start",{U},"event_time":"{day}T{start_hour + i // 60:02d}:{i % 60:02d}:00Z"}}'
            for i in range(n)]


def test_an_unreadable_file_is_set_aside_and_the_rest_of_the_day_loads(spark, tmp_path):
    raw, lake = tmp_path / "raw", tmp_path / "lake"
    _day(raw, "2026-01-01", "good.jsonl", _events("2026-01-01", 5))
    bad = _day(raw, "2026-01-01", "cut.jsonl.gz", _events("2026-01-01", 200, 12), gz=True)
    bad.write_bytes(bad.read_bytes()[:60])  # a truncated upload: gzip hits EOF mid-stream
    argv = ("--run-date", "2026-01-01", "--set", f"raw.root={raw}", "--lake", str(lake))
    code, summary, err = run_in_process(SESSIONIZE, *argv)
    assert code == 0, err[-2000:]
    assert (summary["files"], summary["files_unreadable"], summary["events_accepted"]) == (2, 1, 5)
    assert summary["unreadable_files"][0].endswith("cut.jsonl.gz") and summary["reconciled"]
    rows = spark.read.format("delta").load(str(lake / "events_quarantine")).collect()
    assert [(r["reason"], Path(r["source_file"]).name) for r in rows] == [("unreadable_file", "cut.jsonl.gz")]
    assert "EOFException" in rows[0]["raw"]
    code, summary, _ = run_in_process(SESSIONIZE, *argv)  # a retry of the night: the same outcome, nothing added
    assert code == 0 and (summary["files_unreadable"], summary["quarantine_rows_added"]) == (1, 0)


def test_a_huge_amount_and_a_far_future_clock_do_not_wedge_the_next_nights(spark, tmp_path):
    raw, lake = tmp_path / "raw", tmp_path / "lake"
    _day(raw, "2026-01-01", "a.jsonl", [
        *_events("2026-01-01", 3),
        f'{{"event_id":"purchase",{U},"event_time":"2026-01-01T11:00:00Z","txn_amount":1e15}}',
        f'{{"event_id":"game_start",{U},"event_time":"2099-01-01T00:00:00Z"}}',
    ])
    _day(raw, "2026-01-02", "b.jsonl", _events("2026-01-02", 2))
    for day, accepted in (("2026-01-01", 3), ("2026-01-02", 2)):
        code, summary, err = run_in_process(SESSIONIZE, "--run-date", day, "--set", f"raw.root={raw}", "--lake", str(lake),
                                            "--max-bad-ratio", "0.5")
        assert code == 0, err[-2000:]
        assert summary["events_accepted"] == accepted
    reasons = {r["reason"] for r in spark.read.format("delta").load(str(lake / "events_quarantine")).collect()}
    assert reasons == {"invalid_txn_amount", "implausible_event_time"}
    latest = latest_event_time(spark.read.format("delta").load(str(lake / "events")))
    assert latest == dt.datetime(2026, 1, 2, 10, 1, tzinfo=dt.timezone.utc)  # not 2099


def test_a_spark_error_ends_in_one_sentence_and_no_second_failure(spark, tmp_path):
    raw, lake = tmp_path / "raw", tmp_path / "lake"
    _day(raw, "2026-01-01", "a.jsonl", _events("2026-01-01", 3))
    argv = ("--input", str(raw), "--lake", str(lake))
    assert run_in_process(SESSIONIZE, *argv)[0] == 0
    newest = sorted((lake / "events" / "_delta_log").glob("*.json"))[-1]
    damaged = newest.with_name(f"{int(newest.stem) + 1:020d}.json")  # a new commit, so no cache hides it
    damaged.write_text('{"add": not json}\n')  # a damaged table: Spark fails when it reads the log
    code, summary, err = run_in_process(SESSIONIZE, *argv)
    assert code == 1 and summary is None
    last = err.strip().splitlines()[-1]
    assert last.startswith("sessionize: error: ") and " failed: " in last and "rerun" in last, last
    assert "Traceback" not in err and "TypeError" not in err


def _hold(lake: Path, name: str, pid: int, heartbeat: dt.datetime) -> Path:
    lock = lake / LOCKS / f"{name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(json.dumps({"job": "sessionize", "host": socket.gethostname(), "pid": pid, "token": "other",
                                "started_at": heartbeat.isoformat(), "heartbeat_at": heartbeat.isoformat()}))
    return lock


def test_a_second_sessionize_is_refused_while_the_first_holds_the_lake(spark, tmp_path):
    raw, lake = tmp_path / "raw", tmp_path / "lake"
    _day(raw, "2026-01-01", "a.jsonl", _events("2026-01-01", 3))
    parent = os.getppid()  # a live process on this host: the holder is running
    lock = _hold(lake, "ingest", parent, dt.datetime.now(dt.timezone.utc))
    code, _, err = run_in_process(SESSIONIZE, "--input", str(raw), "--lake", str(lake))
    assert code == 2
    assert f"Another sessionize run holds" in err and f"process {parent}" in err and "wait for it" in err
    assert not (lake / "events").exists() and lock.exists()


def test_a_lock_left_by_a_killed_run_is_taken_over(spark, tmp_path):
    raw, lake = tmp_path / "raw", tmp_path / "lake"
    _day(raw, "2026-01-01", "a.jsonl", _events("2026-01-01", 3))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # its pid is free now: the holder was killed
    lock = _hold(lake, "ingest", gone.pid, dt.datetime.now(dt.timezone.utc))
    code, summary, err = run_in_process(SESSIONIZE, "--input", str(raw), "--lake", str(lake))
    assert code == 0, err[-2000:]
    assert summary["events_accepted"] == 3 and not lock.exists()  # taken over, then released
    old = _hold(lake, "ingest", 1, dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1))  # an old heartbeat
    assert run_in_process(SESSIONIZE, "--input", str(raw), "--lake", str(lake))[0] == 0 and not old.exists()
