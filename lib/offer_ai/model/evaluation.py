"""How good is a model, and what would a policy earn? — from logged bandit data alone.

Two questions, two tools:

* :func:`regression_metrics` — does the revenue model predict better than a no-skill
  constant (the training-set mean)? A model that cannot beat that has learnt nothing.
* :func:`ips`, :func:`snips`, :func:`doubly_robust` — the value (mean next-week revenue per
  decision) a *target* policy would have earned, estimated off-policy from decisions made by
  the *logging* policy, each with the propensity it was served with. Beside them,
  :func:`logging_policy_value` is what the logging policy actually earned, the bar to beat.

Notation for logged row i: context x_i, action a_i (index into the offer catalogue), reward
r_i, logged propensity p_i = μ(a_i | x_i); the target policy's probabilities π(· | x_i) are a
row of an [n, K] matrix, a reward model's predictions q̂(x_i, ·) likewise. With the
importance weight w_i = π(a_i | x_i) / p_i:

* IPS   = mean_i w_i r_i                                (unbiased when p_i > 0 wherever π > 0)
* SNIPS = Σ_i w_i r_i / Σ_i w_i                          (biased, far lower variance)
* DR    = mean_i [ Σ_a π(a|x_i) q̂(x_i, a) + w_i (r_i − q̂(x_i, a_i)) ]
          (unbiased if either the propensities or the reward model are right)

Intervals are percentile bootstraps over logged rows with a seeded generator, so a report is
reproducible run to run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from offer_ai.errors import UserError
from offer_ai.model.offers import Offer

#: Bootstrap resamples are drawn in blocks of at most this many cells (resamples × rows) so a
#: million logged rows do not need a 1000 × 10⁶ index matrix in memory at once.
_BOOTSTRAP_BLOCK_CELLS = 20_000_000


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its bootstrap interval (NaN bounds when no resamples were asked)."""

    value: float
    ci_low: float
    ci_high: float
    n: int


# --------------------------------------------------------------------------------------------
# Regression metrics
# --------------------------------------------------------------------------------------------


def regression_metrics(
    y_true: np.ndarray | Sequence[float],
    y_pred: np.ndarray | Sequence[float],
    y_baseline: float | np.ndarray | Sequence[float],
) -> dict[str, float]:
    """RMSE/MAE of the model beside those of a no-skill baseline on the same rows.

    ``y_baseline`` is normally the training-set mean (a scalar, broadcast to every row): the
    best constant a model that knows nothing about the player could predict. ``skill`` =
    1 − MSE/MSE_baseline (> 0 means better than the baseline); ``r2`` is the usual coefficient
    of determination around the mean of ``y_true`` itself, so it also penalises a baseline
    mean that drifted between training and validation.
    """
    y = np.asarray(y_true, dtype=float)
    pred = np.asarray(y_pred, dtype=float)
    base = np.broadcast_to(np.asarray(y_baseline, dtype=float), y.shape)
    if y.ndim != 1 or pred.shape != y.shape:
        raise UserError(f"y_true and y_pred must be 1-d of the same length, got {y.shape} and {pred.shape}.")
    if y.size == 0:
        raise UserError("regression_metrics needs at least one row.")
    mse = float(np.mean((y - pred) ** 2))
    baseline_mse = float(np.mean((y - base) ** 2))
    total_ss = float(np.sum((y - y.mean()) ** 2))
    return {
        "n": int(y.size),
        "rmse": float(np.sqrt(mse)),
        "mae": float(np.mean(np.abs(y - pred))),
        "baseline_rmse": float(np.sqrt(baseline_mse)),
        "baseline_mae": float(np.mean(np.abs(y - base))),
        "r2": float(1.0 - np.sum((y - pred) ** 2) / total_ss) if total_ss > 0 else float("nan"),
        "skill": float(1.0 - mse / baseline_mse) if baseline_mse > 0 else float("nan"),
        "mean_true": float(y.mean()),
        "mean_pred": float(pred.mean()),
    }


# --------------------------------------------------------------------------------------------
# Logged data
# --------------------------------------------------------------------------------------------


def action_indices(
    offer_types: Sequence[str] | np.ndarray,
    offer_prices: Sequence[float] | np.ndarray,
    offers: Sequence[Offer],
) -> np.ndarray:
    """Catalogue index of each logged (offer_type, offer_price); an offer outside it is an error.

    Prices are matched to the cent, since they travel through JSON, Spark doubles and CSV.
    A logged offer the catalogue does not list has no π(a|x) under any target policy, so the
    estimators cannot weigh it: the caller must filter such rows explicitly.
    """
    lookup = {(o.offer_type, round(float(o.offer_price), 2)): k for k, o in enumerate(offers)}
    types = list(offer_types)
    prices = list(offer_prices)
    if len(types) != len(prices):
        raise UserError("offer_types and offer_prices must have the same length.")
    out = np.empty(len(types), dtype=np.int64)
    missing: set[tuple[str, float]] = set()
    for i, (t, p) in enumerate(zip(types, prices)):
        key = (t, round(float(p), 2)) if p is not None else (t, float("nan"))
        k = lookup.get(key)
        if k is None:
            missing.add(key)
            out[i] = -1
        else:
            out[i] = k
    if missing:
        shown = ", ".join(f"{t} @ {p}" for t, p in sorted(missing, key=str)[:5])
        raise UserError(f"{int((out < 0).sum())} logged rows show offers not in the catalogue (e.g. {shown}).")
    return out


def _as_actions(actions: Sequence[int] | Sequence[Offer] | np.ndarray, offers: Sequence[Offer] | None) -> np.ndarray:
    items = list(actions) if not isinstance(actions, np.ndarray) else actions
    if len(items) and isinstance(items[0], Offer):
        if offers is None:
            raise UserError("Actions given as Offer objects need the offers catalogue to index them.")
        return action_indices([o.offer_type for o in items], [o.offer_price for o in items], offers)
    arr = np.asarray(items)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise UserError("Actions must be catalogue indices (integers) or Offer objects.")
    return arr.astype(np.int64, copy=False)


@dataclass(frozen=True)
class _Logged:
    actions: np.ndarray  # [n] int
    rewards: np.ndarray  # [n]
    propensities: np.ndarray  # [n]
    target: np.ndarray  # [n, K]

    @property
    def weights(self) -> np.ndarray:
        n = self.actions.size
        return self.target[np.arange(n), self.actions] / self.propensities


def _check(
    actions: Sequence[int] | Sequence[Offer] | np.ndarray,
    rewards: Sequence[float] | np.ndarray,
    propensities: Sequence[float] | np.ndarray,
    target_probabilities: np.ndarray,
    offers: Sequence[Offer] | None,
) -> _Logged:
    """Validate once, so a wrong propensity column fails loudly instead of skewing a number."""
    a = _as_actions(actions, offers)
    r = np.asarray(rewards, dtype=float)
    p = np.asarray(propensities, dtype=float)
    pi = np.asarray(target_probabilities, dtype=float)
    n = a.size
    if n == 0:
        raise UserError("Off-policy estimates need at least one logged row.")
    if r.shape != (n,) or p.shape != (n,):
        raise UserError(f"actions, rewards and propensities must all have length {n}.")
    if pi.ndim != 2 or pi.shape[0] != n:
        raise UserError(f"target_probabilities must be [n={n}, K], got shape {pi.shape}.")
    k = pi.shape[1]
    if a.min() < 0 or a.max() >= k:
        raise UserError(f"Logged action indices must lie in [0, {k}).")
    if not np.all(np.isfinite(r)):
        raise UserError("Rewards must be finite numbers.")
    if not np.all((p > 0) & (p <= 1)):
        raise UserError("Logged propensities must lie in (0, 1]; a 0 or missing propensity cannot be reweighted.")
    if np.any(pi < 0) or not np.allclose(pi.sum(axis=1), 1.0, atol=1e-6):
        raise UserError("Each row of target_probabilities must be a distribution (non-negative, summing to 1).")
    return _Logged(a, r, p, pi)


# --------------------------------------------------------------------------------------------
# Bootstrap
# --------------------------------------------------------------------------------------------


def _bootstrap(
    statistic: Callable[[np.ndarray], np.ndarray],
    n: int,
    value: float,
    n_bootstrap: int,
    confidence: float,
    seed: int | None,
) -> Estimate:
    """Percentile interval of ``statistic`` over row resamples.

    ``statistic`` maps an [B, n] matrix of row *counts* (how often each row was drawn) to [B]
    values, so every estimator — including the ratio in SNIPS — is computed per resample
    without materialising resampled copies of the data.
    """
    if not 0 < confidence < 1:
        raise UserError(f"confidence must be in (0, 1), got {confidence}.")
    if n_bootstrap < 0:
        raise UserError(f"n_bootstrap must be >= 0, got {n_bootstrap}.")
    if n_bootstrap == 0:
        return Estimate(float(value), float("nan"), float("nan"), n)
    rng = np.random.default_rng(seed)
    block = max(1, _BOOTSTRAP_BLOCK_CELLS // n)
    stats: list[np.ndarray] = []
    done = 0
    while done < n_bootstrap:
        b = min(block, n_bootstrap - done)
        draws = rng.integers(0, n, size=(b, n))
        flat = (draws + (np.arange(b, dtype=np.int64) * n)[:, None]).ravel()
        counts = np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)
        stats.append(statistic(counts))
        done += b
    values = np.concatenate(stats)
    # A resample can leave a ratio undefined (SNIPS with no weighted row drawn): such draws
    # carry no information about the value and are left out rather than poisoning the interval.
    values = values[~np.isnan(values)]
    if values.size == 0:
        return Estimate(float(value), float("nan"), float("nan"), n)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return Estimate(float(value), float(low), float(high), n)


# --------------------------------------------------------------------------------------------
# Estimators
# --------------------------------------------------------------------------------------------


def logging_policy_value(
    rewards: Sequence[float] | np.ndarray,
    *,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int | None = 0,
) -> Estimate:
    """Mean observed reward: what the policy that made the logged decisions actually earned."""
    r = np.asarray(rewards, dtype=float)
    if r.ndim != 1 or r.size == 0 or not np.all(np.isfinite(r)):
        raise UserError("rewards must be a non-empty 1-d array of finite numbers.")
    n = r.size
    return _bootstrap(lambda c: c @ r / n, n, float(r.mean()), n_bootstrap, confidence, seed)


def ips(
    actions: Sequence[int] | Sequence[Offer] | np.ndarray,
    rewards: Sequence[float] | np.ndarray,
    propensities: Sequence[float] | np.ndarray,
    target_probabilities: np.ndarray,
    *,
    offers: Sequence[Offer] | None = None,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int | None = 0,
) -> Estimate:
    """Inverse propensity scoring: mean of w_i r_i — unbiased, but high variance when π and μ differ."""
    d = _check(actions, rewards, propensities, target_probabilities, offers)
    n = d.actions.size
    terms = d.weights * d.rewards
    return _bootstrap(lambda c: c @ terms / n, n, float(terms.mean()), n_bootstrap, confidence, seed)


def snips(
    actions: Sequence[int] | Sequence[Offer] | np.ndarray,
    rewards: Sequence[float] | np.ndarray,
    propensities: Sequence[float] | np.ndarray,
    target_probabilities: np.ndarray,
    *,
    offers: Sequence[Offer] | None = None,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int | None = 0,
) -> Estimate:
    """Self-normalised IPS: Σ w_i r_i / Σ w_i — trades a small bias for much lower variance.

    When no logged action has weight (the target never picks what was logged) the estimate is
    undefined and reported as NaN rather than a misleading 0.
    """
    d = _check(actions, rewards, propensities, target_probabilities, offers)
    w = d.weights
    wr = w * d.rewards

    def ratio(c: np.ndarray) -> np.ndarray:
        num, den = c @ wr, c @ w
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)

    total = float(w.sum())
    value = float(wr.sum() / total) if total > 0 else float("nan")
    est = _bootstrap(ratio, d.actions.size, value, n_bootstrap, confidence, seed)
    if n_bootstrap and np.isnan(value):
        return Estimate(value, float("nan"), float("nan"), est.n)
    return est


def doubly_robust(
    actions: Sequence[int] | Sequence[Offer] | np.ndarray,
    rewards: Sequence[float] | np.ndarray,
    propensities: Sequence[float] | np.ndarray,
    target_probabilities: np.ndarray,
    reward_predictions: np.ndarray,
    *,
    offers: Sequence[Offer] | None = None,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int | None = 0,
) -> Estimate:
    """Doubly robust: the reward model's value of π, corrected by IPS on the model's residuals.

    ``reward_predictions`` is q̂(x_i, a) for every candidate, [n, K] (e.g.
    ``OfferModel.score_candidates``). Should be fitted on rows other than the logged ones
    evaluated here, or its residuals look smaller than they are.
    """
    d = _check(actions, rewards, propensities, target_probabilities, offers)
    q = np.asarray(reward_predictions, dtype=float)
    if q.shape != d.target.shape:
        raise UserError(f"reward_predictions must have the shape of target_probabilities {d.target.shape}, got {q.shape}.")
    if not np.all(np.isfinite(q)):
        raise UserError("reward_predictions must be finite numbers.")
    n = d.actions.size
    direct = np.sum(d.target * q, axis=1)
    correction = d.weights * (d.rewards - q[np.arange(n), d.actions])
    terms = direct + correction
    return _bootstrap(lambda c: c @ terms / n, n, float(terms.mean()), n_bootstrap, confidence, seed)


def off_policy_report(
    actions: Sequence[int] | Sequence[Offer] | np.ndarray,
    rewards: Sequence[float] | np.ndarray,
    propensities: Sequence[float] | np.ndarray,
    target_probabilities: np.ndarray,
    reward_predictions: np.ndarray | None = None,
    *,
    offers: Sequence[Offer] | None = None,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int | None = 0,
) -> dict[str, Estimate]:
    """Every estimate side by side (the logging policy's own value first) for one report table."""
    kw = dict(offers=offers, n_bootstrap=n_bootstrap, confidence=confidence, seed=seed)
    report = {
        "logging": logging_policy_value(rewards, n_bootstrap=n_bootstrap, confidence=confidence, seed=seed),
        "ips": ips(actions, rewards, propensities, target_probabilities, **kw),
        "snips": snips(actions, rewards, propensities, target_probabilities, **kw),
    }
    if reward_predictions is not None:
        report["dr"] = doubly_robust(actions, rewards, propensities, target_probabilities, reward_predictions, **kw)
    return report
