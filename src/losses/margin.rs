//! Margin losses on labels `y ∈ {−1, 1}`: soft margin (the logistic loss of
//! a ±1 classifier) and hinge embedding (for distances between pairs), each
//! PyTorch's function of the same name. Both are [`Pointwise`]: a reduction
//! of one term per element.

use ndarray::ArrayD;

use super::Reduction;
use super::pointwise::{Pointwise, impl_loss_via_pointwise};
use super::validate::{self, Domain};
use crate::error::Result;
use crate::float::Float;
use crate::kernels::fastmath::MulAdd;
use crate::kernels::parallel::Plan;
use crate::kernels::pointwise::COMPUTE;
use crate::kernels::scalar::Logistic;
use crate::tape::Var;

/// Soft margin loss: the logistic loss of a two-class classifier with labels
/// −1 and 1.
///
/// **Formula.** `ℓ = reduce(ln(1 + e^(−yᵢ·xᵢ)))` over all elements, for
/// scores `xᵢ` and labels `yᵢ ∈ {−1, 1}`. It is binary cross-entropy on
/// logits with the labels mapped to {0, 1}.
///
/// **Inputs.** Scores (logits) of any shape; labels of the identical shape,
/// each exactly −1 or 1.
///
/// **Gradient.** `∂ℓ/∂xᵢ = −yᵢ·σ(−yᵢxᵢ)·s`, with `σ` the logistic function,
/// `s = 1/n` for [`Reduction::Mean`] (n = number of elements) and `s = 1` for
/// [`Reduction::Sum`]. Both the term (as `max(z, 0) + ln(1 + e^(−|z|))` with
/// `z = −yx`) and the slope stay finite for any finite score; on the tape the
/// term is `softplus(−y·x)`.
///
/// **PyTorch.** `torch.nn.functional.soft_margin_loss(x, y,
/// reduction='mean'|'sum')`. PyTorch computes `log1p(exp(−y·x))`, which
/// overflows in `f32` once `−y·x > 88.7` (a value of `inf` and a NaN
/// gradient); here the value is `−y·x` and the slope `−y·s` there. PyTorch
/// takes any label value; here a label other than ±1 is an error.
///
/// **Reduction.** `Mean` (the default) averages over all n elements; `Sum`
/// adds them, so shards of a batch add up to the whole.
///
/// **Errors.** [`Error::ShapeMismatch`](crate::Error::ShapeMismatch)
/// when the labels' shape differs from the scores';
/// [`Error::Empty`](crate::Error::Empty) for inputs with no element;
/// [`Error::InvalidTarget`](crate::Error::InvalidTarget) for a label other
/// than −1 or 1, with its index;
/// [`Error::NonFinite`](crate::Error::NonFinite) naming the first NaN or
/// infinity in either input (an infinite score is an error even where its
/// term would be 0), or the loss value where it overflows.
///
/// ```
/// use tapeloss::{Loss, Reduction, SoftMarginLoss, ndarray::array};
/// # fn main() -> tapeloss::Result<()> {
/// let x = array![0.0, 2.0, -1e4].into_dyn();
/// let y = array![1.0, -1.0, 1.0].into_dyn();
/// let loss = SoftMarginLoss::new().with_reduction(Reduction::Sum);
/// let (value, grad) = loss.value_and_grad(&x, &y)?;
/// // ln 2, ln(1 + e²) and 1e4 (no overflow).
/// let expected = 2f64.ln() + (1.0 + 2f64.exp()).ln() + 1e4;
/// assert!((value - expected).abs() < 1e-9);
/// // −y·σ(−yx): −½, σ(2), and −1.
/// let sigma_2 = 1.0 / (1.0 + (-2f64).exp());
/// assert!((grad[0] + 0.5).abs() < 1e-15 && (grad[1] - sigma_2).abs() < 1e-15 && grad[2] == -1.0);
/// assert!(loss.forward(&x, &array![1.0, 0.0, 1.0].into_dyn()).is_err()); // labels are ±1
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SoftMarginLoss {
    reduction: Reduction,
}

reduction_builders!(SoftMarginLoss);

impl SoftMarginLoss {
    /// Soft margin loss with [`Reduction::Mean`].
    pub fn new() -> Self {
        Self::default()
    }
}

impl Pointwise for SoftMarginLoss {
    const NAME: &'static str = "SoftMarginLoss";
    const PLAN: Plan = COMPUTE;

    fn reduction(&self) -> Reduction {
        self.reduction
    }

    fn check_domain<F: Float>(&self, scores: &ArrayD<F>, labels: &ArrayD<F>) -> Result<()> {
        // An infinite score on its label's side would make a term of 0.
        validate::finite_elements(Self::NAME, "predictions", scores)?;
        validate::sign_targets(Self::NAME, labels)
    }

    #[inline(always)]
    fn term<F: Float>(&self, m: MulAdd, x: F, y: F) -> F {
        let z = -(y * x);
        z.max(F::zero()) + Logistic::new(m, z).l
    }

    #[inline(always)]
    fn term_and_slope<F: Float>(&self, m: MulAdd, x: F, y: F) -> (F, F) {
        let z = -(y * x);
        let k = Logistic::new(m, z);
        // σ(z) = a·r (see `Logistic`).
        (z.max(F::zero()) + k.l, -(y * k.a * k.r))
    }

    fn record_terms<'t, F: Float>(&self, x: Var<'t, F>, y: Var<'t, F>) -> Result<Var<'t, F>> {
        x.mul(y)?.neg()?.softplus()
    }
}

impl_loss_via_pointwise!(SoftMarginLoss);

/// Hinge embedding loss: for a distance (or dissimilarity) between the two
/// items of a pair, labelled 1 for similar and −1 for dissimilar.
///
/// **Formula.** Each term is `xᵢ` where `yᵢ = 1` and `max(0, Δ − xᵢ)` where
/// `yᵢ = −1`, for the margin `Δ`; `ℓ = reduce(terms)` over all elements.
/// Similar pairs are pulled together, dissimilar ones pushed to at least `Δ`
/// apart.
///
/// **Inputs.** Distances of any shape (usually non-negative, but any finite
/// value is taken, as in PyTorch); labels of the identical shape, each
/// exactly −1 or 1. `margin` must be finite (PyTorch's default is 1).
///
/// **Gradient.** `∂ℓ/∂xᵢ = s` where `yᵢ = 1`, `−s` where `yᵢ = −1` and
/// `xᵢ < Δ`, and 0 where `yᵢ = −1` and `xᵢ ≥ Δ` (0 at the kink `xᵢ = Δ`, as in
/// PyTorch), with `s = 1/n` for [`Reduction::Mean`] (n = number of elements)
/// and `s = 1` for [`Reduction::Sum`]. On the tape the two cases are joined by
/// the label's indicator `v = (1 − y)/2` as `(x − v·x) + max(0, v·Δ − v·x)`.
///
/// **PyTorch.** `torch.nn.functional.hinge_embedding_loss(x, y, margin=Δ,
/// reduction='mean'|'sum')`. PyTorch takes any label value, and adds both
/// cases for a label other than ±1; here that is an error.
///
/// **Reduction.** `Mean` (the default) averages over all n elements; `Sum`
/// adds them, so shards of a batch add up to the whole.
///
/// **Errors.** [`Error::InvalidParameter`](crate::Error::InvalidParameter)
/// for a `margin` that is NaN or infinite;
/// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch)
/// when the labels' shape differs from the distances';
/// [`Error::Empty`](crate::Error::Empty) for inputs with no element;
/// [`Error::InvalidTarget`](crate::Error::InvalidTarget) for a label other
/// than −1 or 1, with its index;
/// [`Error::NonFinite`](crate::Error::NonFinite) naming the first NaN or
/// infinity in either input (an infinite distance is an error even past the
/// margin, where its term would be 0), or the loss value where it overflows.
///
/// ```
/// use tapeloss::{HingeEmbeddingLoss, Loss, Reduction, ndarray::array};
/// # fn main() -> tapeloss::Result<()> {
/// let x = array![0.5, 0.25, 3.0, 0.0].into_dyn();
/// let y = array![1.0, -1.0, -1.0, 1.0].into_dyn();
/// let loss = HingeEmbeddingLoss::new(1.0).with_reduction(Reduction::Sum);
/// let (value, grad) = loss.value_and_grad(&x, &y)?;
/// assert_eq!(value, 0.5 + 0.75 + 0.0 + 0.0); // x, 1 − x, beyond the margin, x
/// assert_eq!(grad, array![1.0, -1.0, 0.0, 1.0].into_dyn());
/// assert!(HingeEmbeddingLoss::new(f64::NAN).forward(&x, &y).is_err());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HingeEmbeddingLoss {
    margin: f64,
    reduction: Reduction,
}

reduction_builders!(HingeEmbeddingLoss);

impl HingeEmbeddingLoss {
    /// Hinge embedding loss with margin `margin` (finite; checked when the
    /// loss computes) and [`Reduction::Mean`].
    pub fn new(margin: f64) -> Self {
        Self {
            margin,
            reduction: Reduction::Mean,
        }
    }

    /// The margin Δ that dissimilar pairs are pushed beyond.
    pub fn margin(&self) -> f64 {
        self.margin
    }
}

impl Default for HingeEmbeddingLoss {
    /// PyTorch's default margin, 1.
    fn default() -> Self {
        Self::new(1.0)
    }
}

impl Pointwise for HingeEmbeddingLoss {
    const NAME: &'static str = "HingeEmbeddingLoss";

    fn reduction(&self) -> Reduction {
        self.reduction
    }

    fn check_parameters(&self) -> Result<()> {
        validate::parameter("margin", self.margin, Domain::Finite)
    }

    fn check_domain<F: Float>(&self, distances: &ArrayD<F>, labels: &ArrayD<F>) -> Result<()> {
        // An infinite distance past the margin would make a term of 0.
        validate::finite_elements(Self::NAME, "predictions", distances)?;
        validate::sign_targets(Self::NAME, labels)
    }

    #[inline(always)]
    fn term<F: Float>(&self, m: MulAdd, x: F, y: F) -> F {
        self.term_and_slope(m, x, y).0
    }

    #[inline(always)]
    fn term_and_slope<F: Float>(&self, _: MulAdd, x: F, y: F) -> (F, F) {
        let gap = F::from_f64(self.margin) - x;
        // Selects, not branches, so the loop vectorises. A NaN gap takes the
        // second arm, so a NaN distance is never hidden behind a 0.
        let (hinge, slope) = if gap <= F::zero() {
            (F::zero(), F::zero())
        } else {
            (gap, -F::one())
        };
        if y > F::zero() { (x, F::one()) } else { (hinge, slope) }
    }

    fn record_terms<'t, F: Float>(&self, x: Var<'t, F>, y: Var<'t, F>) -> Result<Var<'t, F>> {
        // With the indicator v = (1 − y)/2 (exactly 0 or 1) and w = v·x, the
        // term is (x − w) + max(0, v·Δ − w): x for a similar pair (where
        // v·Δ − w is 0, never an overflowed Δ − x times 0, and the relu's
        // slope at 0 is PyTorch's 0 at the margin), exactly 0 plus the hinge
        // for a dissimilar one. Products, not `where_mask`, so the whole term
        // is one fused chain, of eight steps where u = (1 + y)/2 took eleven.
        let dissimilar = y.mul_scalar(F::from_f64(-0.5))?.add_scalar(F::from_f64(0.5))?;
        let w = dissimilar.mul(x)?;
        let hinge = (dissimilar.mul_scalar(F::from_f64(self.margin))?).sub(w)?.relu()?;
        x.sub(w)?.add(hinge)
    }
}

impl_loss_via_pointwise!(HingeEmbeddingLoss);
