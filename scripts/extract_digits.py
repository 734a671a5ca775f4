#!/usr/bin/env python3
"""Regenerate data/digits.csv from the copy of the UCI digits that scikit-learn bundles.

Usage:  pip install scikit-learn && python3 scripts/extract_digits.py

scikit-learn ships the UCI "Optical Recognition of Handwritten Digits" test set as
sklearn/datasets/data/digits.csv.gz. This script decompresses it byte for byte (so the result
can be compared with `zcat` or with UCI's optdigits.tes), checks its shape and value ranges, and
prints the class counts and SHA-256 recorded in data/README.md. The examples read the plain CSV
with `include_str!`, so they need no gzip decoder and nothing is downloaded at run time.
"""
import collections
import gzip
import hashlib
import pathlib

import sklearn

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCE = pathlib.Path(sklearn.__file__).parent / "datasets" / "data" / "digits.csv.gz"
TARGET = ROOT / "data" / "digits.csv"


def main():
    raw = gzip.decompress(SOURCE.read_bytes())
    rows = [line.split(b",") for line in raw.splitlines()]
    # 1,797 images of 8x8 pixels counting "on" bits in 4x4 blocks (0..16), then the class 0..9.
    assert len(rows) == 1797, len(rows)
    counts = collections.Counter()
    for i, row in enumerate(rows):
        assert len(row) == 65, (i, len(row))
        values = [int(v) for v in row]
        assert all(0 <= v <= 16 for v in values[:64]), i
        assert 0 <= values[64] <= 9, i
        counts[values[64]] += 1
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_bytes(raw)
    print(f"source: {SOURCE} (scikit-learn {sklearn.__version__})")
    print(f"wrote {TARGET.relative_to(ROOT)}: {len(rows)} rows, {len(raw)} bytes")
    print("class counts:", " ".join(f"{c}:{counts[c]}" for c in range(10)))
    print("sha256:", hashlib.sha256(raw).hexdigest())


if __name__ == "__main__":
    main()
