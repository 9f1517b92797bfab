"""What the decision-service tests share: a small real model, its promotion, and the service
itself on a real HTTP port (uvicorn in a thread, as jobs/serve.py runs it minus the signals)."""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from offer_ai.config import Settings, load_settings
from offer_ai.model import model_registry as registry
from offer_ai.model.model import OfferModel, train
from offer_ai.model.offers import Offer, load_offers
from offer_ai.online.local_dynamodb import free_port

REPO = Path(__file__).resolve().parents[1]
OFFERS = load_offers(REPO / "conf" / "offers.yaml")
SPEC = "spec-serve-1"
#: Which offer pays in each country in the training rows (everything else earns ~1).
FAVOURITE = {"US": Offer("vip_pass", 49.99), "DE": Offer("starter_pack", 0.99), "FR": Offer("coins_bundle", 9.99)}
CONTEXT = ("country", "facebook_connected", "last_session_games_played", "last_session_win_ratio",
           "prev_week_purchase_amount")


def favourite_model(boost: float = 20.0, rounds: int = 40) -> OfferModel:
    """Squared error on 144 hand rows where each country's favourite offer earns ``boost``."""
    records = []
    for country, fb, games in itertools.product(FAVOURITE, (True, False), (0, 3, 10)):
        for offer in OFFERS:
            records.append({
                "country": country, "facebook_connected": fb, "last_session_games_played": float(games),
                "last_session_win_ratio": 0.5 if games else None, "prev_week_purchase_amount": float(games),
                "offer_type": offer.offer_type, "offer_price": offer.offer_price,
                "next_week_purchase_amount": boost if offer == FAVOURITE[country] else 1.0,
            })
    rows = pd.DataFrame(records)
    return train(rows, rows, "reg:squarederror", {"max_depth": 3, "eta": 0.3}, offers=OFFERS, spec_version=SPEC,
                 num_boost_round=rounds)


def promote(models: Path, model: OfferModel, scratch: Path) -> str:
    """Install and point CURRENT at ``model`` (the guard is promote_model's business, tested there)."""
    version = registry.install(models, model.save(scratch / model.model_version))
    registry.point_current(models, version, {"source": "test"})
    return version


def service_settings(store: Any, models: Path, raw: Path, *extra: str) -> Settings:
    return load_settings(REPO / "conf" / "local.yaml", [
        f"online_store.endpoint_url={store.endpoint_url}", f"online_store.table={store.table}",
        f"serving.models_root={models}", f"raw.root={raw}", "serving.model_poll_s=0.1",
        "serving.decision_log_flush_s=600",
        # a loaded CI machine and moto's cold first call: the tests are about answers, not the budget
        "serving.store_timeout_ms=3000", "serving.store_connect_timeout_ms=3000", "serving.store_read_timeout_ms=3000",
        *extra,
    ])


@contextlib.contextmanager
def running(app: Any, timeout_s: float = 20.0) -> Iterator[str]:
    """Serve ``app`` on a free loopback port until the block ends (a graceful stop, lifespan included)."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                                           loop="uvloop", http="httptools"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the service did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout_s)
