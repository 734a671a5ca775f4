//! Elementwise functions of two inputs under NumPy broadcasting: `y = f(a, b)`
//! and its partial derivatives, side by side. The backward rule sums each
//! operand's gradient back to that operand's shape.

use ndarray::ArrayD;

use super::{Op, chain};
#[cfg(doc)]
use crate::error::Error;
use crate::error::Result;
use crate::float::Float;
use crate::kernels::parallel;
use crate::tape::backprop::Sweep;
use crate::tape::fusion::fuses_binary;
use crate::tape::layout::{Broadcast, MIN_PARALLEL_RUN, flat, flat_mut, from_vec};
use crate::tape::pool;
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
    pub(crate) fn apply<F: Float>(self, a: F, b: F) -> F {
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

    /// `∂y/∂a` (`position` 0) or `∂y/∂b` (1) when it is the same for every
    /// element (`a + b`, `a − b`), as [`Binary::partials`] gives it.
    pub(crate) fn constant_partial<F: Float>(self, position: usize) -> Option<F> {
        match (self, position) {
            (Binary::Add, _) | (Binary::Sub, 0) => Some(F::one()),
            (Binary::Sub, _) => Some(-F::one()),
            _ => None,
        }
    }

    /// `(∂y/∂a, ∂y/∂b)` for one element, given `a`, `b` and `y`. Ties of
    /// `maximum` and `minimum` split the gradient evenly, as PyTorch does.
    #[inline(always)]
    pub(crate) fn partials<F: Float>(self, a: F, b: F, y: F) -> (F, F) {
        let (zero, one, half) = (F::zero(), F::one(), F::from_f64(0.5));
        match self {
            Binary::Add => (one, one),
            Binary::Sub => (one, -one),
            Binary::Mul => (b, a),
            Binary::Div => (one / b, -y / b),
            Binary::Maximum | Binary::Minimum => {
                let (a_wins, b_wins) = if self == Binary::Maximum {
                    (a > b, b > a)
                } else {
                    (a < b, b < a)
                };
                // With a NaN on either side no comparison holds: both operands
                // get the whole gradient, as in PyTorch.
                match (a == b, a_wins, b_wins) {
                    (true, _, _) => (half, half),
                    (_, true, _) => (one, zero),
                    (_, _, true) => (zero, one),
                    _ => (one, one),
                }
            }
        }
    }
}

/// Expands `$run!(op)` once per variant of `$f`, with `op` naming that
/// variant, so that inside a closure it is a constant: each loop is compiled
/// once per function with `apply` and `partials` folded in, rather than
/// jumping on the function for every element.
macro_rules! specialise {
    ($f:expr, $run:ident) => {
        match $f {
            Binary::Add => $run!(Binary::Add),
            Binary::Sub => $run!(Binary::Sub),
            Binary::Mul => $run!(Binary::Mul),
            Binary::Div => $run!(Binary::Div),
            Binary::Maximum => $run!(Binary::Maximum),
            Binary::Minimum => $run!(Binary::Minimum),
        }
    };
}
pub(crate) use specialise as specialise_binary;

/// `f(a, b)` broadcast to `shape`, run by run: a run where both operands
/// advance, or one repeats, is one tight loop.
fn forward<F: Float>(f: Binary, a: &ArrayD<F>, b: &ArrayD<F>, shape: &[usize]) -> ArrayD<F> {
    let (xa, xb) = (flat(a), flat(b));
    let plan = Broadcast::new(shape, [a.shape(), b.shape()]);
    let n = plan.len;
    // Pooled, every element overwritten: a fresh 16 MB array faulted its
    // pages in on every call (multi-margin's `x − x_y` on 4096×1000).
    let mut out = pool::for_overwrite(n * plan.rows());
    let operands = (&xa[..], &xb[..]);
    macro_rules! run {
        ($op:expr) => {{
            let f = |a, b| $op.apply(a, b);
            if n >= MIN_PARALLEL_RUN {
                // Each run is written by one call, so spreading them over the
                // cores changes no bit.
                parallel::for_each_row(
                    &mut out,
                    n,
                    #[inline(always)]
                    |row, out| broadcast_run(f, plan.step, operands, plan.offsets(row), out),
                )
            } else {
                plan.for_each_row(|row, offsets| {
                    broadcast_run(f, plan.step, operands, offsets, &mut out[row * n..][..n])
                })
            }
        }};
    }
    specialise!(f, run);
    from_vec(shape, out)
}

/// One run of `f(a, b)` broadcast into `out`, with each operand advancing
/// (step 1) or repeating (step 0) from its offset.
#[inline(always)]
fn broadcast_run<F: Float>(
    f: impl Fn(F, F) -> F,
    step: [usize; 2],
    (xa, xb): (&[F], &[F]),
    [oa, ob]: [usize; 2],
    out: &mut [F],
) {
    let n = out.len();
    match step {
        [1, 1] => (out.iter_mut().zip(&xa[oa..oa + n]).zip(&xb[ob..ob + n])).for_each(|((y, &a), &b)| *y = f(a, b)),
        [1, _] => {
            let b = xb[ob];
            (out.iter_mut().zip(&xa[oa..oa + n])).for_each(|(y, &a)| *y = f(a, b));
        }
        [_, 1] => {
            let a = xa[oa];
            (out.iter_mut().zip(&xb[ob..ob + n])).for_each(|(y, &b)| *y = f(a, b));
        }
        _ => out.fill(f(xa[oa], xb[ob])),
    }
}

/// The gradient of operand `k` (0 for `a`, 1 for `b`) of `y = f(a, b)`:
/// `g ⊙ ∂y/∂operand` summed straight into the operand's own shape, with no
/// temporary of the broadcast shape. `partial(a, b, y)` is the local partial.
fn operand_grad<F: Float>(
    plan: &Broadcast<2>,
    k: usize,
    size: usize,
    [g, xa, xb, y]: [&[F]; 4],
    partial: impl Fn(F, F, F) -> F,
) -> Vec<F> {
    let mut acc = pool::zeroed(size);
    let n = plan.len;
    let [sa, sb] = plan.step;
    if plan.step == [1, 1] && plan.rows() == 1 {
        // Same shapes: one vectorisable pass.
        for ((((d, &g), &a), &b), &y) in acc.iter_mut().zip(g).zip(xa).zip(xb).zip(y) {
            *d = chain(g, partial(a, b, y));
        }
        return acc;
    }
    plan.for_each_row(|row, offsets| {
        let (og, [oa, ob], ok) = (row * n, offsets, offsets[k]);
        let term = |i: usize| chain(g[og + i], partial(xa[oa + i * sa], xb[ob + i * sb], y[og + i]));
        if plan.step[k] == 1 {
            for (i, d) in acc[ok..ok + n].iter_mut().enumerate() {
                *d += term(i);
            }
        } else {
            // The operand repeats along the run: one sum, in eight parts.
            let mut partial = [F::zero(); 8];
            for i in 0..n {
                partial[i % 8] += term(i);
            }
            acc[ok] += partial.iter().fold(F::zero(), |s, &p| s + p);
        }
    });
    acc
}

/// [`operand_grad`] for an operand of the output's shape, written over the
/// incoming gradient `g` itself.
fn operand_grad_in_place<F: Float>(
    plan: &Broadcast<2>,
    g: &mut [F],
    [xa, xb, y]: [&[F]; 3],
    partial: impl Fn(F, F, F) -> F,
) {
    let n = plan.len;
    let [sa, sb] = plan.step;
    if plan.step == [1, 1] && plan.rows() == 1 {
        for (((g, &a), &b), &y) in g.iter_mut().zip(xa).zip(xb).zip(y) {
            *g = chain(*g, partial(a, b, y));
        }
        return;
    }
    plan.for_each_row(|row, [oa, ob]| {
        let og = row * n;
        for (i, g) in g[og..og + n].iter_mut().enumerate() {
            *g = chain(*g, partial(xa[oa + i * sa], xb[ob + i * sb], y[og + i]));
        }
    });
}

/// The local backward rule: each operand receives `grad ⊙ ∂y/∂operand` (a
/// zero `grad` element stays zero, see [`chain`]), summed over the axes it was
/// broadcast along as it is computed. An operand of the output's shape takes
/// `grad`'s own memory, so at most one new array of the output's size is made
/// (when both operands have that shape and need a gradient), and none for
/// `add`/`sub` without broadcasting.
pub(crate) fn backward<F: Float>(
    sweep: &mut Sweep<'_, F>,
    f: Binary,
    lhs: usize,
    rhs: usize,
    out: &ArrayD<F>,
    mut grad: ArrayD<F>,
) {
    let (need_a, need_b) = (sweep.needs(lhs), sweep.needs(rhs));
    let (a, b) = (sweep.value(lhs), sweep.value(rhs));
    if let Binary::Add | Binary::Sub = f {
        // ∂y/∂a = 1 and ∂y/∂b = ±1: the gradient passes through.
        let sign = |mut g: ArrayD<F>| {
            if f == Binary::Sub {
                flat_mut(&mut g, |g| g.iter_mut().for_each(|v| *v = -*v));
            }
            g
        };
        match (need_a, need_b) {
            (true, true) => {
                // `b` needs its own copy (negated in the same pass for `sub`);
                // `a` takes `grad` itself.
                let gb = if b.shape() != grad.shape() {
                    sign(sum_to_shape(&grad, b.shape()))
                } else if f == Binary::Sub {
                    from_vec(b.shape(), flat(&grad).iter().map(|&g| -g).collect())
                } else {
                    grad.clone()
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
    let plan = Broadcast::new(shape, [a.shape(), b.shape()]);
    let (xa, xb, y) = (flat(a), flat(b), flat(out));
    // The operand (0 for `a`, 1 for `b`) that takes `grad`'s memory: one of
    // the output's shape. (For `x·x` both operands are `x`: each sends its
    // share, and the sweep adds them.)
    let in_place = if need_a && a.shape() == shape {
        Some(0)
    } else if need_b && b.shape() == shape {
        Some(1)
    } else {
        None
    };
    for (k, (index, need, x)) in [(lhs, need_a, a), (rhs, need_b, b)].into_iter().enumerate() {
        if need && in_place != Some(k) {
            let g = flat(&grad);
            macro_rules! run {
                ($op:expr) => {
                    if k == 0 {
                        operand_grad(&plan, k, x.len(), [&g, &xa, &xb, &y], |a, b, y| {
                            $op.partials(a, b, y).0
                        })
                    } else {
                        operand_grad(&plan, k, x.len(), [&g, &xa, &xb, &y], |a, b, y| {
                            $op.partials(a, b, y).1
                        })
                    }
                };
            }
            let values = specialise!(f, run);
            sweep.send(index, from_vec(x.shape(), values));
        }
    }
    if let Some(k) = in_place {
        flat_mut(&mut grad, |g| {
            macro_rules! run {
                ($op:expr) => {
                    if k == 0 {
                        operand_grad_in_place(&plan, g, [&xa, &xb, &y], |a, b, y| $op.partials(a, b, y).0)
                    } else {
                        operand_grad_in_place(&plan, g, [&xa, &xb, &y], |a, b, y| $op.partials(a, b, y).1)
                    }
                };
            }
            specialise!(f, run)
        });
        sweep.send(if k == 0 { lhs } else { rhs }, grad);
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
    /// Records `f(self, other)`: lazily (see `tape/fusion.rs`) when each
    /// operand has the result's elements or a single one, else computed now
    /// under the broadcast.
    fn binary(self, other: Var<'t, F>, f: Binary) -> Result<Var<'t, F>> {
        self.same_tape(other, f.name())?;
        let (a_shape, b_shape) = (self.shape(), other.shape());
        let shape = broadcast_shape(f.name(), &a_shape, &b_shape)?;
        let op = Op::Binary {
            lhs: self.index,
            rhs: other.index,
            f,
        };
        let len = |s: &[usize]| s.iter().product::<usize>();
        if fuses_binary(len(&shape), len(&a_shape), len(&b_shape)) {
            return Ok(self.record_lazy(shape, op));
        }
        let value = forward(f, &self.value_ref(), &other.value_ref(), &shape);
        Ok(self.record(value, op))
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
    /// the gradient, and a NaN in either operand propagates, with the whole
    /// gradient to both operands (all as PyTorch's `torch.maximum`).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] naming the op and both shapes when they cannot
    /// broadcast; [`Error::ForeignVar`] when `other` is on another tape.
    pub fn maximum(self, other: Var<'t, F>) -> Result<Var<'t, F>> {
        self.binary(other, Binary::Maximum)
    }

    /// `min(a, b)` elementwise, broadcast. At ties each operand receives half
    /// the gradient, and a NaN in either operand propagates, with the whole
    /// gradient to both operands (all as PyTorch's `torch.minimum`).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] naming the op and both shapes when they cannot
    /// broadcast; [`Error::ForeignVar`] when `other` is on another tape.
    pub fn minimum(self, other: Var<'t, F>) -> Result<Var<'t, F>> {
        self.binary(other, Binary::Minimum)
    }
}
