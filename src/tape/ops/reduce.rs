//! Reductions: over all elements (`sum`, `mean`) and along one axis (`sum_axis`,
//! `mean_axis`, `max_axis`, `logsumexp_axis`), and the softmax pair built on
//! `logsumexp`. Each forward is followed by its backward rule.

use ndarray::{ArrayD, ArrayViewD, Axis, Zip};

use super::{Op, chain};
use crate::error::{Error, Result};
use crate::float::Float;
use crate::tape::Var;

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

/// A view of a reduced array with the axis kept, whatever `keepdims` said.
fn kept<F>(reduced: &ArrayD<F>, axis: usize, keepdims: bool) -> ArrayViewD<'_, F> {
    let view = reduced.view();
    if keepdims { view } else { view.insert_axis(Axis(axis)) }
}

/// The larger of `m` and `v`, where a NaN wins so that it propagates.
#[inline(always)]
fn max_nan<F: Float>(m: F, v: F) -> F {
    if v > m || v.is_nan() { v } else { m }
}

/// The maximum along `axis`, with the axis kept; NaN propagates.
fn max_keepdims<F: Float>(x: &ArrayD<F>, axis: usize) -> ArrayD<F> {
    x.fold_axis(Axis(axis), F::neg_infinity(), |&m, &v| max_nan(m, v))
        .insert_axis(Axis(axis))
}

/// `ln Σ exp(x)` along `axis`, with the axis kept. Each slice is shifted by its
/// maximum first so no term overflows (and the largest is exactly `e⁰ = 1`);
/// an all-`−∞` slice gives `−∞`, a `+∞` gives `+∞`, a NaN gives NaN.
pub(crate) fn logsumexp_keepdims<F: Float>(x: &ArrayD<F>, axis: usize) -> ArrayD<F> {
    Zip::from(x.lanes(Axis(axis)))
        .map_collect(|lane| {
            let max = lane.fold(F::neg_infinity(), |m, &v| max_nan(m, v));
            let shift = if max.is_finite() { max } else { F::zero() };
            shift + lane.fold(F::zero(), |acc, &v| acc + (v - shift).exp()).ln()
        })
        .insert_axis(Axis(axis))
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
        let value = ndarray::arr0(self.value_ref().sum()).into_dyn();
        Ok(self.record(value, Op::Sum { input: self.index }))
    }

    /// The mean of all elements, as a zero-dimensional value. Backward: every
    /// element receives the output gradient divided by the element count.
    ///
    /// # Errors
    /// [`Error::Empty`] when the value has no element.
    pub fn mean(self) -> Result<Var<'t, F>> {
        let x = self.value_ref();
        if x.is_empty() {
            return Err(Error::Empty {
                op: "mean",
                arg: "input",
                shape: x.shape().to_vec(),
            });
        }
        let value = ndarray::arr0(x.sum() / F::from_f64(x.len() as f64)).into_dyn();
        drop(x);
        Ok(self.record(value, Op::Mean { input: self.index }))
    }
}

/// The one element of a one-element gradient.
fn only<F: Float>(grad: &ArrayD<F>) -> F {
    grad.iter().copied().next().unwrap_or_else(F::zero)
}

pub(crate) fn sum_backward<F: Float>(x: &ArrayD<F>, grad: &ArrayD<F>) -> ArrayD<F> {
    ArrayD::from_elem(x.raw_dim(), only(grad))
}

pub(crate) fn mean_backward<F: Float>(x: &ArrayD<F>, grad: &ArrayD<F>) -> ArrayD<F> {
    ArrayD::from_elem(x.raw_dim(), only(grad) / F::from_f64(x.len() as f64))
}

/// Reductions along one axis. With `keepdims` the reduced axis stays with size
/// 1, so the result broadcasts against the input; without it the axis is
/// removed.
impl<'t, F: Float> Var<'t, F> {
    fn axis_reduction(
        self,
        op: &'static str,
        axis: usize,
        keepdims: bool,
        reduce: impl FnOnce(&ArrayD<F>) -> ArrayD<F>,
        make_op: impl FnOnce(usize) -> Op<F>,
    ) -> Result<Var<'t, F>> {
        let x = self.value_ref();
        check_axis(op, x.shape(), axis)?;
        let empty_is_undefined = op != "sum_axis";
        if empty_is_undefined && x.shape()[axis] == 0 {
            return Err(Error::InvalidShape {
                op,
                arg: "input",
                shape: x.shape().to_vec(),
                expected: format!("at least one element along axis {axis}, the reduced axis"),
            });
        }
        let reduced = reduce(&x); // has the axis kept
        drop(x);
        let value = if keepdims {
            reduced
        } else {
            reduced.remove_axis(Axis(axis))
        };
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
            |x| x.sum_axis(Axis(axis)).insert_axis(Axis(axis)),
            |input| Op::SumAxis { input, axis, keepdims },
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
            |x| {
                let n = F::from_f64(x.shape()[axis] as f64);
                (x.sum_axis(Axis(axis)) / n).insert_axis(Axis(axis))
            },
            |input| Op::MeanAxis { input, axis, keepdims },
        )
    }

    /// Maximum along `axis`. NaN propagates. **Ties share the gradient:** when
    /// `k` elements of a slice equal its maximum, each receives `1/k` of the
    /// output gradient (PyTorch's `amax` convention), so the gradient sums to
    /// the output gradient either way.
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
            |x| max_keepdims(x, axis),
            |input| Op::MaxAxis { input, axis, keepdims },
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
        self.axis_reduction(
            "logsumexp_axis",
            axis,
            keepdims,
            |x| logsumexp_keepdims(x, axis),
            |input| Op::LogSumExpAxis { input, axis, keepdims },
        )
    }
}

/// `scale · grad` broadcast back over the reduced axis (sum and mean).
pub(crate) fn sum_axis_backward<F: Float>(
    x: &ArrayD<F>,
    axis: usize,
    keepdims: bool,
    grad: &ArrayD<F>,
    scale: F,
) -> ArrayD<F> {
    let g = kept(grad, axis, keepdims);
    match g.broadcast(x.raw_dim()) {
        Some(view) if scale == F::one() => view.to_owned(),
        Some(view) => view.mapv(|v| v * scale),
        None => ArrayD::zeros(x.raw_dim()), // unreachable: grad has x's shape but for a size-1 axis
    }
}

/// The output gradient shared among the elements equal to the maximum.
pub(crate) fn max_axis_backward<F: Float>(
    x: &ArrayD<F>,
    y: &ArrayD<F>,
    axis: usize,
    keepdims: bool,
    grad: &ArrayD<F>,
) -> ArrayD<F> {
    let mut dx = ArrayD::zeros(x.raw_dim());
    Zip::from(dx.lanes_mut(Axis(axis)))
        .and(x.lanes(Axis(axis)))
        .and(kept(y, axis, keepdims).lanes(Axis(axis)))
        .and(kept(grad, axis, keepdims).lanes(Axis(axis)))
        .for_each(|mut dx, x, y, g| {
            let (max, g) = (y[0], g[0]);
            // A NaN maximum matches nothing: its slice gets no gradient.
            let ties = x.iter().filter(|&&v| v == max).count();
            if ties > 0 {
                let share = g / F::from_f64(ties as f64);
                Zip::from(&mut dx).and(&x).for_each(|d, &v| {
                    if v == max {
                        *d = share;
                    }
                });
            }
        });
    dx
}

/// `grad · softmax(x)` along the axis, with softmax = `exp(x − y)`.
pub(crate) fn logsumexp_axis_backward<F: Float>(
    x: &ArrayD<F>,
    y: &ArrayD<F>,
    axis: usize,
    keepdims: bool,
    grad: &ArrayD<F>,
) -> ArrayD<F> {
    let (y, g) = (kept(y, axis, keepdims), kept(grad, axis, keepdims));
    let (Some(y), Some(g)) = (y.broadcast(x.raw_dim()), g.broadcast(x.raw_dim())) else {
        return ArrayD::zeros(x.raw_dim()); // unreachable: y and g have x's shape but for the axis
    };
    Zip::from(x)
        .and(&y)
        .and(&g)
        .map_collect(|&x, &y, &g| chain(g, (x - y).exp()))
}

/// The softmax pair, normalised along one axis.
impl<'t, F: Float> Var<'t, F> {
    /// `x − logsumexp(x)` along `axis`: log-probabilities from logits. Stable:
    /// logits `[1000, −1000, 0]` give `[0, −2000, −1000]` exactly. Backward:
    /// `g − softmax(x) · Σ g`.
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
        let lse = logsumexp_keepdims(&x, axis);
        let value = &*x - &lse;
        drop(x);
        Ok(self.record(
            value,
            Op::LogSoftmax {
                input: self.index,
                axis,
            },
        ))
    }

    /// `exp(x − logsumexp(x))` along `axis`: every slice sums to 1 and no term
    /// overflows. Backward: `y ⊙ (g − Σ g ⊙ y)`.
    ///
    /// # Errors
    /// [`Error::AxisOutOfRange`] when `axis ≥ ndim`.
    pub fn softmax(self, axis: usize) -> Result<Var<'t, F>> {
        let x = self.value_ref();
        check_axis("softmax", x.shape(), axis)?;
        let lse = logsumexp_keepdims(&x, axis);
        let value = Zip::from(&*x).and_broadcast(&lse).map_collect(|&x, &l| (x - l).exp());
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

/// `g − exp(y) · Σ g` along the axis, written over `grad`.
pub(crate) fn log_softmax_backward<F: Float>(y: &ArrayD<F>, axis: usize, mut grad: ArrayD<F>) -> ArrayD<F> {
    let grad_sum = grad.sum_axis(Axis(axis)).insert_axis(Axis(axis));
    Zip::from(&mut grad)
        .and(y)
        .and_broadcast(&grad_sum)
        .for_each(|g, &y, &s| *g -= y.exp() * s);
    grad
}

/// `y ⊙ (g − Σ g ⊙ y)` along the axis, written over `grad`; the inner sum is
/// taken lane by lane, without a full-size temporary.
pub(crate) fn softmax_backward<F: Float>(y: &ArrayD<F>, axis: usize, mut grad: ArrayD<F>) -> ArrayD<F> {
    let weighted = Zip::from(grad.lanes(Axis(axis)))
        .and(y.lanes(Axis(axis)))
        .map_collect(|g, y| Zip::from(&g).and(&y).fold(F::zero(), |acc, &g, &y| acc + g * y))
        .insert_axis(Axis(axis));
    Zip::from(&mut grad)
        .and(y)
        .and_broadcast(&weighted)
        .for_each(|g, &y, &s| *g = y * (*g - s));
    grad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logsumexp_keeps_the_axis_for_any_rank() {
        let x = ndarray::array![[1.0_f64, 2.0, 3.0], [1e4, -1e4, f64::NEG_INFINITY]].into_dyn();
        let along_rows = logsumexp_keepdims(&x, 1);
        assert_eq!(along_rows.shape(), &[2, 1]);
        assert!((along_rows[[0, 0]] - (1f64.exp() + 2f64.exp() + 3f64.exp()).ln()).abs() < 1e-14);
        assert_eq!(along_rows[[1, 0]], 1e4);
        assert_eq!(logsumexp_keepdims(&x, 0).shape(), &[1, 3]);
        let v = ndarray::array![0.0_f64, 0.0].into_dyn();
        assert!((logsumexp_keepdims(&v, 0)[[0]] - 2f64.ln()).abs() < 1e-15);
    }
}
