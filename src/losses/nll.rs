//! Negative log-likelihood on log-probabilities and class indices, with
//! PyTorch's options.

use ndarray::ArrayD;

use super::class_index::{ClassTargets, Kept};
use super::slices::{elements, new_grad, unravel, write_elements};
use super::validate;
use super::{Loss, Reduction};
use crate::error::{Error, Result};
use crate::float::Float;
use crate::kernels::parallel::{self, STREAMING};
use crate::kernels::pointwise::{self, holds_for_all};
use crate::kernels::softmax::ClassLayout;
use crate::tape::{Tape, Var};

const NAME: &str = "NllLoss";

/// Negative log-likelihood: the loss of log-probabilities (a `log_softmax`
/// output) against class indices.
///
/// **Formula.** Each sample with class index `y` has the loss
/// `ℓ = −w_y·x_y`, where `x_y` is its log-probability of class `y` and `w`
/// the class weights (default all 1). Samples whose target equals
/// `ignore_index` add nothing. [`Reduction::Mean`] is the weighted mean
/// `Σ ℓ / Σ w_y` over the samples not ignored (their count without weights);
/// [`Reduction::Sum`] is `Σ ℓ`, so shards of a batch add up, and an
/// all-ignored batch sums to 0 with a zero gradient. It is
/// [`CrossEntropyLoss`](crate::CrossEntropyLoss) without its `log_softmax`.
///
/// **Inputs.** Log-probabilities with the class axis at 1 when they have two
/// or more dimensions: `[N, C]` or `[N, C, d1, d2, …]` (one sample per
/// `(n, d…)`); a 1-D input `[C]` is one sample. Targets are class indices
/// stored as whole numbers of type `F`, of the predictions' shape without the
/// class axis: `[N]`, `[N, d1, …]`, or `[]` for one sample. Nothing is
/// broadcast. Only each sample's target class is read, but every prediction
/// is checked: a NaN or `+∞` anywhere is an error. A `−∞` (the log of a
/// probability 0) is allowed wherever it adds nothing: on a class that is not
/// the target, in an ignored sample, or at a target of weight 0.
///
/// **Gradient.** `∂ℓ/∂x_c = −w_y/D` at each sample's target class `c = y`
/// and 0 elsewhere (and on ignored samples), with `D = Σ w_y` for
/// [`Reduction::Mean`] and `D = 1` for [`Reduction::Sum`]. On the tape: a
/// `gather` of `x_y`, masked by `where_mask`, times `w_y`, summed, negated
/// and divided by `D`.
///
/// **PyTorch.** `torch.nn.functional.nll_loss(x, y, weight=w,
/// ignore_index=i, reduction='mean'|'sum')` (`nn.NLLLoss`), with these
/// deliberate differences: where every target is ignored (or the weights of
/// the targets kept sum to 0) under [`Reduction::Mean`] PyTorch returns NaN
/// and this loss an error; a NaN or `+∞` prediction off the targets, which
/// PyTorch does not read, is an error here; and a `−∞` at a target of weight
/// 0 gives 0 here, where PyTorch computes `0·(−∞) = NaN`.
///
/// # Errors
/// Every method that computes returns:
/// - [`Error::InvalidParameter`] for a class weight that is negative or not
///   finite (`class_weights[i]`), a weight vector whose length is not `C`
///   (`class_weights.len()`), or weights whose sum over the kept targets is 0
///   under [`Reduction::Mean`];
/// - [`Error::InvalidShape`] for 0-dimensional predictions;
/// - [`Error::ShapeMismatch`] when the targets' shape is not the predictions'
///   without the class axis;
/// - [`Error::Empty`] for an empty batch or no classes;
/// - [`Error::InvalidTarget`] for a class index that is negative, fractional
///   or `≥ C` (and not `ignore_index`), with its index in the targets;
/// - [`Error::AllTargetsIgnored`] as above;
/// - [`Error::NonFinite`] naming the first NaN or infinite target, the first
///   NaN or `+∞` prediction, a `−∞` at a target that counts, or the loss
///   value where it overflows.
///
/// # Examples
/// ```
/// use tapeloss::{Loss, NllLoss, Reduction, Tape, ndarray::array};
/// # fn main() -> tapeloss::Result<()> {
/// let log_p = array![[-0.5_f64, -1.5, -2.0], [-3.0, -0.25, -1.0], [-1.0, -1.0, -1.0]].into_dyn();
/// let classes = array![0.0, 2.0, 1.0].into_dyn(); // the third sample is ignored
/// let loss = NllLoss::new()
///     .with_class_weights(vec![2.0, 1.0, 4.0])
///     .with_ignore_index(1);
/// let (value, grad) = loss.value_and_grad(&log_p, &classes)?;
/// // (2·0.5 + 4·1.0) / (2 + 4)
/// assert!((value - 5.0 / 6.0).abs() < 1e-15);
/// assert_eq!(grad, array![[-2.0 / 6.0, 0.0, 0.0], [0.0, 0.0, -4.0 / 6.0], [0.0, 0.0, 0.0]].into_dyn());
///
/// let tape = Tape::new();
/// let recorded = loss.record(&tape, tape.var(log_p.clone()), &classes)?;
/// assert!((recorded.item()? - value).abs() < 1e-15);
///
/// let sum = NllLoss::new().with_reduction(Reduction::Sum);
/// assert_eq!(sum.forward(&log_p, &array![0.0, 1.0, 1.0].into_dyn())?, 0.5 + 0.25 + 1.0);
/// assert!(sum.forward(&log_p, &array![0.0, 3.0, 1.0].into_dyn()).is_err()); // class 3 of 3
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NllLoss {
    class_weights: Option<Vec<f64>>,
    ignore_index: Option<usize>,
    reduction: Reduction,
}

reduction_builders!(NllLoss);
class_index_builders!(NllLoss, ignore);

impl NllLoss {
    /// NLL without weights or ignored index, with [`Reduction::Mean`]; the
    /// same as [`NllLoss::default`].
    pub fn new() -> Self {
        Self::default()
    }

    fn classes(&self) -> ClassTargets<'_> {
        ClassTargets {
            op: NAME,
            noun: "log-probabilities",
            weights: self.class_weights.as_deref(),
            ignore_index: self.ignore_index,
        }
    }

    /// Checks the options, the shapes and every target; returns the layout,
    /// the class axis and the mean's denominator.
    fn plan<F: Float>(&self, shape: &[usize], targets: &ArrayD<F>) -> Result<(ClassLayout, usize, f64)> {
        let classes = self.classes();
        classes.check_weights()?;
        let axis = classes.class_axis(shape)?;
        classes.index_shape(shape, targets.shape(), axis)?;
        let layout = classes.layout(shape, axis)?;
        let kept: Kept = classes.check_indices(&elements(targets), targets.shape(), layout.classes)?;
        Ok((layout, axis, classes.weighted_mean(kept, self.reduction)?))
    }

    /// The closed form: the value, and the gradient into `grad` if given
    /// (which is zeroed first unless `zeroed` says it already is).
    fn compute<F: Float>(
        &self,
        x: &ArrayD<F>,
        targets: &ArrayD<F>,
        grad: Option<&mut ArrayD<F>>,
        zeroed: bool,
    ) -> Result<F> {
        let (layout, _, denominator) = self.plan(x.shape(), targets)?;
        if let Some(g) = &grad {
            validate::grad_buffer(x, g)?;
        }
        let (xs, t) = (elements(x), elements(targets));
        // A NaN or +∞ anywhere is an error, though only the targets' classes
        // are read; the scan shares its pass with the gradient's zeroing.
        let outcome = match grad {
            Some(g) => write_elements(g, |g| {
                let clean = if zeroed {
                    pointwise::all(&xs, allowed)
                } else {
                    zero_and_scan(g, &xs)
                };
                clean.then(|| self.terms(&xs, &t, layout, denominator, Some(g)))
            }),
            None => pointwise::all(&xs, allowed).then(|| self.terms(&xs, &t, layout, denominator, None)),
        };
        let Some((total, bad)) = outcome else {
            let (index, value) = validate::first_where(x, |v| !allowed(v))
                .map_or((Vec::new(), f64::NAN), |(index, v)| (index, v.as_f64()));
            return Err(Error::NonFinite {
                op: NAME,
                arg: "predictions",
                index,
                value,
            });
        };
        match bad {
            Some(Bad::Prediction(at)) => Err(Error::NonFinite {
                op: NAME,
                arg: "predictions",
                index: unravel(at, x.shape()),
                value: xs[at].as_f64(),
            }),
            Some(Bad::Gradient(at)) => Err(Error::NonFinite {
                op: NAME,
                arg: "gradient",
                index: unravel(at, x.shape()),
                value: f64::NEG_INFINITY,
            }),
            None => {
                let value = F::from_f64(total / denominator);
                if value.is_finite() {
                    Ok(value)
                } else {
                    Err(Error::NonFinite {
                        op: NAME,
                        arg: "loss value",
                        index: Vec::new(),
                        value: value.as_f64(),
                    })
                }
            }
        }
    }

    /// `Σ w_y·(−x_y)` over the samples kept, in `f64` in a fixed order, with
    /// `−w_y/D` written at each target into `grad` (zeroed) if given; and the
    /// first term or gradient element that is not finite.
    fn terms<F: Float>(
        &self,
        x: &[F],
        targets: &[F],
        layout: ClassLayout,
        denominator: f64,
        mut grad: Option<&mut [F]>,
    ) -> (f64, Option<Bad>) {
        let classes = self.classes();
        let (mut total, mut bad) = (0.0, None);
        for (s, &y) in targets.iter().enumerate() {
            if classes.ignored(y) {
                continue;
            }
            let c = y.as_f64() as usize;
            let w = classes.weight(c);
            if w == 0.0 {
                continue;
            }
            let at = ((s / layout.inner) * layout.classes + c) * layout.inner + s % layout.inner;
            let v = x[at].as_f64();
            if !v.is_finite() {
                bad.get_or_insert(Bad::Prediction(at));
            }
            total -= w * v;
            if let Some(g) = grad.as_deref_mut() {
                let slope = F::from_f64(-w / denominator);
                if !slope.is_finite() {
                    bad.get_or_insert(Bad::Gradient(at));
                }
                g[at] = slope;
            }
        }
        (total, bad)
    }
}

/// Where a non-finite number showed up: a log-probability that counts, or a
/// gradient element (a weight beyond `f32`).
#[derive(Debug, Clone, Copy)]
enum Bad {
    Prediction(usize),
    Gradient(usize),
}

/// A log-probability NLL accepts: anything but NaN and +∞ (−∞, the log of
/// a probability 0, is allowed).
#[inline(always)]
fn allowed<F: Float>(v: F) -> bool {
    v < F::infinity()
}

/// Zeroes `grad` and checks that every prediction is [`allowed`], in one
/// pass on both cores (the gradient is zero but at the targets).
fn zero_and_scan<F: Float>(grad: &mut [F], x: &[F]) -> bool {
    parallel::reduce(
        (grad, x),
        STREAMING,
        #[inline(always)]
        |(grad, x): (&mut [F], &[F])| {
            grad.fill(F::zero());
            holds_for_all(x, allowed)
        },
        #[inline(always)]
        |a, b| a && b,
    )
}

impl<F: Float> Loss<F> for NllLoss {
    /// `gather` of each sample's `x_y` along the class axis, ignored samples
    /// and zero weights masked out with `where_mask`, times `w_y`; summed,
    /// negated and divided by the mean's denominator.
    fn record<'t>(&self, tape: &'t Tape<F>, predictions: Var<'t, F>, targets: &ArrayD<F>) -> Result<Var<'t, F>> {
        // `record` fails exactly where `forward` does: the masks below would
        // hide a NaN or +∞ off the targets, so with any prediction not finite
        // the closed form decides (and names the culprit).
        if !predictions.with_value(validate::all_finite) {
            predictions.with_value(|x| self.compute(x, targets, None, false))?;
        }
        let (_, axis, denominator) = self.plan(&predictions.shape(), targets)?;
        let total = self
            .classes()
            .record_picked(tape, predictions, axis, targets)?
            .sum()?
            .neg()?;
        let loss = match self.reduction {
            Reduction::Mean => total.div(tape.scalar(F::from_f64(denominator)))?,
            Reduction::Sum => total,
        };
        if !loss.item()?.is_finite() {
            predictions.with_value(|x| self.compute(x, targets, None, false))?;
            return predictions.with_value(|x| validate::finite_record(NAME, loss, x, targets));
        }
        Ok(loss)
    }

    fn forward(&self, predictions: &ArrayD<F>, targets: &ArrayD<F>) -> Result<F> {
        self.compute(predictions, targets, None, false)
    }

    fn value_and_grad(&self, predictions: &ArrayD<F>, targets: &ArrayD<F>) -> Result<(F, ArrayD<F>)> {
        let mut grad = new_grad(predictions);
        let value = self.compute(predictions, targets, Some(&mut grad), true)?;
        Ok((value, grad))
    }

    fn value_and_grad_into(&self, predictions: &ArrayD<F>, targets: &ArrayD<F>, grad: &mut ArrayD<F>) -> Result<F> {
        self.compute(predictions, targets, Some(grad), false)
    }
}
