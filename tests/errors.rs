//! Every mistake a caller can make comes back as a typed `tapeloss::Error`
//! whose message names the operation or argument and what is wrong with it.
//! One test per case of the validation issue; each checks the variant and the
//! message. Two sections: the tape ops, then the losses, where every case runs
//! through every method that computes (`forward`, `backward`,
//! `value_and_grad`, `value_and_grad_into`, `record` and the tape route), in
//! `f32` and `f64`.

use tapeloss::losses::value_and_grad_on_tape;
use tapeloss::ndarray::{ArrayD, IxDyn, array};
use tapeloss::{
    BinaryCrossEntropyLoss, ContrastiveLoss, CrossEntropyLoss, Error, Float, FocalLoss, HingeEmbeddingLoss, HuberLoss,
    Loss, MeanAbsoluteError, MeanSquaredError, Reduction, Result, SmoothL1Loss, SoftMarginLoss, Tape, TripletLoss, Var,
};
use tapeloss::{KlDivLoss, MultiMarginLoss, NllLoss, PoissonNllLoss};

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
fn reshape_to_a_different_size() -> Result<()> {
    let tape = Tape::new();
    let x = tape.var(zeros(&[2, 3]));
    let err = error_naming(x.reshape(&[4, 2]), &["reshape", "[2, 3]", "[4, 2]", "6", "8"]);
    assert!(matches!(err, Error::ShapeMismatch { op: "reshape", .. }), "{err:?}");
    // A size that overflows usize is an error too, not a panic.
    let err = error_naming(x.reshape(&[usize::MAX, 2]), &["reshape", "[2, 3]", "overflow"]);
    assert!(matches!(err, Error::ShapeMismatch { op: "reshape", .. }), "{err:?}");
    // An empty array's shape holds 0 elements whatever its other axes, but
    // ndarray refuses axes whose product passes isize::MAX.
    let empty = tape.var(zeros(&[0, 3]));
    let huge = [0, usize::MAX, usize::MAX];
    let err = error_naming(empty.reshape(&huge), &["reshape", "[0, 3]", "isize::MAX"]);
    assert!(matches!(err, Error::ShapeMismatch { op: "reshape", .. }), "{err:?}");
    assert_eq!(empty.reshape(&[3, 0, 7])?.shape(), vec![3, 0, 7]);
    Ok(())
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

/// Issue 5: a scalar argument that is NaN or infinite is an `Err` naming
/// the op and the value (`0·∞` would be a silent NaN). `clamp` alone takes
/// an infinite bound, to clamp one side.
#[test]
fn nan_or_infinite_scalar_arguments() {
    type ScalarOp = for<'t> fn(Var<'t, f64>, f64) -> Result<Var<'t, f64>>;
    let ops: [(&str, ScalarOp); 3] = [
        ("powf", |v, c| v.powf(c)),
        ("add_scalar", |v, c| v.add_scalar(c)),
        ("mul_scalar", |v, c| v.mul_scalar(c)),
    ];
    let tape = Tape::new();
    let x = tape.var(zeros(&[2]));
    for (name, op) in ops {
        for (bad, shown) in [(f64::NAN, "NaN"), (f64::INFINITY, "inf"), (f64::NEG_INFINITY, "-inf")] {
            let err = error_naming(op(x, bad), &[name, shown]);
            assert!(
                matches!(&err, Error::InvalidParameter { value, .. } if value.to_bits() == bad.to_bits()),
                "{err:?}"
            );
        }
        assert!(op(x, f64::MAX).is_ok(), "{name} of the largest finite number");
    }
    assert!(x.clamp(0.0, f64::INFINITY).is_ok());
    assert!(x.clamp(f64::NEG_INFINITY, 0.0).is_ok());
}

// --- losses ---

/// A loss usable in both precisions, behind one name for the messages.
trait AnyLoss: Loss<f32> + Loss<f64> {}
impl<L: Loss<f32> + Loss<f64>> AnyLoss for L {}

/// What every computing method returns for `(p, t)`: `forward`, `backward`,
/// `value_and_grad`, `value_and_grad_into` (with a buffer of the right shape),
/// `record` on a tape, and the tape route `value_and_grad_on_tape`.
fn every_method<F: Float, L: Loss<F> + ?Sized>(
    loss: &L,
    p: &ArrayD<F>,
    t: &ArrayD<F>,
) -> Vec<(&'static str, Result<()>)> {
    let mut grad = ArrayD::zeros(p.raw_dim());
    let tape = Tape::new();
    vec![
        ("forward", loss.forward(p, t).map(drop)),
        ("backward", loss.backward(p, t).map(drop)),
        ("value_and_grad", loss.value_and_grad(p, t).map(drop)),
        (
            "value_and_grad_into",
            loss.value_and_grad_into(p, t, &mut grad).map(drop),
        ),
        ("record", loss.record(&tape, tape.var(p.clone()), t).map(drop)),
        ("value_and_grad_on_tape", value_and_grad_on_tape(loss, p, t).map(drop)),
    ]
}

/// Asserts that every method fails, in `f64` and (when `also_f32`) in `f32`,
/// with an error that `is_expected` accepts and whose message contains every
/// string of `names` (the argument, the shape, the index or the value).
#[track_caller]
fn assert_fails(
    what: &str,
    loss: &dyn AnyLoss,
    p: &ArrayD<f64>,
    t: &ArrayD<f64>,
    also_f32: bool,
    is_expected: &dyn Fn(&Error) -> bool,
    names: &[&str],
) {
    let mut results = every_method::<f64, _>(loss, p, t);
    if also_f32 {
        let (p32, t32) = (p.mapv(|v| v as f32), t.mapv(|v| v as f32));
        results.extend(every_method::<f32, _>(loss, &p32, &t32));
    }
    for (method, result) in results {
        let err = match result {
            Ok(()) => panic!("{what}: {method} returned Ok, expected an error"),
            Err(e) => e,
        };
        assert!(
            is_expected(&err),
            "{what}: {method} returned the wrong variant: {err:?}"
        );
        let message = err.to_string();
        for name in names {
            assert!(
                message.contains(name),
                "{what}: {method}: the message {message:?} does not name {name:?}"
            );
        }
    }
}

/// `assert_fails` with a pattern for the variant.
macro_rules! assert_fails {
    ($what:expr, $loss:expr, $p:expr, $t:expr, $pattern:pat, $names:expr) => {
        assert_fails($what, &$loss, &$p, &$t, true, &|e| matches!(e, $pattern), &$names)
    };
    (f64 only: $what:expr, $loss:expr, $p:expr, $t:expr, $pattern:pat, $names:expr) => {
        assert_fails($what, &$loss, &$p, &$t, false, &|e| matches!(e, $pattern), &$names)
    };
}

fn tensor(shape: &[usize], values: &[f64]) -> ArrayD<f64> {
    ArrayD::from_shape_vec(IxDyn(shape), values.to_vec()).expect("test array")
}

/// Probabilities in (0, 1) and 0/1 targets: valid for every elementwise loss
/// and for focal.
fn valid_pair(shape: &[usize]) -> (ArrayD<f64>, ArrayD<f64>) {
    let n: usize = shape.iter().product();
    let p: Vec<f64> = (0..n).map(|i| 0.25 + 0.5 * ((i % 3) as f64) / 2.0).collect();
    let t: Vec<f64> = (0..n).map(|i| (i % 2) as f64).collect();
    (tensor(shape, &p), tensor(shape, &t))
}

/// Valid predictions and targets of one shape for an elementwise loss.
type Pair = fn(&[usize]) -> (ArrayD<f64>, ArrayD<f64>);

/// Like [`valid_pair`], with labels −1 and 1 for the margin losses.
fn valid_signed_pair(shape: &[usize]) -> (ArrayD<f64>, ArrayD<f64>) {
    let (p, t) = valid_pair(shape);
    (p, t.mapv(|t| 2.0 * t - 1.0))
}

/// Every loss on (predictions, targets) of identical shape, with a name and
/// its valid inputs.
fn elementwise_losses() -> Vec<(&'static str, Box<dyn AnyLoss>, Pair)> {
    let labelled: [(&'static str, Box<dyn AnyLoss>); 11] = [
        ("MeanSquaredError", Box::new(MeanSquaredError::new())),
        ("MeanAbsoluteError", Box::new(MeanAbsoluteError::new())),
        ("HuberLoss", Box::new(HuberLoss::new(1.0))),
        ("SmoothL1Loss", Box::new(SmoothL1Loss::new(1.0))),
        ("BinaryCrossEntropyLoss", Box::new(BinaryCrossEntropyLoss::new())),
        (
            "BinaryCrossEntropyLoss",
            Box::new(BinaryCrossEntropyLoss::with_logits()),
        ),
        ("FocalLoss", Box::new(FocalLoss::new(2.0, Some(0.25), 1e-7))),
        ("KlDivLoss", Box::new(KlDivLoss::new())),
        ("KlDivLoss", Box::new(KlDivLoss::with_log_target())),
        ("PoissonNllLoss", Box::new(PoissonNllLoss::new())),
        ("PoissonNllLoss", Box::new(PoissonNllLoss::with_rates().with_full())),
    ];
    let signed: [(&'static str, Box<dyn AnyLoss>); 2] = [
        ("SoftMarginLoss", Box::new(SoftMarginLoss::new())),
        ("HingeEmbeddingLoss", Box::new(HingeEmbeddingLoss::new(1.0))),
    ];
    let with = |pair: Pair| move |(name, loss)| (name, loss, pair);
    (labelled.into_iter().map(with(valid_pair)))
        .chain(signed.into_iter().map(with(valid_signed_pair)))
        .collect()
}

/// A loss's name, the loss, and valid predictions and targets for it.
type NamedCase = (&'static str, Box<dyn AnyLoss>, ArrayD<f64>, ArrayD<f64>);

/// Every loss with valid inputs of its own layout, for the cases that apply
/// to all of them (a gradient buffer of the wrong shape).
fn every_loss_with_inputs() -> Vec<NamedCase> {
    let mut all: Vec<_> = elementwise_losses()
        .into_iter()
        .map(|(name, loss, pair)| {
            let (p, t) = pair(&[2, 3]);
            (name, loss, p, t)
        })
        .collect();
    let (x, y) = logits_and_classes();
    for (name, loss) in class_index_losses() {
        all.push((name, loss, x.clone(), y.clone()));
    }
    all.push((
        "ContrastiveLoss",
        Box::new(ContrastiveLoss::new(1.0)),
        points(&[2, 2, 3]),
        tensor(&[2], &[1.0, 0.0]),
    ));
    all.push((
        "TripletLoss",
        Box::new(TripletLoss::new(1.0)),
        points(&[2, 3, 1]),
        tensor(&[2], &[0.0, 0.0]),
    ));
    all
}

// ---------------------------------------------------------------------------
// Shapes
// ---------------------------------------------------------------------------

#[test]
fn predictions_and_targets_of_different_shapes() {
    // [2, 3] against [3] would broadcast; nothing is broadcast.
    for (name, loss, pair) in elementwise_losses() {
        for (ps, ts) in [
            (&[2, 3][..], &[3][..]),
            (&[2, 3], &[3, 2]),
            (&[2, 3], &[2, 3, 1]),
            (&[2, 3], &[1, 3]),
        ] {
            let (p, _) = pair(ps);
            let (_, t) = pair(ts);
            let shapes = [format!("{ps:?}"), format!("{ts:?}")];
            assert_fails!(
                &format!("{name} {ps:?} vs {ts:?}"),
                *loss,
                p,
                t,
                Error::ShapeMismatch { .. },
                [name, &shapes[0], &shapes[1], "predictions", "targets"]
            );
        }
    }
}

#[test]
fn empty_input() {
    for (name, loss, pair) in elementwise_losses() {
        for shape in [&[0][..], &[2, 0], &[0, 3]] {
            let (p, t) = pair(shape);
            let shown = format!("{shape:?}");
            assert_fails!(
                &format!("{name} {shape:?}"),
                *loss,
                p,
                t,
                Error::Empty { .. },
                [name, "`predictions`", "empty", &shown]
            );
        }
    }
}

#[test]
fn gradient_buffer_of_the_wrong_shape() {
    for (name, loss, p, t) in every_loss_with_inputs() {
        let shape = format!("{:?}", p.shape());
        for wrong in [&[3, 2][..], &[6], &[2, 3, 1], &[]] {
            if wrong == p.shape() {
                continue;
            }
            let mut grad = ArrayD::<f64>::zeros(IxDyn(wrong));
            let err = Loss::<f64>::value_and_grad_into(&*loss, &p, &t, &mut grad).unwrap_err();
            assert!(matches!(err, Error::ShapeMismatch { .. }), "{name}: {err:?}");
            let message = err.to_string();
            for needle in ["gradient buffer", &format!("{wrong:?}"), &shape] {
                assert!(message.contains(needle), "{name}: {message:?} lacks {needle:?}");
            }
            assert!(grad.iter().all(|&g| g == 0.0), "{name}: the buffer was written");
        }
    }
}

// ---------------------------------------------------------------------------
// Non-finite inputs and results
// ---------------------------------------------------------------------------

#[test]
fn nan_in_predictions_names_the_input_and_the_first_index() {
    for (name, loss, pair) in elementwise_losses() {
        let (mut p, t) = pair(&[2, 3]);
        p[[1, 0]] = f64::NAN;
        p[[1, 2]] = f64::NAN;
        assert_fails!(
            name,
            *loss,
            p,
            t,
            Error::NonFinite { arg: "predictions", .. },
            ["`predictions`", "NaN", "[1, 0]"]
        );
    }
}

#[test]
fn nan_in_targets_names_the_input_and_the_first_index() {
    for (name, loss, pair) in elementwise_losses() {
        let (p, mut t) = pair(&[3, 2]);
        t[[2, 1]] = f64::NAN;
        assert_fails!(
            name,
            *loss,
            p,
            t,
            Error::NonFinite { arg: "targets", .. },
            ["`targets`", "NaN", "[2, 1]"]
        );
    }
}

#[test]
fn infinity_in_the_inputs_is_reported_where_it_makes_the_loss_infinite() {
    // Losses on unbounded predictions: an infinite prediction or target gives an
    // infinite (or NaN) loss, reported at its index. (Losses on probabilities
    // report it as outside [0, 1]; see the BCE and focal tests.)
    let losses: Vec<(&str, Box<dyn AnyLoss>)> = vec![
        ("MeanSquaredError", Box::new(MeanSquaredError::new())),
        ("MeanAbsoluteError", Box::new(MeanAbsoluteError::new())),
        ("HuberLoss", Box::new(HuberLoss::new(1.0))),
        ("SmoothL1Loss", Box::new(SmoothL1Loss::new(0.5))),
        (
            "BinaryCrossEntropyLoss",
            Box::new(BinaryCrossEntropyLoss::with_logits()),
        ),
        ("KlDivLoss", Box::new(KlDivLoss::new())),
        ("KlDivLoss", Box::new(KlDivLoss::with_log_target())),
        ("PoissonNllLoss", Box::new(PoissonNllLoss::new().with_full())),
    ];
    for (name, loss) in losses {
        let (mut p, t) = valid_pair(&[4]);
        p[[2]] = f64::INFINITY;
        assert_fails!(
            name,
            *loss,
            p,
            t,
            Error::NonFinite { arg: "predictions", .. },
            ["`predictions`", "inf", "[2]"]
        );
    }
    for (name, loss, pair) in elementwise_losses().into_iter().take(4) {
        let (p, mut t) = pair(&[4]);
        t[[3]] = f64::NEG_INFINITY;
        assert_fails!(
            name,
            *loss,
            p,
            t,
            Error::NonFinite { arg: "targets", .. },
            ["`targets`", "-inf", "[3]"]
        );
    }
}

#[test]
fn an_overflowing_loss_value_is_an_error_not_infinity() {
    // Every input is finite; (1e200 − (−1e200))² overflows.
    let p = tensor(&[2], &[1e200, 0.0]);
    let t = tensor(&[2], &[-1e200, 0.0]);
    assert_fails!(f64 only:
        "MeanSquaredError",
        MeanSquaredError::new(),
        p,
        t,
        Error::NonFinite { arg: "loss value", .. },
        ["MeanSquaredError", "`loss value`", "inf"]
    );
}

/// Every way to get `loss`'s gradient on `(p, t)`, by name, with the value
/// dropped: the closed form's three and the tape's.
fn gradient_methods<F: tapeloss::Float, L: Loss<F>>(
    loss: &L,
    p: &ArrayD<F>,
    t: &ArrayD<F>,
) -> [(&'static str, tapeloss::Result<()>); 4] {
    let mut grad = ArrayD::zeros(p.raw_dim());
    [
        ("backward", loss.backward(p, t).map(drop)),
        ("value_and_grad", loss.value_and_grad(p, t).map(drop)),
        (
            "value_and_grad_into",
            loss.value_and_grad_into(p, t, &mut grad).map(drop),
        ),
        ("value_and_grad_on_tape", value_and_grad_on_tape(loss, p, t).map(drop)),
    ]
}

#[test]
fn a_finite_loss_with_an_overflowing_gradient_is_an_error() {
    // Focal with γ = 1e308 at p = 0: the loss is −ln ε (finite), but its slope
    // −γ·ln ε overflows. The value alone is fine; every gradient method fails.
    let loss = FocalLoss::new(1e308, None, 1e-10);
    let p = tensor(&[1, 2], &[0.0, 1.0]);
    let t = tensor(&[1, 2], &[1.0, 0.0]);
    let value: f64 = loss.forward(&p, &t).expect("the value is finite");
    assert!((value - -(1e-10_f64).ln()).abs() < 1e-9);
    for (method, result) in gradient_methods(&loss, &p, &t) {
        let err = result.expect_err(method);
        assert!(
            matches!(err, Error::NonFinite { arg: "gradient", .. }),
            "{method}: {err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains("`gradient`") && message.contains("[0, 0]"),
            "{method}: {message}"
        );
    }

    // Contrastive in f32 with a margin of 1e18 over a distance of 1e-22: the
    // loss h² = 1e36 fits, the closed form's slope factor h/d = 1e40 does not.
    let loss = ContrastiveLoss::new(1e18);
    let p = ArrayD::from_shape_vec(IxDyn(&[1, 2, 1]), vec![0.0_f32, 1e-22]).unwrap();
    let t = ArrayD::from_shape_vec(IxDyn(&[1]), vec![0.0_f32]).unwrap();
    let value = loss.forward(&p, &t).expect("the value is finite");
    assert!((value - 1e36).abs() < 1e30, "{value}");
    // value_and_grad builds its gradient on its own path, so both are checked.
    let closed_forms = gradient_methods(&loss, &p, &t);
    for (method, result) in closed_forms.into_iter().filter(|(m, _)| *m != "value_and_grad_on_tape") {
        let err = result.expect_err(method);
        assert!(
            matches!(err, Error::NonFinite { arg: "gradient", .. }),
            "{method}: {err:?}"
        );
    }
    // The gradient itself, ∓2h·(x₁ − x₂)/d = ±2e18, fits, and the tape gets
    // it: `norm_axis` divides x₁ − x₂ by d before the factor 2h meets it.
    // (d² = 1e-44 is subnormal in f32, hence the loose tolerance.)
    let (_, grad) = value_and_grad_on_tape(&loss, &p, &t).expect("the tape's gradient is finite");
    assert!(
        (grad[[0, 0, 0]] / 2e18 - 1.0).abs() < 0.05 && (grad[[0, 1, 0]] / -2e18 - 1.0).abs() < 0.05,
        "{grad}"
    );

    // Cross-entropy in f32 on soft targets [3e38, −3e38, 3e38] over equal
    // logits: the loss 3e38·ln 3 fits, the middle slope A/3 − a₁ = 4e38 does
    // not. Two samples, so that the bad one is not the first checked; rows
    // [2, 3] and a spatial axis [1, 3, 2] take different kernels.
    let loss = CrossEntropyLoss::new().with_reduction(Reduction::Sum);
    let cases: [(&[usize], [f32; 6], &[usize]); 2] = [
        (&[2, 3], [0.0, 0.0, 0.0, 3e38, -3e38, 3e38], &[1, 1]),
        (&[1, 3, 2], [0.0, 3e38, 0.0, -3e38, 0.0, 3e38], &[0, 1, 1]),
    ];
    for (shape, targets, bad) in cases {
        let p = ArrayD::from_shape_vec(IxDyn(shape), vec![0.0_f32; 6]).unwrap();
        let t = ArrayD::from_shape_vec(IxDyn(shape), targets.to_vec()).unwrap();
        let value = loss.forward(&p, &t).expect("the value is finite");
        assert!((value / (3e38 * 3f32.ln()) - 1.0).abs() < 1e-5, "{value}");
        for (method, result) in gradient_methods(&loss, &p, &t) {
            let err = result.expect_err(method);
            assert!(
                matches!(&err, Error::NonFinite { arg: "gradient", index, .. } if index == bad),
                "{shape:?} {method}: {err:?}"
            );
        }
    }
}

/// `Σ c·x[0, k]` over picks that repeat column 0: the value is small, but
/// the gradient at `[0, 0]` is the sum of the repeated `c`.
struct RepeatedPicks {
    c: f32,
}

impl Loss<f32> for RepeatedPicks {
    fn record<'t>(
        &self,
        _tape: &'t tapeloss::Tape<f32>,
        predictions: tapeloss::Var<'t, f32>,
        _targets: &ArrayD<f32>,
    ) -> tapeloss::Result<tapeloss::Var<'t, f32>> {
        let picks = ArrayD::from_shape_vec(IxDyn(&[1, 3]), vec![0, 0, 1]).expect("picks");
        predictions.gather(1, &picks)?.mul_scalar(self.c)?.sum()
    }
}

#[test]
fn a_scattered_gradient_that_overflows_is_an_error() {
    // A gather's backward adds into zeros and checks what it wrote, so the
    // tape need not check its whole gradient again; two picks of 2e38 at one
    // element overflow f32, on a value of 3·2e38·1e-30.
    let p = ArrayD::from_shape_vec(IxDyn(&[1, 2]), vec![1e-30_f32, 1e-30]).expect("predictions");
    let t = ArrayD::zeros(IxDyn(&[1]));
    let err = value_and_grad_on_tape(&RepeatedPicks { c: 2e38 }, &p, &t).expect_err("overflow");
    assert!(
        matches!(&err, Error::NonFinite { arg: "gradient", index, .. } if index == &[0, 0]),
        "{err:?}"
    );
    // Below the overflow the same picks give the sum of the repeats.
    let (_, grad) = value_and_grad_on_tape(&RepeatedPicks { c: 1e38 }, &p, &t).expect("finite");
    assert_eq!(
        grad,
        ArrayD::from_shape_vec(IxDyn(&[1, 2]), vec![2e38_f32, 1e38]).expect("grad")
    );
}

// ---------------------------------------------------------------------------
// Binary cross-entropy
// ---------------------------------------------------------------------------

#[test]
fn bce_probabilities_outside_the_unit_interval() {
    for bad in [-0.5, 1.5, f64::INFINITY, f64::NEG_INFINITY] {
        let (mut p, t) = valid_pair(&[2, 2]);
        p[[1, 1]] = bad;
        let shown = format!("{bad}");
        assert_fails!(
            "BinaryCrossEntropyLoss",
            BinaryCrossEntropyLoss::new(),
            p,
            t,
            Error::InvalidInput { arg: "predictions", .. },
            ["`predictions`", &shown, "[1, 1]", "[0, 1]"]
        );
    }
}

#[test]
fn bce_targets_outside_the_unit_interval() {
    for loss in [BinaryCrossEntropyLoss::new(), BinaryCrossEntropyLoss::with_logits()] {
        for bad in [-1.0, 2.0, f64::INFINITY] {
            let (p, mut t) = valid_pair(&[3]);
            t[[2]] = bad;
            let shown = format!("{bad}");
            assert_fails!(
                "BinaryCrossEntropyLoss targets",
                loss,
                p,
                t,
                Error::InvalidTarget { .. },
                ["targets", &shown, "[2]", "[0, 1]"]
            );
        }
    }
}

#[test]
fn bce_negative_pos_weight() {
    let (p, t) = valid_pair(&[4]);
    assert_fails!(
        "pos_weight",
        BinaryCrossEntropyLoss::with_logits().with_pos_weight(-2.0),
        p,
        t,
        Error::InvalidParameter { .. },
        ["`pos_weight`", "-2", "≥ 0"]
    );
    // PyTorch has no pos_weight on probabilities: asking for one is a mistake.
    assert_fails!(
        "pos_weight on probabilities",
        BinaryCrossEntropyLoss::new().with_pos_weight(2.0),
        p,
        t,
        Error::InvalidParameter { .. },
        ["`pos_weight`", "with_logits"]
    );
}

// ---------------------------------------------------------------------------
// KL divergence and Poisson NLL
// ---------------------------------------------------------------------------

#[test]
fn kl_targets_negative_or_infinite() {
    // PyTorch returns NaN for a negative probability target. (Values exact
    // in f32, so that both precisions show the same number.)
    for bad in [-0.5, -(2f64.powi(-40)), f64::INFINITY, f64::NEG_INFINITY] {
        let (q, mut p) = valid_pair(&[2, 2]);
        p[[1, 0]] = bad;
        let shown = format!("{bad}");
        assert_fails!(
            "KlDivLoss targets",
            KlDivLoss::new(),
            q,
            p,
            Error::InvalidTarget { .. },
            ["KlDivLoss", "targets", &shown, "[1, 0]", "≥ 0"]
        );
    }
}

#[test]
fn kl_non_finite_log_probabilities() {
    // An infinite prediction, even where the target is 0 (PyTorch: NaN), and
    // an infinite log target (PyTorch: NaN for ln 0 = −∞).
    let (mut q, p) = valid_pair(&[2, 2]);
    q[[0, 0]] = f64::NEG_INFINITY; // p = 0 there
    assert_eq!(p[[0, 0]], 0.0);
    for loss in [KlDivLoss::new(), KlDivLoss::with_log_target()] {
        assert_fails!(
            "KlDivLoss -inf prediction",
            loss,
            q,
            p,
            Error::NonFinite { arg: "predictions", .. },
            ["KlDivLoss", "`predictions`", "-inf", "[0, 0]"]
        );
    }
    for bad in [f64::NEG_INFINITY, f64::INFINITY] {
        let (q, mut t) = valid_pair(&[2, 2]);
        t[[1, 1]] = bad;
        let shown = format!("{bad}");
        assert_fails!(
            "KlDivLoss log target",
            KlDivLoss::with_log_target(),
            q,
            t,
            Error::NonFinite { arg: "targets", .. },
            ["KlDivLoss", "`targets`", &shown, "[1, 1]"]
        );
    }
}

#[test]
fn poisson_counts_negative_or_infinite() {
    for loss in [PoissonNllLoss::new(), PoissonNllLoss::with_rates().with_full()] {
        for bad in [-1.0, -(2f64.powi(-40)), f64::INFINITY] {
            let (x, mut t) = valid_pair(&[3]);
            t[[2]] = bad;
            let shown = format!("{bad}");
            assert_fails!(
                "PoissonNllLoss targets",
                loss,
                x,
                t,
                Error::InvalidTarget { .. },
                ["PoissonNllLoss", "targets", &shown, "[2]", "≥ 0"]
            );
        }
    }
}

#[test]
fn poisson_rates_negative_or_infinite() {
    // PyTorch: NaN below −eps, a finite number in (−eps, 0) (2⁻³⁰ < 1e-8).
    for bad in [-1.0, -(2f64.powi(-30)), f64::INFINITY, f64::NEG_INFINITY] {
        let (mut x, t) = valid_pair(&[2, 2]);
        x[[0, 1]] = bad;
        let shown = format!("{bad}");
        assert_fails!(
            "PoissonNllLoss rates",
            PoissonNllLoss::with_rates(),
            x,
            t,
            Error::InvalidInput { arg: "predictions", .. },
            ["PoissonNllLoss", "`predictions`", &shown, "[0, 1]", "≥ 0"]
        );
    }
}

#[test]
fn poisson_eps_not_positive() {
    let (x, t) = valid_pair(&[4]);
    for eps in [0.0, -1e-8] {
        let shown = format!("{eps}");
        for loss in [PoissonNllLoss::with_rates(), PoissonNllLoss::new()] {
            assert_fails!(
                "eps",
                loss.with_eps(eps),
                x,
                t,
                Error::InvalidParameter { .. },
                ["`eps`", &shown, "> 0"]
            );
        }
    }
}

#[test]
fn poisson_log_rate_whose_exp_overflows() {
    // Every input is finite; e^800 is not.
    let x = tensor(&[2], &[0.5, 800.0]);
    let t = tensor(&[2], &[1.0, 1.0]);
    let loss = PoissonNllLoss::new();
    for (method, result) in every_method::<f64, _>(&loss, &x, &t) {
        let err = result.expect_err(method);
        assert!(
            matches!(
                &err,
                Error::NonFinite {
                    arg: "loss value" | "gradient",
                    ..
                }
            ),
            "{method}: {err:?}"
        );
        assert!(err.to_string().contains("inf"), "{method}: {err}");
    }
}

// ---------------------------------------------------------------------------
// Focal
// ---------------------------------------------------------------------------

#[test]
fn focal_negative_gamma() {
    let (p, t) = valid_pair(&[2, 3]);
    assert_fails!(
        "gamma",
        FocalLoss::new(-1.0, None, 1e-7),
        p,
        t,
        Error::InvalidParameter { .. },
        ["`gamma`", "-1", "≥ 0"]
    );
}

#[test]
fn focal_alpha_outside_the_unit_interval() {
    let (p, t) = valid_pair(&[2, 3]);
    for alpha in [-0.25, 1.5] {
        let shown = format!("{alpha}");
        assert_fails!(
            "alpha",
            FocalLoss::new(2.0, Some(alpha), 1e-7),
            p,
            t,
            Error::InvalidParameter { .. },
            ["`alpha`", &shown, "[0, 1]"]
        );
    }
}

#[test]
fn focal_epsilon_outside_the_open_interval() {
    let (p, t) = valid_pair(&[2, 3]);
    for epsilon in [0.0, 0.5, -1e-7, 0.75] {
        let shown = format!("{epsilon}");
        assert_fails!(
            "epsilon",
            FocalLoss::new(2.0, None, epsilon),
            p,
            t,
            Error::InvalidParameter { .. },
            ["`epsilon`", &shown, "(0, 0.5)"]
        );
    }
}

#[test]
fn focal_probabilities_outside_the_unit_interval() {
    for bad in [-0.25, 1.25] {
        let (mut p, t) = valid_pair(&[2, 3]);
        p[[0, 2]] = bad;
        let shown = format!("{bad}");
        assert_fails!(
            "FocalLoss",
            FocalLoss::new(2.0, None, 1e-7),
            p,
            t,
            Error::InvalidInput { arg: "predictions", .. },
            ["`predictions`", &shown, "[0, 2]"]
        );
        let (p, mut t) = valid_pair(&[2, 3]);
        t[[1, 0]] = bad;
        assert_fails!(
            "FocalLoss targets",
            FocalLoss::new(2.0, None, 1e-7),
            p,
            t,
            Error::InvalidTarget { .. },
            ["targets", &shown, "[1, 0]"]
        );
    }
}

#[test]
fn focal_input_of_the_wrong_rank() {
    for shape in [&[][..], &[2, 3, 4]] {
        let (p, t) = valid_pair(shape);
        let shown = format!("{shape:?}");
        assert_fails!(
            "FocalLoss rank",
            FocalLoss::new(2.0, None, 1e-7),
            p,
            t,
            Error::InvalidShape { arg: "predictions", .. },
            ["`predictions`", &shown, "[N, C]"]
        );
    }
}

// ---------------------------------------------------------------------------
// Regression thresholds
// ---------------------------------------------------------------------------

#[test]
fn huber_delta_not_positive() {
    let (p, t) = valid_pair(&[5]);
    for delta in [0.0, -1.0] {
        let shown = format!("{delta}");
        assert_fails!(
            "delta",
            HuberLoss::new(delta),
            p,
            t,
            Error::InvalidParameter { .. },
            ["`delta`", &shown, "> 0"]
        );
    }
}

#[test]
fn smooth_l1_beta_negative() {
    let (p, t) = valid_pair(&[5]);
    assert_fails!(
        "beta",
        SmoothL1Loss::new(-0.5),
        p,
        t,
        Error::InvalidParameter { .. },
        ["`beta`", "-0.5", "≥ 0"]
    );
}

// ---------------------------------------------------------------------------
// Any hyperparameter NaN or infinite
// ---------------------------------------------------------------------------

#[test]
fn non_finite_hyperparameters() {
    let (p, t) = valid_pair(&[2, 3]);
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let shown = format!("{bad}");
        let cases: Vec<(&str, Box<dyn AnyLoss>)> = vec![
            ("delta", Box::new(HuberLoss::new(bad))),
            ("beta", Box::new(SmoothL1Loss::new(bad))),
            ("margin", Box::new(HingeEmbeddingLoss::new(bad))),
            (
                "pos_weight",
                Box::new(BinaryCrossEntropyLoss::with_logits().with_pos_weight(bad)),
            ),
            ("gamma", Box::new(FocalLoss::new(bad, None, 1e-7))),
            ("alpha", Box::new(FocalLoss::new(2.0, Some(bad), 1e-7))),
            ("epsilon", Box::new(FocalLoss::new(2.0, None, bad))),
            ("eps", Box::new(PoissonNllLoss::with_rates().with_eps(bad))),
        ];
        // The class-index losses on their own layout.
        let (x, y) = logits_and_classes();
        assert_fails!(
            &format!("margin = {bad}"),
            MultiMarginLoss::new().with_margin(bad),
            x,
            y,
            Error::InvalidParameter { .. },
            ["`margin`", &shown]
        );
        for (name, loss) in cases {
            let quoted = format!("`{name}`");
            assert_fails!(
                &format!("{name} = {bad}"),
                *loss,
                p,
                t,
                Error::InvalidParameter { .. },
                [&quoted, &shown]
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Cross-entropy
// ---------------------------------------------------------------------------

/// Logits `[2, 3]` and class indices `[2]`.
fn logits_and_classes() -> (ArrayD<f64>, ArrayD<f64>) {
    (
        tensor(&[2, 3], &[1.0, 2.0, 0.5, 0.8, 0.2, 1.5]),
        tensor(&[2], &[1.0, 2.0]),
    )
}

#[test]
fn ce_targets_of_neither_layout() {
    let (x, _) = logits_and_classes();
    // [3] and [1, 3] would broadcast against [2, 3]; [2, 1] is neither layout.
    for shape in [&[3][..], &[1, 3], &[2, 1], &[3, 2], &[2, 3, 1], &[]] {
        let t = ArrayD::zeros(IxDyn(shape));
        let shown = format!("{shape:?}");
        assert_fails!(
            "CrossEntropyLoss shapes",
            CrossEntropyLoss::new(),
            x,
            t,
            Error::ShapeMismatch { .. },
            ["CrossEntropyLoss", "[2, 3]", &shown, "targets"]
        );
    }
}

#[test]
fn ce_empty_batch_or_no_classes() {
    for (logits, targets) in [
        (&[0, 3][..], &[0][..]),
        (&[2, 0], &[2]),
        (&[0], &[]),
        (&[2, 3, 0], &[2, 0]),
    ] {
        let shown = format!("{logits:?}");
        assert_fails!(
            "CrossEntropyLoss empty",
            CrossEntropyLoss::new(),
            ArrayD::zeros(IxDyn(logits)),
            ArrayD::zeros(IxDyn(targets)),
            Error::Empty { .. },
            ["`predictions`", "empty", &shown]
        );
    }
}

#[test]
fn ce_nan_in_logits_or_targets() {
    let (mut x, y) = logits_and_classes();
    x[[1, 1]] = f64::NAN;
    assert_fails!(
        "CrossEntropyLoss NaN logit",
        CrossEntropyLoss::new(),
        x,
        y,
        Error::NonFinite { arg: "predictions", .. },
        ["`predictions`", "NaN", "[1, 1]"]
    );
    let (x, mut y) = logits_and_classes();
    y[[1]] = f64::NAN;
    assert_fails!(
        "CrossEntropyLoss NaN class",
        CrossEntropyLoss::new(),
        x,
        y,
        Error::NonFinite { arg: "targets", .. },
        ["`targets`", "NaN", "[1]"]
    );
    let (x, _) = logits_and_classes();
    let mut soft = ArrayD::from_elem(IxDyn(&[2, 3]), 0.25);
    soft[[0, 2]] = f64::NAN;
    assert_fails!(
        "CrossEntropyLoss NaN probability",
        CrossEntropyLoss::new(),
        x,
        soft,
        Error::NonFinite { arg: "targets", .. },
        ["`targets`", "NaN", "[0, 2]"]
    );
}

/// Regression (found by the property tests): a sample whose soft targets are
/// all 0 adds nothing to the loss, but a NaN or +∞ logit in it, or a row of
/// −∞, is still an error, and `record` says so like `forward` (the tape's
/// masks on zero coefficients used to hide it).
#[test]
fn ce_non_finite_logits_in_a_sample_with_zero_targets() {
    let zero_row = tensor(&[2, 3], &[0.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
    for (bad, shown) in [(f64::NAN, "NaN"), (f64::INFINITY, "inf")] {
        let (mut x, _) = logits_and_classes();
        x[[0, 1]] = bad;
        assert_fails!(
            "CrossEntropyLoss zero row",
            CrossEntropyLoss::new(),
            x,
            zero_row,
            Error::NonFinite { arg: "predictions", .. },
            ["`predictions`", shown, "[0, 1]"]
        );
    }
    let (mut x, _) = logits_and_classes();
    for c in 0..3 {
        x[[0, c]] = f64::NEG_INFINITY;
    }
    assert_fails!(
        "CrossEntropyLoss row of -inf",
        CrossEntropyLoss::new(),
        x,
        zero_row,
        Error::NonFinite { arg: "predictions", .. },
        ["`predictions`", "-inf", "[0, 0]"]
    );
}

/// A sample that adds nothing to the loss — an ignored target, or a class of
/// weight 0 — has its logits held to the rule of every other sample: a NaN or
/// +∞ among them, or a row of −∞, is an error from every method (the value
/// never saw it, so `forward` and `record` used to return Ok where the
/// gradient routes failed). The closed form's two layouts: classes
/// contiguous `[N, C]`, and strided `[N, C, d]`.
#[test]
fn ce_non_finite_logits_in_an_ignored_or_zero_weight_sample() {
    let ignoring = CrossEntropyLoss::new().with_ignore_index(2);
    let weighing = CrossEntropyLoss::new().with_class_weights(vec![1.0, 1.0, 0.0]);
    for (what, loss) in [("ignored sample", &ignoring), ("zero-weight sample", &weighing)] {
        // Sample 1 (target 2) is the one that adds nothing.
        let y = tensor(&[2], &[1.0, 2.0]);
        for (bad, shown) in [(f64::NAN, "NaN"), (f64::INFINITY, "inf")] {
            let (mut x, _) = logits_and_classes();
            x[[1, 1]] = bad;
            assert_fails!(
                what,
                loss.clone(),
                x,
                y,
                Error::NonFinite { arg: "predictions", .. },
                ["CrossEntropyLoss", "`predictions`", shown, "[1, 1]"]
            );
        }
        let (mut x, _) = logits_and_classes();
        for c in 0..3 {
            x[[1, c]] = f64::NEG_INFINITY;
        }
        assert_fails!(
            what,
            loss.clone(),
            x,
            y,
            Error::NonFinite { arg: "predictions", .. },
            ["CrossEntropyLoss", "`predictions`", "-inf", "[1, 0]"]
        );
        // [1, 3, 2]: sample (0, 1) is the one that adds nothing.
        let mut x = tensor(&[1, 3, 2], &[1.0, 0.8, 2.0, 0.2, 0.5, 1.5]);
        x[[0, 1, 1]] = f64::NAN;
        assert_fails!(
            what,
            loss.clone(),
            x,
            tensor(&[1, 2], &[1.0, 2.0]),
            Error::NonFinite { arg: "predictions", .. },
            ["CrossEntropyLoss", "`predictions`", "NaN", "[0, 1, 1]"]
        );
    }
    // A NaN or infinite probability in a class of weight 0: the tape's mask on
    // the weights used to hide it from `record`.
    for (bad, shown) in [(f64::NAN, "NaN"), (f64::INFINITY, "inf")] {
        let (x, _) = logits_and_classes();
        let soft = tensor(&[2, 3], &[0.0, 1.0, bad, 1.0, 0.0, 0.0]);
        for smoothing in [0.0, 0.1] {
            assert_fails!(
                "target in a zero-weight class",
                weighing.clone().with_label_smoothing(smoothing),
                x,
                soft,
                Error::NonFinite { arg: "targets", .. },
                ["CrossEntropyLoss", "`targets`", shown, "[0, 2]"]
            );
        }
    }
}

/// What stays allowed next to the case above: a `−∞` logit masks its class
/// wherever that class's coefficient is 0 — in a kept sample (not its target),
/// in an ignored sample, or in a zero-weight sample — with a finite loss, the
/// value of the same inputs without it, and a zero gradient there.
#[test]
fn ce_masking_logits_in_ignored_or_zero_weight_samples_are_allowed() {
    let ninf = f64::NEG_INFINITY;
    let ignoring = CrossEntropyLoss::new().with_ignore_index(2);
    let weighing = CrossEntropyLoss::new().with_class_weights(vec![1.0, 1.0, 0.0]);
    let y = tensor(&[2], &[1.0, 2.0]);
    // Sample 0 masks class 2; sample 1 (ignored, or of weight 0) masks class 0, then class 2.
    let x = tensor(&[2, 3], &[1.0, 2.0, ninf, ninf, 0.2, 1.5]);
    let other = tensor(&[2, 3], &[1.0, 2.0, ninf, 0.8, 0.2, ninf]);
    // The loss of sample 0 alone: ln(e¹ + e²) − 2.
    let expected = (1f64.exp() + 2f64.exp()).ln() - 2.0;
    for (what, loss) in [("ignored sample", &ignoring), ("zero-weight sample", &weighing)] {
        for x in [&x, &other] {
            for (method, result) in every_method::<f64, _>(loss, x, &y) {
                assert!(result.is_ok(), "{what}: {method}: {result:?}");
            }
            let x32 = x.mapv(|v| v as f32);
            for (method, result) in every_method::<f32, _>(loss, &x32, &y.mapv(|v| v as f32)) {
                assert!(result.is_ok(), "{what}: {method} (f32): {result:?}");
            }
            let (value, grad) = loss.value_and_grad(x, &y).expect("masked classes are allowed");
            assert!((value - expected).abs() < 1e-12, "{what}: {value} vs {expected}");
            let tape = Tape::new();
            let recorded = loss.record(&tape, tape.var(x.clone()), &y).and_then(|v| v.item());
            assert!(recorded.is_ok_and(|v| (v - expected).abs() < 1e-12), "{what}: record");
            assert_eq!(grad[[0, 2]], 0.0, "{what}: the masked class of sample 0");
            for c in 0..3 {
                assert_eq!(grad[[1, c]], 0.0, "{what}: sample 1, class {c}");
            }
            let (_, on_tape) = value_and_grad_on_tape(loss, x, &y).expect("the tape route");
            assert_eq!(on_tape[[0, 2]], 0.0, "{what}: the masked class on the tape");
            assert!(
                on_tape.iter().zip(&grad).all(|(a, b)| (a - b).abs() < 1e-12),
                "{what}: tape"
            );
        }
    }
}

#[test]
fn ce_class_index_out_of_range_negative_or_fractional() {
    for (bad, why) in [(3.0, "< 3"), (7.0, "< 3"), (-1.0, "≥ 0"), (0.5, "whole number")] {
        let (x, mut y) = logits_and_classes();
        y[[1]] = bad;
        let shown = format!("invalid target {bad} at index [1]");
        assert_fails!(
            "CrossEntropyLoss class index",
            CrossEntropyLoss::new(),
            x,
            y,
            Error::InvalidTarget { .. },
            [&shown, "class index", why]
        );
    }
}

#[test]
fn ce_class_weights_of_the_wrong_length_or_negative() {
    let (x, y) = logits_and_classes();
    for weights in [vec![1.0, 2.0], vec![1.0; 4], vec![]] {
        let len = format!("= {}", weights.len());
        assert_fails!(
            "class_weights length",
            CrossEntropyLoss::new().with_class_weights(weights),
            x,
            y,
            Error::InvalidParameter { .. },
            [
                "`class_weights.len() against 3 classes (axis 1 of logits [",
                &len,
                "one weight per class"
            ]
        );
    }
    for (bad, shown) in [(-0.5, "-0.5"), (f64::NAN, "NaN"), (f64::INFINITY, "inf")] {
        assert_fails!(
            "class_weights value",
            CrossEntropyLoss::new().with_class_weights(vec![1.0, bad, 1.0]),
            x,
            y,
            Error::InvalidParameter { .. },
            ["`class_weights[1]`", shown, "≥ 0"]
        );
    }
}

#[test]
fn ce_label_smoothing_outside_the_unit_interval() {
    let (x, y) = logits_and_classes();
    for (bad, shown) in [(-0.1, "-0.1"), (1.5, "1.5"), (f64::NAN, "NaN"), (f64::INFINITY, "inf")] {
        assert_fails!(
            "label_smoothing",
            CrossEntropyLoss::new().with_label_smoothing(bad),
            x,
            y,
            Error::InvalidParameter { .. },
            ["`label_smoothing`", shown, "[0, 1]"]
        );
    }
}

#[test]
fn ce_every_target_ignored() {
    let (x, _) = logits_and_classes();
    let y = tensor(&[2], &[2.0, 2.0]);
    assert_fails!(
        "all ignored",
        CrossEntropyLoss::new().with_ignore_index(2),
        x,
        y,
        Error::AllTargetsIgnored { ignore_index: 2, .. },
        ["CrossEntropyLoss", "ignore_index = 2"]
    );
    // ignore_index has no meaning for probability targets.
    let soft = ArrayD::from_elem(IxDyn(&[2, 3]), 0.25);
    assert_fails!(
        "ignore_index with probabilities",
        CrossEntropyLoss::new().with_ignore_index(0),
        x,
        soft,
        Error::InvalidParameter { .. },
        ["`ignore_index`", "probability targets"]
    );
}

// ---------------------------------------------------------------------------
// Every loss on class indices: cross-entropy, NLL, multi-margin
// ---------------------------------------------------------------------------

/// Every loss on predictions `[N, C]` (or `[C]`) and class indices `[N]` (or
/// `[]`), with a name; `logits_and_classes()` is valid for each.
fn class_index_losses() -> Vec<(&'static str, Box<dyn AnyLoss>)> {
    vec![
        ("CrossEntropyLoss", Box::new(CrossEntropyLoss::new())),
        ("NllLoss", Box::new(NllLoss::new())),
        (
            "NllLoss",
            Box::new(
                NllLoss::new()
                    .with_class_weights(vec![1.0, 2.0, 0.5])
                    .with_ignore_index(7),
            ),
        ),
        ("MultiMarginLoss", Box::new(MultiMarginLoss::new())),
        (
            "MultiMarginLoss",
            Box::new(
                MultiMarginLoss::new()
                    .with_p(2)
                    .with_margin(0.5)
                    .with_class_weights(vec![1.0, 2.0, 0.5]),
            ),
        ),
    ]
}

#[test]
fn class_index_targets_of_the_wrong_shape() {
    let (x, _) = logits_and_classes();
    // [3] and [1, 3] would broadcast against [2, 3]; [2, 3] would be
    // probabilities for cross-entropy, so it is left out here.
    for (name, loss) in class_index_losses().into_iter().skip(1) {
        for shape in [&[3][..], &[1, 3], &[2, 1], &[3, 2], &[2, 3], &[1], &[]] {
            let t = ArrayD::zeros(IxDyn(shape));
            let shown = format!("{shape:?}");
            assert_fails!(
                &format!("{name} targets {shape:?}"),
                *loss,
                x,
                t,
                Error::ShapeMismatch { .. },
                [name, "[2, 3]", &shown, "targets", "class indices of shape [2]"]
            );
        }
        // A single sample [C] takes a 0-d target.
        let t = ArrayD::zeros(IxDyn(&[1]));
        assert_fails!(
            &format!("{name} one sample"),
            *loss,
            tensor(&[3], &[0.5, -1.0, 2.0]),
            t,
            Error::ShapeMismatch { .. },
            [name, "[3]", "[1]", "class indices of shape []"]
        );
    }
}

#[test]
fn class_index_predictions_without_a_class_axis_or_too_many() {
    for (name, loss) in class_index_losses() {
        assert_fails!(
            &format!("{name} 0-d"),
            *loss,
            tensor(&[], &[0.5]),
            tensor(&[], &[0.0]),
            Error::InvalidShape { .. },
            [name, "`predictions`", "[]", "with a class axis"]
        );
    }
    // Multi-margin takes [C] or [N, C] only (PyTorch too).
    for (name, loss) in class_index_losses().into_iter().skip(3) {
        assert_fails!(
            &format!("{name} 3-d"),
            *loss,
            points(&[2, 3, 2]),
            tensor(&[2, 2], &[0.0, 1.0, 2.0, 0.0]),
            Error::InvalidShape { .. },
            [name, "`predictions`", "[2, 3, 2]", "[C] for one sample or [N, C]"]
        );
    }
}

#[test]
fn class_index_empty_batch_or_no_classes() {
    for (name, loss) in class_index_losses() {
        for (logits, targets) in [(&[0, 3][..], &[0][..]), (&[2, 0], &[2]), (&[0], &[])] {
            let shown = format!("{logits:?}");
            assert_fails!(
                &format!("{name} empty {logits:?}"),
                *loss,
                ArrayD::zeros(IxDyn(logits)),
                ArrayD::zeros(IxDyn(targets)),
                Error::Empty { .. },
                [name, "`predictions`", "empty", &shown]
            );
        }
    }
}

#[test]
fn class_index_out_of_range_negative_fractional_or_not_finite() {
    for (name, loss) in class_index_losses() {
        for (bad, why) in [
            (3.0, "< 3"),
            (1_099_511_627_776.0, "< 3"),
            (-1.0, "≥ 0"),
            (0.5, "whole number"),
            (2.25, "whole number"),
        ] {
            let (x, mut y) = logits_and_classes();
            y[[1]] = bad;
            let shown = format!("invalid target {bad} at index [1]");
            assert_fails!(
                &format!("{name} class index {bad}"),
                *loss,
                x,
                y,
                Error::InvalidTarget { .. },
                [&shown, "class index", why]
            );
        }
        for (bad, shown) in [(f64::NAN, "NaN"), (f64::INFINITY, "inf"), (f64::NEG_INFINITY, "-inf")] {
            let (x, mut y) = logits_and_classes();
            y[[0]] = bad;
            assert_fails!(
                &format!("{name} class index {bad}"),
                *loss,
                x,
                y,
                Error::NonFinite { arg: "targets", .. },
                [name, "`targets`", shown, "[0]"]
            );
        }
    }
}

#[test]
fn class_index_weights_of_the_wrong_length_or_negative() {
    let (x, y) = logits_and_classes();
    for weights in [vec![1.0, 2.0], vec![1.0; 4], vec![]] {
        let len = format!("= {}", weights.len());
        let losses: [(&str, Box<dyn AnyLoss>); 2] = [
            (
                "log-probabilities",
                Box::new(NllLoss::new().with_class_weights(weights.clone())),
            ),
            (
                "scores",
                Box::new(MultiMarginLoss::new().with_class_weights(weights.clone())),
            ),
        ];
        for (noun, loss) in losses {
            let named = format!("`class_weights.len() against 3 classes (axis 1 of {noun} [2, 3])`");
            assert_fails!(
                "class_weights length",
                *loss,
                x,
                y,
                Error::InvalidParameter { .. },
                [&named, &len, "one weight per class"]
            );
        }
    }
    for (bad, shown) in [(-0.5, "-0.5"), (f64::NAN, "NaN"), (f64::INFINITY, "inf")] {
        let losses: [Box<dyn AnyLoss>; 2] = [
            Box::new(NllLoss::new().with_class_weights(vec![1.0, bad, 1.0])),
            Box::new(MultiMarginLoss::new().with_class_weights(vec![1.0, bad, 1.0])),
        ];
        for loss in losses {
            assert_fails!(
                "class_weights value",
                *loss,
                x,
                y,
                Error::InvalidParameter { .. },
                ["`class_weights[1]`", shown, "≥ 0"]
            );
        }
    }
}

#[test]
fn nll_every_target_ignored_or_of_weight_zero() {
    let (x, _) = logits_and_classes();
    assert_fails!(
        "NllLoss all ignored",
        NllLoss::new().with_ignore_index(2),
        x,
        tensor(&[2], &[2.0, 2.0]),
        Error::AllTargetsIgnored { ignore_index: 2, .. },
        ["NllLoss", "ignore_index = 2"]
    );
    assert_fails!(
        "NllLoss weights summing to 0",
        NllLoss::new()
            .with_class_weights(vec![1.0, 0.0, 0.0])
            .with_ignore_index(0),
        x,
        tensor(&[2], &[1.0, 0.0]),
        Error::InvalidParameter { .. },
        ["`class_weights`", "sum over the targets not ignored"]
    );
    // Sum has no denominator: 0, with a zero gradient.
    let sum = NllLoss::new().with_ignore_index(2).with_reduction(Reduction::Sum);
    for (method, result) in every_method::<f64, _>(&sum, &x, &tensor(&[2], &[2.0, 2.0])) {
        assert!(result.is_ok(), "{method}: {result:?}");
    }
}

#[test]
fn nll_nan_or_infinity_in_the_log_probabilities() {
    // A NaN or +∞ anywhere, though only the targets' classes are read
    // (PyTorch ignores it there); −∞ at a target that counts.
    let y = tensor(&[2], &[1.0, 2.0]);
    for (at, bad, shown) in [
        ([1, 0], f64::NAN, "NaN"),
        ([0, 2], f64::INFINITY, "inf"),
        ([1, 2], f64::NEG_INFINITY, "-inf"),
        ([0, 1], f64::NAN, "NaN"),
    ] {
        let (mut x, _) = logits_and_classes();
        x[at] = bad;
        let index = format!("{at:?}");
        for loss in [NllLoss::new(), NllLoss::new().with_class_weights(vec![1.0, 1.0, 0.0])] {
            if bad == f64::NEG_INFINITY && loss.class_weights().is_some() {
                continue; // of weight 0: allowed, below
            }
            assert_fails!(
                &format!("NllLoss {bad} at {at:?}"),
                loss,
                x,
                y,
                Error::NonFinite { arg: "predictions", .. },
                ["NllLoss", "`predictions`", shown, &index]
            );
        }
    }
    // −∞ where it adds nothing: off the targets, in an ignored sample, at a
    // target of weight 0.
    let ninf = f64::NEG_INFINITY;
    let x = tensor(&[2, 3], &[ninf, -0.5, ninf, -1.0, -2.0, ninf]);
    for loss in [
        NllLoss::new().with_ignore_index(2),
        NllLoss::new().with_class_weights(vec![1.0, 1.0, 0.0]),
    ] {
        for (method, result) in every_method::<f64, _>(&loss, &x, &y) {
            assert!(result.is_ok(), "{loss:?} {method}: {result:?}");
        }
        assert_eq!(Loss::<f64>::forward(&loss, &x, &y).unwrap(), 0.5);
    }
}

#[test]
fn multi_margin_p_margin_and_scores() {
    let (x, y) = logits_and_classes();
    for p in [0, 3, 7] {
        let shown = format!("= {p}");
        assert_fails!(
            "MultiMarginLoss p",
            MultiMarginLoss::new().with_p(p),
            x,
            y,
            Error::InvalidParameter { .. },
            ["`p`", &shown, "1 or 2"]
        );
    }
    for (bad, shown) in [(f64::NAN, "NaN"), (f64::INFINITY, "inf"), (f64::NEG_INFINITY, "-inf")] {
        assert_fails!(
            "MultiMarginLoss margin",
            MultiMarginLoss::new().with_margin(bad),
            x,
            y,
            Error::InvalidParameter { .. },
            ["`margin`", shown, "finite"]
        );
    }
    // Any NaN or infinite score, even one whose hinge would be 0 (−∞).
    for (at, bad, shown) in [
        ([1, 0], f64::NAN, "NaN"),
        ([0, 2], f64::INFINITY, "inf"),
        ([1, 1], f64::NEG_INFINITY, "-inf"),
    ] {
        let (mut x, _) = logits_and_classes();
        x[at] = bad;
        let index = format!("{at:?}");
        assert_fails!(
            "MultiMarginLoss score",
            MultiMarginLoss::new(),
            x,
            y,
            Error::NonFinite { arg: "predictions", .. },
            ["MultiMarginLoss", "`predictions`", shown, &index]
        );
    }
    // Every input finite; (1e200 + 1e200)² is not.
    let big = tensor(&[1, 2], &[-1e200, 1e200]);
    assert_fails!(f64 only:
        "MultiMarginLoss overflow",
        MultiMarginLoss::new().with_p(2),
        big,
        tensor(&[1], &[0.0]),
        Error::NonFinite { arg: "loss value" | "gradient", .. },
        ["MultiMarginLoss", "inf"]
    );
}

// ---------------------------------------------------------------------------
// Contrastive and triplet
// ---------------------------------------------------------------------------

/// Points of the given shape, all distinct.
fn points(shape: &[usize]) -> ArrayD<f64> {
    let n: usize = shape.iter().product();
    tensor(shape, &(0..n).map(|i| (i as f64 * 0.37).sin()).collect::<Vec<_>>())
}

#[test]
fn contrastive_input_that_is_not_n_by_2_by_d() {
    for shape in [&[3, 3, 2][..], &[4, 2], &[2, 2, 2, 1], &[6], &[]] {
        let shown = format!("{shape:?}");
        assert_fails!(
            "ContrastiveLoss layout",
            ContrastiveLoss::new(1.0),
            points(shape),
            tensor(&[3], &[1.0, 0.0, 1.0]),
            Error::InvalidShape { arg: "predictions", .. },
            ["`predictions`", &shown, "[N, 2, D]"]
        );
    }
}

#[test]
fn triplet_input_that_is_neither_n_by_3_by_d_nor_3_by_d() {
    for shape in [&[2, 2, 4][..], &[4, 4], &[2, 4, 3], &[3], &[2, 3, 4, 1], &[]] {
        let shown = format!("{shape:?}");
        assert_fails!(
            "TripletLoss layout",
            TripletLoss::new(1.0),
            points(shape),
            ArrayD::zeros(IxDyn(&[0])),
            Error::InvalidShape { arg: "predictions", .. },
            ["`predictions`", &shown, "[N, 3, D]", "[3, D]"]
        );
    }
}

#[test]
fn contrastive_label_count_not_n() {
    for labels in [&[2][..], &[4], &[3, 2], &[1, 3], &[]] {
        let shown = format!("{labels:?}");
        assert_fails!(
            "ContrastiveLoss labels",
            ContrastiveLoss::new(1.0),
            points(&[3, 2, 4]),
            ArrayD::zeros(IxDyn(labels)),
            Error::ShapeMismatch { .. },
            ["[3, 2, 4]", &shown, "targets", "one label per pair"]
        );
    }
}

#[test]
fn contrastive_labels_outside_the_unit_interval_or_nan() {
    let x = points(&[3, 2, 4]);
    assert_fails!(
        "ContrastiveLoss label",
        ContrastiveLoss::new(1.0),
        x,
        tensor(&[3, 1], &[1.0, 2.0, 0.0]),
        Error::InvalidTarget { .. },
        ["invalid target 2 at index [1, 0]", "[0, 1]"]
    );
    assert_fails!(
        "ContrastiveLoss NaN label",
        ContrastiveLoss::new(1.0),
        x,
        tensor(&[3], &[1.0, 0.0, f64::NAN]),
        Error::NonFinite { arg: "targets", .. },
        ["`targets`", "NaN", "[2]"]
    );
}

#[test]
fn metric_losses_on_empty_input() {
    for shape in [&[0, 2, 3][..], &[2, 2, 0]] {
        let shown = format!("{shape:?}");
        let labels = ArrayD::zeros(IxDyn(&shape[..1]));
        assert_fails!(
            "ContrastiveLoss empty",
            ContrastiveLoss::new(1.0),
            ArrayD::zeros(IxDyn(shape)),
            labels,
            Error::Empty { .. },
            ["`predictions`", &shown]
        );
    }
    for shape in [&[0, 3, 3][..], &[2, 3, 0], &[3, 0]] {
        let shown = format!("{shape:?}");
        assert_fails!(
            "TripletLoss empty",
            TripletLoss::new(1.0),
            ArrayD::zeros(IxDyn(shape)),
            ArrayD::zeros(IxDyn(&[0])),
            Error::Empty { .. },
            ["`predictions`", &shown]
        );
    }
}

#[test]
fn metric_losses_with_non_finite_points() {
    let mut x = points(&[3, 2, 4]);
    x[[1, 1, 2]] = f64::NAN;
    assert_fails!(
        "ContrastiveLoss NaN",
        ContrastiveLoss::new(1.0),
        x,
        tensor(&[3], &[1.0, 0.0, 1.0]),
        Error::NonFinite { arg: "predictions", .. },
        ["`predictions`", "NaN", "[1, 1, 2]"]
    );
    let mut x = points(&[2, 3, 4]);
    x[[1, 2, 0]] = f64::INFINITY;
    assert_fails!(
        "TripletLoss inf",
        TripletLoss::new(1.0),
        x,
        ArrayD::zeros(IxDyn(&[2])),
        Error::NonFinite { arg: "predictions", .. },
        ["`predictions`", "inf", "[1, 2, 0]"]
    );
}

#[test]
fn negative_or_non_finite_margin() {
    for (bad, shown) in [
        (-1.0, "-1"),
        (-1e-9, "-0.000000001"),
        (f64::NAN, "NaN"),
        (f64::INFINITY, "inf"),
    ] {
        assert_fails!(
            "ContrastiveLoss margin",
            ContrastiveLoss::new(bad),
            points(&[3, 2, 4]),
            tensor(&[3], &[1.0, 0.0, 1.0]),
            Error::InvalidParameter { .. },
            ["`margin`", shown, "≥ 0"]
        );
        assert_fails!(
            "TripletLoss margin",
            TripletLoss::new(bad),
            points(&[2, 3, 4]),
            ArrayD::zeros(IxDyn(&[2])),
            Error::InvalidParameter { .. },
            ["`margin`", shown, "≥ 0"]
        );
    }
}
