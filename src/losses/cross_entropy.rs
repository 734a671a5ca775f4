//! Softmax cross-entropy on logits, with PyTorch's options.

use ndarray::{ArrayD, IxDyn};

use super::class_index::{ClassTargets, without_axis};
use super::slices::{elements, write_elements};
use super::validate::{self, Domain};
use super::{Loss, Reduction};
use crate::error::{Error, Result};
use crate::float::Float;
use crate::kernels::softmax::{self, ClassLayout, Labels};
use crate::tape::{Tape, Var};

const NAME: &str = "CrossEntropyLoss";

/// Softmax cross-entropy on logits, for classification.
///
/// **Formula.** With `log p = log_softmax(x)` along the class axis, each sample
/// has a loss `ℓ = −Σ_c a_c·log p_c`, where the coefficients `a_c` come from
/// the targets and the options (class weights `w`, default all 1; label
/// smoothing `ε`, default 0; `C` classes):
/// - **class probabilities** `t` (one-hot or soft): `a_c = w_c·(t_c(1−ε) + ε/C)`.
///   [`Reduction::Mean`] divides the sum by the number of samples `N·d1·…`
///   (not by the weights). `ignore_index` is an error in this mode.
/// - **class indices** `y`: `ℓ = (1−ε)·w_y·(−log p_y) + (ε/C)·Σ_c w_c·(−log p_c)`,
///   that is `a_c = (1−ε)·w_y·[c = y] + (ε/C)·w_c`. Samples whose target equals
///   `ignore_index` add nothing. [`Reduction::Mean`] divides the sum by `Σ w_y`
///   over the samples not ignored (their count without weights), the smoothing
///   term included, exactly as PyTorch does.
///
/// [`Reduction::Sum`] is the plain sum of the sample losses `ℓ` above (which
/// carry the weights), so shards of a batch add up; an all-ignored batch sums
/// to 0 with a zero gradient, as in PyTorch, so a shard of padding adds nothing.
///
/// **Inputs.** Logits with the class axis at 1 when they have two or more
/// dimensions: `[N, C]` or `[N, C, d1, d2, …]` (one sample per `(n, d…)`, as
/// for segmentation); a 1-D input `[C]` is one sample. The targets' shape
/// decides the mode:
/// - the logits' shape: class probabilities;
/// - the logits' shape without the class axis (`[N]`, `[N, d1, …]`, or `[]`
///   for one sample): class indices, stored as whole numbers of type `F`.
///
/// Softmax is applied inside, stably: logits of ±1e4 give finite values and
/// gradients in `f32` and `f64`. A logit of `−∞` masks its class: it is
/// allowed wherever that class's coefficient `a_c` is 0 (not the target, no
/// probability, no smoothing), gives a finite loss and a zero gradient there.
/// A sample whose coefficients are all 0 (an ignored target, a class of
/// weight 0, soft targets of 0) adds nothing, but its logits are checked like
/// any other's: a NaN or `+∞` among them, or a row of `−∞`, is an error.
///
/// **Gradient.** `∂ℓ/∂x_c = A·softmax_c − a_c` with `A = Σ_c a_c` (for a
/// one-hot or index target without options, `softmax − one-hot`), times `1/D`
/// for [`Reduction::Mean`] with the denominator `D` above. Ignored samples get
/// a zero gradient.
///
/// **PyTorch.** `torch.nn.functional.cross_entropy(x, t, weight=w,
/// ignore_index=i, reduction='mean'|'sum', label_smoothing=ε)`, with two
/// deliberate differences: where every target is ignored under
/// [`Reduction::Mean`] PyTorch returns NaN and this loss returns
/// [`Error::AllTargetsIgnored`]; and a masked class (`−∞` logit with zero
/// probability) gives a finite loss where PyTorch computes `0·(−∞) = NaN`.
/// (PyTorch also takes a target of shape `[1]` for a 1-D input; here it is
/// `[]`, since nothing is broadcast.)
///
/// # Errors
/// Every method that computes returns:
/// - [`Error::InvalidParameter`] for `label_smoothing` outside `[0, 1]`, a
///   class weight that is negative or not finite (`class_weights[i]`), a
///   weight vector whose length is not `C` (`class_weights.len()`),
///   `ignore_index` with probability targets, or weights whose sum over the
///   kept targets is 0 under [`Reduction::Mean`];
/// - [`Error::ShapeMismatch`] when the targets have neither layout;
/// - [`Error::InvalidShape`] for 0-dimensional logits;
/// - [`Error::Empty`] for an empty batch or no classes;
/// - [`Error::InvalidTarget`] for a class index that is negative, fractional
///   or `≥ C` (and not `ignore_index`), with its index in the targets;
/// - [`Error::AllTargetsIgnored`] as above;
/// - [`Error::NonFinite`] when the loss is not finite, naming the first NaN or
///   infinity in the inputs (an unmasked `−∞`, a `−∞` under label smoothing,
///   NaN targets), and likewise for a NaN or `+∞` logit or a row of `−∞` in a
///   sample that adds nothing (ignored, or of weight 0) and a NaN or infinite
///   target in a class of weight 0, though the loss does not see them.
///
/// # Examples
/// The seed's classification example, with one-hot targets:
/// ```
/// use tapeloss::losses::{Loss, CrossEntropyLoss};
/// use tapeloss::ndarray::Array;
/// # fn main() -> tapeloss::Result<()> {
/// let ce_loss = CrossEntropyLoss::default();
/// // Logits (raw predictions) for 3-class classification
/// let logits = Array::from_shape_vec((2, 3), vec![
///     1.0, 2.0, 0.5, // Sample 1
///     0.8, 0.2, 1.5, // Sample 2
/// ])?.into_dyn();
/// // One-hot encoded targets
/// let targets = Array::from_shape_vec((2, 3), vec![
///     0.0, 1.0, 0.0, // Sample 1: class 1
///     0.0, 0.0, 1.0, // Sample 2: class 2
/// ])?.into_dyn();
/// // Calculate cross-entropy loss
/// let loss_value = ce_loss.forward(&logits, &targets)?;
/// println!("Cross-Entropy Loss: {:.4}", loss_value);
/// // Get gradients for backpropagation
/// let gradients = ce_loss.backward(&logits, &targets)?;
/// # let lse = |r: [f64; 3]| r.iter().map(|v| v.exp()).sum::<f64>().ln();
/// # let expected = ((lse([1.0, 2.0, 0.5]) - 2.0) + (lse([0.8, 0.2, 1.5]) - 1.5)) / 2.0;
/// # assert!((loss_value - expected).abs() < 1e-12);
/// # assert!((gradients[[0, 1]] - ((2.0 - lse([1.0, 2.0, 0.5])).exp() - 1.0) / 2.0).abs() < 1e-12);
/// # Ok(()) }
/// ```
/// Class indices with options, and the same loss on the tape:
/// ```
/// use tapeloss::{CrossEntropyLoss, Loss, Reduction, Tape, ndarray::array};
/// # fn main() -> tapeloss::Result<()> {
/// let logits = array![[2.0, 0.0, 0.0], [0.0, 1.0, f64::NEG_INFINITY], [5.0, 1.0, 1.0]].into_dyn();
/// let classes = array![0.0, 1.0, 2.0].into_dyn(); // the third sample is ignored
/// let loss = CrossEntropyLoss::new()
///     .with_class_weights(vec![1.0, 2.0, 1.0])
///     .with_ignore_index(2);
/// let (value, grad) = loss.value_and_grad(&logits, &classes)?;
/// // (1·(ln(e² + 2) − 2) + 2·ln(1 + e⁻¹)) / (1 + 2); the −∞ logit masks class 2.
/// let expected = ((2f64.exp() + 2.0).ln() - 2.0 + 2.0 * (1.0 + (-1f64).exp()).ln()) / 3.0;
/// assert!((value - expected).abs() < 1e-12);
/// assert_eq!(grad[[1, 2]], 0.0);
/// assert_eq!([grad[[2, 0]], grad[[2, 1]], grad[[2, 2]]], [0.0; 3]);
///
/// let tape = Tape::new();
/// let x = tape.var(logits.clone());
/// let recorded = loss.record(&tape, x, &classes)?;
/// assert!((recorded.item()? - value).abs() < 1e-12);
///
/// let smoothed = CrossEntropyLoss::new().with_label_smoothing(0.1).with_reduction(Reduction::Sum);
/// assert!(smoothed.forward(&array![[0.0, 0.0]].into_dyn(), &array![1.0].into_dyn())? > 0.69);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CrossEntropyLoss {
    label_smoothing: f64,
    class_weights: Option<Vec<f64>>,
    ignore_index: Option<usize>,
    reduction: Reduction,
}

reduction_builders!(CrossEntropyLoss);
class_index_builders!(CrossEntropyLoss, ignore #[doc = "Only for class-index targets."]);

impl CrossEntropyLoss {
    /// Cross-entropy without weights, smoothing or ignored index, with
    /// [`Reduction::Mean`]; the same as [`CrossEntropyLoss::default`].
    pub fn new() -> Self {
        Self::default()
    }

    /// The same loss with label smoothing `ε ∈ [0, 1]`: targets become
    /// `t(1−ε) + ε/C` (for class indices, with PyTorch's weighting as in the
    /// type's documentation). A value outside `[0, 1]` is reported by every
    /// method that computes.
    pub fn with_label_smoothing(self, epsilon: f64) -> Self {
        Self {
            label_smoothing: epsilon,
            ..self
        }
    }

    /// The label smoothing ε.
    pub fn label_smoothing(&self) -> f64 {
        self.label_smoothing
    }
}

/// How the targets are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Indices,
    Probabilities,
}

/// The validated shape of a call.
#[derive(Debug, Clone, Copy)]
struct Plan {
    layout: ClassLayout,
    axis: usize,
    mode: Mode,
}

impl CrossEntropyLoss {
    /// The class weights and ignored index, with the checks they share with
    /// the other losses on class indices.
    fn classes(&self) -> ClassTargets<'_> {
        ClassTargets {
            op: NAME,
            noun: "logits",
            weights: self.class_weights.as_deref(),
            ignore_index: self.ignore_index,
        }
    }

    fn check_parameters(&self) -> Result<()> {
        validate::parameter("label_smoothing", self.label_smoothing, Domain::UnitInterval)?;
        self.classes().check_weights()
    }

    /// Checks the options and the two shapes, and picks the mode.
    fn plan(&self, logits: &[usize], targets: &[usize]) -> Result<Plan> {
        self.check_parameters()?;
        let classes = self.classes();
        let axis = classes.class_axis(logits)?;
        let without_classes = without_axis(logits, axis);
        let mode = if targets == logits {
            Mode::Probabilities
        } else if targets == without_classes.as_slice() {
            Mode::Indices
        } else {
            return Err(Error::shape_mismatch_because(
                NAME,
                logits,
                targets,
                format!(
                    "targets must be class probabilities of the logits' shape {logits:?}, or class indices of \
                     shape {without_classes:?} (the logits' shape without the class axis {axis})"
                ),
            ));
        };
        let layout = classes.layout(logits, axis)?;
        if let (Mode::Probabilities, Some(i)) = (mode, self.ignore_index) {
            return Err(Error::InvalidParameter {
                name: "ignore_index".into(),
                value: i as f64,
                expected: "no ignore_index with probability targets (targets of the logits' shape)",
            });
        }
        Ok(Plan { layout, axis, mode })
    }

    /// The mean's denominator (1 for a sum).
    fn denominator<F: Float>(&self, plan: &Plan, targets: &[F], shape: &[usize]) -> Result<f64> {
        match (plan.mode, self.reduction) {
            (Mode::Indices, _) => {
                let classes = self.classes();
                let kept = classes.check_indices(targets, shape, plan.layout.classes)?;
                classes.weighted_mean(kept, self.reduction)
            }
            (Mode::Probabilities, Reduction::Mean) => Ok(plan.layout.samples() as f64),
            (Mode::Probabilities, Reduction::Sum) => Ok(1.0),
        }
    }

    /// The closed form: the value, and the gradient into `grad` if given.
    fn compute<F: Float>(&self, logits: &ArrayD<F>, targets: &ArrayD<F>, grad: Option<&mut ArrayD<F>>) -> Result<F> {
        let plan = self.plan(logits.shape(), targets.shape())?;
        if let Some(g) = &grad {
            validate::grad_buffer(logits, g)?;
        }
        let (x, t) = (elements(logits), elements(targets));
        let scale = F::from_f64(1.0 / self.denominator(&plan, &t, targets.shape())?);
        let labels = match plan.mode {
            Mode::Indices => Labels::Indices {
                targets: &t,
                ignore_index: self.ignore_index,
            },
            Mode::Probabilities => Labels::Probabilities { targets: &t },
        };
        let options = softmax::Options {
            weights: self.class_weights.as_deref(),
            smoothing: self.label_smoothing,
        };
        match grad {
            Some(g) => {
                let (value, grad_finite) = write_elements(g, |g| {
                    softmax::cross_entropy(&x, plan.layout, labels, options, scale, Some(g))
                });
                let value = validate::finite_value(NAME, value, logits, targets)?;
                if grad_finite {
                    Ok(value)
                } else {
                    Err(validate::non_finite(NAME, value, logits, targets, Some(g)))
                }
            }
            None => {
                let (value, _) = softmax::cross_entropy(&x, plan.layout, labels, options, scale, None);
                validate::finite_value(NAME, value, logits, targets)
            }
        }
    }

    /// The weights as a constant that broadcasts along the class axis.
    fn class_constant<F: Float>(&self, plan: &Plan, ndim: usize, weights: &[f64]) -> Result<ArrayD<F>> {
        let mut shape = vec![1; ndim];
        shape[plan.axis] = weights.len();
        Ok(ArrayD::from_shape_vec(
            IxDyn(&shape),
            weights.iter().map(|&w| F::from_f64(w)).collect(),
        )?)
    }
}

impl<F: Float> Loss<F> for CrossEntropyLoss {
    /// `log_softmax` along the class axis, then: for class indices, `gather`
    /// of `log p_y` (ignored samples masked out with `where_mask`), times
    /// `w_y`, plus the smoothing term `(ε/C)·Σ_c w_c·log p_c`; for
    /// probabilities, times the smoothed targets and the weights, with
    /// `where_mask` zeroing terms whose coefficient is 0 (masked `−∞` logits).
    /// Negated, summed and divided by the mean's denominator.
    fn record<'t>(&self, tape: &'t Tape<F>, predictions: Var<'t, F>, targets: &ArrayD<F>) -> Result<Var<'t, F>> {
        let shape = predictions.shape();
        // `record` fails exactly where `forward` does. The masks below
        // (`where_mask` on zero coefficients) would hide a NaN or +∞ logit, or
        // a row of −∞, in a sample whose coefficients are all 0 (ignored, of
        // weight 0 or with soft targets of 0), and the mask on zero class
        // weights a NaN or infinite target; so when any logit (or, with a
        // weight of 0, any target) is not finite the fused forward pass
        // decides (and names the culprit). With finite inputs that pass has
        // nothing to add to the checks below, and one read of the logits
        // replaces its exp per logit.
        let zero_weight = self.class_weights.as_ref().is_some_and(|w| w.contains(&0.0));
        let finite = predictions.with_value(validate::all_finite) && (!zero_weight || validate::all_finite(targets));
        if !finite {
            predictions.with_value(|x| self.compute(x, targets, None))?;
        }
        let plan = self.plan(&shape, targets.shape())?;
        let denominator = self.denominator(&plan, &elements(targets), targets.shape())?;
        let (axis, classes) = (plan.axis, plan.layout.classes);
        let (keep, spread) = (1.0 - self.label_smoothing, self.label_smoothing / classes as f64);
        // The class weights, broadcast along the class axis, and where they are not 0.
        let weights = match &self.class_weights {
            Some(w) => {
                let w = self.class_constant::<F>(&plan, shape.len(), w)?;
                Some((w.mapv(|v| v != F::zero()), w))
            }
            None => None,
        };
        let zero = tape.scalar(F::zero());
        let log_p = predictions.log_softmax(axis)?;

        let total = match plan.mode {
            Mode::Indices => {
                // −w_y·log p_y over the kept samples (and not where w_y = 0).
                let log_p_y = self.classes().record_picked(tape, log_p, axis, targets)?;
                let nll = log_p_y.sum()?.neg()?;
                if self.label_smoothing > 0.0 {
                    // −Σ_c w_c·log p_c over the kept samples.
                    let mut terms = log_p.where_mask(&self.classes().kept_mask(targets, axis), zero)?;
                    if let Some((nonzero, w)) = weights {
                        terms = terms.where_mask(&nonzero, zero)?.mul(tape.constant(w))?;
                    }
                    let smooth = terms.sum()?.neg()?;
                    nll.mul_scalar(F::from_f64(keep))?
                        .add(smooth.mul_scalar(F::from_f64(spread))?)?
                } else {
                    nll
                }
            }
            Mode::Probabilities => {
                let smoothed = targets.mapv(|t| t * F::from_f64(keep) + F::from_f64(spread));
                // Terms with a zero coefficient are dropped, so 0·(−∞) never happens.
                let mut terms = log_p
                    .where_mask(&smoothed.mapv(|t| t != F::zero()), zero)?
                    .mul(tape.constant(smoothed))?;
                if let Some((nonzero, w)) = weights {
                    terms = terms.where_mask(&nonzero, zero)?.mul(tape.constant(w))?;
                }
                terms.sum()?.neg()?
            }
        };
        let loss = match self.reduction {
            Reduction::Mean => total.div(tape.scalar(F::from_f64(denominator)))?,
            Reduction::Sum => total,
        };
        let value = loss.item()?;
        if !value.is_finite() {
            predictions.with_value(|x| validate::finite_value(NAME, value, x, targets))?;
        }
        Ok(loss)
    }

    fn forward(&self, predictions: &ArrayD<F>, targets: &ArrayD<F>) -> Result<F> {
        self.compute(predictions, targets, None)
    }

    fn value_and_grad_into(&self, predictions: &ArrayD<F>, targets: &ArrayD<F>, grad: &mut ArrayD<F>) -> Result<F> {
        self.compute(predictions, targets, Some(grad))
    }
}
