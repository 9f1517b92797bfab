"""One run at a time per part of the lake: a lock file that a crashed run cannot hold forever.

Two sessionize runs at once (a manual run during the nightly one, an Airflow retry beside a
slow first try) could each pass the other's watermark and leave events no later run
sessionizes; two build_features share one export folder; two export_features both pass the
stale-as-of check. So each job takes `<lake>/_locks/<name>.lock` before it writes and refuses,
in one sentence, when another run holds it.

The file is created with Hadoop's create(overwrite=false), atomic on local disks and HDFS;
on S3 it is atomic only with conditional writes (fs.s3a.create.conditional.enabled), and
Delta's DynamoDB log store is what makes concurrent writers safe there anyway. The holder
rewrites a heartbeat every `heartbeat_s`; a lock whose heartbeat is older than `stale_after_s`,
or whose holder is a process on this host that no longer exists (kill -9), is taken over.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pyspark.sql import SparkSession

from offer_ai.errors import UserError

LOCKS = "_locks"


class LakeBusy(UserError):
    """Another run holds the lock: the sentence says which, since when, and what to do."""


@contextmanager
def run_lock(
    spark: SparkSession, lake_root: str, name: str, job: str, heartbeat_s: float = 30.0, stale_after_s: float = 600.0
) -> Iterator[None]:
    """Hold `<lake_root>/_locks/<name>.lock` while the block runs."""
    lock = _Lock(spark, f"{lake_root.rstrip('/')}/{LOCKS}/{name}.lock", job, stale_after_s)
    lock.acquire()
    stop = threading.Event()
    beat = threading.Thread(target=lock.heartbeat, args=(stop, heartbeat_s), daemon=True, name=f"lock-{name}")
    beat.start()
    try:
        yield
    finally:
        stop.set()
        beat.join()
        lock.release()


class _Lock:
    def __init__(self, spark: SparkSession, path: str, job: str, stale_after_s: float) -> None:
        jvm = spark.sparkContext._jvm  # type: ignore[union-attr]
        self._jvm = jvm
        self.path = jvm.org.apache.hadoop.fs.Path(path)
        self.fs = self.path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())  # type: ignore[union-attr]
        self.job, self.stale_after_s = job, stale_after_s
        self.token = uuid.uuid4().hex
        self.started = _now()

    def _record(self) -> dict[str, Any]:
        return {"job": self.job, "host": socket.gethostname(), "pid": os.getpid(), "token": self.token,
                "started_at": self.started.isoformat(), "heartbeat_at": _now().isoformat()}

    def _write(self, overwrite: bool) -> None:
        stream = self.fs.create(self.path, overwrite)
        try:
            stream.write(bytearray(json.dumps(self._record()).encode()))
        finally:
            stream.close()

    def _read(self) -> dict[str, Any] | None:
        try:
            stream = self.fs.open(self.path)
        except Exception:  # noqa: BLE001 - gone meanwhile
            return None
        try:
            text = str(self._jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8"))
        finally:
            stream.close()
        try:
            return json.loads(text)
        except ValueError:
            return {}  # half written or garbage: judged by the file's age below

    def acquire(self) -> None:
        for _ in range(2):  # a stale lock is taken over once
            try:
                self._write(overwrite=False)
                return
            except Exception as exc:  # noqa: BLE001 - FileAlreadyExistsException and its wrappers
                if "AlreadyExists" not in f"{type(exc).__name__} {exc}":
                    raise
            holder = self._read()
            if holder is None:
                continue
            if not self._stale(holder):
                raise LakeBusy(
                    f"Another {holder.get('job', 'run')} run holds {self.path} (started {holder.get('started_at')} "
                    f"on {holder.get('host')} as process {holder.get('pid')}, last seen {holder.get('heartbeat_at')}): "
                    f"wait for it to finish; if that run is gone, delete the file, or it expires "
                    f"{int(self.stale_after_s)} s after its last heartbeat."
                )
            aside = self._jvm.org.apache.hadoop.fs.Path(f"{self.path.toString()}.stale-{self.token}")
            if self.fs.rename(self.path, aside):  # only one taker wins the rename
                self.fs.delete(aside, False)
        raise LakeBusy(f"{self.path} is being taken over by another run: try again in a minute.")

    def _stale(self, holder: dict[str, Any]) -> bool:
        if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
            if not _alive(holder["pid"]):
                return True  # its process is gone (killed): no need to wait for the heartbeat to age
        seen = holder.get("heartbeat_at")
        if seen:
            age = (_now() - dt.datetime.fromisoformat(seen)).total_seconds()
        else:
            age = (_now().timestamp() * 1000 - self.fs.getFileStatus(self.path).getModificationTime()) / 1000
        return age > self.stale_after_s

    def heartbeat(self, stop: threading.Event, every_s: float) -> None:
        while not stop.wait(every_s):
            holder = self._read()
            if holder is not None and holder.get("token") == self.token:
                self._write(overwrite=True)

    def release(self) -> None:
        holder = self._read()
        if holder is not None and holder.get("token") == self.token:
            self.fs.delete(self.path, False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed process whose parent died with it lingers as a zombie until init reaps it
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True  # no /proc (not Linux): signal 0 answered, so it is there


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
