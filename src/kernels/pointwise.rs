//! Fused single-pass kernels for losses that are a sum of per-element terms
//! ℓ(pᵢ, tᵢ): the value, and the value with the gradient, reading each input
//! once.
//!
//! Each block of 4096 elements is summed in `LANES` independent accumulators
//! (so the adds pipeline), then added in order; blocks are combined by the fixed
//! tree of [`parallel::reduce`], on both cores above the plan's threshold. The
//! loops are compiled for the CPU's best SIMD level ([`super::simd`]) and the
//! order of every add is fixed by the input's length alone: the same input
//! gives the same bits on any thread count, and on any instruction set but
//! for the fused multiply-adds of `exp` and `ln` (see [`MulAdd`]).

use super::fastmath::MulAdd;
use super::parallel::{self, Plan};
use crate::float::Float;

/// Independent partial sums per block: one AVX-512, two AVX2 or four SSE
/// registers of `f32` (more spill on SSE2 and measured no faster).
const LANES: usize = 16;

/// Runs `$body` for `$k` = 0, 1, …, 15 (= `LANES − 1`), written out for
/// cheap terms, or as a loop for costly ones (`$written_out` false). With the
/// loop, LLVM unrolled the lanes only when the term was tiny (MSE); for
/// Huber's it kept the loop, so the accumulators lived in memory and every
/// add waited on a store (seen in a profile: Huber's gradient took 1.6× MSE's
/// time for the same traffic). Written out, a term with `exp` and `ln` (BCE)
/// was too big for LLVM to vectorise across the lanes (12× slower), while the
/// loop vectorises it one register per iteration. Same order of operations
/// either way, so the same bits.
macro_rules! for_each_lane {
    ($written_out:expr, $k:ident => $body:block) => {
        if $written_out {
            for_each_lane!($k => $body)
        } else {
            for $k in 0..LANES $body
        }
    };
    ($k:ident => $body:block) => {
        for_each_lane!(@ $k $body; 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15)
    };
    (@ $k:ident $body:block; $($n:literal)*) => {{
        $({
            let $k: usize = $n;
            $body
        })*
    }};
}
const _: () = assert!(LANES == 16, "for_each_lane! writes out 16 lanes");

pub(crate) use super::parallel::STREAMING;

/// `$body` with `$streaming` a constant `bool`, the plan's `streaming`: two
/// copies of a kernel, chosen once per call (where the plan is known) rather
/// than inside the loop.
macro_rules! by_plan {
    ($plan:expr, $streaming:ident => $body:expr) => {
        if $plan.streaming {
            const $streaming: bool = true;
            $body
        } else {
            const $streaming: bool = false;
            $body
        }
    };
}

/// For terms with exp, ln or divisions (BCE, softplus): compute-bound, so
/// the widest SIMD, and both cores from 2¹⁵ elements (the same ≈ 50 µs of
/// work at ≈ 1.5 ns per element).
pub(crate) const COMPUTE: Plan = Plan {
    block: 4096,
    min_parallel: 1 << 15,
    streaming: false,
};

/// `Σᵢ term(m, pᵢ, tᵢ)` along `plan` ([`STREAMING`] for cheap terms,
/// [`COMPUTE`] for costly ones), where `m` is the [`MulAdd`] of the SIMD level
/// the terms run at, for their `exp` and `ln`. The block size, hence the
/// result's bits, is the same for both plans.
#[inline]
pub(crate) fn sum_terms_with<F: Float>(plan: Plan, p: &[F], t: &[F], term: impl Fn(MulAdd, F, F) -> F + Sync) -> F {
    debug_assert_eq!(p.len(), t.len());
    by_plan!(plan, STREAM => parallel::reduce_with(
        (p, t),
        plan,
        #[inline(always)]
        |m, (p, t)| block_sum::<F, STREAM>(m, p, t, &term),
        #[inline(always)]
        |a, b| a + b,
    ))
}

/// `Σᵢ ℓ(pᵢ, tᵢ)` along `plan`, writing `gradᵢ = scale · ∂ℓ/∂pᵢ` in the same
/// pass; `term(m, p, t)` returns `(ℓ, ∂ℓ/∂p)`.
#[inline]
pub(crate) fn sum_terms_and_grad_with<F: Float>(
    plan: Plan,
    p: &[F],
    t: &[F],
    grad: &mut [F],
    scale: F,
    term: impl Fn(MulAdd, F, F) -> (F, F) + Sync,
) -> F {
    debug_assert!(p.len() == t.len() && p.len() == grad.len());
    by_plan!(plan, STREAM => parallel::reduce_with(
        (p, t, grad),
        plan,
        #[inline(always)]
        |m, (p, t, g)| block_sum_and_grad::<F, STREAM>(m, p, t, g, scale, &term),
        #[inline(always)]
        |a, b| a + b,
    ))
}

/// [`sum_terms_and_grad_with`] returning a new gradient, built in order on
/// the calling thread: each block of the `Vec` is zeroed just before the
/// kernel overwrites it, while it is in L1, instead of zeroing the whole
/// gradient first (for work on one thread; see `losses::slices::on_both_cores`).
/// The same bits as [`sum_terms_and_grad_with`].
#[inline]
pub(crate) fn sum_terms_and_new_grad<F: Float>(
    plan: Plan,
    p: &[F],
    t: &[F],
    scale: F,
    term: impl Fn(MulAdd, F, F) -> (F, F),
) -> (F, Vec<F>) {
    debug_assert_eq!(p.len(), t.len());
    let mut grad = Vec::with_capacity(p.len());
    let sum = by_plan!(plan, STREAM => parallel::reduce_in_order_with(
        (p, t),
        plan,
        #[inline(always)]
        |m, (p, t): (&[F], &[F])| block_sum_and_grad::<F, STREAM>(m, p, t, &mut grad, scale, &term),
        #[inline(always)]
        |a, b| a + b,
    ));
    (sum, grad)
}

/// Whether `keep` holds for every element: for the checks on inputs (e.g.
/// probabilities in `[0, 1]`) that run before every call, so they cost a
/// small fraction of the loss. No early exit inside a block, so the loop
/// vectorises; the blocks run on both cores like [`STREAMING`] sums.
#[inline]
pub(crate) fn all<F: Float>(x: &[F], keep: impl Fn(F) -> bool + Sync) -> bool {
    parallel::reduce(
        x,
        STREAMING,
        #[inline(always)]
        |x: &[F]| holds_for_all(x, &keep),
        #[inline(always)]
        |a, b| a && b,
    )
}

/// Whether `keep` holds for every element of one block, with no early exit,
/// so that the loop vectorises (for a caller already inside a dispatched
/// kernel).
#[inline(always)]
pub(crate) fn holds_for_all<F: Float>(x: &[F], keep: impl Fn(F) -> bool) -> bool {
    // Counting the failures keeps a 32-bit lane per element, where a running
    // `bool` was packed down to bytes at every step (seen in a profile):
    // hinge embedding's two checks and kernel on 2²⁰ `f32`, one thread,
    // 0.236–0.241 → 0.201–0.222 ms. Runs of 2³¹ cannot overflow the count.
    x.chunks(1 << 31)
        .all(|run| run.iter().fold(0u32, |failed, &v| failed + u32::from(!keep(v))) == 0)
}

/// One block's sum; `CHEAP` writes the lanes out (see [`for_each_lane`]).
#[inline(always)]
fn block_sum<F: Float, const CHEAP: bool>(m: MulAdd, p: &[F], t: &[F], term: &impl Fn(MulAdd, F, F) -> F) -> F {
    let mut acc = [F::zero(); LANES];
    let (mut pc, mut tc) = (p.chunks_exact(LANES), t.chunks_exact(LANES));
    for (pl, tl) in (&mut pc).zip(&mut tc) {
        for_each_lane!(CHEAP, k => {
            acc[k] += term(m, pl[k], tl[k]);
        });
    }
    // The tail has its own sum: indexing `acc` by a run-time lane would keep
    // it in memory and spoil the vectorised loop (seen in a profile).
    let mut tail = F::zero();
    for (&pi, &ti) in pc.remainder().iter().zip(tc.remainder()) {
        tail += term(m, pi, ti);
    }
    fold(acc) + tail
}

/// Where a block's gradient goes: a slice that it overwrites (`&mut [F]`),
/// or a `Vec` that it extends (with the capacity reserved), so that a new
/// gradient needs no zeroing at all.
trait GradSink<F> {
    /// The next `LANES` elements.
    fn lanes(&mut self, values: &[F; LANES]);
    /// The next element.
    fn one(&mut self, value: F);
}

impl<F: Copy> GradSink<F> for &mut [F] {
    #[inline(always)]
    fn lanes(&mut self, values: &[F; LANES]) {
        // Never short: the sink has as many elements as the block.
        if let Some((head, tail)) = std::mem::take(self).split_at_mut_checked(LANES) {
            head.copy_from_slice(values);
            *self = tail;
        }
    }

    #[inline(always)]
    fn one(&mut self, value: F) {
        if let Some((head, tail)) = std::mem::take(self).split_first_mut() {
            *head = value;
            *self = tail;
        }
    }
}

impl<F: Copy> GradSink<F> for &mut Vec<F> {
    #[inline(always)]
    fn lanes(&mut self, values: &[F; LANES]) {
        self.extend_from_slice(values);
    }

    #[inline(always)]
    fn one(&mut self, value: F) {
        self.push(value);
    }
}

/// One block's sum, writing its gradient.
#[inline(always)]
fn block_sum_and_grad<F: Float, const CHEAP: bool>(
    m: MulAdd,
    p: &[F],
    t: &[F],
    mut g: impl GradSink<F>,
    scale: F,
    term: &impl Fn(MulAdd, F, F) -> (F, F),
) -> F {
    let mut acc = [F::zero(); LANES];
    let (pc, pr) = p.as_chunks::<LANES>();
    let (tc, tr) = t.as_chunks::<LANES>();
    for (pl, tl) in pc.iter().zip(tc) {
        // Stores go through a local array after all loads, so LLVM needs no
        // proof that `g` does not overlap `p` or `t` to vectorise.
        let mut out = [F::zero(); LANES];
        for_each_lane!(CHEAP, k => {
            let (value, slope) = term(m, pl[k], tl[k]);
            acc[k] += value;
            out[k] = scale * slope;
        });
        g.lanes(&out);
    }
    let mut tail = F::zero();
    for (&pi, &ti) in pr.iter().zip(tr) {
        let (value, slope) = term(m, pi, ti);
        tail += value;
        g.one(scale * slope);
    }
    fold(acc) + tail
}

/// The lanes added in order. (A pairwise fold made LLVM vectorise the main
/// loop two lanes at a time, seen in a profile; 16 terms lose nothing.)
#[inline(always)]
fn fold<F: Float>(acc: [F; LANES]) -> F {
    acc.iter().fold(F::zero(), |sum, &lane| sum + lane)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::simd;

    fn inputs<F: Float>(n: usize) -> (Vec<F>, Vec<F>) {
        let p = (0..n).map(|i| F::from_f64((i as f64 * 0.37).sin() * 3.0)).collect();
        let t = (0..n).map(|i| F::from_f64((i as f64 * 0.11).cos())).collect();
        (p, t)
    }

    fn square<F: Float>(_: MulAdd, a: F, b: F) -> F {
        (a - b) * (a - b)
    }

    fn square_and_slope<F: Float>(_: MulAdd, a: F, b: F) -> (F, F) {
        ((a - b) * (a - b), (a - b) + (a - b))
    }

    #[test]
    fn sums_match_a_plain_loop_with_any_remainder() {
        for n in [0usize, 1, 7, 31, 32, 33, 4095, 4096, 4097, 20_000, 70_001] {
            let (p, t) = inputs::<f64>(n);
            let naive: f64 = p.iter().zip(&t).map(|(&a, &b)| square(MulAdd::SEPARATE, a, b)).sum();
            let fused = sum_terms_with(STREAMING, &p, &t, square);
            assert!((fused - naive).abs() <= 1e-12 * naive.abs().max(1.0), "n = {n}");
            let mut grad = vec![f64::NAN; n];
            let fused2 = sum_terms_and_grad_with(STREAMING, &p, &t, &mut grad, 0.5, square_and_slope);
            assert_eq!(fused.to_bits(), fused2.to_bits(), "n = {n}");
            for i in 0..n {
                assert_eq!(grad[i], 0.5 * 2.0 * (p[i] - t[i]), "n = {n}, i = {i}");
            }
        }
    }

    #[test]
    fn f32_sums_are_accurate_over_a_million_terms() {
        // One running f32 sum would drift by ~1e-4 relative here.
        let (p, t) = inputs::<f32>(1 << 20);
        let exact: f64 = p
            .iter()
            .zip(&t)
            .map(|(&a, &b)| f64::from(square(MulAdd::SEPARATE, a, b)))
            .sum();
        let fused = f64::from(sum_terms_with(STREAMING, &p, &t, square));
        assert!((fused - exact).abs() <= 1e-6 * exact, "{fused} vs {exact}");
    }

    #[test]
    fn same_bits_on_any_thread_count() {
        let n = 3 * STREAMING.min_parallel + 12_345;
        let (p, t) = inputs::<f32>(n);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("a thread pool");
            pool.install(|| {
                let mut grad = vec![0.0_f32; n];
                let value = sum_terms_and_grad_with(STREAMING, &p, &t, &mut grad, 0.25, square_and_slope);
                (
                    value.to_bits(),
                    sum_terms_with(STREAMING, &p, &t, square).to_bits(),
                    grad,
                )
            })
        };
        let one = run(1);
        for threads in [2, 3, 4] {
            assert!(run(threads) == one, "{threads} threads");
        }
    }

    #[test]
    fn all_finds_any_failing_element() {
        let n = 3 * 4096 + 17;
        let x: Vec<f32> = (0..n).map(|i| (i % 101) as f32 / 100.0).collect();
        let in_unit = |v: f32| (0.0..=1.0).contains(&v);
        assert!(all(&x, in_unit));
        assert!(all(&x[..0], in_unit));
        for bad_at in [0, 15, 4096, n - 1] {
            for bad in [1.5, -0.0001, f32::NAN] {
                let mut y = x.clone();
                y[bad_at] = bad;
                assert!(!all(&y, in_unit), "{bad} at {bad_at}");
            }
        }
    }

    #[test]
    fn same_bits_with_and_without_simd() {
        // Below the threshold, so the whole sum runs on this thread.
        let n = STREAMING.min_parallel - 1;
        let (p, t) = inputs::<f32>(n);
        let run = || {
            let mut grad = vec![0.0_f32; n];
            let value = sum_terms_and_grad_with(STREAMING, &p, &t, &mut grad, 0.25, square_and_slope);
            (
                value.to_bits(),
                sum_terms_with(STREAMING, &p, &t, square).to_bits(),
                grad,
            )
        };
        assert!(run() == simd::baseline(run));
        let compute = sum_terms_with(COMPUTE, &p, &t, square);
        assert_eq!(compute.to_bits(), sum_terms_with(STREAMING, &p, &t, square).to_bits());
    }
}
