//! Lazy elementwise chains, run one block of elements at a time.
//!
//! An elementwise op (every unary op, and a binary op whose operands either
//! have the output's elements or hold a single one) records no array. Its
//! value is computed when something needs it: then the chain of lazy ops
//! behind it becomes a [`Program`], a list of steps over registers of
//! [`BLOCK`] elements, run block by block over the whole array. Every
//! intermediate lives in a register that stays in L1, and only the result is
//! written to memory.
//!
//! Two consumers never need the array at all:
//! - `sum` and `mean` reduce the program's blocks as they come;
//! - the backward sweep: at a lazy node it runs the program forward for a
//!   block, then back through the steps, and writes only the gradients that
//!   leave the chain (those of materialised inputs, and of lazy values also
//!   used outside it). The chain's values are recomputed rather than stored:
//!   a few flops per element against a pass over memory for each op.
//!
//! A slice (`slice_axis`, `index_axis`) is lazy too: a chain reads its rows
//! straight from the sliced array, a block at a time, and the sweep adds
//! their gradients straight into that array's gradient, so neither the
//! slice nor its gradient is ever made as an array of its own (triplet and
//! contrastive losses slice their `[N, 3, D]` or `[N, 2, D]` input).
//!
//! Each step's maths is `Unary::apply`/`derivative` and
//! `Binary::apply`/`partials`; this file only schedules them.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};

use ndarray::ArrayD;
use smallvec::{SmallVec, smallvec};

use super::Node;
use super::backprop::Sweep;
use super::layout::{self, flat, for_each_row_segment, from_vec, sum};
use super::ops::reduce::norm_slopes;
use super::ops::structural::{self, SliceRows};
use super::ops::{Binary, Op, Unary, chain, specialise_binary, specialise_unary};
use super::pool;
use crate::float::Float;
use crate::kernels::fastmath::MulAdd;
use crate::kernels::parallel::{self, Plan, Rows, Split};
use crate::kernels::pointwise::holds_for_all;

/// Elements per register: a program of a dozen steps keeps its values and
/// gradients within L1 and L2. Each step costs a fixed overhead per block
/// (its dispatch, its loop's set-up), about 100 ns a block for Huber's ten
/// passes: 1024 measured 5–10% faster than 512 for the pointwise losses,
/// triplet and contrastive on the tape, and 2048 no faster than 1024.
const BLOCK: usize = 1024;

/// How a program's blocks are spread over the cores: leaves of 32 register
/// blocks, combined along `parallel`'s fixed tree (so sums have the same
/// bits on any number of threads), and the pool from 2¹⁸ elements.
const PLAN: Plan = Plan {
    block: 32 * BLOCK,
    min_parallel: 1 << 18,
    streaming: false,
};

/// Whether node `i` is an elementwise op whose value is computed lazily.
pub(super) fn is_lazy_op<F: Float>(nodes: &[Node<F>], i: usize) -> bool {
    lazy_op(nodes, i).is_some()
}

/// A lazy op's function and the tape indices of its operands (a unary op's
/// operand twice).
type LazyOp<F> = (Function<F>, [usize; 2]);

/// Node `i`'s function and operands, when it is an elementwise op computed
/// lazily.
fn lazy_op<F: Float>(nodes: &[Node<F>], i: usize) -> Option<LazyOp<F>> {
    match nodes[i].op {
        Op::Unary { input, f } => Some((Function::Unary(f), [input; 2])),
        Op::Binary { lhs, rhs, f } if fuses_binary(nodes[i].len(), nodes[lhs].len(), nodes[rhs].len()) => {
            Some((Function::Binary(f), [lhs, rhs]))
        }
        _ => None,
    }
}

/// Whether a binary op with operands of `lhs` and `rhs` elements and a
/// result of `out` elements is run lazily: each operand has the result's
/// elements (in its row-major order, since only axes of size 1 can have been
/// added) or a single element, broadcast.
pub(crate) fn fuses_binary(out: usize, lhs: usize, rhs: usize) -> bool {
    (lhs == out || lhs == 1) && (rhs == out || rhs == 1)
}

/// The value of node `i`, computed (and kept) first if it is lazy: a
/// slice is copied out of its input, an elementwise chain is run.
pub(super) fn value<F: Float>(nodes: &[Node<F>], i: usize) -> &ArrayD<F> {
    nodes[i].value.get_or_init(|| match nodes[i].op {
        Op::SliceAxis {
            input,
            axis,
            start,
            end,
        } => structural::slice_forward(value(nodes, input), axis, (start, end), &nodes[i].shape),
        _ => evaluate(nodes, i),
    })
}

/// The value of the lazy elementwise node `i`, its chain run block by block.
fn evaluate<F: Float>(nodes: &[Node<F>], i: usize) -> ArrayD<F> {
    let program = Program::to_evaluate(nodes, i);
    let inputs = program.input_values(nodes);
    let (_, mut outputs) = fill(
        PLAN,
        program.len,
        (1, 1, Start::Overwritten),
        (),
        #[inline(always)]
        |m, range, out, ()| {
            program.run(
                m,
                &inputs,
                range.clone(),
                #[inline(always)]
                |block, values| {
                    out[0][block.start - range.start..block.end - range.start].copy_from_slice(values.root());
                },
            );
            F::zero()
        },
    );
    from_vec(&nodes[i].shape, outputs.pop().unwrap_or_default())
}

/// The sum of node `i`'s elements, without materialising it if it is lazy.
pub(super) fn sum_of<F: Float>(nodes: &[Node<F>], i: usize) -> F {
    if nodes[i].value.get().is_some() || !is_lazy_op(nodes, i) {
        return sum(&flat(value(nodes, i)));
    }
    let program = Program::to_evaluate(nodes, i);
    let inputs = program.input_values(nodes);
    fill(
        PLAN,
        program.len,
        (0, 1, Start::Overwritten),
        (),
        #[inline(always)]
        |m, range, _, ()| {
            let mut total = F::zero();
            program.run(
                m,
                &inputs,
                range,
                #[inline(always)]
                |_, values| total += sum(values.root()),
            );
            total
        },
    )
    .0
}

/// The sums of each row of `width` elements of node `i` (of their squares
/// when `squares`), streamed through its lazy chain; `None` when the node is
/// not a lazy chain or is already materialised (the caller reads the array).
pub(super) fn row_sums<F: Float>(nodes: &[Node<F>], i: usize, width: usize, squares: bool) -> Option<Vec<F>> {
    if nodes[i].value.get().is_some() || !is_lazy_op(nodes, i) || width == 0 {
        return None;
    }
    let program = Program::to_evaluate(nodes, i);
    let inputs = program.input_values(nodes);
    let (_, mut outputs) = fill(
        PLAN.rows(width),
        program.len / width,
        (1, 1, Start::Zeros),
        (),
        #[inline(always)]
        |m, rows, out, ()| {
            let first = rows.start * width;
            program.run(
                m,
                &inputs,
                first..rows.end * width,
                #[inline(always)]
                |block, values| {
                    for_each_row_segment(
                        block.clone(),
                        width,
                        #[inline(always)]
                        |row, at| {
                            let segment = &values.root()[at.start - block.start..at.end - block.start];
                            out[0][row - rows.start] += if squares {
                                layout::sum_of(segment, |v| v * v)
                            } else {
                                sum(segment)
                            };
                        },
                    )
                },
            );
            F::zero()
        },
    );
    outputs.pop()
}

/// What `fill`'s output arrays hold when the leaves get them.
#[derive(Clone, Copy)]
enum Start {
    /// Zeros, for leaves that add into them (row sums, whose rows span
    /// blocks).
    Zeros,
    /// Anything: every leaf overwrites each element of its slices first (a
    /// reused buffer then needs no zeroing pass, see [`pool::for_overwrite`]).
    Overwritten,
}

/// Runs `leaf` over `0..n` items cut along `plan`'s tree, with `outputs` arrays
/// of `n` items of `width` elements to write, filled in place, and `extra`
/// work cut alike: each call gets its range of items, those arrays' elements
/// for that range and its part of `extra`. Returns the leaves' results summed
/// along the tree, and the arrays.
fn fill<F: Float, E: Split>(
    plan: Plan,
    n: usize,
    (outputs, width, start): (usize, usize, Start),
    extra: E,
    leaf: impl Fn(MulAdd, Range<usize>, &mut [&mut [F]], E) -> F + Sync,
) -> (F, Vec<Vec<F>>) {
    let new = match start {
        Start::Zeros => pool::zeroed,
        Start::Overwritten => pool::for_overwrite,
    };
    let mut arrays: Vec<Vec<F>> = (0..outputs).map(|_| new(n * width)).collect();
    let data: Vec<&mut [F]> = arrays.iter_mut().map(Vec::as_mut_slice).collect();
    let total = parallel::reduce_with(
        (0..n, Rows { data, width }, extra),
        plan,
        #[inline(always)]
        |m, (range, mut slices, extra): (Range<usize>, Rows<Vec<&mut [F]>>, E)| leaf(m, range, &mut slices.data, extra),
        |a, b| a + b,
    );
    (total, arrays)
}

/// The gradient reaching a lazy node from its consumer.
pub(super) enum Seed<F> {
    /// One gradient element per element.
    Array(ArrayD<F>),
    /// The same gradient for every element (from `sum` or `mean`).
    Uniform(F),
    /// One gradient per row of `width` elements (from a reduction along the
    /// last axis): element `e` of row `r` gets `grad[r]`, or, with the rows'
    /// norms, the norm's `grad[r]·y[e]/norm[r]` (0 where the norm is 0),
    /// `y` being the chain's own value. (`y/norm` is taken first: `grad/norm`
    /// can overflow where the product does not.)
    Rows {
        grad: Vec<F>,
        width: usize,
        norms: Option<Vec<F>>,
    },
}

/// The backward rule of the chain ending at lazy node `root`, which received
/// `seed`: runs the chain forward and back one block at a time and sends the
/// gradients that leave it.
///
/// The chain holds `root` and every lazy ancestor with the root's length
/// whose uses all lie within the chain (`uses[j]` counts node `j`'s uses on
/// the whole tape); those never receive a gradient array, and the sweep
/// skips them. A lazy ancestor also used elsewhere, and every materialised
/// input, is sent its share, to be swept in its turn.
///
/// A slice that the chain reads by rows from its input adds its gradient
/// straight into that input's pending gradient (see [`Flow::scattered`]), or
/// overwrites its rows there when nothing was written in them yet.
pub(super) fn backward<F: Float>(sweep: &mut Sweep<'_, F>, uses: &[u32], root: usize, seed: Seed<F>) {
    let nodes = sweep.nodes();
    let program = Program::to_differentiate(nodes, root);
    let flow = Flow::new(&program, nodes, uses, true);
    // Per parent of scattered slices: its gradient, taken from the sweep, and
    // its slices with whether each may overwrite its rows (`copies`, by
    // their place in `flow.scattered`).
    let mut copies: Small<bool> = smallvec![false; flow.scattered.len()];
    let (mut parents, mut claims) = (Vec::new(), Vec::new());
    for (at, &(parent, _)) in flow.parents.iter().enumerate() {
        let own: Small<usize> = (0..flow.scattered.len())
            .filter(|&j| flow.scattered[j].0 == at)
            .collect();
        let slices: Vec<SliceRows> = own.iter().map(|&j| flow.scattered[j].1).collect();
        let (grad, fresh) = sweep.take_to_scatter(parent, &slices);
        for (&j, &fresh) in own.iter().zip(fresh.iter().flatten()) {
            copies[j] = fresh;
        }
        parents.push((parent, grad));
        claims.push((slices, fresh.is_some()));
    }
    let check = sweep.checks();
    let (_, grads, scattered_finite) =
        chain_gradients(nodes, &program, &flow, &seed, (false, check), (&mut parents, &copies));
    for ((node, grad), (slices, partial)) in parents.into_iter().zip(claims) {
        sweep.scattered(node, grad, &slices, partial, scattered_finite);
    }
    for Exported { node, grad, finite } in grads {
        sweep.send_checked(node, grad, finite);
    }
    if let Seed::Array(grad) = seed {
        pool::give_array(grad);
    }
}

/// The gradients a `sum` or `mean` of a lazy chain computed in the same pass
/// as its value, for the sweep to send: one pass over the chain's inputs
/// instead of one to record the value and another, which recomputes the
/// chain anyway, to differentiate it. They are for the seed the reduction
/// gives when its own gradient is 1 (1 for `sum`, 1/n for `mean`); any other
/// gradient `g` scales them by `g`.
///
/// They stay right whatever is recorded later: a value of the chain that is
/// read elsewhere afterwards gets the gradient of that other use through its
/// own node, and the reduction's share went through it here (the chain rule
/// adds the paths' contributions). Only the order of the additions, hence
/// the last bits, can differ from differentiating the chain in the sweep.
pub(super) struct Speculation<F> {
    grads: Vec<Exported<F>>,
}

impl<F: Float> Speculation<F> {
    /// Returns the arrays to the buffer pool.
    pub(super) fn recycle(self) {
        self.grads
            .into_iter()
            .for_each(|exported| pool::give_array(exported.grad));
    }
}

/// The sum of node `i`'s elements, as [`sum_of`] (the same bits), and, when
/// `i` is a lazy chain that leads to a tracked leaf, its gradients for the
/// uniform `seed` from the same pass. `uses` counts the uses of every node
/// recorded so far, the coming reduction's included.
pub(super) fn sum_and_gradients<F: Float>(
    nodes: &[Node<F>],
    uses: impl FnOnce() -> Vec<u32>,
    i: usize,
    seed: F,
    check: bool,
) -> (F, Option<Speculation<F>>) {
    if !nodes[i].requires_grad || nodes[i].value.get().is_some() || !is_lazy_op(nodes, i) {
        return (sum_of(nodes, i), None);
    }
    let program = Program::to_differentiate(nodes, i);
    let flow = Flow::new(&program, nodes, &uses(), false);
    let (total, grads, _) = chain_gradients(
        nodes,
        &program,
        &flow,
        &Seed::Uniform(seed),
        (true, check),
        (&mut [], &[]),
    );
    (total, Some(Speculation { grads }))
}

/// Sends a [`Speculation`]'s gradients, scaled by the reduction's gradient
/// `g`.
pub(super) fn send_speculation<F: Float>(sweep: &mut Sweep<'_, F>, speculation: Speculation<F>, g: F) {
    for Exported { node, mut grad, finite } in speculation.grads {
        if g != F::one() {
            // On both cores: a pass over a gradient the size of the input.
            layout::flat_mut(&mut grad, |grad| {
                parallel::for_each_chunk(
                    grad,
                    #[inline(always)]
                    |piece| {
                        if g == F::zero() {
                            // As `chain` does: a zero gradient stays zero whatever the slope.
                            piece.fill(F::zero());
                        } else {
                            piece.iter_mut().for_each(|v| *v *= g);
                        }
                    },
                )
            });
        }
        // Scaling by at most 1 in magnitude keeps a finite gradient finite.
        sweep.send_checked(node, grad, finite && g.abs() <= F::one());
    }
}

/// The nodes whose gradients leave the chain, in the order of its output
/// arrays: the exported steps, then the inputs.
fn exported<F>(program: &Program<F>, flow: &Flow) -> Vec<usize> {
    (program.steps.iter().enumerate())
        .filter(|&(k, _)| flow.slot_step[k].is_some())
        .map(|(_, step)| step.node)
        .chain(
            (program.inputs.iter().enumerate())
                .filter(|&(k, _)| flow.slot_input[k].is_some())
                .map(|(_, input)| input.node),
        )
        .collect()
}

/// `program`, a chain, run forward and back for `seed` along `flow`, one
/// block at a time: the gradients that leave it, with the nodes they go to
/// and whether each is known to be finite (checked block by block while in
/// cache, which spares the caller a pass over it), and, when `want_sum`, the
/// sum of the root's values (the same bits as [`sum_of`]: the same blocks and
/// tree). The scattered gradients are added into `parents`, the gradients of
/// the inputs of [`Flow::parents`], or copied over their rows there for the
/// scattered slices that `copies` marks; the last result tells whether every
/// element they wrote there is finite.
fn chain_gradients<F: Float>(
    nodes: &[Node<F>],
    program: &Program<F>,
    flow: &Flow,
    seed: &Seed<F>,
    (want_sum, check): (bool, bool),
    (parents, copies): (&mut [(usize, ArrayD<F>)], &[bool]),
) -> (F, Vec<Exported<F>>, bool) {
    let inputs = program.input_values(nodes);
    // The nodes whose gradients leave the chain, one output array each.
    let exported = exported(program, flow);
    let seed_values = match seed {
        Seed::Array(g) => flat(g),
        Seed::Uniform(_) | Seed::Rows { .. } => Cow::Borrowed(&[][..]),
    };
    // Cut between the rows of the scattered slices, so that each leaf owns
    // whole rows of their inputs (elementwise results do not depend on the
    // cut; a sum is never asked for together with scattering).
    debug_assert!(!want_sum || flow.parents.is_empty());
    let row = flow.row;
    // Cleared by the first block whose output arrays hold a NaN or infinity,
    // and by the first whose scattered rows do once written; never set when
    // nothing is checked.
    let (finite, scattered_finite) = (AtomicBool::new(check), AtomicBool::new(check));
    let parent_rows: Vec<Rows<&mut [F]>> = (parents.iter_mut().zip(&flow.parents))
        .map(|((_, grad), &(_, stride))| Rows {
            data: grad.as_slice_mut().unwrap_or_default(),
            width: stride,
        })
        .collect();
    let (total, outputs) = fill(
        PLAN.rows(row),
        program.len / row,
        (exported.len(), row, Start::Overwritten),
        parent_rows,
        #[inline(always)]
        |m, rows, out, mut parent_rows| {
            let range = rows.start * row..rows.end * row;
            // The steps' gradients on the current block, each written first by
            // its first contribution (`Flow::fresh`); those that leave the
            // chain go straight into `out`, written first alike, or, scattered,
            // into registers of their own added into the parents' rows.
            let (steps, scatters) = (program.steps.len(), flow.scattered.len());
            // One allocation per register: one block for all of them measured
            // 3–7% slower for the pointwise losses (registers 2 KiB apart).
            let mut registers = pool::registers(steps + scatters, BLOCK.min(range.len()));
            // A uniform seed in the root's own register, which nothing else
            // writes (the root has no consumers), is written once, not per block.
            let seeded_once = match seed {
                Seed::Uniform(g) if flow.location[steps - 1] == steps - 1 => {
                    registers[steps - 1].fill(*g);
                    true
                }
                _ => false,
            };
            let mut total = F::zero();
            program.run(
                m,
                &inputs,
                range.clone(),
                #[inline(always)]
                |block, values| {
                    if want_sum {
                        total += sum(values.root());
                    }
                    let len = block.len();
                    let at = block.start - range.start..block.end - range.start;
                    // Every gradient register of the block, one index space
                    // (`Flow::location`): the steps', the scattered slices',
                    // then the output arrays' parts for this block.
                    let mut file: File<'_, F> = (registers.iter_mut())
                        .map(|register| &mut register[..len])
                        .chain(out.iter_mut().map(|array| &mut array[at.clone()]))
                        .collect();
                    let root_adjoint = &mut *file[flow.location[steps - 1]];
                    match seed {
                        Seed::Array(_) => root_adjoint.copy_from_slice(&seed_values[block.clone()]),
                        Seed::Uniform(_) if seeded_once => {}
                        Seed::Uniform(g) => root_adjoint.fill(*g),
                        Seed::Rows { grad, width, norms } => for_each_row_segment(
                            block.clone(),
                            *width,
                            #[inline(always)]
                            |row, at| {
                                let (g, at) = (grad[row], at.start - block.start..at.end - block.start);
                                match norms.as_ref().map(|norms| norms[row]) {
                                    None => root_adjoint[at].fill(g),
                                    Some(norm) => {
                                        norm_slopes(&values.root()[at.clone()], g, norm, &mut root_adjoint[at])
                                    }
                                }
                            },
                        ),
                    }
                    for k in (0..steps).rev() {
                        if flow.internal[k] {
                            program.step_backward(k, values, &mut file, flow);
                        }
                    }
                    drop(file);
                    if check && !out.iter().all(|array| holds_for_all(&array[at.clone()], F::is_finite)) {
                        finite.store(false, Ordering::Relaxed);
                    }
                    let scattered = registers.iter().skip(steps);
                    for ((&(parent, slice), values), &copy) in flow.scattered.iter().zip(scattered).zip(copies) {
                        let into = &mut parent_rows[parent].data;
                        let add = !copy;
                        // A copy writes the register itself, so the register
                        // is checked, in one call rather than row piece by row
                        // piece (12% of triplet's tape on one thread); a sum
                        // is checked as it is written.
                        let written = &values[..len];
                        let written_finite = if add {
                            slice.write_into(into, rows.start, block.clone(), written, (true, check))
                        } else {
                            slice.write_into(into, rows.start, block.clone(), written, (false, false));
                            check && holds_for_all(written, F::is_finite)
                        };
                        if check && !written_finite {
                            scattered_finite.store(false, Ordering::Relaxed);
                        }
                    }
                },
            );
            pool::give_registers(registers);
            total
        },
    );
    let finite = finite.into_inner();
    let grads = (exported.into_iter().zip(outputs))
        .map(|(node, grad)| {
            let shape = &nodes[node].shape;
            let (grad, finite) = if nodes[node].len() == program.len {
                (from_vec(shape, grad), finite)
            } else {
                // An input of one element, broadcast: its gradient is the sum
                // (which may overflow, so it is not vouched for).
                (ArrayD::from_elem(shape.as_slice(), sum(&grad)), false)
            };
            Exported { node, grad, finite }
        })
        .collect();
    (total, grads, scattered_finite.into_inner())
}

/// A gradient that leaves a chain, for node `node`.
pub(super) struct Exported<F> {
    node: usize,
    grad: ArrayD<F>,
    /// Every element was seen finite when it was written.
    finite: bool,
}

/// Node `j`'s input, and where its rows lie there, when `j` is a slice
/// whose value has not been materialised: a chain reads it from the input.
fn unmaterialised_slice<F: Float>(nodes: &[Node<F>], j: usize) -> Option<(usize, SliceRows)> {
    match nodes[j].op {
        Op::SliceAxis {
            input,
            axis,
            start,
            end,
        } if nodes[j].value.get().is_none() => Some((input, SliceRows::new(&nodes[input].shape, axis, (start, end)))),
        _ => None,
    }
}

/// One step's function.
#[derive(Clone, Copy)]
enum Function<F> {
    Unary(Unary<F>),
    Binary(Binary),
}

impl<F: Float> Function<F> {
    /// The partial derivative towards operand `position` when it is the same
    /// for every element.
    fn constant_partial(self, position: usize) -> Option<F> {
        match self {
            Function::Unary(f) => f.constant_derivative(),
            Function::Binary(f) => f.constant_partial(position),
        }
    }
}

/// Where a step reads an operand.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Arg {
    /// The register of an earlier step.
    Step(usize),
    /// A materialised input.
    Input(usize),
}

/// One lazy node, computed into its own register.
struct Step<F> {
    node: usize,
    function: Function<F>,
    /// A unary op's operand stands twice; [`Step::operands`] gives it once.
    args: [Arg; 2],
}

impl<F> Step<F> {
    /// The operands the function reads.
    fn operands(&self) -> &[Arg] {
        match self.function {
            Function::Unary(_) => &self.args[..1],
            Function::Binary(_) => &self.args,
        }
    }
}

/// A value that the steps read: a materialised array, or the rows of a
/// slice that was never materialised, read from the slice's input.
struct Input {
    /// The node read, which receives the gradient.
    node: usize,
    /// One element, broadcast against the chain's length.
    scalar: bool,
    /// For a slice not materialised: its input, and where its rows lie there.
    rows: Option<(usize, SliceRows)>,
}

/// The lazy chain behind one node, in tape order (every step's operands
/// come before it), the root last.
struct Program<F> {
    /// Elements of every step.
    len: usize,
    steps: Vec<Step<F>>,
    inputs: Vec<Input>,
}

impl<F: Float> Program<F> {
    /// The chain whose value node `root` needs: lazy ancestors already
    /// materialised are read as inputs, not recomputed.
    fn to_evaluate(nodes: &[Node<F>], root: usize) -> Self {
        Program::new(nodes, root, |j| nodes[j].value.get().is_none())
    }

    /// The chain the sweep differentiates at `root`: every lazy ancestor is
    /// a step, materialised or not (its value is recomputed per block).
    fn to_differentiate(nodes: &[Node<F>], root: usize) -> Self {
        Program::new(nodes, root, |j| is_lazy_op(nodes, j))
    }

    /// The chain ending at `root`: every ancestor reached through lazy ops
    /// that has the root's length and for which `include` holds becomes a
    /// step; every other operand becomes an input (and is materialised).
    fn new(nodes: &[Node<F>], root: usize, include: impl Fn(usize) -> bool) -> Self {
        let len = nodes[root].len();
        let joins = |j: usize| nodes[j].len() == len && include(j);
        // Collect the steps' nodes, depth first (the root always joins). A
        // linear search finds a member: chains are short, and a hash map
        // cost a tenth of a small loss's time on the tape.
        let mut members: Small<(usize, LazyOp<F>)> = SmallVec::new();
        let mut stack: Small<usize> = smallvec![root];
        while let Some(i) = stack.pop() {
            if members.iter().any(|&(m, _)| m == i) {
                continue; // reached twice before it was first taken
            }
            let Some(op @ (_, operands)) = lazy_op(nodes, i) else {
                continue;
            };
            members.push((i, op));
            for j in operands {
                if !members.iter().any(|&(m, _)| m == j) && joins(j) {
                    stack.push(j);
                }
            }
        }
        members.sort_unstable_by_key(|&(i, _)| i);
        let order = members;
        let mut inputs: Vec<Input> = Vec::new();
        let mut arg = |j: usize| match order.binary_search_by_key(&j, |&(i, _)| i) {
            Ok(k) => Arg::Step(k),
            Err(_) => Arg::Input(match inputs.iter().position(|input| input.node == j) {
                Some(k) => k,
                None => {
                    let scalar = nodes[j].len() != len;
                    inputs.push(Input {
                        node: j,
                        scalar,
                        rows: unmaterialised_slice(nodes, j).filter(|_| !scalar),
                    });
                    inputs.len() - 1
                }
            }),
        };
        let steps = (order.iter())
            .map(|&(node, (function, [a, b]))| Step {
                node,
                function,
                args: [arg(a), arg(b)],
            })
            .collect();
        Program { len, steps, inputs }
    }

    /// The inputs' elements (a slice's input's, for a slice not
    /// materialised), materialising any that are lazy.
    fn input_values<'n>(&self, nodes: &'n [Node<F>]) -> Vec<Cow<'n, [F]>> {
        (self.inputs.iter())
            .map(|input| flat(value(nodes, input.rows.map_or(input.node, |(source, _)| source))))
            .collect()
    }

    /// Runs the steps over the elements in `range`, one block at a time,
    /// calling `visit` with each block's range and the registers.
    #[inline(always)]
    fn run(
        &self,
        mul_add: MulAdd,
        inputs: &[Cow<'_, [F]>],
        range: Range<usize>,
        mut visit: impl FnMut(Range<usize>, &Values<'_, F>),
    ) {
        let gathers = self.inputs.iter().filter(|input| input.rows.is_some()).count();
        let mut registers = pool::registers(self.steps.len() + gathers, BLOCK.min(range.len()));
        let gathered = (self.inputs.iter())
            .map(|input| match input.rows {
                Some(_) => registers.pop().unwrap_or_default(),
                None => Vec::new(),
            })
            .collect();
        let mut values = Values {
            block: InputBlock {
                inputs,
                gathered,
                start: 0,
                len: 0,
            },
            registers,
            mul_add,
        };
        let mut start = range.start;
        while start < range.end {
            let end = (start + BLOCK).min(range.end);
            values.block.load(&self.inputs, start..end);
            for k in 0..self.steps.len() {
                self.step_forward(k, &mut values);
            }
            visit(start..end, &values);
            start = end;
        }
        let gathered = values
            .block
            .gathered
            .into_iter()
            .filter(|register| !register.is_empty());
        pool::give_registers(values.registers.into_iter().chain(gathered).collect());
    }

    /// Operand `arg`'s elements on the current block: a step's register, or
    /// an input's elements.
    #[inline(always)]
    fn operand<'v>(&self, arg: Arg, registers: &'v [Vec<F>], block: &'v InputBlock<'_, F>) -> View<'v, F> {
        match arg {
            Arg::Step(j) => View::Slice(&registers[j][..block.len]),
            Arg::Input(j) => block.view(&self.inputs[j], j),
        }
    }

    /// Step `k` forward on the current block.
    #[inline(always)]
    fn step_forward(&self, k: usize, values: &mut Values<'_, F>) {
        let step = &self.steps[k];
        let len = values.block.len;
        let (done, rest) = values.registers.split_at_mut(k);
        let out = &mut rest[0][..len];
        let done = &*done;
        let view = |arg: Arg| self.operand(arg, done, &values.block);
        match step.function {
            Function::Unary(f) => {
                let x = view(step.args[0]).slice(len);
                macro_rules! run {
                    ($op:expr) => {
                        for (y, &x) in out.iter_mut().zip(x.iter()) {
                            *y = $op.apply(values.mul_add, x);
                        }
                    };
                }
                specialise_unary!(f, run)
            }
            Function::Binary(f) => {
                let (a, b) = (view(step.args[0]), view(step.args[1]));
                macro_rules! run {
                    ($op:expr) => {
                        match (a, b) {
                            (View::Slice(a), View::Slice(b)) => {
                                for ((y, &a), &b) in out.iter_mut().zip(a).zip(b) {
                                    *y = $op.apply(a, b);
                                }
                            }
                            (View::Slice(a), View::Scalar(b)) => {
                                for (y, &a) in out.iter_mut().zip(a) {
                                    *y = $op.apply(a, b);
                                }
                            }
                            (View::Scalar(a), View::Slice(b)) => {
                                for (y, &b) in out.iter_mut().zip(b) {
                                    *y = $op.apply(a, b);
                                }
                            }
                            (View::Scalar(a), View::Scalar(b)) => out.fill($op.apply(a, b)),
                        }
                    };
                }
                specialise_binary!(f, run)
            }
        }
    }

    /// Step `k` backward on the current block: adds `adjoint(k) ⊙ ∂k/∂arg`
    /// to each operand that takes part in the flow, in the register file of
    /// [`Flow::location`] (a step's or a scattered slice's register, or the
    /// block's part of an output array). An operand whose register step `k`
    /// shares gets nothing: its contribution, `adjoint(k)` itself, is there.
    #[inline(always)]
    fn step_backward(&self, k: usize, values: &Values<'_, F>, file: &mut [&mut [F]], flow: &Flow) {
        if self.both_partials(k, values, file, flow) {
            return;
        }
        let len = values.block.len;
        let step = &self.steps[k];
        let y = &values.registers[k][..len];
        let value = |arg: Arg| self.operand(arg, &values.registers, &values.block);
        for (position, &arg) in step.operands().iter().enumerate() {
            if flow.shares[k] == Some(position) {
                continue;
            }
            let Some(register) = flow.register(arg) else {
                continue;
            };
            let (g, target) = read_and_write(file, flow.location[k], register);
            // 1 unless the operand passes its gradient on scaled; `v·1` is `v`.
            let scale = F::from_f64(flow.scale_of(arg));
            // A scalar input's gradient is summed per block when it leaves,
            // so here it is kept element by element like any other. The first
            // contribution to a register or an output array overwrites what
            // was there (an earlier block's values, or a reused buffer's).
            // Chosen once per loop, not per element: a loop that both stores and
            // adds depending on a flag does not vectorise as well.
            macro_rules! contribute {
                ($put:expr) => {{
                    let put = $put;
                    match step.function {
                        Function::Unary(f) => {
                            let x = value(arg).slice(len);
                            macro_rules! run {
                                ($op:expr) => {
                                    for (((d, &g), &x), &y) in target.iter_mut().zip(g).zip(x.iter()).zip(y) {
                                        put(d, chain(g, $op.derivative(values.mul_add, x, y)));
                                    }
                                };
                            }
                            specialise_unary!(f, run)
                        }
                        Function::Binary(f) => {
                            let (a, b) = (value(step.args[0]), value(step.args[1]));
                            let pick = |(da, db): (F, F)| if position == 0 { da } else { db };
                            macro_rules! run {
                                ($op:expr) => {{
                                    let gy = target.iter_mut().zip(g).zip(y);
                                    match (a, b) {
                                        (View::Slice(a), View::Slice(b)) => {
                                            for (((d, &g), &y), (&a, &b)) in gy.zip(a.iter().zip(b)) {
                                                put(d, chain(g, pick($op.partials(a, b, y))));
                                            }
                                        }
                                        (View::Slice(a), View::Scalar(b)) => {
                                            for (((d, &g), &y), &a) in gy.zip(a) {
                                                put(d, chain(g, pick($op.partials(a, b, y))));
                                            }
                                        }
                                        (View::Scalar(a), View::Slice(b)) => {
                                            for (((d, &g), &y), &b) in gy.zip(b) {
                                                put(d, chain(g, pick($op.partials(a, b, y))));
                                            }
                                        }
                                        (View::Scalar(a), View::Scalar(b)) => {
                                            for ((d, &g), &y) in gy {
                                                put(d, chain(g, pick($op.partials(a, b, y))));
                                            }
                                        }
                                    }
                                }};
                            }
                            specialise_binary!(f, run)
                        }
                    }
                }};
            }
            if flow.fresh[k][position] {
                contribute!(|d: &mut F, v: F| overwrite(d, v * scale))
            } else {
                contribute!(|d: &mut F, v: F| add(d, v * scale))
            }
        }
    }

    /// Binary step `k` backward to both its operands in one loop, when both
    /// take part in the flow, each into a register of its own, and both are
    /// arrays: the step's gradient and operands are read once, not once per
    /// operand (Huber's `u·e`, triplet's `a − p`). Returns whether it did;
    /// otherwise [`Program::step_backward`] goes operand by operand.
    #[inline(always)]
    fn both_partials(&self, k: usize, values: &Values<'_, F>, file: &mut [&mut [F]], flow: &Flow) -> bool {
        let step = &self.steps[k];
        let Function::Binary(f) = step.function else {
            return false;
        };
        let [lhs, rhs] = step.args;
        let value = |arg: Arg| self.operand(arg, &values.registers, &values.block);
        let (Some(to_a), Some(to_b), None) = (flow.register(lhs), flow.register(rhs), flow.shares[k]) else {
            return false;
        };
        let (View::Slice(a), View::Slice(b)) = (value(lhs), value(rhs)) else {
            return false;
        };
        // Fails when both operands add into one register (`x·x`).
        let Ok([g, da, db]) = file.get_disjoint_mut([flow.location[k], to_a, to_b]) else {
            return false;
        };
        let (g, y) = (&**g, &values.registers[k][..values.block.len]);
        let (scale_a, scale_b) = (F::from_f64(flow.scale_of(lhs)), F::from_f64(flow.scale_of(rhs)));
        // As in `step_backward`: overwrite or add, chosen once per loop.
        macro_rules! pair {
            ($put_a:expr, $put_b:expr) => {{
                let (put_a, put_b) = ($put_a, $put_b);
                macro_rules! run {
                    ($op:expr) => {{
                        let targets = da.iter_mut().zip(db.iter_mut());
                        for (((ta, tb), (&g, &y)), (&a, &b)) in targets.zip(g.iter().zip(y)).zip(a.iter().zip(b)) {
                            let (pa, pb) = $op.partials(a, b, y);
                            put_a(ta, chain(g, pa) * scale_a);
                            put_b(tb, chain(g, pb) * scale_b);
                        }
                    }};
                }
                specialise_binary!(f, run)
            }};
        }
        match flow.fresh[k] {
            [true, true] => pair!(overwrite, overwrite),
            [true, false] => pair!(overwrite, add),
            [false, true] => pair!(add, overwrite),
            [false, false] => pair!(add, add),
        }
        true
    }
}

/// The first contribution to a gradient register: it overwrites what was
/// there (an earlier block's values, or a reused buffer's).
#[inline(always)]
fn overwrite<F: Float>(d: &mut F, v: F) {
    *d = v;
}

/// A later contribution to a gradient register.
#[inline(always)]
fn add<F: Float>(d: &mut F, v: F) {
    *d += v;
}

/// An operand's elements on the current block.
#[derive(Clone, Copy)]
enum View<'a, F> {
    Slice(&'a [F]),
    Scalar(F),
}

impl<'a, F: Float> View<'a, F> {
    /// The elements as a slice (a unary op's operand always has them).
    fn slice(self, len: usize) -> Cow<'a, [F]> {
        match self {
            View::Slice(s) => Cow::Borrowed(s),
            View::Scalar(v) => Cow::Owned(vec![v; len]),
        }
    }
}

/// The program's values on the current block.
struct Values<'a, F: Clone> {
    block: InputBlock<'a, F>,
    /// The steps' values.
    registers: Vec<Vec<F>>,
    /// How the steps' `exp` and `ln` round, from the SIMD level they run at.
    mul_add: MulAdd,
}

impl<F: Clone> Values<'_, F> {
    /// The root's register.
    fn root(&self) -> &[F] {
        self.registers.last().map_or(&[], |r| &r[..self.block.len])
    }
}

/// The inputs' elements on the current block.
struct InputBlock<'a, F: Clone> {
    inputs: &'a [Cow<'a, [F]>],
    /// Per input: for a slice read by rows from its input, its elements on
    /// the block, gathered into a register; empty for the others.
    gathered: Vec<Vec<F>>,
    /// The block's first element and length.
    start: usize,
    len: usize,
}

impl<F: Copy> InputBlock<'_, F> {
    /// Moves to the elements `range`, gathering the rows of the slices read
    /// from their input.
    #[inline(always)]
    fn load(&mut self, inputs: &[Input], range: Range<usize>) {
        (self.start, self.len) = (range.start, range.len());
        for ((input, gathered), xs) in inputs.iter().zip(&mut self.gathered).zip(self.inputs) {
            if let Some((_, rows)) = input.rows {
                rows.gather(xs, range.clone(), &mut gathered[..range.len()]);
            }
        }
    }

    /// Input `j`'s elements on the block.
    #[inline(always)]
    fn view(&self, input: &Input, j: usize) -> View<'_, F> {
        if input.scalar {
            View::Scalar(self.inputs[j][0])
        } else if input.rows.is_some() {
            View::Slice(&self.gathered[j][..self.len])
        } else {
            View::Slice(&self.inputs[j][self.start..self.start + self.len])
        }
    }
}

/// A program's per-step and per-input facts: on the stack for chains of up
/// to 16 steps (a tape records one per op, and a loss on a small batch is
/// dominated by such bookkeeping).
type Small<T> = SmallVec<[T; 16]>;

/// Where gradients flow in a program: which steps pass theirs on within the
/// chain, and which gradients leave it.
struct Flow {
    /// Step k is part of the chain: all its uses are inside, so its gradient
    /// is complete within the block, and it passes it to its operands.
    internal: Small<bool>,
    /// Step k receives gradient from an internal step.
    receives_step: Small<bool>,
    /// Step k receives gradient but is also used outside the chain: its
    /// gradient leaves, to be swept from its own node; the output array it
    /// is added to.
    slot_step: Small<Option<usize>>,
    /// Input k receives gradient, which leaves: its output array.
    slot_input: Small<Option<usize>>,
    /// Input k receives gradient, which is scattered: its register.
    scatter_input: Small<Option<usize>>,
    /// The scattered inputs, a register each: slices that the chain reads by
    /// rows from their input, whose gradients are added straight into that
    /// input's gradient (no array of the slice's shape, no pass of the
    /// slice's own backward rule). Each as the index of its input in
    /// `parents` and where its rows lie there.
    scattered: Small<(usize, SliceRows)>,
    /// The inputs of the scattered slices (their nodes) and the distance
    /// between their rows.
    parents: Small<(usize, usize)>,
    /// The length of the scattered slices' rows (1 when there are none).
    row: usize,
    /// Operand `p` of internal step k is the first, in the backward order,
    /// to write its register: it overwrites instead of adding, so no
    /// register needs zeroing.
    fresh: Small<[bool; 2]>,
    /// Where step k's gradient is kept, as an index into the block's
    /// register file: the steps' own registers (`0..steps`), the scattered
    /// slices' (`steps..steps + scattered`), then the output arrays' parts
    /// for the block. A step's own, unless it shares its operand's (below).
    location: Small<usize>,
    /// The operand of step k whose register holds k's gradient too
    /// ([`Flow::share_registers`]), so k adds nothing to it.
    shares: Small<Option<usize>>,
    /// What step k's consumers multiply their contributions to its gradient
    /// by: 1, or, when k shares a register through constant slopes such as
    /// `c·x`, the product of those slopes.
    scale: Small<f64>,
}

/// A block's gradient registers, indexed by [`Flow::location`].
type File<'a, F> = SmallVec<[&'a mut [F]; 32]>;

/// The register `read` (a step's gradient) to read and the register `write`
/// (an operand's) to add into: two of the file's, never the same one. A step
/// that shares its operand's register writes into it nothing itself, and
/// writes elsewhere only when its other operand adds into another register
/// (the `x + x` guard); one with a constant slope towards its only
/// differentiated operand writes nothing at all ([`Flow::share_registers`]).
#[inline(always)]
fn read_and_write<'a, F>(file: &'a mut [&mut [F]], read: usize, write: usize) -> (&'a [F], &'a mut [F]) {
    debug_assert_ne!(read, write);
    if read < write {
        let (low, high) = file.split_at_mut(write);
        (&*low[read], &mut *high[0])
    } else {
        let (low, high) = file.split_at_mut(read);
        (&*high[0], &mut *low[write])
    }
}

impl Flow {
    /// The flow of `program`'s gradients; with `scatter`, the slices that can
    /// be are scattered (for the sweep, which owns the gradients to add into).
    fn new<F: Float>(program: &Program<F>, nodes: &[Node<F>], uses: &[u32], scatter: bool) -> Self {
        let steps = program.steps.len();
        let mut flow = Flow {
            internal: smallvec![false; steps],
            receives_step: smallvec![false; steps],
            slot_step: smallvec![None; steps],
            slot_input: smallvec![None; program.inputs.len()],
            scatter_input: smallvec![None; program.inputs.len()],
            scattered: Small::new(),
            parents: Small::new(),
            row: 1,
            fresh: smallvec![[false; 2]; steps],
            location: (0..steps).collect(),
            shares: smallvec![None; steps],
            scale: smallvec![1.0; steps],
        };
        let (mut exported_step, mut exported_input): (Small<bool>, Small<bool>) =
            (smallvec![false; steps], smallvec![false; program.inputs.len()]);
        let mut uses_inside: Small<u32> = smallvec![0; steps];
        for k in (0..steps).rev() {
            let step = &program.steps[k];
            let needs = nodes[step.node].requires_grad;
            let is_root = k + 1 == steps;
            if !needs || !(is_root || flow.receives_step[k]) {
                continue;
            }
            if is_root || uses_inside[k] == uses[step.node] {
                flow.internal[k] = true;
            } else {
                exported_step[k] = true;
                continue;
            }
            for &arg in step.operands() {
                match arg {
                    Arg::Step(j) if nodes[program.steps[j].node].requires_grad => {
                        uses_inside[j] += 1;
                        flow.receives_step[j] = true;
                    }
                    Arg::Input(j) if nodes[program.inputs[j].node].requires_grad => exported_input[j] = true,
                    _ => {}
                }
            }
        }
        if scatter {
            flow.scatter(program, &mut exported_input);
        }
        // Output arrays: the exported steps, then the inputs.
        let mut slots = 0..;
        for (slot, exported) in flow.slot_step.iter_mut().zip(exported_step) {
            *slot = exported.then(|| slots.next()).flatten();
        }
        for (slot, exported) in flow.slot_input.iter_mut().zip(exported_input) {
            *slot = exported.then(|| slots.next()).flatten();
        }
        flow.share_registers(program);
        flow.fresh = flow.first_writes(program);
        flow
    }

    /// The register that operand `arg`'s gradient is added to, if it takes
    /// part in the flow: its index in the block's register file (see
    /// [`Flow::location`]): an output array when the gradient leaves the
    /// chain, the register a step keeps its gradient in, or a scattered
    /// slice's register.
    #[inline(always)]
    fn register(&self, arg: Arg) -> Option<usize> {
        let (steps, scattered) = (self.location.len(), self.scattered.len());
        let out = |slot: usize| steps + scattered + slot;
        match arg {
            Arg::Step(j) => match self.slot_step[j] {
                Some(slot) => Some(out(slot)),
                None => self.receives_step[j].then_some(self.location[j]),
            },
            Arg::Input(j) => match self.slot_input[j] {
                Some(slot) => Some(out(slot)),
                None => self.scatter_input[j].map(|r| steps + r),
            },
        }
    }

    /// Lets a step whose gradient passes to an operand times a constant
    /// (`a + b`, `a − b`, `x + c`, `c·x`, `−x`) keep its gradient in that
    /// operand's register, so that the step's own pass, a copy or a scaling,
    /// is gone: its consumers add their contributions to it straight into the
    /// operand's register, multiplied by the constant ([`Flow::scale`]).
    /// MSE's `(p − t)²` writes its gradient straight into the output array
    /// for `p`; Huber's `½u` passes its gradient to `u`'s register.
    ///
    /// A step whose other operands take no gradient never reads its own, so
    /// it can always do this. One that must read it, to pass it to another
    /// operand as well (`a − b` to `b`), can only when the constant is 1 and
    /// it is the first to write the register in the backward order: until
    /// step `k` runs (newest first), the shared register has received only
    /// what `k`'s consumers added, which is `adjoint(k)`, the operand's share
    /// through `k`; the operand's other consumers, older than `k`, add theirs
    /// afterwards. Decided oldest first, so that an operand's register is
    /// known, and with the first writers of the registers as shared so far:
    /// a later decision, for a newer step, cannot add a writer to a register
    /// that an older step found it was the first to write.
    fn share_registers<F: Float>(&mut self, program: &Program<F>) {
        let steps = program.steps.len();
        // The first writes as shared so far, recomputed after each share.
        let mut first: Option<Small<[bool; 2]>> = None;
        for k in 0..steps {
            if !self.internal[k] {
                continue;
            }
            let step = &program.steps[k];
            let operands = step.operands();
            let flowing: SmallVec<[(usize, usize); 2]> = (operands.iter().enumerate())
                .filter_map(|(p, &arg)| self.register(arg).map(|register| (p, register)))
                .collect();
            let partial = |p: usize| step.function.constant_partial(p).map(F::as_f64);
            let is_root = k + 1 == steps;
            // Never the root, whose gradient is the seed itself, written
            // unscaled. The product of the slopes is rounded to `F` once, so
            // it is kept only while it neither overflows nor loses digits
            // where multiplying the contributions one slope at a time would not.
            if let [(p, register)] = flowing[..]
                && let Some(scale) = partial(p).map(|c| c * self.scale_of(operands[p]))
                && (scale == 0.0 || F::from_f64(scale).is_normal())
                && !is_root
            {
                self.share(k, p, register, scale);
                first = None;
                continue;
            }
            let candidates = |p: usize| partial(p) == Some(1.0) && self.scale_of(operands[p]) == 1.0;
            if !flowing.iter().any(|&(p, _)| candidates(p)) {
                continue;
            }
            let is_first = first.get_or_insert_with(|| self.first_writes(program));
            let Some(&(p, register)) = flowing.iter().find(|&&(p, _)| candidates(p) && is_first[k][p]) else {
                continue;
            };
            // Not when the other operand adds into the same register (`x + x`).
            let clash = (operands.iter().enumerate())
                .any(|(q, &arg)| q != p && (arg == operands[p] || self.register(arg) == Some(register)));
            if !clash {
                self.share(k, p, register, 1.0);
                first = None;
            }
        }
    }

    /// Step `k` keeps its gradient in `register`, that of its operand `p`,
    /// with its consumers' contributions scaled by `scale`.
    fn share(&mut self, k: usize, p: usize, register: usize, scale: f64) {
        self.location[k] = register;
        self.shares[k] = Some(p);
        self.scale[k] = scale;
    }

    /// What contributions to operand `arg`'s gradient are multiplied by
    /// ([`Flow::scale`]).
    fn scale_of(&self, arg: Arg) -> f64 {
        match arg {
            Arg::Step(j) if self.slot_step[j].is_none() => self.scale[j],
            _ => 1.0,
        }
    }

    /// For each internal step and operand: whether it is the first, in the
    /// backward order (steps newest first, operands in order), to write the
    /// operand's register, given the registers shared so far (none, at
    /// first: each step has its own). The seed is written first, into the
    /// root's register.
    fn first_writes<F>(&self, program: &Program<F>) -> Small<[bool; 2]> {
        let steps = program.steps.len();
        let slots = (self.slot_step.iter().chain(&self.slot_input)).flatten().count();
        let mut written: Small<bool> = smallvec![false; steps + self.scattered.len() + slots];
        if let Some(&root) = self.location.last() {
            written[root] = true;
        }
        let mut first: Small<[bool; 2]> = smallvec![[false; 2]; steps];
        for k in (0..steps).rev().filter(|&k| self.internal[k]) {
            for (position, &arg) in program.steps[k].operands().iter().enumerate() {
                if self.shares[k] == Some(position) {
                    continue;
                }
                if let Some(register) = self.register(arg) {
                    first[k][position] = !std::mem::replace(&mut written[register], true);
                }
            }
        }
        first
    }

    /// Moves the exported inputs that are slices read by rows from their
    /// input (and so whose rows lie in it at a fixed distance) to the
    /// scattered ones, when they all have rows of the same length (the
    /// chain is then cut between rows), no longer than a leaf of the plan
    /// (so that the cores still share the work as finely: a slice of a
    /// vector is one long row), and each input is sliced alike.
    fn scatter<F>(&mut self, program: &Program<F>, exported_input: &mut [bool]) {
        let slices: Small<(usize, usize, SliceRows)> = (program.inputs.iter().enumerate())
            .filter(|&(k, _)| exported_input[k])
            .filter_map(|(k, input)| input.rows.map(|(parent, rows)| (k, parent, rows)))
            .collect();
        let Some(&(_, _, first)) = slices.first() else {
            return;
        };
        let alike = slices.iter().all(|&(_, parent, rows)| {
            rows.row == first.row
                && (slices.iter())
                    .filter(|&&(_, other, _)| other == parent)
                    .all(|&(_, _, other)| other.stride == rows.stride)
        });
        if !alike || first.row == 0 || first.row > PLAN.block {
            return;
        }
        self.row = first.row;
        for (k, parent, rows) in slices {
            let at = match self.parents.iter().position(|&(p, _)| p == parent) {
                Some(at) => at,
                None => {
                    self.parents.push((parent, rows.stride));
                    self.parents.len() - 1
                }
            };
            exported_input[k] = false;
            self.scatter_input[k] = Some(self.scattered.len());
            self.scattered.push((at, rows));
        }
    }
}
