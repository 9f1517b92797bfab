"""offer_ai_nightly: the day's raw events -> sessions -> training rows -> DynamoDB; weekly retrain.

    sessionize -> build_features -> export_features
                               \-> weekly_retrain_gate -> train_sagemaker -> promote_model  (one weekday only)

Each run covers one UTC day and starts after it ends: the schedule is a cron *data interval*,
and every task takes its day from the start of the run's interval (`run_day`), so the run that
starts at 00:00 on the 15th processes the 14th. A run triggered by hand gets the last complete
day before its logical date (Airflow infers that interval) or, without a logical date, the day
before it was requested; the `run_date` param names a day outright. (Airflow 3's plain "@daily"
is a trigger timetable whose `{{ ds }}` is the day only beginning, whose raw events do not exist.)

Each task is one command a person can run by hand (README): ./spark-submit.sh for the Spark
jobs, the venv's python for the SageMaker launch. Where the repository lives and which config
to use are decided at run time: the Airflow Variables `offer_ai_home` and `offer_ai_config` win,
else the DAG params (defaults: the checkout holding this file, and its conf/local.yaml). Add
`--master yarn` and friends through the `spark_submit_options` param.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.python import ShortCircuitOperator
from airflow.sdk import DAG, Param
from airflow.timetables.interval import CronDataIntervalTimetable

REPO = str(Path(__file__).resolve().parents[1])
HOME = "{{ var.value.get('offer_ai_home', params.offer_ai_home) }}"
CONFIG = "{{ var.value.get('offer_ai_config', params.config) }}"
SUBMIT = f"cd {HOME} && ./spark-submit.sh {{{{ params.spark_submit_options }}}}"
PYTHON = f"cd {HOME} && {{{{ params.python }}}}"
DAY = "{{ run_day(dag_run, params) }}"
DAY_NODASH = "{{ run_day(dag_run, params) | replace('-', '') }}"
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def run_day(dag_run: Any, params: Mapping[str, Any]) -> str:
    """The UTC day (YYYY-MM-DD) a run processes.

    ``params.run_date`` when set; else the start of the run's data interval (scheduled runs, and
    manual runs with a logical date, for which Airflow infers the last complete interval); else,
    for a run triggered without a logical date (no interval), the UTC day before ``run_after``.
    """
    if params.get("run_date"):
        return dt.date.fromisoformat(str(params["run_date"])).isoformat()
    if dag_run.data_interval_start is not None:
        return dag_run.data_interval_start.astimezone(dt.timezone.utc).date().isoformat()
    return (dag_run.run_after.astimezone(dt.timezone.utc) - dt.timedelta(days=1)).date().isoformat()


def is_retrain_day(dag_run: Any, params: Mapping[str, Any]) -> bool:
    """True when the run's day is the configured retrain weekday (Airflow passes both from the context)."""
    return WEEKDAYS[dt.date.fromisoformat(run_day(dag_run, params)).weekday()] == str(params["retrain_weekday"]).lower()


with DAG(
    dag_id="offer_ai_nightly",
    description="Sessionize the day's events, rebuild training rows, refresh the online features",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,
    tags=["offer-ai"],
    user_defined_macros={"run_day": run_day},
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
        "python": Param(".venv/bin/python", type="string", description="python with offer_ai installed, relative to offer_ai_home"),
        "retrain_weekday": Param("sunday", enum=list(WEEKDAYS), description="the day whose run retrains on SageMaker"),
        "run_date": Param("", type="string", pattern=r"^(\d{4}-\d{2}-\d{2})?$",
                          description="process this UTC day (YYYY-MM-DD) instead of the run's data interval"),
    },
) as dag:
    sessionize = BashOperator(
        task_id="sessionize",
        bash_command=f"{SUBMIT} jobs/sessionize.py --config {CONFIG} --run-date {DAY}",
    )
    build_features = BashOperator(
        task_id="build_features",
        bash_command=f"{SUBMIT} jobs/build_features.py --config {CONFIG} --run-id {DAY_NODASH}",
    )
    export_features = BashOperator(
        task_id="export_features",
        bash_command=f"{SUBMIT} jobs/export_features.py --config {CONFIG}",
    )
    # Skips only its own downstream (the retrain); export_features does not depend on it.
    weekly_retrain_gate = ShortCircuitOperator(
        task_id="weekly_retrain_gate",
        python_callable=is_retrain_day,
        retries=0,
    )
    # One retry: a second failed job is a problem to look at, not to pay for a third time. The job
    # stops waiting 10 min before Airflow's timeout, so it still prints its summary; a retry then
    # follows the job the first try started (same export, still running) instead of starting another.
    # Raise both when sagemaker.max_runtime_s plus queueing exceeds 3 h 50 min.
    train_sagemaker = BashOperator(
        task_id="train_sagemaker",
        bash_command=(f"{PYTHON} jobs/train_sagemaker.py --config {CONFIG} --run-id {DAY_NODASH} --wait"
                      " --timeout-seconds 13800"),
        retries=1,
        execution_timeout=dt.timedelta(hours=4),
    )
    # Serves the retrained model only if it passes the guard (validation RMSE below the no-skill
    # baseline, doubly-robust value at least the logging policy's); a refusal fails the task.
    promote_model = BashOperator(
        task_id="promote_model",
        bash_command=f"{PYTHON} jobs/promote_model.py --config {CONFIG} --run-id {DAY_NODASH} --from-sagemaker",
    )
    sessionize >> build_features >> [export_features, weekly_retrain_gate]
    weekly_retrain_gate >> train_sagemaker >> promote_model
