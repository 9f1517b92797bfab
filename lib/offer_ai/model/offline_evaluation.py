"""Offline evaluation of offer policies on held-out logged decisions, and against the simulator.

Two views of the same question — would the learned policy earn more than the one that logged
the data? — kept side by side so each checks the other:

* off-policy estimates (IPS, SNIPS, DR from :mod:`offer_ai.model.evaluation`) from the validation
  rows' logged offers, propensities and realised next-week revenue: what is available on real
  data;
* on generated data, the simulator's *true* expected revenue of every candidate at each
  decision (``<raw>/_truth``): the exact value of any policy, and of the oracle that knows it.

The validation rows come from the training export. Its Parquet copy carries the keys
(``user_id``, ``anchor_session_id``, ``decision_time``), and :func:`align_truth` joins on them;
the CSV copy has none, so rows read from it are paired with the truth records by the export's
row order (decision time, then user, then session — the order ``training_export`` writes).
Either way every pair is *verified* by its features, offer and label, so a misalignment fails
loudly rather than scoring the wrong decisions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from offer_ai.errors import UserError
from offer_ai.model.evaluation import Estimate, action_indices, doubly_robust, ips, logging_policy_value, snips
from offer_ai.model.offers import Offer, offer_key

LABEL = "next_week_purchase_amount"
#: Observable features compared when pairing an export row with its truth record.
_FEATURES = ("country", "facebook_connected", "last_session_games_played", "last_session_win_ratio",
             "prev_week_purchase_amount")


# --------------------------------------------------------------------------------------------
# Pairing validation rows with the simulator's truth
# --------------------------------------------------------------------------------------------


def anchor_truth(truth: pd.DataFrame, first: Any = None, last: Any = None) -> pd.DataFrame:
    """Truth records that are training anchors with decision time in [first, last], in export order.

    Anchors are each user's first offer decision per UTC day (DESIGN §4, ``first_in_day``).
    ``first``/``last`` are the validation split's cut-off and last complete decision from the
    export manifest; ``None`` leaves that side open.
    """
    need = ["first_in_day", "decision_time", "user_id", "session_id"]
    missing = [c for c in need if c not in truth.columns]
    if missing:
        raise UserError(f"Truth records lack column(s) {', '.join(missing)}.")
    times = pd.to_datetime(truth["decision_time"], utc=True)
    keep = truth["first_in_day"].astype(bool).to_numpy()
    if first is not None:
        keep &= (times >= pd.Timestamp(first)).to_numpy()
    if last is not None:
        keep &= (times <= pd.Timestamp(last)).to_numpy()
    anchors = truth[keep].assign(decision_time=times[keep])
    return anchors.sort_values(["decision_time", "user_id", "session_id"], kind="stable").reset_index(drop=True)


def _same(a: Any, b: Any, tolerance: float) -> bool:
    a_null = a is None or (isinstance(a, float) and math.isnan(a)) or a is pd.NA
    b_null = b is None or (isinstance(b, float) and math.isnan(b)) or b is pd.NA
    if a_null or b_null:
        return a_null and b_null
    if isinstance(a, (bool, np.bool_)) or isinstance(b, (bool, np.bool_)):
        return bool(a) == bool(b)
    if isinstance(a, str) or isinstance(b, str):
        return str(a) == str(b)
    return abs(float(a) - float(b)) <= tolerance


def check_pairs(rows: pd.DataFrame, truth: pd.DataFrame, tolerance: float = 0.005) -> None:
    """Raise naming the first row whose truth record disagrees on a feature, the offer or the label.

    Amounts travel through JSON, Spark decimals and doubles: equal to the half-cent is equal.
    """
    if len(rows) != len(truth):
        raise UserError(f"{len(rows)} validation rows but {len(truth)} truth anchors in the same time range: "
                        "the export and the raw folder do not describe the same data.")
    pairs = [(c, c) for c in _FEATURES] + [("offer_type", "offer_type"), ("offer_price", "offer_price")]
    if LABEL in rows.columns and "realised_next_week_purchase_amount" in truth.columns:
        pairs.append((LABEL, "realised_next_week_purchase_amount"))
    for row_col, truth_col in pairs:
        if row_col not in rows.columns or truth_col not in truth.columns:
            continue
        for i, (a, b) in enumerate(zip(rows[row_col].tolist(), truth[truth_col].tolist())):
            if not _same(a, b, tolerance):
                raise UserError(f"Validation row {i} and its truth record disagree on {row_col}: {a!r} vs {b!r}. "
                                "The export and the raw folder do not describe the same decisions.")


def align_truth(rows: pd.DataFrame, truth: pd.DataFrame, first: Any = None, last: Any = None) -> pd.DataFrame:
    """Truth records aligned 1:1 with ``rows`` (same length, same order), verified.

    By keys when ``rows`` has ``user_id`` and ``anchor_session_id`` (or ``decision_time``);
    else by the export's row order within [first, last] (see the module docstring).
    """
    if "user_id" in rows.columns and ("anchor_session_id" in rows.columns or "decision_time" in rows.columns):
        right = truth.assign(decision_time=pd.to_datetime(truth["decision_time"], utc=True))
        if "anchor_session_id" in rows.columns:
            left_keys, right_keys = ["user_id", "anchor_session_id"], ["user_id", "session_id"]
            right = right[right["first_in_day"].astype(bool)] if "first_in_day" in right.columns else right
            left = rows[left_keys]
        else:
            left_keys = right_keys = ["user_id", "decision_time"]
            left = rows[left_keys].assign(decision_time=pd.to_datetime(rows["decision_time"], utc=True))
        right = right.drop_duplicates(right_keys)
        aligned = left.reset_index(drop=True).merge(
            right, left_on=left_keys, right_on=right_keys, how="left", validate="many_to_one", suffixes=("_row", "")
        )
        if aligned["expected_revenue"].isna().any():
            raise UserError(f"{int(aligned['expected_revenue'].isna().sum())} validation rows have no truth record.")
        aligned = aligned[[c for c in truth.columns]]
    else:
        aligned = anchor_truth(truth, first, last)
    check_pairs(rows.reset_index(drop=True), aligned)
    return aligned


def true_revenue_matrix(truth: pd.DataFrame, offers: Sequence[Offer]) -> np.ndarray:
    """[n, K] true expected next-week revenue of each catalogue offer at each truth record."""
    keys = [offer_key(o) for o in offers]
    out = np.empty((len(truth), len(keys)))
    for i, expected in enumerate(truth["expected_revenue"]):
        missing = [k for k in keys if k not in expected]
        if missing:
            raise UserError(f"Truth record {i} has no expected revenue for {', '.join(missing)}: "
                            "the model's catalogue is not the one the data was generated with.")
        out[i] = [expected[k] for k in keys]
    return out


def expected_value(values: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean over rows of Σ_a π(a|x) · value(x, a): a stochastic policy's exact value."""
    values, probabilities = np.asarray(values, dtype=float), np.asarray(probabilities, dtype=float)
    if values.shape != probabilities.shape or values.ndim != 2 or values.shape[0] == 0:
        raise UserError(f"values and probabilities must be the same non-empty [n, K] shape, got "
                        f"{values.shape} and {probabilities.shape}.")
    return float(np.mean(np.sum(values * probabilities, axis=1)))


# --------------------------------------------------------------------------------------------
# Policies on logged rows
# --------------------------------------------------------------------------------------------


def greedy_probabilities(scores: np.ndarray, epsilon: float = 0.0) -> np.ndarray:
    """ε-greedy π as [n, K]: 1 − ε + ε/K on the first best score, ε/K elsewhere.

    The same rule as ``offer_ai.model.policy.EpsilonGreedyPolicy``, applied to a precomputed score
    table so one model prediction serves every ε.
    """
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2 or scores.shape[1] == 0:
        raise UserError(f"scores must be [n, K] with K >= 1, got {scores.shape}.")
    if not 0.0 <= epsilon <= 1.0:
        raise UserError(f"epsilon must be in [0, 1], got {epsilon}.")
    n, k = scores.shape
    probs = np.full((n, k), epsilon / k)
    probs[np.arange(n), scores.argmax(axis=1)] += 1.0 - epsilon
    return probs


def uniform_probabilities(n: int, k: int) -> np.ndarray:
    return np.full((n, k), 1.0 / k)


@dataclass(frozen=True)
class PolicyReport:
    """One target policy's estimates on the logged rows (and its true value when known)."""

    name: str
    ips: Estimate
    snips: Estimate
    dr: Estimate
    true_value: float | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"policy": self.name}
        for label, est in (("ips", self.ips), ("snips", self.snips), ("dr", self.dr)):
            out[label] = est.value
            out[f"{label}_ci"] = [est.ci_low, est.ci_high]
        out["true_value"] = self.true_value
        return out


def evaluate_policy(
    name: str,
    probabilities: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    propensities: np.ndarray,
    predictions: np.ndarray,
    *,
    true_revenue: np.ndarray | None = None,
    n_bootstrap: int = 500,
    seed: int = 0,
) -> PolicyReport:
    """IPS, SNIPS and DR of π from logged (action, reward, propensity); its exact value when the truth is given."""
    kw: dict[str, Any] = {"n_bootstrap": n_bootstrap, "seed": seed}
    return PolicyReport(
        name=name,
        ips=ips(actions, rewards, propensities, probabilities, **kw),
        snips=snips(actions, rewards, propensities, probabilities, **kw),
        dr=doubly_robust(actions, rewards, propensities, probabilities, predictions, **kw),
        true_value=None if true_revenue is None else expected_value(true_revenue, probabilities),
    )


def logged_arrays(rows: pd.DataFrame, offers: Sequence[Offer]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(action index, reward, propensity) of logged rows, checked: no estimate from a null propensity."""
    for column in ("offer_type", "offer_price", "offer_propensity", LABEL):
        if column not in rows.columns:
            raise UserError(f"Logged rows lack column {column}.")
    if rows["offer_propensity"].isna().any():
        raise UserError(f"{int(rows['offer_propensity'].isna().sum())} logged rows have no propensity; "
                        "off-policy estimates need the probability each offer was shown with.")
    actions = action_indices(rows["offer_type"].tolist(), rows["offer_price"].tolist(), offers)
    return actions, rows[LABEL].to_numpy(dtype=float), rows["offer_propensity"].to_numpy(dtype=float)


def evaluate_policies(
    predictions: np.ndarray,
    rows: pd.DataFrame,
    offers: Sequence[Offer],
    epsilon: float,
    *,
    true_revenue: np.ndarray | None = None,
    n_bootstrap: int = 500,
    seed: int = 0,
) -> dict[str, Any]:
    """Greedy and ε-greedy on the model's scores, beside the logging and (with the truth) oracle policies.

    ``predictions`` is the model's [n, K] candidate table for ``rows`` (also DR's reward
    model). Returns plain JSON-able numbers: ``logging_value`` is the mean realised reward of
    the logged decisions; ``true_*`` values need ``true_revenue`` ([n, K], see
    :func:`true_revenue_matrix`), where the logging policy's true value is the mean over
    candidates weighted by the *logged* propensities' policy — uniform for the generator.
    """
    actions, rewards, propensities = logged_arrays(rows, offers)
    n, k = len(rows), len(offers)
    predictions = np.asarray(predictions, dtype=float)
    if predictions.shape != (n, k):
        raise UserError(f"predictions must be [n={n}, K={k}], got {predictions.shape}.")
    kw: dict[str, Any] = {"true_revenue": true_revenue, "n_bootstrap": n_bootstrap, "seed": seed}
    greedy = evaluate_policy("greedy", greedy_probabilities(predictions, 0.0), actions, rewards, propensities,
                             predictions, **kw)
    explore = evaluate_policy(f"epsilon_greedy({epsilon:g})", greedy_probabilities(predictions, epsilon), actions,
                              rewards, propensities, predictions, **kw)
    logging = logging_policy_value(rewards, n_bootstrap=n_bootstrap, seed=seed)
    out: dict[str, Any] = {
        "rows": n,
        "epsilon": epsilon,
        "logging_value": logging.value,
        "logging_value_ci": [logging.ci_low, logging.ci_high],
        "greedy": greedy.as_dict(),
        "epsilon_greedy": explore.as_dict(),
        "greedy_offer_share": {offer_key(o): float(np.mean(predictions.argmax(axis=1) == j)) for j, o in enumerate(offers)},
    }
    if true_revenue is not None:
        true_revenue = np.asarray(true_revenue, dtype=float)
        out.update(
            true_logging_value=expected_value(true_revenue, _logging_probabilities(propensities, k)),
            true_logged_value=float(np.mean(true_revenue[np.arange(n), actions])),
            true_oracle_value=float(np.mean(true_revenue.max(axis=1))),
        )
    return out


def _logging_probabilities(propensities: np.ndarray, k: int) -> np.ndarray:
    """The logging policy's π over all K offers, known only when it is uniform (every p = 1/K).

    The generator logs uniformly; any other logging policy's full distribution is not in the
    logs, so its true value cannot be computed from them and we say so.
    """
    if not np.allclose(propensities, 1.0 / k, atol=1e-9):
        raise UserError("The logging policy is not uniform over the catalogue: its true value needs its full "
                        "distribution, which the logs do not hold.")
    return uniform_probabilities(len(propensities), k)


def summary_metrics(model_metrics: Mapping[str, Any], policies: Mapping[str, Any]) -> dict[str, Any]:
    """The notebook's ``metrics.json``: validation regression metrics and the headline policy numbers.

    ``policy.*`` describe the learned greedy policy (the one a new model would serve), beside
    the logging policy it must beat; the full per-policy detail stays under ``policies``.
    """
    greedy = policies["greedy"]
    policy = {
        "ips": greedy["ips"], "snips": greedy["snips"], "dr": greedy["dr"],
        "ips_ci": greedy["ips_ci"], "snips_ci": greedy["snips_ci"], "dr_ci": greedy["dr_ci"],
        "logging_value": policies["logging_value"],
        "true_value": greedy.get("true_value"),
        "true_logging_value": policies.get("true_logging_value"),
        "true_oracle_value": policies.get("true_oracle_value"),
        "epsilon": policies["epsilon"],
        "epsilon_greedy_dr": policies["epsilon_greedy"]["dr"],
        "epsilon_greedy_true_value": policies["epsilon_greedy"].get("true_value"),
    }
    return {"validation": dict(model_metrics["validation"]), "policy": policy, "policies": dict(policies)}


# --------------------------------------------------------------------------------------------
# Tables for the notebook's plots and report
# --------------------------------------------------------------------------------------------


def policy_table(policies: Mapping[str, Any]) -> pd.DataFrame:
    """One row per policy (logging, greedy, ε-greedy, oracle) for the report and its plot.

    Columns: ``observed`` (the logging policy's mean realised reward), ``ips``/``snips``/``dr``
    (estimates for the target policies), each with ``_low``/``_high`` bootstrap bounds, and
    ``true_value`` (NaN without the simulator's truth).
    """
    nan = float("nan")
    rows: dict[str, dict[str, float]] = {}
    low, high = policies.get("logging_value_ci", [nan, nan])
    rows["logging"] = {"observed": policies["logging_value"], "observed_low": low, "observed_high": high,
                       "true_value": _nan_if_none(policies.get("true_logging_value"))}
    for key in ("greedy", "epsilon_greedy"):
        p = policies[key]
        row = {"true_value": _nan_if_none(p.get("true_value"))}
        for est in ("ips", "snips", "dr"):
            row[est], (row[f"{est}_low"], row[f"{est}_high"]) = p[est], p[f"{est}_ci"]
        rows[p["policy"]] = row
    if policies.get("true_oracle_value") is not None:
        rows["oracle"] = {"true_value": policies["true_oracle_value"]}
    columns = [f"{e}{s}" for e in ("observed", "ips", "snips", "dr") for s in ("", "_low", "_high")] + ["true_value"]
    return pd.DataFrame.from_dict(rows, orient="index").reindex(columns=columns).astype(float)


def _nan_if_none(value: Any) -> float:
    return float("nan") if value is None else float(value)


def objective_comparison(
    model: Any,
    rows_train: pd.DataFrame,
    rows_valid: pd.DataFrame,
    params: Mapping[str, Any] | None = None,
    num_boost_round: int = 200,
    seed: int = 0,
) -> Any:
    """``model`` beside a model trained with each other objective on the same rows and settings.

    Reuses the trained model rather than training its objective twice; returns an
    ``offer_ai.model.model.ObjectiveComparison`` (``.table`` for the side-by-side metrics).
    """
    from offer_ai.model.model import OBJECTIVES, ObjectiveComparison, compare_objectives

    others = [o for o in OBJECTIVES if o != model.objective]
    extra = compare_objectives(rows_train, rows_valid, others, params, offers=model.offers,
                               spec_version=model.spec_version, num_boost_round=num_boost_round, seed=seed)
    return ObjectiveComparison({model.objective: model, **extra.models})


def feature_importance(model: Any, importance_type: str = "total_gain") -> pd.Series:
    """The booster's importance per model feature (0 for a feature no tree splits on), largest first."""
    scores = model.booster.get_score(importance_type=importance_type)
    # The booster knows the features by XGBoost-safe names, in the encoder's order.
    booster_names = model.booster.feature_names or model.feature_names
    values = {name: float(scores.get(xgb_name, 0.0)) for name, xgb_name in zip(model.feature_names, booster_names)}
    return pd.Series(values, name=importance_type).sort_values(ascending=False)


def calibration_table(actual: Sequence[float] | np.ndarray, predicted: Sequence[float] | np.ndarray,
                      bins: int = 10) -> pd.DataFrame:
    """Rows grouped into (at most) ``bins`` equal-count bins of the prediction: mean predicted vs mean actual."""
    actual, predicted = np.asarray(actual, dtype=float), np.asarray(predicted, dtype=float)
    if actual.shape != predicted.shape or actual.ndim != 1 or actual.size == 0:
        raise UserError("actual and predicted must be non-empty 1-d arrays of one length.")
    order = np.argsort(predicted, kind="stable")
    groups = np.array_split(order, min(bins, actual.size))
    return pd.DataFrame([
        {"bin": i, "rows": len(g), "mean_predicted": float(predicted[g].mean()), "mean_actual": float(actual[g].mean())}
        for i, g in enumerate(groups) if len(g)
    ])


def revenue_by_offer(rows: pd.DataFrame, predicted: Sequence[float] | np.ndarray) -> pd.DataFrame:
    """(offer, rows, mean_actual, mean_predicted) of logged rows grouped by the offer shown."""
    frame = pd.DataFrame({
        "offer_type": rows["offer_type"].to_numpy(),
        "offer_price": rows["offer_price"].to_numpy(dtype=float),
        "actual": rows[LABEL].to_numpy(dtype=float),
        "predicted": np.asarray(predicted, dtype=float),
    })
    out = (frame.groupby(["offer_type", "offer_price"], sort=True)
           .agg(rows=("actual", "size"), mean_actual=("actual", "mean"), mean_predicted=("predicted", "mean"))
           .reset_index())
    out.insert(0, "offer", [offer_key(Offer(t, p)) for t, p in zip(out["offer_type"], out["offer_price"])])
    return out


def jsonable(obj: Any) -> Any:
    """NaN/inf -> None, numpy scalars -> Python: metrics.json must load in any JSON reader."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [jsonable(v) for v in obj.tolist()]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
