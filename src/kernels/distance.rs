//! Row kernels for losses on embeddings (contrastive, triplet): squared
//! Euclidean distances between rows of `D` elements, and the gradient rows
//! `c·(a − b)` that follow from them.
//!
//! Distances use `LANES` independent partial sums, added pairwise in a fixed
//! order: that vectorises without special flags and gives the same bits on
//! every run. A row of a few hundred elements stays in L1 between the
//! distance pass and the gradient pass, so each input is read from memory
//! once.

use crate::float::Float;

/// Independent partial sums per distance: one AVX2 register of `f32` (16
/// lanes measured no faster on rows of 128).
const LANES: usize = 8;

/// `tail`, then the lanes in order. (A pairwise fold made LLVM vectorise the
/// main loops two floats at a time, seen in a profile, as in
/// `pointwise::fold`.)
#[inline(always)]
fn fold<F: Float>(acc: [F; LANES], tail: F) -> F {
    acc.iter().fold(tail, |sum, &lane| sum + lane)
}

/// Σₖ (aₖ − bₖ)².
#[inline(always)]
pub(crate) fn squared_distance<F: Float>(a: &[F], b: &[F]) -> F {
    debug_assert_eq!(a.len(), b.len());
    // Fixed-size chunks: LLVM vectorised `chunks_exact` slices here two
    // floats at a time (seen in a profile), arrays a register at a time.
    let (ac, ar) = a.as_chunks::<LANES>();
    let (bc, br) = b.as_chunks::<LANES>();
    let mut acc = [F::zero(); LANES];
    for (al, bl) in ac.iter().zip(bc) {
        for k in 0..LANES {
            let d = al[k] - bl[k];
            acc[k] += d * d;
        }
    }
    let tail = ar.iter().zip(br).fold(F::zero(), |s, (&x, &y)| s + (x - y) * (x - y));
    fold(acc, tail)
}

/// `(Σₖ (aₖ − pₖ)², Σₖ (aₖ − nₖ)²)`. Two passes over `a`, which stays in L1:
/// with both sums in one loop LLVM packed `(a − p, a − n)` pairs into
/// 128-bit vectors (seen in a profile), about twice as slow.
#[inline(always)]
pub(crate) fn squared_distances_from<F: Float>(a: &[F], p: &[F], n: &[F]) -> (F, F) {
    debug_assert!(a.len() == p.len() && a.len() == n.len());
    (squared_distance(a, p), squared_distance(a, n))
}

/// `ga = c·(a − b)` and `gb = −ga`: the gradient rows of any function
/// `f(‖a − b‖)` with respect to both ends, given `c = f'(‖a − b‖) / ‖a − b‖`.
#[inline(always)]
pub(crate) fn write_difference<F: Float>(a: &[F], b: &[F], c: F, ga: &mut [F], gb: &mut [F]) {
    debug_assert!(a.len() == b.len() && a.len() == ga.len() && a.len() == gb.len());
    for (((&x, &y), u), v) in a.iter().zip(b).zip(ga.iter_mut()).zip(gb.iter_mut()) {
        let g = c * (x - y);
        *u = g;
        *v = -g;
    }
}

/// `ga = cp·(a − p) − cn·(a − n)`, `gp = −cp·(a − p)`, `gn = cn·(a − n)`:
/// the gradient rows of `f(‖a − p‖) − g(‖a − n‖)` for a triplet, given
/// `cp = f'/‖a − p‖` and `cn = g'/‖a − n‖`.
#[allow(clippy::too_many_arguments)] // three inputs, three outputs, two factors: the triplet's shape
#[inline(always)]
pub(crate) fn write_two_differences<F: Float>(
    a: &[F],
    p: &[F],
    n: &[F],
    cp: F,
    cn: F,
    ga: &mut [F],
    gp: &mut [F],
    gn: &mut [F],
) {
    debug_assert!(a.len() == p.len() && a.len() == n.len());
    debug_assert!(a.len() == ga.len() && a.len() == gp.len() && a.len() == gn.len());
    for (((((&x, &y), &z), u), v), w) in a
        .iter()
        .zip(p)
        .zip(n)
        .zip(ga.iter_mut())
        .zip(gp.iter_mut())
        .zip(gn.iter_mut())
    {
        let (to_p, to_n) = (cp * (x - y), cn * (x - z));
        *u = to_p - to_n;
        *v = -to_p;
        *w = to_n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize, phase: f64) -> Vec<f64> {
        (0..n).map(|i| (i as f64 * 0.37 + phase).sin()).collect()
    }

    #[test]
    fn distances_match_a_plain_loop_with_any_remainder() {
        for n in [0usize, 1, 7, 8, 9, 16, 127, 128, 130] {
            let (a, p, q) = (rows(n, 0.0), rows(n, 1.0), rows(n, 2.5));
            let naive = |u: &[f64], v: &[f64]| u.iter().zip(v).map(|(x, y)| (x - y) * (x - y)).sum::<f64>();
            let d = squared_distance(&a, &p);
            assert!((d - naive(&a, &p)).abs() <= 1e-13 * d.max(1.0), "n = {n}");
            let (dp, dn) = squared_distances_from(&a, &p, &q);
            assert_eq!(dp, d, "n = {n}");
            assert_eq!(dn, squared_distance(&a, &q), "n = {n}");
        }
    }

    #[test]
    fn gradient_rows_follow_their_formulas() {
        let (a, p, q) = (rows(11, 0.0), rows(11, 1.0), rows(11, 2.5));
        let (mut ga, mut gp, mut gn) = (vec![0.0; 11], vec![0.0; 11], vec![0.0; 11]);
        write_difference(&a, &p, 0.5, &mut ga, &mut gp);
        for k in 0..11 {
            assert_eq!(ga[k], 0.5 * (a[k] - p[k]));
            assert_eq!(gp[k], -ga[k]);
        }
        write_two_differences(&a, &p, &q, 0.5, 2.0, &mut ga, &mut gp, &mut gn);
        for k in 0..11 {
            assert_eq!(ga[k], 0.5 * (a[k] - p[k]) - 2.0 * (a[k] - q[k]));
            assert_eq!(gp[k], -0.5 * (a[k] - p[k]));
            assert_eq!(gn[k], 2.0 * (a[k] - q[k]));
        }
    }
}
