//! Binary cross-entropy, on probabilities and on logits.

use ndarray::ArrayD;

use super::Reduction;
use super::pointwise::{Pointwise, impl_loss_via_pointwise};
use super::validate::{self, Domain};
use crate::error::{Error, Result};
use crate::float::Float;
use crate::kernels::fastmath::{self, MulAdd};
use crate::kernels::parallel::Plan;
use crate::kernels::pointwise::COMPUTE;
use crate::kernels::scalar::Logistic;
use crate::tape::Var;

/// PyTorch's floor on each log in `binary_cross_entropy`, so that `p = 0` or
/// `p = 1` gives a finite loss.
const LOG_FLOOR: f64 = -100.0;

/// PyTorch's floor on `p(1 − p)` in the gradient. ATen declares it as a
/// `float`, so in `f64` it is `1e-12` rounded to `f32`.
const SLOPE_FLOOR: f32 = 1e-12;

/// Binary cross-entropy, for binary and multi-label classification.
///
/// **Formula.** One element is one independent binary decision. Two forms:
///
/// - [`BinaryCrossEntropyLoss::new`] takes **probabilities** `p ∈ [0, 1]`:
///   each term is `−[t·max(ln p, −100) + (1 − t)·max(ln(1 − p), −100)]`. The
///   floor is PyTorch's: `p = 0` or `p = 1` gives a finite loss (at most 100
///   per element).
/// - [`BinaryCrossEntropyLoss::with_logits`] takes **logits** `x ∈ ℝ`, with
///   `p = σ(x)` applied inside: each term is
///   `−[w·t·ln σ(x) + (1 − t)·ln(1 − σ(x))] = (1 − t)·softplus(x) + w·t·softplus(−x)`,
///   with `w` the optional [`pos_weight`](Self::with_pos_weight) (1 by
///   default). Both softplus terms are non-negative and computed stably, so
///   logits up to `±1e4` (and beyond) give finite values and gradients in
///   `f32` and `f64`.
///
/// `ℓ = reduce(terms)` over all elements.
///
/// **Reduction.** `Mean` (the default) averages over all elements; `Sum` adds
/// them, so shards of a batch add up to the whole.
///
/// **Inputs.** Predictions of any shape; targets of the identical shape
/// (nothing is broadcast), each in `[0, 1]`: hard labels or soft ones.
///
/// **Gradient.**
/// - Probabilities: `∂ℓ/∂pᵢ = s·(p − t)/max(p(1 − p), 1e-12)`, PyTorch's own
///   backward, finite at `p ∈ {0, 1}`. (The tape composition differentiates the
///   floored logs exactly, so it agrees wherever `p(1 − p) > 1e-12` and neither
///   floor is active.)
/// - Logits: `∂ℓ/∂xᵢ = s·[(1 − t)·σ(x) − w·t·σ(−x)]`, which is `s·(σ(x) − t)`
///   without a `pos_weight`.
///
/// The closed forms keep their relative accuracy where the gradient is tiny.
/// The tape, which adds the derivatives of the composition's terms, does
/// for hard targets (`t ∈ {0, 1}`), but with a soft target its error is
/// absolute: about half an ulp of 1 (of `max(1 − t, w·t)` on logits, of
/// `t/p` on probabilities), which is most of a gradient near its root
/// (`p ≈ t`, or a confident logit with `t = 1e-6`).
///
/// Here `s = 1/n` for [`Reduction::Mean`] (n = number of elements) and `s = 1`
/// for [`Reduction::Sum`].
///
/// **Errors.** Probabilities outside `[0, 1]` are [`Error::InvalidInput`],
/// targets outside `[0, 1]` are [`Error::InvalidTarget`], both with the first
/// offending index; a NaN in either is [`Error::NonFinite`]. A negative or
/// non-finite `pos_weight` is [`Error::InvalidParameter`], and so is a
/// `pos_weight` on the probability form (PyTorch has none there).
///
/// **PyTorch.** `torch.nn.functional.binary_cross_entropy(p, t,
/// reduction='mean'|'sum')` and
/// `torch.nn.functional.binary_cross_entropy_with_logits(x, t,
/// reduction='mean'|'sum', pos_weight=torch.tensor(w))` (here `pos_weight` is one
/// scalar for every element).
///
/// ```
/// use tapeloss::{BinaryCrossEntropyLoss, Loss, Reduction, ndarray::array};
/// # fn main() -> tapeloss::Result<()> {
/// // On probabilities; p = 0 and p = 1 stay finite.
/// let p = array![0.8, 0.25, 0.0, 1.0].into_dyn();
/// let t = array![1.0, 0.0, 1.0, 1.0].into_dyn();
/// let bce = BinaryCrossEntropyLoss::new().with_reduction(Reduction::Sum);
/// let value: f64 = bce.forward(&p, &t)?;
/// let expected = -(0.8_f64.ln() + 0.75_f64.ln()) + 100.0 + 0.0;
/// assert!((value - expected).abs() < 1e-12);
///
/// // On logits, with positive examples weighted 3×.
/// let x = array![2.0, -1.0, 1e4].into_dyn();
/// let t = array![1.0, 0.0, 0.0].into_dyn();
/// let bce = BinaryCrossEntropyLoss::with_logits().with_pos_weight(3.0);
/// let (value, grad) = bce.value_and_grad(&x, &t)?;
/// let softplus = |z: f64| z.exp().ln_1p();
/// let sigmoid = |z: f64| 1.0 / (1.0 + (-z).exp());
/// assert!((value - (3.0 * softplus(-2.0) + softplus(-1.0) + 1e4) / 3.0).abs() < 1e-9);
/// assert!((grad[0] - -3.0 * sigmoid(-2.0) / 3.0).abs() < 1e-15);
/// assert!((grad[2] - 1.0 / 3.0).abs() < 1e-15);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BinaryCrossEntropyLoss {
    on_logits: bool,
    pos_weight: Option<f64>,
    reduction: Reduction,
}

impl Default for BinaryCrossEntropyLoss {
    /// [`BinaryCrossEntropyLoss::new`]: on probabilities.
    fn default() -> Self {
        Self::new()
    }
}

reduction_builders!(BinaryCrossEntropyLoss);

impl BinaryCrossEntropyLoss {
    /// Binary cross-entropy on probabilities `p ∈ [0, 1]`, with
    /// [`Reduction::Mean`]. PyTorch's `binary_cross_entropy`.
    pub fn new() -> Self {
        Self {
            on_logits: false,
            pos_weight: None,
            reduction: Reduction::Mean,
        }
    }

    /// Binary cross-entropy on logits (the sigmoid is applied inside, stably),
    /// with [`Reduction::Mean`]. PyTorch's `binary_cross_entropy_with_logits`.
    pub fn with_logits() -> Self {
        Self {
            on_logits: true,
            ..Self::new()
        }
    }

    /// Weighs the positive part `t·ln σ(x)` of every term by `pos_weight`
    /// (≥ 0; checked when the loss computes): above 1 raises recall, below 1
    /// precision. Only for the logits form; on probabilities it is reported as
    /// an [`Error::InvalidParameter`].
    pub fn with_pos_weight(self, pos_weight: f64) -> Self {
        Self {
            pos_weight: Some(pos_weight),
            ..self
        }
    }

    /// Whether the predictions are logits (else probabilities).
    pub fn on_logits(&self) -> bool {
        self.on_logits
    }

    /// The weight of positive examples, if one was set.
    pub fn pos_weight(&self) -> Option<f64> {
        self.pos_weight
    }

    /// The positive weight as used: 1 when none was set.
    fn w<F: Float>(&self) -> F {
        F::from_f64(self.pos_weight.unwrap_or(1.0))
    }
}

impl Pointwise for BinaryCrossEntropyLoss {
    const NAME: &'static str = "BinaryCrossEntropyLoss";
    // An exp and a log (or two logs) and a division per element.
    const PLAN: Plan = COMPUTE;

    fn reduction(&self) -> Reduction {
        self.reduction
    }

    fn check_parameters(&self) -> Result<()> {
        match self.pos_weight {
            Some(w) if !self.on_logits => Err(Error::InvalidParameter {
                name: "pos_weight".into(),
                value: w,
                expected: "no pos_weight on probabilities (it is an option of BinaryCrossEntropyLoss::with_logits())",
            }),
            Some(w) => validate::parameter("pos_weight", w, Domain::NonNegative),
            None => Ok(()),
        }
    }

    fn check_domain<F: Float>(&self, predictions: &ArrayD<F>, targets: &ArrayD<F>) -> Result<()> {
        if !self.on_logits {
            validate::probabilities(Self::NAME, "predictions", predictions)?;
        }
        validate::probability_targets(Self::NAME, targets)
    }

    #[inline(always)]
    fn term<F: Float>(&self, m: MulAdd, p: F, t: F) -> F {
        if self.on_logits {
            // (1 − t)·softplus(x) + w·t·softplus(−x), sharing ln(1 + e^(−|x|)).
            let k = Logistic::new(m, p);
            (F::one() - t) * (p.max(F::zero()) + k.l) + self.w::<F>() * t * ((-p).max(F::zero()) + k.l)
        } else {
            let floor = F::from_f64(LOG_FLOOR);
            // PyTorch's order of operations; NaN never gets here (checked), so
            // `max` cannot hide one.
            (t - F::one()) * fastmath::ln_1p(m, -p).max(floor) - t * fastmath::ln(m, p).max(floor)
        }
    }

    #[inline(always)]
    fn term_and_slope<F: Float>(&self, m: MulAdd, p: F, t: F) -> (F, F) {
        if self.on_logits {
            let k = Logistic::new(m, p);
            let (one_minus_t, wt) = (F::one() - t, self.w::<F>() * t);
            let term = one_minus_t * (p.max(F::zero()) + k.l) + wt * ((-p).max(F::zero()) + k.l);
            // (1 − t)·σ(x) − w·t·σ(−x), with the one reciprocal.
            (term, (one_minus_t * k.a - wt * k.b) * k.r)
        } else {
            let slope = (p - t) / ((F::one() - p) * p).max(F::from_f64(f64::from(SLOPE_FLOOR)));
            (self.term(m, p, t), slope)
        }
    }

    /// On logits, `(1 − t)·softplus(x) + w·t·softplus(−x)` with both softplus
    /// terms split as `softplus(±x) = (|½x| ± ½x) + ln(1 + e^(−|x|))`: the two
    /// share their one exp and one ln, and every term is ≥ 0, so nothing
    /// cancels (the shorter `(1 − t)·x + (1 − t + w·t)·softplus(−x)`, PyTorch's
    /// form, cancels two huge terms when `x ≪ 0` and `t < 1`, and loses digits
    /// the closed form keeps: at `x = −1e30`, `t = ¼` in `f32`). `|½x| ± ½x`
    /// rather than `relu(±x)`: with `|x|`'s slope 0 at 0 it has slope `±½`
    /// there, softplus's own, where `relu`'s 0 would lose it; halved before
    /// the sum so that `x` up to `f32`'s largest does not overflow. The shared
    /// term takes its own `|x|` and is recorded first, so the sweep adds its
    /// `σ(x)` into `x`'s gradient last: the linear part's `½ − ½` where the
    /// target agrees with the sign (`t = 0`, `x < 0`) has then cancelled
    /// exactly. Added in between, or through one shared `|½x|` as
    /// `(1 − 2σ(x)) − 1`, `σ(x)` was lost below half an ulp of ½ (`x < −17`
    /// in `f32`, `x < −37` in `f64`).
    ///
    /// On probabilities, `−t·max(ln p, −100) + (t − 1)·max(ln(1 − p), −100)`:
    /// the signs go on the targets' side, which has no gradient to carry, so
    /// the chain ends without a negation step (the same bits, since negation
    /// is exact and `t − 1 = −(1 − t)` rounds alike).
    fn record_terms<'t, F: Float>(&self, p: Var<'t, F>, t: Var<'t, F>) -> Result<Var<'t, F>> {
        if self.on_logits {
            // Recorded first, so differentiated last (the sweep runs backwards).
            let shared = p.abs()?.neg()?.exp()?.log1p()?; // ln(1 + e^(−|x|))
            let one_minus_t = t.neg()?.add_scalar(F::one())?;
            let half = p.mul_scalar(F::from_f64(0.5))?;
            let half_abs = half.abs()?;
            let positive = match self.pos_weight {
                Some(_) => t.mul_scalar(self.w())?,
                None => t,
            };
            let negatives = one_minus_t.mul(half_abs.add(half)?)?; // (1 − t)·max(x, 0)
            let positives = positive.mul(half_abs.sub(half)?)?; // w·t·max(−x, 0)
            let linear = negatives.add(positives)?;
            match self.pos_weight {
                // w = 1: the shared term's coefficient 1 − t + t is 1, and the
                // chain has 15 steps instead of 18.
                None => linear.add(shared),
                Some(_) => linear.add(one_minus_t.add(positive)?.mul(shared)?),
            }
        } else {
            let log_p = record_floored_log(p, Log::Ln)?;
            let log_1mp = record_floored_log(p.neg()?, Log::Log1p)?;
            let t_minus_one = t.add_scalar(-F::one())?;
            t.neg()?.mul(log_p)?.add(t_minus_one.mul(log_1mp)?)
        }
    }
}

impl_loss_via_pointwise!(BinaryCrossEntropyLoss);

/// Which logarithm [`record_floored_log`] takes.
#[derive(Clone, Copy)]
enum Log {
    /// `ln x`.
    Ln,
    /// `ln(1 + x)`.
    Log1p,
}

/// `max(log x, −100)` on the tape, as a clamp from below: where the floor is
/// active the result is the constant −100, with slope 0 (clamp passes the
/// gradient only strictly inside its bounds). The log's slope is infinite at
/// its pole (`p = 0` for `ln p`, `p = 1` for `ln(1 − p)`), but the zero
/// gradient the clamp passes it there stays zero through it (the tape's rule
/// for `0·∞`), so no stand-in input is needed and the log is taken once. Both
/// ops are elementwise, so the whole loss stays one fused chain on the tape.
fn record_floored_log<'t, F: Float>(x: Var<'t, F>, log: Log) -> Result<Var<'t, F>> {
    let logged = match log {
        Log::Ln => x.ln()?,
        Log::Log1p => x.log1p()?,
    };
    logged.clamp(F::from_f64(LOG_FLOOR), F::infinity())
}
