"""offer_ai.features.export_reader: the training export back into model rows, without Spark."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from offer_ai.errors import UserError
from offer_ai.features.export_reader import (
    decode_categoricals,
    find_manifest,
    latest_export,
    load_export,
    part_files,
    read_manifest,
)

MANIFEST = {
    "format": "offer-ai training export",
    "run_id": "r1",
    "created_at": "2026-01-02T00:00:00+00:00",
    "columns": [
        {"index": 0, "name": "next_week_purchase_amount", "type": "double"},
        {"index": 1, "name": "country", "type": "int", "categorical": True, "source_type": "string"},
        {"index": 2, "name": "facebook_connected", "type": "int", "categorical": True, "source_type": "boolean"},
        {"index": 3, "name": "last_session_games_played", "type": "bigint"},
        {"index": 4, "name": "offer_type", "type": "int", "categorical": True, "source_type": "string"},
        {"index": 5, "name": "offer_price", "type": "double"},
    ],
    "categorical_encodings": {"country": {"DE": 0, "US": 1}, "facebook_connected": {"false": 0, "true": 1},
                              "offer_type": {"vip_pass": 0, "xmas": 1}},
}
ENCODED = pd.DataFrame({
    "next_week_purchase_amount": [0.0, 9.99, 1.5],
    "country": [1, None, 7],              # 7: a code with no value (and None) -> null
    "facebook_connected": [0, 1, None],
    "last_session_games_played": [3.0, None, 0.0],
    "offer_type": [1, 0, 1],
    "offer_price": [4.99, 49.99, 19.99],
})


def test_codes_are_decoded_to_the_values_they_stand_for():
    rows = decode_categoricals(ENCODED, MANIFEST)
    assert rows["country"].tolist() == ["US", None, None]
    assert rows["facebook_connected"].tolist() == [False, True, pd.NA]
    assert str(rows["facebook_connected"].dtype) == "boolean"
    assert rows["offer_type"].tolist() == ["xmas", "vip_pass", "xmas"]
    assert rows["label_complete"].all()
    assert ENCODED["country"].tolist()[0] == 1  # the input is left as it was


def write(base: Path, frame: pd.DataFrame = ENCODED) -> Path:
    for split in ("train", "validation"):
        for kind in ("parquet", "csv"):
            folder = base / split / kind
            folder.mkdir(parents=True)
            (folder / "_SUCCESS").write_text("")
            (folder / f".part-00000.{kind}.crc").write_bytes(b"\0")
        frame.iloc[:2].to_parquet(base / split / "parquet" / "part-00000.parquet", index=False)
        frame.iloc[2:].to_parquet(base / split / "parquet" / "part-00001.parquet", index=False)
        frame.iloc[:2].to_csv(base / split / "csv" / "part-00000.csv", header=False, index=False, na_rep="")
        frame.iloc[2:].to_csv(base / split / "csv" / "part-00001.csv", header=False, index=False, na_rep="")
    (base / "manifest.json").write_text(json.dumps(MANIFEST))
    return base


def test_side_files_are_skipped_and_parts_come_in_name_order(tmp_path):
    base = write(tmp_path / "r1")
    kind, files = part_files(base / "train")
    assert kind == "parquet" and [f.name for f in files] == ["part-00000.parquet", "part-00001.parquet"]
    kind, files = part_files(base / "train", "csv")
    assert kind == "csv" and [f.name for f in files] == ["part-00000.csv", "part-00001.csv"]
    kind, files = part_files(base / "train" / "csv")  # a SageMaker channel: the files themselves
    assert kind == "csv" and len(files) == 2
    with pytest.raises(UserError, match="No parquet part files"):
        part_files(base / "train" / "csv", "parquet")


def test_parquet_and_csv_copies_read_back_as_the_same_rows(tmp_path):
    base = write(tmp_path / "r1")
    manifest, train_parquet, _ = load_export(base, "parquet")
    _, train_csv, _ = load_export(base, "csv")
    pd.testing.assert_frame_equal(train_parquet, train_csv, check_dtype=False)
    assert train_parquet["country"].tolist() == ["US", None, None] and manifest["run_id"] == "r1"
    assert np.isnan(train_csv["last_session_games_played"].iloc[1])  # an empty CSV field is missing, not 0


def test_the_manifest_is_found_beside_or_above_the_data(tmp_path):
    base = write(tmp_path / "r1")
    assert find_manifest(None, base / "train" / "parquet") == base / "manifest.json"
    assert find_manifest(base / "manifest.json") == base / "manifest.json"
    with pytest.raises(UserError, match="No manifest.json found"):
        find_manifest(tmp_path / "elsewhere" / "a" / "b" / "c")


def test_a_folder_without_a_manifest_is_an_unfinished_export(tmp_path):
    with pytest.raises(UserError, match="unfinished export"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(UserError, match="not an offer-ai training export"):
        read_manifest(tmp_path)


def test_the_latest_export_is_the_newest_by_creation_not_by_name(tmp_path):
    root = tmp_path / "exports" / "training"
    write(root / "b-older")
    newer = write(root / "a-newer")
    manifest = dict(MANIFEST, created_at="2026-01-03T00:00:00+00:00")
    (newer / "manifest.json").write_text(json.dumps(manifest))
    (root / "z-unfinished").mkdir()
    assert latest_export(tmp_path) == newer
    assert latest_export(tmp_path, "b-older") == root / "b-older"
    with pytest.raises(UserError, match="No finished training export"):
        latest_export(tmp_path / "empty")
