//! Checks shared by every loss. The cheap ones (shapes, hyperparameters) run
//! first; scans for NaN run only after a result came out non-finite, so the
//! happy path pays nothing for them.

use ndarray::{ArrayD, Dimension};

use crate::error::{Error, Result};
use crate::float::Float;

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

/// The domain of a hyperparameter, checked when a loss computes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Domain {
    /// A finite number > 0.
    Positive,
    /// A finite number ≥ 0.
    NonNegative,
    /// A number in [0, 1].
    UnitInterval,
    /// A number strictly between 0 and 0.5.
    OpenHalf,
}

impl Domain {
    fn contains(self, v: f64) -> bool {
        v.is_finite()
            && match self {
                Domain::Positive => v > 0.0,
                Domain::NonNegative => v >= 0.0,
                Domain::UnitInterval => (0.0..=1.0).contains(&v),
                Domain::OpenHalf => v > 0.0 && v < 0.5,
            }
    }

    fn describe(self) -> &'static str {
        match self {
            Domain::Positive => "a finite number > 0",
            Domain::NonNegative => "a finite number ≥ 0",
            Domain::UnitInterval => "a number in [0, 1]",
            Domain::OpenHalf => "a number in the open interval (0, 0.5)",
        }
    }
}

/// Fails with [`Error::InvalidParameter`] unless `value` lies in `domain`.
pub(crate) fn parameter(name: impl Into<String>, value: f64, domain: Domain) -> Result<()> {
    if domain.contains(value) {
        Ok(())
    } else {
        Err(Error::InvalidParameter {
            name: name.into(),
            value,
            expected: domain.describe(),
        })
    }
}

/// The first element of `array` that fails `ok`, with its index.
pub(crate) fn first_where<F: Float>(array: &ArrayD<F>, mut bad: impl FnMut(F) -> bool) -> Option<(Vec<usize>, F)> {
    array
        .indexed_iter()
        .find(|(_, v)| bad(**v))
        .map(|(i, v)| (i.slice().to_vec(), *v))
}

/// Every element of `array` must be a probability in `[0, 1]`: a NaN is
/// [`Error::NonFinite`], anything else outside is [`Error::InvalidInput`]
/// naming `arg` and the first offending index.
pub(crate) fn probabilities<F: Float>(op: &'static str, arg: &'static str, array: &ArrayD<F>) -> Result<()> {
    // The vectorised scan: this check runs on every call of the losses on
    // probabilities, and a scalar `all` cost about a third of BCE's time.
    if crate::kernels::pointwise::all(&super::slices::elements(array), is_probability) {
        return Ok(());
    }
    match first_where(array, |v| !is_probability(v)) {
        Some((index, v)) if v.is_nan() => Err(Error::NonFinite {
            op,
            arg,
            index,
            value: v.as_f64(),
        }),
        Some((index, v)) => Err(Error::InvalidInput {
            op,
            arg,
            index,
            value: v.as_f64(),
            expected: "a probability in [0, 1]",
        }),
        None => Ok(()),
    }
}

/// Every target must be a probability in `[0, 1]` (hard 0/1 labels or soft
/// ones): a NaN is [`Error::NonFinite`], anything else outside is
/// [`Error::InvalidTarget`] with the first offending index.
pub(crate) fn probability_targets<F: Float>(op: &'static str, targets: &ArrayD<F>) -> Result<()> {
    match probabilities(op, "targets", targets) {
        Err(Error::InvalidInput { index, value, .. }) => Err(Error::InvalidTarget {
            index,
            value,
            reason: format!("{op}: targets must be probabilities in [0, 1]"),
        }),
        other => other,
    }
}

/// `0 ≤ v ≤ 1`, false for NaN.
#[inline(always)]
fn is_probability<F: Float>(v: F) -> bool {
    v >= F::zero() && v <= F::one()
}

/// Passes a finite loss value through; for a non-finite one, finds its cause:
/// the first NaN in the predictions, then in the targets, then the first
/// infinity, or else blames the value itself (an overflow).
pub(crate) fn finite_value<F: Float>(
    op: &'static str,
    value: F,
    predictions: &ArrayD<F>,
    targets: &ArrayD<F>,
) -> Result<F> {
    if value.is_finite() {
        return Ok(value);
    }
    let culprit = [(predictions, "predictions"), (targets, "targets")]
        .into_iter()
        .find_map(|(a, arg)| first_where(a, F::is_nan).map(|found| (arg, found)))
        .or_else(|| {
            [(predictions, "predictions"), (targets, "targets")]
                .into_iter()
                .find_map(|(a, arg)| first_where(a, F::is_infinite).map(|found| (arg, found)))
        });
    Err(match culprit {
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
    })
}
