//! The recorded operations. Each file holds one family: the `Var` methods that
//! run an op forward and, beside them, the local backward rule that the sweep
//! in `backprop.rs` calls.

pub(crate) mod binary;
pub(crate) mod elementwise;
pub(crate) mod reduce;
pub(crate) mod structural;

use ndarray::ArrayD;

use crate::float::Float;
use smallvec::{SmallVec, smallvec};

pub(crate) use binary::{Binary, specialise_binary};
pub(crate) use elementwise::{Unary, specialise_unary};

/// How a recorded value was made: the operation and the indices of its inputs
/// on the tape, plus whatever the backward rule needs that is not a value.
/// (Axis reductions do not record `keepdims`: a reduced axis of size 1 does
/// not change the row-major order, so the backward rules read either alike.)
#[derive(Debug, Clone)]
pub(crate) enum Op<F> {
    /// A tracked leaf or a constant.
    Leaf,
    /// An elementwise function of one input.
    Unary { input: usize, f: Unary<F> },
    /// An elementwise function of two inputs, broadcast together.
    Binary { lhs: usize, rhs: usize, f: Binary },
    /// The sum of all elements.
    Sum { input: usize },
    /// The mean of all elements.
    Mean { input: usize },
    /// Sum along one axis.
    SumAxis { input: usize, axis: usize },
    /// Mean along one axis.
    MeanAxis { input: usize, axis: usize },
    /// Maximum along one axis (ties share the gradient).
    MaxAxis { input: usize, axis: usize },
    /// Euclidean norm along one axis (gradient 0 where it is 0).
    NormAxis { input: usize, axis: usize },
    /// `ln Σ exp` along one axis.
    LogSumExpAxis { input: usize, axis: usize },
    /// `x − logsumexp(x)` along one axis.
    LogSoftmax { input: usize, axis: usize },
    /// `exp(x − logsumexp(x))` along one axis.
    Softmax { input: usize, axis: usize },
    /// 2-D matrix product.
    MatMul { lhs: usize, rhs: usize },
    /// Same elements, new shape (row-major order).
    Reshape { input: usize },
    /// The block `start..end` along one axis (with the axis kept or, for a
    /// single index, removed: the row-major order is the same).
    SliceAxis {
        input: usize,
        axis: usize,
        start: usize,
        end: usize,
    },
    /// Values picked by index along one axis.
    Gather {
        input: usize,
        axis: usize,
        indices: ArrayD<usize>,
    },
    /// `mask ? on_true : on_false`, broadcast together.
    WhereMask {
        on_true: usize,
        on_false: usize,
        mask: ArrayD<bool>,
    },
}

/// `g · d` for an incoming gradient `g` and a local derivative `d`, except
/// that a zero gradient stays zero even where `d` is infinite or NaN (0·∞ is
/// taken as 0). A value that reaches the loss only through a masked-out
/// branch (`where_mask`, a zero weight) thus gets a zero gradient rather than
/// a NaN from, say, `sqrt` at 0 or a division by zero in the unused branch.
#[inline(always)]
pub(crate) fn chain<F: Float>(g: F, d: F) -> F {
    if g == F::zero() { g } else { g * d }
}

impl<F> Op<F> {
    /// The tape indices this op reads.
    pub(crate) fn inputs(&self) -> SmallVec<[usize; 2]> {
        match *self {
            Op::Leaf => smallvec![],
            Op::Unary { input, .. }
            | Op::Sum { input }
            | Op::Mean { input }
            | Op::SumAxis { input, .. }
            | Op::MeanAxis { input, .. }
            | Op::MaxAxis { input, .. }
            | Op::LogSumExpAxis { input, .. }
            | Op::NormAxis { input, .. }
            | Op::LogSoftmax { input, .. }
            | Op::Softmax { input, .. }
            | Op::Reshape { input }
            | Op::SliceAxis { input, .. }
            | Op::Gather { input, .. } => smallvec![input],
            Op::Binary { lhs, rhs, .. } | Op::MatMul { lhs, rhs } => smallvec![lhs, rhs],
            Op::WhereMask { on_true, on_false, .. } => smallvec![on_true, on_false],
        }
    }
}
