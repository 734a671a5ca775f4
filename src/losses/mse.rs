//! Mean squared error.

use super::Reduction;
use super::pointwise::{Pointwise, impl_loss_via_pointwise};
use crate::error::Result;
use crate::float::Float;
use crate::tape::Var;

/// Mean squared error, for regression.
///
/// **Formula.** `ℓ = reduce((pᵢ − tᵢ)²)` over all elements.
///
/// **Inputs.** Predictions of any shape; targets of the identical shape
/// (nothing is broadcast).
///
/// **Gradient.** `∂ℓ/∂pᵢ = 2(pᵢ − tᵢ)·s`, with `s = 1/n` for
/// [`Reduction::Mean`] (n = number of elements) and `s = 1` for
/// [`Reduction::Sum`].
///
/// **PyTorch.** `torch.nn.functional.mse_loss(p, t, reduction='mean'|'sum')`.
///
/// ```
/// use tapeloss::{Loss, MeanSquaredError, Reduction, ndarray::array};
/// # fn main() -> tapeloss::Result<()> {
/// let p = array![[1.0, 2.0], [3.0, 4.0]].into_dyn();
/// let t = array![[1.0, 0.0], [3.0, 5.0]].into_dyn();
/// let (value, grad) = MeanSquaredError::new().value_and_grad(&p, &t)?;
/// assert_eq!(value, (4.0 + 1.0) / 4.0);
/// assert_eq!(grad, array![[0.0, 1.0], [0.0, -0.5]].into_dyn());
/// let sum = MeanSquaredError::new().with_reduction(Reduction::Sum);
/// assert_eq!(sum.forward(&p, &t)?, 5.0);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MeanSquaredError {
    reduction: Reduction,
}

impl MeanSquaredError {
    /// Mean squared error with [`Reduction::Mean`].
    pub fn new() -> Self {
        Self::default()
    }

    /// The same loss with another reduction.
    pub fn with_reduction(self, reduction: Reduction) -> Self {
        Self { reduction }
    }

    /// The reduction in use.
    pub fn reduction(&self) -> Reduction {
        self.reduction
    }
}

impl Pointwise for MeanSquaredError {
    const NAME: &'static str = "MeanSquaredError";

    fn reduction(&self) -> Reduction {
        self.reduction
    }

    fn term<F: Float>(&self, p: F, t: F) -> F {
        (p - t) * (p - t)
    }

    fn term_and_slope<F: Float>(&self, p: F, t: F) -> (F, F) {
        let d = p - t;
        (d * d, d + d)
    }

    fn record_terms<'t, F: Float>(&self, p: Var<'t, F>, t: Var<'t, F>) -> Result<Var<'t, F>> {
        p.sub(t)?.square()
    }
}

impl_loss_via_pointwise!(MeanSquaredError);
