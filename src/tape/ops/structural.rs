//! Ops that move or pick elements rather than compute them one by one:
//! `matmul`, `reshape`, `gather` and `where_mask`, each with its backward rule.

use ndarray::{ArrayD, ArrayView2, Axis, Dimension, Ix2, IxDyn, Zip};

use super::Op;
use super::binary::broadcast_view;
use crate::error::{Error, Result};
use crate::float::Float;
use crate::tape::backprop::Sweep;
use crate::tape::{Var, broadcast_shape, reduce_to_shape};

/// A 2-D view, or an error naming `op` and the offending shape.
fn as_matrix<'a, F>(op: &'static str, arg: &'static str, x: &'a ArrayD<F>) -> Result<ArrayView2<'a, F>> {
    x.view().into_dimensionality::<Ix2>().map_err(|_| Error::InvalidShape {
        op,
        arg,
        shape: x.shape().to_vec(),
        expected: "a 2-D array [rows, columns]".into(),
    })
}

/// Matrix product and reshaping.
impl<'t, F: Float> Var<'t, F> {
    /// The matrix product `a · b` of a `[m, k]` and a `[k, n]` value.
    /// Backward: `da = g · bᵀ`, `db = aᵀ · g`.
    ///
    /// # Errors
    /// [`Error::InvalidShape`] when either operand is not 2-D;
    /// [`Error::ShapeMismatch`] when the inner sizes differ;
    /// [`Error::ForeignVar`] when `other` is on another tape.
    pub fn matmul(self, other: Var<'t, F>) -> Result<Var<'t, F>> {
        self.same_tape(other, "matmul")?;
        let (a, b) = (self.value_ref(), other.value_ref());
        let (a2, b2) = (as_matrix("matmul", "lhs", &a)?, as_matrix("matmul", "rhs", &b)?);
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

    /// The same elements, in row-major order, under a new shape.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when the new shape holds a different number of
    /// elements.
    pub fn reshape(self, shape: &[usize]) -> Result<Var<'t, F>> {
        let x = self.value_ref();
        if shape.iter().product::<usize>() != x.len() {
            return Err(Error::shape_mismatch_because(
                "reshape",
                x.shape(),
                shape,
                format!(
                    "{} elements cannot take a shape of {}",
                    x.len(),
                    shape.iter().product::<usize>()
                ),
            ));
        }
        let value = x
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order(IxDyn(shape))?;
        drop(x);
        Ok(self.record(value, Op::Reshape { input: self.index }))
    }
}

pub(crate) fn matmul_backward<F: Float>(sweep: &mut Sweep<'_, F>, lhs: usize, rhs: usize, grad: &ArrayD<F>) {
    let (a, b) = (sweep.value(lhs), sweep.value(rhs));
    let (Ok(a), Ok(b), Ok(g)) = (
        as_matrix("matmul", "lhs", a),
        as_matrix("matmul", "rhs", b),
        as_matrix("matmul", "grad", grad),
    ) else {
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

pub(crate) fn reshape_backward<F: Float>(x: &ArrayD<F>, grad: ArrayD<F>) -> ArrayD<F> {
    let grad = grad.as_standard_layout().into_owned();
    grad.into_shape_with_order(x.raw_dim())
        .unwrap_or_else(|_| ArrayD::zeros(x.raw_dim())) // unreachable: sizes checked forward
}

/// Picking elements by index and by mask.
impl<'t, F: Float> Var<'t, F> {
    /// Picks values along `axis` by index, like NumPy's `take_along_axis` and
    /// PyTorch's `gather`: `out[i₀, …, iₐ, …] = x[i₀, …, indices[i₀, …, iₐ, …], …]`.
    ///
    /// `indices` has the same number of dimensions as `self` and the same size
    /// on every axis but `axis`; the result has `indices`' shape. This is how
    /// class-index targets pick their log-probabilities:
    /// `log_probs.gather(1, &targets_as_n_by_1)`. Backward scatters the gradient
    /// back to the picked positions (adding where an index repeats).
    ///
    /// # Errors
    /// [`Error::AxisOutOfRange`] for a bad axis; [`Error::ShapeMismatch`] when
    /// `indices` has another rank or another size off `axis`;
    /// [`Error::InvalidTarget`] for an index `≥ shape[axis]`.
    pub fn gather(self, axis: usize, indices: &ArrayD<usize>) -> Result<Var<'t, F>> {
        let x = self.value_ref();
        if axis >= x.ndim() {
            return Err(Error::AxisOutOfRange {
                op: "gather",
                axis,
                ndim: x.ndim(),
                shape: x.shape().to_vec(),
            });
        }
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
                reason: format!("gather index must be < {size}, the size of axis {axis}"),
            });
        }
        let mut value = ArrayD::zeros(indices.raw_dim());
        Zip::from(value.lanes_mut(Axis(axis)))
            .and(indices.lanes(Axis(axis)))
            .and(x.lanes(Axis(axis)))
            .for_each(|mut out, idx, src| {
                Zip::from(&mut out).and(&idx).for_each(|o, &i| *o = src[i]);
            });
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
    /// Each branch receives the gradient only where it was chosen, so a NaN or
    /// infinity in the branch not taken does not leak into the gradient.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when the three shapes cannot broadcast;
    /// [`Error::ForeignVar`] when `otherwise` is on another tape.
    pub fn where_mask(self, mask: &ArrayD<bool>, otherwise: Var<'t, F>) -> Result<Var<'t, F>> {
        self.same_tape(otherwise, "where_mask")?;
        let (a, b) = (self.value_ref(), otherwise.value_ref());
        let shape = broadcast_shape("where_mask", a.shape(), b.shape())?;
        let shape = broadcast_shape("where_mask", &shape, mask.shape())?;
        let a_full = broadcast_view("where_mask", &a, &shape)?;
        let b_full = broadcast_view("where_mask", &b, &shape)?;
        let m_full = broadcast_view("where_mask", mask, &shape)?;
        let value = Zip::from(&a_full)
            .and(&b_full)
            .and(&m_full)
            .map_collect(|&a, &b, &m| if m { a } else { b });
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

pub(crate) fn gather_backward<F: Float>(
    x: &ArrayD<F>,
    axis: usize,
    indices: &ArrayD<usize>,
    grad: &ArrayD<F>,
) -> ArrayD<F> {
    let mut dx = ArrayD::zeros(x.raw_dim());
    Zip::from(dx.lanes_mut(Axis(axis)))
        .and(indices.lanes(Axis(axis)))
        .and(grad.lanes(Axis(axis)))
        .for_each(|mut dst, idx, g| {
            Zip::from(&idx).and(&g).for_each(|&i, &g| dst[i] += g);
        });
    dx
}

pub(crate) fn where_mask_backward<F: Float>(
    sweep: &mut Sweep<'_, F>,
    on_true: usize,
    on_false: usize,
    mask: &ArrayD<bool>,
    grad: &ArrayD<F>,
) {
    let Ok(m_full) = broadcast_view("where_mask", mask, grad.shape()) else {
        return; // unreachable: the forward pass checked the shapes
    };
    for (input, taken) in [(on_true, true), (on_false, false)] {
        if sweep.needs(input) {
            let g = Zip::from(grad)
                .and(&m_full)
                .map_collect(|&g, &m| if m == taken { g } else { F::zero() });
            let shape = sweep.value(input).shape().to_vec();
            sweep.send(input, reduce_to_shape(g, &shape));
        }
    }
}
