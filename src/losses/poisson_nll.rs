//! Poisson negative log-likelihood, PyTorch's `poisson_nll_loss`.

use ndarray::ArrayD;

use super::Reduction;
use super::pointwise::{Pointwise, impl_loss_via_pointwise};
use super::validate::{self, Domain};
use crate::error::Result;
use crate::float::Float;
use crate::kernels::fastmath::{self, MulAdd};
use crate::kernels::parallel::Plan;
use crate::kernels::pointwise::COMPUTE;
use crate::tape::Var;

/// PyTorch's default `eps`, added to a rate before its log.
const DEFAULT_EPS: f64 = 1e-8;

/// Poisson negative log-likelihood, for counts: the predictions are the
/// (log-)rates of Poisson distributions and the targets the counts observed.
///
/// **Formula.** Two forms of the prediction:
///
/// - [`PoissonNllLoss::new`] takes **log-rates** `x ∈ ℝ`: each term is
///   `e^x − t·x`.
/// - [`PoissonNllLoss::with_rates`] takes **rates** `λ ≥ 0`: each term is
///   `λ − t·ln(λ + eps)`, where `eps` (10⁻⁸ unless set with
///   [`with_eps`](Self::with_eps)) keeps `λ = 0` finite.
///
/// Both leave out the constant `ln(t!)`; [`with_full`](Self::with_full) adds
/// its Stirling approximation `t·ln t − t + ½·ln(2πt)` where `t > 1` (0 for
/// `t ≤ 1`, as in PyTorch), which does not depend on the prediction.
/// `ℓ = reduce(terms)` over all elements.
///
/// **Inputs.** Predictions of any shape: finite log-rates, or finite rates
/// ≥ 0. Targets of the identical shape (nothing is broadcast): finite counts
/// ≥ 0 (not necessarily whole). `eps` must be a finite number > 0, in both
/// forms.
///
/// **Gradient.** Log-rates: `∂ℓ/∂xᵢ = s·(e^x − t)`. Rates:
/// `∂ℓ/∂λᵢ = s·(1 − t/(λ + eps))`. The Stirling term adds nothing. Here
/// `s = 1/n` for [`Reduction::Mean`] (n = number of elements) and `s = 1` for
/// [`Reduction::Sum`].
///
/// **PyTorch.** `torch.nn.functional.poisson_nll_loss(x, t, log_input=True|False,
/// full=False|True, eps=eps, reduction='mean'|'sum')`.
///
/// **Reduction.** `Mean` (the default) averages over all n elements; `Sum`
/// adds them, so shards of a batch add up to the whole.
///
/// **Errors.** [`Error::InvalidParameter`](crate::Error::InvalidParameter)
/// for an `eps` that is not a finite number > 0 (PyTorch ignores `eps` on
/// log-rates and accepts any);
/// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch)
/// when the targets' shape differs from the predictions';
/// [`Error::Empty`](crate::Error::Empty) for inputs with no element;
/// [`Error::InvalidTarget`](crate::Error::InvalidTarget) for a negative or
/// infinite count and [`Error::InvalidInput`](crate::Error::InvalidInput)
/// for a negative or infinite rate, with the first offending index (PyTorch
/// computes on, giving NaN, or a finite number for a rate in `(−eps, 0)`);
/// [`Error::NonFinite`](crate::Error::NonFinite) naming the first NaN or
/// infinity in either input, or the loss value where it overflows (`e^x`
/// beyond the float's range: `x > 709` in `f64`, `x > 88` in `f32`), or the
/// gradient where `t/(λ + eps)` overflows while the loss does not.
///
/// ```
/// use tapeloss::{Loss, PoissonNllLoss, Reduction, ndarray::array};
/// # fn main() -> tapeloss::Result<()> {
/// // Log-rates 0, ln 2, 1 against counts 1, 3, 0.
/// let x = array![0.0, 2.0_f64.ln(), 1.0].into_dyn();
/// let t = array![1.0, 3.0, 0.0].into_dyn();
/// let sum = PoissonNllLoss::new().with_reduction(Reduction::Sum);
/// let (value, grad) = sum.value_and_grad(&x, &t)?;
/// let e = 1.0_f64.exp();
/// // (1 − 0) + (2 − 3·ln 2) + (e − 0)
/// assert!((value - (3.0 + e - 3.0 * 2.0_f64.ln())).abs() < 1e-14);
/// // e^x − t: 0, −1, e
/// assert!((grad[0]).abs() < 1e-15 && (grad[1] + 1.0).abs() < 1e-15 && (grad[2] - e).abs() < 1e-15);
///
/// // The Stirling term, for the count 3 only: 3·ln 3 − 3 + ½·ln(6π).
/// let full = sum.with_full().forward(&x, &t)?;
/// let stirling = 3.0 * 3.0_f64.ln() - 3.0 + 0.5 * (6.0 * std::f64::consts::PI).ln();
/// assert!((full - value - stirling).abs() < 1e-14);
///
/// // Rates 1 and 0 against counts 2 and 0: (1 − 2·ln(1 + eps)) + (0 − 0), over 2.
/// let rates = PoissonNllLoss::with_rates().with_eps(0.5);
/// let (value, grad) = rates.value_and_grad(&array![1.0, 0.0].into_dyn(), &array![2.0, 0.0].into_dyn())?;
/// assert!((value - (1.0 - 2.0 * 1.5_f64.ln()) / 2.0).abs() < 1e-15);
/// assert_eq!(grad, array![(1.0 - 2.0 / 1.5) / 2.0, 0.5].into_dyn()); // (1 − t/(λ + eps))/2
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoissonNllLoss {
    log_input: bool,
    full: bool,
    eps: f64,
    reduction: Reduction,
}

impl Default for PoissonNllLoss {
    /// [`PoissonNllLoss::new`]: on log-rates.
    fn default() -> Self {
        Self::new()
    }
}

reduction_builders!(PoissonNllLoss);

impl PoissonNllLoss {
    /// Poisson NLL on log-rates, without the Stirling term, with
    /// [`Reduction::Mean`]: PyTorch's `poisson_nll_loss` defaults.
    pub fn new() -> Self {
        Self {
            log_input: true,
            full: false,
            eps: DEFAULT_EPS,
            reduction: Reduction::Mean,
        }
    }

    /// Poisson NLL on rates `λ ≥ 0` (PyTorch's `log_input=False`), with
    /// `eps = 1e-8` and [`Reduction::Mean`].
    pub fn with_rates() -> Self {
        Self {
            log_input: false,
            ..Self::new()
        }
    }

    /// Adds the Stirling approximation of `ln(t!)` for counts above 1
    /// (PyTorch's `full=True`), so that the value is the full negative
    /// log-likelihood; the gradient is unchanged.
    pub fn with_full(self) -> Self {
        Self { full: true, ..self }
    }

    /// Sets `eps` (finite, > 0; checked when the loss computes), added to a
    /// rate before its log. Only the rates form uses it.
    pub fn with_eps(self, eps: f64) -> Self {
        Self { eps, ..self }
    }

    /// Whether the predictions are log-rates (else rates).
    pub fn log_input(&self) -> bool {
        self.log_input
    }

    /// Whether the Stirling term is added.
    pub fn full(&self) -> bool {
        self.full
    }

    /// The `eps` added to a rate before its log.
    pub fn eps(&self) -> f64 {
        self.eps
    }

    /// `t·ln t − t + ½·ln(2πt)` for `t > 1`, else 0, in PyTorch's order.
    #[inline(always)]
    fn stirling<F: Float>(&self, m: MulAdd, t: F) -> F {
        // The same for every element, so the loop is unswitched on it: without
        // `full`, the two logs are not computed at all (3× faster).
        if !self.full {
            return F::zero();
        }
        let value =
            t * fastmath::ln(m, t) - t + F::from_f64(0.5) * fastmath::ln(m, F::from_f64(std::f64::consts::TAU) * t);
        if t > F::one() { value } else { F::zero() }
    }
}

impl Pointwise for PoissonNllLoss {
    const NAME: &'static str = "PoissonNllLoss";
    // An exp or a log (two more for the Stirling term) per element.
    const PLAN: Plan = COMPUTE;

    fn reduction(&self) -> Reduction {
        self.reduction
    }

    fn check_parameters(&self) -> Result<()> {
        validate::parameter("eps", self.eps, Domain::Positive)
    }

    fn check_domain<F: Float>(&self, predictions: &ArrayD<F>, targets: &ArrayD<F>) -> Result<()> {
        if !self.log_input {
            validate::non_negative(Self::NAME, "predictions", predictions)?;
        }
        validate::non_negative_targets(
            Self::NAME,
            targets,
            format_args!("{}: targets must be counts (finite numbers ≥ 0)", Self::NAME),
        )
    }

    #[inline(always)]
    fn term<F: Float>(&self, m: MulAdd, x: F, t: F) -> F {
        let nll = if self.log_input {
            fastmath::exp(m, x) - t * x
        } else {
            x - t * fastmath::ln(m, x + F::from_f64(self.eps))
        };
        nll + self.stirling(m, t)
    }

    #[inline(always)]
    fn term_and_slope<F: Float>(&self, m: MulAdd, x: F, t: F) -> (F, F) {
        if self.log_input {
            // e^x − t cannot overflow where e^x − t·x is finite.
            let e = fastmath::exp(m, x);
            (e - t * x + self.stirling(m, t), e - t)
        } else {
            let y = x + F::from_f64(self.eps);
            let slope = F::one() - t / y;
            // t/y can overflow where t·ln y does not (a tiny eps): 0·slope
            // makes the sum NaN exactly then, so the gradient is reported.
            (
                x - t * fastmath::ln(m, y) + self.stirling(m, t) + F::zero() * slope,
                slope,
            )
        }
    }

    /// `e^x − t·x` or `λ − t·ln(λ + eps)`; the Stirling term from the
    /// constant targets, masked to `t > 1` (its `0·ln 0` at `t = 0` is masked
    /// too, and no gradient reaches it).
    fn record_terms<'t, F: Float>(&self, x: Var<'t, F>, t: Var<'t, F>) -> Result<Var<'t, F>> {
        let nll = if self.log_input {
            x.exp()?.sub(t.mul(x)?)?
        } else {
            x.sub(t.mul(x.add_scalar(F::from_f64(self.eps))?.ln()?)?)?
        };
        if !self.full {
            return Ok(nll);
        }
        let above_one = t.with_value(|t| t.mapv(|v| v > F::one()));
        let half_log = t
            .mul_scalar(F::from_f64(std::f64::consts::TAU))?
            .ln()?
            .mul_scalar(F::from_f64(0.5))?;
        let stirling = t.mul(t.ln()?)?.sub(t)?.add(half_log)?;
        nll.add(stirling.where_mask(&above_one, t.tape().scalar(F::zero()))?)
    }
}

impl_loss_via_pointwise!(PoissonNllLoss);
