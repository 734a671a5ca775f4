//! Focal loss on probabilities.

use ndarray::{ArrayD, Dimension};

use super::slices::{elements, on_both_cores, write_elements};
use super::validate::{self, Domain};
use super::{Loss, Reduction};
use crate::error::{Error, Result};
use crate::float::Float;
use crate::kernels::fastmath::{self, MulAdd};
use crate::kernels::pointwise::{COMPUTE, sum_terms_and_grad_with, sum_terms_and_new_grad, sum_terms_with};
use crate::tape::{Tape, Var};

/// Focal loss (Lin et al., 2017) on probabilities, for imbalanced
/// classification: it down-weights the classes a sample already gets right, so
/// training concentrates on hard examples.
///
/// **Formula.** `ℓ = (1/N)·Σₙ Σ_c −α·(1 − p_c)^γ·t_c·ln(clamp(p_c, ε, 1 − ε))`,
/// the seed's form taken straight from the definition: `α = 1` when `alpha` is
/// `None`, the clamp only guards the logarithm, and `γ = 0` is α-weighted
/// cross-entropy on probabilities.
///
/// **Inputs.** Probabilities `[N, C]` (N samples over C classes; rows need not
/// sum to 1) or `[C]` for one sample; targets of the identical shape, one-hot
/// or soft, in `[0, 1]`. Hyperparameters: `gamma ≥ 0`, `alpha ∈ [0, 1]` and
/// `epsilon ∈ (0, 0.5)`, all finite.
///
/// **Gradient.** The true derivative of the formula, element by element:
/// `∂ℓ/∂p = s·α·t·[γ(1 − p)^(γ−1)·ln q − (1 − p)^γ·[ε < p < 1 − ε]/q]` with
/// `q = clamp(p, ε, 1 − ε)`. Both parts are ≤ 0 (since `ln q < 0`): raising the
/// probability of a target class always lowers the loss. Where the clamp is
/// active, and at its bounds (where PyTorch's `clamp` passes no gradient),
/// the log's part is 0. At `γ = 0` the first part is 0 and at `p = 1`
/// (for `γ ≥ 1`) no `0·∞` arises. For `0 < γ < 1` the derivative of
/// `(1 − p)^γ` is infinite at `p = 1`, so a probability of exactly 1 on a class
/// with a positive target is an error for the gradient methods, `record`
/// included (its tape would otherwise have to choose a finite stand-in).
///
/// **Reduction.** Over samples, not elements: `s = 1/N` for
/// [`Reduction::Mean`] (N = `shape[0]`, or 1 for a 1-D input) and `s = 1` for
/// [`Reduction::Sum`], the sum over samples (and classes), so shards of a batch
/// taken with `Sum` add up to the whole batch's `Sum`.
///
/// **Errors.** [`Error::InvalidParameter`] for a hyperparameter outside its
/// domain; [`Error::InvalidShape`] for an input that is not 1-D or 2-D;
/// [`Error::ShapeMismatch`] when the targets' shape differs from the
/// predictions'; [`Error::Empty`] for inputs with no element;
/// [`Error::InvalidInput`] for probabilities outside `[0, 1]` and
/// [`Error::InvalidTarget`] for targets outside `[0, 1]`, with the first
/// offending index; [`Error::NonFinite`] for a NaN. From the gradient
/// methods and `record` only: [`Error::InvalidInput`] for a probability of
/// exactly 1 on a positive target when `0 < γ < 1` (unless `α = 0`, which
/// leaves no term to differentiate).
///
/// **PyTorch.** No built-in: it is
/// `(-alpha * (1 - p)**gamma * t * torch.log(torch.clamp(p, eps, 1 - eps))).sum() / N`
/// with autograd (`torchvision.ops.sigmoid_focal_loss` is another form, on
/// logits).
///
/// ```
/// use tapeloss::losses::{Loss, FocalLoss};
/// use tapeloss::ndarray::Array;
/// # fn main() -> tapeloss::Result<()> {
/// // Focal loss with gamma = 2.0, alpha = 0.25 (typical values).
/// let focal_loss = FocalLoss::new(2.0, Some(0.25), 1e-10);
/// let predictions = Array::from_shape_vec((2, 2), vec![
///     0.9, 0.1, // high confidence in the right class
///     0.6, 0.4, // lower confidence
/// ])?.into_dyn();
/// let targets = Array::from_shape_vec((2, 2), vec![
///     1.0, 0.0,
///     1.0, 0.0,
/// ])?.into_dyn();
/// let loss_value: f64 = focal_loss.forward(&predictions, &targets)?;
/// // The hard example dominates: 0.25·0.4²·(−ln 0.6) against 0.25·0.1²·(−ln 0.9).
/// let easy = -0.25 * 0.1_f64.powi(2) * 0.9_f64.ln();
/// let hard = -0.25 * 0.4_f64.powi(2) * 0.6_f64.ln();
/// assert!((loss_value - (easy + hard) / 2.0).abs() < 1e-15);
/// assert!((loss_value - 0.0103482131).abs() < 1e-10);
///
/// // Gradient: the target classes' probabilities should rise.
/// let gradients = focal_loss.backward(&predictions, &targets)?;
/// assert!(gradients[[0, 0]] < 0.0 && gradients[[1, 0]] < gradients[[0, 0]]);
/// assert_eq!(gradients[[0, 1]], 0.0); // target 0: no term
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FocalLoss {
    gamma: f64,
    alpha: Option<f64>,
    epsilon: f64,
    reduction: Reduction,
}

reduction_builders!(FocalLoss);

impl FocalLoss {
    const NAME: &'static str = "FocalLoss";

    /// Focal loss with focusing parameter `gamma` (≥ 0), class weight `alpha`
    /// (in `[0, 1]`, 1 when `None`) and log clamp `epsilon` (in `(0, 0.5)`),
    /// with [`Reduction::Mean`] over samples. The values are checked when the
    /// loss computes.
    pub fn new(gamma: f64, alpha: Option<f64>, epsilon: f64) -> Self {
        Self {
            gamma,
            alpha,
            epsilon,
            reduction: Reduction::Mean,
        }
    }

    /// The focusing parameter γ.
    pub fn gamma(&self) -> f64 {
        self.gamma
    }

    /// The weight α, if one was set (else 1 is used).
    pub fn alpha(&self) -> Option<f64> {
        self.alpha
    }

    /// The clamp ε on the probabilities inside the logarithm.
    pub fn epsilon(&self) -> f64 {
        self.epsilon
    }

    /// Checks everything a computation needs; returns the scale `s` that the
    /// sum of the terms is multiplied by.
    fn check<F: Float>(&self, predictions: &ArrayD<F>, targets: &ArrayD<F>) -> Result<F> {
        validate::parameter("gamma", self.gamma, Domain::NonNegative)?;
        if let Some(alpha) = self.alpha {
            validate::parameter("alpha", alpha, Domain::UnitInterval)?;
        }
        validate::parameter("epsilon", self.epsilon, Domain::OpenHalf)?;
        let shape = predictions.shape();
        validate::same_shape(Self::NAME, shape, targets.shape())?;
        if !matches!(shape.len(), 1 | 2) {
            return Err(Error::InvalidShape {
                op: Self::NAME,
                arg: "predictions",
                shape: shape.to_vec(),
                expected: "[N, C] (N samples over C classes) or [C] (one sample)".into(),
            });
        }
        validate::non_empty(Self::NAME, "predictions", shape)?;
        validate::probabilities(Self::NAME, "predictions", predictions)?;
        validate::probability_targets(Self::NAME, targets)?;
        let samples = if shape.len() == 2 { shape[0] } else { 1 };
        Ok(self.reduction.scale(samples))
    }

    /// For `0 < γ < 1` the derivative of `(1 − p)^γ` is infinite at `p = 1`:
    /// report such an element (with a positive target and α) instead of
    /// returning an infinite gradient.
    fn check_slope_finite<F: Float>(&self, predictions: &ArrayD<F>, targets: &ArrayD<F>) -> Result<()> {
        if !(self.gamma > 0.0 && self.gamma < 1.0) || self.alpha == Some(0.0) {
            return Ok(());
        }
        let found = predictions
            .indexed_iter()
            .zip(targets.iter())
            .find(|((_, p), t)| **p == F::one() && **t > F::zero());
        match found {
            Some(((index, p), _)) => Err(Error::InvalidInput {
                op: Self::NAME,
                arg: "predictions",
                index: index.slice().to_vec(),
                value: p.as_f64(),
                expected: "a probability below 1 where the target is positive when 0 < gamma < 1 \
                           (the derivative of (1 − p)^gamma is infinite at p = 1)",
            }),
            None => Ok(()),
        }
    }
}

/// The hyperparameters in `F`, converted once per call.
struct Terms<F> {
    gamma: F,
    neg_alpha: F,
    lo: F,
    hi: F,
}

impl<F: Float> Terms<F> {
    fn new(loss: &FocalLoss) -> Self {
        Terms {
            gamma: F::from_f64(loss.gamma),
            neg_alpha: F::from_f64(-loss.alpha.unwrap_or(1.0)),
            // An ε below f32's range must not become a clamp at 0 (ln 0 = −∞).
            lo: F::from_f64(loss.epsilon).max(F::min_positive_value()),
            hi: F::from_f64(1.0 - loss.epsilon),
        }
    }

    /// `−α·(1 − p)^γ·t·ln q`, with `q = clamp(p, ε, 1 − ε)`.
    #[inline(always)]
    fn term<K: Focus>(&self, m: MulAdd, p: F, t: F) -> F {
        let weight = self.neg_alpha * t;
        let value = weight * K::focus(m, F::one() - p, self.gamma) * fastmath::ln(m, p.max(self.lo).min(self.hi));
        // A select, not an early return, so the loop has no branch.
        if weight == F::zero() { F::zero() } else { value }
    }

    /// The term and its derivative in p:
    /// `−α·t·[−γ(1 − p)^(γ−1)·ln q + (1 − p)^γ·[ε < p < 1 − ε]/q]`; the term
    /// is NaN where the slope is not finite.
    #[inline(always)]
    fn term_and_slope<K: Focus>(&self, m: MulAdd, p: F, t: F) -> (F, F) {
        let (zero, one) = (F::zero(), F::one());
        let weight = self.neg_alpha * t;
        let q = p.max(self.lo).min(self.hi);
        let ln_q = fastmath::ln(m, q);
        let (focus, d_focus) = K::focus_and_slope(m, one - p, self.gamma);
        // 0 at the bounds themselves, as PyTorch's `clamp` and the tape's pass none.
        let d_ln_q = if p > self.lo && p < self.hi { one / q } else { zero };
        let slope = weight * (d_focus * ln_q + focus * d_ln_q);
        // A slope can overflow where the term does not (−γ·ln ε for a huge
        // γ): adding 0·slope to the term turns the sum NaN exactly when a
        // slope is not finite (0·∞ = 0·NaN = NaN), at the cost of one
        // multiply-add beside a ln per element.
        let value = (weight * focus * ln_q + slope * zero, slope);
        // No term at all where the weight is 0, whatever (1 − p)^γ does at p = 1.
        if weight == zero { (zero, zero) } else { value }
    }
}

/// `(1 − p)^γ` and its derivative `−γ(1 − p)^(γ−1)`, as functions of
/// `x = 1 − p ∈ [0, 1]`. The loss picks one of three forms per call, so that
/// its loop has no branch on γ and no call into libm: γ = 0 and γ = 2 exactly,
/// any other γ through the fast `exp` and `ln`.
trait Focus {
    /// `x^γ`.
    fn focus<F: Float>(m: MulAdd, x: F, gamma: F) -> F;
    /// `(x^γ, −γ·x^(γ−1))`, with `0^γ = 0` for γ > 0.
    fn focus_and_slope<F: Float>(m: MulAdd, x: F, gamma: F) -> (F, F);
}

/// γ = 0: the constant 1 (no `0·∞` from `x^(γ−1)` at `p = 1`).
struct NoFocus;

impl Focus for NoFocus {
    #[inline(always)]
    fn focus<F: Float>(_: MulAdd, _: F, _: F) -> F {
        F::one()
    }

    #[inline(always)]
    fn focus_and_slope<F: Float>(_: MulAdd, _: F, _: F) -> (F, F) {
        (F::one(), F::zero())
    }
}

/// γ = 2, the usual value: `x·x` and `−2x`, exactly what a correctly
/// rounded `powf` gives.
struct Square;

impl Focus for Square {
    #[inline(always)]
    fn focus<F: Float>(_: MulAdd, x: F, _: F) -> F {
        x * x
    }

    #[inline(always)]
    fn focus_and_slope<F: Float>(_: MulAdd, x: F, gamma: F) -> (F, F) {
        (x * x, -gamma * x)
    }
}

/// Any other γ > 0: `x^e = exp(e·ln x)` with the fast `exp` and `ln`, whose
/// relative error is about `(2 + |e·ln x|)` ulp (≤ 1e-14 in `f64`; in `f32`
/// ≤ 2e-6 for `x ≥ 1e-7` and `γ ≤ 4`); `0^e` is 0 for `e > 0`, 1 for `e = 0`
/// and `+∞` for `e < 0` (an infinite slope, reported before the kernel runs
/// wherever it would count).
struct Power;

impl Power {
    #[inline(always)]
    fn pow<F: Float>(m: MulAdd, x: F, e: F) -> F {
        let at_zero = if e > F::zero() {
            F::zero()
        } else if e == F::zero() {
            F::one()
        } else {
            F::infinity()
        };
        // ln 0 = −∞ would meet e = 0 as 0·∞ = NaN: hence the select.
        let general = fastmath::exp(m, e * fastmath::ln(m, x));
        if x == F::zero() { at_zero } else { general }
    }
}

impl Focus for Power {
    #[inline(always)]
    fn focus<F: Float>(m: MulAdd, x: F, gamma: F) -> F {
        Self::pow(m, x, gamma)
    }

    #[inline(always)]
    fn focus_and_slope<F: Float>(m: MulAdd, x: F, gamma: F) -> (F, F) {
        let r = Self::pow(m, x, gamma - F::one());
        let focus = if x == F::zero() { F::zero() } else { r * x };
        (focus, -gamma * r)
    }
}

/// What [`FocalLoss::sweep`] computes besides the sum.
enum Out<'a, F> {
    /// The sum only.
    Value,
    /// The gradient too, into a slice.
    Into(&'a mut [F]),
    /// The gradient too, into a new `Vec`.
    New,
}

impl FocalLoss {
    /// `Σ term` over the elements, and the gradient as `out` asks (a new one
    /// is returned, else the `Vec` is empty), with the focus form `K`.
    fn sweep<F: Float, K: Focus>(&self, p: &[F], t: &[F], scale: F, out: Out<'_, F>) -> (F, Vec<F>) {
        let k = Terms::<F>::new(self);
        match out {
            Out::Value => {
                let sum = sum_terms_with(
                    COMPUTE,
                    p,
                    t,
                    #[inline(always)]
                    |m, p, t| k.term::<K>(m, p, t),
                );
                (sum, Vec::new())
            }
            Out::Into(g) => {
                let sum = sum_terms_and_grad_with(
                    COMPUTE,
                    p,
                    t,
                    g,
                    scale,
                    #[inline(always)]
                    |m, p, t| k.term_and_slope::<K>(m, p, t),
                );
                (sum, Vec::new())
            }
            Out::New => sum_terms_and_new_grad(
                COMPUTE,
                p,
                t,
                scale,
                #[inline(always)]
                |m, p, t| k.term_and_slope::<K>(m, p, t),
            ),
        }
    }

    /// [`FocalLoss::sweep`] with the focus form for this γ.
    fn sweep_any<F: Float>(&self, p: &[F], t: &[F], scale: F, out: Out<'_, F>) -> (F, Vec<F>) {
        if self.gamma == 0.0 {
            self.sweep::<F, NoFocus>(p, t, scale, out)
        } else if self.gamma == 2.0 {
            self.sweep::<F, Square>(p, t, scale, out)
        } else {
            self.sweep::<F, Power>(p, t, scale, out)
        }
    }
}

impl<F: Float> Loss<F> for FocalLoss {
    /// `s·Σ −α·(1 − p)^γ·t·ln(clamp(p, ε, 1 − ε))` as tape ops.
    fn record<'t>(&self, tape: &'t Tape<F>, predictions: Var<'t, F>, targets: &ArrayD<F>) -> Result<Var<'t, F>> {
        // `record` is there to be differentiated: it refuses what the gradient
        // methods refuse.
        let scale = predictions.with_value(|p| {
            let scale = self.check(p, targets)?;
            self.check_slope_finite(p, targets)?;
            Ok::<_, crate::Error>(scale)
        })?;
        let k = Terms::<F>::new(self);
        let ln_q = predictions.clamp(k.lo, k.hi)?.ln()?;
        let log_term = if self.gamma == 0.0 {
            ln_q // (1 − p)⁰ = 1: no pow, whose slope 0·(1 − p)⁻¹ would be NaN at p = 1
        } else {
            let one_minus_p = predictions.neg()?.add_scalar(F::one())?;
            let focus = if self.gamma < 1.0 {
                // (1 − p)^γ has an infinite slope at p = 1, refused above where the
                // target is positive; where it is 0, take it of a stand-in so that
                // it never meets the zero upstream gradient as 0·∞.
                let positive = one_minus_p.with_value(|v| v.mapv(|v| v > F::zero()));
                one_minus_p
                    .where_mask(&positive, tape.scalar(F::one()))?
                    .powf(k.gamma)?
                    .where_mask(&positive, tape.scalar(F::zero()))?
            } else {
                one_minus_p.powf(k.gamma)?
            };
            focus.mul(ln_q)?
        };
        let out = log_term
            .mul(tape.leaf_from(targets, false))?
            // The reduction's scale inside the sum: the gradients computed with
            // the sum then need no second pass to scale them.
            .mul_scalar(k.neg_alpha * scale)?
            .sum()?;
        predictions.with_value(|p| validate::finite_record(Self::NAME, out, p, targets))
    }

    fn forward(&self, predictions: &ArrayD<F>, targets: &ArrayD<F>) -> Result<F> {
        let scale = self.check(predictions, targets)?;
        let (p, t) = (elements(predictions), elements(targets));
        let value = self.sweep_any(&p, &t, F::one(), Out::Value).0 * scale;
        validate::finite_value(Self::NAME, value, predictions, targets)
    }

    fn value_and_grad(&self, predictions: &ArrayD<F>, targets: &ArrayD<F>) -> Result<(F, ArrayD<F>)> {
        if let Some(result) = on_both_cores(COMPUTE, predictions, |grad| {
            self.value_and_grad_into(predictions, targets, grad)
        }) {
            return result;
        }
        let scale = self.check(predictions, targets)?;
        self.check_slope_finite(predictions, targets)?;
        let (p, t) = (elements(predictions), elements(targets));
        let (sum, grad) = self.sweep_any(&p, &t, scale, Out::New);
        let grad = ArrayD::from_shape_vec(predictions.raw_dim(), grad)?;
        let value = validate::finite_value_and_grad(Self::NAME, sum * scale, predictions, targets, &grad)?;
        Ok((value, grad))
    }

    fn value_and_grad_into(&self, predictions: &ArrayD<F>, targets: &ArrayD<F>, grad: &mut ArrayD<F>) -> Result<F> {
        let scale = self.check(predictions, targets)?;
        validate::grad_buffer(predictions, grad)?;
        self.check_slope_finite(predictions, targets)?;
        let (p, t) = (elements(predictions), elements(targets));
        let sum = write_elements(grad, |g| self.sweep_any(&p, &t, scale, Out::Into(g)).0);
        // The terms carry 0·slope, so a finite sum means a finite gradient.
        validate::finite_value_and_grad(Self::NAME, sum * scale, predictions, targets, grad)
    }
}
