//! Flat, row-major views of tape arrays, for ops whose loops run over slices
//! instead of going through `ndarray`'s n-dimensional iterators.
//!
//! Every array on the tape is in standard (row-major) layout: leaves are
//! normalised when they are recorded and ops build their results row-major.
//! So [`flat`] borrows and an axis splits a shape into `(outer, len, inner)`
//! blocks; the copying fallbacks only guard that invariant.

use std::borrow::Cow;
use std::ops::Range;

use ndarray::{ArrayD, IxDyn};

use crate::float::Float;

/// The elements of `x` in row-major order, borrowed when `x` is in standard
/// layout (always, on the tape).
pub(crate) fn flat<F: Clone>(x: &ArrayD<F>) -> Cow<'_, [F]> {
    match x.as_slice() {
        Some(slice) => Cow::Borrowed(slice),
        None => Cow::Owned(x.iter().cloned().collect()),
    }
}

/// Runs `f` on the elements of `x` as one mutable row-major slice, first
/// moving `x` into standard layout if it is not.
pub(crate) fn flat_mut<F: Clone, R>(x: &mut ArrayD<F>, f: impl FnOnce(&mut [F]) -> R) -> R {
    if !x.is_standard_layout() {
        *x = x.as_standard_layout().into_owned();
    }
    match x.as_slice_mut() {
        Some(slice) => f(slice),
        None => f(&mut []), // unreachable: standard layout is one slice
    }
}

/// `x` in standard layout: moved through when it already is.
pub(crate) fn standard<F: Clone>(x: ArrayD<F>) -> ArrayD<F> {
    if x.is_standard_layout() {
        x
    } else {
        x.as_standard_layout().into_owned()
    }
}

/// A row-major array of `shape` holding `values` (whose length is the shape's
/// element count).
pub(crate) fn from_vec<F: Float>(shape: &[usize], values: Vec<F>) -> ArrayD<F> {
    debug_assert_eq!(values.len(), shape.iter().product::<usize>());
    ArrayD::from_shape_vec(IxDyn(shape), values).unwrap_or_else(|_| ArrayD::zeros(IxDyn(shape))) // unreachable: the length matches
}

/// Zeros of `shape`, written out. An allocator's zeroed memory is often fresh
/// pages mapped to the shared zero page: one read before the first write
/// then faults twice (to map the zero page, then to copy it), which doubled
/// the page faults of a scatter (`gather`'s backward) followed by a softmax's
/// backward on 16 MB. Writing them costs one pass and one fault per page.
pub(crate) fn zeros<F: Float>(shape: &[usize]) -> ArrayD<F> {
    from_vec(shape, super::pool::zeroed(shape.iter().product()))
}

/// `shape` around `axis` as `(outer, len, inner)`: the product of the sizes
/// before the axis, its size and the product of the sizes after it. Element
/// `(o, k, i)` of a row-major array is at `(o·len + k)·inner + i`.
pub(crate) fn around(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    let outer = shape[..axis].iter().product();
    let inner = shape[axis + 1..].iter().product();
    (outer, shape[axis], inner)
}

/// The width of the rows that the lanes along `axis` form, when they are
/// consecutive rows of the row-major elements (nothing after the axis but
/// sizes of 1) and not empty: the case fused row reductions handle.
pub(crate) fn rows_along(shape: &[usize], axis: usize) -> Option<usize> {
    let (_, width, inner) = around(shape, axis);
    (inner == 1 && width > 0).then_some(width)
}

/// Calls `f(row, elements)` for each piece of `range` that lies in one row
/// of `width` elements (`width` > 0 unless `range` is empty).
#[inline(always)]
pub(crate) fn for_each_row_segment(range: Range<usize>, width: usize, mut f: impl FnMut(usize, Range<usize>)) {
    let mut at = range.start;
    while at < range.end {
        let row = at / width;
        let end = ((row + 1) * width).min(range.end);
        f(row, at..end);
        at = end;
    }
}

/// Running partial sums in [`sum`]: 32 lanes are four independent AVX-512
/// (or eight AVX2) accumulators for `f32`, so the adds overlap instead of
/// waiting on one another (with 8, one `f32` accumulator's latency bounded a
/// fused chain's sum to about a third of the memory speed).
const PARTIALS: usize = 32;

/// The sum of a slice with [`PARTIALS`] running partial sums: vectorisable,
/// and more accurate than one running sum for long slices.
#[inline(always)]
pub(crate) fn sum<F: Float>(values: &[F]) -> F {
    sum_of(values, |v| v)
}

/// `Σ f(v)` over a slice, summed like [`sum`].
#[inline(always)]
pub(crate) fn sum_of<F: Float>(values: &[F], f: impl Fn(F) -> F) -> F {
    let mut partial = [F::zero(); PARTIALS];
    let chunks = values.chunks_exact(PARTIALS);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (p, &v) in partial.iter_mut().zip(chunk) {
            *p += f(v);
        }
    }
    // The lanes in order, then the tail. (Added in a pairwise tree, they made
    // LLVM vectorise the main loop two lanes at a time: a third of a fused
    // MSE chain's time in a profile.)
    let lanes = partial.iter().fold(F::zero(), |acc, &p| acc + p);
    tail.iter().fold(lanes, |acc, &v| acc + f(v))
}

/// `Σ a·b` over two slices of one length, with [`PARTIALS`] running partial
/// sums like [`sum`] (the lanes in order, then the tail).
#[inline(always)]
pub(crate) fn dot<F: Float>(a: &[F], b: &[F]) -> F {
    debug_assert_eq!(a.len(), b.len());
    let mut partial = [F::zero(); PARTIALS];
    let (chunks_a, chunks_b) = (a.chunks_exact(PARTIALS), b.chunks_exact(PARTIALS));
    let (tail_a, tail_b) = (chunks_a.remainder(), chunks_b.remainder());
    for (chunk_a, chunk_b) in chunks_a.zip(chunks_b) {
        for ((p, &a), &b) in partial.iter_mut().zip(chunk_a).zip(chunk_b) {
            *p += a * b;
        }
    }
    let lanes = partial.iter().fold(F::zero(), |acc, &p| acc + p);
    tail_a.iter().zip(tail_b).fold(lanes, |acc, (&a, &b)| acc + a * b)
}

/// Broadcast runs shorter than this are walked on one thread: spreading them
/// over the cores costs something per run (finding its offsets from its index
/// with [`Broadcast::offsets`], or a row of per-run sums) that a run of a few
/// elements does not repay.
pub(crate) const MIN_PARALLEL_RUN: usize = 64;

/// Two or three operands broadcast to one output shape, seen as rows: the
/// output is `rows` consecutive runs of `len` elements, and along a run each
/// operand either advances by one element (stride 1) or repeats one element
/// (stride 0). Adjacent axes that every operand walks alike are merged first,
/// so the runs are as long as they can be: `[N, C]` with `[C]` runs along
/// `C`, `[N, C]` with `[N, 1]` runs along `C` with a repeated operand, and
/// operands of the output's own shape make one run.
#[derive(Debug, Clone)]
pub(crate) struct Broadcast<const K: usize> {
    /// Length of one run.
    pub(crate) len: usize,
    /// Each operand's stride along a run: 0 or 1.
    pub(crate) step: [usize; K],
    /// The merged sizes of the axes outside the run.
    outer: Vec<usize>,
    /// Each operand's strides along those axes.
    strides: [Vec<usize>; K],
}

impl<const K: usize> Broadcast<K> {
    /// The rows of `operands` broadcast to `shape`; each operand's shape must
    /// broadcast to it (checked by the op beforehand).
    pub(crate) fn new(shape: &[usize], operands: [&[usize]; K]) -> Self {
        // Each operand's row-major strides under the output's axes, 0 where it
        // is broadcast (a missing leading axis or a size 1 against more).
        let strides: [Vec<usize>; K] = operands.map(|op| {
            let lead = shape.len() - op.len();
            let mut strides = vec![0; shape.len()];
            let mut step = 1;
            for d in (0..shape.len()).rev() {
                if d >= lead && op[d - lead] != 1 {
                    strides[d] = step;
                    step *= op[d - lead];
                }
            }
            strides
        });
        // Merge from the right: axis d joins the block after it when every
        // operand's stride at d equals its stride there times that size.
        let mut sizes: Vec<usize> = Vec::new();
        let mut merged: [Vec<usize>; K] = std::array::from_fn(|_| Vec::new());
        for d in (0..shape.len()).rev() {
            if shape[d] == 1 {
                continue;
            }
            let joins = sizes
                .last()
                .is_some_and(|&size| (0..K).all(|k| merged[k].last().is_some_and(|&s| strides[k][d] == s * size)));
            if joins {
                if let Some(size) = sizes.last_mut() {
                    *size *= shape[d];
                }
            } else {
                sizes.push(shape[d]);
                for k in 0..K {
                    merged[k].push(strides[k][d]);
                }
            }
        }
        // `sizes` runs innermost first; the first block is the run.
        let len = sizes.first().copied().unwrap_or(1);
        let step = std::array::from_fn(|k| merged[k].first().copied().unwrap_or(0));
        let outer: Vec<usize> = sizes.iter().skip(1).rev().copied().collect();
        let strides = merged.map(|s| s.iter().skip(1).rev().copied().collect());
        Broadcast {
            len,
            step,
            outer,
            strides,
        }
    }

    /// The number of runs.
    pub(crate) fn rows(&self) -> usize {
        self.outer.iter().product()
    }

    /// Each operand's offset of the first element of run `row` (what
    /// [`Broadcast::for_each_row`] passes for it), for work that visits the
    /// runs out of order, spread over the cores.
    pub(crate) fn offsets(&self, row: usize) -> [usize; K] {
        let mut offsets = [0; K];
        let mut rest = row;
        for d in (0..self.outer.len()).rev() {
            let index = rest % self.outer[d];
            rest /= self.outer[d];
            for (offset, strides) in offsets.iter_mut().zip(&self.strides) {
                *offset += strides[d] * index;
            }
        }
        offsets
    }

    /// Calls `f(row, offsets)` for every run in row-major order, with each
    /// operand's offset of its first element; the output's is `row · len`.
    pub(crate) fn for_each_row(&self, mut f: impl FnMut(usize, [usize; K])) {
        let rows = self.rows();
        if self.len == 0 || rows == 0 {
            return;
        }
        let mut index = vec![0; self.outer.len()];
        let mut offsets = [0; K];
        for row in 0..rows {
            f(row, offsets);
            // Advance the odometer over the outer axes, innermost first.
            for d in (0..self.outer.len()).rev() {
                index[d] += 1;
                for (offset, strides) in offsets.iter_mut().zip(&self.strides) {
                    *offset += strides[d];
                }
                if index[d] < self.outer[d] {
                    break;
                }
                for (offset, strides) in offsets.iter_mut().zip(&self.strides) {
                    *offset -= strides[d] * self.outer[d];
                }
                index[d] = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every (row, offsets) visited.
    fn visits<const K: usize>(b: &Broadcast<K>) -> Vec<(usize, [usize; K])> {
        let mut out = Vec::new();
        b.for_each_row(|row, offsets| out.push((row, offsets)));
        out
    }

    #[test]
    fn offsets_of_a_run_are_those_visited() {
        for (shape, a, b) in [
            (&[4, 3, 2][..], &[4, 1, 2][..], &[3, 1][..]),
            (&[5, 7], &[5, 1], &[7]),
            (&[2, 3, 4, 5], &[1, 3, 1, 5], &[2, 1, 4, 1]),
        ] {
            let plan = Broadcast::new(shape, [a, b]);
            let visited = visits(&plan);
            assert_eq!(visited.len(), plan.rows());
            for (row, offsets) in visited {
                assert_eq!(plan.offsets(row), offsets, "{shape:?} {a:?} {b:?} row {row}");
            }
        }
    }

    #[test]
    fn same_shapes_make_one_run() {
        let b = Broadcast::new(&[4, 3, 2], [&[4, 3, 2], &[4, 3, 2]]);
        assert_eq!((b.len, b.step, b.rows()), (24, [1, 1], 1));
    }

    #[test]
    fn a_row_runs_along_the_last_axis_and_a_column_repeats() {
        let row = Broadcast::new(&[3, 4], [&[3, 4], &[4]]);
        assert_eq!((row.len, row.step), (4, [1, 1]));
        assert_eq!(visits(&row), vec![(0, [0, 0]), (1, [4, 0]), (2, [8, 0])]);
        let column = Broadcast::new(&[3, 4], [&[3, 4], &[3, 1]]);
        assert_eq!((column.len, column.step), (4, [1, 0]));
        assert_eq!(visits(&column), vec![(0, [0, 0]), (1, [4, 1]), (2, [8, 2])]);
        let scalar = Broadcast::new(&[3, 4], [&[3, 4], &[]]);
        assert_eq!((scalar.len, scalar.step, scalar.rows()), (12, [1, 0], 1));
    }

    #[test]
    fn a_middle_axis_of_one_is_walked_by_the_odometer() {
        // [2, 1, 3] against [2, 4, 3]: the first operand repeats each of its
        // rows four times.
        let b = Broadcast::new(&[2, 4, 3], [&[2, 1, 3], &[2, 4, 3]]);
        assert_eq!((b.len, b.step), (3, [1, 1]));
        let firsts: Vec<usize> = visits(&b).iter().map(|(_, o)| o[0]).collect();
        assert_eq!(firsts, vec![0, 0, 0, 0, 3, 3, 3, 3]);
        let seconds: Vec<usize> = visits(&b).iter().map(|(_, o)| o[1]).collect();
        assert_eq!(seconds, (0..8).map(|r| 3 * r).collect::<Vec<_>>());
    }

    #[test]
    fn both_operands_broadcast_at_once() {
        let b = Broadcast::new(&[2, 3], [&[2, 1], &[1, 3]]);
        assert_eq!((b.len, b.step), (3, [0, 1]));
        assert_eq!(visits(&b), vec![(0, [0, 0]), (1, [1, 0])]);
    }

    #[test]
    fn empty_and_scalar_outputs() {
        let empty = Broadcast::new(&[0, 3], [&[0, 3], &[3]]);
        assert!(visits(&empty).is_empty());
        let scalar = Broadcast::new(&[], [&[], &[]]);
        assert_eq!((scalar.len, scalar.rows()), (1, 1));
        assert_eq!(visits(&scalar), vec![(0, [0, 0])]);
    }

    #[test]
    fn around_an_axis() {
        assert_eq!(around(&[2, 3, 4], 1), (2, 3, 4));
        assert_eq!(around(&[2, 3, 4], 0), (1, 2, 12));
        assert_eq!(around(&[2, 3, 4], 2), (6, 4, 1));
    }

    #[test]
    fn sum_of_a_long_slice() {
        let v: Vec<f64> = (1..=1000).map(f64::from).collect();
        assert_eq!(sum(&v), 500_500.0);
        assert_eq!(sum::<f64>(&[]), 0.0);
    }
}
