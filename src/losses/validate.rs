//! Checks shared by every loss. The cheap ones (shapes, hyperparameters) run
//! first; scans for NaN run only after a result came out non-finite, so the
//! happy path pays nothing for them.

use ndarray::{ArrayD, Dimension};

use crate::error::{Error, Result};
use crate::float::Float;
use crate::tape::Var;

/// Predictions and targets must have identical shapes: nothing is broadcast.
pub(crate) fn same_shape(op: &'static str, predictions: &[usize], targets: &[usize]) -> Result<()> {
    if predictions == targets {
        Ok(())
    } else {
        Err(Error::shape_mismatch_because(
            op,
            predictions,
            targets,
            "predictions and targets must have identical shapes (nothing is broadcast)",
        ))
    }
}

/// An input must hold at least one element.
pub(crate) fn non_empty(op: &'static str, arg: &'static str, shape: &[usize]) -> Result<()> {
    if shape.contains(&0) {
        Err(Error::Empty {
            op,
            arg,
            shape: shape.to_vec(),
        })
    } else {
        Ok(())
    }
}

/// A gradient buffer must have the predictions' shape.
pub(crate) fn grad_buffer<F>(predictions: &ArrayD<F>, grad: &ArrayD<F>) -> Result<()> {
    if predictions.shape() == grad.shape() {
        Ok(())
    } else {
        Err(Error::shape_mismatch_because(
            "value_and_grad_into",
            grad.shape(),
            predictions.shape(),
            "the gradient buffer must have the predictions' shape",
        ))
    }
}

pub(crate) use crate::error::{Domain, parameter};

/// The first element of `array` that fails `ok`, with its index.
pub(crate) fn first_where<F: Float>(array: &ArrayD<F>, bad: impl Fn(F) -> bool + Sync) -> Option<(Vec<usize>, F)> {
    // A vectorised scan first: `indexed_iter` builds every element's index
    // and cost about 15 ns per element (a quarter of contrastive's time on
    // 4096 labels), so it only runs to find an element known to be there.
    if crate::kernels::pointwise::all(&super::slices::elements(array), |v| !bad(v)) {
        return None;
    }
    array
        .indexed_iter()
        .find(|(_, v)| bad(**v))
        .map(|(i, v)| (i.slice().to_vec(), *v))
}

/// Every element of `array` must be a probability in `[0, 1]`: a NaN is
/// [`Error::NonFinite`], anything else outside is [`Error::InvalidInput`]
/// naming `arg` and the first offending index.
pub(crate) fn probabilities<F: Float>(op: &'static str, arg: &'static str, array: &ArrayD<F>) -> Result<()> {
    all_hold(op, arg, array, is_probability, |index, value| Error::InvalidInput {
        op,
        arg,
        index,
        value,
        expected: "a probability in [0, 1]",
    })
}

/// Every element of `array` must be a finite number ≥ 0 (a rate, a count, an
/// unnormalised probability): a NaN is [`Error::NonFinite`], anything else
/// outside (negative or infinite) is [`Error::InvalidInput`] naming `arg` and
/// the first offending index.
pub(crate) fn non_negative<F: Float>(op: &'static str, arg: &'static str, array: &ArrayD<F>) -> Result<()> {
    all_hold(op, arg, array, is_non_negative, |index, value| Error::InvalidInput {
        op,
        arg,
        index,
        value,
        expected: "a finite number ≥ 0",
    })
}

/// Every target must be a probability in `[0, 1]` (hard 0/1 labels or soft
/// ones): a NaN is [`Error::NonFinite`], anything else outside is
/// [`Error::InvalidTarget`] with the first offending index.
pub(crate) fn probability_targets<F: Float>(op: &'static str, targets: &ArrayD<F>) -> Result<()> {
    targets_where(
        op,
        targets,
        is_probability,
        format_args!("{op}: targets must be probabilities in [0, 1]"),
    )
}

/// Every target must be a finite number ≥ 0: a NaN is [`Error::NonFinite`],
/// anything else outside is [`Error::InvalidTarget`] with the first offending
/// index, and `reason` says what the targets are.
pub(crate) fn non_negative_targets<F: Float>(
    op: &'static str,
    targets: &ArrayD<F>,
    reason: std::fmt::Arguments<'_>,
) -> Result<()> {
    targets_where(op, targets, is_non_negative, reason)
}

/// Every target must be a label −1 or 1 (the margin losses'): a NaN is
/// [`Error::NonFinite`], anything else is [`Error::InvalidTarget`] with the
/// first offending index.
pub(crate) fn sign_targets<F: Float>(op: &'static str, targets: &ArrayD<F>) -> Result<()> {
    targets_where(
        op,
        targets,
        |v| v == F::one() || v == -F::one(),
        format_args!("{op}: targets must be labels −1 or 1"),
    )
}

/// Every element of `array` must be finite: the first NaN or infinity is
/// [`Error::NonFinite`] naming `arg` and its index. For losses whose value can
/// stay finite at an infinite input (a hinge past its margin), which the
/// value's own check would not catch.
pub(crate) fn finite_elements<F: Float>(op: &'static str, arg: &'static str, array: &ArrayD<F>) -> Result<()> {
    all_hold(op, arg, array, F::is_finite, |index, value| Error::NonFinite {
        op,
        arg,
        index,
        value,
    })
}

/// [`all_hold`] for the targets: an element for which `ok` fails is
/// [`Error::InvalidTarget`] with `reason` (a NaN is still `NonFinite`).
fn targets_where<F: Float>(
    op: &'static str,
    targets: &ArrayD<F>,
    ok: impl Fn(F) -> bool + Sync + Copy,
    reason: std::fmt::Arguments<'_>,
) -> Result<()> {
    all_hold(op, "targets", targets, ok, |index, value| Error::InvalidTarget {
        index,
        value,
        reason: reason.to_string(),
    })
}

/// `Ok` when `ok` holds for every element of `array`; otherwise the first
/// that fails, as [`Error::NonFinite`] naming `arg` for a NaN, or as
/// `outside(index, value)` for anything else.
fn all_hold<F: Float>(
    op: &'static str,
    arg: &'static str,
    array: &ArrayD<F>,
    ok: impl Fn(F) -> bool + Sync + Copy,
    outside: impl FnOnce(Vec<usize>, f64) -> Error,
) -> Result<()> {
    // The vectorised scan: these checks run on every call of the losses on
    // probabilities, and a scalar `all` cost about a third of BCE's time.
    if crate::kernels::pointwise::all(&super::slices::elements(array), ok) {
        return Ok(());
    }
    match first_where(array, |v| !ok(v)) {
        Some((index, v)) if v.is_nan() => Err(Error::NonFinite {
            op,
            arg,
            index,
            value: v.as_f64(),
        }),
        Some((index, v)) => Err(outside(index, v.as_f64())),
        None => Ok(()),
    }
}

/// `0 ≤ v ≤ 1`, false for NaN.
#[inline(always)]
fn is_probability<F: Float>(v: F) -> bool {
    v >= F::zero() && v <= F::one()
}

/// `0 ≤ v < ∞`, false for NaN.
#[inline(always)]
fn is_non_negative<F: Float>(v: F) -> bool {
    v >= F::zero() && v < F::infinity()
}

/// Passes a finite loss value through; for a non-finite one, finds its cause
/// with [`non_finite`].
pub(crate) fn finite_value<F: Float>(
    op: &'static str,
    value: F,
    predictions: &ArrayD<F>,
    targets: &ArrayD<F>,
) -> Result<F> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(non_finite(op, value, predictions, targets, None))
    }
}

/// The error for a loss whose value (or, when `grad` is given, whose value or
/// gradient) came out non-finite. The cause is sought in this order: the first
/// NaN in the predictions, then in the targets, then the first infinity in
/// either, then the first non-finite element of the gradient (an overflow in
/// the derivative); else the value itself overflowed and is blamed as
/// `"loss value"`. Only called once a result is known to be non-finite, so
/// the scans cost nothing on the happy path.
pub(crate) fn non_finite<F: Float>(
    op: &'static str,
    value: F,
    predictions: &ArrayD<F>,
    targets: &ArrayD<F>,
    grad: Option<&ArrayD<F>>,
) -> Error {
    let inputs = [(predictions, "predictions"), (targets, "targets")];
    let culprit = inputs
        .into_iter()
        .find_map(|(a, arg)| first_where(a, F::is_nan).map(|found| (arg, found)))
        .or_else(|| {
            inputs
                .into_iter()
                .find_map(|(a, arg)| first_where(a, F::is_infinite).map(|found| (arg, found)))
        })
        .or_else(|| grad.and_then(|g| first_where(g, |v| !v.is_finite()).map(|found| ("gradient", found))));
    match culprit {
        Some((arg, (index, bad))) => Error::NonFinite {
            op,
            arg,
            index,
            value: bad.as_f64(),
        },
        None => Error::NonFinite {
            op,
            arg: "loss value",
            index: Vec::new(),
            value: value.as_f64(),
        },
    }
}

/// [`finite_value`] for a value computed together with its gradient, where a
/// finite value implies a finite gradient (the slope is bounded, or its
/// finiteness is folded into the value as `term + 0·slope`): the cause of a
/// non-finite value is then sought in the inputs, then in the gradient.
pub(crate) fn finite_value_and_grad<F: Float>(
    op: &'static str,
    value: F,
    predictions: &ArrayD<F>,
    targets: &ArrayD<F>,
    grad: &ArrayD<F>,
) -> Result<F> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(non_finite(op, value, predictions, targets, Some(grad)))
    }
}

/// Whether every element of `array` is finite, as a vectorised scan on both
/// cores (a fold over ndarray's iterator stayed scalar: 8% of MSE's tape
/// route, 5% of cross-entropy's, in profiles).
pub(crate) fn all_finite<F: Float>(array: &ArrayD<F>) -> bool {
    crate::kernels::pointwise::all(&super::slices::elements(array), F::is_finite)
}

/// A gradient must be finite too: a loss can be finite where a derivative of
/// one of its ops is not (`√x` at 0 on the tape, `ln x` near 0 in `f32`). One
/// branch-free pass over the gradient, for routes whose kernels do not fold
/// the check into the value (the tape's own sweep, or an `exp` per element,
/// dwarfs it).
pub(crate) fn finite_grad<F: Float>(
    op: &'static str,
    value: F,
    grad: &ArrayD<F>,
    predictions: &ArrayD<F>,
    targets: &ArrayD<F>,
) -> Result<()> {
    if all_finite(grad) {
        Ok(())
    } else {
        Err(non_finite(op, value, predictions, targets, Some(grad)))
    }
}

/// The recorded loss `out` of [`crate::Loss::record`], passed through when its
/// one value is finite; otherwise the error names the first NaN (or infinity)
/// in the inputs. A value that is not one element is left for the caller's
/// `item()` or `backward` to report.
pub(crate) fn finite_record<'t, F: Float>(
    op: &'static str,
    out: Var<'t, F>,
    predictions: &ArrayD<F>,
    targets: &ArrayD<F>,
) -> Result<Var<'t, F>> {
    match out.item() {
        Ok(value) if !value.is_finite() => Err(non_finite(op, value, predictions, targets, None)),
        _ => Ok(out),
    }
}
