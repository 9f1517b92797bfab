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


def test_schedule_is_daily_without_catchup(dag):
    assert dag.schedule == "@daily" or str(dag.timetable.summary) == "@daily"
    assert dag.catchup is False
    assert dag.max_active_runs == 1


def test_tasks_run_in_pipeline_order(dag):
    assert set(dag.task_ids) == {"sessionize", "build_features", "export_features"}
    assert dag.get_task("sessionize").downstream_task_ids == {"build_features"}
    assert dag.get_task("build_features").downstream_task_ids == {"export_features"}
    assert dag.get_task("export_features").downstream_task_ids == set()


def test_every_task_retries_and_has_a_timeout(dag):
    for task in dag.tasks:
        assert task.retries == 2, task.task_id
        assert task.execution_timeout == dt.timedelta(hours=2), task.task_id


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


def test_airflow_variables_override_the_params(dag):
    rendered = _render(dag, "sessionize", {"offer_ai_home": "/opt/offer-ai", "offer_ai_config": "conf/prod.yaml"})
    assert rendered.startswith("cd /opt/offer-ai && ./spark-submit.sh")
    assert "--config conf/prod.yaml --run-date 2026-03-14" in rendered
