#!/usr/bin/env python3
"""Runs tapeloss and its peers on the same workloads and prints the ratio table.

    python3 bench/compare.py [--rounds N] [--min-seconds S] [--json-out FILE]

1. `cargo run --release --example bench_workloads` (tapeloss: closed form and tape);
2. `python3 bench/peers.py` (PyTorch eager and JAX jit), with OPENBLAS_CORETYPE
   and OPENBLAS_L2_SIZE unset for that command only;
then prints a markdown table of medians (ms) with
  - tapeloss / best peer: value_and_grad_into over the fastest peer variant (< 1 is faster),
  - allocating / best peer: value_and_grad (which returns a new gradient, as the peers do) over it,
  - tape / closed: value_and_grad_on_tape over value_and_grad_into.
The two sides run one after the other, never at the same time. With --rounds N
they alternate N times and each cell is the lowest of its N medians: on a
machine shared with other jobs, that discards the rounds a load spike hit.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ORDER = ["mse", "huber", "bce_logits", "cross_entropy", "triplet", "contrastive", "soft_margin", "hinge_embedding",
         "kl_div", "poisson_nll", "nll", "multi_margin"]
LABEL = {
    "mse": "MSE, 1,048,576",
    "huber": "Huber δ=1, 1M",
    "bce_logits": "BCE on logits, 1M",
    "cross_entropy": "cross-entropy, 4096×1000, class indices",
    "triplet": "triplet, 4096×(3×128)",
    "contrastive": "contrastive, 4096 pairs of 128",
    "soft_margin": "soft margin, 1M",
    "hinge_embedding": "hinge embedding Δ=1, 1M",
    "kl_div": "KL divergence (batchmean), 1M",
    "poisson_nll": "Poisson NLL on log-rates, 1M",
    "nll": "NLL, 4096×1000, class indices",
    "multi_margin": "multi-margin, 4096×1000, class indices",
}


def run(cmd, env=None):
    print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
    out = subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.PIPE, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def fmt(ms):
    return "—" if ms is None else (f"{ms:.3f}" if ms < 10 else f"{ms:.1f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-seconds", default="1.0")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json-out", help="also write every JSON line here")
    args = parser.parse_args()

    peer_env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    all_rows = []
    for r in range(args.rounds):
        ours = run(["cargo", "run", "--quiet", "--release", "--example", "bench_workloads", "--",
                    "--min-seconds", args.min_seconds])
        peers = run([sys.executable, "bench/peers.py", "--min-seconds", args.min_seconds], env=peer_env)
        all_rows += [{**row, "round": r} for row in ours + peers]
    if args.json_out:
        Path(args.json_out).write_text("".join(json.dumps(r) + "\n" for r in all_rows))
    # Per (workload, peer, variant): the round with the lowest median.
    best = {}
    for row in all_rows:
        key = (row["workload"], row["peer"], row.get("variant"))
        if key not in best or row.get("median_ms", float("inf")) < best[key].get("median_ms", float("inf")):
            best[key] = row
    rows = list(best.values())

    def get(workload, peer, variant=None):
        found = [r for r in rows if r["workload"] == workload and r["peer"] == peer and "median_ms" in r]
        found = [r for r in found if variant is None or r["variant"] == variant]
        return min(found, key=lambda r: r["median_ms"]) if found else None

    print("| workload | tapeloss `value_and_grad_into` | tapeloss `value_and_grad` | tape | PyTorch eager | JAX jit "
          "| best peer | tapeloss / best peer | allocating / best peer | tape / closed |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for w in ORDER:
        into = get(w, "tapeloss", "value_and_grad_into")
        alloc = get(w, "tapeloss", "value_and_grad")
        tape = get(w, "tapeloss_tape")
        torch_rows = [r for r in rows if r["workload"] == w and r["peer"] == "torch" and "median_ms" in r]
        torch_txt = ", ".join(
            fmt(r["median_ms"]) + ("" if len(torch_rows) == 1 else f" ({r['variant']})") for r in torch_rows
        ) or "—"
        jax = get(w, "jax")
        peers = [r for r in rows if r["workload"] == w and r["peer"] in ("torch", "jax") and "median_ms" in r]
        best = min(peers, key=lambda r: r["median_ms"]) if peers else None
        best_txt = f"{fmt(best['median_ms'])} ({best['peer']}, {best['variant']})" if best else "—"
        ms = lambda r: r["median_ms"] if r else None
        ratio = f"{into['median_ms'] / best['median_ms']:.2f}" if into and best else "—"
        alloc_ratio = f"{alloc['median_ms'] / best['median_ms']:.2f}" if alloc and best else "—"
        tape_ratio = f"{tape['median_ms'] / into['median_ms']:.2f}" if tape and into else "—"
        note = "" if into else " (no tapeloss result)"
        print(f"| {LABEL[w]}{note} | {fmt(ms(into))} | {fmt(ms(alloc))} | {fmt(ms(tape))} | {torch_txt} | "
              f"{fmt(ms(jax))} | {best_txt} | {ratio} | {alloc_ratio} | {tape_ratio} |")
    ctx = next((r for r in rows if r.get("peer") == "tapeloss" and "threads" in r), {})
    loads = [r["loadavg"] for r in all_rows if isinstance(r.get("loadavg"), (int, float))]
    print()
    rounds = "" if args.rounds == 1 else f"Lowest of {args.rounds} rounds' medians. "
    print(f"{rounds}Medians in ms. tapeloss: {ctx.get('threads', '?')} rayon threads, CPU SIMD level {ctx.get('simd', '?')} "
          "(streaming kernels use AVX2 at most); "
          f"load average during the run {min(loads, default=float('nan')):.2f}–{max(loads, default=float('nan')):.2f}.")


if __name__ == "__main__":
    sys.exit(main())
