#!/usr/bin/env python3
"""Generate tests/fixtures/*.json: loss values and gradients computed by PyTorch in float64.

Usage:  pip install torch numpy && python3 scripts/make_fixtures.py

Each module scripts/fixtures/<family>.py defines NAME and cases(); every case is a dict
{name, loss, options, predictions, targets, value, grad} with arrays as {shape, data}.
The Rust tests (tests/pytorch_*.rs) read these files, so `cargo test` needs no Python.
"""
import importlib
import json
import pathlib
import sys

import torch

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))


def main():
    torch.set_default_dtype(torch.float64)
    out_dir = ROOT / "tests" / "fixtures"
    out_dir.mkdir(parents=True, exist_ok=True)
    only = set(sys.argv[1:])
    for path in sorted((ROOT / "scripts" / "fixtures").glob("[!_]*.py")):
        module = importlib.import_module(f"fixtures.{path.stem}")
        if only and module.NAME not in only:
            continue
        torch.manual_seed(20261129)
        cases = module.cases()
        doc = {
            "generator": "scripts/make_fixtures.py",
            "torch_version": torch.__version__,
            "dtype": "float64",
            "cases": cases,
        }
        target = out_dir / f"{module.NAME}.json"
        # One case per line keeps diffs readable and files small.
        header = json.dumps({k: v for k, v in doc.items() if k != "cases"})[:-1]
        body = ",\n".join(json.dumps(c, separators=(",", ":")) for c in cases)
        target.write_text(f'{header}, "cases": [\n{body}\n]}}\n')
        print(f"{target.relative_to(ROOT)}: {len(cases)} cases")


if __name__ == "__main__":
    main()
