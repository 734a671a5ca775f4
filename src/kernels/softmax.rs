//! Fused softmax cross-entropy: per sample, one pass for the maximum, one for
//! `Σ exp(x − max)`, then the loss and the gradient `scale·(A·softmax − a)`
//! written in place. Pure functions over slices: no tape, no loss type, no
//! allocation.
//!
//! Every option of the loss reduces to one coefficient per class and sample,
//! `a_c ≥ 0` (for soft targets any real), so that the sample's loss is
//! `Σ_c a_c·(lse − x_c)` with `lse = ln Σ_c e^(x_c)`, and its gradient is
//! `A·softmax_c − a_c` with `A = Σ_c a_c`:
//! - index target `y`, weights `w`, smoothing `ε` (PyTorch):
//!   `a_c = (1−ε)·w_y·[c = y] + (ε/C)·w_c`;
//! - probability targets `t`: `a_c = w_c·(t_c(1−ε) + ε/C)`.
//!
//! A term with `a_c = 0` is skipped, so a masking logit of `−∞` on such a class
//! adds nothing to the loss and gets a zero gradient instead of `0·∞ = NaN`.
//! A sample whose coefficients are all 0 (an ignored target, a class of weight
//! 0, soft targets of 0) adds nothing either, but its logits are held to the
//! rule of every other sample: where `lse` is not finite (a NaN or `+∞` logit,
//! or every logit `−∞`) the loss is NaN, so that the caller reports the input
//! whichever method computes.
//! `lse − x_c` is taken as `ln Σ e^(x − m) − (x_c − m)`, so logits of ±1e4
//! lose no precision to cancellation.

use std::ops::Range;

use super::fastmath::{self, MulAdd};
use super::parallel::{self, GradRows, Plan, Rows};
use super::pointwise;
use crate::float::Float;

/// Independent partial maxima and sums along a contiguous row: one AVX-512
/// register of `f32`.
const LANES: usize = 16;
/// Samples processed side by side when the class axis is strided; the state
/// of one block lives on the stack. 64 measured best on [32, 1000, 128] f32
/// (CPU time: 16 lanes 1.25×, 32 lanes 1.1×; 128 and 256 no better).
const BLOCK: usize = 64;

/// Logits viewed as `[outer, classes, inner]` in row-major order: `[N, C]` is
/// `(N, C, 1)`, `[N, C, d1, d2]` is `(N, C, d1·d2)` and a single sample `[C]`
/// is `(1, C, 1)`. Sample `(n, s)` has its class `c` at
/// `n·classes·inner + c·inner + s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClassLayout {
    /// `N`, the batch size (1 for a single sample).
    pub(crate) outer: usize,
    /// `C`, the number of classes.
    pub(crate) classes: usize,
    /// `d1·d2·…`, the spatial size (1 without spatial axes).
    pub(crate) inner: usize,
}

impl ClassLayout {
    /// The number of samples, `N·d1·…`.
    pub(crate) fn samples(&self) -> usize {
        self.outer * self.inner
    }

    /// The number of logits.
    pub(crate) fn len(&self) -> usize {
        self.outer * self.classes * self.inner
    }
}

/// What each sample is measured against.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Labels<'a, F> {
    /// One class index per sample, in `[outer, inner]` order, already checked:
    /// whole numbers in `0..classes`, or equal to `ignore_index` (such samples
    /// add nothing and get a zero gradient).
    Indices {
        targets: &'a [F],
        ignore_index: Option<usize>,
    },
    /// Class probabilities in the logits' layout.
    Probabilities { targets: &'a [F] },
}

/// Class weights (one per class, `None` for all ones) and label smoothing ε.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options<'a> {
    pub(crate) weights: Option<&'a [f64]>,
    pub(crate) smoothing: f64,
}

/// `scale · Σ_samples loss`, with `grad = scale · ∂(Σ loss)/∂logits` written
/// when a buffer is given (every element is written), and whether every
/// element written is finite (`true` without a buffer).
///
/// `logits` and `grad` hold `layout.len()` elements; `Labels` must have been
/// checked as its documentation says. The sum over samples is accumulated in
/// `f64`, in a fixed order.
pub(crate) fn cross_entropy<F: Float>(
    logits: &[F],
    layout: ClassLayout,
    labels: Labels<'_, F>,
    options: Options<'_>,
    scale: F,
    grad: Option<&mut [F]>,
) -> (F, bool) {
    debug_assert_eq!(logits.len(), layout.len());
    let coefs = Coefficients::new(layout, labels, options);
    let (items, width, plan) = rows_of(layout);
    let work = (
        0..items,
        Rows { data: logits, width },
        grad.map(|g| Rows { data: g, width }),
    );
    let (total, finite) = parallel::reduce_with(
        work,
        plan,
        #[inline(always)]
        |mul_add, (range, x, g): (Range<usize>, Rows<&[F]>, GradRows<'_, F>)| {
            block(mul_add, x.data, layout, range.start, &coefs, scale, g.map(|g| g.data))
        },
        #[inline(always)]
        |a: (f64, bool), b: (f64, bool)| (a.0 + b.0, a.1 && b.1),
    );
    (F::from_f64(total * scale.as_f64()), finite)
}

/// Rows of independent work and their plan: samples `[N, C]` when the
/// classes are contiguous, else whole `[C, d…]` slabs. Blocks of about 4096
/// logits are summed along parallel::reduce's fixed tree, so the result has
/// the same bits on any number of threads.
fn rows_of(layout: ClassLayout) -> (usize, usize, Plan) {
    let width = layout.classes * layout.inner;
    (layout.outer, width, ROWS.rows(width))
}

/// The loss of a run of whole rows, the first being row `first`, and their
/// gradient when asked for, with whether it is finite.
#[inline(always)]
fn block<F: Float>(
    mul_add: MulAdd,
    x: &[F],
    layout: ClassLayout,
    first: usize,
    coefs: &Coefficients<'_, F>,
    scale: F,
    g: Option<&mut [F]>,
) -> (f64, bool) {
    if layout.inner == 1 {
        contiguous(mul_add, x, layout.classes, first, coefs, scale, g)
    } else {
        strided(mul_add, x, layout, first, coefs, scale, g)
    }
}

/// Cross-entropy's cost per logit is one `exp` (and a few adds): the plan of
/// the pointwise kernels with exp and ln, counted in elements; see
/// [`Plan::rows`].
const ROWS: Plan = pointwise::COMPUTE;

/// The coefficients `a_c` of every sample, as described in the module docs.
struct Coefficients<'a, F> {
    labels: Labels<'a, F>,
    weights: Option<&'a [f64]>,
    /// `1 − ε`.
    keep: F,
    /// `ε / C`.
    spread: F,
    /// `Σ_c w_c` (C without weights).
    weight_sum: F,
    /// `ignore_index` as a float, for comparing with the targets.
    ignore: Option<f64>,
    /// Index targets without smoothing: `a = w_y·one-hot(y)`.
    one_hot: bool,
}

/// What one sample contributes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Sample<F> {
    /// An ignored target: no loss, zero gradient.
    Ignored,
    /// `a = w_y·one-hot(y)`: the class and its weight.
    OneHot(usize, F),
    /// Index target with smoothing: `a_c = spread·w_c + [c = y]·hit`.
    Index { y: usize, hit: F },
    /// Probability targets.
    Soft,
}

impl<'a, F: Float> Coefficients<'a, F> {
    fn new(layout: ClassLayout, labels: Labels<'a, F>, options: Options<'a>) -> Self {
        let c = layout.classes as f64;
        let weight_sum = options.weights.map_or(c, |w| w.iter().sum());
        let (ignore, one_hot) = match labels {
            Labels::Indices { ignore_index, .. } => (ignore_index.map(|i| i as f64), options.smoothing == 0.0),
            Labels::Probabilities { .. } => (None, false),
        };
        Coefficients {
            labels,
            weights: options.weights,
            keep: F::from_f64(1.0 - options.smoothing),
            spread: F::from_f64(options.smoothing / c),
            weight_sum: F::from_f64(weight_sum),
            ignore,
            one_hot,
        }
    }

    #[inline(always)]
    fn weight(&self, c: usize) -> F {
        match self.weights {
            Some(w) => w.get(c).map_or(F::zero(), |&w| F::from_f64(w)),
            None => F::one(),
        }
    }

    /// Sample number `i` (in `[outer, inner]` order).
    #[inline(always)]
    fn sample(&self, i: usize, classes: usize) -> Sample<F> {
        let Labels::Indices { targets, .. } = self.labels else {
            return Sample::Soft;
        };
        let t = targets.get(i).map_or(f64::NAN, |t| t.as_f64());
        // Checked by the caller; anything else is treated as ignored, never indexed.
        if Some(t) == self.ignore || !(t >= 0.0 && t < classes as f64) {
            return Sample::Ignored;
        }
        let y = t as usize;
        if self.one_hot {
            Sample::OneHot(y, self.weight(y))
        } else {
            Sample::Index {
                y,
                hit: self.keep * self.weight(y),
            }
        }
    }

    /// `a_c` for class `c` of a sample that is neither ignored nor one-hot;
    /// `k` is the logit's flat index (where a soft target sits).
    #[inline(always)]
    fn at(&self, sample: Sample<F>, c: usize, k: usize) -> F {
        match (sample, self.labels) {
            (Sample::Index { y, hit }, _) => {
                let a = self.spread * self.weight(c);
                if c == y { a + hit } else { a }
            }
            (Sample::Soft, Labels::Probabilities { targets }) => {
                let t = targets.get(k).copied().unwrap_or_else(F::nan);
                self.weight(c) * (t * self.keep + self.spread)
            }
            (Sample::OneHot(y, w), _) => {
                if c == y {
                    w
                } else {
                    F::zero()
                }
            }
            _ => F::zero(),
        }
    }

    /// `A = Σ_c a_c` for an index sample, without a pass over the classes.
    #[inline(always)]
    fn total_index(&self, hit: F) -> F {
        hit + self.spread * self.weight_sum
    }
}

/// Whether a one-hot sample's gradient `k·e_c − [c = y]·h` is finite, with
/// `k = scale·w/Σe` and `h = scale·w`: checked on the two factors, not per
/// element. A NaN or ∞ among the `e_c` makes `Σe`, hence `k`, NaN; else every
/// `e_c ∈ [0, 1]` and `Σe ≥ 1` (the maximum's term), so `|k·e_c| ≤ |h|`.
/// Other samples check each element as it is written. (A separate pass over
/// the whole gradient cost ~15% of cross-entropy.)
#[inline(always)]
fn one_hot_finite<F: Float>(k: F, h: F) -> bool {
    k.is_finite() & h.is_finite()
}

/// `a·d`, and 0 when `a = 0` (so `d = −∞` on a masked class gives 0, not NaN).
#[inline(always)]
fn weighted<F: Float>(a: F, d: F) -> F {
    if a == F::zero() { F::zero() } else { a * d }
}

/// A one-hot sample's loss `w·(lse − x_y)`, from `ln Σe` and `d = x_y − m`.
/// With `w = 0` it is `0·lse`: 0 (even where `x_y = −∞`), but NaN where `lse`
/// is not finite, as for any sample whose coefficients are all 0.
#[inline(always)]
fn one_hot_loss<F: Float>(w: F, ln_sum: F, d: F) -> F {
    if w == F::zero() { w * ln_sum } else { w * (ln_sum - d) }
}

/// Whether `ln Σ e^x` of a row is finite: no NaN, no `+∞`, not every logit
/// `−∞`. For ignored samples, whose rows are otherwise not read.
#[inline(always)]
fn lse_finite<F: Float>(x: &[F]) -> bool {
    row_max(x).is_finite() && !x.iter().any(|v| v.is_nan())
}

/// Rows `[N, C]`, each contiguous; `logits` starts at sample `first`.
#[inline(always)]
fn contiguous<F: Float>(
    mul_add: MulAdd,
    logits: &[F],
    classes: usize,
    first: usize,
    coefs: &Coefficients<'_, F>,
    scale: F,
    mut grad: Option<&mut [F]>,
) -> (f64, bool) {
    let (mut total, mut finite) = (0.0, true);
    for (row, x) in logits.chunks_exact(classes).enumerate() {
        let i = first + row;
        let mut g = grad
            .as_deref_mut()
            .and_then(|g| g.get_mut(row * classes..(row + 1) * classes));
        let sample = coefs.sample(i, classes);
        if sample == Sample::Ignored {
            if let Some(g) = g {
                g.fill(F::zero());
            }
            if !lse_finite(x) {
                total += f64::NAN;
            }
            continue;
        }
        let m = row_max(x);
        let sum = match g {
            Some(ref mut g) => exp_into(mul_add, x, m, g),
            None => exp_sum(mul_add, x, m),
        };
        let ln_sum = sum.ln();
        let loss = match sample {
            Sample::OneHot(y, w) => {
                let d = x.get(y).map_or(F::nan(), |&v| v - m);
                if let Some(g) = g {
                    let k = scale * w / sum;
                    g.iter_mut().for_each(|e| *e *= k);
                    if let Some(gy) = g.get_mut(y) {
                        *gy -= scale * w;
                    }
                    finite &= one_hot_finite(k, scale * w);
                }
                one_hot_loss(w, ln_sum, d)
            }
            _ => {
                let base = i * classes;
                let (a_total, dot) = match sample {
                    Sample::Index { hit, .. } => {
                        let dot = x
                            .iter()
                            .enumerate()
                            .fold(F::zero(), |s, (c, &v)| s + weighted(coefs.at(sample, c, 0), v - m));
                        (coefs.total_index(hit), dot)
                    }
                    _ => x.iter().enumerate().fold((F::zero(), F::zero()), |(at, dot), (c, &v)| {
                        let a = coefs.at(sample, c, base + c);
                        (at + a, dot + weighted(a, v - m))
                    }),
                };
                if let Some(g) = g {
                    let k = scale * a_total / sum;
                    for (c, e) in g.iter_mut().enumerate() {
                        *e = k * *e - scale * coefs.at(sample, c, base + c);
                        finite &= e.is_finite();
                    }
                }
                a_total * ln_sum - dot
            }
        };
        total += loss.as_f64();
    }
    (total, finite)
}

/// The maximum of a row (NaN, if any, shows up later in the sum).
#[inline(always)]
fn row_max<F: Float>(x: &[F]) -> F {
    let mut acc = [F::neg_infinity(); LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for lane in chunks {
        for k in 0..LANES {
            acc[k] = acc[k].max(lane[k]);
        }
    }
    let m = rest.iter().fold(F::neg_infinity(), |m, &v| m.max(v));
    acc.iter().fold(m, |m, &v| m.max(v))
}

/// `Σ e^(x − m)`, storing each term in `out`. The fast `exp` (≤ 1 ulp,
/// [`fastmath`]) vectorises where the standard one is a libm call per logit
/// (90% of cross-entropy's time with it).
#[inline(always)]
fn exp_into<F: Float>(mul_add: MulAdd, x: &[F], m: F, out: &mut [F]) -> F {
    let mut acc = [F::zero(); LANES];
    let split = x.len() / LANES * LANES;
    let (xc, xr) = x.split_at(split);
    let (oc, or) = out.split_at_mut(split.min(out.len()));
    for (xl, ol) in xc.chunks_exact(LANES).zip(oc.chunks_exact_mut(LANES)) {
        let mut e = [F::zero(); LANES];
        for k in 0..LANES {
            e[k] = fastmath::exp(mul_add, xl[k] - m);
            acc[k] += e[k];
        }
        ol.copy_from_slice(&e);
    }
    let mut tail = F::zero();
    for (&v, o) in xr.iter().zip(or) {
        let e = fastmath::exp(mul_add, v - m);
        *o = e;
        tail += e;
    }
    acc.iter().fold(tail, |s, &a| s + a)
}

/// `Σ e^(x − m)`.
#[inline(always)]
fn exp_sum<F: Float>(mul_add: MulAdd, x: &[F], m: F) -> F {
    let mut acc = [F::zero(); LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for lane in chunks {
        for k in 0..LANES {
            acc[k] += fastmath::exp(mul_add, lane[k] - m);
        }
    }
    let tail = rest.iter().fold(F::zero(), |s, &v| s + fastmath::exp(mul_add, v - m));
    acc.iter().fold(tail, |s, &a| s + a)
}

/// `[N, C, d…]`: the classes of one sample are `inner` apart. Blocks of up to
/// `BLOCK` neighbouring samples are processed side by side, so every pass
/// reads contiguous runs whatever `C` and `inner` are. `logits` holds whole
/// `[C, d…]` slabs, the first being slab `first` of the batch.
#[inline(always)]
fn strided<F: Float>(
    mul_add: MulAdd,
    logits: &[F],
    layout: ClassLayout,
    first: usize,
    coefs: &Coefficients<'_, F>,
    scale: F,
    mut grad: Option<&mut [F]>,
) -> (f64, bool) {
    let ClassLayout { classes, inner, .. } = layout;
    let (mut total, mut finite) = (0.0, true);
    for (slab, x) in logits.chunks_exact(classes * inner).enumerate() {
        let n = first + slab;
        let mut g = grad
            .as_deref_mut()
            .and_then(|g| g.get_mut(slab * classes * inner..(slab + 1) * classes * inner));
        for s0 in (0..inner).step_by(BLOCK) {
            let w = BLOCK.min(inner - s0);
            let first = n * inner + s0; // this block's first sample
            let mut samples = [Sample::Ignored; BLOCK];
            for (j, s) in samples.iter_mut().enumerate().take(w) {
                *s = coefs.sample(first + j, classes);
            }
            // Ignored samples take part in the passes, but their results are
            // dropped and their gradient is written as zeros.
            let lanes = |c: usize| c * inner + s0..c * inner + s0 + w;
            let mut m = [F::neg_infinity(); BLOCK];
            for c in 0..classes {
                for (mj, &v) in m.iter_mut().zip(&x[lanes(c)]) {
                    *mj = mj.max(v);
                }
            }
            let mut sum = [F::zero(); BLOCK];
            let mut dot = [F::zero(); BLOCK];
            let mut a_total = [F::zero(); BLOCK];
            for c in 0..classes {
                let xs = &x[lanes(c)];
                match g.as_deref_mut() {
                    Some(g) => {
                        for ((e_out, (sj, &v)), &mj) in g[lanes(c)].iter_mut().zip(sum.iter_mut().zip(xs)).zip(&m) {
                            let e = fastmath::exp(mul_add, v - mj);
                            *e_out = e;
                            *sj += e;
                        }
                    }
                    None => {
                        for ((sj, &v), &mj) in sum.iter_mut().zip(xs).zip(&m) {
                            *sj += fastmath::exp(mul_add, v - mj);
                        }
                    }
                }
                if !coefs.one_hot {
                    for j in 0..w {
                        let k = n * classes * inner + c * inner + s0 + j;
                        let a = coefs.at(samples[j], c, k);
                        a_total[j] += a;
                        dot[j] += weighted(a, xs[j] - m[j]);
                    }
                }
            }
            // Per sample: the loss, the factor k = scale·A/Σe and, for one-hot
            // samples, the class and amount subtracted from it.
            let mut k = [F::zero(); BLOCK];
            let mut live = [false; BLOCK];
            let mut hot = [(usize::MAX, F::zero()); BLOCK];
            for j in 0..w {
                let ln_sum = sum[j].ln();
                let loss = match samples[j] {
                    Sample::Ignored => {
                        // Its `Σe` is NaN exactly where its `lse` is not finite.
                        if sum[j].is_nan() {
                            total += f64::NAN;
                        }
                        continue;
                    }
                    Sample::OneHot(y, w) => {
                        k[j] = scale * w / sum[j];
                        hot[j] = (y, scale * w);
                        one_hot_loss(w, ln_sum, x[y * inner + s0 + j] - m[j])
                    }
                    Sample::Index { hit, .. } => {
                        let a = coefs.total_index(hit);
                        k[j] = scale * a / sum[j];
                        a * ln_sum - dot[j]
                    }
                    Sample::Soft => {
                        k[j] = scale * a_total[j] / sum[j];
                        a_total[j] * ln_sum - dot[j]
                    }
                };
                live[j] = true;
                total += loss.as_f64();
            }
            let Some(g) = g.as_deref_mut() else { continue };
            if coefs.one_hot {
                for j in (0..w).filter(|&j| live[j]) {
                    finite &= one_hot_finite(k[j], hot[j].1);
                }
            }
            for c in 0..classes {
                let gs = &mut g[lanes(c)];
                if coefs.one_hot {
                    for (j, e) in gs.iter_mut().enumerate() {
                        let (y, h) = hot[j];
                        let v = k[j] * *e - if c == y { h } else { F::zero() };
                        *e = if live[j] { v } else { F::zero() };
                    }
                } else {
                    for (j, e) in gs.iter_mut().enumerate() {
                        let a = coefs.at(samples[j], c, n * classes * inner + c * inner + s0 + j);
                        *e = if live[j] { k[j] * *e - scale * a } else { F::zero() };
                        finite &= e.is_finite();
                    }
                }
            }
        }
    }
    (total, finite)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, term by term: −Σ_c a_c·ln softmax_c, with a from the
    /// module docs, summed over samples; gradient A·softmax − a.
    fn naive(
        x: &[f64],
        layout: ClassLayout,
        a_of: impl Fn(usize, usize) -> Option<Vec<f64>>, // (n, s) -> a, None = ignored
    ) -> (f64, Vec<f64>) {
        let ClassLayout { outer, classes, inner } = layout;
        let mut total = 0.0;
        let mut grad = vec![0.0; x.len()];
        for n in 0..outer {
            for s in 0..inner {
                let Some(a) = a_of(n, s) else { continue };
                let at = |c: usize| n * classes * inner + c * inner + s;
                let lse = (0..classes).map(|c| x[at(c)].exp()).sum::<f64>().ln();
                let a_total: f64 = a.iter().sum();
                for c in 0..classes {
                    total += a[c] * (lse - x[at(c)]);
                    grad[at(c)] = a_total * (x[at(c)] - lse).exp() - a[c];
                }
            }
        }
        (total, grad)
    }

    fn run(x: &[f64], layout: ClassLayout, labels: Labels<'_, f64>, options: Options<'_>) -> (f64, Vec<f64>, f64) {
        let mut g = vec![f64::NAN; x.len()];
        let (v, finite) = cross_entropy(x, layout, labels, options, 1.0, Some(&mut g));
        assert_eq!(finite, g.iter().all(|v| v.is_finite()));
        let (forward_only, no_grad) = cross_entropy(x, layout, labels, options, 1.0, None);
        assert!(no_grad);
        (v, g, forward_only)
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * (1.0 + b.abs())
    }

    #[test]
    fn every_layout_and_option_matches_the_definition() {
        let weights = [0.5, 2.0, 1.0, 0.0, 1.5];
        for (outer, inner) in [(3, 1), (2, 5), (2, 17), (1, 40), (2, 150)] {
            let classes = 5;
            let layout = ClassLayout { outer, classes, inner };
            let x: Vec<f64> = (0..layout.len())
                .map(|i| ((i * 37 % 23) as f64 * 0.41).sin() * 3.0)
                .collect();
            let y: Vec<f64> = (0..layout.samples()).map(|i| ((i * 7 + 3) % classes) as f64).collect();
            let soft: Vec<f64> = (0..layout.len()).map(|i| ((i * 11 % 7) as f64) / 7.0).collect();
            for (w, eps, ignore) in [
                (None, 0.0, None),
                (None, 0.0, Some(3)),
                (Some(&weights[..]), 0.0, None),
                (None, 0.2, Some(1)),
                (Some(&weights[..]), 0.3, Some(4)),
            ] {
                let options = Options {
                    weights: w,
                    smoothing: eps,
                };
                let wc = |c: usize| w.map_or(1.0, |w| w[c]);
                let c_f = classes as f64;
                let (v, g, f) = run(
                    &x,
                    layout,
                    Labels::Indices {
                        targets: &y,
                        ignore_index: ignore,
                    },
                    options,
                );
                let (ev, eg) = naive(&x, layout, |n, s| {
                    let yy = y[n * inner + s] as usize;
                    (Some(yy) != ignore).then(|| {
                        (0..classes)
                            .map(|c| eps / c_f * wc(c) + if c == yy { (1.0 - eps) * wc(yy) } else { 0.0 })
                            .collect()
                    })
                });
                let what = format!("indices {outer}x{classes}x{inner} {w:?} {eps} {ignore:?}");
                assert!(close(v, ev) && close(f, ev), "{what}: {v} {f} vs {ev}");
                assert!(g.iter().zip(&eg).all(|(a, b)| close(*a, *b)), "{what}: grad");

                let (v, g, f) = run(&x, layout, Labels::Probabilities { targets: &soft }, options);
                let (ev, eg) = naive(&x, layout, |n, s| {
                    Some(
                        (0..classes)
                            .map(|c| wc(c) * (soft[n * classes * inner + c * inner + s] * (1.0 - eps) + eps / c_f))
                            .collect(),
                    )
                });
                let what = format!("soft {outer}x{classes}x{inner} {w:?} {eps}");
                assert!(close(v, ev) && close(f, ev), "{what}: {v} {f} vs {ev}");
                assert!(g.iter().zip(&eg).all(|(a, b)| close(*a, *b)), "{what}: grad");
            }
        }
    }

    #[test]
    fn masked_classes_and_ignored_samples_stay_finite() {
        let inf = f64::NEG_INFINITY;
        for inner in [1, 3] {
            // Sample 0 masks class 1; sample 1 is ignored and masks class 0.
            let layout = ClassLayout {
                outer: 2,
                classes: 3,
                inner,
            };
            let mut x = vec![0.5; layout.len()];
            for s in 0..inner {
                x[inner + s] = inf;
                x[3 * inner + s] = inf;
            }
            let y: Vec<f64> = (0..layout.samples())
                .map(|i| if i < inner { 0.0 } else { 7.0 })
                .collect();
            let labels = Labels::Indices {
                targets: &y,
                ignore_index: Some(7),
            };
            let (v, g, _) = run(
                &x,
                layout,
                labels,
                Options {
                    weights: None,
                    smoothing: 0.0,
                },
            );
            assert!(close(v, inner as f64 * 2f64.ln()), "{v}");
            assert!(g.iter().all(|v| v.is_finite()));
            assert_eq!(g[inner], 0.0);
            assert!(g[3 * inner..].iter().all(|&v| v == 0.0));
        }
    }

    #[test]
    fn a_sample_that_adds_nothing_still_makes_the_loss_nan_where_its_lse_is_not_finite() {
        let (nan, inf, ninf) = (f64::NAN, f64::INFINITY, f64::NEG_INFINITY);
        for inner in [1, 3] {
            let layout = ClassLayout {
                outer: 2,
                classes: 3,
                inner,
            };
            // Sample 0 (of each position s) is kept with class 0; sample 1 is
            // ignored (target 7) or of class 2, whose weight is 0.
            let weights = [1.0, 1.0, 0.0];
            for (target, w) in [(7.0, None), (2.0, Some(&weights[..]))] {
                let y: Vec<f64> = (0..layout.samples())
                    .map(|i| if i < inner { 0.0 } else { target })
                    .collect();
                let labels = Labels::Indices {
                    targets: &y,
                    ignore_index: Some(7),
                };
                let options = Options {
                    weights: w,
                    smoothing: 0.0,
                };
                for (row, nan_expected) in [
                    ([0.5, nan, 0.5], true),
                    ([0.5, 0.5, inf], true),
                    ([ninf; 3], true),
                    ([0.5, 0.5, ninf], false),
                    ([ninf, 0.5, 0.5], false),
                ] {
                    let mut x = vec![0.5; layout.len()];
                    for s in 0..inner {
                        for (c, &v) in row.iter().enumerate() {
                            x[3 * inner + c * inner + s] = v;
                        }
                    }
                    let (v, _, f) = run(&x, layout, labels, options);
                    let what = format!("inner {inner}, target {target}, row {row:?}: {v} {f}");
                    if nan_expected {
                        assert!(v.is_nan() && f.is_nan(), "{what}");
                    } else {
                        assert!(close(v, inner as f64 * 3f64.ln()) && close(f, v), "{what}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_non_finite_gradient_is_reported_on_every_path() {
        // An infinite scale (no loss produces one) makes k = scale·w/Σe
        // infinite: one-hot samples are judged on k, the others per element.
        let x = [0.5_f32, -1.0, 2.0, 0.0, 1.0, -0.5];
        let y = [1.0_f32, 2.0];
        for (outer, inner) in [(2, 1), (1, 2)] {
            let layout = ClassLayout {
                outer,
                classes: 3,
                inner,
            };
            let labels = Labels::Indices {
                targets: &y,
                ignore_index: None,
            };
            for smoothing in [0.0, 0.1] {
                let options = Options {
                    weights: None,
                    smoothing,
                };
                for (scale, expected) in [(1.0, true), (f32::INFINITY, false)] {
                    let mut g = [0.0_f32; 6];
                    let (_, finite) = cross_entropy(&x, layout, labels, options, scale, Some(&mut g));
                    assert_eq!(finite, expected, "inner {inner}, ε {smoothing}, scale {scale}");
                    assert_eq!(finite, g.iter().all(|v| v.is_finite()));
                }
            }
        }
    }

    #[test]
    fn huge_logits_lose_nothing() {
        let layout = ClassLayout {
            outer: 1,
            classes: 3,
            inner: 1,
        };
        let x = [1e4_f32, -1e4, 1e4 - 1.0];
        let mut g = [0.0_f32; 3];
        let y = [2.0_f32];
        let (v, finite) = cross_entropy(
            &x,
            layout,
            Labels::Indices {
                targets: &y,
                ignore_index: None,
            },
            Options {
                weights: None,
                smoothing: 0.0,
            },
            1.0,
            Some(&mut g),
        );
        let expected = (1.0 + (-1.0_f64).exp()).ln() + 1.0;
        assert!((v as f64 - expected).abs() < 1e-6, "{v}");
        assert!(finite && g.iter().all(|v| v.is_finite()));
    }
}
