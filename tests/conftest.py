"""Shared fixtures: one Delta-enabled SparkSession for the whole run (cold start ~5 s)."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest_dynamodb import dynamodb_endpoint, dynamodb_table  # noqa: F401  (tests/ is on sys.path)

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
# PySpark's collect() turns timestamps into naive datetimes in the Python process's zone; the
# jobs run in UTC (spark-submit.sh), so the tests compare in UTC whatever the machine's zone.
os.environ["TZ"] = "UTC"
time.tzset()
# py4j logs "Closing down clientserver connection" from __del__ at interpreter exit, after
# pytest has closed its capture streams: a traceback in every run's output, not a failure.
logging.getLogger("py4j").setLevel(logging.WARNING)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator["SparkSession"]:  # noqa: F821
    """local[2], two shuffle partitions, UI off, Delta on — built by the same code the jobs use."""
    from offer_ai.config import load_settings
    from offer_ai.spark import build_spark

    warehouse = tmp_path_factory.mktemp("spark-warehouse")
    settings = load_settings(
        REPO / "conf" / "local.yaml",
        [
            "spark.master=local[2]",
            "spark.shuffle_partitions=2",
            f"lake.root={tmp_path_factory.mktemp('lake')}",
            f'spark.conf={{"spark.sql.warehouse.dir": "{warehouse}", "spark.default.parallelism": "2"}}',
        ],
    )
    session = build_spark(settings, app_name="offer-ai-tests")
    yield session
    session.stop()
