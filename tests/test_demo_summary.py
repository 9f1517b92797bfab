"""make demo's closing table: the figures each job reported, in words, with the seconds per stage."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("demo_summary", REPO / "scripts" / "demo_summary.py")
demo_summary = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(demo_summary)


def _stage(logs: Path, name: str, seconds: int, *stdout_lines: str) -> None:
    (logs / f"{name}.out").write_text("".join(line + "\n" for line in stdout_lines))
    with (logs / "stages.tsv").open("a") as f:
        f.write(f"{name}\t{seconds}\n")


def test_the_table_reads_each_stage_s_last_json_line_and_adds_up_the_seconds(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    _stage(logs, "export_features", 62, "progress line", json.dumps(
        {"job": "export_features", "items_written": 4200, "items_considered": 5000, "table": "t", "items_per_second": 4551.9}))
    _stage(logs, "decide_offers", 3, "user_id  as_of ...", json.dumps(
        {"users": 6, "cold_starts": 1, "explored": 0, "model_version": "m-1", "epsilon": 0.1}))
    _stage(logs, "train_notebook", 26, json.dumps(
        {"validation_rmse": 28.872, "baseline_rmse": 40.1651, "policy_dr": 18.745, "logging_value": 15.515,
         "true_value": None}))
    _stage(logs, "show_tables", 45, json.dumps({"rows": {"events": 1101799, "users": 5000}}))
    _stage(logs, "new_stage", 1, json.dumps({"job": "new_stage", "answer": 42}))
    _stage(logs, "sessionize", 120, "no json here")

    assert demo_summary.render(tmp_path).splitlines() == [
        "stage            seconds  what it did",
        "export_features       62  4,200 of 5,000 players' items written to DynamoDB table t (4,552 items/s)",
        "decide_offers          3  6 players decided (1 cold start, 0 explored), model m-1, epsilon 0.1",
        "train_notebook        26  validation RMSE 28.87 (no-skill 40.17); greedy policy DR 18.75 vs logging 15.52 per decision",
        "show_tables           45  events 1,101,799, users 5,000",
        'new_stage              1  {"job": "new_stage", "answer": 42}',
        "sessionize           120  (no summary)",
        "total                257",
    ]
