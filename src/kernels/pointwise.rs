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
///
/// The returned sum is also the gradient's finiteness check, at the cost of
/// one multiply-add per element: each term is added as `ℓ + 0·g`, which is
/// `ℓ` when `g` is finite and NaN when it is not (IEEE: `0·∞` and `0·NaN` are
/// NaN, so the compiler may not fold `0·g` away). A finite sum therefore
/// guarantees a finite gradient, and the caller scans for the cause only when
/// the sum is not finite.
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
                let g = scale * slope;
                acc[k] += value + g * F::zero();
                gl[k] = g;
            }
        }
        for ((&pi, &ti), gi) in pr.iter().zip(tr).zip(gr) {
            let (value, slope) = term(pi, ti);
            let g = scale * slope;
            acc[0] += value + g * F::zero();
            *gi = g;
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

    #[test]
    fn a_non_finite_slope_makes_the_sum_nan() {
        for bad in [f64::INFINITY, f64::NEG_INFINITY, f64::NAN] {
            for n in [1usize, 8, 13] {
                // Finite terms everywhere; a non-finite slope at the last element only.
                let mut p = vec![0.0; n];
                p[n - 1] = 1.0;
                let mut grad = vec![0.0; n];
                let sum = sum_terms_and_grad(&p, &p, &mut grad, 1.0, |a, _| (a, if a == 1.0 { bad } else { 0.0 }));
                assert!(sum.is_nan(), "n = {n}, slope {bad}");
            }
        }
        let p = [1.0, 2.0];
        let mut grad = [0.0; 2];
        assert_eq!(sum_terms_and_grad(&p, &p, &mut grad, 1.0, |a, _| (a, 1e308)), 3.0);
    }
}
