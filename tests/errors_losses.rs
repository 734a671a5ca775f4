//! Every mistake a caller can make with a loss comes back as the right
//! `tapeloss::Error` variant, from every method that computes, in `f32` and
//! `f64`, with a message that names the argument and what is wrong with it.
//! One test per case of the validation issue.

use tapeloss::losses::value_and_grad_on_tape;
use tapeloss::ndarray::{ArrayD, IxDyn};
use tapeloss::{
    BinaryCrossEntropyLoss, ContrastiveLoss, CrossEntropyLoss, Error, Float, FocalLoss, HuberLoss, Loss,
    MeanAbsoluteError, MeanSquaredError, SmoothL1Loss, Tape, TripletLoss,
};

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
) -> Vec<(&'static str, Result<(), Error>)> {
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

fn array(shape: &[usize], values: &[f64]) -> ArrayD<f64> {
    ArrayD::from_shape_vec(IxDyn(shape), values.to_vec()).expect("test array")
}

/// Probabilities in (0, 1) and 0/1 targets: valid for every elementwise loss
/// and for focal.
fn valid_pair(shape: &[usize]) -> (ArrayD<f64>, ArrayD<f64>) {
    let n: usize = shape.iter().product();
    let p: Vec<f64> = (0..n).map(|i| 0.25 + 0.5 * ((i % 3) as f64) / 2.0).collect();
    let t: Vec<f64> = (0..n).map(|i| (i % 2) as f64).collect();
    (array(shape, &p), array(shape, &t))
}

/// Every loss on (predictions, targets) of identical shape, with a name.
fn elementwise_losses() -> Vec<(&'static str, Box<dyn AnyLoss>)> {
    vec![
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
    ]
}

/// A loss's name, the loss, and valid predictions and targets for it.
type NamedCase = (&'static str, Box<dyn AnyLoss>, ArrayD<f64>, ArrayD<f64>);

/// Every loss with valid inputs of its own layout, for the cases that apply
/// to all of them (a gradient buffer of the wrong shape).
fn every_loss_with_inputs() -> Vec<NamedCase> {
    let mut all: Vec<_> = elementwise_losses()
        .into_iter()
        .map(|(name, loss)| {
            let (p, t) = valid_pair(&[2, 3]);
            (name, loss, p, t)
        })
        .collect();
    let (x, y) = logits_and_classes();
    all.push(("CrossEntropyLoss", Box::new(CrossEntropyLoss::new()), x, y));
    all.push((
        "ContrastiveLoss",
        Box::new(ContrastiveLoss::new(1.0)),
        points(&[2, 2, 3]),
        array(&[2], &[1.0, 0.0]),
    ));
    all.push((
        "TripletLoss",
        Box::new(TripletLoss::new(1.0)),
        points(&[2, 3, 1]),
        array(&[2], &[0.0, 0.0]),
    ));
    all
}

// ---------------------------------------------------------------------------
// Shapes
// ---------------------------------------------------------------------------

#[test]
fn predictions_and_targets_of_different_shapes() {
    // [2, 3] against [3] would broadcast; nothing is broadcast.
    for (name, loss) in elementwise_losses() {
        for (ps, ts) in [
            (&[2, 3][..], &[3][..]),
            (&[2, 3], &[3, 2]),
            (&[2, 3], &[2, 3, 1]),
            (&[2, 3], &[1, 3]),
        ] {
            let (p, _) = valid_pair(ps);
            let (_, t) = valid_pair(ts);
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
    for (name, loss) in elementwise_losses() {
        for shape in [&[0][..], &[2, 0], &[0, 3]] {
            let (p, t) = valid_pair(shape);
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
    for (name, loss) in elementwise_losses() {
        let (mut p, t) = valid_pair(&[2, 3]);
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
    for (name, loss) in elementwise_losses() {
        let (p, mut t) = valid_pair(&[3, 2]);
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
    for (name, loss) in elementwise_losses().into_iter().take(4) {
        let (p, mut t) = valid_pair(&[4]);
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
    let p = array(&[2], &[1e200, 0.0]);
    let t = array(&[2], &[-1e200, 0.0]);
    assert_fails!(f64 only:
        "MeanSquaredError",
        MeanSquaredError::new(),
        p,
        t,
        Error::NonFinite { arg: "loss value", .. },
        ["MeanSquaredError", "`loss value`", "inf"]
    );
}

#[test]
fn a_finite_loss_with_an_overflowing_gradient_is_an_error() {
    // Focal with γ = 1e308 at p = 0: the loss is −ln ε (finite), but its slope
    // −γ·ln ε overflows. The value alone is fine; every gradient method fails.
    let loss = FocalLoss::new(1e308, None, 1e-10);
    let p = array(&[1, 2], &[0.0, 1.0]);
    let t = array(&[1, 2], &[1.0, 0.0]);
    let value: f64 = loss.forward(&p, &t).expect("the value is finite");
    assert!((value - -(1e-10_f64).ln()).abs() < 1e-9);
    let mut grad = ArrayD::zeros(p.raw_dim());
    let results = [
        ("backward", loss.backward(&p, &t).map(drop)),
        ("value_and_grad", loss.value_and_grad(&p, &t).map(drop)),
        (
            "value_and_grad_into",
            loss.value_and_grad_into(&p, &t, &mut grad).map(drop),
        ),
        (
            "value_and_grad_on_tape",
            value_and_grad_on_tape(&loss, &p, &t).map(drop),
        ),
    ];
    for (method, result) in results {
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
    // loss h² = 1e36 fits, the slope factor h/d = 1e40 does not (on the tape
    // too: the derivative of √s at s = 1e-44 is 5e21).
    let loss = ContrastiveLoss::new(1e18);
    let p = ArrayD::from_shape_vec(IxDyn(&[1, 2, 1]), vec![0.0_f32, 1e-22]).unwrap();
    let t = ArrayD::from_shape_vec(IxDyn(&[1]), vec![0.0_f32]).unwrap();
    let value = loss.forward(&p, &t).expect("the value is finite");
    assert!((value - 1e36).abs() < 1e30, "{value}");
    for (method, result) in [
        ("value_and_grad", loss.value_and_grad(&p, &t).map(drop)),
        (
            "value_and_grad_on_tape",
            value_and_grad_on_tape(&loss, &p, &t).map(drop),
        ),
    ] {
        let err = result.expect_err(method);
        assert!(
            matches!(err, Error::NonFinite { arg: "gradient", .. }),
            "{method}: {err:?}"
        );
    }
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
            (
                "pos_weight",
                Box::new(BinaryCrossEntropyLoss::with_logits().with_pos_weight(bad)),
            ),
            ("gamma", Box::new(FocalLoss::new(bad, None, 1e-7))),
            ("alpha", Box::new(FocalLoss::new(2.0, Some(bad), 1e-7))),
            ("epsilon", Box::new(FocalLoss::new(2.0, None, bad))),
        ];
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
        array(&[2, 3], &[1.0, 2.0, 0.5, 0.8, 0.2, 1.5]),
        array(&[2], &[1.0, 2.0]),
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
    let zero_row = array(&[2, 3], &[0.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
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
            ["`class_weights.len()`", &len, "one weight per class"]
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
    let y = array(&[2], &[2.0, 2.0]);
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
// Contrastive and triplet
// ---------------------------------------------------------------------------

/// Points of the given shape, all distinct.
fn points(shape: &[usize]) -> ArrayD<f64> {
    let n: usize = shape.iter().product();
    array(shape, &(0..n).map(|i| (i as f64 * 0.37).sin()).collect::<Vec<_>>())
}

#[test]
fn contrastive_input_that_is_not_n_by_2_by_d() {
    for shape in [&[3, 3, 2][..], &[4, 2], &[2, 2, 2, 1], &[6], &[]] {
        let shown = format!("{shape:?}");
        assert_fails!(
            "ContrastiveLoss layout",
            ContrastiveLoss::new(1.0),
            points(shape),
            array(&[3], &[1.0, 0.0, 1.0]),
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
        array(&[3, 1], &[1.0, 2.0, 0.0]),
        Error::InvalidTarget { .. },
        ["invalid target 2 at index [1, 0]", "[0, 1]"]
    );
    assert_fails!(
        "ContrastiveLoss NaN label",
        ContrastiveLoss::new(1.0),
        x,
        array(&[3], &[1.0, 0.0, f64::NAN]),
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
        array(&[3], &[1.0, 0.0, 1.0]),
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
            array(&[3], &[1.0, 0.0, 1.0]),
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
