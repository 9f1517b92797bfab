"""The decision service: the offer a player sees when they open the app, over HTTP (DESIGN §6).

    POST /v1/decisions  {"user_id", "session_id", "candidates"?: [{"offer_type", "offer_price"}]}
    GET  /healthz       the process is up
    GET  /readyz        a model is loaded and the store answers (what a load balancer checks)
    GET  /metrics       Prometheus

Per decision: one DynamoDB read of the player's item within the budget (else the no-history
defaults, flagged), one XGBoost call over every candidate, the ε-greedy policy and its
propensity, and one ``offer_shown`` line in the decision log, which lands in the raw folder
for the next sessionize. Everything on the request path but the store read runs on the event
loop: it is a fraction of a millisecond, less than a hop to a thread would cost. Each answer
carries ``Server-Timing`` (store, app = the service's own work, total), what the bench and a
client-side trace read.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from offer_ai.config import Settings
from offer_ai.model.offers import Offer, load_offers
from offer_ai.online.deadline_reader import DeadlineReader, FeatureRead
from offer_ai.online.decision_log import DecisionLog, iso_utc, offer_shown_event
from offer_ai.online.items import default_features
from offer_ai.online.service_metrics import ServiceMetrics
from offer_ai.online.serving_model import ModelWatcher, ServingModel

log = logging.getLogger("offer_ai")
Clock = Callable[[], dt.datetime]
GIL_SWITCH_INTERVAL_S = 0.0005
#: DynamoDB keys are at most 2048 bytes; ids are at most 1024 characters.
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=1024, strip_whitespace=False)]


class OfferIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    offer_type: Annotated[str, StringConstraints(min_length=1)]
    offer_price: float = Field(gt=0)


class DecisionRequest(BaseModel):
    """The body of POST /v1/decisions; unknown keys are refused, so a typo never goes unnoticed."""

    model_config = ConfigDict(extra="forbid")
    user_id: Identifier
    session_id: Identifier
    candidates: list[OfferIn] | None = Field(None, min_length=1)


class _Throttled:
    """A warning per kind at most once a minute, with how many were held back: a store outage at
    500 requests/s must not become 500 log lines a second (the metrics count every one)."""

    def __init__(self, every_s: float = 60.0) -> None:
        self.every_s = every_s
        self._last: dict[str, tuple[float, int]] = {}

    def warning(self, kind: str, message: str, *args: Any) -> None:
        now = time.monotonic()
        last, held = self._last.get(kind, (-self.every_s, 0))
        if now - last < self.every_s:
            self._last[kind] = (last, held + 1)
            return
        self._last[kind] = (now, 0)
        log.warning(message + (f" ({held} more like it in the last minute)" if held else ""), *args)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def _error(status: int, sentence: str, **extra: Any) -> Response:
    return _json({"error": sentence, **extra}, status)


class DecisionService:
    """The service's state: model watcher, store reader, decision log, metrics, clock."""

    def __init__(self, settings: Settings, clock: Clock | None = None, store_client: Any = None) -> None:
        serving = settings.serving
        self.settings = settings
        self.clock: Clock = clock or (lambda: dt.datetime.now(dt.timezone.utc))
        self.catalogue = load_offers(settings.offers_path)
        self.catalogue_index = {offer: i for i, offer in enumerate(self.catalogue)}
        self.all_rows = tuple(range(len(self.catalogue)))
        self.metrics = ServiceMetrics()
        self.watcher = ModelWatcher(serving.models_root, self.catalogue, serving.epsilon,
                                    on_change=self._model_changed, on_error=lambda _v: self.metrics.model_load_errors.inc())
        self.decision_log = DecisionLog(serving.decision_log_dir or settings.raw.root, serving.decision_log_max_lines)
        self.store_client = store_client
        self.reader: DeadlineReader | None = None
        self.started = time.monotonic()
        self.warnings = _Throttled()
        self._flushing: asyncio.Future[Any] | None = None

    def _model_changed(self, model: ServingModel) -> None:
        self.metrics.serving(model.version)
        self.metrics.model_swaps.inc()

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        # The event loop shares the GIL with botocore's threads; Python lets a thread keep it 5 ms
        # before handing it over, which is the whole latency budget. 0.5 ms keeps the loop responsive.
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        self.reader = DeadlineReader(self.settings.online_store, self.settings.serving, self.store_client)
        if self.watcher.current is None:
            await asyncio.to_thread(self.watcher.poll)

    async def _every(self, seconds: float, work: Callable[[], Any]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await asyncio.to_thread(work)
            except Exception:  # a failed flush keeps its lines for the next one; a poll never raises
                log.exception("serve: background task failed")

    def flush_log(self) -> int:
        try:
            written = self.decision_log.flush()
        except OSError as exc:
            self.metrics.log_errors.inc()
            log.error("serve: could not write the decision log (kept %d decisions for the next flush): %s",
                      self.decision_log.pending, exc)
            raise
        finally:
            self.metrics.log_pending.set(self.decision_log.pending)
        self.metrics.log_lines.inc(written)
        return written

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: FastAPI) -> AsyncIterator[None]:
        await self.start()
        tasks = [asyncio.create_task(self._every(self.settings.serving.model_poll_s, self.watcher.poll)),
                 asyncio.create_task(self._every(self.settings.serving.decision_log_flush_s, self.flush_log))]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # uvicorn has answered every request it accepted: the last decisions go to disk now.
            await asyncio.to_thread(self.flush_log)
            if self.reader is not None:
                self.reader.close()
            log.info("serve: stopped; %d decisions logged in %d files", self.decision_log.lines_written,
                     self.decision_log.files_written)

    # -- the decision -----------------------------------------------------------------------------

    def _rows(self, candidates: list[OfferIn] | None) -> tuple[int, ...] | str:
        """Catalogue rows of the requested candidates, or the sentence refusing them."""
        if candidates is None:
            return self.all_rows
        rows = []
        for c in candidates:
            row = self.catalogue_index.get(Offer(c.offer_type, c.offer_price))
            if row is None:
                return f"Candidate {c.offer_type} at {c.offer_price:g} is not in the offer catalogue."
            if row in rows:
                return f"Candidate {c.offer_type} at {c.offer_price:g} is listed twice."
            rows.append(row)
        return tuple(rows)

    def _features(self, model: ServingModel, read: FeatureRead, user_id: str) -> tuple[dict[str, Any], str]:
        """The features to score and the store status; an item of other features.yaml is not scored."""
        features, status = read.features, read.status
        spec = features.get("spec_version")
        if status == "hit" and model.model.spec_version is not None and spec not in (None, model.model.spec_version):
            self.warnings.warning("spec", "serve: user %s has features of spec %s, model %s was trained on %s: "
                                  "serving the defaults", user_id, spec, model.version, model.model.spec_version)
            return default_features(user_id), "spec_mismatch"
        return features, status

    async def decide(self, body: DecisionRequest) -> Response:
        started = time.perf_counter()
        model = self.watcher.current
        if model is None:
            self.metrics.requests.labels(status="503").inc()
            return _error(503, f"No model is being served: none has been promoted to "
                               f"{Path(self.settings.serving.models_root) / 'CURRENT'} yet (run jobs/promote_model.py).")
        rows = self._rows(body.candidates)
        if isinstance(rows, str):
            self.metrics.requests.labels(status="422").inc()
            return _error(422, rows)
        assert self.reader is not None
        read = await self.reader.read(body.user_id, body.session_id)
        model = self.watcher.current or model  # a promotion may have landed while the store answered
        features, status = self._features(model, read, body.user_id)
        decision = model.decide(features, rows)
        decided_at = self.clock()
        decision_id = uuid.uuid4().hex
        offers = [model.catalogue[i] for i in rows]
        as_of = features.get("as_of")
        event = offer_shown_event(
            user_id=body.user_id, session_id=body.session_id, decided_at=decided_at, decision_id=decision_id,
            offer_type=decision.offer.offer_type, offer_price=decision.offer.offer_price,
            propensity=decision.propensity, model_version=model.version,
            candidates=[{"offer_type": o.offer_type, "offer_price": o.offer_price, "score": s, "probability": p}
                        for o, s, p in zip(offers, decision.scores, decision.probabilities)],
            features_as_of=as_of, store=status,
        )
        if self.decision_log.append(event):
            self._flush_soon()
        cold = as_of is None
        answer = {
            "decision_id": decision_id, "offer_type": decision.offer.offer_type,
            "offer_price": decision.offer.offer_price, "propensity": decision.propensity,
            "model_version": model.version,
            "features": {c: features.get(c) for c in model.columns},
            "features_as_of": None if as_of is None else iso_utc(as_of),
            "cold_start": cold, "store": status, "explored": decision.offer_index != int(np.argmax(decision.scores)),
            "decided_at": event["event_time"],
        }
        self._count(answer, read, status, started)
        total = time.perf_counter() - started
        timing = f"store;dur={read.seconds * 1000:.3f}, app;dur={(total - read.seconds) * 1000:.3f}, total;dur={total * 1000:.3f}"
        return _json(answer, headers={"Server-Timing": timing})

    def _count(self, answer: dict[str, Any], read: FeatureRead, status: str, started: float) -> None:
        m = self.metrics
        m.requests.labels(status="200").inc()
        m.decisions.labels(offer_type=answer["offer_type"], offer_price=f"{answer['offer_price']:.2f}").inc()
        if answer["explored"]:
            m.explored.inc()
        if answer["cold_start"]:
            m.cold_starts.labels(reason={"miss": "unknown_player"}.get(status, f"store_{status}")).inc()
        if status in ("timeout", "error", "circuit_open"):
            m.store_errors.labels(kind=status).inc()
            if read.error:
                self.warnings.warning("store", "serve: feature read failed, served the defaults: %s", read.error)
        m.store_latency.observe(read.seconds)
        total = time.perf_counter() - started
        m.latency.observe(total)
        m.own_latency.observe(total - read.seconds)
        m.log_pending.set(self.decision_log.pending)

    def _flush_soon(self) -> None:
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.get_running_loop().run_in_executor(None, self._flush_quietly)

    def _flush_quietly(self) -> None:
        with contextlib.suppress(OSError):  # counted and logged; the lines wait for the next flush
            self.flush_log()

    # -- probes -----------------------------------------------------------------------------------

    def health(self) -> Response:
        model = self.watcher.current
        return _json({"status": "ok", "model_version": model.version if model else None,
                      "uptime_s": round(time.monotonic() - self.started, 3), "pid": os.getpid()})

    async def ready(self) -> Response:
        model = self.watcher.current
        if model is None:
            return _json({"ready": False, "reason": "no model has been promoted yet"}, 503)
        assert self.reader is not None
        if not await self.reader.answers():
            return _json({"ready": False, "reason": "the online store does not answer",
                          "model_version": model.version}, 503)
        return _json({"ready": True, "model_version": model.version})


def _validation_sentence(exc: RequestValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "the body"
    return f"The request is malformed: {where}: {first.get('msg', 'invalid')}."


def create_app(settings: Settings, clock: Clock | None = None, store_client: Any = None) -> FastAPI:
    """The ASGI app for ``settings`` (``clock`` and ``store_client`` are for tests)."""
    service = DecisionService(settings, clock, store_client)
    app = FastAPI(title="offer-ai decisions", version="1", lifespan=service.lifespan)
    app.state.service = service

    @app.exception_handler(RequestValidationError)
    async def malformed(_request: Request, exc: RequestValidationError) -> Response:
        service.metrics.requests.labels(status="422").inc()
        return _error(422, _validation_sentence(exc), detail=orjson.loads(orjson.dumps(exc.errors(), default=str)))

    @app.post("/v1/decisions")
    async def decisions(body: DecisionRequest) -> Response:
        """The offer to show this player now, with its propensity (logged for the next training)."""
        return await service.decide(body)

    @app.get("/healthz")
    async def healthz() -> Response:
        return service.health()

    @app.get("/readyz")
    async def readyz() -> Response:
        return await service.ready()

    @app.get("/metrics")
    async def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(service.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app


#: How jobs/serve.py hands its --config/--set to uvicorn's worker processes (which import the app anew).
SETTINGS_ENV = "OFFER_AI_SERVE_SETTINGS"


def app_from_environment() -> FastAPI:
    """uvicorn's factory for ``--workers N``: each worker builds its app from the settings jobs/serve.py passed."""
    from offer_ai.config import load_settings

    spec = orjson.loads(os.environ[SETTINGS_ENV])
    return create_app(load_settings(spec["config"], spec["overrides"]))
