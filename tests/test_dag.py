"""The nightly DAG parses in a real DagBag, and its graph and commands are what the README says."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow")))
    mp.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    from airflow.dag_processing.dagbag import DagBag

    yield DagBag(dag_folder=str(REPO / "dags"))
    mp.undo()


@pytest.fixture(scope="module")
def dag(dagbag):
    return dagbag.dags["offer_ai_nightly"]


def test_dagbag_has_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == {"offer_ai_nightly"}


def test_each_run_covers_the_utc_day_that_just_ended_without_catchup(dag):
    from airflow.timetables.base import TimeRestriction
    from airflow.timetables.interval import CronDataIntervalTimetable

    assert isinstance(dag.timetable, CronDataIntervalTimetable) and dag.timetable.summary == "0 0 * * *"
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    utc = dt.timezone.utc
    first = dag.timetable.next_dagrun_info(
        last_automated_data_interval=None,
        restriction=TimeRestriction(earliest=dt.datetime(2026, 3, 14, tzinfo=utc), latest=None, catchup=True))
    # The run for 14 March starts at midnight on the 15th, and its {{ ds }} (logical date) is the 14th.
    assert first.run_after == dt.datetime(2026, 3, 15, tzinfo=utc)
    assert (first.data_interval.start, first.data_interval.end) == (dt.datetime(2026, 3, 14, tzinfo=utc),
                                                                    dt.datetime(2026, 3, 15, tzinfo=utc))


def test_export_follows_sessionize_alone_and_the_retrain_hangs_off_build_features(dag):
    assert set(dag.task_ids) == {"sessionize", "build_features", "export_features", "weekly_retrain_gate",
                                 "train_sagemaker", "promote_model"}
    assert dag.get_task("sessionize").upstream_task_ids == set()
    assert dag.get_task("sessionize").downstream_task_ids == {"build_features", "export_features"}
    # export_features needs only sessions and users: a failed build_features must not leave DynamoDB
    # stale, so its one upstream is sessionize, and it runs when (only when) sessionize succeeded.
    export = dag.get_task("export_features")
    assert export.upstream_task_ids == {"sessionize"}
    assert export.trigger_rule == "all_success"
    assert export.downstream_task_ids == set()
    assert dag.get_task("build_features").upstream_task_ids == {"sessionize"}
    assert dag.get_task("build_features").downstream_task_ids == {"weekly_retrain_gate"}
    assert dag.get_task("weekly_retrain_gate").upstream_task_ids == {"build_features"}  # trains on its export
    assert dag.get_task("weekly_retrain_gate").downstream_task_ids == {"train_sagemaker"}
    assert dag.get_task("train_sagemaker").downstream_task_ids == {"promote_model"}
    assert dag.get_task("promote_model").downstream_task_ids == set()


def test_every_task_retries_and_has_a_timeout(dag):
    for task_id in ("sessionize", "build_features", "export_features"):
        task = dag.get_task(task_id)
        assert task.retries == 2, task_id
        assert task.execution_timeout == dt.timedelta(hours=2), task_id
    train = dag.get_task("train_sagemaker")
    assert train.retries == 1  # a failed job is looked at, not paid for three times
    assert train.execution_timeout == dt.timedelta(hours=4)  # > sagemaker.max_runtime_s (1 h by default) + queueing
    assert "--timeout-seconds 13800" in train.bash_command  # the job gives up waiting first and prints its summary
    assert dag.get_task("weekly_retrain_gate").retries == 0


class _Run:
    """The two fields of a DagRun the DAG reads (what Airflow's context hands a task)."""

    def __init__(self, data_interval_start: dt.datetime | None, run_after: dt.datetime) -> None:
        self.data_interval_start, self.run_after = data_interval_start, run_after


UTC = dt.timezone.utc
SCHEDULED_14_MARCH = _Run(dt.datetime(2026, 3, 14, tzinfo=UTC), dt.datetime(2026, 3, 15, tzinfo=UTC))


@pytest.mark.parametrize(("interval_start", "run_after", "run_date", "day"), [
    (dt.datetime(2026, 3, 14, tzinfo=UTC), dt.datetime(2026, 3, 15, tzinfo=UTC), "", "2026-03-14"),  # scheduled
    (dt.datetime(2026, 3, 14, tzinfo=UTC), dt.datetime(2026, 3, 15, 9, 30, tzinfo=UTC), "", "2026-03-14"),  # manual, dated
    (None, dt.datetime(2026, 3, 15, 9, 30, tzinfo=UTC), "", "2026-03-14"),  # manual, no logical date
    (None, dt.datetime(2026, 3, 15, 0, 30, tzinfo=dt.timezone(dt.timedelta(hours=2))), "", "2026-03-13"),  # 22:30 UTC
    (dt.datetime(2026, 3, 14, tzinfo=UTC), dt.datetime(2026, 3, 15, tzinfo=UTC), "2026-02-01", "2026-02-01"),  # by hand
])
def test_a_run_processes_the_day_of_its_interval_or_the_one_it_names(dag, interval_start, run_after, run_date, day):
    run_day = dag.user_defined_macros["run_day"]
    assert run_day(_Run(interval_start, run_after), {"run_date": run_date}) == day


def test_the_run_date_param_accepts_a_day_or_nothing(dag):
    from airflow.sdk import Param

    spec = dag.params.get_param("run_date")
    for ok in ("", "2026-03-14"):
        Param(ok, **{k: v for k, v in spec.schema.items() if k != "default"}).resolve()
    with pytest.raises(Exception, match="does not match"):
        Param("14/03/2026", **{k: v for k, v in spec.schema.items() if k != "default"}).resolve()


@pytest.mark.parametrize(("day", "weekday", "retrain"), [
    (dt.datetime(2026, 3, 15, tzinfo=UTC), "sunday", True),    # 1 Jan 2026 is a Thursday, so 15 March is a Sunday
    (dt.datetime(2026, 3, 14, tzinfo=UTC), "sunday", False),
    (dt.datetime(2026, 3, 14, tzinfo=UTC), "saturday", True),
    (dt.datetime(2026, 3, 22, tzinfo=UTC), "sunday", True),
    (dt.datetime(2026, 3, 16, tzinfo=UTC), "sunday", False),
])
def test_the_retrain_gate_opens_on_the_configured_weekday_only(dag, day, weekday, retrain):
    gate = dag.get_task("weekly_retrain_gate")
    run = _Run(day, day + dt.timedelta(days=1))
    assert gate.python_callable(dag_run=run, params={"retrain_weekday": weekday, "run_date": ""}) is retrain


def _render(dag, task_id: str, variables: dict[str, str] | None = None, **overrides: str) -> str:
    task = dag.get_task(task_id)
    params = {k: v.value if hasattr(v, "value") else v for k, v in dag.params.items()}
    params["spark_submit_options"] = "--master yarn"
    params.update(overrides)  # as a trigger's conf would set them (not validated here: the quoting alone)

    class _Var:
        def get(self, key, default=None):
            return (variables or {}).get(key, default)

    context = {"dag_run": SCHEDULED_14_MARCH, "params": params, "var": {"value": _Var()}}
    # Airflow's own renderer, with the DAG's Jinja environment (what a worker does before running).
    return task.render_template(task.bash_command, context, jinja_env=dag.get_template_env())


def test_rendered_commands_ingest_every_new_file_and_carry_the_run_day_and_the_config(dag):
    sessionize = _render(dag, "sessionize")
    assert sessionize == (
        f"cd {REPO} && ./spark-submit.sh --master yarn jobs/sessionize.py --config conf/local.yaml"
        " --trigger available-now"
    )
    assert "jobs/build_features.py --config conf/local.yaml --run-id 20260314" in _render(dag, "build_features")
    assert "jobs/export_features.py --config conf/local.yaml" in _render(dag, "export_features")
    assert _render(dag, "promote_model") == (
        f"cd {REPO} && .venv/bin/python jobs/promote_model.py --config conf/local.yaml --run-id 20260314 --from-sagemaker"
    )
    assert _render(dag, "train_sagemaker") == (
        f"cd {REPO} && .venv/bin/python jobs/train_sagemaker.py --config conf/local.yaml --run-id 20260314 --wait"
        " --timeout-seconds 13800"
    )


def test_the_run_date_param_is_an_explicit_backfill_of_that_day(dag):
    sessionize = _render(dag, "sessionize", run_date="2026-02-01")
    assert sessionize.endswith("jobs/sessionize.py --config conf/local.yaml --run-date 2026-02-01")
    assert "--trigger" not in sessionize
    assert _render(dag, "build_features", run_date="2026-02-01").endswith("--run-id 20260201")


def test_airflow_variables_override_the_params(dag):
    rendered = _render(dag, "sessionize", {"offer_ai_home": "/opt/offer-ai", "offer_ai_config": "conf/prod.yaml"})
    assert rendered.startswith("cd /opt/offer-ai && ./spark-submit.sh")
    assert "--config conf/prod.yaml --trigger available-now" in rendered


INJECTIONS = ("x; touch /tmp/pwned", "$(touch /tmp/pwned)", "`touch /tmp/pwned`", "a && touch /tmp/pwned",
              "a | touch /tmp/pwned", "a\ntouch /tmp/pwned")


def _param(dag, name: str, value: str):
    """Resolve `value` against the DAG's schema for `name`, as Airflow does when a run is created
    (DAG.create_dagrun validates the trigger's conf merged into the params and refuses the run)."""
    from airflow.sdk import Param

    spec = dag.params.get_param(name)
    return Param(value, **{k: v for k, v in spec.schema.items() if k != "default"}).resolve()


@pytest.mark.parametrize(("name", "good"), [
    ("offer_ai_home", [str(REPO), "/opt/offer-ai", "/srv/offer ai/checkout-2"]),
    ("config", ["conf/local.yaml", "/etc/offer-ai/prod.yml", "conf/prod.yaml"]),
    ("python", [".venv/bin/python", "/usr/bin/python3", "/opt/py/bin/python3.11", "python3"]),
    ("spark_submit_options", ["", "--master yarn --deploy-mode client", "--master 'local[4]' --driver-memory 4g",
                              "--packages io.delta:delta-storage-s3-dynamodb:4.4.0",
                              "--conf spark.executor.memory=4g --conf spark.dynamicAllocation.enabled=true"]),
])
def test_params_rendered_into_bash_accept_their_shape_and_refuse_shell_syntax(dag, name, good):
    for value in good:
        assert _param(dag, name, value) == value
    for value in INJECTIONS:
        with pytest.raises(Exception, match="does not match"):
            _param(dag, name, value)
    if name == "python":  # the param picks an interpreter, not any program
        for value in ("/usr/bin/rm", "/bin/sh", ".venv/bin/python -c"):
            with pytest.raises(Exception, match="does not match"):
                _param(dag, name, value)


@pytest.mark.parametrize("options", [
    "--master local; touch /tmp/pwned",  # a second word after --master's value
    "touch /tmp/pwned",
    "--master",  # no value
    "--master=yarn",  # spark-submit.sh reads options as separate words
    "--jars http://example.com/x.jar",  # ships code: not an accepted option
    "--py-files /tmp/x.zip",
    "--conf spark.driver.extraJavaOptions=-javaagent:/tmp/x.jar",  # a setting that loads code
    "--conf spark.executorEnv.LD_PRELOAD=/tmp/x.so",
    "--packages 'a:b:1 --repositories http://example.com'",
    "--master 'yarn",  # a quote left open
])
def test_spark_submit_options_that_are_not_accepted_options_refuse_to_render(dag, options):
    # Even past the Param schema (a run created before it, or a Variable-free render): the task fails
    # while rendering, before bash starts.
    with pytest.raises(ValueError, match="spark_submit_options"):
        _render(dag, "sessionize", spark_submit_options=options)


def test_a_param_carrying_a_shell_command_reaches_the_job_as_one_word_and_runs_nothing(dag, tmp_path):
    """The rendered commands, run by bash: a stand-in spark-submit.sh records its arguments; the
    injected `touch` commands must not run, and each value must arrive whole, as one argument."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "spark-submit.sh").write_text('#!/bin/sh\nprintf \'%s\\n\' "$@" > "$(dirname "$0")/args"\n')
    (home / "spark-submit.sh").chmod(0o755)
    pwned = tmp_path / "pwned"
    config = f"x.yaml; touch {pwned}-config"
    name = f"a $(touch {pwned}-name) `touch {pwned}-tick`"
    rendered = _render(dag, "sessionize", offer_ai_home=str(home), config=config,
                       spark_submit_options=f"--name '{name}' --conf 'spark.executor.memory=4g && touch {pwned}-conf'")
    done = subprocess.run(["bash", "-c", rendered], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert (home / "args").read_text().splitlines() == [
        "--name", name, "--conf", f"spark.executor.memory=4g && touch {pwned}-conf",
        "jobs/sessionize.py", "--config", config, "--trigger", "available-now",
    ]
    # The same through the python param and the Airflow Variables (set by an admin, quoted all the same).
    python = f"./py; touch {pwned}-python"
    rendered = _render(dag, "train_sagemaker", {"offer_ai_home": f"{home}; touch {pwned}-home"}, python=python)
    done = subprocess.run(["bash", "-c", rendered], capture_output=True, text=True, timeout=30)
    assert done.returncode != 0 and "No such file or directory" in done.stderr  # cd to a folder with that name
    rendered = _render(dag, "train_sagemaker", offer_ai_home=str(home), python=python)
    done = subprocess.run(["bash", "-c", rendered], capture_output=True, text=True, timeout=30)
    assert done.returncode == 127  # no program named "./py; touch ...": nothing ran
    assert list(tmp_path.glob("pwned*")) == []


def test_the_spark_tasks_start_a_quick_jvm_and_keep_the_workers_environment(dag):
    """A night's jobs are short: spark-submit.sh reads OFFER_AI_JIT=quick (C1 only) from the task's
    environment, added to the worker's (PATH, AWS_* ...) rather than replacing it."""
    for task_id in ("sessionize", "build_features", "export_features"):
        task = dag.get_task(task_id)
        assert task.env == {"OFFER_AI_JIT": "quick"}, task_id
        assert task.append_env is True, task_id
    assert dag.get_task("train_sagemaker").env is None  # not a Spark job
