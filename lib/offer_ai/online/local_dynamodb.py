"""A local DynamoDB for development and tests: a moto server on 127.0.0.1, run in the background.

A real HTTP endpoint (not an in-process mock) so that the writer, the reader and the Spark
export job talk to it exactly as they talk to AWS — through botocore's serialisation, retries
and connection handling. One server per port; its pid and log live in a state folder
(`<state dir>/dynamodb-<port>.pid|.log`), so `make dynamodb-start` in one shell and
`make dynamodb-stop` in another agree on which process to end, and a stale pid file (the
machine rebooted, the process was killed) is noticed and replaced.

    python -m offer_ai.online.local_dynamodb start|stop|status [--port 5055] [--state-dir .offer_ai_build]

moto keeps everything in memory: stopping the server forgets every table.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from offer_ai.errors import UserError

HOST = "127.0.0.1"
DEFAULT_PORT = 5055
DEFAULT_STATE_DIR = ".offer_ai_build"
#: moto imports every service backend lazily, but Flask/werkzeug and the first request still
#: take a second or two on a cold machine; 30 s leaves room for a loaded CI box.
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ServerStatus:
    """What `status` found: `running` means our process is alive *and* answers DynamoDB calls."""

    port: int
    pid: int | None
    alive: bool
    answering: bool

    @property
    def endpoint_url(self) -> str:
        return endpoint_url(self.port)

    @property
    def running(self) -> bool:
        return self.alive and self.answering


def endpoint_url(port: int = DEFAULT_PORT) -> str:
    return f"http://{HOST}:{port}"


def pid_file(port: int, state_dir: str | os.PathLike[str] = DEFAULT_STATE_DIR) -> Path:
    return Path(state_dir) / f"dynamodb-{port}.pid"


def log_file(port: int, state_dir: str | os.PathLike[str] = DEFAULT_STATE_DIR) -> Path:
    return Path(state_dir) / f"dynamodb-{port}.log"


def free_port() -> int:
    """A port the OS just said is free (tests: one server per run, never clashing with :5055)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def answers(url: str, timeout_s: float = 1.0) -> bool:
    """True when `url` answers a DynamoDB ListTables call (not merely accepts TCP connections)."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    client = boto3.session.Session().client(
        "dynamodb",
        region_name="us-east-1",
        endpoint_url=url,
        # moto never checks credentials; explicit dummies keep real ones out of a local call.
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=Config(
            connect_timeout=timeout_s, read_timeout=timeout_s, retries={"mode": "standard", "max_attempts": 1}
        ),
    )
    try:
        client.list_tables(Limit=1)
    except (BotoCoreError, ClientError):
        return False
    finally:
        client.close()
    return True


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def _reap(pid: int) -> bool:
    """Collect `pid` if it is our exited child (else it lingers as a zombie that looks alive)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return done == pid


def _alive(pid: int) -> bool:
    """Alive and a moto server — a recycled pid that now belongs to something else is not ours."""
    if _reap(pid):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # some other user's process took the pid: not ours
    proc = Path(f"/proc/{pid}")
    if proc.is_dir():  # Linux: also check what the process is (elsewhere the pid has to do)
        try:
            stat = (proc / "stat").read_text()
            if stat.rsplit(")", 1)[-1].split()[0] == "Z":
                return False
            return b"moto.server" in (proc / "cmdline").read_bytes()
        except OSError:
            return False
    return True


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def status(port: int = DEFAULT_PORT, state_dir: str | os.PathLike[str] = DEFAULT_STATE_DIR) -> ServerStatus:
    pid = _read_pid(pid_file(port, state_dir))
    alive = pid is not None and _alive(pid)
    return ServerStatus(port=port, pid=pid, alive=alive, answering=alive and answers(endpoint_url(port)))


def _log_tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def start(
    port: int = DEFAULT_PORT,
    state_dir: str | os.PathLike[str] = DEFAULT_STATE_DIR,
    timeout_s: float = START_TIMEOUT_S,
) -> ServerStatus:
    """Start a moto server on 127.0.0.1:`port` in the background and wait until it answers.

    Idempotent: a server of ours that already answers on the port is kept (its tables too).
    The process gets its own session, so it outlives the command that started it (make) and
    a Ctrl-C in that terminal does not reach it.
    """
    current = status(port, state_dir)
    if current.running:
        return current
    if current.alive:  # ours but not answering (still starting, or wedged): start afresh
        stop(port, state_dir)
    if _port_in_use(port):
        if answers(endpoint_url(port)):  # e.g. started before `make clean` removed its pid file
            raise UserError(
                f"Port {port} on {HOST} already has a DynamoDB endpoint that {state_dir} has no pid file for: "
                "end that process or choose another port with --port."
            )
        raise UserError(
            f"Port {port} on {HOST} is already in use by another program: stop it or choose another port with --port."
        )
    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    log_path = log_file(port, state)
    with open(log_path, "wb") as log, open(os.devnull, "rb") as devnull:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "--host", HOST, "--port", str(port)],
            stdin=devnull,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    pid_file(port, state).write_text(f"{process.pid}\n")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pid_file(port, state).unlink(missing_ok=True)
            raise UserError(
                f"The local DynamoDB (moto server) on port {port} exited at start-up with code {process.returncode}: "
                f"see {log_path} ({_log_tail(log_path)})."
            )
        if answers(endpoint_url(port), timeout_s=1.0):
            return ServerStatus(port=port, pid=process.pid, alive=True, answering=True)
        time.sleep(0.1)
    _terminate(process.pid)
    pid_file(port, state).unlink(missing_ok=True)
    raise UserError(
        f"The local DynamoDB (moto server) on port {port} did not answer within {timeout_s:.0f} s: see {log_path}."
    )


def _terminate(pid: int, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM (moto exits cleanly on it), then SIGKILL if it has not gone within `timeout_s`."""
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 2.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            _reap(pid)
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.05)


def stop(port: int = DEFAULT_PORT, state_dir: str | os.PathLike[str] = DEFAULT_STATE_DIR) -> bool:
    """Stop our server on `port`; True when one was running. Never touches a process it did not start."""
    path = pid_file(port, state_dir)
    pid = _read_pid(path)
    was_running = pid is not None and _alive(pid)
    if was_running:
        assert pid is not None
        _terminate(pid)
        if _alive(pid):
            raise UserError(f"The local DynamoDB (pid {pid}) on port {port} would not stop: end it by hand.")
    path.unlink(missing_ok=True)
    return was_running


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m offer_ai.online.local_dynamodb",
        description="Start, stop or query the local DynamoDB (a moto server on 127.0.0.1).",
    )
    parser.add_argument("command", choices=("start", "stop", "status"))
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT})")
    parser.add_argument(
        "--state-dir", default=DEFAULT_STATE_DIR, help=f"folder for the pid and log files (default {DEFAULT_STATE_DIR})"
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            found = start(args.port, args.state_dir)
            print(f"local DynamoDB running at {found.endpoint_url} (pid {found.pid}, log {log_file(args.port, args.state_dir)})")
            return 0
        if args.command == "stop":
            stopped = stop(args.port, args.state_dir)
            print(f"local DynamoDB on port {args.port} {'stopped' if stopped else 'was not running'}")
            return 0
        found = status(args.port, args.state_dir)
        if found.running:
            print(f"local DynamoDB running at {found.endpoint_url} (pid {found.pid})")
            return 0
        state = "started but not answering" if found.alive else "not running"
        print(f"local DynamoDB on port {args.port}: {state}")
        return 1
    except UserError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
