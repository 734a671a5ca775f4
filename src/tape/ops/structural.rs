//! Ops that move or pick elements rather than compute them one by one:
//! `matmul`, `reshape`, `slice_axis`/`index_axis`, `gather` and `where_mask`,
//! each with its backward rule.

use std::ops::Range;

use ndarray::{ArrayD, ArrayView2, Dimension, Ix2, IxDyn};

use super::Op;
use super::reduce::check_axis;
use crate::error::{Error, Result};
use crate::float::Float;
use crate::kernels::parallel;
use crate::kernels::pointwise::holds_for_all;
use crate::tape::backprop::Sweep;
use crate::tape::layout::{Broadcast, around, flat, flat_mut, for_each_row_segment, from_vec};
use crate::tape::{Var, broadcast_shape, pool, reduce_to_shape};

/// A 2-D view of an array already checked to be 2-D.
fn as_matrix<F>(x: &ArrayD<F>) -> Option<ArrayView2<'_, F>> {
    x.view().into_dimensionality::<Ix2>().ok()
}

/// Matrix product and reshaping.
impl<'t, F: Float> Var<'t, F> {
    /// The matrix product `a · b` of a `[m, k]` and a `[k, n]` value, giving
    /// `[m, n]`. Backward: `da = g · bᵀ`, `db = aᵀ · g`.
    ///
    /// ```
    /// # use tapeloss::{Tape, ndarray::array};
    /// # fn main() -> tapeloss::Result<()> {
    /// let tape = Tape::<f64>::new();
    /// let x = tape.constant(array![[1.0, 2.0]].into_dyn()); // [1, 2]
    /// let w = tape.var(array![[1.0, 0.0, 2.0], [0.0, 1.0, 3.0]].into_dyn()); // [2, 3]
    /// let y = x.matmul(w)?;
    /// assert_eq!(y.value(), array![[1.0, 2.0, 8.0]].into_dyn());
    /// let grads = tape.backward(y.sum()?)?;
    /// assert_eq!(grads.wrt(w).unwrap(), &array![[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]].into_dyn());
    /// assert!(w.matmul(w).is_err()); // inner sizes 3 and 2
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] naming both shapes when either operand is not
    /// 2-D or the inner sizes differ; [`Error::ForeignVar`] when `other` is on
    /// another tape.
    pub fn matmul(self, other: Var<'t, F>) -> Result<Var<'t, F>> {
        self.same_tape(other, "matmul")?;
        let (a, b) = (self.value_ref(), other.value_ref());
        let (Some(a2), Some(b2)) = (as_matrix(&a), as_matrix(&b)) else {
            return Err(Error::shape_mismatch_because(
                "matmul",
                a.shape(),
                b.shape(),
                format!("both operands must be 2-D, got {}-D and {}-D", a.ndim(), b.ndim()),
            ));
        };
        if a2.ncols() != b2.nrows() {
            return Err(Error::shape_mismatch_because(
                "matmul",
                a.shape(),
                b.shape(),
                format!("inner sizes {} and {} differ", a2.ncols(), b2.nrows()),
            ));
        }
        let value = a2.dot(&b2).into_dyn();
        drop((a, b));
        Ok(self.record(
            value,
            Op::MatMul {
                lhs: self.index,
                rhs: other.index,
            },
        ))
    }

    /// The same elements, read in row-major (logical) order whatever the
    /// memory layout, under a new shape. Backward reshapes the gradient back.
    ///
    /// ```
    /// # use tapeloss::{Tape, ndarray::array};
    /// # fn main() -> tapeloss::Result<()> {
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]].into_dyn());
    /// assert_eq!(x.reshape(&[3, 2])?.value(), array![[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]].into_dyn());
    /// assert!(x.reshape(&[4, 2]).is_err()); // 6 elements cannot take 8 places
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] naming both shapes when the new shape holds a
    /// different number of elements (or so many that the count overflows).
    pub fn reshape(self, shape: &[usize]) -> Result<Var<'t, F>> {
        let x = self.value_ref();
        let size = shape.iter().try_fold(1_usize, |acc, &d| acc.checked_mul(d));
        // ndarray also wants the non-zero axes' product to fit in `isize`,
        // even when another axis is 0 and the array is empty.
        let nonzero = (shape.iter().filter(|&&d| d != 0)).try_fold(1_usize, |acc, &d| acc.checked_mul(d));
        let why = match size {
            Some(size) if size != x.len() => Some(format!("{} elements cannot take a shape of {size}", x.len())),
            Some(_) if nonzero.is_none_or(|n| n > isize::MAX as usize) => {
                Some("the new shape's non-zero axes multiply past isize::MAX".to_string())
            }
            Some(_) => None,
            None => Some("the new shape's element count overflows usize".to_string()),
        };
        if let Some(why) = why {
            return Err(Error::shape_mismatch_because("reshape", x.shape(), shape, why));
        }
        // One copy in row-major order: the new node owns its value.
        let value = x.to_shape(IxDyn(shape))?.into_owned();
        drop(x);
        Ok(self.record(value, Op::Reshape { input: self.index }))
    }
}

pub(crate) fn matmul_backward<F: Float>(sweep: &mut Sweep<'_, F>, lhs: usize, rhs: usize, grad: &ArrayD<F>) {
    let (a, b) = (sweep.value(lhs), sweep.value(rhs));
    let (Some(a), Some(b), Some(g)) = (as_matrix(a), as_matrix(b), as_matrix(grad)) else {
        return; // unreachable: the forward pass checked the ranks
    };
    if sweep.needs(lhs) {
        let da = g.dot(&b.t()).into_dyn();
        sweep.send(lhs, da);
    }
    if sweep.needs(rhs) {
        let db = a.t().dot(&g).into_dyn();
        sweep.send(rhs, db);
    }
}

/// The gradient under the input's shape: free when it is in row-major layout.
pub(crate) fn reshape_backward<F: Float>(shape: &[usize], grad: ArrayD<F>) -> ArrayD<F> {
    let reshaped = if grad.is_standard_layout() {
        grad.into_shape_with_order(shape)
    } else {
        grad.to_shape(shape).map(|g| g.into_owned())
    };
    reshaped.unwrap_or_else(|_| ArrayD::zeros(shape)) // unreachable: sizes checked forward
}

/// Taking part of a value along one axis.
impl<'t, F: Float> Var<'t, F> {
    /// The elements with indices `start..end` along `axis`, as a value whose
    /// axis has size `end − start` (NumPy's `x[:, start:end]` for `axis = 1`,
    /// PyTorch's `x.narrow(axis, start, end − start)`). Backward: the gradient
    /// goes to those elements, 0 to the others.
    ///
    /// ```
    /// # use tapeloss::{Tape, ndarray::array};
    /// # fn main() -> tapeloss::Result<()> {
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]].into_dyn());
    /// let tail = x.slice_axis(1, 1, 3)?;
    /// assert_eq!(tail.value(), array![[2.0, 3.0], [5.0, 6.0]].into_dyn());
    /// let grads = tape.backward(tail.sum()?)?;
    /// assert_eq!(grads.wrt(x).unwrap(), &array![[0.0, 1.0, 1.0], [0.0, 1.0, 1.0]].into_dyn());
    /// assert!(x.slice_axis(1, 2, 4).is_err()); // axis 1 has 3 elements
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::AxisOutOfRange`] when `axis ≥ ndim`; [`Error::InvalidParameter`]
    /// when `start > end`, or naming the axis, its size and the input's shape
    /// when `end` is larger than that size.
    pub fn slice_axis(self, axis: usize, start: usize, end: usize) -> Result<Var<'t, F>> {
        let shape = self.shape();
        check_axis("slice_axis", &shape, axis)?;
        if start > end {
            return Err(Error::InvalidParameter {
                name: format!("slice_axis(start = {start}, end = {end})"),
                value: start as f64,
                expected: "start ≤ end",
            });
        }
        if end > shape[axis] {
            return Err(Error::InvalidParameter {
                name: format!(
                    "slice_axis(end) along axis {axis} of size {}, input shape {shape:?}",
                    shape[axis]
                ),
                value: end as f64,
                expected: "end ≤ the size of the axis",
            });
        }
        let mut out_shape = shape;
        out_shape[axis] = end - start;
        Ok(self.take_range(axis, start, end, &out_shape))
    }

    /// The elements at `index` along `axis`, with that axis removed (NumPy's
    /// `x[:, index]` for `axis = 1`, PyTorch's `x.select(axis, index)`): the
    /// anchors `x[:, 0, :]` of `[N, 3, D]` triplets, say. Backward: the
    /// gradient goes to those elements, 0 to the others.
    ///
    /// ```
    /// # use tapeloss::{Tape, ndarray::array};
    /// # fn main() -> tapeloss::Result<()> {
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]].into_dyn());
    /// let middle = x.index_axis(1, 1)?;
    /// assert_eq!(middle.value(), array![2.0, 5.0].into_dyn()); // shape [2]
    /// let grads = tape.backward(middle.sum()?)?;
    /// assert_eq!(grads.wrt(x).unwrap(), &array![[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]].into_dyn());
    /// assert!(x.index_axis(0, 2).is_err()); // axis 0 has 2 elements
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::AxisOutOfRange`] when `axis ≥ ndim`; [`Error::InvalidParameter`]
    /// naming the axis, its size and the input's shape when `index` is not
    /// smaller than that size.
    pub fn index_axis(self, axis: usize, index: usize) -> Result<Var<'t, F>> {
        let shape = self.shape();
        check_axis("index_axis", &shape, axis)?;
        if index >= shape[axis] {
            return Err(Error::InvalidParameter {
                name: format!(
                    "index_axis(index) along axis {axis} of size {}, input shape {shape:?}",
                    shape[axis]
                ),
                value: index as f64,
                expected: "index < the size of the axis",
            });
        }
        let mut out_shape = shape;
        out_shape.remove(axis);
        Ok(self.take_range(axis, index, index + 1, &out_shape))
    }

    /// Records `start..end` along `axis` (checked) under `shape`, lazily:
    /// a chain reads the rows of the slice straight from the input (see
    /// [`SliceRows`]), and only a consumer that needs the array itself
    /// copies it out, through [`slice_forward`].
    fn take_range(self, axis: usize, start: usize, end: usize, shape: &[usize]) -> Var<'t, F> {
        self.record_lazy(
            shape.to_vec(),
            Op::SliceAxis {
                input: self.index,
                axis,
                start,
                end,
            },
        )
    }
}

/// Where the elements of the slice `start..end` along `axis` of an array of
/// `shape` lie in that array: row `o` of `row` elements starts at
/// `offset + o·stride` (one row per index before the axis).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct SliceRows {
    pub(crate) offset: usize,
    pub(crate) row: usize,
    pub(crate) stride: usize,
}

impl SliceRows {
    /// The rows of `start..end` along `axis` of an array of `shape`.
    pub(crate) fn new(shape: &[usize], axis: usize, (start, end): (usize, usize)) -> Self {
        let (_, n, inner) = around(shape, axis);
        SliceRows {
            offset: start * inner,
            row: (end - start) * inner,
            stride: n * inner,
        }
    }

    /// Copies the slice's elements `range` out of the input's elements `xs`
    /// into `out` (of `range`'s length), a piece of a row at a time.
    #[inline(always)]
    pub(crate) fn gather<F: Copy>(self, xs: &[F], range: Range<usize>, out: &mut [F]) {
        self.for_each_piece(range, |from, piece| {
            out[piece.clone()].copy_from_slice(&xs[from..][..piece.len()])
        });
    }

    /// Writes `values`, the slice's elements `range`, into the input's
    /// elements `into`, which start at row `first_row` of the slice: added to
    /// what is there when `add`, copied over it otherwise. With `check`,
    /// returns whether every element it wrote is finite (checked while it is
    /// in cache); without, `false`.
    #[inline(always)]
    pub(crate) fn write_into<F: Float>(
        self,
        into: &mut [F],
        first_row: usize,
        range: Range<usize>,
        values: &[F],
        (add, check): (bool, bool),
    ) -> bool {
        let skipped = first_row * self.stride;
        let mut finite = check;
        self.for_each_piece(range, |to, piece| {
            let written = &mut into[to - skipped..][..piece.len()];
            if add {
                written.iter_mut().zip(&values[piece]).for_each(|(d, &v)| *d += v);
            } else {
                written.copy_from_slice(&values[piece]);
            }
            if check {
                finite &= holds_for_all(written, F::is_finite);
            }
        });
        finite
    }

    /// Whether two slices along the same axis share no element.
    pub(crate) fn disjoint(self, other: SliceRows) -> bool {
        self.offset + self.row <= other.offset || other.offset + other.row <= self.offset
    }

    /// Calls `f(at, piece)` for each piece of the slice's elements `range`
    /// that lies in one row: `at` is where the piece starts in the input,
    /// `piece` where it lies within `range` (counted from its start).
    #[inline(always)]
    fn for_each_piece(self, range: Range<usize>, mut f: impl FnMut(usize, Range<usize>)) {
        let first = range.start;
        for_each_row_segment(range, self.row, |row, segment| {
            let within = segment.start - row * self.row;
            f(
                self.offset + row * self.stride + within,
                segment.start - first..segment.end - first,
            );
        });
    }
}

/// The parts of a row of `stride` elements (one index before the axis) that
/// none of `slices`, along that axis, covers.
pub(crate) fn gaps(stride: usize, slices: &[SliceRows]) -> Vec<Range<usize>> {
    let mut covered: Vec<(usize, usize)> = slices
        .iter()
        .map(|rows| (rows.offset, rows.offset + rows.row))
        .collect();
    covered.sort_unstable();
    let mut gaps = Vec::new();
    let mut at = 0;
    for (start, end) in covered {
        if start > at {
            gaps.push(at..start);
        }
        at = at.max(end);
    }
    if at < stride {
        gaps.push(at..stride);
    }
    gaps
}

/// The value of a lazy slice `start..end` along `axis` of `x`: one
/// contiguous block copied per index before the axis.
pub(crate) fn slice_forward<F: Float>(x: &ArrayD<F>, axis: usize, range: (usize, usize), shape: &[usize]) -> ArrayD<F> {
    let rows = SliceRows::new(x.shape(), axis, range);
    let xs = flat(x);
    let mut values = pool::for_overwrite(shape.iter().product());
    parallel::for_each_row(
        &mut values,
        rows.row,
        #[inline(always)]
        |o, out| out.copy_from_slice(&xs[rows.offset + o * rows.stride..][..rows.row]),
    );
    from_vec(shape, values)
}

/// The gradient of `start..end` along `axis` added into that block of the
/// input's pending gradient; when none is pending yet, the input's gradient
/// is written in one pass: the block, and zeros around it.
pub(crate) fn slice_axis_backward<F: Float>(
    sweep: &mut Sweep<'_, F>,
    input: usize,
    axis: usize,
    (start, end): (usize, usize),
    grad: &ArrayD<F>,
) {
    let shape = sweep.shape(input);
    let rows = SliceRows::new(shape, axis, (start, end));
    let g = flat(grad);
    let (before, within) = (rows.offset, rows.offset + rows.row);
    // Row `o` of the input (all of its axis) holds row `o` of the slice.
    let slice_of = |o: usize| g.get(o * rows.row..(o + 1) * rows.row).unwrap_or_default();
    if sweep.is_pending(input) {
        sweep.accumulate(input, |dx| {
            parallel::for_each_row(
                dx,
                rows.stride,
                #[inline(always)]
                |o, row| (row[before..within].iter_mut().zip(slice_of(o))).for_each(|(d, &g)| *d += g),
            );
            false // added to a pending gradient, not known finite anyway
        });
    } else {
        let mut dx = pool::for_overwrite(shape.iter().product());
        parallel::for_each_row(
            &mut dx,
            rows.stride,
            #[inline(always)]
            |o, row| {
                row[..before].fill(F::zero());
                row[before..within].copy_from_slice(slice_of(o));
                row[within..].fill(F::zero());
            },
        );
        sweep.send(input, from_vec(shape, dx));
    }
}

/// Picking elements by index and by mask.
impl<'t, F: Float> Var<'t, F> {
    /// Picks values along `axis` by index, like NumPy's `take_along_axis` and
    /// PyTorch's `gather`: `out[i₀, …, iₐ, …] = x[i₀, …, indices[i₀, …, iₐ, …], …]`.
    ///
    /// `indices` has the same number of dimensions as `self` and the same size
    /// on every axis but `axis`; the result has `indices`' shape. This is how
    /// class-index targets pick their log-probabilities. Backward scatters the
    /// gradient back to the picked positions (adding where an index repeats).
    ///
    /// ```
    /// # use tapeloss::{Tape, ndarray::array};
    /// # fn main() -> tapeloss::Result<()> {
    /// let tape = Tape::<f64>::new();
    /// let log_p = tape.var(array![[-0.1, -2.0, -3.0], [-1.5, -0.5, -2.5]].into_dyn());
    /// let targets = array![[0_usize], [1]].into_dyn(); // one class per row, as [N, 1]
    /// let picked = log_p.gather(1, &targets)?;
    /// assert_eq!(picked.value(), array![[-0.1], [-0.5]].into_dyn());
    /// let grads = tape.backward(picked.sum()?)?;
    /// assert_eq!(grads.wrt(log_p).unwrap(), &array![[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]].into_dyn());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::AxisOutOfRange`] for an axis `≥ ndim`; [`Error::ShapeMismatch`]
    /// naming both shapes when `indices` has another rank or another size off
    /// `axis`; [`Error::InvalidTarget`] naming the first index `≥ shape[axis]`,
    /// where it is, the axis and the input's shape.
    pub fn gather(self, axis: usize, indices: &ArrayD<usize>) -> Result<Var<'t, F>> {
        let x = self.value_ref();
        check_axis("gather", x.shape(), axis)?;
        let same_off_axis =
            indices.ndim() == x.ndim() && (0..x.ndim()).all(|d| d == axis || indices.shape()[d] == x.shape()[d]);
        if !same_off_axis {
            return Err(Error::shape_mismatch_because(
                "gather",
                x.shape(),
                indices.shape(),
                format!("indices must have the input's rank and its sizes on every axis but {axis}"),
            ));
        }
        let size = x.shape()[axis];
        if let Some((at, &bad)) = indices.indexed_iter().find(|(_, i)| **i >= size) {
            return Err(Error::InvalidTarget {
                index: at.slice().to_vec(),
                value: bad as f64,
                reason: format!(
                    "gather along axis {axis} of an input of shape {:?} needs an index < {size}",
                    x.shape()
                ),
            });
        }
        let (xs, idx) = (flat(&x), flat(indices));
        let mut values = Vec::with_capacity(indices.len());
        for_each_pick(around(x.shape(), axis), indices.shape()[axis], &idx, |_, from| {
            values.push(xs[from])
        });
        let value = from_vec(indices.shape(), values);
        drop(xs);
        drop(x);
        Ok(self.record(
            value,
            Op::Gather {
                input: self.index,
                axis,
                indices: indices.clone(),
            },
        ))
    }

    /// `mask ? self : otherwise`, elementwise, with `self`, `otherwise` and
    /// `mask` broadcast together (NumPy's `where`, PyTorch's `torch.where`).
    /// Each branch receives the gradient only where it was chosen, and zero
    /// elsewhere; a zero gradient stays zero through elementwise ops even where
    /// their derivative is infinite or NaN. So `sqrt`, `ln` or a division
    /// evaluated where the mask does not pick them add nothing to the gradient
    /// (no "double where" is needed, unlike PyTorch and JAX).
    ///
    /// ```
    /// # use tapeloss::{Tape, ndarray::array};
    /// # fn main() -> tapeloss::Result<()> {
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(array![-1.0, 4.0].into_dyn());
    /// let mask = array![false, true].into_dyn();
    /// let y = x.sqrt()?.where_mask(&mask, tape.scalar(0.0))?; // √−1 is NaN, but not taken
    /// assert_eq!(y.value(), array![0.0, 2.0].into_dyn());
    /// let grads = tape.backward(y.sum()?)?;
    /// assert_eq!(grads.wrt(x).unwrap(), &array![0.0, 0.25].into_dyn());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] naming two shapes that cannot broadcast (the
    /// operands', or their broadcast shape and the mask's);
    /// [`Error::ForeignVar`] when `otherwise` is on another tape.
    pub fn where_mask(self, mask: &ArrayD<bool>, otherwise: Var<'t, F>) -> Result<Var<'t, F>> {
        self.same_tape(otherwise, "where_mask")?;
        let (a, b) = (self.value_ref(), otherwise.value_ref());
        let shape = broadcast_shape("where_mask", a.shape(), b.shape())?;
        let shape = broadcast_shape("where_mask", &shape, mask.shape())?;
        let value = select(&a, &b, mask, &shape);
        drop((a, b));
        Ok(self.record(
            value,
            Op::WhereMask {
                on_true: self.index,
                on_false: otherwise.index,
                mask: mask.clone(),
            },
        ))
    }
}

/// Calls `f(at, from)` for every picked element in row-major order: `at` is
/// its place in the result, `from` the place in the input of the element it
/// picks. The input is `(outer, len, inner)` around the axis (see
/// [`around`]); `indices` (already checked `< len`) has `picks` entries along
/// it.
fn for_each_pick(
    (outer, n, inner): (usize, usize, usize),
    picks: usize,
    indices: &[usize],
    mut f: impl FnMut(usize, usize),
) {
    let mut at = 0;
    for o in 0..outer {
        for _ in 0..picks {
            for i in 0..inner {
                f(at, (o * n + indices[at]) * inner + i);
                at += 1;
            }
        }
    }
}

/// Adds each gradient element to the input element it picked (repeated
/// indices add up), straight into the input's pending gradient.
pub(crate) fn gather_backward<F: Float>(
    sweep: &mut Sweep<'_, F>,
    input: usize,
    axis: usize,
    indices: &ArrayD<usize>,
    grad: &ArrayD<F>,
) {
    let dims = around(sweep.shape(input), axis);
    let (g, idx) = (flat(grad), flat(indices));
    sweep.accumulate(input, |dx| {
        // A sum stays finite only if each partial sum along the way was, so
        // checking every write tells whether the picked elements end finite.
        let mut finite = true;
        for_each_pick(dims, indices.shape()[axis], &idx, |at, from| {
            dx[from] += g[at];
            finite &= dx[from].is_finite();
        });
        finite
    });
}

/// One piece of `select`'s output, its two operands and its mask.
type SelectPieces<'a, F> = (&'a mut [F], (&'a [F], &'a [F]), &'a [bool]);

/// `mask ? a : b` with all three broadcast to `shape`, run by run.
fn select<F: Float>(a: &ArrayD<F>, b: &ArrayD<F>, mask: &ArrayD<bool>, shape: &[usize]) -> ArrayD<F> {
    let (xa, xb, m) = (flat(a), flat(b), flat(mask));
    let plan = Broadcast::new(shape, [a.shape(), b.shape(), mask.shape()]);
    let (n, [sa, sb, sm]) = (plan.len, plan.step);
    let mut out = pool::for_overwrite(n * plan.rows());
    if [xa.len(), xb.len(), m.len()] == [out.len(); 3] {
        // No broadcasting: on both cores, under the SIMD dispatch (a select
        // of bools needs a blend, which the baseline lacks).
        let operands = (&xa[..], &xb[..]);
        parallel::reduce(
            (out.as_mut_slice(), operands, &m[..]),
            parallel::STREAMING,
            #[inline(always)]
            |(out, (a, b), m): SelectPieces<'_, F>| {
                for ((o, (&a, &b)), &m) in out.iter_mut().zip(a.iter().zip(b)).zip(m) {
                    *o = if m { a } else { b };
                }
            },
            #[inline(always)]
            |(), ()| (),
        );
        return from_vec(shape, out);
    }
    // Selects into a written buffer, not branches pushed onto a vector: a
    // mask of random labels mispredicts half the branches.
    plan.for_each_row(|row, [oa, ob, om]| {
        let run = &mut out[row * n..(row + 1) * n];
        match plan.step {
            [1, 1, 1] => {
                let pairs = xa[oa..oa + n].iter().zip(&xb[ob..ob + n]);
                for ((o, (&a, &b)), &m) in run.iter_mut().zip(pairs).zip(&m[om..om + n]) {
                    *o = if m { a } else { b };
                }
            }
            [1, 0, 1] => {
                let b = xb[ob];
                for ((o, &a), &m) in run.iter_mut().zip(&xa[oa..oa + n]).zip(&m[om..om + n]) {
                    *o = if m { a } else { b };
                }
            }
            _ => {
                for (i, o) in run.iter_mut().enumerate() {
                    *o = if m[om + i * sm] {
                        xa[oa + i * sa]
                    } else {
                        xb[ob + i * sb]
                    };
                }
            }
        }
    });
    from_vec(shape, out)
}

/// Zeroes the elements of `grad` where `mask`, broadcast to its shape, equals
/// `masked`.
fn zero_where<F: Float>(grad: &mut ArrayD<F>, mask: &ArrayD<bool>, masked: bool) {
    let m = flat(mask);
    let plan = Broadcast::new(grad.shape(), [grad.shape(), mask.shape()]);
    let (n, sm) = (plan.len, plan.step[1]);
    flat_mut(grad, |g| {
        if m.len() == g.len() {
            // As in `select`: on both cores, under the SIMD dispatch.
            parallel::reduce(
                (g, &m[..]),
                parallel::STREAMING,
                #[inline(always)]
                |(g, m): (&mut [F], &[bool])| {
                    for (g, &m) in g.iter_mut().zip(m) {
                        *g = if m == masked { F::zero() } else { *g };
                    }
                },
                #[inline(always)]
                |(), ()| (),
            );
            return;
        }
        plan.for_each_row(|row, [_, om]| {
            let run = &mut g[row * n..(row + 1) * n];
            if sm == 0 {
                if m[om] == masked {
                    run.fill(F::zero());
                }
            } else {
                // A select on every element, not a branch: a mask of random
                // labels mispredicts half the branches (8 ms for 1M elements).
                for (g, &m) in run.iter_mut().zip(&m[om..om + n]) {
                    *g = if m == masked { F::zero() } else { *g };
                }
            }
        });
    });
}

/// Each branch gets `grad` where it was chosen and 0 elsewhere; the `on_true`
/// branch reuses `grad`'s memory.
pub(crate) fn where_mask_backward<F: Float>(
    sweep: &mut Sweep<'_, F>,
    on_true: usize,
    on_false: usize,
    mask: &ArrayD<bool>,
    mut grad: ArrayD<F>,
) {
    if sweep.needs(on_false) {
        let mut g = if sweep.needs(on_true) {
            grad.clone()
        } else {
            std::mem::take(&mut grad)
        };
        zero_where(&mut g, mask, true);
        let shape = sweep.shape(on_false);
        sweep.send(on_false, reduce_to_shape(g, shape));
    }
    if sweep.needs(on_true) {
        zero_where(&mut grad, mask, false);
        let shape = sweep.shape(on_true);
        sweep.send(on_true, reduce_to_shape(grad, shape));
    }
}
