//! The reverse sweep: one pass over the record, newest first, with one `match`
//! over the op enum. Each arm hands the output gradient to the op's local
//! backward rule, which lives beside the op's forward in `ops/`.
//!
//! Memory: a node's gradient is taken out of `pending` when the node is
//! visited and dropped (or moved into an input's gradient, or overwritten in
//! place) before the next node, so at any time only the gradients still to be
//! passed on are alive. Nodes that no tracked leaf reaches never receive one.
//!
//! A chain that reads slices of an input by rows adds their gradients
//! straight into the input's pending gradient; where no slice has written
//! yet, it overwrites instead, and the rows no slice covers are zeroed only
//! when the gradient is next used ([`Sweep::take_to_scatter`]).

use ndarray::ArrayD;

use super::fusion::{self, Seed};
use super::layout::{self, flat, flat_mut, rows_along, zeros};
use super::ops::reduce::{Normalised, normalised_backward};
use super::ops::structural::SliceRows;
use super::ops::{Op, binary, reduce, structural};
use super::pool;
use super::{Gradients, Node};
use crate::error::{Error, Result};
use crate::float::Float;
use crate::kernels::parallel;

/// Gradients in flight during the sweep, indexed like the tape.
pub(super) struct Sweep<'a, F: Float> {
    nodes: &'a [Node<F>],
    pending: Vec<Option<ArrayD<F>>>,
    /// The slices, all along one axis, whose rows alone hold node `i`'s
    /// pending gradient when that was only ever overwritten there by chains
    /// ([`Sweep::take_to_scatter`]): its other elements are stale until
    /// [`Sweep::complete`] zeros them. Empty when every element holds it.
    written: Vec<Vec<SliceRows>>,
    /// Node `i`'s pending gradient came whole from one chain, which saw every
    /// element finite ([`Sweep::send_checked`]); false once anything else
    /// touches it.
    finite: Vec<bool>,
    /// Whether chains check the gradients they write ([`Tape::check_gradients`](super::Tape::check_gradients));
    /// without it, none is known finite.
    check: bool,
}

impl<'a, F: Float> Sweep<'a, F> {
    /// Whether chains are to check the gradients they write.
    pub(super) fn checks(&self) -> bool {
        self.check
    }

    /// The forward value of node `i` (computed now if it is lazy and was
    /// never needed before).
    pub(super) fn value(&self, i: usize) -> &'a ArrayD<F> {
        fusion::value(self.nodes, i)
    }

    /// The shape of node `i`, without computing a lazy value.
    pub(super) fn shape(&self, i: usize) -> &'a [usize] {
        &self.nodes[i].shape
    }

    /// The whole record.
    pub(super) fn nodes(&self) -> &'a [Node<F>] {
        self.nodes
    }

    /// Whether node `i` leads to a tracked leaf, so that its gradient is worth
    /// computing at all.
    pub(super) fn needs(&self, i: usize) -> bool {
        self.nodes[i].requires_grad
    }

    /// Adds `grad` to node `i`'s pending gradient (a value used several times
    /// sums its contributions). The first contribution is moved in, not
    /// copied; later ones are added in place.
    pub(super) fn send(&mut self, i: usize, grad: ArrayD<F>) {
        self.send_checked(i, grad, false);
    }

    /// [`Sweep::send`], for a gradient known to be finite when `finite`: the
    /// knowledge is kept while it is the only contribution.
    pub(super) fn send_checked(&mut self, i: usize, grad: ArrayD<F>, finite: bool) {
        if !self.needs(i) {
            pool::give_array(grad);
            return;
        }
        debug_assert_eq!(grad.shape(), self.shape(i), "gradient shape of node {i}");
        self.complete(i);
        self.finite[i] = finite && self.pending[i].is_none();
        match &mut self.pending[i] {
            Some(acc) => {
                flat_mut(acc, |acc| {
                    parallel::for_each_piece(
                        acc,
                        &flat(&grad),
                        #[inline(always)]
                        |acc, grad| acc.iter_mut().zip(grad).for_each(|(a, &g)| *a += g),
                    );
                });
                pool::give_array(grad);
            }
            slot @ None => *slot = Some(grad),
        }
    }

    /// Takes node `i`'s pending gradient out, in standard layout (zeros when
    /// none is pending), for a rule that adds into it in place and then hands
    /// it back with [`Sweep::send`] (which moves it in, nothing being
    /// pending then).
    fn take_pending(&mut self, i: usize) -> ArrayD<F> {
        match self.take(i) {
            Some(grad) if grad.is_standard_layout() => grad,
            Some(grad) => grad.as_standard_layout().into_owned(),
            None => zeros(self.shape(i)),
        }
    }

    /// Whether node `i` already has a gradient pending (some of its uses
    /// have been swept).
    pub(super) fn is_pending(&self, i: usize) -> bool {
        self.pending[i].is_some()
    }

    /// Lets `add` add a contribution into node `i`'s pending gradient, as a
    /// row-major slice of the node's shape, starting from zeros when nothing
    /// is pending yet. For backward rules that reach only some elements
    /// (`gather`, slicing): no full-size temporary is made when a gradient is
    /// already pending. `add` returns whether every element it wrote is
    /// finite: then a gradient that started from zeros is known finite, and
    /// spares the caller a pass checking it (NLL's 16 MB, written at 4096
    /// targets).
    pub(super) fn accumulate(&mut self, i: usize, add: impl FnOnce(&mut [F]) -> bool) {
        if !self.needs(i) {
            return;
        }
        self.complete(i);
        let fresh = self.pending[i].is_none();
        let shape = self.shape(i);
        let written_finite = flat_mut(self.pending[i].get_or_insert_with(|| zeros(shape)), add);
        self.finite[i] = fresh && written_finite;
    }

    /// Takes node `i`'s pending gradient out, whole.
    fn take(&mut self, i: usize) -> Option<ArrayD<F>> {
        self.complete(i);
        self.pending[i].take()
    }

    /// Zeros the elements of node `i`'s pending gradient outside the slices
    /// that [`Sweep::written`] lists, which then hold it whole.
    fn complete(&mut self, i: usize) {
        let written = std::mem::take(&mut self.written[i]);
        if let (Some(grad), Some(first)) = (&mut self.pending[i], written.first()) {
            let gaps = structural::gaps(first.stride, &written);
            if !gaps.is_empty() {
                flat_mut(grad, |grad| {
                    parallel::for_each_row(
                        grad,
                        first.stride,
                        #[inline(always)]
                        |_, row| gaps.iter().for_each(|gap| row[gap.clone()].fill(F::zero())),
                    )
                });
            }
        }
    }

    /// Node `i`'s pending gradient, taken out for a chain to add the
    /// gradients of the `slices` of node `i` into it by rows, and, when the
    /// chain may overwrite some of them instead, for each slice whether it
    /// may: when nothing has been written in its rows yet (no gradient is
    /// pending, or one only in the rows of other slices along the same axis)
    /// nor by an earlier slice in `slices`. A new gradient then needs no
    /// zeroing pass, and the first write to rows reads nothing. `None` when
    /// the gradient is whole (zeros where nothing was written), for a slice
    /// that would add into rows only partly written. Hand it back with
    /// [`Sweep::scattered`].
    pub(super) fn take_to_scatter(&mut self, i: usize, slices: &[SliceRows]) -> (ArrayD<F>, Option<Vec<bool>>) {
        // What is written so far is known finite: nothing (the rest is zeroed
        // before use), or a gradient known so.
        self.finite[i] |= self.pending[i].is_none();
        match self.fresh_slices(i, slices) {
            Some(fresh) => {
                let grad = (self.pending[i].take())
                    .unwrap_or_else(|| layout::from_vec(self.shape(i), pool::for_overwrite(self.nodes[i].len())));
                (grad, Some(fresh))
            }
            None => (self.take_pending(i), None),
        }
    }

    /// Which of `slices` of node `i` would be the first to write their rows
    /// of its gradient, when each of the others adds into rows already
    /// written whole (by an earlier slice of the same rows).
    fn fresh_slices(&self, i: usize, slices: &[SliceRows]) -> Option<Vec<bool>> {
        if self.pending[i].is_some() && self.written[i].is_empty() {
            return None; // a whole gradient is pending
        }
        let stride = slices.first()?.stride;
        let mut written = self.written[i].clone();
        if stride == 0 || !written.iter().chain(slices).all(|rows| rows.stride == stride) {
            return None; // not all along one axis
        }
        (slices.iter())
            .map(|&rows| {
                let fresh = written.iter().all(|other| other.disjoint(rows));
                let whole = fresh || written.contains(&rows);
                written.push(rows);
                whole.then_some(fresh)
            })
            .collect()
    }

    /// Hands back node `i`'s gradient taken by [`Sweep::take_to_scatter`],
    /// now written in the rows of `slices` too; `partial` when it was taken
    /// with flags (not whole); `finite` when every element the chain wrote
    /// there is.
    pub(super) fn scattered(&mut self, i: usize, grad: ArrayD<F>, slices: &[SliceRows], partial: bool, finite: bool) {
        let finite = finite && self.finite[i];
        if partial {
            // Nothing else is pending: the gradient was taken out.
            self.pending[i] = Some(grad);
            self.written[i].extend(slices.iter().filter(|&&rows| rows.row > 0));
            self.finite[i] = finite;
        } else {
            self.send_checked(i, grad, finite);
        }
    }
}

/// How many times each of `nodes` is read by the others (indexed like them).
pub(super) fn count_uses<F: Float>(nodes: &[Node<F>]) -> Vec<u32> {
    let mut uses = vec![0u32; nodes.len()];
    for node in nodes {
        for input in node.op.inputs() {
            uses[input] += 1;
        }
    }
    uses
}

/// Differentiates node `root` with respect to every tracked leaf.
pub(super) fn sweep<F: Float>(tape_id: u64, nodes: &[Node<F>], root: usize, check: bool) -> Result<Gradients<F>> {
    let root_shape = nodes[root].shape.as_slice();
    if nodes[root].len() != 1 {
        return Err(Error::NotScalar {
            op: "backward",
            shape: root_shape.to_vec(),
        });
    }
    let mut sweep = Sweep {
        nodes,
        pending: (0..nodes.len()).map(|_| None).collect(),
        written: vec![Vec::new(); nodes.len()],
        finite: vec![false; nodes.len()],
        check,
    };
    sweep.send(root, ArrayD::ones(root_shape));
    // How many times each value is read: a lazy chain absorbs only values
    // that it alone reads.
    let uses = count_uses(&nodes[..=root]);

    for i in (0..=root).rev() {
        let node = &nodes[i];
        if matches!(node.op, Op::Leaf) {
            continue; // a leaf keeps its gradient: it is the result
        }
        // Taking the gradient frees it once it has been passed on.
        let Some(grad) = sweep.take(i) else {
            continue;
        };
        // An op with an empty result passes empty or zero gradients: nothing to
        // compute, and no kernel ever sees a zero-length row.
        if node.len() == 0 {
            for input in node.op.inputs() {
                sweep.send(input, ArrayD::zeros(sweep.shape(input)));
            }
            continue;
        }
        if fusion::is_lazy_op(nodes, i) {
            fusion::backward(&mut sweep, &uses, i, Seed::Array(grad));
            continue;
        }
        // The op's own value, for the rules that need it (a lazy slice's is
        // never copied out just to be differentiated).
        let out = || fusion::value(nodes, i);
        // The rules that only read `grad` hand it back here, to the pool.
        let mut read_only = None;
        match node.op {
            Op::Leaf | Op::Unary { .. } => {} // leaves were skipped; unary ops are lazy
            Op::Binary { lhs, rhs, f } => binary::backward(&mut sweep, f, lhs, rhs, out(), grad),
            Op::Sum { input } | Op::Mean { input } => {
                let n = sweep.nodes()[input].len();
                let upstream = reduce::only(&grad);
                let g = match node.op {
                    Op::Mean { .. } => reduce::mean_share(upstream, n),
                    _ => upstream,
                };
                if fusion::is_lazy_op(nodes, input) && uses[input] == 1 {
                    // The chain behind a reduction needs no gradient array,
                    // and may have been differentiated with its value.
                    match node.speculation.take() {
                        Some(speculation) => fusion::send_speculation(&mut sweep, speculation, upstream),
                        None => fusion::backward(&mut sweep, &uses, input, Seed::Uniform(g)),
                    }
                } else {
                    sweep.send(input, ArrayD::from_elem(sweep.shape(input), g));
                }
            }
            Op::SumAxis { input, axis } | Op::MeanAxis { input, axis } | Op::NormAxis { input, axis }
                if fusion::is_lazy_op(nodes, input)
                    && uses[input] == 1
                    && rows_along(sweep.shape(input), axis).is_some() =>
            {
                // The chain behind a reduction along its last axis needs no
                // gradient array: one factor per row seeds it.
                let width = sweep.shape(input)[axis];
                let g = flat(&grad);
                let (grad, norms) = match node.op {
                    Op::NormAxis { .. } => (g.to_vec(), Some(flat(out()).to_vec())),
                    Op::MeanAxis { .. } => (g.iter().map(|&g| g / F::from_f64(width as f64)).collect(), None),
                    _ => (g.to_vec(), None),
                };
                let seed = Seed::Rows { grad, width, norms };
                fusion::backward(&mut sweep, &uses, input, seed);
            }
            Op::SumAxis { input, axis, .. } => {
                let g = reduce::sum_axis_backward(sweep.shape(input), axis, &grad, F::one());
                sweep.send(input, g);
            }
            Op::MeanAxis { input, axis, .. } => {
                let shape = sweep.shape(input);
                let scale = F::one() / F::from_f64(shape[axis] as f64);
                sweep.send(input, reduce::sum_axis_backward(shape, axis, &grad, scale));
            }
            Op::MaxAxis { input, axis, .. } => {
                let g = reduce::max_axis_backward(sweep.value(input), out(), axis, &grad);
                sweep.send(input, g);
            }
            Op::NormAxis { input, axis } => {
                let g = reduce::norm_axis_backward(sweep.value(input), out(), axis, &grad);
                sweep.send(input, g);
            }
            Op::LogSumExpAxis { input, axis, .. } => {
                let g = reduce::logsumexp_axis_backward(sweep.value(input), out(), axis, &grad);
                sweep.send(input, g);
            }
            Op::LogSoftmax { input, axis } => {
                sweep.send(input, normalised_backward(out(), axis, Normalised::Log, grad))
            }
            Op::Softmax { input, axis } => {
                sweep.send(input, normalised_backward(out(), axis, Normalised::Probabilities, grad))
            }
            Op::MatMul { lhs, rhs } => {
                structural::matmul_backward(&mut sweep, lhs, rhs, &grad);
                read_only = Some(grad);
            }
            Op::Reshape { input } => {
                let g = structural::reshape_backward(sweep.shape(input), grad);
                sweep.send(input, g);
            }
            Op::Gather {
                input,
                axis,
                ref indices,
            } => {
                structural::gather_backward(&mut sweep, input, axis, indices, &grad);
                read_only = Some(grad);
            }
            Op::SliceAxis {
                input,
                axis,
                start,
                end,
            } => {
                structural::slice_axis_backward(&mut sweep, input, axis, (start, end), &grad);
                read_only = Some(grad);
            }
            Op::WhereMask {
                on_true,
                on_false,
                ref mask,
            } => structural::where_mask_backward(&mut sweep, on_true, on_false, mask, grad),
        }
        if let Some(grad) = read_only {
            pool::give_array(grad);
        }
    }

    // A tracked leaf that the root does not depend on has a zero gradient.
    for (i, node) in nodes.iter().enumerate() {
        sweep.complete(i);
        if matches!(node.op, Op::Leaf) && node.requires_grad && sweep.pending[i].is_none() {
            sweep.pending[i] = Some(ArrayD::zeros(node.shape.as_slice()));
        }
    }
    // Only leaves can still hold a gradient: every other node's was taken.
    Ok(Gradients {
        tape_id,
        by_node: sweep.pending,
        finite: sweep.finite,
    })
}
