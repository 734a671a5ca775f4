//! The machinery shared by losses that are a reduction of per-element terms
//! ℓ(pᵢ, tᵢ) over predictions and targets of identical shape (MSE, MAE, Huber,
//! smooth L1, binary cross-entropy, KL divergence, Poisson NLL). A loss states
//! its term, its derivative and its tape composition; this module validates,
//! runs the fused kernels and reduces, the same way for all of them.

use ndarray::ArrayD;

use super::Reduction;
use super::slices::{elements, on_both_cores, write_elements};
use super::validate;
use crate::error::Result;
use crate::float::Float;
use crate::kernels::fastmath::MulAdd;
use crate::kernels::parallel::Plan;
use crate::kernels::pointwise::{STREAMING, sum_terms_and_grad_with, sum_terms_and_new_grad, sum_terms_with};
use crate::tape::{Tape, Var};

/// A loss that is `reduce(ℓ(pᵢ, tᵢ))` over elements.
pub(crate) trait Pointwise: Sync {
    /// The loss's type name, for error messages.
    const NAME: &'static str;

    /// How the kernels run the terms: [`STREAMING`] for a few arithmetic
    /// operations per element, `kernels::pointwise::COMPUTE` for terms with
    /// exp, ln or divisions.
    const PLAN: Plan = STREAMING;

    /// How the terms are combined.
    fn reduction(&self) -> Reduction;

    /// How many units [`Reduction::Mean`] averages over for inputs of
    /// `shape` (never empty): the number of elements, unless the loss
    /// averages over samples.
    fn mean_count(&self, shape: &[usize]) -> usize {
        shape.iter().product()
    }

    /// Checks the hyperparameters.
    fn check_parameters(&self) -> Result<()> {
        Ok(())
    }

    /// Checks that every prediction and target lies in the loss's domain (for
    /// losses on probabilities).
    fn check_domain<F: Float>(&self, _predictions: &ArrayD<F>, _targets: &ArrayD<F>) -> Result<()> {
        Ok(())
    }

    /// ℓ(p, t).
    fn term<F: Float>(&self, m: MulAdd, p: F, t: F) -> F;

    /// (ℓ(p, t), ∂ℓ/∂p).
    fn term_and_slope<F: Float>(&self, m: MulAdd, p: F, t: F) -> (F, F);

    /// The per-element terms as tape ops on `p` and the constant `t`.
    fn record_terms<'t, F: Float>(&self, p: Var<'t, F>, t: Var<'t, F>) -> Result<Var<'t, F>>;
}

/// Everything that must hold before a pointwise loss computes; returns the
/// reduction's scale for the sum of the terms.
fn check<L: Pointwise, F: Float>(loss: &L, predictions: &ArrayD<F>, targets: &ArrayD<F>) -> Result<F> {
    loss.check_parameters()?;
    validate::same_shape(L::NAME, predictions.shape(), targets.shape())?;
    validate::non_empty(L::NAME, "predictions", predictions.shape())?;
    loss.check_domain(predictions, targets)?;
    Ok(loss.reduction().scale(loss.mean_count(predictions.shape())))
}

pub(crate) fn record<'t, L: Pointwise, F: Float>(
    loss: &L,
    tape: &'t Tape<F>,
    predictions: Var<'t, F>,
    targets: &ArrayD<F>,
) -> Result<Var<'t, F>> {
    let (scale, per_element) = predictions.with_value(|p| {
        let scale = check(loss, p, targets)?;
        Ok::<_, crate::Error>((scale, loss.mean_count(p.shape()) == p.len()))
    })?;
    let terms = loss.record_terms(predictions, tape.leaf_from(targets, false))?;
    let out = match loss.reduction() {
        // A mean over samples: the scale inside the sum, as focal's.
        Reduction::Mean if !per_element => terms.mul_scalar(scale)?.sum()?,
        reduction => reduction.record(terms)?,
    };
    predictions.with_value(|p| validate::finite_record(L::NAME, out, p, targets))
}

pub(crate) fn forward<L: Pointwise, F: Float>(loss: &L, predictions: &ArrayD<F>, targets: &ArrayD<F>) -> Result<F> {
    let scale = check(loss, predictions, targets)?;
    let (p, t) = (elements(predictions), elements(targets));
    let value = sum_terms_with(
        L::PLAN,
        &p,
        &t,
        #[inline(always)]
        |m, p, t| loss.term(m, p, t),
    ) * scale;
    validate::finite_value(L::NAME, value, predictions, targets)
}

pub(crate) fn value_and_grad_into<L: Pointwise, F: Float>(
    loss: &L,
    predictions: &ArrayD<F>,
    targets: &ArrayD<F>,
    grad: &mut ArrayD<F>,
) -> Result<F> {
    let scale = check(loss, predictions, targets)?;
    validate::grad_buffer(predictions, grad)?;
    let (p, t) = (elements(predictions), elements(targets));
    let sum = write_elements(grad, |g| {
        sum_terms_and_grad_with(
            L::PLAN,
            &p,
            &t,
            g,
            scale,
            #[inline(always)]
            |m, p, t| loss.term_and_slope(m, p, t),
        )
    });
    // A finite sum implies a finite gradient for every pointwise loss: each
    // slope is bounded where its term is finite (MSE 2d with d² finite; MAE,
    // Huber, smooth L1 and BCE on logits by 1, δ or 1 + pos_weight; BCE on
    // probabilities by 1e12; KL by the target p or e^t, a factor of its
    // term; Poisson NLL on log-rates by e^x + t; on rates the term carries
    // 0·slope), and a NaN anywhere makes the sum NaN.
    validate::finite_value_and_grad(L::NAME, sum * scale, predictions, targets, grad)
}

pub(crate) fn value_and_grad<L: Pointwise, F: Float>(
    loss: &L,
    predictions: &ArrayD<F>,
    targets: &ArrayD<F>,
) -> Result<(F, ArrayD<F>)> {
    if let Some(result) = on_both_cores(L::PLAN, predictions, |grad| {
        value_and_grad_into(loss, predictions, targets, grad)
    }) {
        return result;
    }
    let scale = check(loss, predictions, targets)?;
    let (p, t) = (elements(predictions), elements(targets));
    let (sum, grad) = sum_terms_and_new_grad(
        L::PLAN,
        &p,
        &t,
        scale,
        #[inline(always)]
        |m, p, t| loss.term_and_slope(m, p, t),
    );
    let grad = ArrayD::from_shape_vec(predictions.raw_dim(), grad)?;
    // As in `value_and_grad_into`: a non-finite slope makes the sum NaN for
    // a loss whose term carries 0·slope, and is then named.
    let value = validate::finite_value_and_grad(L::NAME, sum * scale, predictions, targets, &grad)?;
    Ok((value, grad))
}

/// Implements [`Loss`] for a [`Pointwise`] loss with the fused kernels.
macro_rules! impl_loss_via_pointwise {
    ($loss:ty) => {
        impl<F: $crate::Float> $crate::losses::Loss<F> for $loss {
            fn record<'t>(
                &self,
                tape: &'t $crate::Tape<F>,
                predictions: $crate::Var<'t, F>,
                targets: &::ndarray::ArrayD<F>,
            ) -> $crate::Result<$crate::Var<'t, F>> {
                $crate::losses::pointwise::record(self, tape, predictions, targets)
            }

            fn forward(&self, predictions: &::ndarray::ArrayD<F>, targets: &::ndarray::ArrayD<F>) -> $crate::Result<F> {
                $crate::losses::pointwise::forward(self, predictions, targets)
            }

            fn backward(
                &self,
                predictions: &::ndarray::ArrayD<F>,
                targets: &::ndarray::ArrayD<F>,
            ) -> $crate::Result<::ndarray::ArrayD<F>> {
                $crate::losses::Loss::value_and_grad(self, predictions, targets).map(|(_, grad)| grad)
            }

            fn value_and_grad(
                &self,
                predictions: &::ndarray::ArrayD<F>,
                targets: &::ndarray::ArrayD<F>,
            ) -> $crate::Result<(F, ::ndarray::ArrayD<F>)> {
                $crate::losses::pointwise::value_and_grad(self, predictions, targets)
            }

            fn value_and_grad_into(
                &self,
                predictions: &::ndarray::ArrayD<F>,
                targets: &::ndarray::ArrayD<F>,
                grad: &mut ::ndarray::ArrayD<F>,
            ) -> $crate::Result<F> {
                $crate::losses::pointwise::value_and_grad_into(self, predictions, targets, grad)
            }
        }
    };
}
pub(crate) use impl_loss_via_pointwise;
