"""The raw lines in the product brief's shapes, written from f-string templates.

Why templates and not a JSON encoder: formatting is most of the generator's work, and the brief's
shapes are fixed — values mostly as strings ("won": "1"), sometimes as JSON booleans, event times
mostly naive UTC, sometimes with an explicit offset. The pieces that depend only on the catalogue
or on the player are built once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from offer_ai.model.offers import Offer
from offer_ai.sim.clock import DAY, Clock
from offer_ai.sim.identity import Identity
from offer_ai.sim.players import SHOP_SKUS

OFFSET_TIME_FRACTION = 0.05  #: share of event_time strings with an explicit offset or 'Z'
BOOLEAN_JSON_FRACTION = 0.2  #: share of won / offer_purchased written as JSON booleans
_TZ_OFFSETS: tuple[tuple[int, str], ...] = (
    (0, "Z"), (0, "Z"), (3600, "+01:00"), (7200, "+02:00"), (19800, "+05:30"),
    (32400, "+09:00"), (-10800, "-03:00"), (-18000, "-05:00"), (-28800, "-08:00"),
)
#: offer_shown flags by [as JSON booleans * 2 + purchased]
OFFER_FLAGS = (
    ',"offer_purchased":"false","offer_dismissed":"true"',
    ',"offer_purchased":"true","offer_dismissed":"false"',
    ',"offer_purchased":false,"offer_dismissed":true',
    ',"offer_purchased":true,"offer_dismissed":false',
)
#: the won value by [as JSON boolean * 2 + won]
WON_VALUES = ('"0"', '"1"', "false", "true")


def cents_str(cents: int) -> str:
    """9.99 from 999: prices and amounts are written exactly, never through a float."""
    return f"{cents // 100}.{cents % 100:02d}"


class EventTimes:
    """event_time strings of one user: naive UTC, now and then with an offset (drawn from `r`).

    `stamp` is a closure over locals, not a method: it runs once per event.
    """

    def __init__(self, clock: Clock, r: Callable[[], float]) -> None:
        self.with_offset = 0  #: how many strings so far carry an explicit offset
        self.stamp = self._stamper(clock, r)

    def _stamper(self, clock: Clock, r: Callable[[], float]) -> Callable[[int], str]:
        t0, prefix, hms, n_offsets = clock.t0, clock.prefix, clock.hms, len(_TZ_OFFSETS)

        def stamp(t: int) -> str:
            """The event_time of epoch second t (one draw; two when it gets an offset)."""
            if r() < OFFSET_TIME_FRACTION:
                self.with_offset += 1
                shift, suffix = _TZ_OFFSETS[int(r() * n_offsets)]
                d, s = divmod(t + shift - t0, DAY)
                return prefix[d + 1] + hms[s] + suffix
            d, s = divmod(t - t0, DAY)
            return prefix[d + 1] + hms[s]

        return stamp


class CatalogueLines:
    """Line pieces that depend only on the offer catalogue (and the shop's SKUs)."""

    def __init__(self, catalogue: Sequence[Offer]) -> None:
        self.offer_cents = [round(o.offer_price * 100) for o in catalogue]
        self.propensity = 1.0 / len(catalogue)  #: the uniform logging policy's
        self.propensity_text = repr(self.propensity)
        #: offer_shown pieces per candidate: ',"offer_type":"x","offer_price":"9.99"'
        self.offer_parts = [
            f',"offer_type":"{o.offer_type}","offer_price":"{cents_str(c)}"'
            for o, c in zip(catalogue, self.offer_cents)
        ]
        self.offer_purchase_parts = [
            f',"sku":"offer-{o.offer_type}-{cents_str(c)}","txn_amount":"{cents_str(c)}",'
            f'"purchase_source":"offer"}}\n'
            for o, c in zip(catalogue, self.offer_cents)
        ]
        self.shop_parts = [
            f',"sku":"{sku}","txn_amount":"{cents_str(c)}","purchase_source":"shop"}}\n' for sku, c in SHOP_SKUS
        ]


def session_tail(customer_id: str, session_id: str) -> str:
    """What closes every event_time value: the user's and the session's ids."""
    return f'","customer_identifier":"{customer_id}","session_id":"{session_id}"'


def app_launched_template(identity: Identity) -> tuple[str, str]:
    """(head, middle) of the user's app_launched line; the signin method goes between them."""
    head = f'{{"country":"{identity.country}","language":"{identity.language}","signin_method":"'
    middle = (
        f'","package_name":"my_app","package_version":"{identity.package_version}","os":"{identity.os}",'
        f'"os_version":"{identity.os_version}","device_type":"{identity.device_type}",'
        f'"device_make":"{identity.device_make}","device_model":"{identity.device_model}",'
        f'"device_id":"{identity.device_id}","event_id":"app_launched","event_time":"'
    )
    return head, middle


# One function per event type: `stamp` is the event_time value, and `tail` (session_tail) closes
# it and adds the customer and session ids.


def game_start_line(stamp: str, tail: str, balance: int, level: int) -> str:
    return (
        f'{{"event_id":"game_start","event_time":"{stamp}{tail},'
        f'"currency_balance":"{balance}","level":"{level}"}}\n'
    )


def game_end_line(stamp: str, tail: str, balance: int, level: int, score: int, won: str) -> str:
    return (
        f'{{"event_id":"game_end","event_time":"{stamp}{tail},"currency_balance":"{balance}",'
        f'"level":"{level}","score":"{score}","badge":"{score // 2000}","won":{won}}}\n'
    )


def purchase_line(stamp: str, tail: str, balance: int, sku_part: str) -> str:
    return f'{{"event_id":"purchase","event_time":"{stamp}{tail},"currency_balance":"{balance}"{sku_part}'


def offer_shown_line(stamp: str, tail: str, balance: int, offer_part: str, flags: str, propensity: str) -> str:
    return (
        f'{{"event_id":"offer_shown","event_time":"{stamp}{tail},"currency_balance":"{balance}"'
        f'{offer_part}{flags},"offer_propensity":{propensity}}}\n'
    )
