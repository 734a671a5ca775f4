//! Elementwise functions of two inputs under NumPy broadcasting: `y = f(a, b)`
//! and its partial derivatives, side by side. The backward rule sums each
//! operand's gradient back to that operand's shape.

use ndarray::{ArrayD, ArrayViewD, IxDyn, Zip};

use super::{Op, chain};
use crate::error::{Error, Result};
use crate::float::Float;
use crate::tape::backprop::Sweep;
use crate::tape::{Var, broadcast_shape, reduce_to_shape, sum_to_shape};

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
            // Unlike `F::max`, a NaN in either operand propagates (as in PyTorch).
            Binary::Maximum => {
                if a > b || a.is_nan() {
                    a
                } else {
                    b
                }
            }
            Binary::Minimum => {
                if a < b || a.is_nan() {
                    a
                } else {
                    b
                }
            }
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

/// The local backward rule: each operand receives `grad ⊙ ∂y/∂operand` (a
/// zero `grad` element stays zero, see [`chain`]), summed over the axes it was
/// broadcast along. `grad` is moved on or overwritten in place, so at most one
/// new array is made per operand that needs a gradient, and none for
/// `add`/`sub` without broadcasting.
pub(crate) fn backward<F: Float>(
    sweep: &mut Sweep<'_, F>,
    f: Binary,
    lhs: usize,
    rhs: usize,
    out: &ArrayD<F>,
    grad: ArrayD<F>,
) {
    let (need_a, need_b) = (sweep.needs(lhs), sweep.needs(rhs));
    let (a, b) = (sweep.value(lhs), sweep.value(rhs));
    if let Binary::Add | Binary::Sub = f {
        // ∂y/∂a = 1 and ∂y/∂b = ±1: the gradient passes through.
        let sign = |mut g: ArrayD<F>| {
            if f == Binary::Sub {
                g.mapv_inplace(|v| -v);
            }
            g
        };
        match (need_a, need_b) {
            (true, true) => {
                // `b` needs its own copy; `a` takes `grad` itself.
                let gb = if f == Binary::Sub && b.shape() == grad.shape() {
                    grad.mapv(|v| -v)
                } else {
                    sign(sum_to_shape(grad.view(), b.shape()))
                };
                sweep.send(rhs, gb);
                sweep.send(lhs, reduce_to_shape(grad, a.shape()));
            }
            (true, false) => sweep.send(lhs, reduce_to_shape(grad, a.shape())),
            (false, true) => sweep.send(rhs, sign(reduce_to_shape(grad, b.shape()))),
            (false, false) => {}
        }
        return;
    }

    let shape = out.shape();
    let (Ok(a_full), Ok(b_full)) = (broadcast_view(f.name(), a, shape), broadcast_view(f.name(), b, shape)) else {
        return; // unreachable: the forward pass checked these shapes
    };
    if need_b {
        let gb = Zip::from(&grad)
            .and(&a_full)
            .and(&b_full)
            .and(out)
            .map_collect(|&g, &a, &b, &y| chain(g, f.partials(a, b, y).1));
        sweep.send(rhs, reduce_to_shape(gb, b.shape()));
    }
    if need_a {
        let mut ga = grad;
        Zip::from(&mut ga)
            .and(&a_full)
            .and(&b_full)
            .and(out)
            .for_each(|g, &a, &b, &y| *g = chain(*g, f.partials(a, b, y).0));
        sweep.send(lhs, reduce_to_shape(ga, a.shape()));
    }
}

/// Elementwise functions of two values, with NumPy broadcasting.
///
/// Shapes are aligned on the right and each pair of sizes must be equal or
/// contain a 1 (a scalar broadcasts against anything; `[3]` and `[2, 4, 3]`
/// give `[2, 4, 3]`). The gradient of a broadcast operand is summed back to
/// its own shape.
// The names are pinned by the API; returning `Result`, they cannot be `std::ops`.
#[allow(clippy::should_implement_trait)]
impl<'t, F: Float> Var<'t, F> {
    fn binary(self, other: Var<'t, F>, f: Binary) -> Result<Var<'t, F>> {
        self.same_tape(other, f.name())?;
        let (a, b) = (self.value_ref(), other.value_ref());
        let value = if a.shape() == b.shape() {
            Zip::from(&*a).and(&*b).map_collect(|&a, &b| f.apply(a, b))
        } else {
            // Checked before `broadcast`, which would only say "no".
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

    /// `a + b`, broadcast.
    ///
    /// ```
    /// # use tapeloss::{Tape, ndarray::array};
    /// # fn main() -> tapeloss::Result<()> {
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]].into_dyn());
    /// let bias = tape.var(array![10.0, 20.0, 30.0].into_dyn()); // a row, broadcast down
    /// let y = x.add(bias)?;
    /// assert_eq!(y.value(), array![[11.0, 22.0, 33.0], [14.0, 25.0, 36.0]].into_dyn());
    /// let grads = tape.backward(y.sum()?)?;
    /// assert_eq!(grads.wrt(bias).unwrap(), &array![2.0, 2.0, 2.0].into_dyn()); // summed back
    /// assert!(x.add(tape.constant(array![1.0, 2.0].into_dyn())).is_err()); // [2, 3] with [2]
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] naming the op and both shapes when they cannot
    /// broadcast; [`Error::ForeignVar`] when `other` is on another tape.
    pub fn add(self, other: Var<'t, F>) -> Result<Var<'t, F>> {
        self.binary(other, Binary::Add)
    }

    /// `a − b`, broadcast.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] naming the op and both shapes when they cannot
    /// broadcast; [`Error::ForeignVar`] when `other` is on another tape.
    pub fn sub(self, other: Var<'t, F>) -> Result<Var<'t, F>> {
        self.binary(other, Binary::Sub)
    }

    /// `a · b` elementwise, broadcast; partials `b` and `a`.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] naming the op and both shapes when they cannot
    /// broadcast; [`Error::ForeignVar`] when `other` is on another tape.
    pub fn mul(self, other: Var<'t, F>) -> Result<Var<'t, F>> {
        self.binary(other, Binary::Mul)
    }

    /// `a / b` elementwise, broadcast; partials `1/b` and `−a/b²`. Division
    /// by zero follows IEEE arithmetic (`±∞` or NaN).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] naming the op and both shapes when they cannot
    /// broadcast; [`Error::ForeignVar`] when `other` is on another tape.
    pub fn div(self, other: Var<'t, F>) -> Result<Var<'t, F>> {
        self.binary(other, Binary::Div)
    }

    /// `max(a, b)` elementwise, broadcast. At ties each operand receives half
    /// the gradient, and a NaN in either operand propagates (both as PyTorch's
    /// `torch.maximum`).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] naming the op and both shapes when they cannot
    /// broadcast; [`Error::ForeignVar`] when `other` is on another tape.
    pub fn maximum(self, other: Var<'t, F>) -> Result<Var<'t, F>> {
        self.binary(other, Binary::Maximum)
    }

    /// `min(a, b)` elementwise, broadcast. At ties each operand receives half
    /// the gradient, and a NaN in either operand propagates.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] naming the op and both shapes when they cannot
    /// broadcast; [`Error::ForeignVar`] when `other` is on another tape.
    pub fn minimum(self, other: Var<'t, F>) -> Result<Var<'t, F>> {
        self.binary(other, Binary::Minimum)
    }
}
