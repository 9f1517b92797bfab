"""What the decision service tells Prometheus (GET /metrics), in one registry per app.

Latency is split the way an operator needs it: the whole request inside the service, the
store round trip, and the service's own work (the difference), so a slow p99 points at
DynamoDB or at the service at once. One registry per app, not prometheus_client's global
one, so two apps in one process (tests) never share counters. With several uvicorn workers
each process answers for itself: scrape instances of one worker each (README).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

#: Seconds: fine below 10 ms, where the budget lives, coarse above.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25,
                   0.5, 1.0, 2.5)


class ServiceMetrics:
    """Every metric of the service, registered in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.latency = Histogram("offer_ai_decision_seconds", "Time to answer a decision inside the service.",
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.own_latency = Histogram("offer_ai_decision_service_seconds",
                                     "The service's own work per decision: the request less the store round trip.",
                                     buckets=LATENCY_BUCKETS, registry=r)
        self.store_latency = Histogram("offer_ai_store_read_seconds", "Feature read round trip, budget included.",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.decisions = Counter("offer_ai_decisions_total", "Decisions served, by offer.", ["offer_type", "offer_price"],
                                 registry=r)
        self.explored = Counter("offer_ai_decisions_explored_total", "Decisions where the policy explored.", registry=r)
        self.cold_starts = Counter("offer_ai_cold_starts_total",
                                   "Decisions served with the no-history defaults, by why.", ["reason"], registry=r)
        self.store_errors = Counter("offer_ai_store_errors_total", "Feature reads that failed or timed out.", ["kind"],
                                    registry=r)
        self.requests = Counter("offer_ai_decision_requests_total", "Decision requests by HTTP status.", ["status"],
                                registry=r)
        self.model_info = Gauge("offer_ai_model_info", "The model version serving (1) and earlier ones (0).",
                                ["model_version"], registry=r)
        self.model_loaded = Gauge("offer_ai_model_loaded", "1 when a model is loaded and serving.", registry=r)
        self.model_swaps = Counter("offer_ai_model_swaps_total", "Newly promoted models picked up.", registry=r)
        self.model_load_errors = Counter("offer_ai_model_load_errors_total",
                                         "Promoted models that could not serve (kept the old one).", registry=r)
        self.log_lines = Counter("offer_ai_decision_log_lines_total", "Decisions written to the landing folder.",
                                 registry=r)
        self.log_errors = Counter("offer_ai_decision_log_errors_total", "Failed decision-log writes (retried).",
                                  registry=r)
        self.log_pending = Gauge("offer_ai_decision_log_pending", "Decisions waiting for the next log flush.",
                                 registry=r)

    def serving(self, version: str) -> None:
        for sample in self.model_info.collect()[0].samples:
            self.model_info.labels(model_version=sample.labels["model_version"]).set(0)
        self.model_info.labels(model_version=version).set(1)
        self.model_loaded.set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)
