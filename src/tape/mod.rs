//! A small reverse-mode tape over `ndarray` arrays.
//!
//! [`Tape`] records every operation applied to its [`Var`] handles. After the
//! forward computation, [`Tape::backward`] sweeps the record once in reverse and
//! returns [`Gradients`]: the derivative of a one-element result with respect to
//! every tracked leaf.
//!
//! ```
//! use tapeloss::{Tape, ndarray::{array, ArrayD}};
//!
//! # fn main() -> tapeloss::Result<()> {
//! let tape = Tape::<f64>::new();
//! let x = tape.var(array![[1.0, 2.0], [3.0, 4.0]].into_dyn());      // tracked leaf
//! let t = tape.constant(array![[0.5, 2.0], [3.0, 3.0]].into_dyn());  // not tracked
//! let loss = x.sub(t)?.square()?.mean()?;                            // ops are recorded
//! let grads = tape.backward(loss)?;                                  // one reverse sweep
//! let dx: &ArrayD<f64> = grads.wrt(x).unwrap();                      // d loss / d x
//! assert_eq!(dx, &array![[0.25, 0.0], [0.0, 0.5]].into_dyn());
//! # Ok(()) }
//! ```
//!
//! # What the tape is not
//! Only first derivatives: the backward sweep itself is not recorded, so
//! higher-order gradients (Hessians, gradient penalties) are out of scope. The
//! tape holds every forward value until it is dropped; make a new tape per step.

mod backprop;
mod broadcast;
pub(crate) mod fusion;
pub(crate) mod layout;
pub(crate) mod lent;
mod ops;
pub(crate) mod pool;

use std::cell::{Cell, Ref, RefCell};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use ndarray::ArrayD;

use crate::error::{Error, Result};
use crate::float::Float;

pub(crate) use broadcast::{broadcast_shape, reduce_to_shape, sum_to_shape};
pub(crate) use ops::Op;

static NEXT_TAPE_ID: AtomicU64 = AtomicU64::new(0);

/// One recorded value: its forward result, how it was made, and whether any
/// tracked leaf reaches it (if not, the sweep skips it).
///
/// An elementwise op's result is computed lazily (see `fusion.rs`): `value`
/// stays empty until something needs the array itself, and a chain of such
/// ops is then evaluated in one pass, or never materialised at all when a
/// whole-array reduction or the backward sweep consumes it.
struct Node<F: 'static> {
    value: lent::Value<F>,
    shape: Vec<usize>,
    op: Op<F>,
    requires_grad: bool,
    /// A `sum` or `mean` of a lazy chain: the chain's gradients, computed
    /// with its value, until the sweep uses them.
    speculation: Cell<Option<fusion::Speculation<F>>>,
}

impl<F: Float> Node<F> {
    /// The number of elements.
    fn len(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A record of operations on arrays, to be differentiated in reverse.
///
/// `Tape` takes `&self` everywhere; recording goes through interior mutability,
/// which is why a [`Var`] can be a `Copy` handle that merely borrows its tape.
/// A tape is `Send` but not `Sync`: build one per thread and per step. It holds
/// every forward value until it is dropped, because the backward sweep needs
/// them.
///
/// Each op checks its arguments first and returns an [`Error`] rather than
/// panicking. Reductions and most structural ops compute their value at
/// once; elementwise ops are fused into chains that run a block of elements
/// at a time when their value is first needed, and slices are read by those
/// chains straight from the sliced array (see `docs/design.md`).
/// [`Tape::backward`] then runs one reverse sweep.
///
/// **Memory.** When a tape or its [`Gradients`] are dropped, their arrays of
/// 256 KiB or more go to a per-thread pool (at most 16 buffers, 64 MiB), from
/// which the next tape on the thread takes its copies, chain results and
/// gradients: a training loop that builds a tape per step then reuses the
/// same memory instead of having the system page it in again on every step.
/// [`Tape::release_buffers`] empties the pool.
///
/// **Only first derivatives.** The backward sweep is not itself recorded, so
/// higher-order gradients (Hessians, gradient penalties, differentiating
/// through [`Tape::backward`]) are out of scope.
///
/// ```
/// use tapeloss::{Tape, ndarray::array};
///
/// # fn main() -> tapeloss::Result<()> {
/// let tape = Tape::<f64>::new();
/// let w = tape.var(array![[0.5], [-1.0]].into_dyn()); // [2, 1] weights, tracked
/// let x = tape.constant(array![[1.0, 2.0], [3.0, 4.0]].into_dyn()); // [2, 2] inputs
/// let y = tape.constant(array![[0.0], [1.0]].into_dyn());
/// let loss = x.matmul(w)?.sub(y)?.square()?.mean()?; // ((x·w − y)²).mean()
/// let grads = tape.backward(loss)?;
/// // d/dw = 2/N · xᵀ(x·w − y) with x·w − y = [−1.5, −3.5]
/// assert_eq!(grads.wrt(w).unwrap(), &array![[-12.0], [-17.0]].into_dyn());
/// # Ok(()) }
/// ```
pub struct Tape<F: Float> {
    id: u64,
    nodes: RefCell<Vec<Node<F>>>,
    /// The arrays [`lent::with_lent`] lent this tape, if any.
    lent: [Option<&'static ArrayD<F>>; 2],
    /// Whether its chains check the gradients they write for NaN and
    /// infinity while those are in cache ([`Tape::check_gradients`]).
    checks_gradients: Cell<bool>,
}

/// A handle to one value recorded on a [`Tape`].
///
/// `Var` is `Copy` and borrows its tape, so it cannot outlive it. Every operation
/// is a method on `Var` returning `Result<Var>`, so a composition reads like the
/// maths and chains with `?`. Combining `Var`s of two tapes is an
/// [`Error::ForeignVar`].
#[derive(Clone, Copy)]
pub struct Var<'t, F: Float> {
    tape: &'t Tape<F>,
    index: usize,
}

/// The result of [`Tape::backward`]: one gradient per tracked leaf.
#[derive(Clone)]
pub struct Gradients<F: Float> {
    tape_id: u64,
    by_node: Vec<Option<ArrayD<F>>>,
    /// Per node: its gradient is known to be finite (seen so as it was
    /// written, on a tape that checks: [`Tape::check_gradients`]), so a
    /// caller that must check it can skip the pass.
    finite: Vec<bool>,
}

impl<F: Float> Tape<F> {
    /// Frees the buffers that dropped tapes left in this thread's pool for
    /// later tapes (of either float type), and returns how many bytes that
    /// was. Nothing else changes: the next tape allocates afresh.
    ///
    /// ```
    /// use tapeloss::{Tape, ndarray::ArrayD};
    ///
    /// # fn main() -> tapeloss::Result<()> {
    /// let tape = Tape::<f32>::new();
    /// let x = tape.var(ArrayD::ones(vec![1 << 20])); // 4 MiB
    /// tape.backward(x.square()?.sum()?)?;
    /// drop(tape); // its arrays go to the pool
    /// assert!(Tape::<f32>::release_buffers() >= 4 << 20);
    /// assert_eq!(Tape::<f32>::release_buffers(), 0);
    /// # Ok(()) }
    /// ```
    pub fn release_buffers() -> usize {
        pool::release()
    }

    /// An empty tape.
    pub fn new() -> Self {
        Tape {
            id: NEXT_TAPE_ID.fetch_add(1, Ordering::Relaxed),
            // Room for a loss's few ops, so that recording one does not
            // regrow the record (and move its nodes) three or four times.
            nodes: RefCell::new(Vec::with_capacity(16)),
            lent: [None; 2],
            checks_gradients: Cell::new(false),
        }
    }

    /// Makes the chains of this tape check each block of the gradients they
    /// write for NaN and infinity while it is in cache, so that
    /// [`Gradients::finite`] can vouch for a gradient and its caller skip its
    /// own pass over it. Off by default: a plain [`Tape::backward`] has no
    /// use for the flags, and the checks cost an extra pass per block (2.7–4.2%
    /// of a call for a user's MSE or Huber on 2²⁰ elements, 11–13% for triplet
    /// and contrastive; docs/design.md).
    pub(crate) fn check_gradients(&self) {
        self.checks_gradients.set(true);
    }

    /// Records a tracked leaf: [`Tape::backward`] gives its gradient, and
    /// [`Gradients::wrt`] returns it (zeros if the loss does not depend on it).
    /// The array is moved onto the tape, not copied (unless it is not in
    /// standard row-major layout, a transposed view's copy say: then it is
    /// copied once into that layout, which every op's loops assume).
    pub fn var(&self, value: ArrayD<F>) -> Var<'_, F> {
        self.push_leaf(layout::standard(value), true)
    }

    /// Records a constant: it takes part in operations but gets no gradient
    /// ([`Gradients::wrt`] returns `None`), and branches that only reach
    /// constants are skipped by the sweep. Moved onto the tape like
    /// [`Tape::var`].
    pub fn constant(&self, value: ArrayD<F>) -> Var<'_, F> {
        self.push_leaf(layout::standard(value), false)
    }

    /// Records a constant from a borrowed array, for a [`crate::Loss::record`]
    /// that puts its `targets` on the tape: a copy, except on the tape that
    /// [`crate::losses::value_and_grad_on_tape`] (and so the provided
    /// `forward`, `backward` and `value_and_grad` of a loss that implements
    /// only `record`) builds for one call, which holds that call's targets
    /// themselves. The result is the same either way; only the copy is saved.
    ///
    /// ```
    /// use tapeloss::{Loss, Result, Tape, Var, ndarray::{array, ArrayD}};
    ///
    /// /// Mean squared error, written as tape ops.
    /// struct Squares;
    ///
    /// impl Loss<f64> for Squares {
    ///     fn record<'t>(&self, tape: &'t Tape<f64>, p: Var<'t, f64>, t: &ArrayD<f64>) -> Result<Var<'t, f64>> {
    ///         p.sub(tape.constant_from(t))?.square()?.mean()
    ///     }
    /// }
    ///
    /// # fn main() -> tapeloss::Result<()> {
    /// let (p, t) = (array![1.0, 2.0].into_dyn(), array![0.0, 4.0].into_dyn());
    /// let (value, grad) = Squares.value_and_grad(&p, &t)?; // t is not copied
    /// assert_eq!(value, 2.5); // (1 + 4) / 2
    /// assert_eq!(grad, array![1.0, -2.0].into_dyn()); // (p − t)·2/n
    /// # Ok(()) }
    /// ```
    pub fn constant_from(&self, value: &ArrayD<F>) -> Var<'_, F> {
        self.leaf_from(value, false)
    }

    /// A zero-dimensional constant holding `value`.
    pub fn scalar(&self, value: F) -> Var<'_, F> {
        self.constant(ndarray::arr0(value).into_dyn())
    }

    /// How many values the tape holds.
    pub fn len(&self) -> usize {
        self.nodes.borrow().len()
    }

    /// Whether the tape holds no value yet.
    pub fn is_empty(&self) -> bool {
        self.nodes.borrow().is_empty()
    }

    /// Differentiates `loss`, which must hold exactly one element, with respect
    /// to every tracked leaf, in one reverse sweep.
    ///
    /// Gradients of intermediate values are dropped as soon as they have been
    /// passed to their inputs, and values that no tracked leaf reaches are
    /// skipped. A value used several times sums its gradients. A tracked leaf
    /// that `loss` does not depend on gets zeros. The tape is left unchanged,
    /// so `backward` may be called again (for another loss, say). A second
    /// call for the same loss agrees with the first to rounding, not always to
    /// the bit: the first may use the gradients that a `sum` or `mean` of a
    /// fused chain computed in the same pass as its value, which the later
    /// calls recompute. The sweep is not recorded: higher-order gradients are
    /// out of scope.
    ///
    /// ```
    /// use tapeloss::{Tape, ndarray::array};
    ///
    /// # fn main() -> tapeloss::Result<()> {
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(array![1.0, 2.0, 3.0].into_dyn());
    /// let loss = x.mul(x)?.sum()?; // x used twice: the gradient is 2x
    /// let grads = tape.backward(loss)?;
    /// assert_eq!(grads.wrt(x).unwrap(), &array![2.0, 4.0, 6.0].into_dyn());
    /// assert!(tape.backward(x).is_err()); // three elements: not a loss
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::NotScalar`] naming the shape when `loss` has more or fewer than
    /// one element; [`Error::ForeignVar`] when `loss` belongs to another tape.
    pub fn backward(&self, loss: Var<'_, F>) -> Result<Gradients<F>> {
        if !std::ptr::eq(self, loss.tape) {
            return Err(Error::ForeignVar { op: "backward" });
        }
        let nodes = self.nodes.borrow();
        backprop::sweep(self.id, &nodes, loss.index, self.checks_gradients.get())
    }

    /// Records a node (with its value, or `None` for a lazy elementwise
    /// result) and returns its handle.
    fn push(&self, value: Option<ArrayD<F>>, shape: Vec<usize>, op: Op<F>, requires_grad: bool) -> Var<'_, F> {
        let value = lent::Value::Owned(value.map(Into::into).unwrap_or_default());
        self.push_value(value, shape, op, requires_grad)
    }

    /// [`Tape::push`] with the node's value as it is stored.
    fn push_value(&self, value: lent::Value<F>, shape: Vec<usize>, op: Op<F>, requires_grad: bool) -> Var<'_, F> {
        let mut nodes = self.nodes.borrow_mut();
        nodes.push(Node {
            value,
            shape,
            op,
            requires_grad,
            speculation: Cell::default(),
        });
        Var {
            tape: self,
            index: nodes.len() - 1,
        }
    }

    /// Records a leaf holding `value`: the array itself when this tape was
    /// lent it ([`lent::with_lent`]) and it is in standard row-major layout,
    /// otherwise a copy in a pooled buffer.
    pub(crate) fn leaf_from(&self, value: &ArrayD<F>, requires_grad: bool) -> Var<'_, F> {
        let lent = self.lent.iter().flatten().find(|&&lent| std::ptr::eq(lent, value));
        match lent {
            Some(&lent) if lent.is_standard_layout() => {
                self.push_value(lent::Value::Lent(lent), lent.shape().to_vec(), Op::Leaf, requires_grad)
            }
            _ => self.push_leaf(pool::copy_of(value), requires_grad),
        }
    }

    /// Records a leaf holding `value`.
    fn push_leaf(&self, value: ArrayD<F>, requires_grad: bool) -> Var<'_, F> {
        let shape = value.shape().to_vec();
        self.push(Some(value), shape, Op::Leaf, requires_grad)
    }

    /// Records the result of an op on `inputs` (computed, or `None` for a
    /// lazy elementwise result of `shape`); it needs a gradient when any
    /// input does.
    fn record(&self, value: Option<ArrayD<F>>, shape: Vec<usize>, op: Op<F>) -> Var<'_, F> {
        let requires_grad = {
            let nodes = self.nodes.borrow();
            op.inputs().iter().any(|&i| nodes[i].requires_grad)
        };
        self.push(value, shape, op, requires_grad)
    }
}

impl<F: Float> Default for Tape<F> {
    fn default() -> Self {
        Tape::new()
    }
}

impl<F: Float> fmt::Debug for Tape<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tape")
            .field("id", &self.id)
            .field("values", &self.len())
            .finish()
    }
}

/// Reading values and checking provenance.
impl<'t, F: Float> Var<'t, F> {
    /// A copy of this value's array (the forward result of the op that made it).
    pub fn value(&self) -> ArrayD<F> {
        self.value_ref().clone()
    }

    /// This value's shape.
    pub fn shape(&self) -> Vec<usize> {
        self.tape.nodes.borrow()[self.index].shape.clone()
    }

    /// The single element of a one-element value.
    ///
    /// # Errors
    /// [`Error::NotScalar`] when the value has more or fewer than one element.
    pub fn item(&self) -> Result<F> {
        let value = self.value_ref();
        match value.len() {
            1 => Ok(value.iter().copied().next().unwrap_or_else(F::nan)),
            _ => Err(Error::NotScalar {
                op: "item",
                shape: value.shape().to_vec(),
            }),
        }
    }

    /// Whether this value is a tracked leaf or depends on one (only then does
    /// the backward sweep visit it).
    pub fn requires_grad(&self) -> bool {
        self.tape.nodes.borrow()[self.index].requires_grad
    }

    /// The tape this value is recorded on.
    pub fn tape(&self) -> &'t Tape<F> {
        self.tape
    }

    /// Reads the value in place, without the copy [`Var::value`] makes (for
    /// a loss's `record` that derives a mask or checks its input).
    pub(crate) fn with_value<R>(&self, f: impl FnOnce(&ArrayD<F>) -> R) -> R {
        f(&self.value_ref())
    }

    /// The sum of the elements, streamed through a lazy chain rather than
    /// materialising it; when the chain leads to a tracked leaf, also its
    /// gradients for the uniform `seed` (see [`fusion::Speculation`]), from
    /// the same pass.
    fn sum_of_elements(&self, seed: F) -> (F, Option<fusion::Speculation<F>>) {
        let nodes = self.tape.nodes.borrow();
        let uses = || {
            // The uses so far, and the coming reduction's.
            let mut uses = backprop::count_uses(&nodes);
            uses[self.index] += 1;
            uses
        };
        let check = self.tape.checks_gradients.get();
        fusion::sum_and_gradients(&nodes, uses, self.index, seed, check)
    }

    /// Keeps the gradients a reduction computed with its value, for the sweep.
    fn keep_speculation(&self, speculation: Option<fusion::Speculation<F>>) {
        if speculation.is_some() {
            self.tape.nodes.borrow()[self.index].speculation.set(speculation);
        }
    }

    /// Sums (of squares, with `squares`) of each row of `width` elements,
    /// streamed through a lazy chain; `None` when the value is not one.
    fn row_sums(&self, width: usize, squares: bool) -> Option<Vec<F>> {
        fusion::row_sums(&self.tape.nodes.borrow(), self.index, width, squares)
    }

    /// Borrows the value in place, computing it first if it is a lazy
    /// elementwise result.
    fn value_ref(&self) -> Ref<'t, ArrayD<F>> {
        Ref::map(self.tape.nodes.borrow(), |nodes| fusion::value(nodes, self.index))
    }

    /// Fails with [`Error::ForeignVar`] unless `other` is on the same tape.
    fn same_tape(&self, other: Var<'t, F>, op: &'static str) -> Result<()> {
        if std::ptr::eq(self.tape, other.tape) {
            Ok(())
        } else {
            Err(Error::ForeignVar { op })
        }
    }

    /// Records `value` as the result of `op`.
    fn record(&self, value: ArrayD<F>, op: Op<F>) -> Var<'t, F> {
        let shape = value.shape().to_vec();
        self.tape.record(Some(value), shape, op)
    }

    /// Records the lazy result of the elementwise `op`, of `shape`.
    fn record_lazy(&self, shape: Vec<usize>, op: Op<F>) -> Var<'t, F> {
        self.tape.record(None, shape, op)
    }
}

impl<F: Float> fmt::Debug for Var<'_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Var")
            .field("tape", &self.tape.id)
            .field("index", &self.index)
            .field("shape", &self.shape())
            .finish()
    }
}

/// A dropped tape's arrays go back to this thread's buffer pool.
impl<F: Float> Drop for Tape<F> {
    fn drop(&mut self) {
        for node in self.nodes.get_mut().drain(..) {
            if let Some(value) = node.value.into_inner() {
                pool::give_array(value);
            }
            if let Some(speculation) = node.speculation.into_inner() {
                speculation.recycle();
            }
        }
    }
}

/// Gradients not taken go back to this thread's buffer pool.
impl<F: Float> Drop for Gradients<F> {
    fn drop(&mut self) {
        self.by_node.drain(..).flatten().for_each(pool::give_array);
    }
}

impl<F: Float> Gradients<F> {
    /// The gradient of the loss with respect to `v`, with `v`'s shape; `None`
    /// when `v` is not a tracked leaf (a constant or an intermediate value) or
    /// belongs to another tape.
    ///
    /// ```
    /// use tapeloss::{Tape, ndarray::array};
    ///
    /// # fn main() -> tapeloss::Result<()> {
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(array![3.0].into_dyn());
    /// let c = tape.constant(array![2.0].into_dyn());
    /// let y = x.mul(c)?;
    /// let grads = tape.backward(y.sum()?)?;
    /// assert_eq!(grads.wrt(x).unwrap(), &array![2.0].into_dyn());
    /// assert!(grads.wrt(c).is_none()); // a constant
    /// assert!(grads.wrt(y).is_none()); // an intermediate value
    /// # Ok(()) }
    /// ```
    pub fn wrt(&self, v: Var<'_, F>) -> Option<&ArrayD<F>> {
        if v.tape.id != self.tape_id {
            return None;
        }
        self.by_node.get(v.index).and_then(Option::as_ref)
    }

    /// Takes the gradient of `v` out of the set, without copying it; `None`
    /// where [`Gradients::wrt`] would be `None`, or once it has been taken.
    pub fn take(&mut self, v: Var<'_, F>) -> Option<ArrayD<F>> {
        if v.tape.id != self.tape_id {
            return None;
        }
        self.by_node.get_mut(v.index).and_then(Option::take)
    }

    /// [`Gradients::take`], with whether the gradient is known to be finite
    /// (`false` means only that it was not checked).
    pub(crate) fn take_checked(&mut self, v: Var<'_, F>) -> Option<(ArrayD<F>, bool)> {
        let grad = self.take(v)?;
        Some((grad, self.finite.get(v.index).copied().unwrap_or(false)))
    }
}

impl<F: Float> fmt::Debug for Gradients<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let leaves: Vec<(usize, &[usize])> = self
            .by_node
            .iter()
            .enumerate()
            .filter_map(|(i, g)| g.as_ref().map(|g| (i, g.shape())))
            .collect();
        f.debug_struct("Gradients")
            .field("tape", &self.tape_id)
            .field("leaves", &leaves)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{ArrayD, IxDyn};

    use super::{Tape, Var};
    use crate::error::Result;

    /// Whether the gradient of `x` comes back vouched finite through `loss`,
    /// on a tape that checks or not.
    fn vouched(x: &ArrayD<f64>, check: bool, loss: impl Fn(Var<'_, f64>) -> Result<Var<'_, f64>>) -> Result<bool> {
        let tape = Tape::new();
        if check {
            tape.check_gradients();
        }
        let v = tape.var(x.clone());
        let mut grads = tape.backward(loss(v)?)?;
        Ok(grads.take_checked(v).is_some_and(|(_, finite)| finite))
    }

    #[test]
    fn only_a_tape_that_checks_vouches_for_its_gradients() -> Result<()> {
        // A chain differentiated by its `sum` with its value, and one seeded
        // by rows in the sweep (`sum_axis`).
        fn by_sum(v: Var<'_, f64>) -> Result<Var<'_, f64>> {
            v.square()?.sum()
        }
        fn by_rows(v: Var<'_, f64>) -> Result<Var<'_, f64>> {
            v.square()?.sum_axis(1, false)?.sqrt()?.sum()
        }
        let x = ArrayD::from_shape_fn(IxDyn(&[4, 300]), |i| 1.0 + (i[0] * 300 + i[1]) as f64 / 7.0);
        for check in [true, false] {
            assert_eq!(vouched(&x, check, by_sum)?, check);
            assert_eq!(vouched(&x, check, by_rows)?, check);
        }
        // 2x overflows at 1e308: checked, and found not finite.
        let mut huge = x.clone();
        huge[[3, 299]] = 1e308;
        assert!(!vouched(&huge, true, by_sum)?);
        Ok(())
    }
}
