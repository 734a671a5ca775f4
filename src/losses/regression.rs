//! Regression losses on residuals `d = p − t`: mean squared error, mean
//! absolute error, Huber and smooth L1, each PyTorch's function of the same
//! name. All are [`Pointwise`]: a reduction of one term per element.

use super::Reduction;
use super::pointwise::{Pointwise, impl_loss_via_pointwise};
use super::validate::{self, Domain};
use crate::error::Result;
use crate::float::Float;
use crate::kernels::fastmath::MulAdd;
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
/// **Reduction.** `Mean` (the default) averages over all n elements; `Sum`
/// adds them, so shards of a batch add up to the whole.
///
/// **Errors.** [`Error::ShapeMismatch`](crate::Error::ShapeMismatch)
/// when the targets' shape differs from the predictions';
/// [`Error::Empty`](crate::Error::Empty) for inputs with no element;
/// [`Error::NonFinite`](crate::Error::NonFinite) naming the first NaN or
/// infinity in either input, or the loss value or gradient where it
/// overflows.
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

reduction_builders!(MeanSquaredError);

impl MeanSquaredError {
    /// Mean squared error with [`Reduction::Mean`].
    pub fn new() -> Self {
        Self::default()
    }
}

impl Pointwise for MeanSquaredError {
    const NAME: &'static str = "MeanSquaredError";

    fn reduction(&self) -> Reduction {
        self.reduction
    }

    #[inline(always)]
    fn term<F: Float>(&self, _: MulAdd, p: F, t: F) -> F {
        (p - t) * (p - t)
    }

    #[inline(always)]
    fn term_and_slope<F: Float>(&self, _: MulAdd, p: F, t: F) -> (F, F) {
        let d = p - t;
        (d * d, d + d)
    }

    fn record_terms<'t, F: Float>(&self, p: Var<'t, F>, t: Var<'t, F>) -> Result<Var<'t, F>> {
        p.sub(t)?.square()
    }
}

impl_loss_via_pointwise!(MeanSquaredError);

/// Mean absolute error (L1 loss), for regression robust to outliers.
///
/// **Formula.** `ℓ = reduce(|pᵢ − tᵢ|)` over all elements.
///
/// **Inputs.** Predictions of any shape; targets of the identical shape
/// (nothing is broadcast).
///
/// **Gradient.** `∂ℓ/∂pᵢ = sign(pᵢ − tᵢ)·s`, with `sign(0) = 0` as in
/// PyTorch, `s = 1/n` for [`Reduction::Mean`] (n = number of elements) and
/// `s = 1` for [`Reduction::Sum`].
///
/// **PyTorch.** `torch.nn.functional.l1_loss(p, t, reduction='mean'|'sum')`.
///
/// **Reduction.** `Mean` (the default) averages over all n elements; `Sum`
/// adds them, so shards of a batch add up to the whole.
///
/// **Errors.** [`Error::ShapeMismatch`](crate::Error::ShapeMismatch)
/// when the targets' shape differs from the predictions';
/// [`Error::Empty`](crate::Error::Empty) for inputs with no element;
/// [`Error::NonFinite`](crate::Error::NonFinite) naming the first NaN or
/// infinity in either input, or the loss value or gradient where it
/// overflows.
///
/// ```
/// use tapeloss::{Loss, MeanAbsoluteError, Reduction, ndarray::array};
/// # fn main() -> tapeloss::Result<()> {
/// let p = array![1.5, 2.0, 0.5, 3.0].into_dyn();
/// let t = array![1.0, 2.0, 1.0, 1.0].into_dyn();
/// let (value, grad) = MeanAbsoluteError::new().value_and_grad(&p, &t)?;
/// assert_eq!(value, (0.5 + 0.0 + 0.5 + 2.0) / 4.0);
/// assert_eq!(grad, array![0.25, 0.0, -0.25, 0.25].into_dyn()); // sign(0) = 0
/// let sum = MeanAbsoluteError::new().with_reduction(Reduction::Sum);
/// assert_eq!(sum.forward(&p, &t)?, 3.0);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MeanAbsoluteError {
    reduction: Reduction,
}

reduction_builders!(MeanAbsoluteError);

impl MeanAbsoluteError {
    /// Mean absolute error with [`Reduction::Mean`].
    pub fn new() -> Self {
        Self::default()
    }
}

impl Pointwise for MeanAbsoluteError {
    const NAME: &'static str = "MeanAbsoluteError";

    fn reduction(&self) -> Reduction {
        self.reduction
    }

    #[inline(always)]
    fn term<F: Float>(&self, _: MulAdd, p: F, t: F) -> F {
        (p - t).abs()
    }

    #[inline(always)]
    fn term_and_slope<F: Float>(&self, _: MulAdd, p: F, t: F) -> (F, F) {
        let d = p - t;
        (d.abs(), sign(d))
    }

    fn record_terms<'t, F: Float>(&self, p: Var<'t, F>, t: Var<'t, F>) -> Result<Var<'t, F>> {
        p.sub(t)?.abs()
    }
}

impl_loss_via_pointwise!(MeanAbsoluteError);

/// Huber loss: quadratic for small residuals, linear for large ones.
///
/// **Formula.** With `d = pᵢ − tᵢ`, each term is `½d²` for `|d| ≤ δ` and
/// `δ(|d| − ½δ)` otherwise; `ℓ = reduce(terms)` over all elements.
///
/// **Inputs.** Predictions of any shape; targets of the identical shape
/// (nothing is broadcast). `delta` must be a finite number > 0.
///
/// **Gradient.** `∂ℓ/∂pᵢ = s·d` for `|d| ≤ δ` and `s·δ·sign(d)` otherwise
/// (the two agree at `|d| = δ`), with `s = 1/n` for [`Reduction::Mean`]
/// (n = number of elements) and `s = 1` for [`Reduction::Sum`]. On the tape it
/// is composed from `u = clamp(d, −δ, δ)` as `u·(d − ½u)`.
///
/// **PyTorch.** `torch.nn.functional.huber_loss(p, t, reduction='mean'|'sum',
/// delta=δ)`.
///
/// **Reduction.** `Mean` (the default) averages over all n elements; `Sum`
/// adds them, so shards of a batch add up to the whole.
///
/// **Errors.** [`Error::InvalidParameter`](crate::Error::InvalidParameter)
/// for a `delta` that is not a finite number > 0;
/// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch)
/// when the targets' shape differs from the predictions';
/// [`Error::Empty`](crate::Error::Empty) for inputs with no element;
/// [`Error::NonFinite`](crate::Error::NonFinite) naming the first NaN or
/// infinity in either input, or the loss value or gradient where it
/// overflows.
///
/// ```
/// use tapeloss::{HuberLoss, Loss, Reduction, ndarray::array};
/// # fn main() -> tapeloss::Result<()> {
/// let p = array![0.5, 3.0, -2.0].into_dyn();
/// let t = array![0.0, 0.0, 0.0].into_dyn();
/// let huber = HuberLoss::new(1.0).with_reduction(Reduction::Sum);
/// let (value, grad) = huber.value_and_grad(&p, &t)?;
/// assert_eq!(value, 0.125 + 2.5 + 1.5); // ½·0.5², 1·(3 − ½), 1·(2 − ½)
/// assert_eq!(grad, array![0.5, 1.0, -1.0].into_dyn());
/// assert!(HuberLoss::new(0.0).forward(&p, &t).is_err()); // delta must be > 0
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HuberLoss {
    delta: f64,
    reduction: Reduction,
}

reduction_builders!(HuberLoss);

impl HuberLoss {
    /// Huber loss with threshold `delta` (> 0; checked when the loss computes)
    /// and [`Reduction::Mean`].
    pub fn new(delta: f64) -> Self {
        Self {
            delta,
            reduction: Reduction::Mean,
        }
    }

    /// The threshold δ between the quadratic and the linear part.
    pub fn delta(&self) -> f64 {
        self.delta
    }
}

impl Pointwise for HuberLoss {
    const NAME: &'static str = "HuberLoss";

    fn reduction(&self) -> Reduction {
        self.reduction
    }

    fn check_parameters(&self) -> Result<()> {
        validate::parameter("delta", self.delta, Domain::Positive)
    }

    #[inline(always)]
    fn term<F: Float>(&self, m: MulAdd, p: F, t: F) -> F {
        self.term_and_slope(m, p, t).0
    }

    #[inline(always)]
    fn term_and_slope<F: Float>(&self, _: MulAdd, p: F, t: F) -> (F, F) {
        let (d, delta) = (p - t, F::from_f64(self.delta));
        let a = d.abs();
        // Branch-free, with m = min(|d|, δ): the term is m·(|d| − ½m) (½d²
        // inside, δ(|d| − ½δ) outside, the same roundings as those forms) and
        // the slope is d clamped to [−δ, δ]: fewer operations than two arms
        // and a select.
        // Comparisons rather than `min`/`max`, whose NaN rules cost a compare
        // and a blend each (NaN still gives a NaN term).
        let m = if a < delta { a } else { delta };
        let low = if d < -delta { -delta } else { d };
        (m * (a - F::from_f64(0.5) * m), if low > delta { delta } else { low })
    }

    fn record_terms<'t, F: Float>(&self, p: Var<'t, F>, t: Var<'t, F>) -> Result<Var<'t, F>> {
        record_huber_terms(p.sub(t)?, F::from_f64(self.delta))
    }
}

impl_loss_via_pointwise!(HuberLoss);

/// Smooth L1 loss: Huber divided by β, so its linear part has slope 1.
///
/// **Formula.** With `d = pᵢ − tᵢ`, each term is `½d²/β` for `|d| < β` and
/// `|d| − ½β` otherwise; `β = 0` is exactly the L1 loss `|d|`.
/// `ℓ = reduce(terms)` over all elements.
///
/// **Inputs.** Predictions of any shape; targets of the identical shape
/// (nothing is broadcast). `beta` must be a finite number ≥ 0.
///
/// **Gradient.** `∂ℓ/∂pᵢ = s·d/β` for `|d| < β` and `s·sign(d)` otherwise
/// (`sign(0) = 0`), with `s = 1/n` for [`Reduction::Mean`] (n = number of
/// elements) and `s = 1` for [`Reduction::Sum`]. On the tape it is composed
/// from `c = min(|d|, β)` as `c²/(2β) + (|d| − c)`, or `|d|` when `β = 0`
/// (the `+1 − 1` that `|d| − c` sends back cancels exactly before `c/β` is
/// added, so `d/β` keeps its relative accuracy where `|d| ≪ β`).
///
/// **PyTorch.** `torch.nn.functional.smooth_l1_loss(p, t,
/// reduction='mean'|'sum', beta=β)`.
///
/// **Reduction.** `Mean` (the default) averages over all n elements; `Sum`
/// adds them, so shards of a batch add up to the whole.
///
/// **Errors.** [`Error::InvalidParameter`](crate::Error::InvalidParameter)
/// for a `beta` that is not a finite number ≥ 0;
/// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch)
/// when the targets' shape differs from the predictions';
/// [`Error::Empty`](crate::Error::Empty) for inputs with no element;
/// [`Error::NonFinite`](crate::Error::NonFinite) naming the first NaN or
/// infinity in either input, or the loss value or gradient where it
/// overflows.
///
/// ```
/// use tapeloss::{Loss, Reduction, SmoothL1Loss, ndarray::array};
/// # fn main() -> tapeloss::Result<()> {
/// let p = array![0.5, 3.0, -2.0].into_dyn();
/// let t = array![0.0, 0.0, 0.0].into_dyn();
/// let smooth = SmoothL1Loss::new(2.0).with_reduction(Reduction::Sum);
/// let (value, grad) = smooth.value_and_grad(&p, &t)?;
/// assert_eq!(value, 0.0625 + 2.0 + 1.0); // ½·0.5²/2, 3 − 1, |−2| − 1
/// assert_eq!(grad, array![0.25, 1.0, -1.0].into_dyn());
/// // β = 0 is the L1 loss.
/// assert_eq!(SmoothL1Loss::new(0.0).forward(&p, &t)?, (0.5 + 3.0 + 2.0) / 3.0);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SmoothL1Loss {
    beta: f64,
    reduction: Reduction,
}

reduction_builders!(SmoothL1Loss);

impl SmoothL1Loss {
    /// Smooth L1 loss with threshold `beta` (≥ 0, where 0 means L1; checked
    /// when the loss computes) and [`Reduction::Mean`].
    pub fn new(beta: f64) -> Self {
        Self {
            beta,
            reduction: Reduction::Mean,
        }
    }

    /// The threshold β between the quadratic and the linear part.
    pub fn beta(&self) -> f64 {
        self.beta
    }
}

impl Pointwise for SmoothL1Loss {
    const NAME: &'static str = "SmoothL1Loss";

    fn reduction(&self) -> Reduction {
        self.reduction
    }

    fn check_parameters(&self) -> Result<()> {
        validate::parameter("beta", self.beta, Domain::NonNegative)
    }

    #[inline(always)]
    fn term<F: Float>(&self, m: MulAdd, p: F, t: F) -> F {
        self.term_and_slope(m, p, t).0
    }

    #[inline(always)]
    fn term_and_slope<F: Float>(&self, _: MulAdd, p: F, t: F) -> (F, F) {
        let (d, beta) = (p - t, F::from_f64(self.beta));
        let a = d.abs();
        // Both arms are computed and one is selected, so the loop has no
        // branch to mispredict (10 ms for 1M f32 with one). With β = 0 the
        // quadratic arm (a division by zero) is never selected. d/β, not
        // d·(1/β): for a subnormal f32 β the reciprocal overflows and 0·∞ is
        // NaN, while d/β ≤ 1 wherever the quadratic arm is selected.
        let half = F::from_f64(0.5);
        let ratio = d / beta;
        let quadratic = (half * d * ratio, ratio);
        let linear = (a - half * beta, sign(d));
        if a < beta { quadratic } else { linear }
    }

    fn record_terms<'t, F: Float>(&self, p: Var<'t, F>, t: Var<'t, F>) -> Result<Var<'t, F>> {
        let d = p.sub(t)?;
        let beta = F::from_f64(self.beta);
        // β = 0 is L1; so is a β that underflows to 0 in `F` (f32 below 1e-45).
        if beta == F::zero() {
            return d.abs();
        }
        record_smooth_l1_terms(d, self.beta)
    }
}

impl_loss_via_pointwise!(SmoothL1Loss);

/// `sign(x)` with `sign(0) = 0`: the slope PyTorch takes for `|x|` at its kink
/// (`F::signum` would give ±1 for ±0).
#[inline(always)]
fn sign<F: Float>(x: F) -> F {
    // Two selects, not nested branches: a branch on the sign of random
    // residuals mispredicts half the time (MAE on 1M f32 took 7 ms with them).
    let positive = if x > F::zero() { F::one() } else { F::zero() };
    let negative = if x < F::zero() { F::one() } else { F::zero() };
    positive - negative
}

/// Huber's terms on the tape: with `u` = `d` clamped to `[−δ, δ]`,
/// `u·(d − ½u)`, which is `½d²` inside `|d| ≤ δ` and `δ·(|d| − ½δ)` outside
/// (the closed form's `m·(|d| − ½m)` with `m = |u|`: the same roundings), in
/// five steps of the fused chain. The slope follows from the ops alone: `d`
/// inside and `±δ` outside (the clamp passes no gradient at its bounds, where
/// both sides agree), and the gradient reaching the clamp, `d − u`, stays
/// finite. A δ that is infinite in `F` (beyond `f32`'s range) clamps nothing,
/// which leaves the quadratic part.
fn record_huber_terms<'t, F: Float>(d: Var<'t, F>, delta: F) -> Result<Var<'t, F>> {
    let u = d.clamp(-delta, delta)?;
    u.mul(d.sub(u.mul_scalar(F::from_f64(0.5))?)?)
}

/// Smooth L1's terms on the tape for β > 0: with `c = min(|d|, β)`,
/// `(c/√(2β))² + (|d| − c)`, which is `½d²/β` inside `|d| < β` and
/// `|d| − ½β` outside. Every gradient reaching the clamp is bounded (`c/β ≤ 1`
/// and `−1`) even where `1/β` overflows (a subnormal `f32` β): the scale
/// `√½/√β`, taken in `f64`, stays finite, and squaring `c` after scaling
/// keeps every intermediate at most `√(β/2)`. (Huber's shorter form divided
/// by β would send `(d − u)/β`, infinite there, into the clamp's zero slope.)
///
/// The linear part takes a clamp of its own, recorded after the square: the
/// sweep runs backwards, so `|d|` first gets `+1 − 1`, exactly 0 inside, and
/// only then the square's `c/β`. Through one shared clamp the `−1` and `c/β`
/// met first, and `1 + (c/β − 1)` lost `c/β` to rounding where `|d| ≪ β`
/// (a relative error of 2e-4 in `f32` at `d = 1e-4`, `β = 1`).
fn record_smooth_l1_terms<'t, F: Float>(d: Var<'t, F>, beta: f64) -> Result<Var<'t, F>> {
    let abs = d.abs()?;
    let min_beta = || abs.clamp(F::zero(), F::from_f64(beta)); // min(|d|, β), as |d| ≥ 0
    let root_a = F::from_f64(0.5_f64.sqrt() / beta.sqrt());
    let quadratic = min_beta()?.mul_scalar(root_a)?.square()?;
    quadratic.add(abs.sub(min_beta()?)?)
}
