"""A Spark standalone cluster on this machine: one master and N workers on 127.0.0.1, no Docker.

Why: `local[*]` runs the driver and its executors in one JVM on local disk, which hides code
that only works because they share a process (files, Python modules, broadcast state). Here
every executor is its own JVM started by a worker, as on YARN or Kubernetes, from the venv's
own Spark distribution (pip's pyspark has no sbin/start-*.sh, so the daemons are started with
bin/spark-class, which is all those scripts do).

    python scripts/local_cluster.py start [--port 7077] [--workers 2] [--worker-cores 1]
                                          [--worker-memory 1g] [--state-dir .offer_ai_build/cluster]
    python scripts/local_cluster.py stop|status [--state-dir .offer_ai_build/cluster]

`start` prints the master URL (spark://127.0.0.1:<port>) as its last line, once every worker
has registered. It is idempotent (a healthy cluster of the same state folder is kept), and a
start that fails stops whatever it had started. The state folder holds cluster.json (pids and
ports, read by `stop`), one log per daemon and each worker's work directory (executor logs:
worker-<n>/app-*/<executor>/stderr). Each daemon leads its own process group, so `stop` ends
a worker together with the executors (and their Python workers) it launched.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
STATE_FILE = "cluster.json"
#: JVM start on a busy 2-core machine: a few seconds each, more when tests run beside it.
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0
#: The daemons themselves are small; executors get the worker's --memory.
DAEMON_MEMORY = "512m"
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"


class ClusterError(Exception):
    """A failure the user fixes (a port taken, a daemon that would not start): one sentence."""


@dataclass
class Cluster:
    """What `start` wrote to cluster.json: enough for `stop` and `status` in another shell."""

    port: int
    webui_port: int
    workers: int
    pids: dict[str, int] = field(default_factory=dict)  # daemon name -> pid (= its process group)

    @property
    def master_url(self) -> str:
        return f"spark://{HOST}:{self.port}"

    @property
    def webui_url(self) -> str:
        return f"http://{HOST}:{self.webui_port}"


def spark_home() -> Path:
    from pyspark.find_spark_home import _find_spark_home

    return Path(_find_spark_home())


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def _ours(pid: int) -> bool:
    """Alive and a Spark master or worker (a recycled pid that is something else is not ours)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)  # our own exited child would linger as a zombie
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[-1].split()[0] == "Z":
            return False
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        return MASTER_CLASS.encode() in cmdline or WORKER_CLASS.encode() in cmdline
    except (OSError, ProcessLookupError):
        return False


def _load(state_dir: Path) -> Cluster | None:
    try:
        return Cluster(**json.loads((state_dir / STATE_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _save(state_dir: Path, cluster: Cluster) -> None:
    tmp = state_dir / f"{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(asdict(cluster), indent=2) + "\n")
    os.replace(tmp, state_dir / STATE_FILE)


def alive_workers(cluster: Cluster, timeout_s: float = 2.0) -> int:
    """Workers the master lists as ALIVE (its web UI's JSON), or -1 when the master does not answer."""
    try:
        with urllib.request.urlopen(f"{cluster.webui_url}/json/", timeout=timeout_s) as answer:
            state = json.load(answer)
    except (OSError, ValueError):
        return -1
    return sum(1 for worker in state.get("workers", []) if worker.get("state") == "ALIVE")


def _log_tail(path: Path, lines: int = 6) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])


def _launch(name: str, args: list[str], state_dir: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start one daemon in its own session (it outlives `make`; a Ctrl-C there does not reach it)."""
    log = state_dir / f"{name}.log"
    with open(log, "wb") as out, open(os.devnull, "rb") as devnull:
        return subprocess.Popen(
            [str(spark_home() / "bin" / "spark-class"), *args],
            stdin=devnull, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=state_dir,
            start_new_session=True, close_fds=True,
        )


def _environment(state_dir: Path) -> dict[str, str]:
    conf_dir = state_dir / "conf"  # empty: no stale spark-defaults.conf from the venv's Spark
    conf_dir.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPARK_MASTER", "SPARK_WORKER", "PYSPARK_GATEWAY"))}
    env.update(SPARK_HOME=str(spark_home()), SPARK_CONF_DIR=str(conf_dir), SPARK_LOCAL_IP=HOST,
               SPARK_DAEMON_MEMORY=DAEMON_MEMORY, PYSPARK_PYTHON=env.get("PYSPARK_PYTHON", sys.executable))
    return env


def start(state_dir: Path, port: int, workers: int, worker_cores: int, worker_memory: str,
          timeout_s: float = START_TIMEOUT_S) -> Cluster:
    """Start a master and `workers` workers, wait until all are registered, and return the cluster."""
    state_dir.mkdir(parents=True, exist_ok=True)
    current = _load(state_dir)
    if current is not None:
        if all(_ours(pid) for pid in current.pids.values()) and alive_workers(current) == current.workers:
            if current.port == port and current.workers == workers:
                return current
        stop(state_dir)  # half alive, or another shape: start afresh
    if _port_in_use(port):
        raise ClusterError(f"Port {port} on {HOST} is already in use: stop what holds it, or choose another "
                           "with SPARK_MASTER_PORT=<port> (make) / --port.")
    cluster = Cluster(port=port, webui_port=free_port(), workers=workers)
    env = _environment(state_dir)
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        processes["master"] = _launch("master", [MASTER_CLASS, "--host", HOST, "--port", str(port),
                                                 "--webui-port", str(cluster.webui_port)], state_dir, env)
        cluster.pids["master"] = processes["master"].pid
        _save(state_dir, cluster)
        for n in range(1, workers + 1):
            work_dir = state_dir / f"worker-{n}"
            shutil.rmtree(work_dir, ignore_errors=True)  # last run's executor folders
            work_dir.mkdir()
            processes[f"worker-{n}"] = _launch(
                f"worker-{n}",
                [WORKER_CLASS, "--host", HOST, "--cores", str(worker_cores), "--memory", worker_memory,
                 "--work-dir", str(work_dir), "--webui-port", str(free_port()), cluster.master_url],
                state_dir, env,
            )
            cluster.pids[f"worker-{n}"] = processes[f"worker-{n}"].pid
            _save(state_dir, cluster)
        _wait_until_registered(cluster, processes, state_dir, timeout_s)
    except BaseException:  # a failure, a timeout, a Ctrl-C: nothing is left running
        for process in reversed(processes.values()):  # our children, whatever /proc shows mid-exec
            _end_group(process.pid)
            process.poll()
        (state_dir / STATE_FILE).unlink(missing_ok=True)
        raise
    return cluster


def _wait_until_registered(
    cluster: Cluster, processes: dict[str, subprocess.Popen[bytes]], state_dir: Path, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for name, process in processes.items():  # our children: poll(), not /proc (spark-class execs java)
            if process.poll() is not None:
                log = state_dir / f"{name}.log"
                raise ClusterError(f"The Spark {name} exited at start-up with code {process.returncode}: "
                                   f"see {log} ({_log_tail(log)}).")
        if alive_workers(cluster) == cluster.workers:
            return
        time.sleep(0.5)
    raise ClusterError(f"The Spark cluster did not have {cluster.workers} live workers within {timeout_s:.0f} s: "
                       f"see the logs in {state_dir}.")


def _end_group(pid: int, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM to the daemon's process group (it and the executors it launched), then SIGKILL."""
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                os.killpg(pid, 0)  # any member of the group left?
            except ProcessLookupError:
                return
            _ours(pid)  # reaps the daemon itself when it is our child
            time.sleep(0.1)


def stop(state_dir: Path) -> list[str]:
    """Stop every daemon cluster.json names (workers first); the names of those that were running."""
    cluster = _load(state_dir)
    if cluster is None:
        return []
    stopped = []
    for name, pid in sorted(cluster.pids.items(), key=lambda item: item[0] == "master"):
        if _ours(pid):
            stopped.append(name)
            _end_group(pid)
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    return stopped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/local_cluster.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("start", "stop", "status"))
    parser.add_argument("--state-dir", type=Path, default=Path(".offer_ai_build/cluster"))
    parser.add_argument("--port", type=int, default=7077, help="the master's port (default 7077)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-cores", type=int, default=1)
    parser.add_argument("--worker-memory", default="1g", help="memory a worker gives its executors (default 1g)")
    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            cluster = start(args.state_dir, args.port, args.workers, args.worker_cores, args.worker_memory)
            print(f"Spark cluster: {cluster.workers} workers x {args.worker_cores} core, {args.worker_memory}; "
                  f"web UI {cluster.webui_url}; logs in {args.state_dir}")
            print(cluster.master_url)
            return 0
        if args.command == "stop":
            stopped = stop(args.state_dir)
            print(f"Spark cluster: stopped {', '.join(stopped)}" if stopped else "Spark cluster: was not running")
            return 0
        cluster = _load(args.state_dir)
        live = alive_workers(cluster) if cluster else -1
        if cluster is None or live < 0:
            print("Spark cluster: not running")
            return 1
        print(f"Spark cluster: {live} of {cluster.workers} workers alive; web UI {cluster.webui_url}")
        print(cluster.master_url)
        return 0 if live == cluster.workers else 1
    except ClusterError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
