"""Run a job's own code in this process, as its CLI does: faster than a subprocess per test
(no new JVM), and the same parser, settings, main and exit codes."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
from pathlib import Path
from typing import Any

import pytest

from offer_ai.cli import run_job

REPO = Path(__file__).resolve().parents[1]


def load_job(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"{name}_job", REPO / "jobs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_in_process(job: Any, *argv: str) -> tuple[int, dict | None, str]:
    """(exit code, the JSON summary of the last stdout line or None, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.raises(SystemExit) as done:
        run_job(job.build_parser(), job.main, list(argv))
    lines = out.getvalue().strip().splitlines()
    return done.value.code, (json.loads(lines[-1]) if lines else None), err.getvalue()
