"""The revenue model: next-week revenue of a player given their features and the offer shown.

One XGBoost regressor scores (context, offer) pairs, so the policy can ask it about every
candidate of the catalogue for a player and show the best. Everything that turns rows into
numbers lives in :class:`FeatureEncoder`, which is saved *with* the booster: serving must
encode a player exactly as training did, or the trees split on the wrong columns silently.

Feature layout (the order of ``FeatureEncoder.feature_names``):

* numeric context: ``facebook_connected`` (0/1), ``last_session_games_played``,
  ``last_session_win_ratio``, ``prev_week_purchase_amount`` — nulls stay NaN, which XGBoost
  treats as missing and learns a default branch for (a new player *has* no last session;
  imputing 0 would claim they lost every game);
* the action's ``offer_price``;
* one-hot ``country=<value>`` and ``offer_type=<value>``, each with an explicit
  ``…=__unknown__`` column. One-hot rather than XGBoost's native categorical codes because
  it needs no ``enable_categorical`` support from whatever XGBoost build serves or trains the
  model (SageMaker's container among them), and the vocabularies are small. A null country,
  a value never seen in training, and a value rarer than ``min_count`` all land in the
  unknown bucket: to the model they are equally uninformative.

Objectives: revenue is zero-inflated with a long right tail, which ``reg:tweedie`` (log link,
compound Poisson–gamma) models naturally; :func:`compare_objectives` trains it beside
``reg:squarederror`` on the same split so the choice is measured, not assumed.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from offer_ai.errors import UserError
from offer_ai.model.evaluation import regression_metrics
from offer_ai.model.offers import Offer

LABEL = "next_week_purchase_amount"
#: Context features, in matrix order; null -> NaN (missing for XGBoost).
NUMERIC_CONTEXT = (
    "facebook_connected",
    "last_session_games_played",
    "last_session_win_ratio",
    "prev_week_purchase_amount",
)
ACTION_NUMERIC = ("offer_price",)
CATEGORICAL = ("country", "offer_type")
UNKNOWN = "__unknown__"
OBJECTIVES = ("reg:tweedie", "reg:squarederror")
ENCODER_FORMAT = 1
METADATA_FORMAT = 1
MODEL_FILE = "model.json"
METADATA_FILE = "metadata.json"

#: Moderate, shallow trees: the feature set is small, and deep trees overfit the few payers.
DEFAULT_PARAMS: dict[str, Any] = {
    "eta": 0.1,
    "max_depth": 4,
    "min_child_weight": 1.0,
    "subsample": 1.0,
    "colsample_bytree": 1.0,
    "lambda": 1.0,
    "tree_method": "hist",
    "nthread": 2,
}
DEFAULT_TWEEDIE_POWER = 1.5


# --------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------


def _require_columns(rows: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in rows.columns]
    if missing:
        raise UserError(f"{what} lacks column(s) {', '.join(missing)}.")


@dataclass(frozen=True)
class FeatureEncoder:
    """Categorical vocabularies learnt from training rows; JSON-serialisable for the artifact."""

    vocabularies: dict[str, tuple[str, ...]]
    numeric_context: tuple[str, ...] = NUMERIC_CONTEXT
    action_numeric: tuple[str, ...] = ACTION_NUMERIC
    min_count: int = 1

    @classmethod
    def fit(cls, rows: pd.DataFrame, min_count: int = 1) -> FeatureEncoder:
        """Vocabularies: sorted non-null values seen at least ``min_count`` times.

        Sorted, not in order of appearance, so two fits on the same rows in any order give the
        same columns. A ``min_count`` above 1 also gives the unknown bucket training rows, so
        an unseen category at serving time gets a learnt prediction rather than a default.
        """
        if min_count < 1:
            raise UserError(f"min_count must be >= 1, got {min_count}.")
        _require_columns(rows, CATEGORICAL, "Training rows")
        vocab: dict[str, tuple[str, ...]] = {}
        for col in CATEGORICAL:
            counts = rows[col].dropna().astype(str).value_counts()
            vocab[col] = tuple(sorted(v for v, c in counts.items() if c >= min_count and v != UNKNOWN))
        return cls(vocabularies=vocab, min_count=min_count)

    @property
    def feature_names(self) -> list[str]:
        """Matrix columns in order; also given to the booster so its JSON names them."""
        names = list(self.numeric_context) + list(self.action_numeric)
        for col in CATEGORICAL:
            names += [f"{col}={v}" for v in self.vocabularies[col]] + [f"{col}={UNKNOWN}"]
        return names

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": ENCODER_FORMAT,
            "numeric_context": list(self.numeric_context),
            "action_numeric": list(self.action_numeric),
            "categorical": {col: list(self.vocabularies[col]) for col in CATEGORICAL},
            "unknown": UNKNOWN,
            "min_count": self.min_count,
            "feature_names": self.feature_names,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureEncoder:
        """Rebuild and cross-check: stored feature names must match what this code would build."""
        if data.get("format") != ENCODER_FORMAT:
            raise UserError(f"Feature encoder format {data.get('format')!r} is not supported (expected {ENCODER_FORMAT}).")
        cat = data.get("categorical") or {}
        if set(cat) != set(CATEGORICAL):
            raise UserError(f"Feature encoder must have vocabularies for {', '.join(CATEGORICAL)}.")
        enc = cls(
            vocabularies={col: tuple(str(v) for v in cat[col]) for col in CATEGORICAL},
            numeric_context=tuple(data["numeric_context"]),
            action_numeric=tuple(data["action_numeric"]),
            min_count=int(data.get("min_count", 1)),
        )
        if data.get("unknown", UNKNOWN) != UNKNOWN:
            raise UserError(f"Feature encoder uses unknown token {data.get('unknown')!r}, this code uses {UNKNOWN!r}.")
        stored = data.get("feature_names")
        if stored is not None and list(stored) != enc.feature_names:
            raise UserError("Stored feature names disagree with the encoder's vocabularies; the artifact is inconsistent.")
        return enc

    # -- encoding ---------------------------------------------------------------------------

    def _one_hot(self, values: pd.Series, col: str) -> np.ndarray:
        vocab = self.vocabularies[col]
        index = {v: i for i, v in enumerate(vocab)}
        unknown = len(vocab)
        codes = np.fromiter(
            (index.get(str(v), unknown) if not _is_null(v) else unknown for v in values),
            dtype=np.int64,
            count=len(values),
        )
        out = np.zeros((len(values), len(vocab) + 1), dtype=np.float32)
        out[np.arange(len(values)), codes] = 1.0
        return out

    def _encode(self, context: pd.DataFrame, offer_types: pd.Series, offer_prices: np.ndarray) -> np.ndarray:
        numeric = np.zeros((len(context), len(self.numeric_context)))
        for j, col in enumerate(self.numeric_context):
            numeric[:, j] = _numeric(context[col], col)
        price = np.asarray(offer_prices, dtype=np.float64).reshape(-1, 1)
        parts = [
            numeric.astype(np.float32),
            price.astype(np.float32),
            self._one_hot(context["country"], "country"),
            self._one_hot(offer_types, "offer_type"),
        ]
        return np.hstack(parts)


def _is_null(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA or v is pd.NaT


def _numeric(values: pd.Series, name: str) -> np.ndarray:
    """Nullable bools and numbers to float64 with NaN for null; strings are a contract breach."""
    try:
        return pd.to_numeric(values.astype("object").where(values.notna(), np.nan), errors="raise").astype(np.float64).to_numpy()
    except (TypeError, ValueError) as exc:
        raise UserError(f"Column {name} must be numeric or boolean: {exc}") from exc


def feature_matrix(rows: pd.DataFrame, encoder: FeatureEncoder) -> np.ndarray:
    """[n, F] float32 features of logged rows, each with the offer it was shown."""
    _require_columns(rows, list(encoder.numeric_context) + ["country", "offer_type", "offer_price"], "Rows")
    return encoder._encode(rows, rows["offer_type"], rows["offer_price"].to_numpy(dtype=np.float64, na_value=np.nan))


def candidate_matrix(context_rows: pd.DataFrame, offers: Sequence[Offer], encoder: FeatureEncoder) -> np.ndarray:
    """[n × K, F] features of each context row crossed with every candidate offer.

    Row i·K + k is context row i with offer k, so ``predictions.reshape(n, K)`` gives the
    score table the policy needs. Any offer columns on the context rows are ignored.
    """
    if not offers:
        raise UserError("candidate_matrix needs at least one offer.")
    _require_columns(context_rows, list(encoder.numeric_context) + ["country"], "Context rows")
    n, k = len(context_rows), len(offers)
    # Positional repeat: .loc would multiply rows that share an index label.
    context = context_rows.iloc[np.repeat(np.arange(n), k)].reset_index(drop=True)
    types = pd.Series([o.offer_type for o in offers] * n, dtype=object)
    prices = np.tile(np.array([o.offer_price for o in offers], dtype=np.float64), n)
    return encoder._encode(context, types, prices)


def _xgb_name(name: str) -> str:
    # XGBoost rejects '[', ']' and '<' in feature names; a country string must not break training.
    return name.replace("[", "(").replace("]", ")").replace("<", "lt")


# --------------------------------------------------------------------------------------------
# Split
# --------------------------------------------------------------------------------------------


def complete_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows whose 7-day label window has closed; the only ones fit for training (DESIGN §4)."""
    _require_columns(rows, ["label_complete"], "Rows")
    return rows[rows["label_complete"].fillna(False).astype(bool)]


def time_split(rows: pd.DataFrame, validation_fraction: float = 0.2) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train on earlier decisions, validate on the last ``validation_fraction`` of the time span.

    The cut is on the *time span* [min, max] of ``decision_time``, not on a row count, so it
    is the same instant however rows are ordered; rows at or after the cut are validation, so
    every validation decision is strictly later than every training one. A random split would
    let the model see next week's players while predicting this week's.
    """
    if not 0.0 < validation_fraction < 1.0:
        raise UserError(f"validation_fraction must be in (0, 1), got {validation_fraction}.")
    _require_columns(rows, ["decision_time"], "Rows")
    times = pd.to_datetime(rows["decision_time"], utc=True)
    if times.isna().any():
        raise UserError("Rows with a null decision_time cannot be placed in time.")
    if len(rows) == 0:
        raise UserError("time_split needs at least one row.")
    start, end = times.min(), times.max()
    if start == end:
        raise UserError("All decisions share one decision_time; a time-based split is impossible.")
    cut = start + (end - start) * (1.0 - validation_fraction)
    is_valid = (times >= cut).to_numpy()
    return rows[~is_valid], rows[is_valid]


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------


@dataclass
class OfferModel:
    """A trained booster with everything needed to score offers exactly as in training."""

    booster: xgb.Booster
    encoder: FeatureEncoder
    offers: list[Offer]
    objective: str
    model_version: str
    spec_version: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def feature_names(self) -> list[str]:
        return self.encoder.feature_names

    def _predict_matrix(self, x: np.ndarray) -> np.ndarray:
        if x.shape[0] == 0:
            return np.zeros(0)
        names = [_xgb_name(n) for n in self.encoder.feature_names]
        return self.booster.predict(xgb.DMatrix(x, feature_names=names, missing=np.nan)).astype(np.float64)

    def predict(self, rows: pd.DataFrame) -> np.ndarray:
        """Expected next-week revenue of each row given the offer it was shown, [n]."""
        return self._predict_matrix(feature_matrix(rows, self.encoder))

    def score_candidates(self, context_rows: pd.DataFrame, offers: Sequence[Offer] | None = None) -> np.ndarray:
        """Expected revenue of every candidate (default: the stored catalogue) per row, [n, K]."""
        offers = list(self.offers if offers is None else offers)
        preds = self._predict_matrix(candidate_matrix(context_rows, offers, self.encoder))
        return preds.reshape(len(context_rows), len(offers))

    def check_spec_version(self, spec_version: str | None) -> None:
        """Refuse to score features built by a different features.yaml than the model was trained on."""
        if self.spec_version is not None and spec_version is not None and spec_version != self.spec_version:
            raise UserError(
                f"Features have spec_version {spec_version} but model {self.model_version} was trained on {self.spec_version}."
            )

    def metadata(self) -> dict[str, Any]:
        return {
            "format": METADATA_FORMAT,
            "model_version": self.model_version,
            "objective": self.objective,
            "spec_version": self.spec_version,
            "features": self.encoder.feature_names,
            "encoder": self.encoder.to_dict(),
            "offers": [{"offer_type": o.offer_type, "offer_price": o.offer_price} for o in self.offers],
            "label": LABEL,
            "metrics": self.metrics,
            "params": self.params,
            "xgboost_version": xgb.__version__,
        }

    def save(self, directory: str | Path) -> Path:
        """``model.json`` (booster) + ``metadata.json``; the folder is the whole artifact."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(directory / MODEL_FILE))
        (directory / METADATA_FILE).write_text(json.dumps(_jsonable(self.metadata()), indent=2, sort_keys=True) + "\n")
        return directory

    @classmethod
    def load(cls, directory: str | Path, nthread: int = 2) -> OfferModel:
        directory = Path(directory)
        model_path, meta_path = directory / MODEL_FILE, directory / METADATA_FILE
        for p in (model_path, meta_path):
            if not p.is_file():
                raise UserError(f"Model artifact {directory} lacks {p.name}.")
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != METADATA_FORMAT:
            raise UserError(f"Model metadata format {meta.get('format')!r} is not supported (expected {METADATA_FORMAT}).")
        encoder = FeatureEncoder.from_dict(meta["encoder"])
        if list(meta["features"]) != encoder.feature_names:
            raise UserError(f"{meta_path}: 'features' disagrees with the stored encoder.")
        booster = xgb.Booster(params={"nthread": nthread})
        booster.load_model(str(model_path))
        if booster.num_features() != len(encoder.feature_names):
            raise UserError(f"{model_path} expects {booster.num_features()} features, metadata lists {len(encoder.feature_names)}.")
        return cls(
            booster=booster,
            encoder=encoder,
            offers=[Offer(str(o["offer_type"]), float(o["offer_price"])) for o in meta["offers"]],
            objective=meta["objective"],
            model_version=meta["model_version"],
            spec_version=meta.get("spec_version"),
            metrics=meta.get("metrics", {}),
            params=meta.get("params", {}),
        )


def _jsonable(obj: Any) -> Any:
    """NaN is not JSON; numpy scalars are not JSON — metadata must load in any JSON reader."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _labels(rows: pd.DataFrame, what: str) -> np.ndarray:
    _require_columns(rows, [LABEL], what)
    if "label_complete" in rows.columns and not rows["label_complete"].fillna(False).astype(bool).all():
        raise UserError(f"{what} include rows whose label window is still open; filter them with complete_rows().")
    y = rows[LABEL].to_numpy(dtype=np.float64, na_value=np.nan)
    if not np.all(np.isfinite(y)) or np.any(y < 0):
        raise UserError(f"{what}: {LABEL} must be a finite, non-negative amount on every row.")
    return y


def train(
    rows_train: pd.DataFrame,
    rows_valid: pd.DataFrame,
    objective: str = "reg:tweedie",
    params: Mapping[str, Any] | None = None,
    *,
    offers: Sequence[Offer] | None = None,
    spec_version: str | None = None,
    num_boost_round: int = 200,
    early_stopping_rounds: int | None = None,
    seed: int = 0,
    min_count: int = 1,
) -> OfferModel:
    """Fit the encoder and booster on ``rows_train``; report metrics on ``rows_valid``.

    Deterministic for a given seed (CPU ``hist``, fixed thread count). Validation metrics
    compare with the no-skill baseline: the *training* mean predicted for every validation
    row. With ``early_stopping_rounds`` the validation set also picks the number of trees,
    which makes its metrics slightly optimistic — hence off by default. ``offers`` is the
    catalogue stored with the model for serving (default: the distinct offers in training).
    """
    if objective not in OBJECTIVES:
        raise UserError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}.")
    if len(rows_train) == 0 or len(rows_valid) == 0:
        raise UserError("Training and validation rows must both be non-empty.")
    y_train, y_valid = _labels(rows_train, "Training rows"), _labels(rows_valid, "Validation rows")
    encoder = FeatureEncoder.fit(rows_train, min_count=min_count)
    names = [_xgb_name(n) for n in encoder.feature_names]
    if len(set(names)) != len(names):
        raise UserError("Two categories encode to the same feature name; rename them in the data.")
    x_train, x_valid = feature_matrix(rows_train, encoder), feature_matrix(rows_valid, encoder)
    d_train = xgb.DMatrix(x_train, label=y_train, feature_names=names, missing=np.nan)
    d_valid = xgb.DMatrix(x_valid, label=y_valid, feature_names=names, missing=np.nan)

    full_params: dict[str, Any] = {**DEFAULT_PARAMS, **(params or {}), "objective": objective, "seed": seed}
    if objective == "reg:tweedie":
        full_params.setdefault("tweedie_variance_power", DEFAULT_TWEEDIE_POWER)
    else:
        full_params.pop("tweedie_variance_power", None)
    booster = xgb.train(
        full_params,
        d_train,
        num_boost_round=num_boost_round,
        evals=[(d_valid, "validation")] if early_stopping_rounds else (),
        early_stopping_rounds=early_stopping_rounds,
        verbose_eval=False,
    )
    best_iteration = int(booster.best_iteration) if early_stopping_rounds else num_boost_round - 1
    if early_stopping_rounds:
        # xgb.train returns the last model, not the best; keep only the trees that earned their place.
        booster = booster[: best_iteration + 1]

    if offers is None:
        pairs = rows_train[["offer_type", "offer_price"]].dropna().drop_duplicates()
        offers = sorted(Offer(str(t), float(p)) for t, p in pairs.itertuples(index=False))
    raw = bytes(booster.save_raw("json"))
    model = OfferModel(
        booster=booster,
        encoder=encoder,
        offers=list(offers),
        objective=objective,
        model_version=hashlib.sha256(raw).hexdigest()[:12],
        spec_version=spec_version,
        params={**full_params, "num_boost_round": num_boost_round, "best_iteration": best_iteration},
    )
    train_mean = float(y_train.mean())
    model.metrics = {
        "validation": regression_metrics(y_valid, model._predict_matrix(x_valid), train_mean),
        "train": regression_metrics(y_train, model._predict_matrix(x_train), train_mean),
        "train_rows": int(len(rows_train)),
        "validation_rows": int(len(rows_valid)),
    }
    return model


@dataclass(frozen=True)
class ObjectiveComparison:
    """Models trained on the same split with each objective; ``table`` is the side-by-side view."""

    models: dict[str, OfferModel]

    @property
    def table(self) -> pd.DataFrame:
        """One row per objective: validation RMSE, MAE, baseline RMSE, R², skill."""
        return pd.DataFrame({obj: m.metrics["validation"] for obj, m in self.models.items()}).T

    @property
    def best(self) -> OfferModel:
        """Lowest validation RMSE (revenue is what the policy ranks offers by)."""
        return min(self.models.values(), key=lambda m: m.metrics["validation"]["rmse"])


def compare_objectives(
    rows_train: pd.DataFrame,
    rows_valid: pd.DataFrame,
    objectives: Sequence[str] = OBJECTIVES,
    params: Mapping[str, Any] | None = None,
    **train_kwargs: Any,
) -> ObjectiveComparison:
    """Train one model per objective (default tweedie and squared error) on identical data."""
    return ObjectiveComparison({obj: train(rows_train, rows_valid, obj, params, **train_kwargs) for obj in objectives})
