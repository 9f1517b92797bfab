"""Served decisions back into the raw landing folder, as events sessionize already ingests.

Each decision is one ``offer_shown`` line — ``customer_identifier``, ``event_id``,
``event_time`` (ISO-8601 UTC), ``session_id``, ``offer_type``, ``offer_price``,
``offer_propensity`` — so the session it was served in becomes an anchor of the next
``build_features`` with the served propensity, and off-policy evaluation can reweight it. The
rest rides along in the event's payload: ``decision_id``, ``model_version``, ``candidates``
(every offer with its score and probability: the whole distribution, which a later
evaluation of this logging policy needs), ``features_as_of`` and the store's answer.

Lines are buffered and written as a new file at least every ``flush_s`` seconds, when
``max_lines`` wait, and at shutdown: ``<dir>/date=YYYY-MM-DD/decisions-<host>-<pid>-<n>-<id>.jsonl``
(the day of the decisions in it; one file per day a flush spans). A file is written under a
'.'-prefixed name, which sessionize skips, and renamed when whole, so a reader never sees half
a file; the names never collide with the generator's ``part-*`` or another process's. A
failed write keeps the lines for the next flush: an acknowledged decision is lost only if the
process dies before a flush, never on a clean stop.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from offer_ai.errors import UserError

PREFIX = "decisions-"
_S3_SCHEMES = ("s3://", "s3a://", "s3n://")


def iso_utc(moment: dt.datetime) -> str:
    """'2026-01-28T12:00:00.123456Z': what sessionize parses, whatever the reader's time zone."""
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def offer_shown_event(
    *,
    user_id: str,
    session_id: str,
    decided_at: dt.datetime,
    decision_id: str,
    offer_type: str,
    offer_price: float,
    propensity: float,
    model_version: str,
    candidates: Iterable[Mapping[str, Any]],
    features_as_of: dt.datetime | None,
    store: str,
) -> dict[str, Any]:
    """The logged event of one decision (the raw-event fields first, then the payload extras)."""
    return {
        "event_id": "offer_shown",
        "event_time": iso_utc(decided_at),
        "customer_identifier": user_id,
        "session_id": session_id,
        "offer_type": offer_type,
        "offer_price": offer_price,
        "offer_propensity": propensity,
        "decision_id": decision_id,
        "model_version": model_version,
        "candidates": list(candidates),
        "features_as_of": None if features_as_of is None else iso_utc(features_as_of),
        "store": store,
    }


class DecisionLog:
    """A buffer of decision lines and the files they are flushed to; thread-safe.

    ``append`` is called on the request path (a list append under a lock); ``flush`` writes
    files and may run on any thread.
    """

    def __init__(self, folder: str | os.PathLike[str], max_lines: int = 5000) -> None:
        text = str(folder)
        if text.startswith(_S3_SCHEMES):
            raise UserError(
                f"The decision log goes to a local or shared folder, not {text}: set serving.decision_log_dir to "
                "one, and ship it to raw.root (a log shipper, or aws s3 sync)."
            )
        self.folder = Path(text)
        self.max_lines = max_lines
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()  # one flush at a time, so files keep their order
        self._pending: list[tuple[str, bytes]] = []  # (day, line)
        self._name = f"{PREFIX}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._files = 0
        self.lines_written = 0
        self.write_errors = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def files_written(self) -> int:
        return self._files

    def append(self, event: Mapping[str, Any]) -> bool:
        """Buffer one event; True when enough lines wait that a flush is due now."""
        line = orjson.dumps(event) + b"\n"
        day = str(event["event_time"])[:10]
        with self._lock:
            self._pending.append((day, line))
            return len(self._pending) >= self.max_lines

    def flush(self) -> int:
        """Write every buffered line (one new file per day); return how many were written.

        On a write error the lines go back to the front of the buffer and the error is raised.
        """
        with self._flush_lock:
            with self._lock:
                batch, self._pending = self._pending, []
            if not batch:
                return 0
            by_day: dict[str, list[bytes]] = {}
            for day, line in batch:
                by_day.setdefault(day, []).append(line)
            written: list[str] = []
            try:
                for day, lines in sorted(by_day.items()):
                    self._write(day, lines)
                    written.append(day)
            except OSError:
                self.write_errors += 1
                kept = [(d, line) for d, line in batch if d not in written]
                with self._lock:
                    self._pending = kept + self._pending
                raise
            self.lines_written += len(batch)
            return len(batch)

    def _write(self, day: str, lines: list[bytes]) -> None:
        folder = self.folder / f"date={day}"
        folder.mkdir(parents=True, exist_ok=True)
        self._files += 1
        name = f"{self._name}-{self._files:06d}.jsonl"
        tmp = folder / f".{name}.tmp"
        try:
            with open(tmp, "wb") as handle:
                handle.write(b"".join(lines))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, folder / name)
        finally:
            tmp.unlink(missing_ok=True)


def read_decisions(folder: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every logged decision under ``folder`` (finished files only), in file and line order."""
    return [orjson.loads(line) for path in sorted(Path(folder).glob(f"date=*/{PREFIX}*.jsonl"))
            for line in path.read_bytes().splitlines() if line]
