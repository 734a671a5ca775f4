#!/usr/bin/env python3
"""Times the issue's six loss workloads, and the later losses', in PyTorch (eager) and JAX (jit), f32.

Each timed call computes the loss value and its gradient with respect to the
predictions: PyTorch runs the forward pass and `torch.autograd.grad` (a fresh
gradient each call, as tapeloss's `value_and_grad` returns one), JAX runs
`jax.jit(jax.value_and_grad(f))` and blocks until the result is ready.
Prints one JSON line per (workload, peer):
  {"workload", "peer", "variant", "median_ms", "min_ms", "p90_ms", "repeats", ...}

Run with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset (bench/compare.py does).
"""

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

SEED = 0
N_POINTWISE = 1 << 20  # 1,048,576 elements
CE_SHAPE = (4096, 1000)
TRIPLET_SHAPE = (4096, 3, 128)
PAIR_SHAPE = (4096, 2, 128)
MARGIN = 1.0
HUBER_DELTA = 1.0


def inputs():
    """The same f32 inputs for every peer (and the same distributions as the Rust side)."""
    rng = np.random.default_rng(SEED)
    f32 = np.float32
    return {
        "mse": (rng.standard_normal(N_POINTWISE).astype(f32), rng.standard_normal(N_POINTWISE).astype(f32)),
        "huber": (rng.standard_normal(N_POINTWISE).astype(f32), rng.standard_normal(N_POINTWISE).astype(f32)),
        "bce_logits": (
            (4.0 * rng.standard_normal(N_POINTWISE)).astype(f32),
            rng.uniform(0.0, 1.0, N_POINTWISE).astype(f32),
        ),
        "cross_entropy": (
            rng.standard_normal(CE_SHAPE).astype(f32),
            rng.integers(0, CE_SHAPE[1], CE_SHAPE[0]).astype(np.int64),
        ),
        "triplet": (rng.standard_normal(TRIPLET_SHAPE).astype(f32), None),
        "contrastive": (
            rng.standard_normal(PAIR_SHAPE).astype(f32),
            rng.integers(0, 2, PAIR_SHAPE[0]).astype(f32),
        ),
        "soft_margin": (
            (4.0 * rng.standard_normal(N_POINTWISE)).astype(f32),
            rng.choice(np.array([-1.0, 1.0], f32), N_POINTWISE),
        ),
        "hinge_embedding": (
            rng.uniform(0.0, 2.0, N_POINTWISE).astype(f32),
            rng.choice(np.array([-1.0, 1.0], f32), N_POINTWISE),
        ),
        "kl_div": (
            rng.uniform(-8.0, 0.0, N_POINTWISE).astype(f32),
            rng.uniform(0.0, 1.0, N_POINTWISE).astype(f32),
        ),
        "poisson_nll": (
            rng.standard_normal(N_POINTWISE).astype(f32),
            rng.poisson(1.0, N_POINTWISE).astype(f32),
        ),
        "nll": (
            rng.standard_normal(CE_SHAPE).astype(f32),
            rng.integers(0, CE_SHAPE[1], CE_SHAPE[0]).astype(np.int64),
        ),
        "multi_margin": (
            rng.standard_normal(CE_SHAPE).astype(f32),
            rng.integers(0, CE_SHAPE[1], CE_SHAPE[0]).astype(np.int64),
        ),
    }


def measure(call, min_repeats, min_seconds, warmup):
    """Median (and spread) of single-call wall times, after warm-up."""
    for _ in range(warmup):
        call()
    times = []
    start = time.perf_counter()
    while len(times) < min_repeats or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
        if len(times) >= 100 * min_repeats:
            break
    times.sort()
    return {
        "median_ms": 1e3 * statistics.median(times),
        "min_ms": 1e3 * times[0],
        "p90_ms": 1e3 * times[int(0.9 * (len(times) - 1))],
        "repeats": len(times),
    }


def torch_workloads(data):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(2)

    def leaf(a):
        return torch.from_numpy(a).requires_grad_(True)

    def const(a):
        return torch.from_numpy(a)

    out = {}

    p, t = leaf(data["mse"][0]), const(data["mse"][1])
    out["mse"] = [("F.mse_loss", p, lambda p=p, t=t: F.mse_loss(p, t))]

    p, t = leaf(data["huber"][0]), const(data["huber"][1])
    out["huber"] = [("F.huber_loss", p, lambda p=p, t=t: F.huber_loss(p, t, delta=HUBER_DELTA))]

    p, t = leaf(data["bce_logits"][0]), const(data["bce_logits"][1])
    out["bce_logits"] = [("F.binary_cross_entropy_with_logits", p, lambda p=p, t=t: F.binary_cross_entropy_with_logits(p, t))]

    p, t = leaf(data["cross_entropy"][0]), const(data["cross_entropy"][1])
    out["cross_entropy"] = [("F.cross_entropy", p, lambda p=p, t=t: F.cross_entropy(p, t))]

    x = leaf(data["triplet"][0])

    def triplet_definition(x=x):
        a, pos, neg = x[:, 0], x[:, 1], x[:, 2]
        d_ap = (a - pos).pow(2).sum(1).sqrt()
        d_an = (a - neg).pow(2).sum(1).sqrt()
        return torch.relu(d_ap - d_an + MARGIN).mean()

    def triplet_builtin(x=x):
        # pairwise_distance adds eps=1e-6 to the difference: not quite the plain Euclidean definition.
        return F.triplet_margin_loss(x[:, 0], x[:, 1], x[:, 2], margin=MARGIN)

    out["triplet"] = [("definition", x, triplet_definition), ("F.triplet_margin_loss", x, triplet_builtin)]

    x, y = leaf(data["contrastive"][0]), const(data["contrastive"][1])

    def contrastive_definition(x=x, y=y):
        d = (x[:, 0] - x[:, 1]).pow(2).sum(1).sqrt()
        return (y * d.pow(2) + (1 - y) * torch.relu(MARGIN - d).pow(2)).mean()

    out["contrastive"] = [("definition", x, contrastive_definition)]

    p, t = leaf(data["soft_margin"][0]), const(data["soft_margin"][1])
    out["soft_margin"] = [("F.soft_margin_loss", p, lambda p=p, t=t: F.soft_margin_loss(p, t))]

    p, t = leaf(data["hinge_embedding"][0]), const(data["hinge_embedding"][1])
    out["hinge_embedding"] = [
        ("F.hinge_embedding_loss", p, lambda p=p, t=t: F.hinge_embedding_loss(p, t, margin=MARGIN))
    ]

    p, t = leaf(data["kl_div"][0]), const(data["kl_div"][1])
    out["kl_div"] = [("F.kl_div", p, lambda p=p, t=t: F.kl_div(p, t, reduction="batchmean"))]

    p, t = leaf(data["poisson_nll"][0]), const(data["poisson_nll"][1])
    out["poisson_nll"] = [("F.poisson_nll_loss", p, lambda p=p, t=t: F.poisson_nll_loss(p, t))]

    p, t = leaf(data["nll"][0]), const(data["nll"][1])
    out["nll"] = [("F.nll_loss", p, lambda p=p, t=t: F.nll_loss(p, t))]

    p, t = leaf(data["multi_margin"][0]), const(data["multi_margin"][1])
    out["multi_margin"] = [("F.multi_margin_loss", p, lambda p=p, t=t: F.multi_margin_loss(p, t, margin=MARGIN))]

    calls = {}
    for name, variants in out.items():
        calls[name] = []
        for variant, leaf_tensor, loss in variants:

            def call(leaf_tensor=leaf_tensor, loss=loss):
                value = loss()
                (grad,) = torch.autograd.grad(value, [leaf_tensor])
                return value.item(), grad

            calls[name].append((variant, call))
    meta = {"version": torch.__version__, "threads": torch.get_num_threads()}
    return calls, meta


def jax_workloads(data):
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", False)
    fns = {
        "mse": lambda p, t: jnp.mean((p - t) ** 2),
        "huber": lambda p, t: jnp.mean(
            jnp.where(jnp.abs(p - t) <= HUBER_DELTA, 0.5 * (p - t) ** 2, HUBER_DELTA * (jnp.abs(p - t) - 0.5 * HUBER_DELTA))
        ),
        "bce_logits": lambda x, y: jnp.mean(jnp.maximum(x, 0) - x * y + jnp.log1p(jnp.exp(-jnp.abs(x)))),
        "cross_entropy": lambda z, k: -jnp.mean(
            jnp.take_along_axis(jax.nn.log_softmax(z, axis=1), k[:, None], axis=1)
        ),
        "triplet": lambda x, _: jnp.mean(
            jax.nn.relu(
                jnp.sqrt(jnp.sum((x[:, 0] - x[:, 1]) ** 2, axis=1))
                - jnp.sqrt(jnp.sum((x[:, 0] - x[:, 2]) ** 2, axis=1))
                + MARGIN
            )
        ),
        "contrastive": lambda x, y: jnp.mean(
            y * jnp.sum((x[:, 0] - x[:, 1]) ** 2, axis=1)
            + (1 - y) * jax.nn.relu(MARGIN - jnp.sqrt(jnp.sum((x[:, 0] - x[:, 1]) ** 2, axis=1))) ** 2
        ),
        "soft_margin": lambda x, y: jnp.mean(jax.nn.softplus(-y * x)),
        "hinge_embedding": lambda x, y: jnp.mean(jnp.where(y == 1, x, jax.nn.relu(MARGIN - x))),
        "kl_div": lambda q, p: jnp.sum(jax.scipy.special.xlogy(p, p) - p * q) / q.shape[0],
        "poisson_nll": lambda x, t: jnp.mean(jnp.exp(x) - t * x),
        "nll": lambda z, k: -jnp.mean(jnp.take_along_axis(z, k[:, None], axis=1)),
        "multi_margin": lambda x, k: jnp.mean(
            jnp.sum(
                jnp.where(
                    jnp.arange(x.shape[1])[None, :] == k[:, None],
                    0.0,
                    jax.nn.relu(MARGIN - jnp.take_along_axis(x, k[:, None], axis=1) + x),
                ),
                axis=1,
            )
            / x.shape[1]
        ),
    }
    calls = {}
    for name, f in fns.items():
        p, t = data[name]
        p = jax.device_put(p)
        t = jax.device_put(t if t is not None else np.zeros((), np.float32))
        if name in ("cross_entropy", "nll", "multi_margin"):
            t = t.astype(jnp.int32)
        vg = jax.jit(jax.value_and_grad(f))

        def call(vg=vg, p=p, t=t):
            value, grad = vg(p, t)
            return jax.block_until_ready((value, grad))

        calls[name] = [("jit(value_and_grad)", call)]
    meta = {"version": jax.__version__, "devices": str(jax.devices())}
    return calls, meta


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", default="torch,jax", help="comma-separated: torch,jax")
    parser.add_argument(
        "--workloads",
        default="mse,huber,bce_logits,cross_entropy,triplet,contrastive,soft_margin,hinge_embedding,kl_div,poisson_nll,"
        "nll,multi_margin",
    )
    parser.add_argument("--min-repeats", type=int, default=50)
    parser.add_argument("--min-seconds", type=float, default=1.0)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()

    data = inputs()
    wanted = args.workloads.split(",")
    env = {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    for peer in args.peers.split(","):
        calls, meta = {"torch": torch_workloads, "jax": jax_workloads}[peer](data)
        for name in wanted:
            for variant, call in calls[name]:
                stats = measure(call, args.min_repeats, args.min_seconds, args.warmup)
                load = os.getloadavg()[0]
                row = {"workload": name, "peer": peer, "variant": variant, **stats, **meta, "env": env, "loadavg": load}
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    sys.exit(main())
