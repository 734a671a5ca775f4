//! The crate's one error type.
//!
//! Every mistake a caller can make comes back as an [`Error`] whose message names
//! the operation or argument at fault and the shape, value or index that is wrong.
//! Nothing in the crate panics on user input.

/// Everything that can go wrong in `tapeloss`.
///
/// The variants are few on purpose; each carries what a person needs to find the
/// mistake: the operation (`op`) or argument (`arg`, `name`) and the offending
/// shape, value or index.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Two shapes that had to agree do not (operands of a tape op that cannot
    /// broadcast, predictions and targets of different shapes, matmul inner
    /// sizes, a reshape to another size, a gradient buffer of the wrong shape).
    #[error("{op}: shapes {lhs:?} and {rhs:?} do not match{detail}")]
    ShapeMismatch {
        /// The operation or loss that failed, e.g. `"add"` or `"MeanSquaredError"`.
        op: &'static str,
        /// The first shape: for a loss, the predictions'; for a gradient (a
        /// buffer given to `value_and_grad_into`, or one `gradcheck` was handed),
        /// the gradient's.
        lhs: Vec<usize>,
        /// The second shape: for a loss, the targets'; for a gradient, the
        /// shape it must have.
        rhs: Vec<usize>,
        /// Extra context, empty or starting with `": "`.
        detail: String,
    },

    /// One array has a layout the operation does not accept (for example
    /// triplet input that is neither `[N, 3, D]` nor `[3, D]`).
    #[error("{op}: `{arg}` has shape {shape:?}, expected {expected}")]
    InvalidShape {
        /// The operation or loss that failed.
        op: &'static str,
        /// The argument at fault.
        arg: &'static str,
        /// Its shape.
        shape: Vec<usize>,
        /// The accepted layouts, in words.
        expected: String,
    },

    /// An axis argument is not smaller than the array's number of dimensions.
    #[error("{op}: axis {axis} is out of range for an array of {ndim} dimension(s) with shape {shape:?}")]
    AxisOutOfRange {
        /// The operation that failed.
        op: &'static str,
        /// The axis asked for.
        axis: usize,
        /// The array's number of dimensions.
        ndim: usize,
        /// The array's shape.
        shape: Vec<usize>,
    },

    /// A hyperparameter is outside its domain, NaN or infinite.
    #[error("invalid parameter `{name}` = {value}: expected {expected}")]
    InvalidParameter {
        /// The parameter's name, e.g. `"delta"` or `"class_weights[2]"`.
        name: String,
        /// The value given.
        value: f64,
        /// Its domain, in words, e.g. `"a finite number > 0"`.
        expected: &'static str,
    },

    /// A target value cannot be used: a class index out of range, negative or
    /// fractional, or a probability target outside `[0, 1]`.
    #[error("invalid target {value} at index {index:?}: {reason}")]
    InvalidTarget {
        /// The target's index in the targets array.
        index: Vec<usize>,
        /// The offending value.
        value: f64,
        /// What was wrong with it.
        reason: String,
    },

    /// A prediction value is outside the domain the loss is defined on (for
    /// example a probability outside `[0, 1]`).
    #[error("{op}: `{arg}` holds {value} at index {index:?}, expected {expected}")]
    InvalidInput {
        /// The loss or operation that failed.
        op: &'static str,
        /// The argument at fault, e.g. `"predictions"`.
        arg: &'static str,
        /// The element's index.
        index: Vec<usize>,
        /// The element's value.
        value: f64,
        /// The accepted domain, in words.
        expected: &'static str,
    },

    /// A NaN or infinity where a finite number was needed. `arg` names the input
    /// that holds it (`"predictions"`, `"targets"`) and `index` locates the first
    /// one; when every input is finite, `arg` is `"loss value"` and the loss
    /// itself overflowed, or `"gradient"` and an element of the gradient did
    /// (`index` is then that element's).
    #[error("{op}: `{arg}` holds the non-finite value {value} at index {index:?}")]
    NonFinite {
        /// The loss or operation that found it.
        op: &'static str,
        /// The input that holds it.
        arg: &'static str,
        /// Where the first one is.
        index: Vec<usize>,
        /// The value itself (NaN or ±inf).
        value: f64,
    },

    /// An input has no elements (or an empty batch), so there is nothing to
    /// average over.
    #[error("{op}: `{arg}` is empty (shape {shape:?})")]
    Empty {
        /// The loss or operation that failed.
        op: &'static str,
        /// The argument at fault.
        arg: &'static str,
        /// Its shape.
        shape: Vec<usize>,
    },

    /// `Tape::backward` (or another op) was given a value with more than one
    /// element where a scalar was needed.
    #[error("{op}: expected a value with exactly one element, got shape {shape:?}")]
    NotScalar {
        /// The operation that failed.
        op: &'static str,
        /// The value's shape.
        shape: Vec<usize>,
    },

    /// `Var`s recorded on two different tapes were combined.
    #[error("{op}: the operands were recorded on different tapes")]
    ForeignVar {
        /// The operation that failed.
        op: &'static str,
    },

    /// Cross-entropy with class-index targets where every target equals
    /// `ignore_index`, so the mean has no terms (PyTorch returns NaN).
    #[error("{op}: every target equals ignore_index = {ignore_index}, so there is nothing to average")]
    AllTargetsIgnored {
        /// The loss that failed.
        op: &'static str,
        /// The ignored class index.
        ignore_index: usize,
    },

    /// An `ndarray` shape error from a user-side array construction.
    #[error("ndarray shape error: {0}")]
    Shape(#[from] ndarray::ShapeError),
}

/// `Result<T, tapeloss::Error>`.
pub type Result<T> = std::result::Result<T, Error>;

/// The domain of a hyperparameter or a scalar argument, checked when a
/// loss computes or when an op is recorded.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Domain {
    /// Any number but NaN (infinities included).
    NotNan,
    /// A finite number.
    Finite,
    /// A finite number > 0.
    Positive,
    /// A finite number ≥ 0.
    NonNegative,
    /// A number in [0, 1].
    UnitInterval,
    /// A number strictly between 0 and 0.5.
    OpenHalf,
}

impl Domain {
    fn contains(self, v: f64) -> bool {
        match self {
            Domain::NotNan => !v.is_nan(),
            Domain::Finite => v.is_finite(),
            Domain::Positive => v.is_finite() && v > 0.0,
            Domain::NonNegative => v.is_finite() && v >= 0.0,
            Domain::UnitInterval => (0.0..=1.0).contains(&v),
            Domain::OpenHalf => v > 0.0 && v < 0.5,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Domain::NotNan => "a number that is not NaN",
            Domain::Finite => "a finite number",
            Domain::Positive => "a finite number > 0",
            Domain::NonNegative => "a finite number ≥ 0",
            Domain::UnitInterval => "a number in [0, 1]",
            Domain::OpenHalf => "a number in the open interval (0, 0.5)",
        }
    }
}

/// Fails with [`Error::InvalidParameter`] unless `value` lies in `domain`.
pub(crate) fn parameter(name: impl Into<String>, value: f64, domain: Domain) -> Result<()> {
    if domain.contains(value) {
        Ok(())
    } else {
        Err(Error::InvalidParameter {
            name: name.into(),
            value,
            expected: domain.describe(),
        })
    }
}

impl Error {
    /// A [`Error::ShapeMismatch`] that says why the shapes had to agree.
    pub(crate) fn shape_mismatch_because(
        op: &'static str,
        lhs: &[usize],
        rhs: &[usize],
        why: impl std::fmt::Display,
    ) -> Self {
        Error::ShapeMismatch {
            op,
            lhs: lhs.to_vec(),
            rhs: rhs.to_vec(),
            detail: format!(": {why}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync_static<T: Send + Sync + 'static>() {}

    #[test]
    fn error_is_send_sync_static() {
        assert_send_sync_static::<Error>();
    }
}
