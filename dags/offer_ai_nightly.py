"""offer_ai_nightly: every raw file not ingested yet -> sessions -> DynamoDB and training rows; weekly retrain.

    sessionize -> export_features
               \-> build_features -> weekly_retrain_gate -> train_sagemaker -> promote_model  (one weekday only)

sessionize runs `--trigger available-now`: it reads raw.root as a Structured Streaming file
source whose checkpoint (under the lake) records which files it has ingested, takes every file
not ingested yet, exactly once, and stops. So a run is not tied to one day's folder: a night the
scheduler missed (paused, down) or a file that landed late in an old `date=.../` folder is
ingested by the next run, with no Airflow catchup. Only a run with the `run_date` param set is
an explicit backfill of that one day (`--run-date`, which reads only `date=<run_date>/`).

The run's *day* names the training export (`--run-id YYYYMMDD`) and picks the retrain weekday:
the schedule is a cron *data interval*, and the day is the start of the run's interval
(`run_day`), so the run that starts at 00:00 on the 15th is the 14th's. A run triggered by hand
gets the last complete day before its logical date (Airflow infers that interval) or, without a
logical date, the day before it was requested; `run_date` names a day outright. (Airflow 3's
plain "@daily" is a trigger timetable whose `{{ ds }}` is the day only beginning.)

export_features needs only the sessions and users sessionize writes, so it follows sessionize
alone: a failed build_features leaves the online features fresh. The retrain follows
build_features, whose export it trains on.

Each task is one command a person can run by hand (README): ./spark-submit.sh for the Spark
jobs, the venv's python for the SageMaker launch. Where the repository lives and which config
to use are decided at run time: the Airflow Variables `offer_ai_home` and `offer_ai_config` win,
else the DAG params (defaults: the checkout holding this file, and its conf/local.yaml). Add
`--master yarn` and friends through the `spark_submit_options` param.

Whoever may trigger the DAG sets its params, and they end up in bash commands, so no param
reaches bash as shell syntax: each one is validated against a strict Param schema when the run
is created (a bad value refuses the run), and every value rendered into a command is quoted
(the `sh` filter, shlex.quote). `spark_submit_options` is split as a shell would split it; each
token must be an accepted option (SPARK_SUBMIT_OPTIONS) or that option's one value, and each
token is quoted on its own.
"""

from __future__ import annotations

import datetime as dt
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.python import ShortCircuitOperator
from airflow.sdk import DAG, Param
from airflow.timetables.interval import CronDataIntervalTimetable

REPO = str(Path(__file__).resolve().parents[1])
HOME = "{{ var.value.get('offer_ai_home', params.offer_ai_home) | sh }}"
CONFIG = "{{ var.value.get('offer_ai_config', params.config) | sh }}"
SUBMIT = f"cd {HOME} && ./spark-submit.sh {{{{ params.spark_submit_options | spark_options }}}}"
PYTHON = f"cd {HOME} && {{{{ params.python | sh }}}}"
SOURCE = "{{ sessionize_source(params) }}"
DAY_NODASH = "{{ run_day(dag_run, params) | replace('-', '') }}"
#: A night's Spark jobs are short JVMs over one day of data: C1 only (spark-submit.sh's
#: OFFER_AI_JIT=quick) runs them ~20 % faster on a driver of this machine (bench/README.md); the
#: rest of the worker's environment is kept (append_env). A cluster's executors are not affected.
SPARK_ENV = {"OFFER_AI_JIT": "quick"}
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

# Param schemas (JSON Schema `pattern`s, matched with re.search, hence the anchors). They refuse a
# run whose params could not be a path, a python or spark-submit options; quoting is the guard
# that holds whatever the value.
HOME_PATTERN = r"^/[\w ./@+-]*$"  # an absolute path
CONFIG_PATTERN = r"^[\w ./@+-]+\.ya?ml$"  # a YAML file, relative to offer_ai_home or absolute
PYTHON_PATTERN = r"^/?([\w.+-]+/)*python[0-9.]*$"  # an interpreter named python*, nothing else
SPARK_OPTIONS_PATTERN = r"""^[\w .,:/@%+=*'"\[\]-]*$"""  # none of ; & | $ ` < > ( ) \ {}

# The spark-submit options a trigger may pass: where and how big the job runs, and Maven packages
# (e.g. Delta's DynamoDB log store). True: takes one value (as spark-submit.sh reads them). Options
# that ship code or files from a place the trigger names (--jars, --py-files, --repositories,
# --class, --properties-file, --driver-java-options, ...) are refused; other Spark settings go in
# the config's `spark.conf`. Widen these here, where a reviewer sees it.
SPARK_SUBMIT_OPTIONS = {
    "--master": True, "--deploy-mode": True, "--name": True, "--queue": True, "--num-executors": True,
    "--executor-memory": True, "--executor-cores": True, "--total-executor-cores": True,
    "--driver-memory": True, "--driver-cores": True, "--packages": True, "--exclude-packages": True,
    "--conf": True, "--verbose": False, "--supervise": False,
}
# --conf KEY=VALUE: resources, parallelism and scheduling only (no class paths, java options,
# environment, plugins or repositories, each a way to run code of the trigger's choosing).
SPARK_CONF_KEY = re.compile(
    r"spark\.((executor|driver)\.(memory|memoryOverhead|cores|maxResultSize)|executor\.instances"
    r"|dynamicAllocation\.\w+|default\.parallelism|task\.cpus|yarn\.queue|memory\.\w+|network\.timeout"
    r"|sql\.shuffle\.partitions|sql\.adaptive\.[\w.]+|speculation(\.\w+)*|locality\.wait(\.\w+)?)"
)
MAVEN_COORDINATES = re.compile(r"[\w.-]+:[\w.-]+(:[\w.-]+)?(,[\w.-]+:[\w.-]+(:[\w.-]+)?)*")


def sh(value: Any) -> str:
    """A Jinja filter: the value as one shell word (shlex.quote)."""
    return shlex.quote(str(value))


def spark_options(text: Any) -> str:
    """A Jinja filter: `spark_submit_options` split as a shell would, checked, each token quoted.

    The tokens must be options of SPARK_SUBMIT_OPTIONS, each followed by its one value when it
    takes one (`--master yarn`, not `--master=yarn`: spark-submit.sh reads them so); a --conf
    key must match SPARK_CONF_KEY and --packages / --exclude-packages take Maven coordinates.
    Anything else (a stray word, a quote left open) raises, so the task fails before bash starts.
    """
    try:
        tokens = shlex.split(str(text or ""))
    except ValueError as exc:
        raise ValueError(f"spark_submit_options {text!r}: {exc}") from None
    i = 0
    while i < len(tokens):
        option = tokens[i]
        if option not in SPARK_SUBMIT_OPTIONS:
            raise ValueError(f"spark_submit_options: {option!r} is not one of the accepted options "
                             f"({', '.join(SPARK_SUBMIT_OPTIONS)}), each written as its own word")
        if SPARK_SUBMIT_OPTIONS[option]:
            if i + 1 == len(tokens):
                raise ValueError(f"spark_submit_options: {option} needs a value")
            value = tokens[i + 1]
            if option == "--conf" and not SPARK_CONF_KEY.fullmatch(value.split("=", 1)[0]):
                raise ValueError(f"spark_submit_options: --conf {value!r}: only resource and scheduling settings "
                                 "are accepted here; put other Spark settings in the config's spark.conf")
            if option in ("--packages", "--exclude-packages") and not MAVEN_COORDINATES.fullmatch(value):
                raise ValueError(f"spark_submit_options: {option} {value!r} is not group:artifact:version[,...]")
            i += 1
        i += 1
    return " ".join(shlex.quote(token) for token in tokens)


def run_day(dag_run: Any, params: Mapping[str, Any]) -> str:
    """The UTC day (YYYY-MM-DD) a run is named after: its export's run id and its weekday.

    ``params.run_date`` when set; else the start of the run's data interval (scheduled runs, and
    manual runs with a logical date, for which Airflow infers the last complete interval); else,
    for a run triggered without a logical date (no interval), the UTC day before ``run_after``.
    """
    if params.get("run_date"):
        return dt.date.fromisoformat(str(params["run_date"])).isoformat()
    if dag_run.data_interval_start is not None:
        return dag_run.data_interval_start.astimezone(dt.timezone.utc).date().isoformat()
    return (dag_run.run_after.astimezone(dt.timezone.utc) - dt.timedelta(days=1)).date().isoformat()


def sessionize_source(params: Mapping[str, Any]) -> str:
    """What sessionize reads: every raw file not ingested yet (the nightly run), or, with the
    `run_date` param, that one day's folder (an explicit backfill)."""
    if params.get("run_date"):
        return f"--run-date {dt.date.fromisoformat(str(params['run_date'])).isoformat()}"
    return "--trigger available-now"


def is_retrain_day(dag_run: Any, params: Mapping[str, Any]) -> bool:
    """True when the run's day is the configured retrain weekday (Airflow passes both from the context)."""
    return WEEKDAYS[dt.date.fromisoformat(run_day(dag_run, params)).weekday()] == str(params["retrain_weekday"]).lower()


with DAG(
    dag_id="offer_ai_nightly",
    description="Ingest every new raw file, refresh the online features, rebuild training rows",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,  # a missed night needs no run of its own: the next run ingests its files
    max_active_runs=1,
    tags=["offer-ai"],
    user_defined_macros={"run_day": run_day, "sessionize_source": sessionize_source},
    user_defined_filters={"sh": sh, "spark_options": spark_options},
    default_args={
        "retries": 2,
        "retry_delay": dt.timedelta(minutes=10),
        "retry_exponential_backoff": True,
        "execution_timeout": dt.timedelta(hours=2),
    },
    params={
        "offer_ai_home": Param(REPO, type="string", pattern=HOME_PATTERN,
                               description="checkout of offer-ai on the worker (absolute path)"),
        "config": Param("conf/local.yaml", type="string", pattern=CONFIG_PATTERN,
                        description="config file (.yaml), relative to offer_ai_home or absolute"),
        "spark_submit_options": Param("", type="string", pattern=SPARK_OPTIONS_PATTERN,
                                      description="extra spark-submit options, e.g. --master yarn --deploy-mode client"),
        "python": Param(".venv/bin/python", type="string", pattern=PYTHON_PATTERN,
                        description="python with offer_ai installed, relative to offer_ai_home or absolute"),
        "retrain_weekday": Param("sunday", enum=list(WEEKDAYS), description="the day whose run retrains on SageMaker"),
        "run_date": Param("", type="string", pattern=r"^(\d{4}-\d{2}-\d{2})?$",
                          description="backfill this UTC day (YYYY-MM-DD): sessionize reads only its folder; "
                                      "empty: every raw file not ingested yet"),
    },
) as dag:
    sessionize = BashOperator(
        task_id="sessionize",
        bash_command=f"{SUBMIT} jobs/sessionize.py --config {CONFIG} {SOURCE}",
        env=SPARK_ENV,
        append_env=True,
    )
    build_features = BashOperator(
        task_id="build_features",
        bash_command=f"{SUBMIT} jobs/build_features.py --config {CONFIG} --run-id {DAY_NODASH}",
        env=SPARK_ENV,
        append_env=True,
    )
    # Reads only sessions and users: it follows sessionize alone (default all_success), so a failed
    # build_features does not leave DynamoDB stale. Its lock ("online") differs from build_features'
    # ("training"), so the two may run side by side.
    export_features = BashOperator(
        task_id="export_features",
        bash_command=f"{SUBMIT} jobs/export_features.py --config {CONFIG}",
        env=SPARK_ENV,
        append_env=True,
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
    sessionize >> [export_features, build_features]
    build_features >> weekly_retrain_gate >> train_sagemaker >> promote_model
