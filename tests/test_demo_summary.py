"""make demo's closing table: the figures each job reported, in words, with the seconds per stage."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

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


# Summaries shaped exactly like the real ones: every key each job returns from main() (run_job adds
# "job" and "seconds"), or, for train_notebook, the line scripts/demo.sh prints from metrics.json.
# The figures are made up but reconcile as the jobs' would (lines = events + duplicates + malformed;
# lines_read = events_accepted + duplicates + quarantined + held_back).
REAL_SUMMARIES = {
    "generate_events": {  # offer_ai.sim.generate
        "job": "generate_events", "out": "demo-output/raw", "users": 5000, "days": 28, "start_date": "2026-01-01",
        "seed": 7, "workers": 2, "gzip": False, "duplicate_fraction": 0.01, "out_of_order_fraction": 0.01,
        "malformed_fraction": 0.001, "offers": ["starter_pack@0.99", "vip_pass@49.99"],
        "events": 1091234, "events_by_type": {"session_start": 187654}, "lines": 1103248, "duplicates": 10912,
        "duplicates_in_later_folder": 102, "out_of_order": 10877, "late_arrivals": 1033, "malformed": 1102,
        "malformed_by_kind": {"not_json": 1102}, "sessions": 187654, "sessions_crossing_midnight": 2311,
        "users_with_events": 5000, "decisions": 60321, "offer_purchases": 4410, "revenue": 77520.31,
        "identity_changes": 98, "event_times_with_offset": 5321, "files": 56, "seconds": 3.021,
    },
    "sessionize": {  # jobs/sessionize.py + ingest's reconciliation() + update_sessions_and_users()
        "job": "sessionize", "inputs": ["demo-output/raw"], "files": 56, "lake": "demo-output/lake",
        "ingested_at": "2026-01-29T00:00:00+00:00", "split": "day", "spec_version": "spec-1", "max_bad_ratio": 0.05,
        "quarantine_rows_added": 1102, "lines_read": 1103248, "events_loaded": True, "events_accepted": 1091234,
        "duplicates": 10912, "duplicates_within_input": 10912, "duplicates_already_stored": 0, "quarantined": 1102,
        "quarantined_by_reason": {"not_json": 1102}, "held_back": 0, "bad_ratio": 0.000999, "reconciled": True,
        "sessions_rebuilt": True, "sessions_inserted": 187654, "sessions_updated": 0, "sessions_deleted": 0,
        "users_inserted": 5000, "users_updated": 0, "seconds": 118.4,
    },
    "build_features": {  # jobs/build_features.py (export_rows: training_export's {split: rows})
        "job": "build_features", "lake": "demo-output/lake", "spec_version": "spec-1",
        "latest_event_time": "2026-01-28T23:59:58+00:00", "anchors_found": 60400, "anchors_kept": 60321,
        "labels_complete": 56234, "labels_incomplete": 4087, "training_examples": "demo-output/lake/training_examples",
        "run_id": "demo", "export": "demo-output/lake/exports/training/demo", "validation_cutoff": "2026-01-23T00:00:00+00:00",
        "export_rows": {"train": 45000, "validation": 11234}, "export_files": {"train": 1, "validation": 1},
        "seconds": 41.2,
    },
    "train_notebook": {  # scripts/demo.sh, from metrics.json, rounded to 3 places
        "validation_rmse": 28.872, "baseline_rmse": 40.163, "policy_dr": 18.747, "logging_value": 15.518,
        "true_value": 18.752, "true_logging_value": 15.204, "true_oracle_value": 19.381,
    },
    "export_features": {  # jobs/export_features.py
        "job": "export_features", "as_of": "2026-01-28T23:59:58+00:00", "table": "offer-ai-features",
        "table_state": "created", "spec_version": "spec-1", "items_considered": 5000, "items_changed": 4987,
        "items_written": 4987, "items_retried": 0, "requests": 200, "max_request_items": 25, "items_per_second": 1234.6,
        "online_features": "demo-output/lake/online_features", "seconds": 36.0,
    },
    "decide_offers": {  # jobs/decide_offers.py, one decision shown (Decision.as_dict)
        "job": "decide_offers", "users": 6, "cold_starts": 1, "explored": 1, "model_version": "xgb-abc123",
        "spec_version": "spec-1", "epsilon": 0.1, "seed": 5, "offers": 8, "table": "offer-ai-features",
        "decisions": [{"user_id": "new-player-0001", "as_of": None, "cold_start": True, "features": {"country": None},
                       "offer_type": "starter_pack", "offer_price": 0.99, "propensity": 0.9125,
                       "greedy_offer_type": "starter_pack", "greedy_offer_price": 0.99, "explored": False,
                       "expected_revenue": 1.7, "model_version": "xgb-abc123"}],
        "seconds": 2.1,
    },
    "promote_model": {  # jobs/promote_model.py (guard: offer_ai.model.promotion.GuardReport.as_dict)
        "job": "promote_model", "model_version": "0f3c9a1b2d4e", "source": "demo-output/model/model",
        "export": "demo-output/lake/exports/training/demo", "models_root": "demo-output/models",
        "guard": {"model_version": "0f3c9a1b2d4e", "rows": 11234, "epsilon": 0.1, "validation_rmse": 28.8716,
                  "baseline_rmse": 40.1634, "policy_dr": 18.3049, "logging_value": 15.5176, "reasons": [],
                  "passed": True},
        "promoted": True, "current": "0f3c9a1b2d4e", "previous": None, "seconds": 4.2,
    },
    "decisions": {  # scripts/demo_decisions.py, one answer of POST /v1/decisions shown
        "users": 6, "cold_starts": 1, "explored": 0, "model_version": "0f3c9a1b2d4e", "url": "http://127.0.0.1:8089",
        "decisions": [{"user_id": "new-player-0001", "decision_id": "9c1e", "offer_type": "starter_pack",
                       "offer_price": 0.99, "propensity": 0.9125, "model_version": "0f3c9a1b2d4e",
                       "features": {"country": None}, "features_as_of": None, "cold_start": True, "store": "miss",
                       "explored": False, "decided_at": "2026-11-29T15:00:00.000000Z"}],
    },
    "serve": {  # jobs/serve.py, after SIGTERM
        "job": "serve", "decisions_logged": 6, "decision_files": 1, "decisions_unwritten": 0,
        "model_version": "0f3c9a1b2d4e", "decision_log": "demo-output/raw", "served_seconds": 3.4, "seconds": 3.5,
    },
    "show_tables": {  # jobs/show_tables.py
        "job": "show_tables", "lake": "demo-output/lake",
        "rows": {"events": 1091234, "events_quarantine": 1102, "sessions": 187654, "users": 5000,
                 "training_examples": 60321, "online_features": 5000},
        "seconds": 26.3,
    },
}

# Worked out by hand: thousands separators on ints, two places on the notebook's metrics
# (28.872 -> 28.87, 40.163 -> 40.16, 18.747 -> 18.75, 15.518 -> 15.52, 18.752 -> 18.75,
# 15.204 -> 15.20, 19.381 -> 19.38), the write rate to a whole number (1234.6 -> 1,235).
EXPECTED = {
    "generate_events": "1,103,248 raw lines: 1,091,234 events of 5,000 players x 28 days, 10,912 duplicates, 1,102 junk lines",
    "sessionize": "1,091,234 events stored, 10,912 duplicates dropped, 1,102 lines quarantined; 187,654 sessions, 5,000 users",
    "build_features": "60,321 decisions -> training_examples; export 'demo': 45,000 train + 11,234 validation rows",
    "train_notebook": ("validation RMSE 28.87 (no-skill 40.16); greedy policy DR 18.75 vs logging 15.52 per decision "
                       "(simulator truth 18.75 vs 15.20, oracle 19.38)"),
    "export_features": "4,987 of 5,000 players' items written to DynamoDB table offer-ai-features (1,235 items/s)",
    "decide_offers": "6 players decided (1 cold start, 1 explored), model xgb-abc123, epsilon 0.1",
    "promote_model": ("model 0f3c9a1b2d4e promoted: validation RMSE 28.87 (no-skill 40.16), "
                      "ε-greedy DR 18.30 vs logging 15.52"),
    "decisions": "6 players decided over HTTP (1 cold start, 0 explored), model 0f3c9a1b2d4e",
    "serve": "6 decisions logged as offer_shown events in 1 file(s)",
    "show_tables": ("events 1,091,234, events_quarantine 1,102, sessions 187,654, users 5,000, "
                    "training_examples 60,321, online_features 5,000"),
}


def test_every_known_stage_has_a_real_shaped_summary_here():
    assert set(REAL_SUMMARIES) == set(EXPECTED) == set(demo_summary.DESCRIBE)


@pytest.mark.parametrize("stage", sorted(EXPECTED))
def test_each_formatter_renders_the_real_summary_in_words_not_the_raw_json(stage):
    summary = json.loads(json.dumps(REAL_SUMMARIES[stage]))  # as read back from the .out file
    # Called directly, a key the formatter wants and the summary lacks raises instead of falling back.
    assert demo_summary.DESCRIBE[stage](summary) == EXPECTED[stage]
    text = demo_summary.describe(stage, summary)
    assert text == EXPECTED[stage]
    assert text != json.dumps(summary, default=str)[:160] and not text.startswith("{")


def test_the_notebook_line_without_simulator_truth_leaves_the_truth_out():
    # demo.sh writes None for each true_* key metrics.json lacks (data not from the simulator).
    summary = {**REAL_SUMMARIES["train_notebook"], "true_value": None, "true_logging_value": None,
               "true_oracle_value": None}
    assert demo_summary.DESCRIBE["train_notebook"](summary) == (
        "validation RMSE 28.87 (no-skill 40.16); greedy policy DR 18.75 vs logging 15.52 per decision")


def test_the_table_of_a_whole_demo_run(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    for stage, seconds in [("generate_events", 3), ("sessionize", 118), ("build_features", 41), ("train_notebook", 8),
                           ("export_features", 36), ("decide_offers", 2), ("show_tables", 26)]:
        _stage(logs, stage, seconds, "a progress line", json.dumps(REAL_SUMMARIES[stage]))
    lines = demo_summary.render(tmp_path).splitlines()
    assert lines[0] == "stage            seconds  what it did"
    assert lines[1] == f"generate_events        3  {EXPECTED['generate_events']}"
    assert lines[2] == f"sessionize           118  {EXPECTED['sessionize']}"
    assert lines[4] == f"train_notebook         8  {EXPECTED['train_notebook']}"
    assert lines[-1] == "total                234"
    assert len(lines) == 9
