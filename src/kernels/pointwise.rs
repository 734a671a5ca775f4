//! Fused single-pass kernels for losses that are a sum of per-element terms
//! ℓ(pᵢ, tᵢ): the value, and the value with the gradient, reading each input
//! once.
//!
//! Sums use `LANES` independent accumulators inside blocks of `BLOCK`
//! elements and add the block sums in a fixed order: that vectorises, is more
//! accurate than one running sum, and gives the same bits on every run.

use crate::float::Float;

/// Independent partial sums per block.
const LANES: usize = 8;
/// Elements per block.
const BLOCK: usize = 1024;

/// Σᵢ ℓ(pᵢ, tᵢ).
#[inline]
pub(crate) fn sum_terms<F: Float>(p: &[F], t: &[F], term: impl Fn(F, F) -> F) -> F {
    debug_assert_eq!(p.len(), t.len());
    let mut total = F::zero();
    for (pb, tb) in p.chunks(BLOCK).zip(t.chunks(BLOCK)) {
        let mut acc = [F::zero(); LANES];
        let (pc, pr) = pb.split_at(pb.len() / LANES * LANES);
        let (tc, tr) = tb.split_at(pc.len());
        for (pl, tl) in pc.chunks_exact(LANES).zip(tc.chunks_exact(LANES)) {
            for k in 0..LANES {
                acc[k] += term(pl[k], tl[k]);
            }
        }
        for (&pi, &ti) in pr.iter().zip(tr) {
            acc[0] += term(pi, ti);
        }
        total += acc.iter().fold(F::zero(), |s, &a| s + a);
    }
    total
}

/// Σᵢ ℓ(pᵢ, tᵢ), writing `gradᵢ = scale · ∂ℓ/∂pᵢ` in the same pass; `term`
/// returns `(ℓ, ∂ℓ/∂p)`.
#[inline]
pub(crate) fn sum_terms_and_grad<F: Float>(
    p: &[F],
    t: &[F],
    grad: &mut [F],
    scale: F,
    term: impl Fn(F, F) -> (F, F),
) -> F {
    debug_assert!(p.len() == t.len() && p.len() == grad.len());
    let mut total = F::zero();
    for ((pb, tb), gb) in p.chunks(BLOCK).zip(t.chunks(BLOCK)).zip(grad.chunks_mut(BLOCK)) {
        let mut acc = [F::zero(); LANES];
        let split = pb.len() / LANES * LANES;
        let (pc, pr) = pb.split_at(split);
        let (tc, tr) = tb.split_at(split);
        let (gc, gr) = gb.split_at_mut(split);
        for ((pl, tl), gl) in pc
            .chunks_exact(LANES)
            .zip(tc.chunks_exact(LANES))
            .zip(gc.chunks_exact_mut(LANES))
        {
            for k in 0..LANES {
                let (value, slope) = term(pl[k], tl[k]);
                acc[k] += value;
                gl[k] = scale * slope;
            }
        }
        for ((&pi, &ti), gi) in pr.iter().zip(tr).zip(gr) {
            let (value, slope) = term(pi, ti);
            acc[0] += value;
            *gi = scale * slope;
        }
        total += acc.iter().fold(F::zero(), |s, &a| s + a);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_match_a_plain_loop_with_any_remainder() {
        for n in [0usize, 1, 7, 8, 9, 1023, 1024, 1025, 5000] {
            let p: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin()).collect();
            let t: Vec<f64> = (0..n).map(|i| (i as f64 * 0.11).cos()).collect();
            let naive: f64 = p.iter().zip(&t).map(|(a, b)| (a - b) * (a - b)).sum();
            let fused = sum_terms(&p, &t, |a, b| (a - b) * (a - b));
            assert!((fused - naive).abs() <= 1e-12 * naive.abs().max(1.0), "n = {n}");
            let mut grad = vec![0.0; n];
            let fused2 = sum_terms_and_grad(&p, &t, &mut grad, 0.5, |a, b| ((a - b) * (a - b), 2.0 * (a - b)));
            assert_eq!(fused, fused2);
            for i in 0..n {
                assert_eq!(grad[i], 0.5 * 2.0 * (p[i] - t[i]));
            }
        }
    }
}
