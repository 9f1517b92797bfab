"""The synthetic generator: shapes, determinism, exact messiness counts and a truth that holds.

Everything here reads the written files back and recomputes what it checks independently
(DESIGN §4 rules re-implemented in plain Python), so a test fails when the generator lies.
"""

from __future__ import annotations

import datetime as dt
import functools
import gzip
import hashlib
import itertools
import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from offer_ai.errors import UserError
from offer_ai.model.offers import Offer, load_offers, offer_key, parse_offer_key
from offer_ai.sim import (
    MALFORMED_KINDS,
    DecisionContext,
    GeneratorOptions,
    ObservableFeatures,
    UserTraits,
    best_offer,
    context_from_truth,
    customer_identifier,
    generate,
    load_truth,
    logged_value,
    oracle_choices,
    oracle_value,
    policy_value,
    true_expected_revenue,
    true_offer_take_probability,
    uniform_value,
)

REPO = Path(__file__).resolve().parents[1]
OFFERS = tuple(load_offers(REPO / "conf" / "offers.yaml"))
START = dt.date(2026, 1, 1)
WEEK = dt.timedelta(days=7)
UTC = dt.UTC


def _options(out: Path, **changes: Any) -> GeneratorOptions:
    base: dict[str, Any] = {"out": str(out), "offers": OFFERS, "users": 150, "days": 14, "start_date": START, "seed": 7}
    base.update(changes)
    return GeneratorOptions(**base)


@pytest.fixture(scope="module")
def messy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("messy")
    summary = generate(
        _options(out, duplicate_fraction=0.03, out_of_order_fraction=0.03, malformed_fraction=0.03)
    )
    return out, summary


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("clean")
    return out, generate(_options(out))


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """Enough decisions (~7k) for the statistical checks."""
    out = tmp_path_factory.mktemp("large")
    return out, generate(_options(out, users=600, days=28, seed=11))


# --------------------------------------------------------------------------------------------
# Independent readers
# --------------------------------------------------------------------------------------------


def _files(out: Path) -> list[Path]:
    return sorted(p for p in out.glob("date=*/part-*") if p.is_file())


def read_lines(out: Path) -> Iterator[tuple[str, str, str]]:
    """(folder date, part name, line) in write order: date folders ascending, lines in order."""
    for path in _files(out):
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as handle:
            for line in handle:
                yield path.parent.name[len("date=") :], path.name.split(".")[0], line.rstrip("\n")


def parse_time(text: str) -> dt.datetime:
    """ISO-8601; naive means UTC; offsets converted to UTC (DESIGN §4)."""
    value = dt.datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _amount_ok(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False
    return math.isfinite(number) and number >= 0


def check(line: str) -> tuple[str | None, Any]:
    """(malformed kind by DESIGN §4's rules or None for a valid event, the parsed value)."""
    try:
        obj = json.loads(line)
    except ValueError:
        return "invalid_json", None
    if not isinstance(obj, dict):
        return "not_an_object", obj
    if "customer_identifier" not in obj:
        return "missing_customer_identifier", obj
    if "event_id" not in obj:
        return "missing_event_id", obj
    try:
        obj["_ts"] = parse_time(obj["event_time"])
    except (KeyError, TypeError, ValueError):
        return "invalid_event_time", obj
    if "won" in obj and not (obj["won"] in ("1", "0", "true", "false") or isinstance(obj["won"], bool)):
        return "invalid_won", obj
    if "txn_amount" in obj and not _amount_ok(obj["txn_amount"]):
        return "invalid_txn_amount", obj
    if "offer_price" in obj and not _amount_ok(obj["offer_price"]):
        return "invalid_offer_price", obj
    if "offer_propensity" in obj:
        p = obj["offer_propensity"]
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 1:
            return "invalid_offer_propensity", obj
    return None, obj


def classify(line: str) -> str | None:
    return check(line)[0]


def canonical(obj: dict[str, Any]) -> str:
    """Key order and spacing ignored (DESIGN §4: the same object sent twice is one event)."""
    return json.dumps({k: v for k, v in obj.items() if k != "_ts"}, sort_keys=True, separators=(",", ":"))


def as_bool(value: Any) -> bool:
    return value is True or value in ("1", "true")


@functools.lru_cache(maxsize=8)
def _valid_events(out: Path, event_type: str | None) -> tuple[dict[str, Any], ...]:
    seen: set[str] = set()
    events = []
    for _, _, line in read_lines(out):
        if event_type is not None and f'"{event_type}"' not in line:
            continue  # a cheap pre-filter; the parsed event_id decides
        kind, obj = check(line)
        if kind is not None or (event_type is not None and obj["event_id"] != event_type):
            continue
        key = canonical(obj)
        if key not in seen:
            seen.add(key)
            events.append(obj)
    return tuple(events)


def valid_events(out: Path, event_type: str | None = None) -> list[dict[str, Any]]:
    """First occurrence of every valid event (optionally of one type), with `_ts` (UTC) added.

    Fresh dict copies of a cached parse, so a test may change them.
    """
    return [dict(e) for e in _valid_events(out, event_type)]


def truth_records(out: Path) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for path in sorted((out / "_truth").glob("decisions-*.jsonl")):
        records.extend(json.loads(line) for line in path.read_text().splitlines())
    return records


def digest(out: Path) -> dict[str, str]:
    return {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file()
    }


# --------------------------------------------------------------------------------------------
# Determinism and layout
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("use_gzip, workers", [(False, 1), (True, 2)])
def test_same_seed_same_bytes_and_another_seed_differs(tmp_path: Path, use_gzip: bool, workers: int) -> None:
    mess = {"duplicate_fraction": 0.02, "out_of_order_fraction": 0.02, "malformed_fraction": 0.02}
    kwargs = {"users": 40, "days": 6, "gzip": use_gzip, "workers": workers, **mess}
    generate(_options(tmp_path / "a", **kwargs))
    generate(_options(tmp_path / "b", **kwargs))
    generate(_options(tmp_path / "c", seed=8, **kwargs))
    a, b, c = digest(tmp_path / "a"), digest(tmp_path / "b"), digest(tmp_path / "c")
    a.pop("_generator.json"), b.pop("_generator.json"), c.pop("_generator.json")  # holds the out path
    assert len(a) > 6 and a == b
    shared = set(a) & set(c)
    assert shared and all(a[name] != c[name] for name in shared)


def test_content_does_not_depend_on_the_number_of_workers(tmp_path: Path) -> None:
    one = generate(_options(tmp_path / "one", users=30, days=5, duplicate_fraction=0.05))
    three = generate(_options(tmp_path / "three", users=30, days=5, duplicate_fraction=0.05, workers=3))
    assert sorted(line for *_, line in read_lines(tmp_path / "one")) == sorted(
        line for *_, line in read_lines(tmp_path / "three")
    )
    assert {p.name for p in _files(tmp_path / "three")} == {"part-00000.jsonl", "part-00001.jsonl", "part-00002.jsonl"}
    truth_one, truth_three = truth_records(tmp_path / "one"), truth_records(tmp_path / "three")
    assert sorted(map(canonical, truth_one)) == sorted(map(canonical, truth_three))
    layout = ("out", "workers", "files")
    assert {k: v for k, v in one.items() if k not in layout} == {k: v for k, v in three.items() if k not in layout}


def test_rerun_replaces_the_previous_generation(tmp_path: Path) -> None:
    generate(_options(tmp_path, users=20, days=3, workers=2, gzip=True))
    summary = generate(_options(tmp_path, users=20, days=3))
    assert {p.name for p in _files(tmp_path)} == {"part-00000.jsonl"}
    assert [p.name for p in (tmp_path / "_truth").iterdir()] == ["decisions-00000.jsonl"]
    assert sum(1 for _ in read_lines(tmp_path)) == summary["lines"]


def test_folder_is_the_utc_day_of_each_event_when_nothing_arrives_late(clean: tuple[Path, dict]) -> None:
    out, summary = clean
    folders = {p.name for p in out.iterdir() if p.name.startswith("date=")}
    assert folders <= {f"date={START + dt.timedelta(days=d)}" for d in range(14)}
    n = 0
    for folder, _, line in read_lines(out):
        assert parse_time(json.loads(line)["event_time"]).date().isoformat() == folder
        n += 1
    assert n == summary["lines"] == summary["events"]


def test_valid_event_stream_does_not_depend_on_messiness(clean: tuple[Path, dict], messy: tuple[Path, dict]) -> None:
    clean_events = {canonical(e) for e in valid_events(clean[0])}
    messy_events = {canonical(e) for e in valid_events(messy[0])}
    assert clean_events == messy_events
    assert len(clean_events) == clean[1]["events"] == messy[1]["events"]
    assert sorted(map(canonical, truth_records(clean[0]))) == sorted(map(canonical, truth_records(messy[0])))


# --------------------------------------------------------------------------------------------
# Shapes
# --------------------------------------------------------------------------------------------

COMMON = {"event_id", "event_time", "customer_identifier", "session_id"}
STRING_FIELDS = {
    "app_launched": COMMON
    | {"country", "language", "signin_method", "package_name", "package_version", "os", "os_version",
       "device_type", "device_make", "device_model", "device_id"},
    "game_start": COMMON | {"currency_balance", "level"},
    "game_end": COMMON | {"currency_balance", "level", "score", "badge"},
    "offer_shown": COMMON | {"currency_balance", "offer_type", "offer_price"},
    "purchase": COMMON | {"currency_balance", "sku", "txn_amount", "purchase_source"},
}
OTHER_FIELDS = {
    "app_launched": set(),
    "game_start": set(),
    "game_end": {"won"},
    "offer_shown": {"offer_purchased", "offer_dismissed", "offer_propensity"},
    "purchase": set(),
}
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)?$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
SESSION = re.compile(r"^[0-9a-z]{7}-[0-9a-z]{6}$")
PRICE = re.compile(r"^\d+\.\d\d$")
SIGNIN = re.compile(r"^(fb|email|https://www\.facebook\.com/\S+|https://www\.instagram\.com/\S+|https://twitter\.com/\S+)$")


def test_every_event_has_exactly_the_brief_shape(messy: tuple[Path, dict]) -> None:
    events = valid_events(messy[0])
    by_type = Counter(e["event_id"] for e in events)
    assert by_type == Counter(messy[1]["events_by_type"])
    assert set(by_type) == set(STRING_FIELDS)
    won_values: Counter[str] = Counter()
    flag_styles: Counter[str] = Counter()
    signins: Counter[str] = Counter()
    for e in events:
        kind = e.pop("event_id")
        e.pop("_ts")
        assert set(e) | {"event_id"} == STRING_FIELDS[kind] | OTHER_FIELDS[kind], kind
        for name in STRING_FIELDS[kind] - {"event_id"}:
            assert isinstance(e[name], str), (kind, name, e[name])
        assert TIME.match(e["event_time"]) and UUID.match(e["customer_identifier"]) and SESSION.match(e["session_id"])
        if kind == "app_launched":
            assert SIGNIN.match(e["signin_method"]) and UUID.match(e["device_id"])
            signins[e["signin_method"].split("/")[2] if "/" in e["signin_method"] else e["signin_method"]] += 1
        if kind == "game_end":
            assert e["won"] in ("1", "0") or isinstance(e["won"], bool)
            won_values[repr(e["won"])] += 1
            for name in ("currency_balance", "level", "score", "badge"):
                assert e[name].isdigit()
        if kind == "offer_shown":
            assert PRICE.match(e["offer_price"])
            assert type(e["offer_propensity"]) is float
            assert type(e["offer_purchased"]) is type(e["offer_dismissed"])
            assert e["offer_purchased"] in ("true", "false") or isinstance(e["offer_purchased"], bool)
            assert as_bool(e["offer_purchased"]) != as_bool(e["offer_dismissed"])
            flag_styles[type(e["offer_purchased"]).__name__] += 1
        if kind == "purchase":
            assert PRICE.match(e["txn_amount"]) and e["purchase_source"] in ("offer", "shop")
    assert set(won_values) == {"'1'", "'0'", "True", "False"}
    assert set(flag_styles) == {"str", "bool"}
    assert {"fb", "email", "www.facebook.com", "www.instagram.com", "twitter.com"} <= set(signins)


def test_a_few_event_times_carry_an_offset_for_the_same_instant(messy: tuple[Path, dict]) -> None:
    events = valid_events(messy[0])
    with_offset = [e for e in events if len(e["event_time"]) > 19]
    assert len(with_offset) == messy[1]["event_times_with_offset"]
    assert 0.03 < len(with_offset) / len(events) < 0.07
    assert {e["event_time"][19:] for e in with_offset} >= {"Z", "+02:00", "-05:00", "+05:30"}
    # the same instant: each user's events stay strictly increasing in UTC
    by_user = defaultdict(list)
    for e in events:
        by_user[e["customer_identifier"]].append(e["_ts"])
    assert all(len(set(ts)) == len(ts) for ts in by_user.values())


def test_an_offer_purchase_is_a_purchase_event_seconds_later(messy: tuple[Path, dict]) -> None:
    events = sorted(valid_events(messy[0]), key=lambda e: (e["customer_identifier"], e["_ts"]))
    bought = offer_purchases = 0
    for i, e in enumerate(events):
        if e["event_id"] == "offer_shown" and as_bool(e["offer_purchased"]):
            bought += 1
            nxt = events[i + 1]
            assert nxt["event_id"] == "purchase" and nxt["purchase_source"] == "offer"
            assert nxt["session_id"] == e["session_id"] and nxt["txn_amount"] == e["offer_price"]
            assert 1 <= (nxt["_ts"] - e["_ts"]).total_seconds() <= 10
        if e["event_id"] == "purchase" and e["purchase_source"] == "offer":
            offer_purchases += 1
    assert bought == offer_purchases == messy[1]["offer_purchases"] > 20


def test_sessions_belong_to_one_user_and_some_cross_midnight(clean: tuple[Path, dict]) -> None:
    owner: dict[str, set[str]] = defaultdict(set)
    span: dict[str, list[dt.datetime]] = defaultdict(list)
    for e in valid_events(clean[0]):
        owner[e["session_id"]].add(e["customer_identifier"])
        span[e["session_id"]].append(e["_ts"])
    assert all(len(users) == 1 for users in owner.values())
    crossing = sum(1 for ts in span.values() if min(ts).date() != max(ts).date())
    assert len(span) == clean[1]["sessions"]
    assert crossing == clean[1]["sessions_crossing_midnight"] > 0


def test_identity_changes_are_later_app_launches_with_another_signin(messy: tuple[Path, dict]) -> None:
    launches: dict[str, list[tuple[dt.datetime, str]]] = defaultdict(list)
    for e in valid_events(messy[0]):
        if e["event_id"] == "app_launched":
            launches[e["customer_identifier"]].append((e["_ts"], e["signin_method"]))
    changes = 0
    for rows in launches.values():
        methods = [m for _, m in sorted(rows)]
        changes += sum(1 for a, b in itertools.pairwise(methods) if a != b)
    assert changes == messy[1]["identity_changes"] > 0


def test_customer_identifier_is_deterministic_per_seed_and_user() -> None:
    assert customer_identifier(7, 3) == customer_identifier(7, 3)
    assert len({customer_identifier(7, i) for i in range(1000)}) == 1000
    assert customer_identifier(7, 3) != customer_identifier(8, 3)


# --------------------------------------------------------------------------------------------
# Messiness, counted exactly
# --------------------------------------------------------------------------------------------


def count_messiness(out: Path) -> dict[str, Any]:
    """The summary's messiness numbers, counted from the files by their definitions.

    duplicate: a valid line whose object was seen before; out of order: a first occurrence
    written after a later event of the same user; late / in a later folder: the folder's date
    is after the event's UTC date.
    """
    kinds: Counter[str] = Counter()
    seen: set[str] = set()
    latest: dict[str, dt.datetime] = {}
    counts = dict.fromkeys(
        ("lines", "events", "duplicates", "duplicates_in_later_folder", "out_of_order", "late_arrivals"), 0
    )
    for folder, _, line in read_lines(out):
        counts["lines"] += 1
        kind, obj = check(line)
        if kind is not None:
            kinds[kind] += 1
            continue
        ts, key = obj["_ts"], canonical(obj)
        if key in seen:
            counts["duplicates"] += 1
            counts["duplicates_in_later_folder"] += folder > ts.date().isoformat()
            continue
        seen.add(key)
        counts["events"] += 1
        user = obj["customer_identifier"]
        if user in latest and ts < latest[user]:
            counts["out_of_order"] += 1
        latest[user] = max(ts, latest.get(user, ts))
        counts["late_arrivals"] += folder > ts.date().isoformat()
    counts["malformed_by_kind"] = {k: kinds[k] for k in MALFORMED_KINDS}
    counts["malformed"] = sum(kinds.values())
    return counts


def test_messiness_counts_in_the_summary_equal_what_is_in_the_files(messy: tuple[Path, dict]) -> None:
    out, summary = messy
    counted = count_messiness(out)
    assert counted == {k: summary[k] for k in counted}
    assert summary["lines"] == summary["events"] + summary["duplicates"] + summary["malformed"]
    assert all(n > 0 for n in summary["malformed_by_kind"].values())  # every kind occurs
    assert summary["duplicates_in_later_folder"] > 0
    assert 0 < summary["late_arrivals"] < summary["out_of_order"]
    for name in ("duplicates", "out_of_order", "malformed"):
        assert 0.02 < summary[name] / summary["events"] < 0.04, name


@pytest.mark.parametrize("days, fraction", [(1, 0.5), (2, 1.0)])
def test_extreme_messiness_stays_exact_and_inside_the_range(tmp_path: Path, days: int, fraction: float) -> None:
    mess = {"duplicate_fraction": fraction, "out_of_order_fraction": fraction, "malformed_fraction": fraction}
    summary = generate(_options(tmp_path, users=40, days=days, **mess))
    counted = count_messiness(tmp_path)
    assert counted == {k: summary[k] for k in counted}
    assert summary["events"] > 100
    assert {p.name for p in tmp_path.glob("date=*")} <= {f"date={START + dt.timedelta(days=d)}" for d in range(days)}


def test_duplicate_lines_differ_in_text_but_not_in_object(messy: tuple[Path, dict]) -> None:
    texts: dict[str, list[str]] = defaultdict(list)
    for _, _, line in read_lines(messy[0]):
        if classify(line) is None:
            texts[canonical(json.loads(line))].append(line)
    pairs = [t for t in texts.values() if len(t) > 1]
    assert len(pairs) == messy[1]["duplicates"]
    assert all(len(t) == 2 and t[0] != t[1] for t in pairs)
    assert sum(1 for t in pairs if list(json.loads(t[0])) != list(json.loads(t[1]))) > len(pairs) / 2  # key order


# --------------------------------------------------------------------------------------------
# The logging policy
# --------------------------------------------------------------------------------------------


def test_logged_propensity_is_one_over_k_and_shown_offers_are_uniform(large: tuple[Path, dict]) -> None:
    shown: Counter[tuple[str, str]] = Counter()
    sessions_with_offer: set[str] = set()
    for e in valid_events(large[0], "offer_shown"):
        if e["event_id"] == "offer_shown":
            assert e["offer_propensity"] == 1 / len(OFFERS)
            shown[(e["offer_type"], e["offer_price"])] += 1
            sessions_with_offer.add(e["session_id"])
    assert set(shown) == {(o.offer_type, f"{o.offer_price:.2f}") for o in OFFERS}
    n = sum(shown.values())
    expected = n / len(OFFERS)
    chi2 = sum((c - expected) ** 2 / expected for c in shown.values())
    assert chi2 < 24.32, f"chi-square {chi2:.1f} over {len(OFFERS) - 1} df (p < 0.001)"
    share = len(sessions_with_offer) / large[1]["sessions"]
    assert 0.3 <= share <= 0.5
    assert n > len(sessions_with_offer)  # rarely two in one session


# --------------------------------------------------------------------------------------------
# The truth
# --------------------------------------------------------------------------------------------


def recompute_features(events: list[dict[str, Any]]) -> dict[tuple[str, str, dt.datetime], dict[str, Any]]:
    """DESIGN §4, written again from scratch: features and label at every offer_shown."""
    by_user: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        by_user[e["customer_identifier"]].append(e)
    result = {}
    for user, evs in by_user.items():
        evs.sort(key=lambda e: e["_ts"])
        sessions: dict[str, dict[str, Any]] = {}
        for e in evs:
            s = sessions.setdefault(e["session_id"], {"start": e["_ts"], "games": 0, "wins": 0, "purchase": 0.0})
            s["start"] = min(s["start"], e["_ts"])
            if e["event_id"] == "game_start":
                s["games"] += 1
            elif e["event_id"] == "game_end" and as_bool(e["won"]):
                s["wins"] += 1
            elif e["event_id"] == "purchase":
                s["purchase"] += float(e["txn_amount"])
        purchases = [(e["_ts"], float(e["txn_amount"])) for e in evs if e["event_id"] == "purchase"]
        launches = [e for e in evs if e["event_id"] == "app_launched"]
        for e in evs:
            if e["event_id"] != "offer_shown":
                continue
            start = sessions[e["session_id"]]["start"]
            before = [s for s in sessions.values() if s["start"] < start]
            last = max(before, key=lambda s: s["start"]) if before else None
            identity = [a for a in launches if a["_ts"] <= e["_ts"]][-1]
            signin = identity["signin_method"]
            result[(user, e["session_id"], e["_ts"])] = {
                "country": identity["country"],
                "facebook_connected": signin == "fb" or "facebook.com/" in signin,
                "prev_week_purchase_amount": sum(s["purchase"] for s in before if s["start"] >= start - WEEK),
                "last_session_games_played": last["games"] if last else None,
                "last_session_win_ratio": last["wins"] / last["games"] if last and last["games"] else None,
                "next_week": sum(a for t, a in purchases if e["_ts"] <= t < e["_ts"] + WEEK),
                "purchased": as_bool(e["offer_purchased"]),
                "offer": (e["offer_type"], float(e["offer_price"])),
            }
    return result


def test_truth_features_equal_an_independent_recomputation_from_the_events(messy: tuple[Path, dict]) -> None:
    out, _ = messy
    expected = recompute_features(valid_events(out))
    records = truth_records(out)
    assert len(records) == len(expected) > 200
    kinds: Counter[str] = Counter()
    for r in records:
        mine = expected[(r["user_id"], r["session_id"], parse_time(r["decision_time"]))]
        f = r["features"]
        assert f["country"] == mine["country"]
        assert f["facebook_connected"] == mine["facebook_connected"]
        assert f["prev_week_purchase_amount"] == pytest.approx(mine["prev_week_purchase_amount"], abs=1e-6)
        assert f["last_session_games_played"] == mine["last_session_games_played"]
        assert f["last_session_win_ratio"] == pytest.approx(mine["last_session_win_ratio"], abs=1e-12)
        assert r["realised_next_week_purchase_amount"] == pytest.approx(mine["next_week"], abs=1e-6)
        assert r["offer_purchased"] == mine["purchased"]
        assert (r["offer_type"], r["offer_price"]) == mine["offer"]
        kinds["no_last_session"] += f["last_session_games_played"] is None
        kinds["no_games_last_session"] += f["last_session_games_played"] == 0
        kinds["prev_week_zero"] += f["prev_week_purchase_amount"] == 0
        kinds["prev_week_positive"] += f["prev_week_purchase_amount"] > 0
        kinds["facebook"] += f["facebook_connected"]
    cases = ("no_last_session", "no_games_last_session", "prev_week_zero", "prev_week_positive", "facebook")
    assert all(kinds[k] > 0 for k in cases), kinds


def test_empirical_take_rate_matches_the_true_take_probability(large: tuple[Path, dict]) -> None:
    truth = load_truth(large[0])
    purchased = {
        (e["customer_identifier"], e["session_id"], e["_ts"]): as_bool(e["offer_purchased"])
        for e in valid_events(large[0], "offer_shown")
    }
    truth["bought"] = [
        purchased[(u, s, t.to_pydatetime())] for u, s, t in zip(truth.user_id, truth.session_id, truth.decision_time)
    ]
    assert len(truth) > 5000
    truth["bin"] = truth["take_probability"].rank(pct=True).mul(5).clip(upper=4.999).astype(int)
    for _, group in [("all", truth), *truth.groupby("bin")]:
        p = group["take_probability"]
        sigma = math.sqrt((p * (1 - p)).sum()) / len(group)
        assert abs(group["bought"].mean() - p.mean()) < 4 * sigma, (len(group), group["bought"].mean(), p.mean())
    assert truth["take_probability"].min() < 0.02 and truth["take_probability"].max() > 0.4


def test_truth_api_reproduces_the_records(messy: tuple[Path, dict]) -> None:
    truth = load_truth(messy[0])
    for _, row in truth.head(300).iterrows():
        context = context_from_truth(row)
        for key, value in row["expected_revenue"].items():
            offer = parse_offer_key(key)
            assert true_expected_revenue(context, offer) == pytest.approx(value, rel=1e-12)
            assert true_offer_take_probability(context, offer) == pytest.approx(row["take_probabilities"][key], rel=1e-12)
        assert row["take_probability"] == row["take_probabilities"][row["offer_key"]]
        assert offer_key(best_offer(context)) == max(row["expected_revenue"], key=row["expected_revenue"].get)
        other = row["expected_revenue"][row["offer_key"]] - row["take_probability"] * row["offer_price"]
        assert other == pytest.approx(row["expected_other_revenue"], abs=1e-9)


def test_take_probability_responds_to_observable_features_as_designed() -> None:
    traits = UserTraits(1.0, 3.0, 0.5, 0.0, 0.01, 1.0, 0.5, {})
    poor = ObservableFeatures("IN", False, 0.0, None, None)
    rich = ObservableFeatures("US", True, 60.0, 8, 0.5)
    cheap, vip = Offer("starter_pack", 2.99), Offer("vip_pass", 49.99)
    at = lambda f: DecisionContext(traits, f, OFFERS)
    assert true_offer_take_probability(at(poor), cheap) > true_offer_take_probability(at(rich), cheap)
    assert true_offer_take_probability(at(rich), vip) > 10 * true_offer_take_probability(at(poor), vip)
    assert best_offer(at(poor)).offer_price < 5 and best_offer(at(rich)) == vip


def test_the_argmax_of_truth_beats_uniform_and_observables_recover_most_of_it(large: tuple[Path, dict]) -> None:
    truth = load_truth(large[0])
    uniform, oracle, logged = uniform_value(truth), oracle_value(truth), logged_value(truth)
    ratio = oracle / uniform
    offer_terms = [{k: p * parse_offer_key(k).offer_price for k, p in tp.items()} for tp in truth["take_probabilities"]]
    offer_ratio = sum(max(t.values()) for t in offer_terms) / sum(sum(t.values()) / len(t) for t in offer_terms)
    print(f"oracle / uniform expected revenue: {ratio:.3f} (offer term alone: {offer_ratio:.2f}x)")
    assert ratio > 1.15 and offer_ratio > 2.5
    assert policy_value(truth, oracle_choices(truth)) == pytest.approx(oracle)
    assert logged == pytest.approx(uniform, rel=0.05)  # the shown offers are a uniform draw
    # the best offer differs between users
    choices = Counter(oracle_choices(truth))
    assert len(choices) >= 5 and max(choices.values()) < 0.6 * len(truth)
    # learnable: deciding on observable features (hidden traits at their means) gets most of the gain
    typical = UserTraits(1.0, 3.0, 0.5, 0.0, 0.01, 1.0, 0.5, {})
    observable = []
    for _, row in truth.iterrows():
        context = context_from_truth(row)
        observable.append(best_offer(DecisionContext(typical, context.features, context.catalogue)))
    recovered = (policy_value(truth, observable) - uniform) / (oracle - uniform)
    print(f"observable-feature policy recovers {recovered:.0%} of the oracle's gain over uniform")
    assert recovered > 0.8


def test_expected_revenue_is_close_to_the_realised_label(large: tuple[Path, dict]) -> None:
    """The later-sessions term is an approximation; on average it must still be near the data."""
    truth = load_truth(large[0])
    complete = truth[truth["window_inside_range"]]
    shown = [er[k] for er, k in zip(complete["expected_revenue"], complete["offer_key"])]
    realised = complete["realised_next_week_purchase_amount"].mean()
    assert sum(shown) / len(shown) == pytest.approx(realised, rel=0.2)


def test_load_truth_columns_and_flags(messy: tuple[Path, dict]) -> None:
    truth = load_truth(messy[0])
    for column in ("user_id", "session_id", "decision_time", "offer_type", "offer_price", "offer_propensity",
                   "country", "facebook_connected", "prev_week_purchase_amount", "last_session_games_played",
                   "last_session_win_ratio", "expected_revenue", "hidden_spend", "first_in_day"):
        assert column in truth.columns
    assert str(truth["decision_time"].dt.tz) == "UTC"
    assert len(truth) == messy[1]["decisions"]
    assert set(truth["expected_revenue"].iloc[0]) == {offer_key(o) for o in OFFERS}
    firsts = truth[truth["first_in_day"]]
    days = firsts["decision_time"].dt.date
    assert not pd_duplicated(firsts["user_id"], days)
    assert (truth["first_in_day"] <= truth["first_in_session"]).all()  # anchors are a session's first offer
    assert truth["first_in_session"].sum() == truth["session_id"].nunique()


def pd_duplicated(users: Any, days: Any) -> bool:
    pairs = list(zip(users, days))
    return len(pairs) != len(set(pairs))


# --------------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"users": 0}, "--users must be at least 1"),
        ({"days": 0}, "--days must be at least 1"),
        ({"workers": 0}, "--workers must be at least 1"),
        ({"duplicate_fraction": 1.5}, "duplicate_fraction must be between 0 and 1"),
        ({"offers": (Offer("x", 0.999),)}, "at most 2 decimals"),
    ],
)
def test_bad_options_are_one_sentence(tmp_path: Path, changes: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError, match=re.escape(message)):
        generate(_options(tmp_path / "out", **changes))
    assert not (tmp_path / "out").exists()
