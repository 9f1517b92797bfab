"""jobs/export_features.py against a real HTTP DynamoDB (moto server on 127.0.0.1).

One generated, sessionized lake per module; every export runs the job's own code in-process.
Expected item sets come from the raw JSON lines (which users had played before as_of) and from
features_as_of evaluated at two times (which users' values differ) — the job's diff, write
path and snapshot are what is under test.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from job_runner import REPO, load_job, run_in_process

from offer_ai.features.training import features_as_of
from offer_ai.features.window_spec import load_window_spec
from offer_ai.ingest.feature_spec import load_feature_spec
from offer_ai.online.items import IN_SESSION_ATTRIBUTE, ITEM_ATTRIBUTES, TTL_ATTRIBUTE, decode_item

EXPORT = load_job("export_features")
START = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
T1 = START + dt.timedelta(days=6, hours=12)
T2 = T1 + dt.timedelta(days=1)
FEATURES = ("country", "facebook_connected", "last_session_games_played", "last_session_win_ratio", "prev_week_purchase_amount")


def _utc(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment.replace(tzinfo=dt.timezone.utc) if moment.tzinfo is None else moment.astimezone(dt.timezone.utc)


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory) -> tuple[Path, Path]:
    raw, root = tmp_path_factory.mktemp("raw"), tmp_path_factory.mktemp("lake")
    done = subprocess.run([sys.executable, "jobs/generate_events.py", "--out", str(raw), "--users", "80", "--days", "9",
                           "--seed", "5"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    code, _, err = run_in_process(load_job("sessionize"), "--input", str(raw), "--lake", str(root))
    assert code == 0, err[-3000:]
    return raw, root


@pytest.fixture(scope="module")
def store(dynamodb_endpoint) -> list[str]:
    return ["--set", f"online_store.endpoint_url={dynamodb_endpoint}", "--set", "online_store.table=export_test",
            "--set", "online_store.create_table=true", "--set", "online_store.region=us-east-1"]


def _export(root: Path, store: list[str], *extra: str) -> tuple[int, dict | None, str]:
    return run_in_process(EXPORT, "--lake", str(root), *store, *extra)


def _items(endpoint: str) -> dict[str, dict]:
    client = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
    pages = client.get_paginator("scan").paginate(TableName="export_test")
    from boto3.dynamodb.types import TypeDeserializer

    deserialize = TypeDeserializer().deserialize
    raw = [{k: deserialize(v) for k, v in item.items()} for page in pages for item in page["Items"]]
    return {item["user_id"]: item for item in raw}


def _session_starts(raw: Path) -> dict[tuple[str, str], dt.datetime]:
    """(user, session) -> the session's start, from the raw lines (no Spark)."""
    starts: dict[tuple[str, str], dt.datetime] = {}
    for path in raw.glob("date=*/part-*.jsonl"):
        for line in path.read_text().splitlines():
            event = json.loads(line)
            key = (event["customer_identifier"], event["session_id"])
            t = _utc(event["event_time"])
            starts[key] = min(starts.get(key, t), t)
    return starts


def _players_before(raw: Path, moment: dt.datetime) -> set[str]:
    """Users with a session that started before `moment`."""
    return {user for (user, _), start in _session_starts(raw).items() if start < moment}


def _latest_sessions(raw: Path, moment: dt.datetime) -> dict[str, tuple[dt.datetime, str]]:
    """Each user's latest session (start, id) that started before `moment`: the in-session values' anchor."""
    latest: dict[str, tuple[dt.datetime, str]] = {}
    for (user, session), start in _session_starts(raw).items():
        if start < moment:
            latest[user] = max(latest.get(user, (start, session)), (start, session))
    return latest


def _offline(spark, root: Path, moment: dt.datetime) -> dict[str, dict]:
    spec = load_window_spec(load_feature_spec(REPO / "conf" / "features.yaml"))
    sessions = spark.read.format("delta").load(str(root / "sessions"))
    events = spark.read.format("delta").load(str(root / "events"))
    rows = features_as_of(sessions, events, spec, moment).collect()
    return {r["user_id"]: r.asDict() for r in rows}


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(float(a), float(b), rel_tol=0, abs_tol=1e-9)
    return a == b


@pytest.fixture(scope="module")
def first_export(lake, store):
    code, summary, err = _export(lake[1], store, "--as-of", T1.isoformat())
    assert code == 0, err[-3000:]
    return summary


def test_first_export_writes_every_user_who_played_before_as_of(lake, store, first_export, dynamodb_endpoint):
    players = _players_before(lake[0], T1)
    assert 0 < len(players) < 80 or len(players) == 80
    items = _items(dynamodb_endpoint)
    assert set(items) == players
    assert first_export["items_written"] == first_export["items_changed"] == first_export["items_considered"] == len(players)
    assert first_export["max_request_items"] <= 25
    assert first_export["requests"] >= math.ceil(len(players) / 25)


def test_items_equal_the_snapshot_and_the_offline_features(spark, lake, first_export, dynamodb_endpoint):
    items = _items(dynamodb_endpoint)
    offline = _offline(spark, lake[1], T1)
    snapshot = {r["user_id"]: r.asDict() for r in spark.read.format("delta").load(str(lake[1] / "online_features")).collect()}
    assert set(snapshot) == set(items)
    latest = _latest_sessions(lake[0], T1)
    for user, item in items.items():
        assert set(item) <= {*ITEM_ATTRIBUTES, TTL_ATTRIBUTE, IN_SESSION_ATTRIBUTE}
        decoded = decode_item(item)
        ongoing = decoded[IN_SESSION_ATTRIBUTE]  # the values for a decision inside the latest session
        assert (ongoing["session_start"], ongoing["session_id"]) == latest[user]
        assert set(ongoing) == {"session_id", "session_start", *FEATURES[2:]}
        assert decoded["as_of"] == T1
        assert all(not isinstance(v, float) or not math.isnan(v) for v in decoded.values())
        for name in FEATURES:
            assert _same(decoded.get(name), offline[user][name]), (user, name, decoded.get(name), offline[user][name])
            assert _same(decoded.get(name), snapshot[user][name]), (user, name)
            if offline[user][name] is None:
                assert name not in item  # nulls are omitted, never stored
        assert decoded["spec_version"] == snapshot[user]["spec_version"]


def test_same_as_of_again_writes_nothing(lake, store, first_export):
    code, summary, err = _export(lake[1], store, "--as-of", T1.isoformat())
    assert code == 0, err[-2000:]
    assert summary["items_changed"] == summary["items_written"] == 0


def test_a_day_later_rewrites_exactly_the_users_whose_features_changed(spark, lake, store, first_export, dynamodb_endpoint):
    before, after = _offline(spark, lake[1], T1), _offline(spark, lake[1], T2)
    players_before, players_after = _players_before(lake[0], T1), _players_before(lake[0], T2)
    latest_before, latest_after = _latest_sessions(lake[0], T1), _latest_sessions(lake[0], T2)
    expected = {u for u in players_after if u not in players_before
                or any(not _same(before[u][f], after[u][f]) for f in FEATURES)
                or latest_before[u] != latest_after[u]}  # a new latest session: new in-session values
    assert expected, "the test data must change someone's features within a day"
    code, summary, err = _export(lake[1], store, "--as-of", T2.isoformat())
    assert code == 0, err[-2000:]
    assert summary["items_written"] == len(expected)
    items = {u: decode_item(i) for u, i in _items(dynamodb_endpoint).items()}
    assert {u for u, i in items.items() if i["as_of"] == T2} == expected
    assert {u for u, i in items.items() if i["as_of"] == T1} == players_before - expected


def test_an_older_as_of_is_refused(lake, store, first_export):
    code, summary, err = _export(lake[1], store, "--as-of", (T1 - dt.timedelta(days=1)).isoformat())
    assert code == 2 and summary is None
    assert "older than the last export" in err and "--force" in err


def test_raising_the_ttl_rewrites_the_items_written_under_the_old_one(lake, store, first_export):
    """An item written with ttl_days=30 expires 30 days after its write whatever the config says
    later: with ttl_days=365 every item has less than half the TTL left, so each is rewritten
    (with the new expiry), once (#15 item 15)."""
    code, summary, err = _export(lake[1], store, "--as-of", T2.isoformat(), "--set", "online_store.ttl_days=365")
    assert code == 0, err[-2000:]
    assert summary["items_written"] == summary["items_considered"] > 0
    code, summary, err = _export(lake[1], store, "--as-of", T2.isoformat(), "--set", "online_store.ttl_days=365")
    assert code == 0, err[-2000:]
    assert summary["items_written"] == 0


def test_a_feature_the_snapshot_lacks_reaches_every_item_on_the_next_run(spark, lake, store, first_export,
                                                                          dynamodb_endpoint):
    """A feature added to features.yaml: the snapshot written before it lacks the column. The next
    export reads it as null, so every player whose new value is not null gets it (#15 item 9)."""
    path = str(lake[1] / "online_features")
    older = spark.read.format("delta").load(path).drop("last_session_win_ratio").localCheckpoint()
    older.write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(path)
    code, summary, err = _export(lake[1], store, "--as-of", T2.isoformat(), "--set", "online_store.ttl_days=365")
    assert code == 0, err[-2000:]
    offline = _offline(spark, lake[1], T2)
    with_value = {u for u, row in offline.items() if row["last_session_win_ratio"] is not None and u in _items(dynamodb_endpoint)}
    assert with_value and summary["items_written"] >= len(with_value)
    assert "last_session_win_ratio" in spark.read.format("delta").load(path).columns


def test_a_run_killed_while_writing_leaves_no_item_the_snapshot_does_not_know(spark, lake, store, first_export,
                                                                               dynamodb_endpoint):
    """A run dies in the middle of its DynamoDB writes: some items written, the snapshot not. The next
    run computes values equal to the snapshot's (an older as_of, forced): without the in-flight
    mark its diff would find nothing to write and DynamoDB would keep the dead run's values for
    good (#15 item 8)."""
    t3 = T2 + dt.timedelta(days=1)
    common = ["--lake", str(lake[1]), *store, "--set", "online_store.ttl_days=365"]
    killed = subprocess.run(["./spark-submit.sh", "jobs/export_features.py", *common, "--as-of", t3.isoformat()],
                            cwd=REPO, capture_output=True, text=True, timeout=600, start_new_session=True,
                            env={**os.environ, "OFFER_AI_FAULT": "online.mid_write"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    ahead = {u for u, i in _items(dynamodb_endpoint).items() if decode_item(i)["as_of"] == t3}
    assert ahead  # the dead run's items are there
    code, summary, err = _export(lake[1], store, "--as-of", T2.isoformat(), "--force", "--set", "online_store.ttl_days=365")
    assert code == 0, err[-2000:]
    assert summary["items_written"] >= len(ahead)  # every item the dead run may have written
    items = {u: decode_item(i) for u, i in _items(dynamodb_endpoint).items()}
    assert not {u for u, i in items.items() if i["as_of"] == t3}
    offline = _offline(spark, lake[1], T2)
    for user in ahead:
        for name in FEATURES:
            assert _same(items[user].get(name), offline[user][name]), (user, name)
