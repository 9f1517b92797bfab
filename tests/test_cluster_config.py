"""The s3a:// and cluster settings (#14): what the `storage` section turns into, which packages
make venv installs for it, and the start-up errors when a connector is missing.

The end-to-end proof is tests/test_cluster.py; these are the rules it relies on, cheap enough
to run without a cluster.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from offer_ai.config import StorageSettings, load_settings
from offer_ai.errors import UserError
from offer_ai.spark import (
    DYNAMODB_LOG_STORE_PACKAGE, HADOOP_VERSION, PACKAGE_EXCLUDES, S3A_PACKAGES, SPARK_PACKAGES,
    installed_packages, is_loopback, require_storage_classes, spark_home, storage_conf,
)

REPO = Path(__file__).resolve().parents[1]


def test_a_loopback_endpoint_gets_dummy_keys_path_style_and_its_region():
    conf = storage_conf(StorageSettings(s3_endpoint="http://127.0.0.1:5055/", s3_region="us-east-1", s3_path_style=True))
    assert conf == {
        "spark.hadoop.fs.s3a.endpoint": "http://127.0.0.1:5055",
        "spark.hadoop.fs.s3a.endpoint.region": "us-east-1",
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        "spark.hadoop.fs.s3a.access.key": "local",
        "spark.hadoop.fs.s3a.secret.key": "local",
    }


@pytest.mark.parametrize("endpoint", [None, "https://s3.eu-west-1.amazonaws.com", "http://minio.internal:9000"])
def test_any_other_endpoint_gets_no_keys_so_the_environment_or_the_role_provides_them(endpoint):
    conf = storage_conf(StorageSettings(s3_endpoint=endpoint))
    assert not any("key" in name or "credentials" in name for name in conf)
    assert conf == ({"spark.hadoop.fs.s3a.endpoint": endpoint} if endpoint else {})


def test_loopback_means_this_machine_only():
    assert is_loopback("http://localhost:5055") and is_loopback("spark://127.0.0.1:7077") and is_loopback("http://[::1]:1")
    assert not is_loopback("http://127.0.0.1.example.com") and not is_loopback(None) and not is_loopback("http://10.0.0.1")


def test_the_dynamodb_log_store_is_configured_for_both_s3_schemes():
    conf = storage_conf(StorageSettings(delta_log_store="dynamodb", delta_log_table="offer_ai_delta_log",
                                        delta_log_region="eu-west-1"))
    assert conf == {
        "spark.delta.logStore.s3a.impl": "io.delta.storage.S3DynamoDBLogStore",
        "spark.delta.logStore.s3.impl": "io.delta.storage.S3DynamoDBLogStore",
        "spark.io.delta.storage.S3DynamoDBLogStore.ddb.tableName": "offer_ai_delta_log",
        "spark.io.delta.storage.S3DynamoDBLogStore.ddb.region": "eu-west-1",
    }
    assert storage_conf(StorageSettings()) == {}  # the default: Delta's own single-writer S3 log store


def test_an_endpoint_without_a_scheme_is_refused_naming_the_key():
    with pytest.raises(UserError, match=r"'storage.s3_endpoint' string should match pattern"):
        load_settings(REPO / "conf" / "local.yaml", ["storage.s3_endpoint=127.0.0.1:5055"])
    with pytest.raises(UserError, match=r"unknown configuration key 'storage.s3_endpiont'"):
        load_settings(REPO / "conf" / "local.yaml", ["storage.s3_endpiont=http://127.0.0.1:5055"])


def test_the_connector_matches_the_hadoop_inside_spark():
    """hadoop-aws of another version than hadoop-client-api fails with NoSuchMethodError at the first s3a:// call."""
    bundled = [p.name for p in (spark_home() / "jars").glob("hadoop-client-api-*.jar")]
    assert bundled == [f"hadoop-client-api-{HADOOP_VERSION}.jar"]
    assert f"org.apache.hadoop:hadoop-aws:{HADOOP_VERSION}" in S3A_PACKAGES


def test_spark_submit_sh_names_the_same_packages_as_the_session_builder():
    script = (REPO / "spark-submit.sh").read_text()
    listed = re.search(r"^PACKAGES=\(([^)]*)\)", script, re.M)
    excludes = re.search(r'^EXCLUDES="([^"]*)"', script, re.M)
    assert listed and excludes
    assert tuple(listed.group(1).split()) == SPARK_PACKAGES
    assert tuple(excludes.group(1).split(",")) == PACKAGE_EXCLUDES


def test_make_venv_installed_the_s3a_connector_beside_delta():
    assert installed_packages() == set(SPARK_PACKAGES)
    jars = {p.name for p in (spark_home() / "jars").glob("*.jar")}
    assert f"hadoop-aws-{HADOOP_VERSION}.jar" in jars and "s3-2.35.4.jar" in jars
    assert not any(name.startswith("bundle-") for name in jars)  # the 686 MB SDK bundle stays out


def test_an_s3a_lake_starts_when_the_connector_is_there(spark):
    require_storage_classes(spark, load_settings(REPO / "conf" / "local-cluster.yaml"))


def test_the_dynamodb_log_store_without_its_jar_stops_the_job_in_a_sentence(spark):
    settings = load_settings(REPO / "conf" / "local-cluster.yaml", ["storage.delta_log_store=dynamodb"])
    with pytest.raises(UserError) as raised:
        require_storage_classes(spark, settings)
    assert str(raised.value) == (
        "storage.delta_log_store is dynamodb but io.delta.storage.S3DynamoDBLogStore is not on Spark's classpath: "
        f"pass --packages {DYNAMODB_LOG_STORE_PACKAGE} to ./spark-submit.sh (or install it on the cluster).")


def test_the_cluster_config_talks_to_loopback_only_and_holds_no_key(repo_root):
    path = repo_root / "conf" / "local-cluster.yaml"
    settings = load_settings(path)
    assert settings.lake.root.startswith("s3a://") and settings.raw.root.startswith("s3a://")
    assert is_loopback(settings.storage.s3_endpoint) and is_loopback(settings.online_store.endpoint_url)
    assert settings.spark.master == "spark://127.0.0.1:7077" and settings.storage.s3_path_style
    text = path.read_text().lower()
    assert not any(word in text for word in ("access_key", "secret", "session_token"))
