"""The offer catalogue (conf/offers.yaml): the candidates a policy chooses from."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from offer_ai.errors import UserError


@dataclass(frozen=True, order=True)
class Offer:
    offer_type: str
    offer_price: float


def offer_key(offer: Offer) -> str:
    """'type@price' with two decimals: the candidate key used in truth records and metrics."""
    return f"{offer.offer_type}@{offer.offer_price:.2f}"


def parse_offer_key(key: str) -> Offer:
    offer_type, _, price = key.rpartition("@")
    return Offer(offer_type, float(price))


def load_offers(path: str | Path) -> list[Offer]:
    """Read and check the catalogue; a bad entry fails naming its position."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Offer catalogue {path} does not exist.")
    tree = yaml.safe_load(path.read_text()) or {}
    entries = tree.get("offers") if isinstance(tree, dict) else None
    if not isinstance(entries, list) or not entries:
        raise UserError(f"Offer catalogue {path} must have a non-empty list under 'offers'.")
    offers: list[Offer] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or set(entry) != {"offer_type", "offer_price"}:
            raise UserError(f"Offer catalogue {path}: offers[{i}] must have exactly offer_type and offer_price.")
        kind, price = entry["offer_type"], entry["offer_price"]
        if not isinstance(kind, str) or not kind:
            raise UserError(f"Offer catalogue {path}: offers[{i}].offer_type must be a non-empty string.")
        if isinstance(price, bool) or not isinstance(price, (int, float)) or not math.isfinite(price) or price <= 0:
            raise UserError(f"Offer catalogue {path}: offers[{i}].offer_price must be a positive number.")
        offers.append(Offer(kind, float(price)))
    if len(set(offers)) != len(offers):
        raise UserError(f"Offer catalogue {path} lists the same (offer_type, offer_price) twice.")
    return offers
