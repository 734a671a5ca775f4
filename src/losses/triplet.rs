//! Triplet margin loss on (anchor, positive, negative) embeddings.

use ndarray::ArrayD;

use super::embedding::{check_margin, finite_record, finite_result, layout};
use super::slices::{elements, write_elements};
use super::{Loss, Reduction, validate};
use crate::error::Result;
use crate::float::Float;
use crate::kernels::distance::{RowSink, squared_distances_from, write_two_differences, write_zeros};
use crate::kernels::parallel::{self, GradRows, Rows};
use crate::kernels::pointwise::STREAMING;
use crate::tape::{Tape, Var};

/// Triplet margin loss (Schroff, Kalenichenko and Philbin, 2015), for metric
/// learning: an anchor should be closer to its positive than to its negative,
/// by at least the margin.
///
/// **Formula.** With plain Euclidean distances `d⁺ᵢ = ‖aᵢ − pᵢ‖₂` and
/// `d⁻ᵢ = ‖aᵢ − nᵢ‖₂`,
///
/// `ℓ = reduce( max(0, d⁺ᵢ − d⁻ᵢ + m) )` over the N triplets.
///
/// **Inputs.** Predictions `[N, 3, D]`: N triplets of D-dimensional
/// embeddings, `a = [:, 0, :]`, `p = [:, 1, :]`, `n = [:, 2, :]`; or `[3, D]`,
/// one triplet (N = 1) with the anchor, positive and negative as rows. The
/// targets are ignored: any shape and any values are accepted (the seed passes
/// zeros of shape `[3]`), and a NaN in them changes nothing. N = 0 or D = 0 is
/// an [`Error::Empty`](crate::Error::Empty).
///
/// **Gradient.** Where the hinge is active (`d⁺ − d⁻ + m > 0`):
/// `∂ℓ/∂p = −s·(a − p)/d⁺`, `∂ℓ/∂n = s·(a − n)/d⁻` and
/// `∂ℓ/∂a = −∂ℓ/∂p − ∂ℓ/∂n`, with `s = 1/N` for [`Reduction::Mean`] and `s = 1`
/// for [`Reduction::Sum`]; elsewhere 0, and 0 at the kink itself, as in
/// PyTorch (its `clamp_min` passes none at the bound; the tape's `relu` none
/// at 0). A zero distance has no direction: its part of the gradient is 0,
/// never NaN (the tape's `norm_axis` passes 0 at a zero norm, so it agrees).
/// Distances are `√Σ (a − p)²` without rescaling, so points closer than about
/// `1e-19` per coordinate in `f32` (`1e-154` in `f64`) are at distance 0.
///
/// **Reduction.** `Mean` (the default) averages over the N triplets; `Sum`
/// adds them, so shards of a batch add up to the whole.
///
/// **PyTorch.** `torch.nn.functional.triplet_margin_loss(a, p, n, margin=m,
/// p=2, eps=0, reduction='mean'|'sum')`. PyTorch's default `eps=1e-6` measures
/// `‖a − p + eps‖` instead, which differs in about the sixth digit;
/// `TripletMarginLoss` likewise.
///
/// **Errors.** [`Error::InvalidParameter`](crate::Error::InvalidParameter) for
/// a negative, NaN or infinite margin;
/// [`Error::InvalidShape`](crate::Error::InvalidShape) when predictions are
/// neither `[N, 3, D]` nor `[3, D]`; [`Error::Empty`](crate::Error::Empty);
/// [`Error::NonFinite`](crate::Error::NonFinite) naming the first NaN or
/// infinity in the predictions, or a squared distance that overflows.
///
/// The seed's example, one triplet as a `[3, D]` array:
/// ```
/// use tapeloss::losses::{Loss, TripletLoss};
/// use tapeloss::ndarray::Array;
/// # fn main() -> tapeloss::Result<()> {
/// let triplet_loss = TripletLoss::new(1.0); // margin = 1.0
/// // Embeddings: [anchor, positive, negative]
/// let anchor = Array::from_vec(vec![1.0, 0.0, 0.0]).into_dyn();
/// let positive = Array::from_vec(vec![0.9, 0.1, 0.0]).into_dyn(); // Similar to anchor
/// let negative = Array::from_vec(vec![0.0, 0.0, 1.0]).into_dyn(); // Different from anchor
/// // Stack into batch format
/// let embeddings = Array::from_shape_vec((3, 3), vec![
///     1.0, 0.0, 0.0, // anchor
///     0.9, 0.1, 0.0, // positive
///     0.0, 0.0, 1.0, // negative
/// ])?.into_dyn();
/// // Dummy targets (not used in triplet loss)
/// let targets = Array::zeros((3,)).into_dyn();
/// let loss_value = triplet_loss.forward(&embeddings, &targets)?;
/// println!("Triplet Loss: {:.4}", loss_value);
/// # let _ = (anchor, positive, negative);
/// // max(0, √0.02 − √2 + 1) = max(0, −0.27): the negative is already far enough.
/// assert_eq!(loss_value, 0.0);
/// # Ok(()) }
/// ```
///
/// A batch `[N, 3, D]`, with the gradient:
/// ```
/// use tapeloss::{Loss, Reduction, TripletLoss, ndarray::array};
/// # fn main() -> tapeloss::Result<()> {
/// let triplets = array![
///     [[0.0, 0.0], [0.0, 1.0], [3.0, 0.0]], // d⁺ = 1, d⁻ = 3: the margin 1 is met
///     [[0.0, 0.0], [0.0, 1.0], [0.0, 1.5]], // d⁺ = 1, d⁻ = 1.5: loss 0.5
/// ]
/// .into_dyn();
/// let loss = TripletLoss::new(1.0).with_reduction(Reduction::Sum);
/// let (value, grad): (f64, _) = loss.value_and_grad(&triplets, &array![0.0].into_dyn())?;
/// assert!((value - 0.5).abs() < 1e-12);
/// assert_eq!(grad.slice(tapeloss::ndarray::s![0, .., ..]).sum(), 0.0); // inactive
/// // ∂ℓ/∂p = −(a − p)/d⁺ = (0, 1); ∂ℓ/∂n = (a − n)/d⁻ = (0, −1).
/// assert!((grad[[1, 1, 1]] - 1.0).abs() < 1e-12 && (grad[[1, 2, 1]] + 1.0).abs() < 1e-12);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TripletLoss {
    margin: f64,
    reduction: Reduction,
}

reduction_builders!(TripletLoss);

impl TripletLoss {
    const NAME: &'static str = "TripletLoss";

    /// Triplet loss with margin `margin ≥ 0` and [`Reduction::Mean`]. An
    /// invalid margin is reported by every method that computes.
    pub fn new(margin: f64) -> Self {
        Self {
            margin,
            reduction: Reduction::Mean,
        }
    }

    /// The margin `m`.
    pub fn margin(&self) -> f64 {
        self.margin
    }

    /// Everything that must hold before computing; returns `(N, D)`. The
    /// targets are not looked at.
    fn check(&self, shape: &[usize]) -> Result<(usize, usize)> {
        check_margin(self.margin)?;
        layout(
            Self::NAME,
            shape,
            3,
            true,
            "[N, 3, D] or [3, D] (anchor, positive, negative on the axis of size 3)",
        )
    }

    /// Σᵢ termᵢ over the triplets in f64, writing `scale · ∂termᵢ/∂x` into
    /// `grad` when given; also whether every squared distance was finite. Row
    /// terms are summed in f64, as in [`super::ContrastiveLoss`], on both
    /// cores for large batches along the same fixed tree.
    fn sweep<F: Float>(&self, x: &[F], d: usize, scale: F, grad: Option<&mut [F]>) -> (f64, bool) {
        let m = F::from_f64(self.margin);
        let width = 3 * d;
        let rows = (Rows { data: x, width }, grad.map(|g| Rows { data: g, width }));
        parallel::reduce(
            rows,
            STREAMING.rows(width),
            #[inline(always)]
            |(x, g): (Rows<&[F]>, GradRows<'_, F>)| match g {
                Some(g) => sweep_rows(x.data, d, m, scale, Some(&mut { g.data })),
                None => sweep_rows::<F, &mut [F]>(x.data, d, m, scale, None),
            },
            #[inline(always)]
            |a: (f64, bool), b: (f64, bool)| (a.0 + b.0, a.1 && b.1),
        )
    }

    /// [`TripletLoss::sweep`] with a new gradient, which it returns with the
    /// same bits, built in order on the calling thread: the rows extend it,
    /// so it needs no zeroing first. Zeroing a whole
    /// gradient for two cores cost more than the second core gained
    /// (`slices::on_both_cores`).
    fn sweep_new_grad<F: Float>(&self, x: &[F], d: usize, scale: F) -> ((f64, bool), Vec<F>) {
        let m = F::from_f64(self.margin);
        let width = 3 * d;
        let mut grad = Vec::with_capacity(x.len());
        let result = parallel::reduce_in_order_with(
            Rows { data: x, width },
            STREAMING.rows(width),
            #[inline(always)]
            |_, x: Rows<&[F]>| sweep_rows(x.data, d, m, scale, Some(&mut &mut grad)),
            #[inline(always)]
            |a: (f64, bool), b: (f64, bool)| (a.0 + b.0, a.1 && b.1),
        );
        (result, grad)
    }
}

/// [`TripletLoss::sweep`] over a run of whole triplets, on one thread,
/// writing the gradient rows into `grad` when given.
#[inline(always)]
fn sweep_rows<F: Float, S: RowSink<F>>(x: &[F], d: usize, m: F, scale: F, mut grad: Option<&mut S>) -> (f64, bool) {
    let (mut total, mut finite) = (0.0, true);
    for triplet in x.chunks_exact(3 * d) {
        let (a, rest) = triplet.split_at(d);
        let (p, n) = rest.split_at(d);
        let (sp, sn) = squared_distances_from(a, p, n);
        finite &= sp.is_finite() && sn.is_finite();
        let (term, cp, cn) = term_and_factors(sp, sn, m);
        total += term.as_f64();
        if let Some(g) = grad.as_deref_mut() {
            if term > F::zero() {
                write_two_differences(a, p, n, scale * cp, scale * cn, g);
            } else {
                write_zeros(3 * d, g);
            }
        }
    }
    (total, finite)
}

/// One triplet's term `max(0, d⁺ − d⁻ + m)` from `s⁺ = d⁺²`, `s⁻ = d⁻²`, and
/// the factors `(1/d⁺, 1/d⁻)` of `∂term/∂p = −(a − p)/d⁺`,
/// `∂term/∂n = (a − n)/d⁻` when the hinge is active; a zero distance gives the
/// factor 0.
#[inline(always)]
fn term_and_factors<F: Float>(sp: F, sn: F, m: F) -> (F, F, F) {
    let (dp, dn) = (sp.sqrt(), sn.sqrt());
    let inverse = |d: F| if d > F::zero() { d.recip() } else { F::zero() };
    let hinge = dp - dn + m;
    if hinge > F::zero() {
        (hinge, inverse(dp), inverse(dn))
    } else {
        (F::zero(), F::zero(), F::zero())
    }
}

impl<F: Float> Loss<F> for TripletLoss {
    /// `relu(d⁺ − d⁻ + m)` on the tape, with `a`, `p` and `n` taken along
    /// axis 1 and the distances as `norm_axis` (gradient 0 at 0).
    fn record<'t>(&self, _tape: &'t Tape<F>, predictions: Var<'t, F>, _targets: &ArrayD<F>) -> Result<Var<'t, F>> {
        let shape = predictions.shape();
        let (_, d) = self.check(&shape)?;
        let x = if shape.len() == 2 {
            predictions.reshape(&[1, 3, d])?
        } else {
            predictions
        };
        let (a, p, n) = (x.index_axis(1, 0)?, x.index_axis(1, 1)?, x.index_axis(1, 2)?);
        let to_positive = a.sub(p)?.norm_axis(1, false)?;
        let to_negative = a.sub(n)?.norm_axis(1, false)?;
        let terms = to_positive
            .sub(to_negative)?
            .add_scalar(F::from_f64(self.margin))?
            .relu()?;
        let out = self.reduction.record(terms)?;
        // The targets are ignored, so only the predictions can be blamed.
        finite_record(Self::NAME, out, &[to_positive, to_negative], predictions, None)
    }

    fn forward(&self, predictions: &ArrayD<F>, _targets: &ArrayD<F>) -> Result<F> {
        let (n, d) = self.check(predictions.shape())?;
        let (total, finite) = self.sweep(&elements(predictions), d, F::one(), None);
        let value = F::from_f64(total * self.reduction.scale::<f64>(n));
        finite_result(Self::NAME, value, finite, predictions, None)
    }

    fn value_and_grad(&self, predictions: &ArrayD<F>, _targets: &ArrayD<F>) -> Result<(F, ArrayD<F>)> {
        let (n, d) = self.check(predictions.shape())?;
        let scale = self.reduction.scale::<F>(n);
        let ((total, finite), grad) = self.sweep_new_grad(&elements(predictions), d, scale);
        let grad = ArrayD::from_shape_vec(predictions.raw_dim(), grad)?;
        let value = F::from_f64(total * self.reduction.scale::<f64>(n));
        Ok((finite_result(Self::NAME, value, finite, predictions, None)?, grad))
    }

    fn value_and_grad_into(&self, predictions: &ArrayD<F>, _targets: &ArrayD<F>, grad: &mut ArrayD<F>) -> Result<F> {
        let (n, d) = self.check(predictions.shape())?;
        validate::grad_buffer(predictions, grad)?;
        let scale = self.reduction.scale::<F>(n);
        let x = elements(predictions);
        let (total, finite) = write_elements(grad, |g| self.sweep(&x, d, scale, Some(g)));
        let value = F::from_f64(total * self.reduction.scale::<f64>(n));
        finite_result(Self::NAME, value, finite, predictions, None)
    }
}
