//! Arrays a tape holds without owning them: the crate's only `unsafe`.
//!
//! [`crate::losses::value_and_grad_on_tape`] and the tape route of
//! [`crate::Loss::forward`] get their inputs by reference, build a tape that
//! lives only inside the call, and used to copy the predictions and the
//! targets onto it (`Tape::var` and `Tape::constant` take arrays by value).
//! Those two copies were a third of a cheap loss's tape route
//! (docs/benchmarks.md). [`with_lent`] gives such a tape the caller's arrays
//! themselves, and [`Tape::leaf_from`] records one of them as a leaf.
//!
//! **Why this is sound.** A lent reference is stored with its lifetime
//! extended to `'static`, and is only ever read through the tape:
//! - the tape is a local of [`with_lent`], dropped before it returns, so
//!   within the borrow of `arrays` that the call holds;
//! - `f` gets only `&Tape`: `Tape` is neither `Clone` nor `Sync`, and every
//!   method that reads a value either copies it (`Var::value`) or lends it for
//!   the borrow of the tape at most (`Var::with_value`, the sweep), so no
//!   reference to a lent array can outlive the tape;
//! - `f`'s result type cannot name the tape's borrow;
//! - a lent array is never written or given away: a leaf's value is
//!   read-only, and a dropped tape returns only the arrays it owns to the
//!   buffer pool ([`Value::into_inner`]).
#![allow(unsafe_code)]

use std::cell::OnceCell;

use ndarray::ArrayD;

use super::Tape;
use crate::float::Float;

/// A node's value: computed and owned by the tape (or not yet computed, for
/// a lazy result), or lent to it by [`with_lent`].
pub(super) enum Value<F: 'static> {
    Owned(OnceCell<ArrayD<F>>),
    Lent(&'static ArrayD<F>),
}

impl<F> Value<F> {
    /// The array, if it is there.
    pub(super) fn get(&self) -> Option<&ArrayD<F>> {
        match self {
            Value::Owned(cell) => cell.get(),
            Value::Lent(array) => Some(array),
        }
    }

    /// The array, computed by `init` first if it is not there yet.
    pub(super) fn get_or_init(&self, init: impl FnOnce() -> ArrayD<F>) -> &ArrayD<F> {
        match self {
            Value::Owned(cell) => cell.get_or_init(init),
            Value::Lent(array) => array,
        }
    }

    /// The array, if the tape owns it.
    pub(super) fn into_inner(self) -> Option<ArrayD<F>> {
        match self {
            Value::Owned(cell) => cell.into_inner(),
            Value::Lent(_) => None,
        }
    }
}

/// Runs `f` on a new tape that [`Tape::leaf_from`] lets hold `arrays`
/// themselves instead of copies.
pub(crate) fn with_lent<F: Float, R>(arrays: [&ArrayD<F>; 2], f: impl FnOnce(&Tape<F>) -> R) -> R {
    let mut tape = Tape::new();
    // SAFETY: see the module's documentation: the extended references are
    // read only through `tape`, which is dropped below, while `arrays` is
    // still borrowed.
    tape.lent = arrays.map(|array| Some(unsafe { &*(array as *const ArrayD<F>) }));
    let result = f(&tape);
    drop(tape);
    result
}

#[cfg(test)]
mod tests {
    use ndarray::{ArrayD, IxDyn};

    use super::with_lent;
    use crate::tape::{Tape, Var};

    fn data(x: Var<'_, f64>) -> *const f64 {
        x.with_value(|v| v.as_ptr())
    }

    #[test]
    fn a_lent_array_is_held_and_any_other_copied() {
        let a = ArrayD::from_shape_fn(IxDyn(&[3, 4]), |i| (i[0] * 4 + i[1]) as f64);
        let equal = a.clone();
        let column_major = a.clone().reversed_axes();
        assert!(!column_major.is_standard_layout());
        with_lent([&a, &column_major], |tape| {
            assert_eq!(data(tape.leaf_from(&a, true)), a.as_ptr());
            assert_eq!(data(tape.constant_from(&a)), a.as_ptr());
            // Equal, but not the array lent.
            let copy = tape.leaf_from(&equal, false);
            assert_ne!(data(copy), equal.as_ptr());
            assert_eq!(copy.value(), equal);
            // Lent, but copied into the row-major layout every op assumes.
            let transposed = tape.leaf_from(&column_major, false);
            assert!(transposed.with_value(|v| v.is_standard_layout()));
            assert_eq!(transposed.value(), column_major);
        });
        let tape = Tape::new();
        assert_ne!(data(tape.leaf_from(&a, true)), a.as_ptr());
        assert_ne!(data(tape.constant_from(&a)), a.as_ptr());
    }

    #[test]
    fn lent_leaves_differentiate_like_owned_ones() {
        // d/dx Σ(x − t)² = 2(x − t), with x and t both lent; the arrays are
        // left as they were.
        let x = ArrayD::from_shape_fn(IxDyn(&[5, 7]), |i| (i[0] as f64) - 0.25 * i[1] as f64);
        let t = x.mapv(|v| 0.5 * v + 1.0);
        let (x_before, t_before) = (x.clone(), t.clone());
        let grad = with_lent([&x, &t], |tape| -> crate::Result<_> {
            let (xv, tv) = (tape.leaf_from(&x, true), tape.leaf_from(&t, false));
            let loss = xv.sub(tv)?.square()?.sum()?;
            Ok(tape.backward(loss)?.take(xv))
        });
        let expected = (&x - &t).mapv(|d| 2.0 * d);
        assert_eq!(grad.ok().flatten(), Some(expected));
        assert_eq!((x, t), (x_before, t_before));
    }
}
