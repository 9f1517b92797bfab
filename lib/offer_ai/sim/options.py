"""What one generation is asked for: the options of `generate` and their validation."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from offer_ai.errors import UserError
from offer_ai.model.offers import Offer


@dataclass(frozen=True)
class GeneratorOptions:
    """Size, seed and messiness of one generation; the same options give the same bytes.

    The three fractions are independent per valid event: a duplicate line, a late line, a junk
    line derived from it. `workers` splits users over processes and never changes the content.
    """

    out: str
    offers: tuple[Offer, ...]
    users: int = 1000
    days: int = 28
    start_date: dt.date = dt.date(2026, 1, 1)
    seed: int = 42
    duplicate_fraction: float = 0.0
    out_of_order_fraction: float = 0.0
    malformed_fraction: float = 0.0
    gzip: bool = False
    workers: int = 1

    @property
    def messy(self) -> bool:
        """Whether any messiness is asked for (clean streams take a faster path)."""
        return self.duplicate_fraction > 0 or self.out_of_order_fraction > 0 or self.malformed_fraction > 0

    def validate(self) -> None:
        """User mistakes become one sentence (UserError), before anything is written."""
        if self.users < 1:
            raise UserError(f"--users must be at least 1 (got {self.users}).")
        if self.days < 1:
            raise UserError(f"--days must be at least 1 (got {self.days}).")
        if self.workers < 1:
            raise UserError(f"--workers must be at least 1 (got {self.workers}).")
        for name in ("duplicate_fraction", "out_of_order_fraction", "malformed_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise UserError(f"{name} must be between 0 and 1 (got {value}).")
        if not self.offers:
            raise UserError("The offer catalogue is empty.")
        for o in self.offers:
            if abs(o.offer_price * 100 - round(o.offer_price * 100)) > 1e-6:
                raise UserError(f"Offer {o.offer_type}@{o.offer_price}: prices must have at most 2 decimals.")
