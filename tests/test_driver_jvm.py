"""The driver JVM's options (collector, compiler): the same through spark-submit.sh and through a
session started from Python, read back from the running JVM itself."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from offer_ai.errors import UserError
from offer_ai.spark import cds_archive, driver_java_options

REPO = Path(__file__).resolve().parents[1]
PRINT_JVM_ARGUMENTS = (
    "from pyspark.sql import SparkSession\n"
    "spark = SparkSession.builder.getOrCreate()\n"
    "bean = spark._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()\n"
    "print('JVM ' + ' '.join(str(a) for a in bean.getInputArguments()))\n"
)


def _jvm_arguments(spark) -> list[str]:
    return [str(a) for a in spark._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments()]


def test_spark_submit_sh_starts_a_quick_driver_with_the_parallel_collector(tmp_path, monkeypatch):
    script = tmp_path / "print_jvm.py"
    script.write_text(PRINT_JVM_ARGUMENTS)
    done = subprocess.run(["./spark-submit.sh", str(script)], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OFFER_AI_JIT": "quick"})
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("JVM "))
    arguments = line.split()[1:]
    assert "-XX:+UseParallelGC" in arguments and "-XX:TieredStopAtLevel=1" in arguments
    # the script's twin in Python gives the same options, the class-data-sharing archive included
    monkeypatch.setenv("OFFER_AI_JIT", "quick")
    expected = driver_java_options(cds_archive() if cds_archive().is_file() else None)
    assert set(expected.split()) <= set(arguments)


def test_an_unknown_jit_mode_stops_spark_submit_sh_in_a_sentence_before_any_jvm_starts():
    done = subprocess.run(["./spark-submit.sh", "jobs/sessionize.py", "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "OFFER_AI_JIT": "fast"})
    assert done.returncode == 2
    assert done.stderr.strip() == "spark-submit.sh: OFFER_AI_JIT must be 'quick' or 'peak' (got 'fast')."


def test_a_session_started_from_python_gets_the_same_collector_and_compiler(spark, monkeypatch):
    arguments = _jvm_arguments(spark)
    assert "-XX:+UseParallelGC" in arguments
    # the test session runs many queries in one long-lived JVM: the default tiered compiler
    assert ("-XX:TieredStopAtLevel=1" in arguments) == (os.environ.get("OFFER_AI_JIT") == "quick")
    monkeypatch.setenv("OFFER_AI_JIT", "quick")
    assert driver_java_options().split() == ["-XX:+UseParallelGC", "-XX:TieredStopAtLevel=1"]
    monkeypatch.setenv("OFFER_AI_JIT", "fast")
    with pytest.raises(UserError, match="OFFER_AI_JIT must be 'quick' or 'peak' \\(got 'fast'\\)"):
        driver_java_options()
