//! NumPy broadcasting: the shape of a broadcast result, and the reduction of a
//! gradient back to an operand's shape.

use ndarray::{ArrayD, Axis};

use crate::error::{Error, Result};
use crate::float::Float;

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
/// axes `shape` lacks, and over every axis where `shape` has size 1.
pub(crate) fn reduce_to_shape<F: Float>(grad: ArrayD<F>, shape: &[usize]) -> ArrayD<F> {
    if grad.shape() == shape {
        return grad;
    }
    let mut grad = grad;
    while grad.ndim() > shape.len() {
        grad = grad.sum_axis(Axis(0));
    }
    for (d, &size) in shape.iter().enumerate() {
        if size == 1 && grad.shape()[d] != 1 {
            grad = grad.sum_axis(Axis(d)).insert_axis(Axis(d));
        }
    }
    grad
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
        let s = reduce_to_shape(g, &[]);
        assert_eq!(s.shape(), &[] as &[usize]);
        assert_eq!(s.sum(), 24.0);
    }
}
