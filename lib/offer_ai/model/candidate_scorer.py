"""Scoring one player's candidates at request time, in well under a millisecond.

:meth:`OfferModel.score_candidates` builds a pandas frame and an XGBoost DMatrix per call:
right for tables, ~2 ms and more for a single player, most of it fixed overhead (and an
OpenMP pool that fights the web server for the cores). A request scores one context against
the same K offers every time, so the offer half of the K × F matrix is built once per model
(:class:`CandidateScorer`) and a request only fills in the context columns — with the
encoder's own rules (numbers and booleans to float, null to NaN, a country outside the
vocabulary or null to the unknown column) — and calls ``inplace_predict`` on one thread.
``tests/test_candidate_scorer.py`` holds it to ``score_candidates`` on many contexts, so the
two paths cannot drift apart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import numpy as np

from offer_ai.errors import UserError
from offer_ai.model.model import UNKNOWN, OfferModel, candidate_matrix
from offer_ai.model.offers import Offer


def _number(name: str, value: Any) -> float:
    """The encoder's numeric rule for one value: bool/int/float/Decimal to float, null to NaN."""
    if value is None:
        return math.nan
    if isinstance(value, (bool, int, float, Decimal, np.number, np.bool_)):
        return float(value)
    raise UserError(f"Feature {name} must be numeric or boolean, got {value!r}.")


class CandidateScorer:
    """One model's K × F candidate matrix with the offer columns filled in once.

    Not thread-safe by design: the service calls it from its event loop only (one request at
    a time, each a fraction of a millisecond).
    """

    def __init__(self, model: OfferModel, offers: Sequence[Offer]) -> None:
        if not offers:
            raise UserError("A candidate scorer needs at least one offer.")
        self.model = model
        self.offers = list(offers)
        self.index = {offer: k for k, offer in enumerate(self.offers)}
        encoder = model.encoder
        self._numeric = list(encoder.numeric_context)
        # The matrix of a context whose every column is null/unknown: the offer columns are what
        # the reference encoder writes for these offers, the context columns are overwritten per request.
        blank = {name: [None] for name in self._numeric} | {"country": [None]}
        import pandas as pd  # only at model load

        self._template = candidate_matrix(pd.DataFrame(blank), self.offers, encoder).astype(np.float32)
        names = encoder.feature_names
        self._numeric_cols = [names.index(n) for n in self._numeric]
        countries = encoder.vocabularies["country"]
        first = names.index(f"country={countries[0]}") if countries else names.index(f"country={UNKNOWN}")
        self._country_cols = {value: first + i for i, value in enumerate(countries)}
        self._country_unknown = names.index(f"country={UNKNOWN}")
        self._country_span = slice(first, self._country_unknown + 1)
        self._booster = model.booster.copy()
        self._booster.set_param({"nthread": 1})  # one row block: threads cost more than they save

    def matrix(self, context: Mapping[str, Any], rows: Sequence[int] | None = None) -> np.ndarray:
        """The [K, F] (or [len(rows), F]) float32 matrix of ``context`` with each offer."""
        x = self._template.copy() if rows is None else self._template[list(rows)]
        for name, col in zip(self._numeric, self._numeric_cols):
            x[:, col] = _number(name, context.get(name))
        country = context.get("country")
        x[:, self._country_span] = 0.0
        is_null = country is None or (isinstance(country, float) and math.isnan(country))
        x[:, self._country_unknown if is_null else self._country_cols.get(str(country), self._country_unknown)] = 1.0
        return x

    def scores(self, context: Mapping[str, Any], rows: Sequence[int] | None = None) -> np.ndarray:
        """Predicted next-week revenue of each offer (or of the offers at ``rows``) for ``context``, [K]."""
        x = self.matrix(context, rows)
        return np.asarray(self._booster.inplace_predict(x, missing=np.nan), dtype=np.float64).reshape(-1)
