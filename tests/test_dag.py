"""The nightly DAG parses in a real DagBag, and its graph and commands are what the README says."""

from __future__ import annotations

import datetime as dt
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


def test_tasks_run_in_pipeline_order_and_the_retrain_hangs_off_build_features(dag):
    assert set(dag.task_ids) == {"sessionize", "build_features", "export_features", "weekly_retrain_gate",
                                 "train_sagemaker", "promote_model"}
    assert dag.get_task("sessionize").downstream_task_ids == {"build_features"}
    assert dag.get_task("build_features").downstream_task_ids == {"export_features", "weekly_retrain_gate"}
    assert dag.get_task("export_features").downstream_task_ids == set()
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


def _render(dag, task_id: str, variables: dict[str, str] | None = None) -> str:
    task = dag.get_task(task_id)
    params = {k: v.value if hasattr(v, "value") else v for k, v in dag.params.items()}
    params["spark_submit_options"] = "--master yarn"

    class _Var:
        def get(self, key, default=None):
            return (variables or {}).get(key, default)

    context = {"dag_run": SCHEDULED_14_MARCH, "params": params, "var": {"value": _Var()}}
    # Airflow's own renderer, with the DAG's Jinja environment (what a worker does before running).
    return task.render_template(task.bash_command, context, jinja_env=dag.get_template_env())


def test_rendered_commands_carry_the_run_date_and_the_config(dag):
    sessionize = _render(dag, "sessionize")
    assert sessionize == (
        f"cd {REPO} && ./spark-submit.sh --master yarn jobs/sessionize.py --config conf/local.yaml --run-date 2026-03-14"
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


def test_airflow_variables_override_the_params(dag):
    rendered = _render(dag, "sessionize", {"offer_ai_home": "/opt/offer-ai", "offer_ai_config": "conf/prod.yaml"})
    assert rendered.startswith("cd /opt/offer-ai && ./spark-submit.sh")
    assert "--config conf/prod.yaml --run-date 2026-03-14" in rendered
