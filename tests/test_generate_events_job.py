"""jobs/generate_events.py run as a user runs it: a subprocess from the repository root."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_job(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "jobs/generate_events.py", *args],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )


def count_lines(out: Path) -> tuple[int, set[str]]:
    total, suffixes = 0, set()
    for path in out.glob("date=*/part-*"):
        suffixes.add("".join(path.suffixes))
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as handle:
            total += sum(1 for _ in handle)
    return total, suffixes


def test_job_writes_gzipped_parts_per_worker_and_prints_the_summary_last(tmp_path: Path) -> None:
    out = tmp_path / "raw"
    done = run_job(
        "--out", str(out), "--users", "30", "--days", "5", "--start-date", "2026-03-01", "--seed", "5",
        "--duplicates", "0.05", "--out-of-order", "0.05", "--malformed", "0.05", "--gzip", "--workers", "2",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["job"] == "generate_events"
    assert (summary["users"], summary["days"], summary["start_date"], summary["seed"]) == (30, 5, "2026-03-01", 5)
    lines, suffixes = count_lines(out)
    assert suffixes == {".jsonl.gz"}
    assert lines == summary["lines"] == summary["events"] + summary["duplicates"] + summary["malformed"]
    assert summary["duplicates"] > 0 and summary["out_of_order"] > 0 and summary["malformed"] > 0
    assert {p.name for p in out.glob("date=2026-03-0*/part-*")} == {"part-00000.jsonl.gz", "part-00001.jsonl.gz"}
    assert not list(out.glob("date=2026-02-*")) and not list(out.glob("date=2026-03-06"))
    manifest = json.loads((out / "_generator.json").read_text())
    assert manifest == {k: v for k, v in summary.items() if k not in ("job", "seconds")}
    assert sorted(p.name for p in (out / "_truth").iterdir()) == ["decisions-00000.jsonl", "decisions-00001.jsonl"]


def test_defaults_come_from_the_settings(tmp_path: Path) -> None:
    raw = tmp_path / "from-settings"
    done = run_job(
        "--set", "generator.users=12", "--set", "generator.days=3", "--set", "generator.seed=99",
        "--set", "generator.duplicate_fraction=0.1", "--set", f"raw.root={raw}",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert (summary["users"], summary["days"], summary["seed"], summary["out"]) == (12, 3, 99, str(raw))
    assert summary["duplicates"] > 0 and summary["gzip"] is False
    assert count_lines(raw) == (summary["lines"], {".jsonl"})


@pytest.mark.parametrize(
    "args, message",
    [
        (["--users", "0"], "--users must be at least 1"),
        (["--duplicates", "2"], "duplicate_fraction must be between 0 and 1"),
        (["--start-date", "2026-13-01"], "expected YYYY-MM-DD"),
    ],
)
def test_bad_arguments_exit_2_with_one_sentence(tmp_path: Path, args: list[str], message: str) -> None:
    done = run_job("--out", str(tmp_path / "x"), *args)
    assert done.returncode == 2
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    assert message in done.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "x").exists()
