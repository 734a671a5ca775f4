//! Elementwise functions of two inputs under NumPy broadcasting: `y = f(a, b)`
//! and its partial derivatives, side by side. The backward rule sums each
//! operand's gradient back to that operand's shape.

use ndarray::{ArrayD, ArrayViewD, IxDyn, Zip};

use super::Op;
use crate::error::{Error, Result};
use crate::float::Float;
use crate::tape::backprop::Sweep;
use crate::tape::{Var, broadcast_shape, reduce_to_shape};

/// An elementwise function of two inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Binary {
    Add,
    Sub,
    Mul,
    Div,
    Maximum,
    Minimum,
}

impl Binary {
    /// The op's name, for error messages.
    fn name(self) -> &'static str {
        match self {
            Binary::Add => "add",
            Binary::Sub => "sub",
            Binary::Mul => "mul",
            Binary::Div => "div",
            Binary::Maximum => "maximum",
            Binary::Minimum => "minimum",
        }
    }

    /// `y = f(a, b)` for one element.
    #[inline(always)]
    fn apply<F: Float>(self, a: F, b: F) -> F {
        match self {
            Binary::Add => a + b,
            Binary::Sub => a - b,
            Binary::Mul => a * b,
            Binary::Div => a / b,
            Binary::Maximum => a.max(b),
            Binary::Minimum => a.min(b),
        }
    }

    /// `(∂y/∂a, ∂y/∂b)` for one element, given `a`, `b` and `y`. Ties of
    /// `maximum` and `minimum` split the gradient evenly, as PyTorch does.
    #[inline(always)]
    fn partials<F: Float>(self, a: F, b: F, y: F) -> (F, F) {
        let (zero, one, half) = (F::zero(), F::one(), F::from_f64(0.5));
        match self {
            Binary::Add => (one, one),
            Binary::Sub => (one, -one),
            Binary::Mul => (b, a),
            Binary::Div => (one / b, -y / b),
            Binary::Maximum | Binary::Minimum => {
                let a_wins = if self == Binary::Maximum { a > b } else { a < b };
                match (a == b, a_wins) {
                    (true, _) => (half, half),
                    (false, true) => (one, zero),
                    (false, false) => (zero, one),
                }
            }
        }
    }
}

/// A view of `array` broadcast to `shape` (already checked compatible).
pub(crate) fn broadcast_view<'a, F>(
    op: &'static str,
    array: &'a ArrayD<F>,
    shape: &[usize],
) -> Result<ArrayViewD<'a, F>> {
    array
        .broadcast(IxDyn(shape))
        .ok_or_else(|| Error::shape_mismatch_because(op, array.shape(), shape, "cannot broadcast"))
}

/// The local backward rule: each operand receives `grad ⊙ ∂y/∂operand`,
/// summed over the axes it was broadcast along.
pub(crate) fn backward<F: Float>(
    sweep: &mut Sweep<'_, F>,
    f: Binary,
    lhs: usize,
    rhs: usize,
    out: &ArrayD<F>,
    grad: ArrayD<F>,
) {
    let (a, b) = (sweep.value(lhs), sweep.value(rhs));
    let shape = out.shape();
    let (Ok(a_full), Ok(b_full)) = (broadcast_view(f.name(), a, shape), broadcast_view(f.name(), b, shape)) else {
        return; // unreachable: the forward pass checked these shapes
    };
    let partial = |which: usize| -> ArrayD<F> {
        match (f, which) {
            (Binary::Add, _) | (Binary::Sub, 0) => grad.clone(),
            (Binary::Sub, _) => grad.mapv(|g| -g),
            _ => Zip::from(&grad)
                .and(&a_full)
                .and(&b_full)
                .and(out)
                .map_collect(|&g, &a, &b, &y| {
                    let (da, db) = f.partials(a, b, y);
                    g * if which == 0 { da } else { db }
                }),
        }
    };
    if sweep.needs(lhs) {
        let g = reduce_to_shape(partial(0), a.shape());
        sweep.send(lhs, g);
    }
    if sweep.needs(rhs) {
        let g = reduce_to_shape(partial(1), b.shape());
        sweep.send(rhs, g);
    }
}

/// Elementwise functions of two values, with NumPy broadcasting.
///
/// Shapes are aligned on the right and each pair of sizes must be equal or
/// contain a 1 (a scalar broadcasts against anything). The gradient of a
/// broadcast operand is summed back to its own shape.
///
/// # Errors
/// [`Error::ShapeMismatch`] naming the op and both shapes when they cannot
/// broadcast; [`Error::ForeignVar`] when `other` is on another tape.
impl<'t, F: Float> Var<'t, F> {
    fn binary(self, other: Var<'t, F>, f: Binary) -> Result<Var<'t, F>> {
        self.same_tape(other, f.name())?;
        let (a, b) = (self.value_ref(), other.value_ref());
        let value = if a.shape() == b.shape() {
            Zip::from(&*a).and(&*b).map_collect(|&a, &b| f.apply(a, b))
        } else {
            let shape = broadcast_shape(f.name(), a.shape(), b.shape())?;
            let a_full = broadcast_view(f.name(), &a, &shape)?;
            let b_full = broadcast_view(f.name(), &b, &shape)?;
            Zip::from(&a_full).and(&b_full).map_collect(|&a, &b| f.apply(a, b))
        };
        drop((a, b));
        Ok(self.record(
            value,
            Op::Binary {
                lhs: self.index,
                rhs: other.index,
                f,
            },
        ))
    }

    /// `a + b`.
    pub fn add(self, other: Var<'t, F>) -> Result<Var<'t, F>> {
        self.binary(other, Binary::Add)
    }

    /// `a − b`.
    pub fn sub(self, other: Var<'t, F>) -> Result<Var<'t, F>> {
        self.binary(other, Binary::Sub)
    }

    /// `a · b` (elementwise); partials `b` and `a`.
    pub fn mul(self, other: Var<'t, F>) -> Result<Var<'t, F>> {
        self.binary(other, Binary::Mul)
    }

    /// `a / b`; partials `1/b` and `−a/b²`.
    pub fn div(self, other: Var<'t, F>) -> Result<Var<'t, F>> {
        self.binary(other, Binary::Div)
    }

    /// `max(a, b)` elementwise; at ties each operand receives half the gradient
    /// (PyTorch's `torch.maximum` convention).
    pub fn maximum(self, other: Var<'t, F>) -> Result<Var<'t, F>> {
        self.binary(other, Binary::Maximum)
    }

    /// `min(a, b)` elementwise; at ties each operand receives half the gradient.
    pub fn minimum(self, other: Var<'t, F>) -> Result<Var<'t, F>> {
        self.binary(other, Binary::Minimum)
    }
}
