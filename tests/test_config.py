"""Configuration: defaults, files, overrides, and errors that name the key."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from offer_ai.config import DEFAULT_CONFIG, load_settings
from offer_ai.errors import UserError
from offer_ai.model.offers import Offer, load_offers


def test_defaults_come_from_conf_local_yaml(monkeypatch):
    monkeypatch.delenv("OFFER_AI_CONFIG", raising=False)
    settings = load_settings()
    assert settings.source == str(DEFAULT_CONFIG)
    assert settings.lake.root == "./lake"
    assert settings.table_path("events") == "./lake/events"
    assert settings.online_store.endpoint_url.startswith("http://127.0.0.1:")
    assert settings.online_store.create_table is True
    assert settings.sessionize.split == "session_id"
    assert settings.generator.start_date == dt.date(2026, 1, 1)


def test_env_var_chooses_the_file(tmp_path, monkeypatch):
    cfg = tmp_path / "my.yaml"
    cfg.write_text("lake: {root: /data/lake}\n")
    monkeypatch.setenv("OFFER_AI_CONFIG", str(cfg))
    settings = load_settings()
    assert settings.lake.root == "/data/lake"
    assert settings.spark.shuffle_partitions == 4  # unspecified keys keep their defaults


def test_explicit_file_wins_over_env_var(tmp_path, monkeypatch):
    env_cfg, cli_cfg = tmp_path / "env.yaml", tmp_path / "cli.yaml"
    env_cfg.write_text("lake: {root: /from/env}\n")
    cli_cfg.write_text("lake: {root: /from/cli}\n")
    monkeypatch.setenv("OFFER_AI_CONFIG", str(env_cfg))
    assert load_settings(cli_cfg).lake.root == "/from/cli"


def test_overrides_are_typed_and_repeatable():
    settings = load_settings(
        DEFAULT_CONFIG,
        ["spark.shuffle_partitions=8", "online_store.create_table=false", "sessionize.max_bad_ratio=0.5",
         "lake.root=s3a://bucket/lake", "spark.shuffle_partitions=16"],
    )
    assert settings.spark.shuffle_partitions == 16  # the last override wins
    assert settings.online_store.create_table is False
    assert settings.sessionize.max_bad_ratio == 0.5
    assert settings.table_path("sessions") == "s3a://bucket/lake/sessions"


def test_null_override_clears_an_optional_value():
    assert load_settings(DEFAULT_CONFIG, ["online_store.endpoint_url=null"]).online_store.endpoint_url is None


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("spark.shufle_partitions=8", "unknown configuration key 'spark.shufle_partitions'"),
        ("lakes.root=/x", "unknown configuration key 'lakes'"),
        ("spark.shuffle_partitions=many", "'spark.shuffle_partitions'"),
        ("sessionize.split=hourly", "'sessionize.split'"),
        ("sessionize.max_bad_ratio=2", "'sessionize.max_bad_ratio'"),
        ("generator.start_date=yesterday", "'generator.start_date'"),
    ],
)
def test_bad_keys_and_values_fail_naming_the_key(override, message):
    with pytest.raises(UserError) as err:
        load_settings(DEFAULT_CONFIG, [override])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_override_without_equals_sign_is_a_user_error():
    with pytest.raises(UserError, match="dotted.key=value"):
        load_settings(DEFAULT_CONFIG, ["spark.master"])


def test_missing_and_malformed_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("spark: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_settings(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string\n")
    with pytest.raises(UserError, match="mapping"):
        load_settings(scalar)


def test_catalogue_paths_are_relative_to_the_config_file(tmp_path):
    cfg = tmp_path / "team" / "conf.yaml"
    cfg.parent.mkdir()
    cfg.write_text("offers_file: my-offers.yaml\n")
    settings = load_settings(cfg)
    assert settings.offers_path == tmp_path / "team" / "my-offers.yaml"
    assert load_settings(DEFAULT_CONFIG).offers_path == Path(DEFAULT_CONFIG).parent / "offers.yaml"


def test_prod_example_is_valid_and_holds_no_credentials(repo_root):
    path = repo_root / "conf" / "prod.example.yaml"
    settings = load_settings(path)
    assert settings.lake.root.startswith("s3a://") and settings.raw.root.startswith("s3a://")
    assert settings.online_store.endpoint_url is None and settings.online_store.create_table is False
    text = path.read_text().lower()
    for secret in ("aws_access_key_id", "aws_secret_access_key", "secret_key", "session_token"):
        assert secret not in text


def test_offer_catalogue_loads_and_validates(repo_root, tmp_path):
    offers = load_offers(repo_root / "conf" / "offers.yaml")
    assert len(offers) == 8 and Offer("xmas", 4.99) in offers
    bad = tmp_path / "offers.yaml"
    bad.write_text("offers:\n  - {offer_type: xmas, offer_price: -1}\n")
    with pytest.raises(UserError, match=r"offers\[0\].offer_price"):
        load_offers(bad)
    bad.write_text("offers:\n  - {offer_type: xmas, offer_price: 1}\n  - {offer_type: xmas, offer_price: 1.0}\n")
    with pytest.raises(UserError, match="twice"):
        load_offers(bad)
