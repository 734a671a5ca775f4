//! Every mistake a caller can make comes back as a typed `tapeloss::Error`
//! whose message names the operation or argument and what is wrong with it.
//! One test per case; each checks the variant and the message.

use tapeloss::ndarray::{ArrayD, IxDyn, array};
use tapeloss::{Error, Result, Tape, Var};

/// Panics unless `result` is an error whose message contains every `part`;
/// returns the error for a `matches!` on its variant.
#[track_caller]
fn error_naming<T: std::fmt::Debug>(result: Result<T>, parts: &[&str]) -> Error {
    let err = result.expect_err("expected an error");
    let message = err.to_string();
    for part in parts {
        assert!(message.contains(part), "message {message:?} should mention {part:?}");
    }
    err
}

// --- tape ---

fn zeros(shape: &[usize]) -> ArrayD<f64> {
    ArrayD::zeros(IxDyn(shape))
}

type BinaryOp = for<'t> fn(Var<'t, f64>, Var<'t, f64>) -> Result<Var<'t, f64>>;

const BINARY_OPS: [(&str, BinaryOp); 6] = [
    ("add", |a, b| a.add(b)),
    ("sub", |a, b| a.sub(b)),
    ("mul", |a, b| a.mul(b)),
    ("div", |a, b| a.div(b)),
    ("maximum", |a, b| a.maximum(b)),
    ("minimum", |a, b| a.minimum(b)),
];

#[test]
fn binary_operands_that_cannot_broadcast() {
    let tape = Tape::new();
    // [2, 3] with [2] could only align on the left, which NumPy does not do.
    for (lhs, rhs) in [(&[2, 3][..], &[2][..]), (&[4, 3], &[2, 3]), (&[3], &[2, 4, 2])] {
        let (a, b) = (tape.var(zeros(lhs)), tape.constant(zeros(rhs)));
        for (name, op) in BINARY_OPS {
            let (l, r) = (format!("{lhs:?}"), format!("{rhs:?}"));
            let err = error_naming(op(a, b), &[name, &l, &r, "broadcast"]);
            assert!(
                matches!(&err, Error::ShapeMismatch { op, lhs: el, rhs: er, .. }
                    if *op == name && el == lhs && er == rhs),
                "{err:?}"
            );
        }
    }
}

#[test]
fn where_mask_operands_that_cannot_broadcast() {
    let tape = Tape::new();
    let a = tape.var(zeros(&[2, 3]));
    let err = error_naming(
        a.where_mask(&ArrayD::from_elem(IxDyn(&[2, 3]), true), tape.constant(zeros(&[2]))),
        &["where_mask", "[2, 3]", "[2]"],
    );
    assert!(matches!(err, Error::ShapeMismatch { op: "where_mask", .. }), "{err:?}");
    // The mask is the one that does not fit.
    let err = error_naming(
        a.where_mask(&ArrayD::from_elem(IxDyn(&[3, 2]), true), tape.scalar(0.0)),
        &["where_mask", "[2, 3]", "[3, 2]"],
    );
    assert!(matches!(err, Error::ShapeMismatch { op: "where_mask", .. }), "{err:?}");
}

type AxisOp = for<'t> fn(Var<'t, f64>, usize) -> Result<Var<'t, f64>>;

#[test]
fn axis_out_of_range() {
    let ops: [(&str, AxisOp); 14] = [
        ("sum_axis", |v, a| v.sum_axis(a, false)),
        ("sum_axis", |v, a| v.sum_axis(a, true)),
        ("mean_axis", |v, a| v.mean_axis(a, false)),
        ("mean_axis", |v, a| v.mean_axis(a, true)),
        ("max_axis", |v, a| v.max_axis(a, false)),
        ("max_axis", |v, a| v.max_axis(a, true)),
        ("logsumexp_axis", |v, a| v.logsumexp_axis(a, false)),
        ("logsumexp_axis", |v, a| v.logsumexp_axis(a, true)),
        ("softmax", |v, a| v.softmax(a)),
        ("log_softmax", |v, a| v.log_softmax(a)),
        ("gather", |v, a| v.gather(a, &ArrayD::zeros(IxDyn(&[2, 3])))),
        ("norm_axis", |v, a| v.norm_axis(a, false)),
        ("slice_axis", |v, a| v.slice_axis(a, 0, 0)),
        ("index_axis", |v, a| v.index_axis(a, 0)),
    ];
    let tape = Tape::new();
    let x = tape.var(zeros(&[2, 3]));
    let s = tape.var(zeros(&[]));
    for (name, op) in ops {
        let err = error_naming(op(x, 2), &[name, "axis 2", "[2, 3]"]);
        assert!(
            matches!(&err, Error::AxisOutOfRange { op, axis: 2, ndim: 2, shape } if *op == name && shape == &[2, 3]),
            "{err:?}"
        );
        // A zero-dimensional value has no axis at all.
        let err = error_naming(op(s, 0), &[name, "axis 0", "[]"]);
        assert!(matches!(err, Error::AxisOutOfRange { axis: 0, ndim: 0, .. }), "{err:?}");
    }
}

#[test]
fn matmul_inner_sizes_differ() {
    let tape = Tape::new();
    let err = error_naming(
        tape.var(zeros(&[2, 3])).matmul(tape.var(zeros(&[4, 5]))),
        &["matmul", "[2, 3]", "[4, 5]", "inner sizes 3 and 4"],
    );
    assert!(matches!(err, Error::ShapeMismatch { op: "matmul", .. }), "{err:?}");
}

#[test]
fn matmul_of_a_rank_other_than_two() {
    let tape = Tape::new();
    for (lhs, rhs) in [
        (&[3][..], &[3, 2][..]),
        (&[2, 3], &[3]),
        (&[2, 2, 3], &[3, 2]),
        (&[], &[1, 1]),
    ] {
        let (l, r) = (format!("{lhs:?}"), format!("{rhs:?}"));
        let err = error_naming(
            tape.var(zeros(lhs)).matmul(tape.var(zeros(rhs))),
            &["matmul", &l, &r, "2-D"],
        );
        assert!(matches!(err, Error::ShapeMismatch { op: "matmul", .. }), "{err:?}");
    }
}

#[test]
fn reshape_to_a_different_size() {
    let tape = Tape::new();
    let x = tape.var(zeros(&[2, 3]));
    let err = error_naming(x.reshape(&[4, 2]), &["reshape", "[2, 3]", "[4, 2]", "6", "8"]);
    assert!(matches!(err, Error::ShapeMismatch { op: "reshape", .. }), "{err:?}");
    // A size that overflows usize is an error too, not a panic.
    let err = error_naming(x.reshape(&[usize::MAX, 2]), &["reshape", "[2, 3]", "overflow"]);
    assert!(matches!(err, Error::ShapeMismatch { op: "reshape", .. }), "{err:?}");
}

#[test]
fn backward_of_a_value_with_more_than_one_element() {
    let tape = Tape::new();
    let x = tape.var(zeros(&[2, 3]));
    let err = error_naming(
        tape.backward(x.exp().unwrap()),
        &["backward", "[2, 3]", "exactly one element"],
    );
    assert!(matches!(err, Error::NotScalar { op: "backward", .. }), "{err:?}");
}

#[test]
fn backward_of_a_value_with_no_element() {
    let tape = Tape::new();
    let x = tape.var(zeros(&[0, 3]));
    let err = error_naming(tape.backward(x), &["backward", "[0, 3]"]);
    assert!(matches!(err, Error::NotScalar { op: "backward", .. }), "{err:?}");
}

#[test]
fn item_of_a_value_with_more_than_one_element() {
    let tape = Tape::new();
    let err = error_naming(tape.var(zeros(&[2])).item(), &["item", "[2]"]);
    assert!(matches!(err, Error::NotScalar { op: "item", .. }), "{err:?}");
}

#[test]
fn vars_from_two_different_tapes() {
    let (one, two) = (Tape::new(), Tape::new());
    let a = one.var(zeros(&[2]));
    let b = two.var(zeros(&[2]));
    let mut cases: Vec<(&str, Result<Var<'_, f64>>)> = BINARY_OPS.iter().map(|&(name, op)| (name, op(a, b))).collect();
    cases.push(("matmul", one.var(zeros(&[1, 2])).matmul(two.var(zeros(&[2, 1])))));
    cases.push(("where_mask", a.where_mask(&ArrayD::from_elem(IxDyn(&[2]), true), b)));
    for (name, result) in cases {
        let err = error_naming(result, &[name, "different tapes"]);
        assert!(matches!(&err, Error::ForeignVar { op } if *op == name), "{err:?}");
    }
    let err = error_naming(one.backward(b.sum().unwrap()), &["backward", "different tapes"]);
    assert!(matches!(err, Error::ForeignVar { op: "backward" }), "{err:?}");
}

#[test]
fn gather_index_out_of_range() {
    let tape = Tape::new();
    let x = tape.var(zeros(&[2, 3]));
    let err = error_naming(
        x.gather(1, &array![[0], [3]].into_dyn()),
        &["gather", "3", "[1, 0]", "axis 1", "[2, 3]"],
    );
    assert!(
        matches!(&err, Error::InvalidTarget { index, value, .. } if index == &[1, 0] && *value == 3.0),
        "{err:?}"
    );
}

#[test]
fn gather_indices_of_the_wrong_shape() {
    let tape = Tape::new();
    let x = tape.var(zeros(&[2, 3]));
    // Another rank, and another size off the gathered axis.
    for indices in [ArrayD::zeros(IxDyn(&[2])), ArrayD::zeros(IxDyn(&[3, 1]))] {
        let shape = format!("{:?}", indices.shape());
        let err = error_naming(x.gather(1, &indices), &["gather", "[2, 3]", &shape]);
        assert!(matches!(err, Error::ShapeMismatch { op: "gather", .. }), "{err:?}");
    }
}

#[test]
fn slice_axis_range_outside_the_axis() {
    let tape = Tape::new();
    let x = tape.var(zeros(&[2, 3]));
    let err = error_naming(
        x.slice_axis(1, 2, 4),
        &["slice_axis", "end", "4", "axis 1", "size 3", "[2, 3]"],
    );
    assert!(
        matches!(&err, Error::InvalidParameter { value, .. } if *value == 4.0),
        "{err:?}"
    );
    let err = error_naming(x.slice_axis(1, 2, 1), &["slice_axis", "start = 2", "end = 1"]);
    assert!(
        matches!(&err, Error::InvalidParameter { value, .. } if *value == 2.0),
        "{err:?}"
    );
    // The whole axis and an empty range at its end are fine.
    assert_eq!(x.slice_axis(1, 0, 3).unwrap().shape(), vec![2, 3]);
    assert_eq!(x.slice_axis(1, 3, 3).unwrap().shape(), vec![2, 0]);
}

#[test]
fn index_axis_index_outside_the_axis() {
    let tape = Tape::new();
    let x = tape.var(zeros(&[2, 3]));
    let err = error_naming(
        x.index_axis(0, 2),
        &["index_axis", "index", "2", "axis 0", "size 2", "[2, 3]"],
    );
    assert!(
        matches!(&err, Error::InvalidParameter { value, .. } if *value == 2.0),
        "{err:?}"
    );
    // An axis of size 0 has no index at all.
    let empty = tape.var(zeros(&[0, 3]));
    let err = error_naming(empty.index_axis(0, 0), &["index_axis", "axis 0", "size 0", "[0, 3]"]);
    assert!(matches!(err, Error::InvalidParameter { .. }), "{err:?}");
}

#[test]
fn mean_of_an_empty_value() {
    let tape = Tape::new();
    let err = error_naming(tape.var(zeros(&[0, 3])).mean(), &["mean", "[0, 3]", "empty"]);
    assert!(matches!(err, Error::Empty { op: "mean", .. }), "{err:?}");
}

#[test]
fn mean_max_and_logsumexp_over_an_empty_axis() {
    let ops: [(&str, AxisOp); 3] = [
        ("mean_axis", |v, a| v.mean_axis(a, false)),
        ("max_axis", |v, a| v.max_axis(a, true)),
        ("logsumexp_axis", |v, a| v.logsumexp_axis(a, false)),
    ];
    let tape = Tape::new();
    let x = tape.var(zeros(&[2, 0]));
    for (name, op) in ops {
        let err = error_naming(op(x, 1), &[name, "[2, 0]", "axis 1"]);
        assert!(matches!(&err, Error::InvalidShape { op, .. } if *op == name), "{err:?}");
        // Reducing the non-empty axis is fine: the result is empty, not undefined.
        assert_eq!(op(x, 0).unwrap().value().len(), 0);
    }
    // A sum over an empty axis is zero, as in NumPy and PyTorch.
    assert_eq!(x.sum_axis(1, false).unwrap().value(), zeros(&[2]));
}

#[test]
fn clamp_with_min_above_max() {
    let tape = Tape::new();
    let err = error_naming(
        tape.var(zeros(&[2])).clamp(1.0, -1.0),
        &["clamp", "min", "max", "1", "-1"],
    );
    assert!(matches!(err, Error::InvalidParameter { .. }), "{err:?}");
}

#[test]
fn clamp_with_a_nan_bound() {
    let tape = Tape::new();
    let x = tape.var(zeros(&[2]));
    for (result, bound) in [(x.clamp(f64::NAN, 1.0), "min"), (x.clamp(0.0, f64::NAN), "max")] {
        let err = error_naming(result, &["clamp", bound, "NaN"]);
        assert!(
            matches!(&err, Error::InvalidParameter { value, .. } if value.is_nan()),
            "{err:?}"
        );
    }
}

#[test]
fn nan_scalar_arguments() {
    type ScalarOp = for<'t> fn(Var<'t, f64>, f64) -> Result<Var<'t, f64>>;
    let ops: [(&str, ScalarOp); 3] = [
        ("powf", |v, c| v.powf(c)),
        ("add_scalar", |v, c| v.add_scalar(c)),
        ("mul_scalar", |v, c| v.mul_scalar(c)),
    ];
    let tape = Tape::new();
    let x = tape.var(zeros(&[2]));
    for (name, op) in ops {
        let err = error_naming(op(x, f64::NAN), &[name, "NaN"]);
        assert!(
            matches!(&err, Error::InvalidParameter { value, .. } if value.is_nan()),
            "{err:?}"
        );
    }
}
