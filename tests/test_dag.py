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
                                 "train_sagemaker"}
    assert dag.get_task("sessionize").downstream_task_ids == {"build_features"}
    assert dag.get_task("build_features").downstream_task_ids == {"export_features", "weekly_retrain_gate"}
    assert dag.get_task("export_features").downstream_task_ids == set()
    assert dag.get_task("weekly_retrain_gate").downstream_task_ids == {"train_sagemaker"}
    assert dag.get_task("train_sagemaker").downstream_task_ids == set()


def test_every_task_retries_and_has_a_timeout(dag):
    for task_id in ("sessionize", "build_features", "export_features"):
        task = dag.get_task(task_id)
        assert task.retries == 2, task_id
        assert task.execution_timeout == dt.timedelta(hours=2), task_id
    train = dag.get_task("train_sagemaker")
    assert train.retries == 1  # a failed job is looked at, not paid for three times
    assert train.execution_timeout == dt.timedelta(hours=4)  # > sagemaker.max_runtime_s (1 h by default) + queueing
    assert dag.get_task("weekly_retrain_gate").retries == 0


@pytest.mark.parametrize(("ds", "weekday", "retrain"), [
    ("2026-03-15", "sunday", True),    # 1 Jan 2026 is a Thursday, so 15 March is a Sunday
    ("2026-03-14", "sunday", False),
    ("2026-03-14", "saturday", True),
    ("2026-03-22", "sunday", True),
    ("2026-03-16", "sunday", False),
])
def test_the_retrain_gate_opens_on_the_configured_weekday_only(dag, ds, weekday, retrain):
    gate = dag.get_task("weekly_retrain_gate")
    assert gate.python_callable(ds=ds, params={"retrain_weekday": weekday}) is retrain


def _render(dag, task_id: str, variables: dict[str, str] | None = None) -> str:
    task = dag.get_task(task_id)
    params = {k: v.value if hasattr(v, "value") else v for k, v in dag.params.items()}
    params["spark_submit_options"] = "--master yarn"

    class _Var:
        def get(self, key, default=None):
            return (variables or {}).get(key, default)

    context = {"ds": "2026-03-14", "ds_nodash": "20260314", "params": params, "var": {"value": _Var()}}
    # Airflow's own renderer, with the DAG's Jinja environment (what a worker does before running).
    return task.render_template(task.bash_command, context, jinja_env=dag.get_template_env())


def test_rendered_commands_carry_the_run_date_and_the_config(dag):
    sessionize = _render(dag, "sessionize")
    assert sessionize == (
        f"cd {REPO} && ./spark-submit.sh --master yarn jobs/sessionize.py --config conf/local.yaml --run-date 2026-03-14"
    )
    assert "jobs/build_features.py --config conf/local.yaml --run-id 20260314" in _render(dag, "build_features")
    assert "jobs/export_features.py --config conf/local.yaml" in _render(dag, "export_features")
    assert _render(dag, "train_sagemaker") == (
        f"cd {REPO} && .venv/bin/python jobs/train_sagemaker.py --config conf/local.yaml --run-id 20260314 --wait"
    )


def test_airflow_variables_override_the_params(dag):
    rendered = _render(dag, "sessionize", {"offer_ai_home": "/opt/offer-ai", "offer_ai_config": "conf/prod.yaml"})
    assert rendered.startswith("cd /opt/offer-ai && ./spark-submit.sh")
    assert "--config conf/prod.yaml --run-date 2026-03-14" in rendered
