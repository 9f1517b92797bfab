"""The promoted models' folder: one immutable folder per model version and a CURRENT pointer.

    <models root>/versions/<model version>/   model.json, metadata.json, promotion.json
    <models root>/CURRENT                     the version being served (one line)
    <models root>/promotions.jsonl            every promotion, appended (who served what, when)

Why a pointer to versioned folders: a model folder is never rewritten in place, so a service
loading version A can never read half of version B; promoting is replacing one small file,
which ``os.replace`` does atomically (readers see the old name or the new one, never a torn
write), and a rollback is pointing back. Every write goes to a temporary name starting with
'.' first, then is renamed. The root may be a shared filesystem (NFS/EFS) that several
service hosts read; rename is atomic there too.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from offer_ai.errors import UserError
from offer_ai.model.model import METADATA_FILE, MODEL_FILE, OfferModel

CURRENT = "CURRENT"
VERSIONS = "versions"
PROMOTION_FILE = "promotion.json"
HISTORY = "promotions.jsonl"
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (a crash right after must not bring the old name back)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a '.'-prefixed temporary file and a rename."""
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def version_dir(root: str | Path, version: str) -> Path:
    if not _VERSION.match(version):
        raise UserError(f"'{version}' is not a model version (letters, digits, '.', '_' or '-').")
    return Path(root) / VERSIONS / version


def current_version(root: str | Path) -> str | None:
    """The version CURRENT names, or None before the first promotion."""
    try:
        text = (Path(root) / CURRENT).read_text().strip()
    except FileNotFoundError:
        return None
    return text or None


def installed_versions(root: str | Path) -> list[str]:
    folder = Path(root) / VERSIONS
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")) if folder.is_dir() else []


def install(root: str | Path, model_dir: str | Path) -> str:
    """Copy a model folder to ``versions/<model version>`` (whole, then renamed); return the version.

    The version is the model's own ``model_version`` (a hash of its booster), so installing the
    same model twice is a no-op and two models can never share a folder.
    """
    model = OfferModel.load(model_dir)  # refuses an incomplete or inconsistent artifact
    target = version_dir(root, model.model_version)
    if (target / MODEL_FILE).is_file():
        return model.model_version
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{model.model_version}.{uuid.uuid4().hex}.tmp"
    try:
        staging.mkdir()
        for name in (MODEL_FILE, METADATA_FILE):
            shutil.copyfile(Path(model_dir) / name, staging / name)
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / MODEL_FILE).is_file():  # not another promotion that won the race
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _fsync_dir(target.parent)
    return model.model_version


def record(root: str | Path, version: str) -> dict[str, Any] | None:
    """The promotion record (the guard's figures) of an installed version, if it was promoted."""
    path = version_dir(root, version) / PROMOTION_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def point_current(root: str | Path, version: str, details: dict[str, Any]) -> dict[str, Any]:
    """Make ``version`` (installed) the one served: its record, the history line, then CURRENT."""
    folder = version_dir(root, version)
    if not (folder / MODEL_FILE).is_file():
        raise UserError(f"Model version {version} is not installed under {Path(root) / VERSIONS}.")
    entry = {"version": version, "previous": current_version(root),
             "promoted_at": dt.datetime.now(dt.timezone.utc).isoformat(), **details}
    write_atomically(folder / PROMOTION_FILE, (json.dumps(entry, indent=2, sort_keys=True) + "\n").encode())
    with open(Path(root) / HISTORY, "a") as history:  # append-only audit trail; one line per promotion
        history.write(json.dumps(entry, sort_keys=True) + "\n")
    write_atomically(Path(root) / CURRENT, f"{version}\n".encode())
    return entry


def load_current(root: str | Path, nthread: int = 1) -> tuple[str, OfferModel] | None:
    """(version, model) of what CURRENT names; None before the first promotion."""
    version = current_version(root)
    if version is None:
        return None
    return version, OfferModel.load(version_dir(root, version), nthread=nthread)
