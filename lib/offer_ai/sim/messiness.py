"""Messiness: duplicate lines, late (out-of-order) lines and junk, counted exactly.

Why it is added on top of a clean stream: the valid events are the same whatever the messiness
options, so they stay the truth, and every extra is counted by the definitions a reader of the
files would use. Duplicates are the same object with another key order and spacing (a client
retry), some in the next day's folder; moved events arrive behind a later event of the same user,
some in the next day's folder; junk lines of named kinds (`MALFORMED_KINDS`) are derived from a
real event and never replace it. Each user's messiness has its own random stream.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable
from typing import Any

import orjson

from offer_ai.sim.clock import Clock, extend_by_day
from offer_ai.sim.identity import derive_seed
from offer_ai.sim.options import GeneratorOptions

MALFORMED_KINDS: tuple[str, ...] = (
    "invalid_json",
    "not_an_object",
    "missing_customer_identifier",
    "missing_event_id",
    "invalid_event_time",
    "invalid_won",
    "invalid_txn_amount",
    "invalid_offer_price",
    "invalid_offer_propensity",
)
#: Junk kinds that need a source event of one type (the others apply to any event).
_KIND_FOR_TYPE: dict[str, tuple[str, ...]] = {
    "game_end": ("invalid_won",),
    "offer_shown": ("invalid_offer_price", "invalid_offer_propensity"),
    "purchase": ("invalid_txn_amount",),
}
_UNIVERSAL_KINDS = MALFORMED_KINDS[:5]
_SPACINGS: tuple[tuple[str, str, str, str], ...] = (
    ("{", ", ", ": ", "}"),
    ("{ ", ", ", ": ", " }"),
    ("{", " , ", " : ", "}"),
    ("{", ",", ": ", "}"),
    ("{ ", ",  ", ":", "}"),
)
_BAD_TIMES = ("not-a-time", "2026-13-45T25:61:99", "17:53:57 last tuesday", "??")

#: Row kinds in the merged stream: (arrival, event index, kind, line); ties sort events first.
EVENT, JUNK, DUPLICATE = 0, 1, 2
Row = tuple[int, int, int, str]


# --------------------------------------------------------------------------------------------
# Lines
# --------------------------------------------------------------------------------------------


def respell(line: str, rng: random.Random) -> str:
    """The same JSON object with shuffled key order and different spacing (a client retry)."""
    items = list(orjson.loads(line).items())
    rng.shuffle(items)
    head, sep, colon, end = _SPACINGS[int(rng.random() * len(_SPACINGS))]
    body = sep.join(orjson.dumps(k).decode() + colon + orjson.dumps(v).decode() for k, v in items)
    return head + body + end + "\n"


def junk(line: str, rng: random.Random) -> tuple[str, str]:
    """A malformed extra line derived from a real one; returns (kind, text).

    Half the lines from a game_end / offer_shown / purchase get a kind specific to that type.
    """
    r = rng.random
    text = line.rstrip("\n")
    obj: dict[str, Any] = orjson.loads(text)
    specific = _KIND_FOR_TYPE.get(obj["event_id"])
    if specific and r() < 0.5:
        kind = specific[int(r() * len(specific))]
    else:
        kind = _UNIVERSAL_KINDS[int(r() * len(_UNIVERSAL_KINDS))]
    if kind == "invalid_json":
        bad = _not_json(text, obj, r)
    elif kind == "not_an_object":
        bad = orjson.dumps(list(obj.values())[:3]).decode() if r() < 0.5 else orjson.dumps(text).decode()
    else:
        _damage_field(obj, kind, r)
        bad = orjson.dumps(obj).decode()
    return kind, bad + "\n"


def _not_json(text: str, obj: dict[str, Any], r: Callable[[], float]) -> str:
    """Text that no JSON parser accepts, in the shapes seen from broken clients."""
    u = r()
    if u < 0.6:  # truncated in transit: a prefix of an object is never valid JSON
        return text[: max(20, int(len(text) * (0.3 + 0.6 * r())))]
    if u < 0.8:  # a Python dict repr, as in the brief's examples
        return str(obj)
    return "&".join(f"{k}={v}" for k, v in obj.items())  # form-encoded by a broken client


def _damage_field(obj: dict[str, Any], kind: str, r: Callable[[], float]) -> None:
    """Remove or spoil the one field that `kind` names, in place."""
    if kind == "missing_customer_identifier":
        del obj["customer_identifier"]
    elif kind == "missing_event_id":
        del obj["event_id"]
    elif kind == "invalid_event_time":
        obj["event_time"] = _BAD_TIMES[int(r() * len(_BAD_TIMES))]
    elif kind == "invalid_won":
        obj["won"] = "maybe" if r() < 0.5 else "n/a"
    elif kind == "invalid_txn_amount":
        obj["txn_amount"] = "-" + obj["txn_amount"] if r() < 0.5 else "abc"
    elif kind == "invalid_offer_price":
        obj["offer_price"] = "NaN" if r() < 0.5 else "-" + obj["offer_price"]
    else:  # invalid_offer_propensity
        obj["offer_propensity"] = 0 if r() < 0.5 else 1.5


# --------------------------------------------------------------------------------------------
# Arrival times
# --------------------------------------------------------------------------------------------


def late_arrival(anchor: int, t: int, r: Callable[[], float], clock: Clock) -> int:
    """Arrival time of an event moved behind a strictly later one (`anchor`); 1 in 4 next day."""
    if r() < 0.25:
        candidate = max(anchor, clock.next_midnight(t)) + 1 + int(r() * 4 * 3600)
        if candidate < clock.end - 600:  # room left for a duplicate's short retry
            return candidate
    return anchor + 1 + int(r() * 600)


def retry_arrival(arrival: int, r: Callable[[], float], clock: Clock) -> int:
    """Arrival of a duplicate: seconds to minutes after the original, 1 in 5 the next day."""
    if r() < 0.2:
        candidate = clock.next_midnight(arrival) + 1 + int(r() * 6 * 3600)
        if candidate < clock.end:
            return candidate
    return arrival + 1 + int(r() * 120)


def sample_indices(n: int, fraction: float, r: Callable[[], float]) -> list[int]:
    """Each index of range(n) independently with P = fraction, by geometric skips (few draws)."""
    if fraction <= 0.0 or n == 0:
        return []
    if fraction >= 1.0:
        return list(range(n))
    log_q = math.log(1.0 - fraction)
    picked: list[int] = []
    j = int(math.log(1.0 - r()) / log_q)
    while j < n:
        picked.append(j)
        j += 1 + int(math.log(1.0 - r()) / log_q)
    return picked


def _arrivals(times: list[int], moved: list[int], r: Callable[[], float], clock: Clock) -> list[int]:
    """Arrival time of every event: its own time, or later for a moved one.

    A moved event is anchored to the next unmoved event after it (scanning backwards), so it
    arrives after a strictly later event and is out of order in the files by construction.
    """
    if not moved:
        return times
    arrival = list(times)
    anchor: int | None = None
    marked = set(moved)
    for j in range(len(times) - 1, -1, -1):
        if j in marked and anchor is not None:
            arrival[j] = late_arrival(anchor, times[j], r, clock)
        else:
            anchor = times[j]
    return arrival


# --------------------------------------------------------------------------------------------
# One user's lines, messed up
# --------------------------------------------------------------------------------------------


def write_messy(
    times: list[int],
    lines: list[str],
    options: GeneratorOptions,
    clock: Clock,
    index: int,
    buffers: list[list[str]],
    counts: dict[str, Any],
) -> int:
    """Append one user's lines, messed up, to the day buffers in arrival order; return lines written.

    A moved event arrives after a later, unmoved event of the same user (its anchor), so every
    moved event is out of order in the files and no unmoved one is: the count is exact.
    """
    rng = random.Random(derive_seed(options.seed, index, "mess"))
    r = rng.random
    n = len(times)
    moved = sample_indices(n, options.out_of_order_fraction, r)
    arrival = _arrivals(times, moved, r, clock)
    extra: list[Row] = []
    for j in sample_indices(n, options.duplicate_fraction, r):
        extra.append((retry_arrival(arrival[j], r, clock), j, DUPLICATE, respell(lines[j], rng)))
    kinds = counts["malformed_by_kind"]
    for j in sample_indices(n, options.malformed_fraction, r):
        kind, text = junk(lines[j], rng)
        kinds[kind] += 1
        extra.append((arrival[j], j, JUNK, text))
    moved_rows = [(arrival[j], j, EVENT, lines[j]) for j in moved if arrival[j] != times[j]]
    _merge_by_arrival(times, lines, sorted(moved_rows + extra), {row[1] for row in moved_rows}, clock, buffers, counts)
    return n + len(extra)


def _merge_by_arrival(
    times: list[int],
    lines: list[str],
    displaced: list[Row],
    moved: set[int],
    clock: Clock,
    buffers: list[list[str]],
    counts: dict[str, Any],
) -> None:
    """Merge the in-order events with the displaced rows by (arrival, event index, kind) into
    the day buffers, and count exactly what a reader of the files would see."""
    if moved:
        keep = [j for j in range(len(times)) if j not in moved]
        order_t, order_lines = [times[j] for j in keep], [lines[j] for j in keep]
    else:
        keep, order_t, order_lines = list(range(len(times))), times, lines
    t0 = clock.t0
    running_max = -1
    out_of_order = late = duplicates = duplicates_late = 0
    done = 0
    for when, k, kind, line in displaced:
        pos = bisect.bisect_left(order_t, when, done)
        if pos < len(order_t) and order_t[pos] == when and (keep[pos] < k or (keep[pos] == k and kind > EVENT)):
            pos += 1
        extend_by_day(buffers, t0, order_t, order_lines, done, pos)
        if pos > done:
            running_max = max(running_max, order_t[pos - 1])
        done = pos
        day = clock.day(when)
        buffers[day].append(line)
        t = times[k]
        if kind == EVENT:
            if t < running_max:
                out_of_order += 1
            running_max = max(running_max, t)
            late += day > clock.day(t)
        elif kind == DUPLICATE:
            duplicates += 1
            duplicates_late += day > clock.day(t)
    extend_by_day(buffers, t0, order_t, order_lines, done, len(order_t))
    counts["out_of_order"] += out_of_order
    counts["late_arrivals"] += late
    counts["duplicates"] += duplicates
    counts["duplicates_in_later_folder"] += duplicates_late
