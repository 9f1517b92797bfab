"""offer_ai_nightly: the day's raw events -> sessions -> training rows -> DynamoDB.

Each task is one ./spark-submit.sh call, so what runs here is exactly what a person runs by hand
(README). Where the repository lives and which config to use are decided at run time: the
Airflow Variables `offer_ai_home` and `offer_ai_config` win, else the DAG params (defaults: the
checkout holding this file, and its conf/local.yaml). Add `--master yarn` and friends through
the `spark_submit_options` param.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Param

REPO = str(Path(__file__).resolve().parents[1])
HOME = "{{ var.value.get('offer_ai_home', params.offer_ai_home) }}"
CONFIG = "{{ var.value.get('offer_ai_config', params.config) }}"
SUBMIT = f"cd {HOME} && ./spark-submit.sh {{{{ params.spark_submit_options }}}}"


with DAG(
    dag_id="offer_ai_nightly",
    description="Sessionize the day's events, rebuild training rows, refresh the online features",
    schedule="@daily",
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,
    tags=["offer-ai"],
    default_args={
        "retries": 2,
        "retry_delay": dt.timedelta(minutes=10),
        "retry_exponential_backoff": True,
        "execution_timeout": dt.timedelta(hours=2),
    },
    params={
        "offer_ai_home": Param(REPO, type="string", description="checkout of offer-ai on the worker"),
        "config": Param("conf/local.yaml", type="string", description="config file, relative to offer_ai_home"),
        "spark_submit_options": Param("", type="string", description="extra spark-submit options, e.g. --master yarn"),
    },
) as dag:
    sessionize = BashOperator(
        task_id="sessionize",
        bash_command=f"{SUBMIT} jobs/sessionize.py --config {CONFIG} --run-date {{{{ ds }}}}",
    )
    build_features = BashOperator(
        task_id="build_features",
        bash_command=f"{SUBMIT} jobs/build_features.py --config {CONFIG} --run-id {{{{ ds_nodash }}}}",
    )
    export_features = BashOperator(
        task_id="export_features",
        bash_command=f"{SUBMIT} jobs/export_features.py --config {CONFIG}",
    )
    sessionize >> build_features >> export_features
