"""Who each player is: deterministic ids, per-user random streams, country, device and signin.

Why everything derives from (seed, user index): a user gets the same ids and the same random
draws whatever the shard layout, so the files do not depend on the number of workers.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from itertools import accumulate

from offer_ai.sim.players import is_facebook_signin

_COUNTRIES: tuple[tuple[str, str, float], ...] = (
    ("US", "EN", 0.24), ("DE", "DE", 0.10), ("GB", "EN", 0.08), ("FR", "FR", 0.06),
    ("JP", "JA", 0.06), ("CA", "EN", 0.04), ("AU", "EN", 0.03), ("BR", "PT", 0.12),
    ("IN", "HI", 0.11), ("MX", "ES", 0.07), ("ID", "ID", 0.05), ("TR", "TR", 0.04),
)
_COUNTRY_CUM = list(accumulate(w for _, _, w in _COUNTRIES))
_DEVICES: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("Android", "phone", "Samsung", ("Galaxy S23", "Galaxy A54", "Galaxy S21")),
    ("Android", "phone", "Xiaomi", ("Redmi Note 12", "Mi 11")),
    ("Android", "phone", "Acer", ("Liquid Z6", "BlackBerry 10 Z30")),
    ("Android", "phone", "Google", ("Pixel 7", "Pixel 8")),
    ("Android", "tablet", "Samsung", ("Galaxy Tab S8",)),
    ("iOS", "phone", "Apple", ("iPhone 13", "iPhone 14", "iPhone 15")),
    ("iOS", "tablet", "Apple", ("iPad Air", "iPad 10")),
)
_OS_VERSIONS = {"Android": ("11", "12", "13", "14.1", "6.4.5"), "iOS": ("16.4.1", "17.2", "17.5.1")}
_PACKAGE_VERSIONS = ("1.0", "1.1", "1.2", "2.0")
_WORDS_A = ("Depict", "Silent", "Rapid", "Lucky", "Cosmic", "Quiet", "Bold", "Frozen", "Pixel", "Amber")
_WORDS_B = ("None", "Fox", "River", "Storm", "Otter", "Comet", "Maple", "Raven", "Tiger", "Echo")
SIGNIN_CHANGE_RATE = 0.01  #: P(a launch draws a new signin method); kept when it connects facebook
SIGNIN_DROP_RATE = 0.002  #: P(a launch keeps a new non-facebook signin): players rarely disconnect


def derive_seed(*parts: object) -> int:
    """A stable 128-bit seed from (seed, user index, stream): independent of shard layout."""
    text = ":".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=16).digest(), "big")


def uuid_like(*parts: object) -> str:
    """A UUID-shaped hash of `parts`: stable ids that look like the brief's."""
    h = hashlib.blake2b(":".join(str(p) for p in parts).encode(), digest_size=16).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def customer_identifier(seed: int, user_index: int) -> str:
    """The deterministic UUID-looking id of user `user_index` under `seed`."""
    return uuid_like("customer", seed, user_index)


_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_BASE36_TRIPLES: list[str] = []


def session_token(bits: int) -> str:
    """A random 'ey3je39-932u73'-shaped token from 64 random bits (base 36, three digits a step)."""
    table = _BASE36_TRIPLES
    if not table:
        table.extend(a + b + c for a in _BASE36 for b in _BASE36 for c in _BASE36)
    b0, r0 = divmod(bits, 46656)
    b1, r1 = divmod(b0, 46656)
    b2, r2 = divmod(b1, 46656)
    b3, r3 = divmod(b2, 46656)
    text = table[r0] + table[r1] + table[r2] + table[r3] + _BASE36[b3 % 36]
    return text[:7] + "-" + text[7:]


@dataclass(frozen=True)
class Identity:
    """A player's identity fields: constant, except the signin method, which may change later."""

    country: str
    language: str
    os: str
    os_version: str
    device_type: str
    device_make: str
    device_model: str
    device_id: str
    package_version: str
    handle: str  #: the social handle in profile-URL signins
    signin: str  #: at the first launch


def draw_identity(r: Callable[[], float], seed: int, index: int, spend: float) -> Identity:
    """Country by its weight, a device, a handle; big spenders connect facebook more often."""
    c = bisect.bisect_right(_COUNTRY_CUM, r() * _COUNTRY_CUM[-1])
    country, language, _ = _COUNTRIES[min(c, len(_COUNTRIES) - 1)]
    os_name, device_type, make, models = _DEVICES[int(r() * len(_DEVICES))]
    model = models[int(r() * len(models))]
    versions = _OS_VERSIONS[os_name]
    os_version = versions[int(r() * len(versions))]
    package_version = _PACKAGE_VERSIONS[int(r() * len(_PACKAGE_VERSIONS))]
    handle = f"{_WORDS_A[int(r() * 10)]}{_WORDS_B[int(r() * 10)]}.{1970 + int(r() * 40)}"
    facebook = r() < 1.0 / (1.0 + math.exp(0.8 - 0.6 * spend))
    return Identity(
        country=country,
        language=language,
        os=os_name,
        os_version=os_version,
        device_type=device_type,
        device_make=make,
        device_model=model,
        device_id=uuid_like("device", seed, index),
        package_version=package_version,
        handle=handle,
        signin=draw_signin(r, handle, facebook=facebook),
    )


def draw_signin(r: Callable[[], float], handle: str, facebook: bool) -> str:
    """The brief's signin shapes: 'fb', social profile URLs, 'email'."""
    u = r()
    if facebook:
        return "fb" if u < 0.5 else f"https://www.facebook.com/{handle}"
    if u < 0.5:
        return "email"
    if u < 0.8:
        return f"https://www.instagram.com/{handle}"
    return f"https://twitter.com/{handle}"


def signin_at_launch(r: Callable[[], float], handle: str, signin: str) -> str:
    """The signin method at a later app launch: mostly unchanged, sometimes facebook connected."""
    u = r()
    if u < SIGNIN_CHANGE_RATE:
        new = draw_signin(r, handle, facebook=not is_facebook_signin(signin))
        if is_facebook_signin(new) or u < SIGNIN_DROP_RATE:
            return new
    return signin
