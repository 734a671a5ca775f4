//! Loss functions for neural networks.
//!
//! Every loss implements [`Loss`]: its value ([`Loss::forward`]), its gradient
//! with respect to the predictions ([`Loss::backward`]) and both in one fused
//! pass ([`Loss::value_and_grad`]), for `f32` and `f64` arrays. Every loss is
//! also written as a composition of tape ops ([`Loss::record`]), so its gradient
//! has a second, independent derivation that the test suite (and
//! [`crate::gradcheck`]) compares with the closed form.
//!
//! A user-defined loss implements only [`Loss::record`] and gets the rest.
//!
//! # Regression with mean squared error
//! ```
//! use tapeloss::losses::{Loss, MeanSquaredError};
//! use tapeloss::ndarray::Array;
//! # fn main() -> tapeloss::Result<()> {
//! let mse = MeanSquaredError::new();
//! let predictions = Array::from_vec(vec![1.5, 2.3, 0.8]).into_dyn();
//! let targets = Array::from_vec(vec![1.0, 2.0, 1.0]).into_dyn();
//! let loss_value: f64 = mse.forward(&predictions, &targets)?;
//! assert!((loss_value - 0.38 / 3.0).abs() < 1e-12);
//! let gradients = mse.backward(&predictions, &targets)?;
//! assert!((gradients[0] - 2.0 * 0.5 / 3.0).abs() < 1e-12);
//! # Ok(()) }
//! ```
//!
//! # Handling class imbalance with focal loss
//! ```
//! use tapeloss::losses::{Loss, FocalLoss};
//! use tapeloss::ndarray::Array;
//! # fn main() -> tapeloss::Result<()> {
//! // Focal loss with gamma = 2.0, alpha = 0.25 (typical values).
//! let focal_loss = FocalLoss::new(2.0, Some(0.25), 1e-10);
//! let predictions = Array::from_shape_vec((2, 2), vec![
//!     0.9, 0.1, // high confidence prediction
//!     0.6, 0.4, // lower confidence prediction
//! ])?.into_dyn();
//! let targets = Array::from_shape_vec((2, 2), vec![
//!     1.0, 0.0, // correct prediction
//!     1.0, 0.0, // hard example (gets the higher loss)
//! ])?.into_dyn();
//! let loss_value: f64 = focal_loss.forward(&predictions, &targets)?;
//! // Mean over the 2 samples of 0.25·0.1²·(−ln 0.9) and 0.25·0.4²·(−ln 0.6).
//! assert!((loss_value - 0.0103482131).abs() < 1e-10);
//! # Ok(()) }
//! ```

/// `with_reduction` and `reduction` for a loss type with a `reduction` field:
/// the one builder every loss shares.
macro_rules! reduction_builders {
    ($loss:ty) => {
        /// The reduction: how the per-term losses are combined.
        impl $loss {
            /// The same loss with another reduction.
            pub fn with_reduction(mut self, reduction: $crate::Reduction) -> Self {
                self.reduction = reduction;
                self
            }

            /// The reduction in use.
            pub fn reduction(&self) -> $crate::Reduction {
                self.reduction
            }
        }
    };
}

/// `with_class_weights` and `class_weights` for a loss type with a
/// `class_weights: Option<Vec<f64>>` field, and with `ignore`,
/// `with_ignore_index` and `ignore_index` for an `ignore_index:
/// Option<usize>` field: the options of the losses on class indices.
macro_rules! class_index_builders {
    ($loss:ty $(, ignore $(#[doc = $extra:literal])*)?) => {
        /// The class options.
        impl $loss {
            /// The same loss with one weight `≥ 0` per class (PyTorch's `weight`).
            /// The length and values are checked by every method that computes.
            pub fn with_class_weights(self, weights: Vec<f64>) -> Self {
                Self {
                    class_weights: Some(weights),
                    ..self
                }
            }

            /// The class weights, if any.
            pub fn class_weights(&self) -> Option<&[f64]> {
                self.class_weights.as_deref()
            }
            $(
            /// The same loss ignoring samples whose class index equals `index`
            /// (PyTorch's `ignore_index`; it may be `≥ C`, as for a padding label).
            $(#[doc = $extra])*
            pub fn with_ignore_index(self, index: usize) -> Self {
                Self {
                    ignore_index: Some(index),
                    ..self
                }
            }

            /// The ignored class index, if any.
            pub fn ignore_index(&self) -> Option<usize> {
                self.ignore_index
            }
            )?
        }
    };
}

mod binary_cross_entropy;
mod class_index;
mod contrastive;
mod cross_entropy;
mod embedding;
mod focal;
mod kl_div;
mod margin;
mod multi_margin;
mod nll;
pub(crate) mod pointwise;
mod poisson_nll;
mod regression;
mod slices;
mod triplet;
pub(crate) mod validate;

use ndarray::ArrayD;

use crate::error::Result;
use crate::float::Float;
use crate::tape::lent::with_lent;
use crate::tape::{Tape, Var};

pub use binary_cross_entropy::BinaryCrossEntropyLoss;
pub use contrastive::ContrastiveLoss;
pub use cross_entropy::CrossEntropyLoss;
pub use focal::FocalLoss;
pub use kl_div::KlDivLoss;
pub use margin::{HingeEmbeddingLoss, SoftMarginLoss};
pub use multi_margin::MultiMarginLoss;
pub use nll::NllLoss;
pub use poisson_nll::PoissonNllLoss;
pub use regression::{HuberLoss, MeanAbsoluteError, MeanSquaredError, SmoothL1Loss};
pub use triplet::TripletLoss;

/// How per-element (or per-sample) terms are combined into one number.
///
/// `Sum` is what data-parallel training needs: shards taken with `Sum` add up
/// to the whole batch's `Sum`, loss and gradient alike; divide by the global
/// count once at the end to recover `Mean`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Reduction {
    /// The mean over the loss's averaging unit (elements or samples, as each
    /// loss documents). PyTorch's `reduction='mean'`. The default.
    #[default]
    Mean,
    /// The plain sum. PyTorch's `reduction='sum'`.
    Sum,
}

impl Reduction {
    /// The factor applied to the sum of `count` terms.
    #[inline]
    pub(crate) fn scale<F: Float>(self, count: usize) -> F {
        match self {
            Reduction::Mean => F::one() / F::from_f64(count as f64),
            Reduction::Sum => F::one(),
        }
    }

    /// Reduces a value of per-term losses on the tape.
    pub(crate) fn record<'t, F: Float>(self, terms: Var<'t, F>) -> Result<Var<'t, F>> {
        match self {
            Reduction::Mean => terms.mean(),
            Reduction::Sum => terms.sum(),
        }
    }
}

/// A loss function: a scalar measure of how far predictions are from targets,
/// with its gradient with respect to the predictions.
///
/// Only [`Loss::record`] is required: it writes the loss as tape ops, and the
/// provided methods run the tape. A closed form overrides two methods:
/// [`Loss::forward`] and [`Loss::value_and_grad_into`]; `value_and_grad` and
/// `backward` follow from the latter. The built-in losses do that (some also
/// override `value_and_grad`, to build a new gradient without zeroing it
/// first), and the test suite checks both derivations against each other,
/// against finite differences and against PyTorch. (A loss that overrides only `backward`, to
/// test a hand-written gradient, keeps the tape's `value_and_grad`, and
/// [`crate::gradcheck::check_loss`] compares the two.)
///
/// ```
/// use tapeloss::{Float, Loss, Result, Tape, Var, ndarray::{array, ArrayD}};
///
/// /// log-cosh: ln cosh(p − t) = d + softplus(−2d) − ln 2, averaged.
/// struct LogCosh;
///
/// impl<F: Float> Loss<F> for LogCosh {
///     fn record<'t>(&self, tape: &'t Tape<F>, predictions: Var<'t, F>, targets: &ArrayD<F>) -> Result<Var<'t, F>> {
///         let d = predictions.sub(tape.constant(targets.clone()))?;
///         let two = F::from_f64(2.0);
///         d.add(d.mul_scalar(-two)?.softplus()?)?
///             .add_scalar(-two.ln())?
///             .mean()
///     }
/// }
///
/// # fn main() -> tapeloss::Result<()> {
/// let p = array![0.5, -1.0, 2.0].into_dyn();
/// let t = array![0.0, 0.0, 0.0].into_dyn();
/// let (value, grad) = LogCosh.value_and_grad(&p, &t)?;
/// let expected: f64 = [0.5_f64, -1.0, 2.0].iter().map(|d| d.cosh().ln()).sum::<f64>() / 3.0;
/// assert!((value - expected).abs() < 1e-12);
/// assert!((grad[1] - (-1.0_f64).tanh() / 3.0).abs() < 1e-12);
/// # Ok(()) }
/// ```
pub trait Loss<F: Float> {
    /// Required: the loss as a composition of tape ops, with no hand-written
    /// backward. `predictions` is a value on `tape` (tracked or not); `targets`
    /// enter as constants. Returns a one-element value.
    fn record<'t>(&self, tape: &'t Tape<F>, predictions: Var<'t, F>, targets: &ArrayD<F>) -> Result<Var<'t, F>>;

    /// The loss value. Provided via the tape; built-in losses override it with
    /// a fused closed form.
    ///
    /// # Errors
    /// Whatever [`Loss::record`] returns, and [`crate::Error::NonFinite`] when the
    /// value is not finite, naming the first NaN or infinity in the inputs.
    fn forward(&self, predictions: &ArrayD<F>, targets: &ArrayD<F>) -> Result<F> {
        let value = with_lent([predictions, targets], |tape| {
            let loss = self.record(tape, tape.leaf_from(predictions, false), targets)?;
            loss.item()
        })?;
        validate::finite_value("forward", value, predictions, targets)
    }

    /// The gradient of the loss with respect to the predictions, with their
    /// shape. Provided via the tape.
    ///
    /// # Errors
    /// As [`Loss::value_and_grad`].
    fn backward(&self, predictions: &ArrayD<F>, targets: &ArrayD<F>) -> Result<ArrayD<F>> {
        self.value_and_grad(predictions, targets).map(|(_, grad)| grad)
    }

    /// The value and the gradient together: allocates the gradient and calls
    /// [`Loss::value_and_grad_into`], so a loss that overrides that one method
    /// (as every built-in loss does, with a fused closed form) gets this one too.
    ///
    /// # Errors
    /// As [`Loss::value_and_grad_into`].
    fn value_and_grad(&self, predictions: &ArrayD<F>, targets: &ArrayD<F>) -> Result<(F, ArrayD<F>)> {
        let mut grad = slices::new_grad(predictions);
        let value = self.value_and_grad_into(predictions, targets, &mut grad)?;
        Ok((value, grad))
    }

    /// The value, with the gradient written into a buffer the caller reuses
    /// across steps. Provided via the tape; built-in losses override it with a
    /// fused closed form that allocates nothing.
    ///
    /// # Errors
    /// [`crate::Error::ShapeMismatch`] when `grad` does not have the predictions'
    /// shape (the buffer is then left untouched); as [`Loss::forward`]; and
    /// [`crate::Error::NonFinite`] naming the `gradient` and its first
    /// non-finite element when the value is finite but the gradient overflowed
    /// (the buffer may then hold a partial result).
    fn value_and_grad_into(&self, predictions: &ArrayD<F>, targets: &ArrayD<F>, grad: &mut ArrayD<F>) -> Result<F> {
        validate::grad_buffer(predictions, grad)?;
        let (value, computed) = value_and_grad_on_tape(self, predictions, targets)?;
        grad.assign(&computed);
        Ok(value)
    }
}

/// The value and gradient derived by the tape from [`Loss::record`], whatever
/// the loss overrides. The gradient checker and the benchmarks use it as the
/// closed form's independent twin.
///
/// The tape it builds holds `predictions` and `targets` themselves rather
/// than copies (the built-in losses' `record` puts the targets on it that
/// way too); that tape lives only inside this call.
///
/// # Errors
/// Whatever [`Loss::record`] returns; [`crate::Error::NotScalar`] when it records a
/// value with more than one element; [`crate::Error::NonFinite`] when the value or
/// the gradient is not finite.
pub fn value_and_grad_on_tape<F: Float, L: Loss<F> + ?Sized>(
    loss: &L,
    predictions: &ArrayD<F>,
    targets: &ArrayD<F>,
) -> Result<(F, ArrayD<F>)> {
    // The tape holds the caller's arrays, not copies (see `tape::lent`).
    let (value, grad, finite) = with_lent([predictions, targets], |tape| {
        tape.check_gradients();
        let x = tape.leaf_from(predictions, true);
        let out = loss.record(tape, x, targets)?;
        let value = validate::finite_value("value_and_grad", out.item()?, predictions, targets)?;
        let mut grads = tape.backward(out)?;
        let (grad, finite) = (grads.take_checked(x)).unwrap_or_else(|| (ArrayD::zeros(predictions.raw_dim()), true));
        Ok::<_, crate::Error>((value, grad, finite))
    })?;
    // A gradient that one chain wrote whole was checked as it was written.
    if !finite {
        validate::finite_grad("value_and_grad", value, &grad, predictions, targets)?;
    }
    Ok((value, grad))
}
