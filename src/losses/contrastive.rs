//! Contrastive loss on pairs of embeddings.

use ndarray::ArrayD;

use super::embedding::{check_margin, finite_record, finite_result, layout};
use super::slices::{elements, write_elements};
use super::{Loss, Reduction, validate};
use crate::error::{Error, Result};
use crate::float::Float;
use crate::kernels::distance::{RowSink, squared_distance, write_difference};
use crate::kernels::parallel::{self, GradRows, Rows};
use crate::kernels::pointwise::STREAMING;
use crate::tape::{Tape, Var};

/// Contrastive loss (Hadsell, Chopra and LeCun, 2006), for learning embeddings
/// from pairs labelled similar or dissimilar.
///
/// **Formula.** With `dᵢ = ‖x₁ᵢ − x₂ᵢ‖₂` the Euclidean distance of pair `i`
/// and `yᵢ ∈ [0, 1]` its label (1 = similar, 0 = dissimilar; soft labels in
/// between weigh both terms),
///
/// `ℓ = reduce( yᵢ·dᵢ² + (1 − yᵢ)·max(0, m − dᵢ)² )` over the N pairs,
///
/// without a ½ factor. Similar pairs are pulled together; dissimilar pairs are
/// pushed apart until they are at least the margin `m` apart.
///
/// **Inputs.** Predictions `[N, 2, D]`: N pairs of D-dimensional embeddings,
/// `x₁ = predictions[:, 0, :]` and `x₂ = predictions[:, 1, :]`. Targets: the
/// N labels, shape `[N]` or `[N, 1]`, each in `[0, 1]`. An input with N = 0
/// or D = 0 holds no elements and is an [`Error::Empty`] (with D = 0 every
/// distance would be 0 and the loss a constant with nothing to learn).
///
/// **Gradient.** `∂ℓ/∂x₁ᵢ = s·(2yᵢ − 2(1 − yᵢ)·max(0, m − dᵢ)/dᵢ)·(x₁ᵢ − x₂ᵢ)`
/// and `∂ℓ/∂x₂ᵢ = −∂ℓ/∂x₁ᵢ`, with `s = 1/N` for [`Reduction::Mean`] and
/// `s = 1` for [`Reduction::Sum`]. At `dᵢ = 0` the distance has no derivative;
/// the dissimilar term's gradient is taken as 0 there, never NaN (the tape's
/// `norm_axis` passes 0 at a zero norm, so it agrees). Distances are
/// `√Σ (x₁ − x₂)²` without rescaling, so points closer than about `1e-19` per
/// coordinate in `f32` (`1e-154` in `f64`) are at distance 0.
///
/// **Reduction.** `Mean` (the default) averages over the N pairs; `Sum` adds
/// them, so shards of a batch add up to the whole.
///
/// **PyTorch.** No built-in; the same loss in PyTorch is
/// `d = (x1 - x2).norm(dim=1); (y * d**2 + (1 - y) * F.relu(m - d)**2).mean()`
/// (or `.sum()`).
///
/// **Errors.** [`Error::InvalidParameter`] for a negative, NaN or infinite
/// margin; [`Error::InvalidShape`] when predictions are not `[N, 2, D]`;
/// [`Error::ShapeMismatch`] when the targets do not hold N labels as `[N]` or
/// `[N, 1]`; [`Error::InvalidTarget`] for a label outside `[0, 1]`;
/// [`Error::Empty`] for N = 0 or D = 0; [`Error::NonFinite`] naming the first
/// NaN or infinity in the predictions, a NaN label, or a squared distance
/// that overflows.
///
/// ```
/// use tapeloss::losses::{ContrastiveLoss, Loss};
/// use tapeloss::ndarray::Array;
/// # fn main() -> tapeloss::Result<()> {
/// let loss = ContrastiveLoss::new(1.0); // margin 1
/// // Two pairs: a similar one 0.6 apart, a dissimilar one 0.5 apart.
/// let pairs = Array::from_shape_vec((2, 2, 2), vec![
///     0.0, 0.0,   0.6, 0.0, // pair 0: x₁, x₂
///     1.0, 1.0,   1.0, 1.5, // pair 1: x₁, x₂
/// ])?.into_dyn();
/// let labels = Array::from_vec(vec![1.0, 0.0]).into_dyn();
/// let (value, grad): (f64, _) = loss.value_and_grad(&pairs, &labels)?;
/// // (0.6² + (1 − 0.5)²) / 2
/// assert!((value - (0.36 + 0.25) / 2.0).abs() < 1e-12);
/// // Pair 0 is pulled together: ∂ℓ/∂x₁ = ½·2·(x₁ − x₂) = (−0.6, 0).
/// assert!((grad[[0, 0, 0]] + 0.6).abs() < 1e-12);
/// // Pair 1 is pushed apart: ∂ℓ/∂x₂ = −½·2·(1 − 0.5)·(x₂ − x₁)/0.5 = (0, −0.5),
/// // so a descent step moves x₂ away from x₁.
/// assert!((grad[[1, 1, 1]] + 0.5).abs() < 1e-12);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContrastiveLoss {
    margin: f64,
    reduction: Reduction,
}

reduction_builders!(ContrastiveLoss);

impl ContrastiveLoss {
    const NAME: &'static str = "ContrastiveLoss";

    /// Contrastive loss with margin `margin ≥ 0` and [`Reduction::Mean`]. An
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

    /// Everything that must hold before computing; returns `(N, D)`.
    fn check<F: Float>(&self, shape: &[usize], targets: &ArrayD<F>) -> Result<(usize, usize)> {
        check_margin(self.margin)?;
        let (n, d) = layout(
            Self::NAME,
            shape,
            2,
            false,
            "[N, 2, D] (N pairs x₁ = [:, 0, :], x₂ = [:, 1, :])",
        )?;
        if !matches!(targets.shape(), [count] | [count, 1] if *count == n) {
            return Err(Error::shape_mismatch_because(
                Self::NAME,
                shape,
                targets.shape(),
                format!("targets must hold one label per pair, as [{n}] or [{n}, 1]"),
            ));
        }
        if let Some((index, y)) = validate::first_where(targets, |y| !(y >= F::zero() && y <= F::one())) {
            if y.is_nan() {
                return Err(Error::NonFinite {
                    op: Self::NAME,
                    arg: "targets",
                    index,
                    value: y.as_f64(),
                });
            }
            return Err(Error::InvalidTarget {
                index,
                value: y.as_f64(),
                reason: "a contrastive label must lie in [0, 1] (1 = similar, 0 = dissimilar)".into(),
            });
        }
        Ok((n, d))
    }

    /// Σᵢ termᵢ over the pairs in f64, writing `scale · ∂termᵢ/∂x` into `grad`
    /// when given; also whether every squared distance was finite, and
    /// whether every gradient factor was (a huge margin over a tiny distance
    /// overflows `h/d` while the loss stays finite; given finite distances, a
    /// finite factor `c` makes every `c·(x₁ − x₂)` finite). Row terms are
    /// summed in f64: one conversion per D-element row costs nothing and keeps
    /// the f32 mean of thousands of rows accurate. Blocks of rows run on both
    /// cores for large batches, summed along a fixed tree so the bits do not
    /// depend on the thread count.
    fn sweep<F: Float>(&self, x: &[F], y: &[F], d: usize, scale: F, grad: Option<&mut [F]>) -> (f64, bool, bool) {
        let m = F::from_f64(self.margin);
        let width = 2 * d;
        let rows = (Rows { data: x, width }, y, grad.map(|g| Rows { data: g, width }));
        parallel::reduce(
            rows,
            STREAMING.rows(width),
            #[inline(always)]
            |(x, y, g): (Rows<&[F]>, &[F], GradRows<'_, F>)| match g {
                Some(g) => sweep_rows(x.data, y, d, m, scale, Some(&mut { g.data })),
                None => sweep_rows::<F, &mut [F]>(x.data, y, d, m, scale, None),
            },
            #[inline(always)]
            |a: (f64, bool, bool), b: (f64, bool, bool)| (a.0 + b.0, a.1 && b.1, a.2 && b.2),
        )
    }

    /// [`ContrastiveLoss::sweep`] with a new gradient, which it returns with
    /// the same bits, built in order on the calling thread: the rows extend
    /// it, so it needs no zeroing first. Zeroing a whole gradient for two
    /// cores gained little on a Zen 5 (4096 pairs of 128, medians of three
    /// runs: 0.10–0.12 ms against 0.12–0.13), and lost for triplet
    /// (`slices::on_both_cores`), so both build in order.
    fn sweep_new_grad<F: Float>(&self, x: &[F], y: &[F], d: usize, scale: F) -> ((f64, bool, bool), Vec<F>) {
        let m = F::from_f64(self.margin);
        let width = 2 * d;
        let mut grad = Vec::with_capacity(x.len());
        let result = parallel::reduce_in_order_with(
            (Rows { data: x, width }, y),
            STREAMING.rows(width),
            #[inline(always)]
            |_, (x, y): (Rows<&[F]>, &[F])| sweep_rows(x.data, y, d, m, scale, Some(&mut &mut grad)),
            #[inline(always)]
            |a: (f64, bool, bool), b: (f64, bool, bool)| (a.0 + b.0, a.1 && b.1, a.2 && b.2),
        );
        (result, grad)
    }

    /// The value from a sweep's results, or the error for a non-finite
    /// distance, value or gradient factor.
    fn finish<F: Float>(
        &self,
        n: usize,
        (total, finite, factors_finite): (f64, bool, bool),
        predictions: &ArrayD<F>,
        targets: &ArrayD<F>,
        grad: &ArrayD<F>,
    ) -> Result<F> {
        let value = F::from_f64(total * self.reduction.scale::<f64>(n));
        let value = finite_result(Self::NAME, value, finite, predictions, Some(targets))?;
        if factors_finite {
            Ok(value)
        } else {
            Err(validate::non_finite(
                Self::NAME,
                value,
                predictions,
                targets,
                Some(grad),
            ))
        }
    }
}

/// [`ContrastiveLoss::sweep`] over a run of whole pairs, on one thread,
/// writing the gradient rows into `grad` when given.
#[inline(always)]
fn sweep_rows<F: Float, S: RowSink<F>>(
    x: &[F],
    y: &[F],
    d: usize,
    m: F,
    scale: F,
    mut grad: Option<&mut S>,
) -> (f64, bool, bool) {
    let (mut total, mut finite, mut factors_finite) = (0.0, true, true);
    for (pair, &y) in x.chunks_exact(2 * d).zip(y) {
        let (x1, x2) = pair.split_at(d);
        let s = squared_distance(x1, x2);
        finite &= s.is_finite();
        let (term, factor) = term_and_factor(y, s, m);
        total += term.as_f64();
        if let Some(g) = grad.as_deref_mut() {
            let c = scale * factor;
            factors_finite &= c.is_finite();
            write_difference(x1, x2, c, g);
        }
    }
    (total, finite, factors_finite)
}

/// One pair's term `y·d² + (1 − y)·h²`, `h = max(0, m − d)`, from `s = d²`,
/// and the factor `c` of `∂term/∂x₁ = c·(x₁ − x₂) = −∂term/∂x₂`:
/// `c = 2y − 2(1 − y)·h/d`, whose hinge part is 0 at `d = 0`.
#[inline(always)]
fn term_and_factor<F: Float>(y: F, s: F, m: F) -> (F, F) {
    let d = s.sqrt();
    let h = (m - d).max(F::zero());
    let dissimilar = F::one() - y;
    let push = if d > F::zero() { h / d } else { F::zero() };
    let two = F::from_f64(2.0);
    (y * s + dissimilar * h * h, two * (y - dissimilar * push))
}

impl<F: Float> Loss<F> for ContrastiveLoss {
    /// `y·d² + (1 − y)·relu(m − d)²` on the tape, with `x₁` and `x₂` taken
    /// along axis 1 and `d` as `norm_axis` (gradient 0 at 0).
    fn record<'t>(&self, tape: &'t Tape<F>, predictions: Var<'t, F>, targets: &ArrayD<F>) -> Result<Var<'t, F>> {
        let (n, _) = self.check(&predictions.shape(), targets)?;
        let (x1, x2) = (predictions.index_axis(1, 0)?, predictions.index_axis(1, 1)?);
        let distance = x1.sub(x2)?.norm_axis(1, false)?;
        let y = targets.to_shape(n)?.into_owned().into_dyn();
        let dissimilar = y.mapv(|y| F::one() - y);
        let hinge = distance.neg()?.add_scalar(F::from_f64(self.margin))?.relu()?;
        let terms = tape
            .constant(y)
            .mul(distance.square()?)?
            .add(tape.constant(dissimilar).mul(hinge.square()?)?)?;
        let out = self.reduction.record(terms)?;
        finite_record(Self::NAME, out, &[distance], predictions, Some(targets))
    }

    fn forward(&self, predictions: &ArrayD<F>, targets: &ArrayD<F>) -> Result<F> {
        let (n, d) = self.check(predictions.shape(), targets)?;
        let (total, finite, _) = self.sweep(&elements(predictions), &elements(targets), d, F::one(), None);
        let value = F::from_f64(total * self.reduction.scale::<f64>(n));
        finite_result(Self::NAME, value, finite, predictions, Some(targets))
    }

    fn value_and_grad(&self, predictions: &ArrayD<F>, targets: &ArrayD<F>) -> Result<(F, ArrayD<F>)> {
        let (n, d) = self.check(predictions.shape(), targets)?;
        let scale = self.reduction.scale::<F>(n);
        let (x, y) = (elements(predictions), elements(targets));
        let (result, grad) = self.sweep_new_grad(&x, &y, d, scale);
        let grad = ArrayD::from_shape_vec(predictions.raw_dim(), grad)?;
        Ok((self.finish(n, result, predictions, targets, &grad)?, grad))
    }

    fn value_and_grad_into(&self, predictions: &ArrayD<F>, targets: &ArrayD<F>, grad: &mut ArrayD<F>) -> Result<F> {
        let (n, d) = self.check(predictions.shape(), targets)?;
        validate::grad_buffer(predictions, grad)?;
        let scale = self.reduction.scale::<F>(n);
        let (x, y) = (elements(predictions), elements(targets));
        let result = write_elements(grad, |g| self.sweep(&x, &y, d, scale, Some(g)));
        self.finish(n, result, predictions, targets, grad)
    }
}
