//! What the losses on class-index targets share (cross-entropy, NLL and
//! multi-margin): the class axis of the predictions and the targets' layout
//! without it, the check of every class index, the class weights and
//! `ignore_index`, the weighted mean's denominator, and the pick of each
//! sample's target on the tape.

use ndarray::{ArrayD, Axis};

use super::Reduction;
use super::slices::unravel;
use super::validate::{self, Domain};
use crate::error::{Error, Result};
use crate::float::Float;
use crate::kernels::softmax::ClassLayout;
use crate::tape::{Tape, Var};

/// A loss's options on class-index targets: its name, what its predictions
/// are (in messages), its class weights and its ignored index.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClassTargets<'a> {
    /// The loss, for error messages.
    pub(crate) op: &'static str,
    /// What the predictions hold, e.g. `"logits"`, for error messages.
    pub(crate) noun: &'static str,
    /// One weight per class, or `None` for all ones.
    pub(crate) weights: Option<&'a [f64]>,
    /// Targets equal to it add nothing.
    pub(crate) ignore_index: Option<usize>,
}

/// The targets not ignored: how many, and the sum of their class weights.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Kept {
    pub(crate) count: usize,
    pub(crate) weight_sum: f64,
}

impl ClassTargets<'_> {
    /// Every class weight must be finite and `≥ 0` (`class_weights[i]`).
    pub(crate) fn check_weights(&self) -> Result<()> {
        for (i, &w) in self.weights.into_iter().flatten().enumerate() {
            validate::parameter(format!("class_weights[{i}]"), w, Domain::NonNegative)?;
        }
        Ok(())
    }

    /// The class axis of predictions of shape `shape`: 1, or 0 for one sample
    /// `[C]`. 0-d predictions have none: [`Error::InvalidShape`].
    pub(crate) fn class_axis(&self, shape: &[usize]) -> Result<usize> {
        if shape.is_empty() {
            return Err(self.invalid_shape(shape, "[C] for one sample, [N, C] or [N, C, d1, …]"));
        }
        Ok(usize::from(shape.len() > 1))
    }

    /// [`Error::InvalidShape`] for predictions of `shape`, which must have
    /// one of the `layouts`.
    pub(crate) fn invalid_shape(&self, shape: &[usize], layouts: &str) -> Error {
        Error::InvalidShape {
            op: self.op,
            arg: "predictions",
            shape: shape.to_vec(),
            expected: format!("{} with a class axis: {layouts}", self.noun),
        }
    }

    /// Class-index targets must have the predictions' shape without the class
    /// `axis`: [`Error::ShapeMismatch`] otherwise.
    pub(crate) fn index_shape(&self, predictions: &[usize], targets: &[usize], axis: usize) -> Result<()> {
        let without_classes = without_axis(predictions, axis);
        if targets == without_classes.as_slice() {
            Ok(())
        } else {
            Err(Error::shape_mismatch_because(
                self.op,
                predictions,
                targets,
                format!(
                    "targets must be class indices of shape {without_classes:?} (the {} {predictions:?} without \
                     the class axis {axis})",
                    self.noun
                ),
            ))
        }
    }

    /// The layout of predictions of `shape` around the class `axis`, once
    /// they are known to hold elements and the weights to be one per class.
    pub(crate) fn layout(&self, shape: &[usize], axis: usize) -> Result<ClassLayout> {
        validate::non_empty(self.op, "predictions", shape)?;
        let classes = shape[axis];
        if let Some(w) = self.weights
            && w.len() != classes
        {
            return Err(Error::InvalidParameter {
                name: format!(
                    "class_weights.len() against {classes} classes (axis {axis} of {} {shape:?})",
                    self.noun
                ),
                value: w.len() as f64,
                expected: "one weight per class: the size of the predictions' class axis",
            });
        }
        Ok(ClassLayout {
            outer: shape[..axis].iter().product(),
            classes,
            inner: shape[axis + 1..].iter().product(),
        })
    }

    /// Whether a class-index target is `ignore_index`.
    pub(crate) fn ignored<F: Float>(&self, target: F) -> bool {
        self.ignore_index.is_some_and(|i| target.as_f64() == i as f64)
    }

    /// The weight of class `class` (1 without weights). Only for a checked
    /// index; 0 past the weights.
    pub(crate) fn weight(&self, class: usize) -> f64 {
        self.weights.map_or(1.0, |w| w.get(class).copied().unwrap_or(0.0))
    }

    /// Checks every class index in `targets` (of `shape`): a NaN or infinity
    /// is [`Error::NonFinite`], one negative, fractional or `≥ classes` (and
    /// not `ignore_index`) is [`Error::InvalidTarget`], with its index.
    pub(crate) fn check_indices<F: Float>(&self, targets: &[F], shape: &[usize], classes: usize) -> Result<Kept> {
        let mut kept = Kept {
            count: 0,
            weight_sum: 0.0,
        };
        for (i, &t) in targets.iter().enumerate() {
            if self.ignored(t) {
                continue;
            }
            let v = t.as_f64();
            let reason = if !v.is_finite() {
                return Err(Error::NonFinite {
                    op: self.op,
                    arg: "targets",
                    index: unravel(i, shape),
                    value: v,
                });
            } else if v < 0.0 {
                "a class index must be ≥ 0".to_string()
            } else if v.fract() != 0.0 {
                "a class index must be a whole number".to_string()
            } else if v >= classes as f64 {
                format!("a class index must be < {classes}, the size of the predictions' class axis")
            } else {
                kept.count += 1;
                kept.weight_sum += self.weight(v as usize);
                continue;
            };
            return Err(Error::InvalidTarget {
                index: unravel(i, shape),
                value: v,
                reason,
            });
        }
        Ok(kept)
    }

    /// The weighted mean's denominator `Σ w_y` over the targets kept (1 for
    /// a sum): [`Error::AllTargetsIgnored`] when none is kept, and
    /// [`Error::InvalidParameter`] when their weights sum to 0.
    pub(crate) fn weighted_mean(&self, kept: Kept, reduction: Reduction) -> Result<f64> {
        if reduction == Reduction::Sum {
            return Ok(1.0);
        }
        if kept.count == 0
            && let Some(ignore_index) = self.ignore_index
        {
            return Err(Error::AllTargetsIgnored {
                op: self.op,
                ignore_index,
            });
        }
        if kept.weight_sum == 0.0 {
            return Err(Error::InvalidParameter {
                name: "class_weights".into(),
                value: 0.0,
                expected: "weights whose sum over the targets not ignored is > 0 (Reduction::Mean divides by it)",
            });
        }
        Ok(kept.weight_sum)
    }

    /// Where the targets are kept (not `ignore_index`), with the class `axis`
    /// inserted (of size 1).
    pub(crate) fn kept_mask<F: Float>(&self, targets: &ArrayD<F>, axis: usize) -> ArrayD<bool> {
        targets.mapv(|t| !self.ignored(t)).insert_axis(Axis(axis))
    }

    /// Each sample's class index (0 where ignored), with the class `axis`
    /// inserted, for `gather`. Only for checked targets.
    pub(crate) fn picks<F: Float>(&self, targets: &ArrayD<F>, axis: usize) -> ArrayD<usize> {
        targets
            .mapv(|t| if self.ignored(t) { 0 } else { t.as_f64() as usize })
            .insert_axis(Axis(axis))
    }

    /// On the tape: `w_y·v_y` for each sample's target class `y` in `values`
    /// (which have the predictions' layout), and 0 for the samples ignored
    /// and where `w_y = 0` (so that `0·(−∞)` never happens); the class `axis`
    /// kept with size 1. Only for checked targets.
    pub(crate) fn record_picked<'t, F: Float>(
        &self,
        tape: &'t Tape<F>,
        values: Var<'t, F>,
        axis: usize,
        targets: &ArrayD<F>,
    ) -> Result<Var<'t, F>> {
        let zero = tape.scalar(F::zero());
        let picks = self.picks(targets, axis);
        let mut picked = values
            .gather(axis, &picks)?
            .where_mask(&self.kept_mask(targets, axis), zero)?;
        if self.weights.is_some() {
            let w_y = picks.mapv(|y| F::from_f64(self.weight(y)));
            picked = picked
                .where_mask(&w_y.mapv(|w| w != F::zero()), zero)?
                .mul(tape.constant(w_y))?;
        }
        Ok(picked)
    }
}

/// `shape` without `axis`.
pub(crate) fn without_axis(shape: &[usize], axis: usize) -> Vec<usize> {
    let mut out = shape.to_vec();
    out.remove(axis);
    out
}
