"""The local DynamoDB tooling: start/stop/status of a background moto server, as `make` uses it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from offer_ai.config import OnlineStoreSettings
from offer_ai.errors import UserError
from offer_ai.online import local_dynamodb
from offer_ai.online.client import make_client
from offer_ai.online.table import ensure_table


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "offer_ai.online.local_dynamodb", *args], capture_output=True, text=True, timeout=60
    )


def test_cli_start_leaves_a_server_running_after_it_exits_and_stop_ends_it(tmp_path):
    port, state = local_dynamodb.free_port(), str(tmp_path / "state")
    started = cli("start", "--port", str(port), "--state-dir", state)
    assert started.returncode == 0, started.stderr
    assert started.stdout.startswith(f"local DynamoDB running at http://127.0.0.1:{port} (pid ")
    try:
        pid = int((tmp_path / "state" / f"dynamodb-{port}.pid").read_text())
        # The starting command has exited; the server must still answer DynamoDB calls.
        assert local_dynamodb.answers(f"http://127.0.0.1:{port}")
        assert local_dynamodb.status(port, state) == local_dynamodb.ServerStatus(port, pid, True, True)
        again = cli("start", "--port", str(port), "--state-dir", state)
        assert again.returncode == 0 and f"(pid {pid}," in again.stdout  # idempotent: same server kept
        assert cli("status", "--port", str(port), "--state-dir", state).returncode == 0
    finally:
        stopped = cli("stop", "--port", str(port), "--state-dir", state)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert not (tmp_path / "state" / f"dynamodb-{port}.pid").exists()
    assert not local_dynamodb.answers(f"http://127.0.0.1:{port}", timeout_s=0.5)
    status = cli("status", "--port", str(port), "--state-dir", state)
    assert (status.returncode, status.stdout.strip()) == (1, f"local DynamoDB on port {port}: not running")
    assert "was not running" in cli("stop", "--port", str(port), "--state-dir", state).stdout


def table_names(url: str) -> list[str]:
    store = OnlineStoreSettings(endpoint_url=url)
    client = make_client(store)
    try:
        return client.list_tables()["TableNames"]
    finally:
        client.close()


def test_a_second_start_keeps_the_server_and_its_tables_a_restart_forgets_them(tmp_path):
    port = local_dynamodb.free_port()
    server = local_dynamodb.start(port, tmp_path)
    try:
        assert server.running and server.endpoint_url == f"http://127.0.0.1:{port}"
        ensure_table(OnlineStoreSettings(table="kept", endpoint_url=server.endpoint_url, create_table=True))
        assert local_dynamodb.start(port, tmp_path).pid == server.pid
        assert table_names(server.endpoint_url) == ["kept"]
    finally:
        assert local_dynamodb.stop(port, tmp_path) is True
    assert local_dynamodb.status(port, tmp_path) == local_dynamodb.ServerStatus(port, None, False, False)
    assert local_dynamodb.stop(port, tmp_path) is False
    restarted = local_dynamodb.start(port, tmp_path)
    try:
        assert restarted.pid != server.pid
        assert table_names(restarted.endpoint_url) == []  # moto keeps tables in memory only
    finally:
        local_dynamodb.stop(port, tmp_path)


def test_a_stale_pid_file_never_ends_a_process_that_is_not_our_server(tmp_path):
    port = local_dynamodb.free_port()
    local_dynamodb.pid_file(port, tmp_path).write_text(f"{os.getpid()}\n")  # pytest itself: not a moto server
    found = local_dynamodb.status(port, tmp_path)
    assert (found.pid, found.alive, found.running) == (os.getpid(), False, False)
    assert local_dynamodb.stop(port, tmp_path) is False  # and we are still here to assert it
    assert not local_dynamodb.pid_file(port, tmp_path).exists()


def test_a_port_held_by_another_program_is_a_user_error(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(UserError, match=f"Port {port} on 127.0.0.1 is already in use by another program"):
            local_dynamodb.start(port, tmp_path)
    assert not local_dynamodb.pid_file(port, tmp_path).exists()


def test_the_fixture_endpoint_answers_dynamodb(dynamodb_endpoint):
    assert dynamodb_endpoint.startswith("http://127.0.0.1:")
    assert not dynamodb_endpoint.endswith(":5055")  # never the developer's own server
    assert local_dynamodb.answers(dynamodb_endpoint)
    assert os.environ["AWS_ACCESS_KEY_ID"] == "testing"


def test_a_server_this_state_folder_did_not_start_is_named_and_left_alone(dynamodb_endpoint, tmp_path):
    port = int(dynamodb_endpoint.rsplit(":", 1)[1])
    with pytest.raises(UserError, match=f"Port {port} on 127.0.0.1 already has a DynamoDB endpoint"):
        local_dynamodb.start(port, tmp_path)
    assert local_dynamodb.stop(port, tmp_path) is False
    assert local_dynamodb.answers(dynamodb_endpoint)
