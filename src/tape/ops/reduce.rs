//! Reductions: over all elements (`sum`, `mean`) and along one axis (`sum_axis`,
//! `mean_axis`, `max_axis`, `logsumexp_axis`, `norm_axis`), and the softmax
//! pair built on `logsumexp`. Each forward is followed by its backward rule.
//!
//! The loops along contiguous rows run inside the SIMD dispatch and take its
//! [`MulAdd`]; the lanes across an axis run at the baseline level, which has
//! no FMA instruction, so their exps keep [`MulAdd::SEPARATE`].

use ndarray::ArrayD;

use super::{Op, chain};
use crate::error::{Error, Result};
use crate::float::Float;
use crate::kernels::fastmath::{self, MulAdd};
use crate::kernels::parallel::{self, Plan, Rows};
use crate::tape::Var;
use crate::tape::layout::{self, around, flat, flat_mut, from_vec};
use crate::tape::pool;

/// Fails unless `axis` indexes a dimension of `shape`.
pub(crate) fn check_axis(op: &'static str, shape: &[usize], axis: usize) -> Result<()> {
    if axis < shape.len() {
        Ok(())
    } else {
        Err(Error::AxisOutOfRange {
            op,
            axis,
            ndim: shape.len(),
            shape: shape.to_vec(),
        })
    }
}

/// The shape of a reduction of `shape` along `axis`: the axis kept with size
/// 1, or removed.
fn reduced_shape(shape: &[usize], axis: usize, keepdims: bool) -> Vec<usize> {
    let mut out = shape.to_vec();
    if keepdims {
        out[axis] = 1;
    } else {
        out.remove(axis);
    }
    out
}

/// The larger of `m` and `v`, where a NaN wins so that it propagates.
#[inline(always)]
fn max_nan<F: Float>(m: F, v: F) -> F {
    if v > m || v.is_nan() { v } else { m }
}

/// Folds every lane of `(outer, len, inner)` blocks (see [`around`]) into one
/// value, `outer·inner` of them in row-major order. Lanes along a contiguous
/// axis (`inner = 1`) fold row by row, others `inner` at a time.
fn fold_lanes<F: Float>(xs: &[F], (outer, n, inner): (usize, usize, usize), init: F, f: impl Fn(F, F) -> F) -> Vec<F> {
    if inner == 1 && n > 0 {
        return xs
            .chunks_exact(n.max(1))
            .take(outer)
            .map(|row| row.iter().fold(init, |acc, &v| f(acc, v)))
            .collect();
    }
    let mut acc = vec![init; outer * inner];
    for (o, lanes) in acc.chunks_exact_mut(inner.max(1)).enumerate() {
        for k in 0..n {
            let row = &xs[(o * n + k) * inner..][..inner];
            for (a, &v) in lanes.iter_mut().zip(row) {
                *a = f(*a, v);
            }
        }
    }
    acc
}

/// The sum of every lane (see [`fold_lanes`]); rows in eight partial sums.
fn sum_lanes<F: Float>(xs: &[F], dims: (usize, usize, usize)) -> Vec<F> {
    let (outer, n, inner) = dims;
    if inner == 1 && n > 0 {
        return xs.chunks_exact(n.max(1)).take(outer).map(layout::sum).collect();
    }
    fold_lanes(xs, dims, F::zero(), |a, v| a + v)
}

/// The shift that keeps `exp(v − shift)` from overflowing along a lane of
/// maximum `max`: the maximum itself when it is finite.
#[inline(always)]
fn shift_for<F: Float>(max: F) -> F {
    if max.is_finite() { max } else { F::zero() }
}

/// `ln Σ exp(x)` of every lane (see [`fold_lanes`]). Each lane is shifted by
/// its maximum first so no term overflows (and the largest is exactly
/// `e⁰ = 1`); an all-`−∞` lane gives `−∞`, a `+∞` gives `+∞`, a NaN gives NaN.
fn logsumexp_lanes<F: Float>(xs: &[F], dims: (usize, usize, usize)) -> Vec<F> {
    let (outer, n, inner) = dims;
    if inner == 1 && n > 0 {
        return logsumexp_rows(&xs[..outer * n], n);
    }
    let (shifts, log_sums) = shifts_and_log_sums(xs, dims);
    shifts.iter().zip(&log_sums).map(|(&m, &s)| m + s).collect()
}

/// Every lane's logsumexp in two parts, the shift `m` and `ln Σ exp(x − m)`,
/// for lanes across the axis (`inner > 1`). Kept apart so that
/// `log_softmax` can take `(x − m) − ln Σ`: their sum rounds to the
/// magnitude of `m`, which in `f32` at logits of 1e4 is off by 5e-4.
fn shifts_and_log_sums<F: Float>(xs: &[F], dims: (usize, usize, usize)) -> (Vec<F>, Vec<F>) {
    let (_, n, inner) = dims;
    let shifts: Vec<F> = fold_lanes(xs, dims, F::neg_infinity(), max_nan)
        .into_iter()
        .map(shift_for)
        .collect();
    let mut sums = vec![F::zero(); shifts.len()];
    for (o, (lanes, shifts)) in sums
        .chunks_exact_mut(inner.max(1))
        .zip(shifts.chunks_exact(inner.max(1)))
        .enumerate()
    {
        for k in 0..n {
            let row = &xs[(o * n + k) * inner..][..inner];
            for ((s, &v), &m) in lanes.iter_mut().zip(row).zip(shifts) {
                *s += fastmath::exp(MulAdd::SEPARATE, v - m);
            }
        }
    }
    sums.iter_mut().for_each(|s| *s = s.ln());
    (shifts, sums)
}

/// What a pass over rows writes besides each row's logsumexp.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Normalised {
    /// `log_softmax`: `(x − m) − ln Σ exp(x − m)`.
    Log,
    /// `softmax`: `exp(x − m) / Σ exp(x − m)`.
    Probabilities,
}

/// `log_softmax` or `softmax` of every lane, from the shift `m` and
/// `ln Σ exp(x − m)` kept apart, never from `x − logsumexp(x)` (see
/// [`shifts_and_log_sums`]).
fn normalised_lanes<F: Float>(xs: &[F], dims: (usize, usize, usize), kind: Normalised) -> Vec<F> {
    let (outer, n, inner) = dims;
    if inner == 1 && n > 0 {
        // Rows along a contiguous axis: one SIMD pass, row by row.
        let mut out = pool::for_overwrite(xs.len());
        let mut lse = vec![F::zero(); outer];
        logsumexp_rows_into(&xs[..outer * n], n, &mut lse, Some((&mut out, kind)));
        return out;
    }
    let (shifts, log_sums) = shifts_and_log_sums(xs, dims);
    let mut out = map_against_lanes(xs, &shifts, dims, |x, m| x - m);
    match kind {
        Normalised::Log => {
            update_against_lanes(&mut out, xs, &log_sums, dims, |y, _, s| undefined_at_infinity(s, y - s))
        }
        Normalised::Probabilities => update_against_lanes(&mut out, xs, &log_sums, dims, |y, _, s| {
            undefined_at_infinity(s, fastmath::exp(MulAdd::SEPARATE, y - s))
        }),
    }
    out
}

/// A lane's `log_softmax` or `softmax` value `v`, or NaN when its
/// `ln Σ exp(x − m)` is `+∞`, which happens exactly when the lane holds a
/// `+∞` (the shift `m` is then 0; a finite maximum keeps every term ≤ 1).
/// `∞ − ∞` is undefined, so PyTorch's `x − max` makes the whole lane NaN;
/// so does this, rather than a lane of `−∞` beside one NaN.
#[inline(always)]
fn undefined_at_infinity<F: Float>(log_sum: F, v: F) -> F {
    if log_sum == F::infinity() { F::nan() } else { v }
}

/// The maximum of one contiguous lane, NaN winning, with eight running
/// maxima so that the pass vectorises.
#[inline(always)]
fn row_max<F: Float>(row: &[F]) -> F {
    let chunks = row.chunks_exact(8);
    let tail = chunks.remainder();
    let mut max = [F::neg_infinity(); 8];
    for chunk in chunks {
        for (m, &v) in max.iter_mut().zip(chunk) {
            *m = max_nan(*m, v);
        }
    }
    tail.iter().chain(&max).fold(F::neg_infinity(), |m, &v| max_nan(m, v))
}

/// `out[i] = e^(row[i] − shift)`, through `shifted` (as long as `row`), with
/// the vectorised exp of [`fastmath`] (within 1 ulp of the standard
/// library's, for a fraction of its time per element).
fn exp_shifted<F: Float>(row: &[F], shift: F, shifted: &mut [F], out: &mut [F]) {
    for (s, &v) in shifted.iter_mut().zip(row) {
        *s = v - shift;
    }
    fastmath::exp_slice(shifted, out);
}

/// How the row kernels below spread over the cores: blocks of about 16 Ki
/// elements, on both cores from 2¹⁵ elements (about 50 µs of exps). Each row
/// is computed whole by one thread, so the split changes no bit.
const ROWS: Plan = Plan {
    block: 1 << 14,
    min_parallel: 1 << 15,
    streaming: false,
};

/// `ln Σ exp` of contiguous lanes of length `n` (`n > 0`), row by row while
/// the row is in cache: the maximum, then the shifted exps, then their sum.
fn logsumexp_rows<F: Float>(xs: &[F], n: usize) -> Vec<F> {
    let mut lse = vec![F::zero(); xs.len() / n.max(1)];
    logsumexp_rows_into(xs, n, &mut lse, None);
    lse
}

/// [`logsumexp_rows`] into `lse`, on both cores, inside the SIMD dispatch
/// (its loops outside it ran at the baseline level: 40% of cross-entropy's
/// tape time). With `normalised`, each row's `log_softmax`,
/// `(x − m) − ln Σ exp(x − m)`, or `softmax`, `exp(x − m) / Σ exp(x − m)`, is
/// written there too while the row is in cache.
fn logsumexp_rows_into<F: Float>(xs: &[F], n: usize, lse: &mut [F], normalised: Option<(&mut [F], Normalised)>) {
    let width = n.max(1);
    let kind = normalised.as_ref().map(|&(_, kind)| kind);
    let out = normalised.map(|(data, _)| Rows { data, width });
    parallel::reduce_with(
        (Rows { data: xs, width }, lse, out),
        ROWS.rows(width),
        #[inline(always)]
        |m, (xs, lse, mut out)| {
            let mut terms = vec![F::zero(); width];
            for (k, (row, l)) in xs.data.chunks_exact(width).zip(lse).enumerate() {
                let shift = shift_for(row_max(row));
                for (t, &v) in terms.iter_mut().zip(row) {
                    *t = fastmath::exp(m, v - shift);
                }
                let sum = layout::sum(&terms);
                let log_sum = sum.ln();
                *l = shift + log_sum;
                if let (Some(out), Some(kind)) = (out.as_mut(), kind) {
                    // Not from `l`: it is rounded to the size of the shift.
                    let out = &mut out.data[k * width..(k + 1) * width];
                    match kind {
                        _ if log_sum == F::infinity() => out.fill(F::nan()), // a +∞ logit, see `undefined_at_infinity`
                        Normalised::Log => out.iter_mut().zip(row).for_each(|(y, &x)| *y = (x - shift) - log_sum),
                        Normalised::Probabilities => {
                            let inverse = sum.recip();
                            out.iter_mut().zip(&terms).for_each(|(y, &t)| *y = t * inverse);
                        }
                    }
                }
            }
        },
        #[inline(always)]
        |(), ()| (),
    );
}

/// A backward along contiguous rows of `n` (`n > 0`), in place: `update`
/// gets the SIMD level's multiply-add and each row of the gradient with the
/// same row of the forward output, on both cores, inside the SIMD dispatch
/// (mark it `#[inline(always)]`).
fn update_rows<F: Float>(ys: &[F], n: usize, grad: &mut [F], update: impl Fn(MulAdd, &mut [F], &[F]) + Sync) {
    parallel::reduce_with(
        (Rows { data: ys, width: n }, Rows { data: grad, width: n }),
        ROWS.rows(n),
        #[inline(always)]
        |m, (ys, grad): (Rows<&[F]>, Rows<&mut [F]>)| {
            for (g, y) in grad.data.chunks_exact_mut(n).zip(ys.data.chunks_exact(n)) {
                update(m, g, y);
            }
        },
        #[inline(always)]
        |(), ()| (),
    );
}

/// `out[o, k, i] = f(x[o, k, i], lane[o, i])` for every element of
/// `(outer, len, inner)` blocks: an elementwise map against one value per lane
/// (a softmax against its logsumexp, say).
fn map_against_lanes<F: Float>(
    xs: &[F],
    lanes: &[F],
    (outer, n, inner): (usize, usize, usize),
    f: impl Fn(F, F) -> F,
) -> Vec<F> {
    let mut out = Vec::with_capacity(outer * n * inner);
    if inner == 1 && n > 0 {
        for (row, &l) in xs.chunks_exact(n.max(1)).zip(lanes) {
            out.extend(row.iter().map(|&x| f(x, l)));
        }
        return out;
    }
    for o in 0..outer {
        let lane = &lanes[o * inner..][..inner];
        for k in 0..n {
            let row = &xs[(o * n + k) * inner..][..inner];
            out.extend(row.iter().zip(lane).map(|(&x, &l)| f(x, l)));
        }
    }
    out
}

/// `e^(x[o, k, i] − lane[o, i])` for every element of `(outer, len, inner)`
/// blocks: a softmax from its logsumexp. Along a contiguous axis, row by row
/// with the vectorised exp.
fn exp_against_lanes<F: Float>(xs: &[F], lanes: &[F], dims: (usize, usize, usize)) -> Vec<F> {
    let (outer, n, inner) = dims;
    if inner == 1 && n > 0 {
        let mut out = vec![F::zero(); outer * n];
        let mut shifted = vec![F::zero(); n];
        for ((row, out), &l) in xs.chunks_exact(n.max(1)).zip(out.chunks_exact_mut(n.max(1))).zip(lanes) {
            exp_shifted(row, l, &mut shifted, out);
        }
        return out;
    }
    map_against_lanes(xs, lanes, dims, |x, l| fastmath::exp(MulAdd::SEPARATE, x - l))
}

/// `x[o, k, i] = f(x[o, k, i], y[o, k, i], lane[o, i])` over `xs` in place,
/// for every element of `(outer, len, inner)` blocks.
fn update_against_lanes<F: Float>(
    xs: &mut [F],
    ys: &[F],
    lanes: &[F],
    (_, n, inner): (usize, usize, usize),
    f: impl Fn(F, F, F) -> F,
) {
    if n == 0 || inner == 0 {
        return;
    }
    for ((block, y_block), lane) in xs
        .chunks_exact_mut((n * inner).max(1))
        .zip(ys.chunks_exact((n * inner).max(1)))
        .zip(lanes.chunks_exact(inner.max(1)))
    {
        for (row, y_row) in block
            .chunks_exact_mut(inner.max(1))
            .zip(y_block.chunks_exact(inner.max(1)))
        {
            for ((x, &y), &l) in row.iter_mut().zip(y_row).zip(lane) {
                *x = f(*x, y, l);
            }
        }
    }
}

/// Whole-array reductions.
impl<'t, F: Float> Var<'t, F> {
    /// The sum of all elements, as a zero-dimensional value (0 for an empty
    /// value, as in NumPy). Backward: every element receives the output
    /// gradient.
    ///
    /// # Errors
    /// None: always `Ok`.
    pub fn sum(self) -> Result<Var<'t, F>> {
        let (total, speculation) = self.sum_of_elements(F::one());
        let out = self.record(ndarray::arr0(total).into_dyn(), Op::Sum { input: self.index });
        out.keep_speculation(speculation);
        Ok(out)
    }

    /// The mean of all elements, as a zero-dimensional value. Backward: every
    /// element receives the output gradient divided by the element count.
    ///
    /// # Errors
    /// [`Error::Empty`] when the value has no element.
    pub fn mean(self) -> Result<Var<'t, F>> {
        let shape = self.shape();
        let n: usize = shape.iter().product();
        if n == 0 {
            return Err(Error::Empty {
                op: "mean",
                arg: "input",
                shape,
            });
        }
        // The seed the sweep gives the elements when the mean's gradient is 1.
        let (total, speculation) = self.sum_of_elements(mean_share(F::one(), n));
        let out = self.record(
            ndarray::arr0(total / F::from_f64(n as f64)).into_dyn(),
            Op::Mean { input: self.index },
        );
        out.keep_speculation(speculation);
        Ok(out)
    }
}

/// Each of `n` elements' share of a mean's gradient `upstream` (in one place,
/// so that the gradients a mean computes with its value and those the sweep
/// computes agree).
pub(crate) fn mean_share<F: Float>(upstream: F, n: usize) -> F {
    upstream / F::from_f64(n as f64)
}

/// The one element of a one-element gradient (`sum` and `mean` pass it to
/// every element; the sweep does that in `backprop.rs`).
pub(crate) fn only<F: Float>(grad: &ArrayD<F>) -> F {
    grad.iter().copied().next().unwrap_or_else(F::zero)
}

/// How a reduction along a last axis streams a lazy chain: row sums (of
/// squares when the flag is set), each finished by the function, which also
/// gets the row length.
type RowFold<F> = (bool, fn(F, usize) -> F);

/// Reductions along one axis. With `keepdims` the reduced axis stays with size
/// 1, so the result broadcasts against the input; without it the axis is
/// removed.
impl<'t, F: Float> Var<'t, F> {
    /// Records the reduction of every lane along `axis`. `reduce` reads the
    /// array; `fused`, when given, instead streams a lazy chain along a last
    /// axis (nothing after it but sizes of 1): row sums, of squares when its
    /// flag is set, each then finished by its function (with the row length).
    fn axis_reduction(
        self,
        op: &'static str,
        axis: usize,
        keepdims: bool,
        reduce: impl FnOnce(&[F], (usize, usize, usize)) -> Vec<F>,
        fused: Option<RowFold<F>>,
        make_op: impl FnOnce(usize) -> Op<F>,
    ) -> Result<Var<'t, F>> {
        let shape = self.shape();
        check_axis(op, &shape, axis)?;
        let empty_is_undefined = !matches!(op, "sum_axis" | "norm_axis");
        if empty_is_undefined && shape[axis] == 0 {
            return Err(Error::InvalidShape {
                op,
                arg: "input",
                shape,
                expected: format!("at least one element along axis {axis}, the reduced axis"),
            });
        }
        let dims = around(&shape, axis);
        let streamed = match (fused, layout::rows_along(&shape, axis)) {
            (Some((squares, finish)), Some(width)) => self
                .row_sums(width, squares)
                .map(|sums| sums.into_iter().map(|s| finish(s, width)).collect()),
            _ => None,
        };
        let lanes = streamed.unwrap_or_else(|| reduce(&flat(&self.value_ref()), dims));
        let value = from_vec(&reduced_shape(&shape, axis, keepdims), lanes);
        Ok(self.record(value, make_op(self.index)))
    }

    /// Sum along `axis` (0 over an empty axis); its gradient is the output
    /// gradient broadcast back along the axis.
    ///
    /// ```
    /// # use tapeloss::{Tape, ndarray::array};
    /// # fn main() -> tapeloss::Result<()> {
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]].into_dyn());
    /// assert_eq!(x.sum_axis(1, false)?.value(), array![6.0, 15.0].into_dyn());
    /// assert_eq!(x.sum_axis(1, true)?.shape(), vec![2, 1]);
    /// assert_eq!(x.sum_axis(0, false)?.value(), array![5.0, 7.0, 9.0].into_dyn());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::AxisOutOfRange`] when `axis ≥ ndim`.
    pub fn sum_axis(self, axis: usize, keepdims: bool) -> Result<Var<'t, F>> {
        self.axis_reduction(
            "sum_axis",
            axis,
            keepdims,
            sum_lanes,
            Some((false, |s, _| s)),
            |input| Op::SumAxis { input, axis },
        )
    }

    /// Mean along `axis`; its gradient is the output gradient broadcast back and
    /// divided by the axis length.
    ///
    /// # Errors
    /// [`Error::AxisOutOfRange`] when `axis ≥ ndim`; [`Error::InvalidShape`]
    /// naming the axis when it has size 0.
    pub fn mean_axis(self, axis: usize, keepdims: bool) -> Result<Var<'t, F>> {
        self.axis_reduction(
            "mean_axis",
            axis,
            keepdims,
            |x, dims| {
                let n = F::from_f64(dims.1 as f64);
                sum_lanes(x, dims).into_iter().map(|s| s / n).collect()
            },
            Some((false, |s, n| s / F::from_f64(n as f64))),
            |input| Op::MeanAxis { input, axis },
        )
    }

    /// Maximum along `axis`. NaN propagates. **Ties share the gradient:** when
    /// `k` elements of a slice equal its maximum, each receives `1/k` of the
    /// output gradient (PyTorch's `amax` convention), so the gradient sums to
    /// the output gradient either way. A slice holding a NaN has the maximum
    /// NaN, which no element equals: it passes no gradient (PyTorch's `amax`
    /// divides by that count of 0 and passes NaN).
    ///
    /// ```
    /// # use tapeloss::{Tape, ndarray::array};
    /// # fn main() -> tapeloss::Result<()> {
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(array![[1.0, 3.0, 3.0], [2.0, 0.0, 1.0]].into_dyn());
    /// let m = x.max_axis(1, false)?;
    /// assert_eq!(m.value(), array![3.0, 2.0].into_dyn());
    /// let grads = tape.backward(m.sum()?)?;
    /// assert_eq!(grads.wrt(x).unwrap(), &array![[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]].into_dyn());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::AxisOutOfRange`] when `axis ≥ ndim`; [`Error::InvalidShape`]
    /// naming the axis when it has size 0.
    pub fn max_axis(self, axis: usize, keepdims: bool) -> Result<Var<'t, F>> {
        self.axis_reduction(
            "max_axis",
            axis,
            keepdims,
            |x, dims| fold_lanes(x, dims, F::neg_infinity(), max_nan),
            None,
            |input| Op::MaxAxis { input, axis },
        )
    }

    /// `ln Σ exp(x)` along `axis`, computed stably by shifting each slice by
    /// its maximum: logits of ±1e4 give exact results in `f32` and `f64`. The
    /// gradient is the softmax along the axis times the output gradient.
    ///
    /// # Errors
    /// [`Error::AxisOutOfRange`] when `axis ≥ ndim`; [`Error::InvalidShape`]
    /// naming the axis when it has size 0.
    pub fn logsumexp_axis(self, axis: usize, keepdims: bool) -> Result<Var<'t, F>> {
        self.axis_reduction("logsumexp_axis", axis, keepdims, logsumexp_lanes, None, |input| {
            Op::LogSumExpAxis { input, axis }
        })
    }

    /// The Euclidean norm `‖x‖ = √Σ x²` along `axis` (0 over an empty axis),
    /// as PyTorch's `x.norm(dim=axis)`: a distance, from the difference of two
    /// points. The sum of squares is not rescaled, so it overflows to `+∞`
    /// beyond about `1e154` in `f64` and `1e19` in `f32`, and underflows
    /// below about `1e-154` and `1e-19` (subnormal squares lose digits first):
    /// a vector that small has norm 0, and so gradient 0, as at a true zero.
    ///
    /// Backward: `g · x/‖x‖`, with `x/‖x‖` taken as `x·(1/‖x‖)`: one
    /// division per lane, two roundings instead of one per element (3/5
    /// comes out as 0.6000000000000001 in `f64`). Where the norm is 0 it has
    /// no derivative; the gradient is taken as 0 there (PyTorch's choice), so the distance
    /// between two equal points passes no gradient rather than NaN.
    ///
    /// ```
    /// # use tapeloss::{Tape, ndarray::array};
    /// # fn main() -> tapeloss::Result<()> {
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(array![[3.0, 4.0], [0.0, 0.0]].into_dyn());
    /// let norms = x.norm_axis(1, false)?;
    /// assert_eq!(norms.value(), array![5.0, 0.0].into_dyn());
    /// let grads = tape.backward(norms.sum()?)?;
    /// let expected = array![[0.6, 0.8], [0.0, 0.0]].into_dyn(); // 3/5, 4/5
    /// let grad = grads.wrt(x).unwrap();
    /// assert!(grad.iter().zip(&expected).all(|(g, e)| (g - e).abs() <= 1e-15));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::AxisOutOfRange`] when `axis ≥ ndim`.
    pub fn norm_axis(self, axis: usize, keepdims: bool) -> Result<Var<'t, F>> {
        self.axis_reduction(
            "norm_axis",
            axis,
            keepdims,
            |x, dims| norms(x, dims),
            Some((true, |s, _| s.sqrt())),
            |input| Op::NormAxis { input, axis },
        )
    }
}

/// The Euclidean norm of every lane (see [`fold_lanes`]).
fn norms<F: Float>(xs: &[F], dims: (usize, usize, usize)) -> Vec<F> {
    let (outer, n, inner) = dims;
    if inner == 1 && n > 0 {
        return xs
            .chunks_exact(n.max(1))
            .take(outer)
            .map(|row| layout::sum_of(row, |v| v * v).sqrt())
            .collect();
    }
    let mut squares = fold_lanes(xs, dims, F::zero(), |s, v| s + v * v);
    squares.iter_mut().for_each(|s| *s = s.sqrt());
    squares
}

/// `g · y/‖y‖` for one element `y` of a lane of norm `norm`, given
/// `inverse = 1/norm`: 0 where the norm is 0 (every `y` is 0), and `g`'s zero
/// where `g` is 0 (see [`chain`]). `y/‖y‖` is taken before the product, as
/// `g/‖y‖` can overflow where the product does not, and as `y·(1/‖y‖)`: one
/// division per lane instead of one per element (2–4% of triplet's and
/// contrastive's time on the tape; triplet's closed form also scales by
/// `1/d`). A norm of squares that is not 0 is at least the square root of the
/// least subnormal, whose reciprocal is finite.
#[inline(always)]
fn norm_slope<F: Float>(y: F, g: F, norm: F, inverse: F) -> F {
    if norm == F::zero() {
        F::zero()
    } else {
        chain(g, y * inverse)
    }
}

/// [`norm_slope`] for the elements `ys` of one lane, written over `out`.
#[inline(always)]
pub(crate) fn norm_slopes<F: Float>(ys: &[F], g: F, norm: F, out: &mut [F]) {
    let inverse = F::one() / norm;
    out.iter_mut()
        .zip(ys)
        .for_each(|(d, &y)| *d = norm_slope(y, g, norm, inverse));
}

/// `g · x/‖x‖` along the axis, 0 where the norm is 0 (where every `x` is 0):
/// [`norm_slope`] per element.
pub(crate) fn norm_axis_backward<F: Float>(
    x: &ArrayD<F>,
    norm: &ArrayD<F>,
    axis: usize,
    grad: &ArrayD<F>,
) -> ArrayD<F> {
    let (outer, n, inner) = around(x.shape(), axis);
    let (xs, norms, g) = (flat(x), flat(norm), flat(grad));
    let inverses: Vec<F> = norms.iter().map(|&norm| F::one() / norm).collect();
    let mut out = Vec::with_capacity(x.len());
    for o in 0..outer {
        if inner == 1 {
            // One lane per row, contiguous.
            let (g, norm, inverse) = (g[o], norms[o], inverses[o]);
            out.extend(xs[o * n..(o + 1) * n].iter().map(|&x| norm_slope(x, g, norm, inverse)));
            continue;
        }
        let lanes = o * inner..(o + 1) * inner;
        let (g, norms, inverses) = (&g[lanes.clone()], &norms[lanes.clone()], &inverses[lanes]);
        for k in 0..n {
            let row = &xs[(o * n + k) * inner..][..inner];
            out.extend(
                (row.iter().zip(g))
                    .zip(norms.iter().zip(inverses))
                    .map(|((&x, &g), (&norm, &inverse))| norm_slope(x, g, norm, inverse)),
            );
        }
    }
    from_vec(x.shape(), out)
}

/// `scale · grad` broadcast back over the reduced axis (sum and mean).
pub(crate) fn sum_axis_backward<F: Float>(shape: &[usize], axis: usize, grad: &ArrayD<F>, scale: F) -> ArrayD<F> {
    let (outer, n, inner) = around(shape, axis);
    let g = flat(grad);
    let mut out = Vec::with_capacity(outer * n * inner);
    if inner == 1 {
        // Each lane's gradient repeated along its row.
        for &g in g.iter().take(outer) {
            out.extend(std::iter::repeat_n(g * scale, n));
        }
    } else {
        for lane in g.chunks_exact(inner.max(1)).take(outer) {
            for _ in 0..n {
                out.extend(lane.iter().map(|&g| g * scale));
            }
        }
    }
    from_vec(shape, out)
}

/// The output gradient shared among the elements equal to the maximum.
pub(crate) fn max_axis_backward<F: Float>(x: &ArrayD<F>, y: &ArrayD<F>, axis: usize, grad: &ArrayD<F>) -> ArrayD<F> {
    let dims = around(x.shape(), axis);
    let (xs, ys, g) = (flat(x), flat(y), flat(grad));
    // A NaN maximum matches nothing: its lane gets no gradient.
    let mut dx = map_against_lanes(&xs, &ys, dims, |x, max| if x == max { F::one() } else { F::zero() });
    let ties = sum_lanes(&dx, dims);
    let shares: Vec<F> = g
        .iter()
        .zip(&ties)
        .map(|(&g, &count)| if count > F::zero() { g / count } else { F::zero() })
        .collect();
    update_against_lanes(&mut dx, &xs, &shares, dims, |tie, _, share| tie * share);
    from_vec(x.shape(), dx)
}

/// `grad · softmax(x)` along the axis, with softmax = `exp(x − y)`.
pub(crate) fn logsumexp_axis_backward<F: Float>(
    x: &ArrayD<F>,
    y: &ArrayD<F>,
    axis: usize,
    grad: &ArrayD<F>,
) -> ArrayD<F> {
    let dims = around(x.shape(), axis);
    let (xs, ys, g) = (flat(x), flat(y), flat(grad));
    let mut dx = exp_against_lanes(&xs, &ys, dims);
    update_against_lanes(&mut dx, &xs, &g, dims, |p, _, g| chain(g, p));
    from_vec(x.shape(), dx)
}

/// The softmax pair, normalised along one axis.
impl<'t, F: Float> Var<'t, F> {
    /// `x − logsumexp(x)` along `axis`: log-probabilities from logits. Stable:
    /// logits `[1000, −1000, 0]` give `[0, −2000, −1000]` exactly. Backward:
    /// `g − softmax(x) · Σ g`. A slice holding `+∞` gives NaN throughout, as
    /// in PyTorch (`∞ − ∞` has no value); a `−∞` logit gives `−∞`.
    ///
    /// ```
    /// # use tapeloss::{Tape, ndarray::array};
    /// # fn main() -> tapeloss::Result<()> {
    /// let tape = Tape::<f64>::new();
    /// let logits = tape.var(array![[1000.0, -1000.0, 0.0]].into_dyn());
    /// let log_p = logits.log_softmax(1)?;
    /// assert_eq!(log_p.value(), array![[0.0, -2000.0, -1000.0]].into_dyn());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::AxisOutOfRange`] when `axis ≥ ndim`.
    pub fn log_softmax(self, axis: usize) -> Result<Var<'t, F>> {
        let x = self.value_ref();
        check_axis("log_softmax", x.shape(), axis)?;
        let values = normalised_lanes(&flat(&x), around(x.shape(), axis), Normalised::Log);
        let value = from_vec(x.shape(), values);
        drop(x);
        Ok(self.record(
            value,
            Op::LogSoftmax {
                input: self.index,
                axis,
            },
        ))
    }

    /// `exp(x − logsumexp(x))` along `axis`, taken as `exp(x − m) / Σ exp(x − m)`
    /// with `m` the slice's maximum (not through the rounded logsumexp): every
    /// slice sums to 1 and no term overflows. Backward: `y ⊙ (g − Σ g ⊙ y)`.
    /// A slice holding `+∞` gives NaN throughout, as in PyTorch; a `−∞` logit
    /// gives 0.
    ///
    /// # Errors
    /// [`Error::AxisOutOfRange`] when `axis ≥ ndim`.
    pub fn softmax(self, axis: usize) -> Result<Var<'t, F>> {
        let x = self.value_ref();
        check_axis("softmax", x.shape(), axis)?;
        let values = normalised_lanes(&flat(&x), around(x.shape(), axis), Normalised::Probabilities);
        let value = from_vec(x.shape(), values);
        drop(x);
        Ok(self.record(
            value,
            Op::Softmax {
                input: self.index,
                axis,
            },
        ))
    }
}

/// The backward of `log_softmax` or `softmax` along `axis`, from its value
/// `y`, written over `grad`: `g − exp(y) · Σ g` for `log_softmax`,
/// `y ⊙ (g − Σ g ⊙ y)` for `softmax`, the sums along the axis. Along a
/// contiguous axis each row is summed and updated while it is in cache.
pub(crate) fn normalised_backward<F: Float>(
    y: &ArrayD<F>,
    axis: usize,
    kind: Normalised,
    mut grad: ArrayD<F>,
) -> ArrayD<F> {
    let dims = around(y.shape(), axis);
    let ys = flat(y);
    flat_mut(&mut grad, |g| {
        if dims.2 == 1 && dims.1 > 0 {
            update_rows(
                &ys,
                dims.1,
                g,
                #[inline(always)]
                |m, g, y| match kind {
                    Normalised::Log => {
                        let s = layout::sum(g);
                        g.iter_mut().zip(y).for_each(|(g, &y)| *g -= fastmath::exp(m, y) * s);
                    }
                    Normalised::Probabilities => {
                        let s = layout::dot(g, y);
                        g.iter_mut().zip(y).for_each(|(g, &y)| *g = y * (*g - s));
                    }
                },
            );
        } else if kind == Normalised::Log {
            let sums = sum_lanes(g, dims);
            update_against_lanes(g, &ys, &sums, dims, |g, y, s| {
                g - fastmath::exp(MulAdd::SEPARATE, y) * s
            });
        } else {
            let products: Vec<F> = g.iter().zip(ys.iter()).map(|(&g, &y)| g * y).collect();
            let sums = sum_lanes(&products, dims);
            update_against_lanes(g, &ys, &sums, dims, |g, y, s| y * (g - s));
        }
    });
    grad
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ln Σ exp` of `x` along `axis`, as an array with the axis kept.
    fn logsumexp_keepdims(x: &ArrayD<f64>, axis: usize) -> ArrayD<f64> {
        let lanes = logsumexp_lanes(&flat(x), around(x.shape(), axis));
        from_vec(&reduced_shape(x.shape(), axis, true), lanes)
    }

    #[test]
    fn logsumexp_keeps_the_axis_for_any_rank() {
        let x = ndarray::array![[1.0_f64, 2.0, 3.0], [1e4, -1e4, f64::NEG_INFINITY]].into_dyn();
        let along_rows = logsumexp_keepdims(&x, 1);
        assert_eq!(along_rows.shape(), &[2, 1]);
        assert!((along_rows[[0, 0]] - (1f64.exp() + 2f64.exp() + 3f64.exp()).ln()).abs() < 1e-14);
        assert_eq!(along_rows[[1, 0]], 1e4);
        let along_columns = logsumexp_keepdims(&x, 0);
        assert_eq!(along_columns.shape(), &[1, 3]);
        assert_eq!(along_columns[[0, 0]], 1e4);
        assert!((along_columns[[0, 2]] - 3.0).abs() < 1e-15); // e^−∞ adds nothing
        let v = ndarray::array![0.0_f64, 0.0].into_dyn();
        assert!((logsumexp_keepdims(&v, 0)[[0]] - 2f64.ln()).abs() < 1e-15);
    }
}
