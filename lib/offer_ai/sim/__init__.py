"""Stage 5, sim: the seeded synthetic game whose truth is known (events, decisions, responses).

It stands last: it may use every stage's definitions (the offer catalogue), and nothing in the
pipeline depends on it. Why a simulator: the pipeline, the model and the off-policy estimators
need data whose answer is known (DESIGN §3 `generate_events`, §7 evaluation).

- `players`: hidden traits, observable features, the true take probability and revenue;
- `identity`: ids, per-user random streams, country, device, signin;
- `simulator`: one user's sessions, games, purchases and logged offers, in time order;
- `event_lines`: the brief's raw line shapes;
- `messiness`: duplicates, late lines and junk, counted exactly;
- `writer` (with `clock`, `options`): shards, part files and the summary — `generate`;
- `truth`: the per-decision truth records, read back by `load_truth`, and policy values;
- `responses`: generated players playing on past the range, answering offers the decision
  service served (the loop's other half: `open_sessions`, `respond`).

Pure Python (random.Random per user, f-string templates, orjson); no Spark.
"""

from offer_ai.sim.identity import customer_identifier
from offer_ai.sim.messiness import MALFORMED_KINDS
from offer_ai.sim.options import GeneratorOptions
from offer_ai.sim.players import (
    DecisionContext,
    ObservableFeatures,
    UserTraits,
    best_offer,
    expected_other_revenue,
    take_probabilities,
    true_expected_revenue,
    true_offer_take_probability,
)
from offer_ai.sim.simulator import EVENT_TYPES
from offer_ai.sim.truth import (
    context_from_truth,
    iter_truth_records,
    load_truth,
    logged_value,
    oracle_choices,
    oracle_value,
    policy_value,
    uniform_value,
)
from offer_ai.sim.writer import MANIFEST, generate

__all__ = [
    "EVENT_TYPES",
    "MALFORMED_KINDS",
    "MANIFEST",
    "DecisionContext",
    "GeneratorOptions",
    "ObservableFeatures",
    "UserTraits",
    "best_offer",
    "context_from_truth",
    "customer_identifier",
    "expected_other_revenue",
    "generate",
    "iter_truth_records",
    "load_truth",
    "logged_value",
    "oracle_choices",
    "oracle_value",
    "policy_value",
    "take_probabilities",
    "true_expected_revenue",
    "true_offer_take_probability",
    "uniform_value",
]
