//! Glue between `ndarray` arrays and the slice kernels: arrays in standard
//! layout are used in place, any other layout is copied once in logical order.

use std::borrow::Cow;

use ndarray::ArrayD;

use crate::float::Float;
use crate::kernels::parallel;
use crate::tape::layout::from_vec;

/// The elements of `array` in logical (row-major) order, borrowed when they
/// already are contiguous in that order.
pub(crate) fn elements<F: Clone>(array: &ArrayD<F>) -> Cow<'_, [F]> {
    match array.as_slice() {
        Some(slice) => Cow::Borrowed(slice),
        None => Cow::Owned(array.iter().cloned().collect()),
    }
}

/// A new gradient of zeros with the predictions' shape, for a kernel that
/// then fills it on both cores: the zeros are written on both cores too when
/// it is large ([`parallel::zeros`]).
pub(crate) fn new_grad<F: Float>(predictions: &ArrayD<F>) -> ArrayD<F> {
    from_vec(predictions.shape(), parallel::zeros(predictions.len()))
}

/// `value_and_grad` as `into` (the loss's `value_and_grad_into`) on a
/// [`new_grad`], when `plan` spreads the predictions' elements over both
/// cores; `None` when the work runs on one thread, where a gradient built
/// in order (extended block by block) needs no zeroing pass.
///
/// Two cores after the zeroing beat one building in order for every
/// pointwise loss on a Zen 5 (2²⁰ `f32`, medians of three alternating runs,
/// ms): hinge embedding 0.16–0.20 against 0.30–0.32, Huber 0.10–0.13
/// against 0.14, MSE 0.10–0.11 against 0.11–0.13. Triplet's rows are the
/// exception (0.22–0.24 against 0.18), so it always builds in order.
pub(crate) fn on_both_cores<F: Float>(
    plan: parallel::Plan,
    predictions: &ArrayD<F>,
    into: impl FnOnce(&mut ArrayD<F>) -> crate::Result<F>,
) -> Option<crate::Result<(F, ArrayD<F>)>> {
    if parallel::runs_serially(plan, predictions.len()) {
        return None;
    }
    let mut grad = new_grad(predictions);
    Some(into(&mut grad).map(|value| (value, grad)))
}

/// Runs `kernel` on `out`'s elements as one mutable slice in logical order,
/// through a scratch copy only when `out` is not in standard layout.
pub(crate) fn write_elements<F: Clone + Default, R>(out: &mut ArrayD<F>, kernel: impl FnOnce(&mut [F]) -> R) -> R {
    if let Some(slice) = out.as_slice_mut() {
        return kernel(slice);
    }
    let mut scratch = vec![F::default(); out.len()];
    let result = kernel(&mut scratch);
    for (dst, src) in out.iter_mut().zip(scratch) {
        *dst = src;
    }
    result
}

/// The multi-index of element `flat` (row-major) of an array of `shape`, for
/// error messages that point at one element of a slice.
pub(crate) fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut index = vec![0; shape.len()];
    for (slot, &size) in index.iter_mut().zip(shape).rev() {
        if size > 0 {
            *slot = flat % size;
            flat /= size;
        }
    }
    index
}
