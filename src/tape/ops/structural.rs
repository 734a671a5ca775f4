//! Ops that move or pick elements rather than compute them one by one:
//! `matmul`, `reshape`, `gather` and `where_mask`, each with its backward rule.

use ndarray::{ArrayD, ArrayView2, Axis, Dimension, Ix2, IxDyn, Zip};

use super::Op;
use super::binary::broadcast_view;
use super::reduce::check_axis;
use crate::error::{Error, Result};
use crate::float::Float;
use crate::tape::backprop::Sweep;
use crate::tape::{Var, broadcast_shape, reduce_to_shape};

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
        if size != Some(x.len()) {
            let why = match size {
                Some(size) => format!("{} elements cannot take a shape of {size}", x.len()),
                None => "the new shape's element count overflows usize".to_string(),
            };
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
pub(crate) fn reshape_backward<F: Float>(x: &ArrayD<F>, grad: ArrayD<F>) -> ArrayD<F> {
    let reshaped = if grad.is_standard_layout() {
        grad.into_shape_with_order(x.raw_dim())
    } else {
        grad.to_shape(x.raw_dim()).map(|g| g.into_owned())
    };
    reshaped.unwrap_or_else(|_| ArrayD::zeros(x.raw_dim())) // unreachable: sizes checked forward
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

/// Each branch gets `grad` where it was chosen and 0 elsewhere; the `on_true`
/// branch reuses `grad`'s memory.
pub(crate) fn where_mask_backward<F: Float>(
    sweep: &mut Sweep<'_, F>,
    on_true: usize,
    on_false: usize,
    mask: &ArrayD<bool>,
    mut grad: ArrayD<F>,
) {
    let Ok(m_full) = broadcast_view("where_mask", mask, grad.shape()) else {
        return; // unreachable: the forward pass checked the shapes
    };
    if sweep.needs(on_false) {
        let g = Zip::from(&grad)
            .and(&m_full)
            .map_collect(|&g, &m| if m { F::zero() } else { g });
        let shape = sweep.value(on_false).shape();
        sweep.send(on_false, reduce_to_shape(g, shape));
    }
    if sweep.needs(on_true) {
        Zip::from(&mut grad).and(&m_full).for_each(|g, &m| {
            if !m {
                *g = F::zero();
            }
        });
        let shape = sweep.value(on_true).shape();
        sweep.send(on_true, reduce_to_shape(grad, shape));
    }
}
