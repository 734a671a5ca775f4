//! What the losses on embeddings (contrastive, triplet) share: the layout
//! `[N, k, D]` of their input, the margin and the diagnosis of a non-finite
//! result. (On the tape, their distances are `norm_axis`, whose gradient at
//! 0 is 0, the closed forms' convention.)

use ndarray::{ArrayD, IxDyn};

use super::validate::{self, Domain};
use crate::error::{Error, Result};
use crate::float::Float;
use crate::tape::Var;

/// `(N, D)` of predictions laid out as `[N, k, D]`, or as `[k, D]` (one group,
/// N = 1) when `one_group` allows it.
///
/// # Errors
/// [`Error::InvalidShape`] naming `predictions` for any other layout;
/// [`Error::Empty`] when N = 0 or D = 0.
pub(crate) fn layout(
    op: &'static str,
    shape: &[usize],
    k: usize,
    one_group: bool,
    expected: &'static str,
) -> Result<(usize, usize)> {
    let (n, d) = match *shape {
        [n, parts, d] if parts == k => (n, d),
        [parts, d] if one_group && parts == k => (1, d),
        _ => {
            return Err(Error::InvalidShape {
                op,
                arg: "predictions",
                shape: shape.to_vec(),
                expected: expected.into(),
            });
        }
    };
    validate::non_empty(op, "predictions", shape)?;
    Ok((n, d))
}

/// The margin of either loss: a finite number ≥ 0.
pub(crate) fn check_margin(margin: f64) -> Result<()> {
    validate::parameter("margin", margin, Domain::NonNegative)
}

/// The tape's twin of [`finite_result`]: `out` (the recorded loss) when it
/// and every value in `distances` are finite, else the same error as the
/// closed form. The distances are checked, not only the loss: an infinite
/// one can vanish from it (`relu(d⁺ − ∞ + m) = 0`), and the closed form
/// rejects it.
pub(crate) fn finite_record<'t, F: Float>(
    op: &'static str,
    out: Var<'t, F>,
    distances: &[Var<'t, F>],
    predictions: Var<'t, F>,
    targets: Option<&ArrayD<F>>,
) -> Result<Var<'t, F>> {
    let distances_finite = distances.iter().all(|d| d.with_value(super::validate::all_finite));
    let value = out.item()?;
    predictions.with_value(|p| finite_result(op, value, distances_finite, p, targets))?;
    Ok(out)
}

/// Passes `value` through when it and every distance are finite; otherwise
/// names the first NaN, then infinity, in `predictions` (and `targets`, when
/// the loss reads them), or else reports the overflow of a squared distance or
/// of the value as [`Error::NonFinite`] on the loss value.
pub(crate) fn finite_result<F: Float>(
    op: &'static str,
    value: F,
    distances_finite: bool,
    predictions: &ArrayD<F>,
    targets: Option<&ArrayD<F>>,
) -> Result<F> {
    if distances_finite && value.is_finite() {
        return Ok(value);
    }
    let probe = if distances_finite { value } else { F::infinity() };
    match targets {
        Some(t) => validate::finite_value(op, probe, predictions, t),
        // Ignored targets are never blamed, whatever they hold.
        None => validate::finite_value(op, probe, predictions, &ArrayD::zeros(IxDyn(&[0]))),
    }
}
