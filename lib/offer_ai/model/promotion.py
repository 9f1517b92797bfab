"""The promotion guard: may this model serve? Two questions, both on the export's validation rows.

1. Does it predict? Its validation RMSE must beat the no-skill baseline's — the training
   label mean predicted for every row (the model's stored ``metrics.train.mean_true``). A
   model that cannot beat a constant has learnt nothing worth serving.
2. Would it earn? The doubly-robust value of the policy the service would run with it
   (ε-greedy at ``serving.epsilon``) must be at least the logging policy's value, the mean
   revenue the logged decisions actually earned. DR uses the logged propensities, so the
   rows may come from the uniform generator or from served decisions alike.

Both are recomputed here from the model and the rows, not read from the artifact's claims, so
a SageMaker artifact (which carries no off-policy figures) and a notebook model are judged
alike. The validation rows were never trained on (DESIGN §7: split by time).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from offer_ai.errors import UserError
from offer_ai.model.evaluation import doubly_robust, logging_policy_value, regression_metrics
from offer_ai.model.model import LABEL, OfferModel
from offer_ai.model.offline_evaluation import greedy_probabilities, logged_arrays


@dataclass(frozen=True)
class GuardReport:
    """The guard's figures and verdict; ``reasons`` says in sentences why it refused (empty = passed)."""

    model_version: str
    rows: int
    epsilon: float
    validation_rmse: float
    baseline_rmse: float
    policy_dr: float
    logging_value: float
    reasons: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.reasons

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "reasons": list(self.reasons), "passed": self.passed}


def training_mean(model: OfferModel) -> float:
    """The no-skill baseline: the training label mean the model stored when it was trained."""
    value = (model.metrics.get("train") or {}).get("mean_true")
    if value is None:
        raise UserError(f"Model {model.model_version} carries no training metrics (metrics.train.mean_true): "
                        "train it with offer_ai.model.sagemaker_entry or notebook 02.")
    return float(value)


def check(model: OfferModel, validation_rows: pd.DataFrame, epsilon: float) -> GuardReport:
    """Judge ``model`` on ``validation_rows`` (complete rows with logged offers and propensities)."""
    if len(validation_rows) == 0:
        raise UserError("The export has no validation rows: the guard has nothing to judge the model on.")
    y = validation_rows[LABEL].to_numpy(dtype=float)
    regression = regression_metrics(y, model.predict(validation_rows), training_mean(model))
    actions, rewards, propensities = logged_arrays(validation_rows, model.offers)
    scores = model.score_candidates(validation_rows, model.offers)
    target = greedy_probabilities(scores, epsilon)
    dr = doubly_robust(actions, rewards, propensities, target, scores, n_bootstrap=0).value
    logging = logging_policy_value(rewards, n_bootstrap=0).value
    reasons = []
    if not regression["rmse"] < regression["baseline_rmse"]:
        reasons.append(f"its validation RMSE {regression['rmse']:.4f} does not beat the no-skill baseline's "
                       f"{regression['baseline_rmse']:.4f}")
    if not (np.isfinite(dr) and dr >= logging):
        reasons.append(f"the doubly-robust value of its ε-greedy policy (ε={epsilon:g}), {dr:.4f} per decision, "
                       f"is below the logging policy's {logging:.4f}")
    return GuardReport(model.model_version, len(validation_rows), epsilon, regression["rmse"],
                       regression["baseline_rmse"], float(dr), float(logging), tuple(reasons))


def refusal(report: GuardReport) -> str:
    """The one sentence a refused promotion prints."""
    return (f"Model {report.model_version} is not promoted: " + " and ".join(report.reasons)
            + f" (on {report.rows} validation rows).")
