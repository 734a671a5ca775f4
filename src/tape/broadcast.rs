//! NumPy broadcasting: the shape of a broadcast result, and the reduction of a
//! gradient back to an operand's shape.

use ndarray::{ArrayD, IxDyn};

use crate::error::{Error, Result};
use crate::float::Float;
use crate::kernels::parallel;
use crate::tape::layout::{self, Broadcast, MIN_PARALLEL_RUN, flat, from_vec};

/// The shape two operands broadcast to under NumPy's rules: shapes are aligned
/// on the right, and each pair of sizes must be equal or contain a 1.
pub(crate) fn broadcast_shape(op: &'static str, lhs: &[usize], rhs: &[usize]) -> Result<Vec<usize>> {
    let ndim = lhs.len().max(rhs.len());
    let size_at = |shape: &[usize], d: usize| -> usize {
        // Missing leading dimensions count as 1.
        let offset = ndim - shape.len();
        if d < offset { 1 } else { shape[d - offset] }
    };
    (0..ndim)
        .map(|d| match (size_at(lhs, d), size_at(rhs, d)) {
            (a, b) if a == b => Ok(a),
            (1, b) => Ok(b),
            (a, 1) => Ok(a),
            _ => Err(Error::shape_mismatch_because(
                op,
                lhs,
                rhs,
                "they cannot broadcast (sizes must be equal or 1, aligned on the right)",
            )),
        })
        .collect()
}

/// Sums a gradient of the broadcast shape back to `shape`: over the leading
/// axes `shape` lacks, and over every axis where `shape` has size 1. Moves
/// `grad` through untouched when no axis was broadcast.
pub(crate) fn reduce_to_shape<F: Float>(grad: ArrayD<F>, shape: &[usize]) -> ArrayD<F> {
    if grad.shape() == shape {
        grad
    } else {
        sum_to_shape(&grad, shape)
    }
}

/// Like [`reduce_to_shape`] but reading `grad` in place, for when the caller
/// still needs it: the only allocation is the result. One pass over `grad`,
/// run by run (see [`Broadcast`]): a run along which the operand advances is
/// added to its slice of the result, a run along which it repeats is summed
/// into one element.
///
/// `grad`'s shape must be a broadcast of `shape` (the ops check this forward).
pub(crate) fn sum_to_shape<F: Float>(grad: &ArrayD<F>, shape: &[usize]) -> ArrayD<F> {
    if grad.shape() == shape {
        return layout::standard(grad.clone());
    }
    let g = flat(grad);
    if shape.iter().product::<usize>() == 1 {
        // A scalar-like operand: one sum.
        return ArrayD::from_elem(IxDyn(shape), layout::sum(&g));
    }
    let plan = Broadcast::new(grad.shape(), [grad.shape(), shape]);
    let n = plan.len;
    let mut out = vec![F::zero(); shape.iter().product()];
    if plan.step[1] == 0 && n >= MIN_PARALLEL_RUN {
        // Each run sums to one element: the runs' sums on both cores, then
        // added in row order as below, so the bits are the same.
        let mut sums = vec![F::zero(); plan.rows()];
        parallel::for_each_row_reading(
            &mut sums,
            1,
            n,
            #[inline(always)]
            |row, sum| sum[0] = layout::sum(&g[row * n..][..n]),
        );
        plan.for_each_row(|row, [_, o]| out[o] += sums[row]);
        return from_vec(shape, out);
    }
    plan.for_each_row(|_, [og, o]| {
        let run = &g[og..og + n];
        if plan.step[1] == 1 {
            for (d, &v) in out[o..o + n].iter_mut().zip(run) {
                *d += v;
            }
        } else {
            out[o] += layout::sum(run);
        }
    });
    from_vec(shape, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::ArrayD;

    #[test]
    fn shapes_broadcast_like_numpy() {
        assert_eq!(broadcast_shape("t", &[2, 3], &[3]).unwrap(), vec![2, 3]);
        assert_eq!(broadcast_shape("t", &[2, 1], &[1, 4]).unwrap(), vec![2, 4]);
        assert_eq!(broadcast_shape("t", &[], &[5, 1]).unwrap(), vec![5, 1]);
        assert_eq!(broadcast_shape("t", &[4, 1, 3], &[2, 1]).unwrap(), vec![4, 2, 3]);
        assert!(broadcast_shape("t", &[2, 3], &[2]).is_err());
    }

    #[test]
    fn reduction_sums_broadcast_axes() {
        let g = ArrayD::<f64>::ones(vec![4, 2, 3]);
        let r = reduce_to_shape(g.clone(), &[2, 1]);
        assert_eq!(r.shape(), &[2, 1]);
        assert!(r.iter().all(|&v| v == 12.0));
        let s = reduce_to_shape(g.clone(), &[]);
        assert_eq!(s.shape(), &[] as &[usize]);
        assert_eq!(s.sum(), 24.0);
        let row = sum_to_shape(&g, &[1, 3]);
        assert_eq!(row.shape(), &[1, 3]);
        assert!(row.iter().all(|&v| v == 8.0));
        // A zero-size broadcast axis sums to zeros of the operand's shape.
        let empty = ArrayD::<f64>::ones(vec![0, 3]);
        assert_eq!(reduce_to_shape(empty, &[1, 3]), ArrayD::zeros(vec![1, 3]));
    }
}
