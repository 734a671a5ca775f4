//! The multi-class hinge loss on scores and class indices, PyTorch's
//! `multi_margin_loss`.

use ndarray::{ArrayD, IxDyn};

use super::class_index::ClassTargets;
use super::slices::{elements, write_elements};
use super::validate::{self, Domain};
use super::{Loss, Reduction};
use crate::error::{Error, Result};
use crate::float::Float;
use crate::kernels::parallel::{self, GradRows, Rows};
use crate::kernels::pointwise::{STREAMING, holds_for_all};
use crate::kernels::softmax::ClassLayout;
use crate::tape::layout::{sum, sum_of};
use crate::tape::{Tape, Var, pool};

const NAME: &str = "MultiMarginLoss";

/// The multi-class hinge loss (Weston–Watkins / Crammer–Singer style) on
/// class scores and class indices.
///
/// **Formula.** Each sample with scores `x` over `C` classes and class index
/// `y` has the loss
/// `ℓ = Σ_{j≠y} w_y·max(0, Δ − x_y + x_j)^p / C`,
/// for the margin `Δ` (default 1), the power `p ∈ {1, 2}` (default 1) and
/// the class weights `w` (default all 1; only the target's weight `w_y`
/// enters). [`Reduction::Mean`] averages over the `N` samples (not weighted
/// by `w`, unlike [`NllLoss`](crate::NllLoss)); [`Reduction::Sum`] adds them,
/// so shards of a batch add up.
///
/// **Inputs.** Scores `[N, C]`, or `[C]` for one sample; class indices `[N]`
/// (or `[]`), stored as whole numbers of type `F`. Nothing is broadcast.
/// Every score must be finite (an infinite score is an error even where its
/// hinge is 0).
///
/// **Gradient.** With `z_j = Δ − x_y + x_j` and `s = 1/N` for
/// [`Reduction::Mean`] (`1` for [`Reduction::Sum`]):
/// `∂ℓ/∂x_j = s·w_y·h_j/C` for `j ≠ y` and `∂ℓ/∂x_y = −Σ_{j≠y} s·w_y·h_j/C`,
/// where `h_j = 1` (`p = 1`) or `2z_j` (`p = 2`) where `z_j > 0`, and 0 where
/// `z_j ≤ 0`: at the kink `z_j = 0` the slope is 0, as in PyTorch. On the
/// tape: `relu` (whose slope at 0 is 0) of the scores minus the `gather`ed
/// `x_y` plus `Δ`, squared for `p = 2`, times a constant that is `w_y/C`
/// off the target class and 0 on it, summed.
///
/// **PyTorch.** `torch.nn.functional.multi_margin_loss(x, y, p=p,
/// margin=Δ, weight=w, reduction='mean'|'sum')` (`nn.MultiMarginLoss`).
/// PyTorch takes negative weights; here they are an error, as for the other
/// losses with class weights.
///
/// # Errors
/// Every method that computes returns:
/// - [`Error::InvalidParameter`] for `p` other than 1 or 2, a `margin` that
///   is NaN or infinite, a class weight that is negative or not finite
///   (`class_weights[i]`), or a weight vector whose length is not `C`
///   (`class_weights.len()`);
/// - [`Error::InvalidShape`] for scores that are neither `[C]` nor `[N, C]`;
/// - [`Error::ShapeMismatch`] when the targets' shape is not `[N]` (`[]` for
///   `[C]`);
/// - [`Error::Empty`] for an empty batch or no classes;
/// - [`Error::InvalidTarget`] for a class index that is negative, fractional
///   or `≥ C`, with its index in the targets;
/// - [`Error::NonFinite`] naming the first NaN or infinity in the scores or
///   the targets, or the loss value or gradient where it overflows.
///
/// # Examples
/// ```
/// use tapeloss::{Loss, MultiMarginLoss, Reduction, Tape, ndarray::array};
/// # fn main() -> tapeloss::Result<()> {
/// let scores = array![[0.5_f64, 0.5, 0.0], [1.0, 0.0, 0.5]].into_dyn();
/// let classes = array![0.0, 0.0].into_dyn();
/// let loss = MultiMarginLoss::new();
/// let (value, grad) = loss.value_and_grad(&scores, &classes)?;
/// // Sample 0: (1 − 0.5 + 0.5) + (1 − 0.5 + 0) = 1.5, over C = 3;
/// // sample 1: max(0, 1 − 1 + 0) = 0 (the kink) + (1 − 1 + 0.5) = 0.5, over 3.
/// assert!((value - (1.5 / 3.0 + 0.5 / 3.0) / 2.0).abs() < 1e-15);
/// let s = 1.0 / 6.0; // 1/(C·N)
/// assert_eq!(grad, array![[-2.0 * s, s, s], [-s, 0.0, s]].into_dyn()); // slope 0 at the kink
///
/// // Squared hinges, a margin of 2 and class weights (only w_y enters), summed.
/// let squared = MultiMarginLoss::new()
///     .with_p(2)
///     .with_margin(2.0)
///     .with_class_weights(vec![3.0, 1.0, 1.0])
///     .with_reduction(Reduction::Sum);
/// let v = squared.forward(&scores, &classes)?;
/// let expected = 3.0 * ((2.0f64 * 2.0 + 1.5 * 1.5) + (1.0 + 1.5 * 1.5)) / 3.0;
/// assert!((v - expected).abs() < 1e-14);
/// let tape = Tape::new();
/// let recorded = squared.record(&tape, tape.var(scores.clone()), &classes)?;
/// assert!((recorded.item()? - v).abs() < 1e-14);
/// assert!(MultiMarginLoss::new().with_p(3).forward(&scores, &classes).is_err());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct MultiMarginLoss {
    p: u32,
    margin: f64,
    class_weights: Option<Vec<f64>>,
    reduction: Reduction,
}

reduction_builders!(MultiMarginLoss);
class_index_builders!(MultiMarginLoss);

impl Default for MultiMarginLoss {
    fn default() -> Self {
        Self {
            p: 1,
            margin: 1.0,
            class_weights: None,
            reduction: Reduction::Mean,
        }
    }
}

impl MultiMarginLoss {
    /// PyTorch's defaults: `p = 1`, `margin = 1`, no weights,
    /// [`Reduction::Mean`]; the same as [`MultiMarginLoss::default`].
    pub fn new() -> Self {
        Self::default()
    }

    /// The same loss with the power `p` of each hinge: 1 or 2 (checked by
    /// every method that computes).
    pub fn with_p(self, p: u32) -> Self {
        Self { p, ..self }
    }

    /// The same loss with the margin `Δ` (finite; checked by every method
    /// that computes).
    pub fn with_margin(self, margin: f64) -> Self {
        Self { margin, ..self }
    }

    /// The power `p` of each hinge.
    pub fn p(&self) -> u32 {
        self.p
    }

    /// The margin `Δ`.
    pub fn margin(&self) -> f64 {
        self.margin
    }

    fn classes(&self) -> ClassTargets<'_> {
        ClassTargets {
            op: NAME,
            noun: "scores",
            weights: self.class_weights.as_deref(),
            ignore_index: None,
        }
    }

    /// Checks the options, the shapes and every target; returns the layout
    /// (`inner` = 1) and the class axis.
    fn plan<F: Float>(&self, shape: &[usize], targets: &ArrayD<F>) -> Result<(ClassLayout, usize)> {
        if !matches!(self.p, 1 | 2) {
            return Err(Error::InvalidParameter {
                name: "p".into(),
                value: f64::from(self.p),
                expected: "1 or 2",
            });
        }
        validate::parameter("margin", self.margin, Domain::Finite)?;
        let classes = self.classes();
        classes.check_weights()?;
        let axis = classes.class_axis(shape)?;
        if shape.len() > 2 {
            return Err(classes.invalid_shape(shape, "[C] for one sample or [N, C]"));
        }
        classes.index_shape(shape, targets.shape(), axis)?;
        let layout = classes.layout(shape, axis)?;
        classes.check_indices(&elements(targets), targets.shape(), layout.classes)?;
        Ok((layout, axis))
    }

    /// The factor on the sum of the sample losses.
    fn scale(&self, layout: ClassLayout) -> f64 {
        match self.reduction {
            Reduction::Mean => 1.0 / layout.outer as f64,
            Reduction::Sum => 1.0,
        }
    }

    /// The closed form: the value, and the gradient into `grad` if given.
    fn compute<F: Float>(&self, x: &ArrayD<F>, targets: &ArrayD<F>, mut grad: Option<&mut ArrayD<F>>) -> Result<F> {
        let (layout, _) = self.plan(x.shape(), targets)?;
        if let Some(g) = &grad {
            validate::grad_buffer(x, g)?;
        }
        let (xs, t) = (elements(x), elements(targets));
        let scale = self.scale(layout);
        let (total, grad_finite, scores_finite) = match grad.as_deref_mut() {
            Some(g) => write_elements(g, |g| self.hinges(&xs, &t, layout, scale, Some(g))),
            None => self.hinges(&xs, &t, layout, scale, None),
        };
        if !scores_finite {
            // An infinite score past the margin would make a hinge of 0.
            validate::finite_elements(NAME, "predictions", x)?;
        }
        let value = F::from_f64(total * scale);
        if value.is_finite() && grad_finite {
            Ok(value)
        } else {
            Err(validate::non_finite(NAME, value, x, targets, grad.as_deref()))
        }
    }

    /// `Σ_n w_y·Σ_{j≠y} max(0, Δ − x_y + x_j)^p / C`, each sample's sum in
    /// `F` (as PyTorch's) and the samples' in `f64`, with its gradient times
    /// `scale` written into every element of `grad` if given; whether that
    /// gradient is finite, and whether every score is (checked row by row
    /// while it is in cache, not in a pass of its own). The samples are
    /// spread over both cores along a fixed tree, so the bits do not depend
    /// on the thread count.
    fn hinges<F: Float>(
        &self,
        x: &[F],
        targets: &[F],
        layout: ClassLayout,
        scale: f64,
        grad: Option<&mut [F]>,
    ) -> (f64, bool, bool) {
        let c = layout.classes;
        let rows = (
            Rows { data: x, width: c },
            targets,
            grad.map(|g| Rows { data: g, width: c }),
        );
        let squared = self.p == 2;
        parallel::reduce(
            rows,
            STREAMING.rows(c),
            #[inline(always)]
            |(x, t, g): (Rows<&[F]>, &[F], GradRows<'_, F>)| match (squared, g) {
                (false, g) => self.hinge_rows::<F, false>(x.data, t, c, scale, g.map(|g| g.data)),
                (true, g) => self.hinge_rows::<F, true>(x.data, t, c, scale, g.map(|g| g.data)),
            },
            #[inline(always)]
            |a: (f64, bool, bool), b: (f64, bool, bool)| (a.0 + b.0, a.1 && b.1, a.2 && b.2),
        )
    }

    /// [`MultiMarginLoss::hinges`] over a run of whole samples on one thread,
    /// `SQUARED` for `p = 2`. Branch-free within a row: the target's own
    /// class is left out by slicing around it, and its gradient is minus the
    /// sum of the others'.
    #[inline(always)]
    fn hinge_rows<F: Float, const SQUARED: bool>(
        &self,
        x: &[F],
        targets: &[F],
        c: usize,
        scale: f64,
        mut grad: Option<&mut [F]>,
    ) -> (f64, bool, bool) {
        let margin = F::from_f64(self.margin);
        let classes = self.classes();
        let (mut total, mut finite, mut scores_finite) = (0.0, true, true);
        for (n, (row, &y)) in x.chunks_exact(c).zip(targets).enumerate() {
            scores_finite &= holds_for_all(row, F::is_finite);
            let y = y.as_f64() as usize;
            let w = classes.weight(y);
            // z_j = Δ − x_y + x_j, in PyTorch's order.
            let shift = margin - row[y];
            let hinge = |x_j: F| {
                let h = (shift + x_j).max(F::zero());
                if SQUARED { h * h } else { h }
            };
            let row_sum = sum_of(&row[..y], hinge) + sum_of(&row[y + 1..], hinge);
            total += w * row_sum.as_f64() / c as f64;
            if let Some(g) = grad.as_deref_mut() {
                let g = &mut g[n * c..(n + 1) * c];
                let factor = F::from_f64(scale * w / c as f64);
                for (g, &x_j) in g.iter_mut().zip(row) {
                    let z = shift + x_j;
                    let slope = if SQUARED {
                        let h = z.max(F::zero());
                        h + h
                    } else if z > F::zero() {
                        F::one()
                    } else {
                        F::zero()
                    };
                    *g = factor * slope;
                }
                g[y] = F::zero();
                g[y] = -sum(g);
                finite &= holds_for_all(g, F::is_finite);
            }
        }
        (total, finite, scores_finite)
    }
}

impl<F: Float> Loss<F> for MultiMarginLoss {
    /// `gather` of each sample's `x_y`; `relu(x − x_y + Δ)` (slope 0 at the
    /// kink, as PyTorch), squared for `p = 2`; times `w_y/C`, or 0 at the
    /// target class, and summed; for [`Reduction::Mean`], times `w_y` and
    /// averaged over all `N·C` terms, which is the same.
    fn record<'t>(&self, tape: &'t Tape<F>, predictions: Var<'t, F>, targets: &ArrayD<F>) -> Result<Var<'t, F>> {
        let (layout, axis) = self.plan(&predictions.shape(), targets)?;
        predictions.with_value(|x| validate::finite_elements(NAME, "predictions", x))?;
        let classes = self.classes();
        let picks = classes.picks(targets, axis);
        let x_y = predictions.gather(axis, &picks)?;
        let mut hinge = predictions.sub(x_y)?.add_scalar(F::from_f64(self.margin))?.relu()?;
        if self.p == 2 {
            hinge = hinge.square()?;
        }
        // `w_y/C`, and 0 at the target's own class: rows of C, one per
        // sample. A product rather than `where_mask`, so the chain stays fused.
        // For `Mean`, `w_y` and a mean over all N·C terms: the same `1/(N·C)`,
        // given to the chain as its seed, where dividing its sum by N cost a
        // pass scaling the 16 MB gradient (4096×1000).
        // Filled a row at a time: a `flat_map` over the elements took
        // longer than the whole tape's sweep. In a pooled buffer, which the
        // tape takes back when it is dropped: a new one faulted its pages in.
        let c = layout.classes;
        let per_class = match self.reduction {
            Reduction::Mean => 1.0,
            Reduction::Sum => 1.0 / c as f64,
        };
        let mut factors = pool::take(picks.len() * c);
        for &y in &picks {
            let start = factors.len();
            factors.resize(start + c, F::from_f64(classes.weight(y) * per_class));
            factors[start + y] = F::zero();
        }
        let factors = ArrayD::from_shape_vec(IxDyn(&predictions.shape()), factors)?;
        let terms = hinge.mul(tape.constant(factors))?;
        let loss = match self.reduction {
            Reduction::Mean => terms.mean()?,
            Reduction::Sum => terms.sum()?,
        };
        predictions.with_value(|x| validate::finite_record(NAME, loss, x, targets))
    }

    fn forward(&self, predictions: &ArrayD<F>, targets: &ArrayD<F>) -> Result<F> {
        self.compute(predictions, targets, None)
    }

    fn value_and_grad_into(&self, predictions: &ArrayD<F>, targets: &ArrayD<F>, grad: &mut ArrayD<F>) -> Result<F> {
        self.compute(predictions, targets, Some(grad))
    }
}
