//! Row kernels for losses on embeddings (contrastive, triplet): squared
//! Euclidean distances between rows of `D` elements, and the gradient rows
//! `c·(a − b)` that follow from them.
//!
//! Distances use `LANES` independent partial sums added in a fixed order: that
//! vectorises without special flags and gives the same bits on every run. A
//! row of a few hundred elements stays in L1 between the distance pass and the
//! gradient pass, so each input is read from memory once. Everything here is
//! `#[inline(always)]`: the callers run under the SIMD dispatch, and a kernel
//! left out of line is compiled for the baseline.

use crate::float::Float;

/// Independent partial sums per distance: one AVX2 register of `f32` (16
/// lanes measured no faster on rows of 128).
const LANES: usize = 8;

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
    acc.iter().fold(tail, |s, &v| s + v)
}

/// `(Σₖ (aₖ − pₖ)², Σₖ (aₖ − nₖ)²)`. Two passes over `a`, which stays in L1:
/// with both sums in one loop LLVM packed `(a − p, a − n)` pairs into
/// 128-bit vectors (seen in a profile), about twice as slow.
#[inline(always)]
pub(crate) fn squared_distances_from<F: Float>(a: &[F], p: &[F], n: &[F]) -> (F, F) {
    debug_assert!(a.len() == p.len() && a.len() == n.len());
    (squared_distance(a, p), squared_distance(a, n))
}

/// Where gradient rows go, one after another: a slice that they overwrite
/// (`&mut [F]`, advanced row by row), or a `Vec` that they extend (with its
/// capacity reserved), so that a new gradient needs no zeroing.
pub(crate) trait RowSink<F> {
    /// Writes the next `values.len()` elements.
    fn row(&mut self, values: impl ExactSizeIterator<Item = F>);
}

impl<F> RowSink<F> for &mut [F] {
    #[inline(always)]
    fn row(&mut self, values: impl ExactSizeIterator<Item = F>) {
        let n = values.len().min(self.len());
        let (head, tail) = std::mem::take(self).split_at_mut(n);
        for (o, v) in head.iter_mut().zip(values) {
            *o = v;
        }
        *self = tail;
    }
}

impl<F> RowSink<F> for &mut Vec<F> {
    #[inline(always)]
    fn row(&mut self, values: impl ExactSizeIterator<Item = F>) {
        self.extend(values);
    }
}

/// `ga = c·(a − b)` then `gb = −ga`: the gradient rows of any function
/// `f(‖a − b‖)` with respect to both ends, given `c = f'(‖a − b‖) / ‖a − b‖`.
#[inline(always)]
pub(crate) fn write_difference<F: Float>(a: &[F], b: &[F], c: F, out: &mut impl RowSink<F>) {
    debug_assert_eq!(a.len(), b.len());
    out.row(a.iter().zip(b).map(|(&x, &y)| c * (x - y)));
    out.row(a.iter().zip(b).map(|(&x, &y)| -(c * (x - y))));
}

/// `ga = cp·(a − p) − cn·(a − n)`, `gp = −cp·(a − p)`, `gn = cn·(a − n)`,
/// one after another: the gradient rows of `f(‖a − p‖) − g(‖a − n‖)` for a
/// triplet, given `cp = f'/‖a − p‖` and `cn = g'/‖a − n‖`.
#[inline(always)]
pub(crate) fn write_two_differences<F: Float>(a: &[F], p: &[F], n: &[F], cp: F, cn: F, out: &mut impl RowSink<F>) {
    debug_assert!(a.len() == p.len() && a.len() == n.len());
    let anchor = a.iter().zip(p).zip(n);
    out.row(anchor.clone().map(|((&x, &y), &z)| cp * (x - y) - cn * (x - z)));
    out.row(a.iter().zip(p).map(|(&x, &y)| -(cp * (x - y))));
    out.row(a.iter().zip(n).map(|(&x, &z)| cn * (x - z)));
}

/// `len` zeros: the gradient rows of a term that does not depend on them.
#[inline(always)]
pub(crate) fn write_zeros<F: Float>(len: usize, out: &mut impl RowSink<F>) {
    out.row(std::iter::repeat_n(F::zero(), len));
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
    fn gradient_rows_follow_their_formulas_into_slices_and_vecs() {
        let (a, p, q) = (rows(11, 0.0), rows(11, 1.0), rows(11, 2.5));
        let mut slice = vec![f64::NAN; 2 * 11];
        write_difference(&a, &p, 0.5, &mut &mut slice[..]);
        let mut grown = Vec::new();
        write_difference(&a, &p, 0.5, &mut &mut grown);
        assert_eq!(slice, grown);
        let (ga, gp) = slice.split_at(11);
        for k in 0..11 {
            assert_eq!(ga[k], 0.5 * (a[k] - p[k]));
            assert_eq!(gp[k], -ga[k]);
        }
        let mut slice = vec![f64::NAN; 3 * 11 + 4];
        let mut rest = &mut slice[..];
        write_two_differences(&a, &p, &q, 0.5, 2.0, &mut rest);
        write_zeros(4, &mut rest);
        assert!(rest.is_empty());
        let mut grown = Vec::new();
        write_two_differences(&a, &p, &q, 0.5, 2.0, &mut &mut grown);
        write_zeros(4, &mut &mut grown);
        assert_eq!(slice, grown);
        let (ga, rest) = slice.split_at(11);
        let (gp, rest) = rest.split_at(11);
        let (gn, zeros) = rest.split_at(11);
        for k in 0..11 {
            assert_eq!(ga[k], 0.5 * (a[k] - p[k]) - 2.0 * (a[k] - q[k]));
            assert_eq!(gp[k], -0.5 * (a[k] - p[k]));
            assert_eq!(gn[k], 2.0 * (a[k] - q[k]));
        }
        assert_eq!(zeros, [0.0; 4]);
    }
}
