//! Reductions: over all elements (`sum`, `mean`) and along one axis (`sum_axis`,
//! `mean_axis`, `max_axis`, `logsumexp_axis`), and the softmax pair built on
//! `logsumexp`. Each forward is followed by its backward rule.

use ndarray::{ArrayD, Axis, Zip};

use super::Op;
use super::binary::broadcast_view;
use crate::error::{Error, Result};
use crate::float::Float;
use crate::tape::Var;

/// Fails unless `axis` indexes a dimension of `shape`.
fn check_axis(op: &'static str, shape: &[usize], axis: usize) -> Result<()> {
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

/// Fails when the reduced axis (or the whole array) has no element, so that a
/// mean or maximum would be undefined.
fn check_nonempty(op: &'static str, shape: &[usize], len: usize) -> Result<()> {
    if len == 0 {
        Err(Error::Empty {
            op,
            arg: "input",
            shape: shape.to_vec(),
        })
    } else {
        Ok(())
    }
}

/// A reduced array with the axis kept, whatever `keepdims` said.
fn with_axis_kept<F: Clone>(reduced: &ArrayD<F>, axis: usize, keepdims: bool) -> ArrayD<F> {
    if keepdims {
        reduced.clone()
    } else {
        reduced.clone().insert_axis(Axis(axis))
    }
}

/// The maximum along `axis`, with the axis kept; NaN propagates.
fn max_keepdims<F: Float>(x: &ArrayD<F>, axis: usize) -> ArrayD<F> {
    x.fold_axis(
        Axis(axis),
        F::neg_infinity(),
        |&m, &v| if v > m || v.is_nan() { v } else { m },
    )
    .insert_axis(Axis(axis))
}

/// `ln Σ exp(x)` along `axis`, with the axis kept. The maximum is subtracted
/// first so no term overflows; an all-`−∞` slice gives `−∞` and a `+∞` gives `+∞`.
pub(crate) fn logsumexp_keepdims<F: Float>(x: &ArrayD<F>, axis: usize) -> ArrayD<F> {
    let mut shift = max_keepdims(x, axis);
    shift.mapv_inplace(|m| if m.is_finite() { m } else { F::zero() });
    let mut sum = ArrayD::zeros(shift.raw_dim());
    // The lanes have the axis removed, so zip them with the kept axis's only index.
    Zip::from(sum.index_axis_mut(Axis(axis), 0))
        .and(shift.index_axis(Axis(axis), 0))
        .and(x.lanes(Axis(axis)))
        .for_each(|s, &m, lane| *s = lane.fold(F::zero(), |acc, &v| acc + (v - m).exp()));
    Zip::from(&mut sum).and(&shift).for_each(|s, &m| *s = m + s.ln());
    sum
}

/// Whole-array reductions.
impl<'t, F: Float> Var<'t, F> {
    /// The sum of all elements, as a zero-dimensional value.
    pub fn sum(self) -> Result<Var<'t, F>> {
        let value = ndarray::arr0(self.value_ref().sum()).into_dyn();
        Ok(self.record(value, Op::Sum { input: self.index }))
    }

    /// The mean of all elements, as a zero-dimensional value.
    ///
    /// # Errors
    /// [`Error::Empty`] when the value has no element.
    pub fn mean(self) -> Result<Var<'t, F>> {
        let x = self.value_ref();
        check_nonempty("mean", x.shape(), x.len())?;
        let value = ndarray::arr0(x.sum() / F::from_f64(x.len() as f64)).into_dyn();
        drop(x);
        Ok(self.record(value, Op::Mean { input: self.index }))
    }
}

pub(crate) fn sum_backward<F: Float>(x: &ArrayD<F>, grad: &ArrayD<F>) -> ArrayD<F> {
    let g = grad.iter().copied().next().unwrap_or_else(F::zero);
    ArrayD::from_elem(x.raw_dim(), g)
}

pub(crate) fn mean_backward<F: Float>(x: &ArrayD<F>, grad: &ArrayD<F>) -> ArrayD<F> {
    let g = grad.iter().copied().next().unwrap_or_else(F::zero);
    ArrayD::from_elem(x.raw_dim(), g / F::from_f64(x.len() as f64))
}

/// Reductions along one axis. With `keepdims` the reduced axis stays with size
/// 1, so the result broadcasts against the input.
///
/// # Errors
/// [`Error::AxisOutOfRange`] when `axis ≥ ndim`; `mean_axis`, `max_axis` and
/// `logsumexp_axis` also return [`Error::Empty`] when the axis has size 0.
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
        if op != "sum_axis" {
            check_nonempty(op, x.shape(), x.shape()[axis])?;
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

    /// Sum along `axis`; its gradient is the output gradient broadcast back.
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
    pub fn max_axis(self, axis: usize, keepdims: bool) -> Result<Var<'t, F>> {
        self.axis_reduction(
            "max_axis",
            axis,
            keepdims,
            |x| max_keepdims(x, axis),
            |input| Op::MaxAxis { input, axis, keepdims },
        )
    }

    /// `ln Σ exp(x)` along `axis`, computed stably by shifting by the maximum:
    /// logits of ±1e4 give exact results. The gradient is the softmax along
    /// the axis times the output gradient.
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
    let g = with_axis_kept(grad, axis, keepdims);
    match broadcast_view("sum_axis", &g, x.shape()) {
        Ok(view) => view.mapv(|v| v * scale),
        Err(_) => ArrayD::zeros(x.raw_dim()), // unreachable: g has x's shape but for a size-1 axis
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
    let y = with_axis_kept(y, axis, keepdims);
    let g = with_axis_kept(grad, axis, keepdims);
    let mut dx = ArrayD::zeros(x.raw_dim());
    Zip::from(dx.lanes_mut(Axis(axis)))
        .and(x.lanes(Axis(axis)))
        .and(y.lanes(Axis(axis)))
        .and(g.lanes(Axis(axis)))
        .for_each(|mut dx, x, y, g| {
            let (max, g) = (y[0], g[0]);
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
    let y = with_axis_kept(y, axis, keepdims);
    let g = with_axis_kept(grad, axis, keepdims);
    let (Ok(y), Ok(g)) = (
        broadcast_view("logsumexp_axis", &y, x.shape()),
        broadcast_view("logsumexp_axis", &g, x.shape()),
    ) else {
        return ArrayD::zeros(x.raw_dim());
    };
    Zip::from(x).and(&y).and(&g).map_collect(|&x, &y, &g| g * (x - y).exp())
}

/// The softmax pair, normalised along one axis.
///
/// # Errors
/// [`Error::AxisOutOfRange`] when `axis ≥ ndim`.
impl<'t, F: Float> Var<'t, F> {
    /// `x − logsumexp(x)` along `axis`. Stable: logits `[1000, −1000, 0]` give
    /// `[0, −2000, −1000]` exactly. Backward: `g − softmax(x) · Σ g`.
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

    /// `exp(x − logsumexp(x))` along `axis`; every slice sums to 1 and no term
    /// overflows. Backward: `y ⊙ (g − Σ g ⊙ y)`.
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

pub(crate) fn log_softmax_backward<F: Float>(y: &ArrayD<F>, axis: usize, grad: &ArrayD<F>) -> ArrayD<F> {
    let grad_sum = grad.sum_axis(Axis(axis)).insert_axis(Axis(axis));
    Zip::from(grad)
        .and(y)
        .and_broadcast(&grad_sum)
        .map_collect(|&g, &y, &s| g - y.exp() * s)
}

pub(crate) fn softmax_backward<F: Float>(y: &ArrayD<F>, axis: usize, grad: &ArrayD<F>) -> ArrayD<F> {
    let weighted = (grad * y).sum_axis(Axis(axis)).insert_axis(Axis(axis));
    Zip::from(grad)
        .and(y)
        .and_broadcast(&weighted)
        .map_collect(|&g, &y, &s| y * (g - s))
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
