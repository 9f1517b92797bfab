"""Reading the training export (DESIGN §3, ``offer_ai.features.training_export``) back into model rows.

The export stores categoricals as integer codes (CSV and Parquet alike) and the code tables in
``manifest.json``; the model (``offer_ai.model.model``) one-hot encodes the *values*. This module
turns an export split back into rows shaped like ``training_examples`` (``country`` a string,
``facebook_connected`` a boolean), so the notebook, the tests and the SageMaker entry point all
feed the model the same thing.

Deliberately light: pandas, numpy and the standard library only (pyarrow for Parquet, CSV
otherwise), no Spark and no offer_ai module that needs more — the SageMaker training container
imports it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from offer_ai.errors import UserError

MANIFEST = "manifest.json"
#: What a run id may be: it names a folder under exports/training/ and an S3 prefix.
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
RUN_ID_RULE = "letters, digits, '.', '_' or '-' (at most 128), starting with a letter or digit"
FORMATS = ("parquet", "csv")
_SUFFIXES = {"parquet": (".parquet",), "csv": (".csv",)}


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest at ``path`` (the file, or the folder that holds it)."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST
    if not path.is_file():
        raise UserError(f"There is no export manifest at {path}: a folder without one is an unfinished export.")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != "offer-ai training export":
        raise UserError(f"{path} is not an offer-ai training export manifest.")
    return manifest


def find_manifest(*folders: str | Path | None) -> Path:
    """The first ``manifest.json`` in a folder or up to two levels above it.

    Locally a split folder is ``<export>/<split>/<format>`` (manifest two levels up); in a
    SageMaker job the manifest arrives as its own channel folder.
    """
    tried: list[str] = []
    for folder in folders:
        if folder is None:
            continue
        start = Path(folder)
        for candidate in (start, *list(start.parents)[:2]):
            path = candidate if candidate.is_file() else candidate / MANIFEST
            tried.append(str(path))
            if path.is_file():
                return path
    raise UserError(f"No {MANIFEST} found (looked at {', '.join(tried) or 'nothing'}); pass --manifest.")


def is_part_file(name: str, fmt: str) -> bool:
    """A data file of format ``fmt``, not one of Spark's ``_SUCCESS``/``.crc`` side files."""
    return not name.startswith((".", "_")) and name.endswith(_SUFFIXES[fmt])


def part_files(folder: str | Path, fmt: str = "auto") -> tuple[str, list[Path]]:
    """(format, data files) of one split folder, in name order (the export's row order).

    ``folder`` may hold the files themselves (a SageMaker channel) or ``parquet/`` and
    ``csv/`` subfolders (the export's split folder). Spark's ``_SUCCESS`` and ``.crc`` side
    files are skipped. ``auto`` prefers Parquet (it carries column names) when pyarrow is
    importable.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"Training data folder {folder} does not exist.")
    if fmt not in ("auto", *FORMATS):
        raise UserError(f"format must be auto, parquet or csv, got {fmt!r}.")
    order = list(FORMATS) if fmt == "auto" and _has_pyarrow() else ["csv"] if fmt == "auto" else [fmt]
    for kind in order:
        for place in (folder / kind, folder):
            if place.is_dir():
                files = sorted(
                    p for p in place.iterdir()
                    if p.is_file() and is_part_file(p.name, kind)
                )
                if files:
                    return kind, files
    raise UserError(f"No {' or '.join(order)} part files in {folder}.")


def _has_pyarrow() -> bool:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def read_split(folder: str | Path, manifest: Mapping[str, Any], fmt: str = "auto") -> pd.DataFrame:
    """All rows of one split with categoricals decoded; column order as in the manifest."""
    kind, files = part_files(folder, fmt)
    names = [c["name"] for c in manifest["columns"]]
    if kind == "parquet":
        frames = [pd.read_parquet(f) for f in files]
    else:
        # Empty field = missing (the export's nullValue); no header, label first.
        frames = [pd.read_csv(f, header=None, names=names, na_values=[""], keep_default_na=False) for f in files]
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=names)
    missing = [n for n in names if n not in rows.columns]
    if missing:
        raise UserError(f"{folder}: the data lacks manifest column(s) {', '.join(missing)}.")
    return decode_categoricals(rows, manifest)


def decode_categoricals(rows: pd.DataFrame, manifest: Mapping[str, Any]) -> pd.DataFrame:
    """Integer codes back to the values they stand for; a null or unknown code becomes null.

    Boolean sources come back as pandas' nullable ``boolean``, text as Python strings (object),
    exactly as in ``training_examples``.
    """
    out = rows.copy()
    encodings: Mapping[str, Mapping[str, int]] = manifest.get("categorical_encodings", {})
    for column in manifest["columns"]:
        name = column["name"]
        if not column.get("categorical") or name not in out.columns:
            continue
        decode = {int(code): value for value, code in encodings[name].items()}
        codes = pd.to_numeric(out[name], errors="coerce")
        values = [decode.get(int(c)) if not np.isnan(c) else None for c in codes.to_numpy(dtype=float, na_value=np.nan)]
        if column.get("source_type") == "boolean":
            out[name] = pd.array([None if v is None else v == "true" for v in values], dtype="boolean")
        else:
            out[name] = pd.Series(values, index=out.index, dtype=object)
    out["label_complete"] = True  # the export holds complete rows only (DESIGN §4)
    return out


def load_export(export_dir: str | Path, fmt: str = "auto") -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """(manifest, train rows, validation rows) of one export folder ``<root>/<run id>``."""
    export_dir = Path(export_dir)
    manifest = read_manifest(export_dir)
    return manifest, read_split(export_dir / "train", manifest, fmt), read_split(export_dir / "validation", manifest, fmt)


def latest_export(lake_root: str | Path, run_id: str | None = None) -> Path:
    """``<lake>/exports/training/<run id>``; without a run id the newest finished export.

    Newest by the manifest's ``created_at``: folder names sort by data time, not by when the
    export was written.
    """
    root = Path(lake_root) / "exports" / "training"
    if run_id is not None:
        path = root / run_id
        read_manifest(path)
        return path
    finished = [p for p in root.glob("*") if (p / MANIFEST).is_file()] if root.is_dir() else []
    if not finished:
        raise UserError(f"No finished training export under {root}: run jobs/build_features.py first.")
    return max(finished, key=lambda p: (read_manifest(p).get("created_at") or "", p.name))
