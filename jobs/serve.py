"""The decision service: POST /v1/decisions answers the offer a player sees now (see README).

Serves the model promoted under serving.models_root (CURRENT), reading each player's item
from the online store (online_store.*) within serving.store_timeout_ms, and logs every
decision as an offer_shown event under serving.decision_log_dir (default raw.root). Runs until
SIGTERM or Ctrl-C, then finishes the requests in flight, writes the last decisions and prints
the JSON summary. A catalogue offer the promoted model never saw stops it at start-up; no
promoted model yet is not an error: it answers 503 until one is promoted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from offer_ai.cli import job_parser, log, run_job
from offer_ai.config import Settings
from offer_ai.errors import UserError
from offer_ai.model import model_registry as registry
from offer_ai.model.offers import load_offers
from offer_ai.online import service
from offer_ai.online.serving_model import ModelWatcher


def build_parser() -> argparse.ArgumentParser:
    parser = job_parser("serve", __doc__)
    parser.add_argument("--host", help="address to listen on (shortcut for --set serving.host=…; 0.0.0.0 behind a load balancer)")
    parser.add_argument("--port", type=int, help="port (shortcut for --set serving.port=…)")
    parser.add_argument("--workers", type=int, help="uvicorn worker processes (shortcut for --set serving.workers=…)")
    return parser


def _check_start_up(settings: Settings) -> str | None:
    """Fail now, in a sentence, on what would fail every request; return the version that will serve."""
    serving = settings.serving
    catalogue = load_offers(settings.offers_path)
    version = registry.current_version(serving.models_root)
    if version is None:
        log.warning("serve: no model promoted under %s yet: decisions answer 503 until one is", serving.models_root)
    else:
        ModelWatcher(serving.models_root, catalogue, serving.epsilon).load(version)  # unseen offers refused here
    folder = Path(serving.decision_log_dir or settings.raw.root)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"Cannot create the decision log folder {folder}: {exc.strerror}.") from None
    if not os.access(folder, os.W_OK):
        raise UserError(f"The decision log folder {folder} is not writable.")
    return version


def _server(config: Any) -> Any:
    """A uvicorn server that stops gracefully on SIGTERM/SIGINT and then returns.

    uvicorn re-raises the signal after its graceful shutdown, which would kill the process
    before the summary is printed; a clean stop is the normal end of this job.
    """
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return Server(config)


def main(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    import uvicorn

    overrides = list(args.overrides) + ([f"lake.root={args.lake}"] if args.lake else [])
    for key, value in (("host", args.host), ("port", args.port), ("workers", args.workers)):
        if value is not None:
            overrides.append(f"serving.{key}={value}")
            setattr(settings.serving, key, value)
    serving = settings.serving
    version = _check_start_up(settings)
    started = time.monotonic()
    common = {"host": serving.host, "port": serving.port, "loop": "uvloop", "http": "httptools", "access_log": False,
              "log_level": "warning", "timeout_graceful_shutdown": 30}
    log.info("serve: http://%s:%d (%d worker(s)), model %s, decisions into %s", serving.host, serving.port,
             serving.workers, version or "none yet", serving.decision_log_dir or settings.raw.root)
    if serving.workers > 1:  # each worker process imports the app anew, from these settings
        os.environ[service.SETTINGS_ENV] = orjson.dumps({"config": settings.source, "overrides": overrides}).decode()
        uvicorn.run("offer_ai.online.service:app_from_environment", factory=True, workers=serving.workers, **common)
        return {"workers": serving.workers, "model_version": version, "seconds": round(time.monotonic() - started, 3)}
    app = service.create_app(settings)
    _server(uvicorn.Config(app, **common)).run()
    state: service.DecisionService = app.state.service
    current = state.watcher.current
    return {
        "decisions_logged": state.decision_log.lines_written, "decision_files": state.decision_log.files_written,
        "decisions_unwritten": state.decision_log.pending, "model_version": current.version if current else None,
        "decision_log": str(state.decision_log.folder), "served_seconds": round(time.monotonic() - started, 3),
    }


if __name__ == "__main__":
    run_job(build_parser(), main)
