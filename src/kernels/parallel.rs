//! Deterministic reductions on both cores.
//!
//! Work is cut into blocks of a fixed number of items, and the block results
//! are combined by one pairwise tree whose shape depends only on the number of
//! blocks: the left subtree always holds the largest power of two of blocks
//! smaller than the whole. The serial path walks the same tree with a small
//! stack (a binary counter), the parallel path splits the same tree with
//! `rayon::join`. So the same input gives the same bits whether it runs on one
//! thread or many, and small inputs never touch the thread pool.

use rayon::iter::ParallelExtend;

use super::fastmath::MulAdd;
use super::simd;
use crate::float::Float;

/// Work that can be cut at an item index into two independent parts: slices
/// (one item per element), tuples of equally long parts, [`Rows`].
pub(crate) trait Split: Send + Sized {
    /// Number of items.
    fn items(&self) -> usize;

    /// The first `mid` items and the rest.
    fn split_at(self, mid: usize) -> (Self, Self);
}

impl<T: Sync> Split for &[T] {
    #[inline(always)]
    fn items(&self) -> usize {
        self.len()
    }

    #[inline(always)]
    fn split_at(self, mid: usize) -> (Self, Self) {
        <[T]>::split_at(self, mid)
    }
}

impl<T: Send> Split for &mut [T] {
    #[inline(always)]
    fn items(&self) -> usize {
        self.len()
    }

    #[inline(always)]
    fn split_at(self, mid: usize) -> (Self, Self) {
        self.split_at_mut(mid)
    }
}

/// A tuple of parts of equal length, cut at the same item; its first part
/// counts the items.
macro_rules! split_tuple {
    ($($part:ident $index:tt $halves:ident),+) => {
        impl<$($part: Split),+> Split for ($($part,)+) {
            #[inline(always)]
            fn items(&self) -> usize {
                self.0.items()
            }

            #[inline(always)]
            fn split_at(self, mid: usize) -> (Self, Self) {
                let ($($halves,)+) = ($(self.$index.split_at(mid),)+);
                (($($halves.0,)+), ($($halves.1,)+))
            }
        }
    };
}

split_tuple!(A 0 a, B 1 b);
split_tuple!(A 0 a, B 1 b, C 2 c);

/// No work beside the rest: for a caller that has nothing to add to a tuple.
impl Split for () {
    #[inline(always)]
    fn items(&self) -> usize {
        0
    }

    #[inline(always)]
    fn split_at(self, _: usize) -> (Self, Self) {
        ((), ())
    }
}

/// The indices of the items a part holds (so that a leaf knows where its
/// rows sit in the whole, e.g. to read per-sample targets).
impl Split for std::ops::Range<usize> {
    #[inline(always)]
    fn items(&self) -> usize {
        self.len()
    }

    #[inline(always)]
    fn split_at(self, mid: usize) -> (Self, Self) {
        let mid = self.start + mid.min(self.len());
        (self.start..mid, mid..self.end)
    }
}

/// Work that may be absent (an optional gradient): split alike, or not at
/// all. Put it after a part that counts the items.
impl<S: Split> Split for Option<S> {
    #[inline(always)]
    fn items(&self) -> usize {
        self.as_ref().map_or(0, Split::items)
    }

    #[inline(always)]
    fn split_at(self, mid: usize) -> (Self, Self) {
        match self {
            Some(s) => {
                let (a, b) = s.split_at(mid);
                (Some(a), Some(b))
            }
            None => (None, None),
        }
    }
}

/// Several parts of the same length (the gradients a chain sends out), cut
/// alike. Put it after a part that counts the items: an empty list has none.
impl<S: Split> Split for Vec<S> {
    #[inline(always)]
    fn items(&self) -> usize {
        self.first().map_or(0, Split::items)
    }

    #[inline(always)]
    fn split_at(self, mid: usize) -> (Self, Self) {
        self.into_iter().map(|s| s.split_at(mid)).unzip()
    }
}

/// A row-major matrix as items of `width` elements each (a sample's logits,
/// a triplet's vectors), so that splits fall between rows.
#[derive(Debug)]
pub(crate) struct Rows<S> {
    /// The elements, `items() * width` of them.
    pub(crate) data: S,
    /// Elements per row.
    pub(crate) width: usize,
}

impl<S: Split> Split for Rows<S> {
    #[inline(always)]
    fn items(&self) -> usize {
        self.data.items().checked_div(self.width).unwrap_or(0)
    }

    #[inline(always)]
    fn split_at(self, mid: usize) -> (Self, Self) {
        let (a, b) = self.data.split_at(mid * self.width);
        (
            Rows {
                data: a,
                width: self.width,
            },
            Rows {
                data: b,
                width: self.width,
            },
        )
    }
}

/// The rows of a gradient, when one is asked for.
pub(crate) type GradRows<'a, F> = Option<Rows<&'a mut [F]>>;

/// How a reduction is cut and when it may use the pool.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    /// Items per block: the unit the combining tree is built on. It fixes the
    /// result's bits, so it never depends on the machine.
    pub(crate) block: usize,
    /// Below this many items a subtree runs on the calling thread.
    pub(crate) min_parallel: usize,
    /// Whether the work streams memory (compiled for AVX2 at most, see
    /// [`simd::dispatch_streaming`]) rather than computes (widest SIMD).
    pub(crate) streaming: bool,
}

impl Plan {
    /// This plan, counted in rows of `width` elements instead of elements:
    /// blocks of about `block` elements (at least one row each) and the pool
    /// from about `min_parallel` elements. The block still depends only on
    /// the input's shape, so the result's bits do too.
    pub(crate) fn rows(self, width: usize) -> Plan {
        let width = width.max(1);
        Plan {
            block: (self.block / width).max(1),
            min_parallel: self.min_parallel.div_ceil(width),
            streaming: self.streaming,
        }
    }
}

/// For memory-bound work (terms of a few arithmetic operations, as MSE's,
/// MAE's, Huber's and smooth L1's, and the tape's copies and accumulations):
/// AVX2 at most, and both cores only from 2¹⁹ elements,
/// about 50 µs of one thread's work, where handing half to a sleeping rayon
/// worker (≈ 11 µs to wake on this machine) starts to pay (docs/benchmarks.md).
pub(crate) const STREAMING: Plan = Plan {
    block: 4096,
    min_parallel: 1 << 19,
    streaming: true,
};

/// Reduces `data`: `leaf` maps each block (at most `plan.block` items, only
/// the last one shorter) to a partial result, and `combine` adds two partial
/// results, left before right, along the fixed tree. An empty input gives
/// `leaf` of the empty input.
///
/// Each serial stretch runs under the plan's SIMD dispatch: mark `leaf` and
/// `combine` `#[inline(always)]` (allowed on a closure in argument position)
/// so that they are compiled with its target features.
#[inline]
pub(crate) fn reduce<D, A, L, C>(data: D, plan: Plan, leaf: L, combine: C) -> A
where
    D: Split,
    A: Copy + Send,
    L: Fn(D) -> A + Sync,
    C: Fn(A, A) -> A + Sync,
{
    reduce_with(
        data,
        plan,
        #[inline(always)]
        move |_, d| leaf(d),
        combine,
    )
}

/// [`reduce`], with `leaf` also given the [`MulAdd`] of the SIMD level it
/// runs at, for kernels with `exp` or `ln`.
#[inline]
pub(crate) fn reduce_with<D, A, L, C>(data: D, plan: Plan, leaf: L, combine: C) -> A
where
    D: Split,
    A: Copy + Send,
    L: Fn(MulAdd, D) -> A + Sync,
    C: Fn(A, A) -> A + Sync,
{
    let plan = Plan {
        block: plan.block.max(1),
        ..plan
    };
    if runs_serially(plan, data.items()) {
        return serial(data, plan, &leaf, &combine);
    }
    split(data, plan, &leaf, &combine)
}

/// The parallel part of the tree: splits it where the serial walk would
/// combine, and hands each half to the pool.
fn split<D, A, L, C>(data: D, plan: Plan, leaf: &L, combine: &C) -> A
where
    D: Split,
    A: Copy + Send,
    L: Fn(MulAdd, D) -> A + Sync,
    C: Fn(A, A) -> A + Sync,
{
    let blocks = data.items().div_ceil(plan.block);
    if data.items() < plan.min_parallel || blocks < 2 {
        return serial(data, plan, leaf, combine);
    }
    let (left, right) = data.split_at(left_blocks(blocks) * plan.block);
    let (a, b) = rayon::join(
        || split(left, plan, leaf, combine),
        || split(right, plan, leaf, combine),
    );
    combine(a, b)
}

/// The number of blocks in the left subtree of a tree over `blocks ≥ 2`
/// blocks: the largest power of two below `blocks`.
#[inline(always)]
fn left_blocks(blocks: usize) -> usize {
    1 << (blocks - 1).ilog2()
}

/// [`reduce`] on the calling thread only, with a `leaf` that may keep state
/// between blocks, which it sees in order: for building an output block by
/// block (a gradient `Vec` that grows as the blocks are computed, so it never
/// needs zeroing as a whole). The same tree, hence the same bits, as
/// [`reduce`] with the same plan. `leaf` also gets the [`MulAdd`] of the SIMD
/// level it runs at.
#[inline]
pub(crate) fn reduce_in_order_with<D, A, L, C>(data: D, plan: Plan, leaf: L, combine: C) -> A
where
    D: Split,
    A: Copy,
    L: FnMut(MulAdd, D) -> A,
    C: Fn(A, A) -> A,
{
    let walk = Walk {
        data,
        block: plan.block.max(1),
        leaf,
        combine: &combine,
    };
    if plan.streaming {
        simd::dispatch_streaming(walk)
    } else {
        simd::dispatch(walk)
    }
}

/// Calls `f(k, row)` for each row `k` of `width` elements of `data` (rows
/// that are copied or added into, as the tape's slicing does), the rows
/// spread over both cores like the streaming kernels: each row is written by
/// one call, so the split changes nothing. Mark `f` `#[inline(always)]` so
/// that it is compiled for the dispatched SIMD level.
#[inline]
pub(crate) fn for_each_row<F: Send>(data: &mut [F], width: usize, f: impl Fn(usize, &mut [F]) + Sync) {
    for_each_row_reading(data, width, width, f);
}

/// [`for_each_row`] for calls that each read `reads` elements, which sets
/// the split (rows of one sum each, say, over runs of the input).
#[inline]
pub(crate) fn for_each_row_reading<F: Send>(
    data: &mut [F],
    width: usize,
    reads: usize,
    f: impl Fn(usize, &mut [F]) + Sync,
) {
    if width == 0 {
        return;
    }
    reduce(
        (0..data.len() / width, Rows { data, width }),
        STREAMING.rows(reads),
        #[inline(always)]
        |(indices, rows): (std::ops::Range<usize>, Rows<&mut [F]>)| {
            for (k, row) in indices.zip(rows.data.chunks_exact_mut(width)) {
                f(k, row);
            }
        },
        #[inline(always)]
        |(), ()| (),
    );
}

/// Calls `f(to, from)` on matching pieces of `to` and `from` (as long as
/// each other), spread over both cores like the streaming kernels: a copy or
/// an accumulation, where no piece depends on another. Mark `f`
/// `#[inline(always)]` so that it is compiled for the dispatched SIMD level.
#[inline]
pub(crate) fn for_each_piece<F: Send + Sync>(to: &mut [F], from: &[F], f: impl Fn(&mut [F], &[F]) + Sync) {
    reduce(
        (to, from),
        STREAMING,
        #[inline(always)]
        |(to, from): (&mut [F], &[F])| f(to, from),
        #[inline(always)]
        |(), ()| (),
    );
}

/// Calls `f` on pieces of `data` spread over both cores like the streaming
/// kernels, for an elementwise update in place. Mark `f` `#[inline(always)]`
/// so that it is compiled for the dispatched SIMD level.
#[inline]
pub(crate) fn for_each_chunk<F: Send>(data: &mut [F], f: impl Fn(&mut [F]) + Sync) {
    reduce(
        data,
        STREAMING,
        #[inline(always)]
        |piece: &mut [F]| f(piece),
        #[inline(always)]
        |(), ()| (),
    );
}

/// `n` zeros for a new gradient that a kernel then fills on both cores,
/// written by both cores when `n` is past the streaming threshold: zeroing it
/// on the calling thread first cost 0.1 ms of one thread for 2²⁰ `f32`, a
/// tenth of BCE on logits' whole call. A zero has the same bits whoever
/// writes it.
pub(crate) fn zeros<F: Float>(n: usize) -> Vec<F> {
    if runs_serially(STREAMING, n) {
        return vec![F::zero(); n];
    }
    let mut zeros = Vec::with_capacity(n);
    zeros.par_extend(rayon::iter::repeat_n(F::zero(), n));
    zeros
}

/// Whether [`reduce`] would run `items` items on the calling thread alone.
pub(crate) fn runs_serially(plan: Plan, items: usize) -> bool {
    items < plan.min_parallel || items <= plan.block || rayon::current_num_threads() < 2
}

/// The tree over `data`'s blocks, compiled for the plan's SIMD level.
fn serial<D, A, L, C>(data: D, plan: Plan, leaf: &L, combine: &C) -> A
where
    D: Split,
    A: Copy + Send,
    L: Fn(MulAdd, D) -> A + Sync,
    C: Fn(A, A) -> A + Sync,
{
    let walk = Walk::new(
        data,
        plan.block,
        // A closure of its own, inlined, rather than `&L` through core's
        // `FnMut for &F` shim: that left the whole leaf out of line, compiled
        // for the baseline (BCE 5× slower).
        #[inline(always)]
        |m: MulAdd, d: D| leaf(m, d),
        combine,
    );
    if plan.streaming {
        simd::dispatch_streaming(walk)
    } else {
        simd::dispatch(walk)
    }
}

/// [`walk`] as a SIMD kernel.
struct Walk<'a, D, L, C> {
    data: D,
    block: usize,
    leaf: L,
    combine: &'a C,
}

impl<'a, D, L, C> Walk<'a, D, L, C> {
    /// (A function, so that `leaf` may be a closure marked `#[inline(always)]`.)
    #[inline(always)]
    fn new(data: D, block: usize, leaf: L, combine: &'a C) -> Self {
        Walk {
            data,
            block,
            leaf,
            combine,
        }
    }
}

impl<D, A, L, C> simd::Kernel for Walk<'_, D, L, C>
where
    D: Split,
    L: FnMut(MulAdd, D) -> A,
    C: Fn(A, A) -> A,
    A: Copy,
{
    type Output = A;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) -> A {
        let m = MulAdd::for_simd::<S>();
        let mut leaf = self.leaf;
        walk(
            self.data,
            self.block,
            #[inline(always)]
            |d: D| leaf(m, d),
            self.combine,
        )
    }
}

/// The tree over `data`'s blocks, walked in order with a stack of finished
/// subtrees of decreasing size (one per power of two, like a binary counter).
///
/// `leaf` is called from one place only: each call site is an inlined copy
/// of the kernel, and LLVM vectorised a second copy worse (seen in a
/// profile: 2-float loads instead of 8).
#[inline(always)]
fn walk<D, A, L, C>(data: D, block: usize, mut leaf: L, combine: &C) -> A
where
    D: Split,
    L: FnMut(D) -> A,
    C: Fn(A, A) -> A,
    A: Copy,
{
    let mut rest = data;
    // stack[..depth] are finished subtrees; all of them are `Some`.
    let mut stack: [Option<A>; usize::BITS as usize] = [None; usize::BITS as usize];
    let mut depth = 0;
    let mut count: usize = 0;
    let last = loop {
        let take = block.min(rest.items());
        let (head, tail) = rest.split_at(take);
        rest = tail;
        let mut sum = leaf(head);
        count += 1;
        // Each trailing zero of `count` closes a pair of equal subtrees.
        let mut k = count;
        while k & 1 == 0 && depth > 0 {
            depth -= 1;
            if let Some(left) = stack[depth] {
                sum = combine(left, sum);
            }
            k >>= 1;
        }
        if rest.items() == 0 {
            break sum;
        }
        stack[depth] = Some(sum);
        depth += 1;
    };
    // The unfinished subtrees, combined from the right.
    stack[..depth]
        .iter()
        .rev()
        .fold(last, |acc, left| left.map_or(acc, |left| combine(left, acc)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tree written out recursively, as the module docs define it.
    fn reference(values: &[f64], block: usize) -> f64 {
        let blocks = values.len().div_ceil(block);
        if blocks <= 1 {
            return values.iter().fold(0.0, |s, &v| s + v);
        }
        let (l, r) = values.split_at(left_blocks(blocks) * block);
        reference(l, block) + reference(r, block)
    }

    fn values(n: usize) -> Vec<f64> {
        // Magnitudes spread over many binades, so any change of order shows in the bits.
        (0..n)
            .map(|i| ((i as f64) * 0.7).sin() * 10f64.powi((i % 17) as i32 - 8))
            .collect()
    }

    fn sum(values: &[f64], plan: Plan) -> f64 {
        reduce(
            values,
            plan,
            |b: &[f64]| b.iter().fold(0.0, |s, &v| s + v),
            |a, b| a + b,
        )
    }

    #[test]
    fn serial_walk_is_the_recursive_tree() {
        for n in [0, 1, 3, 4, 5, 8, 9, 31, 32, 33, 100, 257, 1000] {
            let v = values(n);
            for block in [1, 2, 3, 4, 7] {
                let plan = Plan {
                    block,
                    min_parallel: usize::MAX,
                    streaming: false,
                };
                assert_eq!(
                    sum(&v, plan).to_bits(),
                    reference(&v, block).to_bits(),
                    "n = {n}, block = {block}"
                );
            }
        }
    }

    #[test]
    fn same_bits_for_any_thread_count() {
        let v = values(100_003);
        let plan = Plan {
            block: 64,
            min_parallel: 1000,
            streaming: true,
        };
        let expected = reference(&v, 64);
        for threads in [1, 2, 3, 4] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("a thread pool");
            let got = pool.install(|| sum(&v, plan));
            assert_eq!(got.to_bits(), expected.to_bits(), "{threads} threads");
        }
    }

    #[test]
    fn small_inputs_stay_on_the_calling_thread() {
        let v = values(1000);
        let caller = std::thread::current().id();
        let plan = Plan {
            block: 16,
            min_parallel: 4096,
            streaming: false,
        };
        let blocks = reduce(
            &v[..],
            plan,
            |b: &[f64]| {
                assert_eq!(std::thread::current().id(), caller, "a block ran on the pool");
                b.len().min(1)
            },
            |a, b| a + b,
        );
        assert_eq!(blocks, 1000usize.div_ceil(16));
    }

    #[test]
    fn row_plans_keep_about_the_element_thresholds() {
        use crate::kernels::pointwise::{COMPUTE, STREAMING};
        for plan in [COMPUTE, STREAMING] {
            for width in [1, 3, 100, 256, 384, 1000, 4096, 5000, 100_000] {
                let rows = plan.rows(width);
                assert!(rows.block >= 1 && rows.block * width <= plan.block.max(width));
                // A batch of 1e3 elements (or fewer rows than the threshold)
                // never reaches the pool.
                assert!(rows.min_parallel * width >= plan.min_parallel, "{width}");
                assert!(runs_serially(rows, 1000 / width), "{width}");
                assert!(rows.min_parallel * width < plan.min_parallel + width, "{width}");
            }
        }
    }

    #[test]
    fn rows_split_between_rows() {
        let data: Vec<f64> = (0..60).map(f64::from).collect();
        let rows = Rows {
            data: &data[..],
            width: 6,
        };
        assert_eq!(rows.items(), 10);
        let (a, b) = rows.split_at(4);
        assert_eq!((a.data.len(), b.data.len()), (24, 36));
        assert_eq!(b.data[0], 24.0);
    }

    /// Rows of logits and of their gradient, with one target per row.
    type RowWork<'a> = (Rows<(&'a [f64], &'a mut [f64])>, &'a [f64]);

    /// The shape a row-wise loss uses: logits and gradient as rows, one
    /// target per row, reduced to (loss, count) with a gradient written per
    /// row, on any number of threads with the same bits.
    #[test]
    fn rows_with_per_row_targets_reduce_and_write_deterministically() {
        let (rows, width) = (3001, 7);
        let logits: Vec<f64> = values(rows * width);
        let targets: Vec<f64> = (0..rows).map(|r| (r % width) as f64).collect();
        let plan = Plan {
            block: 64,
            min_parallel: 256,
            streaming: false,
        };
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("a thread pool");
            let mut grad = vec![0.0; rows * width];
            let (loss, count) = pool.install(|| {
                reduce(
                    (
                        Rows {
                            data: (&logits[..], &mut grad[..]),
                            width,
                        },
                        &targets[..],
                    ),
                    plan,
                    |(Rows { data: (x, g), width }, t): RowWork<'_>| {
                        let mut loss = 0.0;
                        for ((row, grow), &target) in x.chunks(width).zip(g.chunks_mut(width)).zip(t) {
                            let k = target as usize;
                            loss += row[k] * row[k];
                            grow[k] = 2.0 * row[k];
                        }
                        (loss, t.len())
                    },
                    |a: (f64, usize), b: (f64, usize)| (a.0 + b.0, a.1 + b.1),
                )
            });
            (loss.to_bits(), count, grad)
        };
        let one = run(1);
        assert_eq!(one.1, rows);
        for r in 0..rows {
            let k = r % width;
            assert_eq!(one.2[r * width + k], 2.0 * logits[r * width + k]);
        }
        assert!(run(2) == one && run(3) == one);
    }
}
