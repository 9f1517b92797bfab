"""The one command-line convention every job follows.

`--config FILE`, repeated `--set dotted.key=value`, `--lake DIR`, `--help`; progress goes to
stderr through the `offer_ai` logger; on success the last stdout line is a one-line JSON summary;
a user error exits 2 with one sentence.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

from offer_ai.config import Settings, load_settings
from offer_ai.errors import UserError

log = logging.getLogger("offer_ai")
#: Wall seconds of each named step of the running job (see `step`); reset by run_job.
_steps: dict[str, float] = {}
#: The step running now, for the sentence that reports a failure.
_current: list[str] = []


@contextmanager
def step(name: str) -> Iterator[None]:
    """Time one step of a job: logged when it ends, and reported under `steps` in the summary,
    so a slow night shows where its time went without a profiler."""
    started = time.monotonic()
    _current.append(name)
    spark_context = _active_spark_context()
    if spark_context is not None:  # the step's name on its Spark jobs (UI, event log)
        spark_context.setJobDescription(name)
    try:
        yield
    finally:
        if spark_context is not None:
            spark_context.setJobDescription(None)  # type: ignore[arg-type]
        _current.pop()
        seconds = time.monotonic() - started
        _steps[name] = round(_steps.get(name, 0.0) + seconds, 3)
        log.info("step %s: %.2f s", name, seconds)


class JobFailed(Exception):
    """The job ran but its result must not pass (e.g. too many bad lines): exit 1, with the
    summary still printed as the last stdout line so that the counts are not lost."""

    def __init__(self, message: str, summary: dict[str, Any]) -> None:
        super().__init__(message)
        self.summary = summary


def _active_spark_context() -> Any:
    """The running SparkContext, if this process has one (without importing pyspark for jobs
    that do not use Spark)."""
    pyspark = sys.modules.get("pyspark")
    return None if pyspark is None else pyspark.SparkContext._active_spark_context


def is_spark_error(exc: BaseException) -> bool:
    """An error raised by Spark or the JVM (not a bug in our Python)."""
    names = {c.__module__.split(".")[0] for c in type(exc).__mro__}
    return bool(names & {"pyspark", "py4j"})


def spark_error_line(exc: BaseException) -> str:
    """The first line of a Spark error, without the JVM stack and the SQLSTATE."""
    text = str(exc).strip()
    if hasattr(exc, "java_exception"):  # a raw Py4JJavaError: its own text is the stack
        text = str(exc.java_exception.toString())  # type: ignore[attr-defined]
    line = text.splitlines()[0] if text else type(exc).__name__
    line = re.sub(r"\s*SQLSTATE: \w+\.?", "", line).strip()
    return line if line.endswith(".") else line + "."


def _timed_steps() -> dict[str, Any]:
    """`steps` for the summary, when the job timed any."""
    return {"steps": dict(_steps)} if _steps else {}


def job_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    common = parser.add_argument_group("configuration (every job)")
    common.add_argument("--config", metavar="FILE", help="YAML config (default: $OFFER_AI_CONFIG, else conf/local.yaml)")
    common.add_argument(
        "--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
        help="override one setting, e.g. --set spark.shuffle_partitions=8 (repeatable)",
    )
    common.add_argument("--lake", metavar="DIR", help="lake root folder or URI (shortcut for --set lake.root=DIR)")
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides = list(args.overrides)
    if args.lake:
        overrides.append(f"lake.root={args.lake}")
    return load_settings(args.config, overrides)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a line is logged, not when the handler was made:
    a job run in-process under a redirect (tests, a notebook) keeps its progress lines."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure_logging(level: int = logging.INFO) -> None:
    """Progress lines on stderr, so that stdout carries only the JSON summary."""
    if not log.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s offer_ai %(levelname)s %(message)s", "%H:%M:%S"))
        log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False


def run_job(
    parser: argparse.ArgumentParser,
    main: Callable[[argparse.Namespace, Settings], dict[str, Any]],
    argv: Sequence[str] | None = None,
) -> NoReturn:
    """Parse, load settings, run `main`, print its summary as the last stdout line, exit."""
    configure_logging()
    args = parser.parse_args(argv)
    started = time.monotonic()
    _steps.clear()
    try:
        settings = settings_from_args(args)
        summary = main(args, settings)
    except UserError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except JobFailed as exc:
        failed = {"job": parser.prog, **exc.summary, "seconds": round(time.monotonic() - started, 3), **_timed_steps()}
        sys.stdout.flush()
        print(json.dumps(failed, default=str), flush=True)
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:  # noqa: BLE001 - Spark's and the JVM's own errors: one sentence, exit 1
        if not is_spark_error(exc):
            raise
        where = f"step {_current[-1]}" if _current else "the job"
        print(f"{parser.prog}: error: {where} failed: {spark_error_line(exc)} Every step that finished "
              "stays committed, and a rerun continues from there once the cause is fixed (Spark's log "
              "above has the details).", file=sys.stderr)
        sys.exit(1)
    finally:
        _current.clear()
    summary = {"job": parser.prog, **summary, "seconds": round(time.monotonic() - started, 3), **_timed_steps()}
    sys.stdout.flush()
    print(json.dumps(summary, default=str), flush=True)
    sys.exit(0)
