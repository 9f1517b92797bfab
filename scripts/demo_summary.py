"""The closing table of `make demo`: seconds per stage and what each stage did, in words.

Reads ``<out>/logs/stages.tsv`` (stage name, seconds; written by scripts/demo.sh) and the JSON
summary each job printed as the last line of ``<out>/logs/<stage>.out``. A stage this script
does not know is shown with its raw summary, so a new stage never breaks the demo.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

Summary = Mapping[str, Any]


def _n(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def _generate(s: Summary) -> str:
    return (f"{_n(s['lines'])} raw lines: {_n(s['events'])} events of {_n(s['users'])} players x {s['days']} days, "
            f"{_n(s['duplicates'])} duplicates, {_n(s['malformed'])} junk lines")


def _sessionize(s: Summary) -> str:
    return (f"{_n(s['events_accepted'])} events stored, {_n(s['duplicates'])} duplicates dropped, "
            f"{_n(s['quarantined'])} lines quarantined; {_n(s['sessions_inserted'])} sessions, {_n(s['users_inserted'])} users")


def _build_features(s: Summary) -> str:
    rows = s["export_rows"]
    return (f"{_n(s['anchors_kept'])} decisions -> training_examples; export '{s['run_id']}': "
            f"{_n(rows['train'])} train + {_n(rows['validation'])} validation rows")


def _train(s: Summary) -> str:
    text = (f"validation RMSE {s['validation_rmse']:.2f} (no-skill {s['baseline_rmse']:.2f}); "
            f"greedy policy DR {s['policy_dr']:.2f} vs logging {s['logging_value']:.2f} per decision")
    if s.get("true_value") is not None:
        text += (f" (simulator truth {s['true_value']:.2f} vs {s['true_logging_value']:.2f}, "
                 f"oracle {s['true_oracle_value']:.2f})")
    return text


def _export(s: Summary) -> str:
    rate = f" ({s['items_per_second']:,.0f} items/s)" if s.get("items_per_second") else ""
    return f"{_n(s['items_written'])} of {_n(s['items_considered'])} players' items written to DynamoDB table {s['table']}{rate}"


def _decide(s: Summary) -> str:
    return (f"{s['users']} players decided ({s['cold_starts']} cold start, {s['explored']} explored), "
            f"model {s['model_version']}, epsilon {s['epsilon']}")


def _promote(s: Summary) -> str:
    g = s["guard"]
    return (f"model {s['model_version']} promoted: validation RMSE {g['validation_rmse']:.2f} (no-skill "
            f"{g['baseline_rmse']:.2f}), ε-greedy DR {g['policy_dr']:.2f} vs logging {g['logging_value']:.2f}"
            + (" (forced past the guard)" if s.get("forced") else ""))


def _decisions(s: Summary) -> str:
    return (f"{s['users']} players decided over HTTP ({s['cold_starts']} cold start, {s['explored']} explored), "
            f"model {s['model_version']}")


def _serve(s: Summary) -> str:
    return f"{_n(s['decisions_logged'])} decisions logged as offer_shown events in {s['decision_files']} file(s)"


def _show(s: Summary) -> str:
    return ", ".join(f"{name} {_n(count)}" for name, count in s["rows"].items())


DESCRIBE: dict[str, Callable[[Summary], str]] = {
    "generate_events": _generate, "sessionize": _sessionize, "build_features": _build_features,
    "train_notebook": _train, "export_features": _export, "decide_offers": _decide, "show_tables": _show,
    "promote_model": _promote, "decisions": _decisions, "serve": _serve,
}


def describe(stage: str, summary: Summary | None) -> str:
    if summary is None:
        return "(no summary)"
    try:
        return DESCRIBE[stage](summary)
    except (KeyError, TypeError, ValueError):
        return json.dumps(summary, default=str)[:160]


def last_json(path: Path) -> Summary | None:
    lines = path.read_text().strip().splitlines() if path.is_file() else []
    try:
        return json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        return None


def render(out: Path) -> str:
    stages = [line.split("\t") for line in (out / "logs" / "stages.tsv").read_text().splitlines() if line]
    width = max(len(name) for name, _ in stages)
    lines = [f"{'stage':<{width}}  {'seconds':>7}  what it did"]
    for name, seconds in stages:
        lines.append(f"{name:<{width}}  {seconds:>7}  {describe(name, last_json(out / 'logs' / f'{name}.out'))}")
    lines.append(f"{'total':<{width}}  {sum(int(s) for _, s in stages):>7}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(Path(sys.argv[1])))
