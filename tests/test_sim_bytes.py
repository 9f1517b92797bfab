"""The generator's bytes are pinned: the same options and seed give exactly the recorded files.

The digests below were recorded with the generator as it was before it was split into modules
(commit 8fac068, `lib/offer_ai/sim/simulation.py`), so this proves the split kept its behaviour,
and it keeps guarding it: any change to a random draw's order, a line's shape, the truth records,
the folders, or the summary changes a digest. A deliberate change of the output must update the
digests in the same commit, and say why.

Digest: SHA-256 over the generated files sorted by relative path, each fed as
`path + NUL + 8-byte big-endian length + content`. Gzipped parts are fed decompressed (the
compressed bytes would also depend on the zlib build); their header is checked separately for
what makes gzip reproducible: no file name and mtime 0. In `_generator.json` the output path,
which differs per run, is replaced by "<out>".
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
from pathlib import Path
from typing import Any

import orjson
import pytest

from offer_ai.model.offers import Offer
from offer_ai.sim import GeneratorOptions, generate

#: The catalogue of conf/offers.yaml when the digests were recorded, inline so that a catalogue
#: edit does not move these digests.
OFFERS = (
    Offer("starter_pack", 0.99),
    Offer("starter_pack", 2.99),
    Offer("coins_bundle", 4.99),
    Offer("coins_bundle", 9.99),
    Offer("xmas", 4.99),
    Offer("xmas", 19.99),
    Offer("vip_pass", 9.99),
    Offer("vip_pass", 49.99),
)
MESSY = {"duplicate_fraction": 0.05, "out_of_order_fraction": 0.05, "malformed_fraction": 0.05}
CASES: dict[str, tuple[dict[str, Any], str]] = {
    "clean, one worker, three weeks": (
        {"users": 40, "days": 21, "start_date": dt.date(2026, 1, 1), "seed": 7},
        "f5d2f9ca88de449296cc6345d8a1c76cd52b572fe2f6a534158b6616266b9967",
    ),
    "messy, gzip, two workers, across new year": (
        {"users": 40, "days": 10, "start_date": dt.date(2025, 12, 27), "seed": 5, "gzip": True, "workers": 2, **MESSY},
        "0033ad782e45160b64a5c19e950a1d33f9648411bff8028f359d63dfe16c8d81",
    ),
    "messy, plain, one worker, across new year": (
        {"users": 40, "days": 10, "start_date": dt.date(2025, 12, 27), "seed": 5, **MESSY},
        "1c13997b0e936ee00c2fc1ca97fbd57e4d696b209fe7b1af5c782298bb11ac93",
    ),
    "very messy, two workers, across february's end": (
        {
            "users": 25,
            "days": 9,
            "start_date": dt.date(2026, 2, 25),
            "seed": 123,
            "duplicate_fraction": 0.3,
            "out_of_order_fraction": 0.4,
            "malformed_fraction": 0.25,
            "workers": 2,
        },
        "5be08f248c1fc500701e7f6861a91fefcda0948480df5bfde8e6e41c6a5110b4",
    ),
}
#: RFC 1952 header: magic, deflate, no flags (no file name), mtime 0, no extra flags, OS unknown.
REPRODUCIBLE_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


def _digest(out: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        rel = path.relative_to(out).as_posix()
        data = path.read_bytes()
        if rel == "_generator.json":
            data = data.replace(orjson.dumps(str(out)), b'"<out>"')
        elif rel.endswith(".gz"):
            assert data[:10] == REPRODUCIBLE_GZIP_HEADER, rel
            data = gzip.decompress(data)
        h.update(rel.encode() + b"\0" + len(data).to_bytes(8, "big") + data)
    return h.hexdigest()


@pytest.mark.parametrize("changes, expected", CASES.values(), ids=list(CASES))
def test_the_same_options_give_the_recorded_bytes(tmp_path: Path, changes: dict[str, Any], expected: str) -> None:
    out = tmp_path / "raw"
    summary = generate(GeneratorOptions(out=str(out), offers=OFFERS, **changes))
    if changes.get("duplicate_fraction"):  # the messy paths really ran
        assert summary["duplicates"] > 0 and summary["out_of_order"] > 0 and summary["malformed"] > 0
    truth_files = {p.name for p in (out / "_truth").iterdir()}
    assert truth_files == {f"decisions-{w:05d}.jsonl" for w in range(summary["workers"])}
    assert _digest(out) == expected


def test_the_digest_sees_a_one_byte_change(tmp_path: Path) -> None:
    """The check itself: flipping one byte of one part file changes the digest."""
    out = tmp_path / "raw"
    generate(GeneratorOptions(out=str(out), offers=OFFERS, users=3, days=2, seed=1))
    before = _digest(out)
    part = sorted(out.glob("date=*/part-*.jsonl"))[0]
    text = part.read_bytes()
    part.write_bytes(text[:-2] + (b"0" if text[-2:-1] != b"0" else b"1") + text[-1:])
    assert _digest(out) != before
