"""The decision service over real HTTP: a real model, the moto DynamoDB, the decision log on disk.

Expected offers are the argmax of ``score_candidates`` on a DataFrame built here from the
values written to the store; propensities are ε-greedy's 1 − ε + ε/K and ε/K worked out by
hand; logged lines are read back from the files and matched to the answers by decision id.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from job_runner import load_job, run_in_process  # tests/ is on sys.path
from service_support import CONTEXT, FAVOURITE, OFFERS, REPO, SPEC, favourite_model, promote, running, service_settings

from offer_ai.online.decision_log import read_decisions
from offer_ai.online.service import create_app
from offer_ai.online.writer import write_items

AS_OF = dt.datetime(2026, 1, 28, 12, 0, tzinfo=dt.timezone.utc)
NOW = dt.datetime(2026, 1, 29, 8, 30, 15, 250000, tzinfo=dt.timezone.utc)
K = len(OFFERS)


@pytest.fixture(scope="module")
def model():
    return favourite_model()


def item(user_id: str, country: str | None = "US", **overrides: Any) -> dict[str, Any]:
    base = {"user_id": user_id, "as_of": AS_OF, "country": country, "facebook_connected": True,
            "last_session_games_played": 3, "last_session_win_ratio": 0.5, "prev_week_purchase_amount": 4.99,
            "spec_version": SPEC}
    return {**base, **overrides}


def hand_best(model, rows: list[dict[str, Any]]) -> list[int]:
    frame = pd.DataFrame({c: [r[c] for r in rows] for c in CONTEXT})
    return list(model.score_candidates(frame, OFFERS).argmax(axis=1))


@pytest.fixture
def world(dynamodb_table, model, tmp_path):
    users = [item("us-1", "US"), item("de-1", "DE", facebook_connected=False, last_session_games_played=10),
             item("fr-1", "FR", last_session_games_played=0, last_session_win_ratio=None, prev_week_purchase_amount=0.0)]
    write_items(users, dynamodb_table)
    models, raw = tmp_path / "models", tmp_path / "raw"
    version = promote(models, model, tmp_path / "scratch")
    return {"store": dynamodb_table, "models": models, "raw": raw, "users": users, "version": version, "tmp": tmp_path}


def post(client: httpx.Client, **body: Any) -> httpx.Response:
    return client.post("/v1/decisions", json=body)


def test_a_known_player_gets_the_models_best_offer_with_its_features_and_the_decision_is_logged(world, model):
    settings = service_settings(world["store"], world["models"], world["raw"], "serving.epsilon=0")
    best = hand_best(model, world["users"])
    assert [OFFERS[k] for k in best] == [FAVOURITE["US"], FAVOURITE["DE"], FAVOURITE["FR"]]  # the users differ
    answers = []
    with running(create_app(settings, clock=lambda: NOW)) as url, httpx.Client(base_url=url) as client:
        for user, k in zip(world["users"], best):
            response = post(client, user_id=user["user_id"], session_id=f"s-{user['user_id']}")
            assert response.status_code == 200, response.text
            got = response.json()
            assert (got["offer_type"], got["offer_price"]) == (OFFERS[k].offer_type, OFFERS[k].offer_price)
            assert got["propensity"] == 1.0 and got["explored"] is False
            assert got["model_version"] == world["version"] == model.model_version
            assert got["features"] == {c: user[c] for c in CONTEXT}
            assert got["features_as_of"] == "2026-01-28T12:00:00.000000Z"
            assert got["cold_start"] is False and got["store"] == "hit"
            timing = dict(part.strip().split(";dur=") for part in response.headers["server-timing"].split(","))
            assert set(timing) == {"store", "app", "total"}
            assert float(timing["total"]) == pytest.approx(float(timing["store"]) + float(timing["app"]), abs=0.01)
            answers.append(got)
        assert read_decisions(world["raw"]) == []  # flushed every 600 s: nothing on disk while it runs
    # The clean stop wrote every acknowledged decision, in one finished file of the decisions' day.
    files = sorted((world["raw"] / "date=2026-01-29").iterdir())
    assert len(files) == 1 and files[0].name.startswith("decisions-") and files[0].suffix == ".jsonl"
    logged = {line["decision_id"]: line for line in read_decisions(world["raw"])}
    assert set(logged) == {a["decision_id"] for a in answers}
    for user, answer in zip(world["users"], answers):
        line = logged[answer["decision_id"]]
        assert line["event_id"] == "offer_shown" and line["event_time"] == "2026-01-29T08:30:15.250000Z"
        assert line["customer_identifier"] == user["user_id"] and line["session_id"] == f"s-{user['user_id']}"
        assert (line["offer_type"], line["offer_price"], line["offer_propensity"]) == (
            answer["offer_type"], answer["offer_price"], 1.0)
        assert line["model_version"] == model.model_version
        assert [(c["offer_type"], c["offer_price"]) for c in line["candidates"]] == [
            (o.offer_type, o.offer_price) for o in OFFERS]
        assert sum(c["probability"] for c in line["candidates"]) == pytest.approx(1.0)


def test_propensities_are_epsilon_greedy_and_candidates_narrow_the_choice(world, model):
    settings = service_settings(world["store"], world["models"], world["raw"], "serving.epsilon=0.1")
    greedy = OFFERS[hand_best(model, world["users"][:1])[0]]
    with running(create_app(settings)) as url, httpx.Client(base_url=url) as client:
        got = [post(client, user_id="us-1", session_id=f"s{i}").json() for i in range(80)]
        # ε = 0.1, K = 8: the greedy offer 1 − 0.1 + 0.1/8 = 0.9125, any other 0.1/8 = 0.0125.
        for g in got:
            chosen = (g["offer_type"], g["offer_price"])
            assert g["store"] == "hit", g
            assert g["propensity"] == pytest.approx(0.9125 if chosen == (greedy.offer_type, greedy.offer_price) else 0.0125)
        assert 0 < sum(g["explored"] for g in got) < 25
        two = [{"offer_type": "xmas", "offer_price": 4.99}, {"offer_type": "vip_pass", "offer_price": 49.99}]
        narrowed = [post(client, user_id="us-1", session_id="s", candidates=two).json() for _ in range(30)]
        # K = 2 now: vip_pass (the US favourite) 1 − 0.1 + 0.05 = 0.95, xmas 0.05.
        for g in narrowed:
            assert g["propensity"] == pytest.approx({"vip_pass": 0.95, "xmas": 0.05}[g["offer_type"]])


def test_an_unknown_player_is_a_cold_start_with_the_no_history_defaults(world):
    settings = service_settings(world["store"], world["models"], world["raw"])
    with running(create_app(settings)) as url, httpx.Client(base_url=url) as client:
        got = post(client, user_id="new-player-0001", session_id="s1").json()
        metrics = client.get("/metrics").text
    assert got["cold_start"] is True and got["store"] == "miss" and got["features_as_of"] is None
    assert got["features"] == {"country": None, "facebook_connected": False, "last_session_games_played": None,
                               "last_session_win_ratio": None, "prev_week_purchase_amount": 0.0}
    assert 'offer_ai_cold_starts_total{reason="unknown_player"} 1.0' in metrics


def test_malformed_requests_and_unknown_candidates_are_422_in_a_sentence(world):
    settings = service_settings(world["store"], world["models"], world["raw"])
    with running(create_app(settings)) as url, httpx.Client(base_url=url) as client:
        for body in ({"session_id": "s"}, {"user_id": "", "session_id": "s"}, {"user_id": "u", "session_id": "s", "x": 1},
                     {"user_id": "u", "session_id": "s", "candidates": []}, {"user_id": 7, "session_id": "s"}):
            response = client.post("/v1/decisions", json=body)
            assert response.status_code == 422, body
            assert response.json()["error"].startswith("The request is malformed: ")
        response = client.post("/v1/decisions", content=b"{not json", headers={"content-type": "application/json"})
        assert response.status_code == 422
        response = post(client, user_id="u", session_id="s", candidates=[{"offer_type": "gold", "offer_price": 1.0}])
        assert response.status_code == 422
        assert response.json() == {"error": "Candidate gold at 1 is not in the offer catalogue."}
        assert 'offer_ai_decision_requests_total{status="422"} 7.0' in client.get("/metrics").text
    assert read_decisions(world["raw"]) == []  # nothing was decided, nothing is logged


def test_without_a_promoted_model_it_answers_503_then_serves_the_first_promotion_without_a_restart(world, model):
    empty = world["tmp"] / "no-models"
    settings = service_settings(world["store"], empty, world["raw"])
    with running(create_app(settings)) as url, httpx.Client(base_url=url) as client:
        response = post(client, user_id="us-1", session_id="s")
        assert response.status_code == 503
        assert response.json()["error"].startswith("No model is being served: none has been promoted to ")
        assert client.get("/readyz").status_code == 503 and client.get("/healthz").status_code == 200
        promote(empty, model, world["tmp"] / "scratch2")
        deadline = time.monotonic() + 10
        while post(client, user_id="us-1", session_id="s").status_code != 200:
            assert time.monotonic() < deadline, "the promoted model was not picked up"
            time.sleep(0.05)
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json() == {"ready": True, "model_version": model.model_version}


def test_a_promotion_swaps_the_model_under_load_without_failing_a_request(world, model):
    settings = service_settings(world["store"], world["models"], world["raw"], "serving.epsilon=0")
    other = favourite_model(boost=30.0, rounds=30)  # another booster, so another version
    assert other.model_version != model.model_version

    async def load(url: str) -> list[tuple[int, str | None]]:
        async with httpx.AsyncClient(base_url=url) as client:
            async def one(i: int) -> tuple[int, str | None]:
                r = await client.post("/v1/decisions", json={"user_id": f"{('us', 'de', 'fr')[i % 3]}-1", "session_id": "s"})
                return r.status_code, r.json().get("model_version")
            batches = []
            for start in range(0, 600, 20):
                if start == 200:  # promote while requests are in flight
                    promote(world["models"], other, world["tmp"] / "scratch3")
                batches.append(await asyncio.gather(*(one(i) for i in range(start, start + 20))))
                await asyncio.sleep(0.01)
            return batches

    with running(create_app(settings)) as url:
        batches = asyncio.run(load(url))
        metrics = httpx.get(f"{url}/metrics").text
    assert {code for batch in batches for code, _ in batch} == {200}
    versions = [{v for _, v in batch} for batch in batches]
    assert versions[0] == {model.model_version} and versions[-1] == {other.model_version}
    # Within a batch of 20 concurrent requests either model may answer; once a batch saw the new
    # one, every later batch (sent after it completed) gets only the new one: never back.
    first_new = next(i for i, seen in enumerate(versions) if other.model_version in seen)
    assert all(seen == {other.model_version} for seen in versions[first_new + 1:])
    assert f'offer_ai_model_info{{model_version="{other.model_version}"}} 1.0' in metrics
    assert f'offer_ai_model_info{{model_version="{model.model_version}"}} 0.0' in metrics


def _silent_port() -> tuple[socket.socket, int]:
    """A port that accepts connections and never answers: a store that hangs."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock, sock.getsockname()[1]


@pytest.mark.parametrize("failure", ["down", "hangs"])
def test_a_store_that_is_down_or_hangs_gets_the_defaults_within_the_budget(world, failure):
    hang, port = _silent_port()
    if failure == "down":
        hang.close()  # nothing listens: connection refused
    store = world["store"].model_copy(update={"endpoint_url": f"http://127.0.0.1:{port}"})
    settings = service_settings(store, world["models"], world["raw"], "serving.store_timeout_ms=100",
                                "serving.store_read_timeout_ms=5000")
    try:
        with running(create_app(settings)) as url, httpx.Client(base_url=url) as client:
            timed = []
            for i in range(3):
                started = time.perf_counter()
                response = post(client, user_id="us-1", session_id=f"s{i}")
                timed.append(time.perf_counter() - started)
                assert response.status_code == 200
                got = response.json()
                assert got["cold_start"] is True and got["features_as_of"] is None
                assert got["store"] == ("error" if failure == "down" else "timeout")
            assert max(timed) < 2.0  # the 100 ms budget plus a busy machine, never botocore's 5 s (x 2 attempts)
            assert client.get("/readyz").json() == {"ready": False, "reason": "the online store does not answer",
                                                    "model_version": world["version"]}
            metrics = client.get("/metrics").text
    finally:
        hang.close()
    kind = "error" if failure == "down" else "timeout"
    assert f'offer_ai_store_errors_total{{kind="{kind}"}} 3.0' in metrics
    assert f'offer_ai_cold_starts_total{{reason="store_{kind}"}} 3.0' in metrics
    assert [line["store"] for line in read_decisions(world["raw"])] == [kind] * 3  # logged, flagged


def test_metrics_count_decisions_by_offer_and_time_them(world, model):
    settings = service_settings(world["store"], world["models"], world["raw"], "serving.epsilon=0")
    with running(create_app(settings)) as url, httpx.Client(base_url=url) as client:
        for _ in range(4):
            post(client, user_id="us-1", session_id="s")
        post(client, user_id="de-1", session_id="s")
        text = client.get("/metrics").text
    us, de = FAVOURITE["US"], FAVOURITE["DE"]
    assert f'offer_ai_decisions_total{{offer_price="{us.offer_price:.2f}",offer_type="{us.offer_type}"}} 4.0' in text
    assert f'offer_ai_decisions_total{{offer_price="{de.offer_price:.2f}",offer_type="{de.offer_type}"}} 1.0' in text
    for name in ("offer_ai_decision_seconds", "offer_ai_decision_service_seconds", "offer_ai_store_read_seconds"):
        assert f"{name}_count 5.0" in text
        assert f'{name}_bucket{{le="0.01"}}' in text
    assert "offer_ai_model_loaded 1.0" in text


def test_a_catalogue_offer_the_model_never_saw_stops_the_service_at_start_up(world, tmp_path):
    offers = tmp_path / "offers.yaml"
    offers.write_text("offers:\n  - {offer_type: vip_pass, offer_price: 9.99}\n  - {offer_type: gold_chest, offer_price: 2.99}\n")
    code, _, err = run_in_process(load_job("serve"), "--set", f"serving.models_root={world['models']}",
                                  "--set", f"offers_file={offers}", "--set", f"raw.root={world['raw']}")
    assert code == 2
    assert f"Model {world['version']} was never trained on offer type(s) gold_chest" in err


def test_the_log_keeps_decisions_whose_write_failed_for_the_next_flush(tmp_path):
    from offer_ai.online.decision_log import DecisionLog, offer_shown_event

    log = DecisionLog(tmp_path / "raw")
    event = offer_shown_event(user_id="u", session_id="s", decided_at=NOW, decision_id="d1", offer_type="xmas",
                              offer_price=4.99, propensity=0.5, model_version="m", candidates=[], features_as_of=None,
                              store="hit")
    log.append(event)
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "date=2026-01-29").write_text("a file where the day's folder goes")
    with pytest.raises(OSError):
        log.flush()
    assert log.pending == 1 and log.write_errors == 1
    (tmp_path / "raw" / "date=2026-01-29").unlink()
    assert log.flush() == 1 and log.pending == 0
    assert [d["decision_id"] for d in read_decisions(tmp_path / "raw")] == ["d1"]
    with pytest.raises(Exception, match="not s3a://bucket/raw"):
        DecisionLog("s3a://bucket/raw")


def test_the_serve_job_stops_cleanly_on_sigterm_and_writes_every_acknowledged_decision(world):
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    number = port.getsockname()[1]
    port.close()
    store = world["store"]
    command = [sys.executable, "jobs/serve.py", "--port", str(number), "--set", f"online_store.endpoint_url={store.endpoint_url}",
               "--set", f"online_store.table={store.table}", "--set", f"serving.models_root={world['models']}",
               "--set", f"raw.root={world['raw']}", "--set", "serving.decision_log_flush_s=600"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        url = f"http://127.0.0.1:{number}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, process.stderr.read() if process.poll() else "no start"
            time.sleep(0.1)
        ids = [httpx.post(f"{url}/v1/decisions", json={"user_id": "us-1", "session_id": f"s{i}"}).json()["decision_id"]
               for i in range(5)]
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err[-2000:]
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["job"] == "serve" and summary["decisions_logged"] == 5 and summary["decisions_unwritten"] == 0
    assert summary["model_version"] == world["version"]
    assert [d["decision_id"] for d in read_decisions(world["raw"])] == ids
    assert not list(world["raw"].rglob(".*"))  # no temporary file left behind
    assert np.isfinite(summary["served_seconds"])


def test_an_outage_logs_one_warning_a_minute_not_one_per_request():
    import logging

    from offer_ai.online.service import _Throttled

    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("offer_ai")
    logger.addHandler(handler)
    try:
        throttled = _Throttled(every_s=0.2)
        for _ in range(500):
            throttled.warning("store", "serve: read failed: %s", "timeout")
        time.sleep(0.25)
        throttled.warning("store", "serve: read failed: %s", "timeout")
    finally:
        logger.removeHandler(handler)
    assert records == ["serve: read failed: timeout", "serve: read failed: timeout (499 more like it in the last minute)"]


def test_a_store_that_keeps_failing_is_not_asked_until_the_cooldown_ends(world):
    hang, port = _silent_port()
    hang.close()  # connection refused, every time
    store = world["store"].model_copy(update={"endpoint_url": f"http://127.0.0.1:{port}"})
    settings = service_settings(store, world["models"], world["raw"], "serving.store_breaker_failures=3",
                                "serving.store_breaker_cooldown_s=600")
    with running(create_app(settings)) as url, httpx.Client(base_url=url) as client:
        got = [post(client, user_id="us-1", session_id=f"s{i}") for i in range(6)]
        ready = client.get("/readyz").json()
        metrics = client.get("/metrics").text
    assert [r.json()["store"] for r in got] == ["error"] * 3 + ["circuit_open"] * 3
    assert all(r.json()["cold_start"] for r in got)
    assert [r.headers["server-timing"].split(",")[0] for r in got[3:]] == ["store;dur=0.000"] * 3  # not asked
    assert ready["ready"] is False  # the probe goes past the breaker: it tells the truth
    assert 'offer_ai_store_errors_total{kind="circuit_open"} 3.0' in metrics


def test_the_breaker_opens_after_a_streak_and_closes_on_the_first_success():
    from offer_ai.online.deadline_reader import Breaker

    breaker = Breaker(failures=2, cooldown_s=1.0)
    breaker.record(False, 10.0)
    breaker.record(True, 10.1)  # a success in between: the streak starts again
    breaker.record(False, 10.2)
    assert breaker.allows(10.3)
    breaker.record(False, 10.3)  # two in a row
    assert not breaker.allows(10.4) and not breaker.allows(11.29) and breaker.allows(11.3)
