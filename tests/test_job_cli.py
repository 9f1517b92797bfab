"""Every job follows one CLI convention (--config, --set, --lake, --help), through spark-submit.sh too."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
JOBS = sorted(p.name for p in (REPO / "jobs").glob("*.py"))


def test_there_are_jobs():
    assert "generate_events.py" in JOBS


@pytest.mark.parametrize("job", JOBS)
def test_help_through_spark_submit_wrapper_shows_the_common_options(job):
    done = subprocess.run(
        ["./spark-submit.sh", f"jobs/{job}", "--help"], cwd=REPO, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-2000:]
    for option in ("--config", "--set", "--lake", "--help"):
        assert option in done.stdout, f"{job} --help lacks {option}"


def test_wrapper_without_a_job_prints_usage():
    done = subprocess.run(["./spark-submit.sh"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "usage: ./spark-submit.sh" in done.stderr


@pytest.mark.parametrize("job", JOBS)
def test_bad_config_is_one_sentence_and_exit_2(job, tmp_path):
    import sys

    done = subprocess.run(
        [sys.executable, f"jobs/{job}", "--lake", str(tmp_path), "--set", "spark.no_such_key=1"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "unknown configuration key 'spark.no_such_key'" in done.stderr.strip().splitlines()[-1]
    assert done.stdout == ""


@pytest.mark.parametrize("job", JOBS)
def test_missing_config_file_is_one_sentence_and_exit_2(job, tmp_path):
    import sys

    done = subprocess.run(
        [sys.executable, f"jobs/{job}", "--config", str(tmp_path / "absent.yaml")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "absent.yaml does not exist" in done.stderr
