//! The reverse sweep: one pass over the record, newest first, with one `match`
//! over the op enum. Each arm hands the output gradient to the op's local
//! backward rule, which lives beside the op's forward in `ops/`.
//!
//! Memory: a node's gradient is taken out of `pending` when the node is
//! visited and dropped (or moved into an input's gradient, or overwritten in
//! place) before the next node, so at any time only the gradients still to be
//! passed on are alive. Nodes that no tracked leaf reaches never receive one.

use ndarray::ArrayD;

use super::fusion::{self, Seed};
use super::layout::{flat, flat_mut, rows_along, zeros};
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
}

impl<'a, F: Float> Sweep<'a, F> {
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
        if !self.needs(i) {
            pool::give_array(grad);
            return;
        }
        debug_assert_eq!(grad.shape(), self.shape(i), "gradient shape of node {i}");
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
    pub(super) fn take_pending(&mut self, i: usize) -> ArrayD<F> {
        match self.pending[i].take() {
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
    /// already pending.
    pub(super) fn accumulate(&mut self, i: usize, add: impl FnOnce(&mut [F])) {
        if !self.needs(i) {
            return;
        }
        let shape = self.shape(i);
        flat_mut(self.pending[i].get_or_insert_with(|| zeros(shape)), add);
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
pub(super) fn sweep<F: Float>(tape_id: u64, nodes: &[Node<F>], root: usize) -> Result<Gradients<F>> {
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
        let Some(grad) = sweep.pending[i].take() else {
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
            Op::LogSoftmax { input, axis } => sweep.send(input, reduce::log_softmax_backward(out(), axis, grad)),
            Op::Softmax { input, axis } => sweep.send(input, reduce::softmax_backward(out(), axis, grad)),
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
        if matches!(node.op, Op::Leaf) && node.requires_grad && sweep.pending[i].is_none() {
            sweep.pending[i] = Some(ArrayD::zeros(node.shape.as_slice()));
        }
    }
    // Only leaves can still hold a gradient: every other node's was taken.
    Ok(Gradients {
        tape_id,
        by_node: sweep.pending,
    })
}
