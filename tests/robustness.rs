//! Numerical robustness at the edges, in `f32` and `f64`, for the closed forms
//! and the tape compositions alike: extreme logits, probabilities of exactly 0
//! and 1, identical points, and hyperparameters at the edge of `f32`'s range.
//!
//! Already covered in the family tests, and not repeated here:
//! - binary cross-entropy on logits of ±1e4 (closed form in f32 and f64, tape
//!   in f64) and on p ∈ {0, 1} (closed form in f32 and f64, by hand; tape in
//!   f64): `tests/binary_cross_entropy.rs`, `huge_logits_are_finite` and
//!   `probabilities_of_zero_and_one_are_finite`;
//! - focal loss at p ∈ {0, 1}: `tests/focal_loss.rs`;
//! - cross-entropy on logits of ±1e4 with every option (closed form in f32
//!   and f64, tape in f64): `tests/cross_entropy.rs`;
//! - contrastive and triplet with identical points (closed form and tape, f32
//!   and f64): `tests/metric_losses.rs`.
//!
//! What this file adds: the tape route (`record`, `value_and_grad_on_tape`) in
//! `f32` too, logits far beyond ±1e4, points that are nearly (not exactly)
//! identical, and thresholds that overflow or underflow when converted to
//! `f32`.

mod common;

use common::assert_close;
use tapeloss::losses::value_and_grad_on_tape;
use tapeloss::ndarray::{ArrayD, IxDyn};
use tapeloss::{
    BinaryCrossEntropyLoss, ContrastiveLoss, CrossEntropyLoss, Float, HuberLoss, Loss, Reduction, SmoothL1Loss, Tape,
    TripletLoss,
};

fn array(shape: &[usize], values: &[f64]) -> ArrayD<f64> {
    ArrayD::from_shape_vec(IxDyn(shape), values.to_vec()).expect("test array")
}

/// Every route in precision `F` gives a finite value and gradient; returns
/// the closed form's and the tape's (value, gradient) in f64 for comparisons.
#[track_caller]
fn finite_in<F: Float, L: Loss<F>>(
    loss: &L,
    p: &ArrayD<f64>,
    t: &ArrayD<f64>,
    what: &str,
) -> ((f64, ArrayD<f64>), (f64, ArrayD<f64>)) {
    let (p, t) = (p.mapv(F::from_f64), t.mapv(F::from_f64));
    let name = F::NAME;
    let value = loss
        .forward(&p, &t)
        .unwrap_or_else(|e| panic!("{what} {name}: forward: {e}"));
    let (v, g) = loss
        .value_and_grad(&p, &t)
        .unwrap_or_else(|e| panic!("{what} {name}: value_and_grad: {e}"));
    assert_eq!(value, v, "{what} {name}: forward vs value_and_grad");
    assert!(
        v.is_finite() && g.iter().all(|g| g.is_finite()),
        "{what} {name}: {v}, {g}"
    );
    let tape = Tape::new();
    let recorded = loss
        .record(&tape, tape.var(p.clone()), &t)
        .unwrap_or_else(|e| panic!("{what} {name}: record: {e}"));
    assert!(recorded.item().unwrap().is_finite(), "{what} {name}: record");
    let (tv, tg) = value_and_grad_on_tape(loss, &p, &t).unwrap_or_else(|e| panic!("{what} {name}: tape: {e}"));
    ((v.as_f64(), g.mapv(F::as_f64)), (tv.as_f64(), tg.mapv(F::as_f64)))
}

/// `finite_in` for both precisions.
#[track_caller]
fn finite_in_both<L: Loss<f32> + Loss<f64>>(loss: &L, p: &ArrayD<f64>, t: &ArrayD<f64>, what: &str) {
    finite_in::<f32, _>(loss, p, t, what);
    finite_in::<f64, _>(loss, p, t, what);
}

#[test]
fn bce_logits_of_1e4_on_the_tape_in_f32_and_beyond_in_both() {
    let loss = BinaryCrossEntropyLoss::with_logits()
        .with_pos_weight(2.0)
        .with_reduction(Reduction::Sum);
    let t = array(&[4], &[1.0, 0.0, 1.0, 0.5]);
    finite_in_both(&loss, &array(&[4], &[1e4, -1e4, -1e4, 1e4]), &t, "±1e4");
    // One element at a time, logits far larger, up to f32's largest: the loss
    // is at most |x|, the slope in [−1, 1].
    let plain = BinaryCrossEntropyLoss::with_logits();
    for x in [1e30, -1e30, f64::from(f32::MAX), -f64::from(f32::MAX)] {
        for target in [0.0, 1.0, 0.25] {
            let (p, t) = (array(&[1], &[x]), array(&[1], &[target]));
            let ((v, g), (tv, tg)) = finite_in::<f32, _>(&plain, &p, &t, &format!("x = {x:e}, t = {target}"));
            assert_eq!((v, &g), (tv, &tg), "x = {x:e}: tape vs closed form");
            finite_in::<f64, _>(&plain, &p, &t, &format!("x = {x:e}, t = {target}"));
        }
    }
    let (p, t) = (array(&[1], &[-1e300]), array(&[1], &[1.0]));
    let ((v, g), _) = finite_in::<f64, _>(&loss, &p, &t, "x = −1e300");
    assert_eq!((v, g[[0]]), (2e300, -2.0));
}

#[test]
fn bce_probabilities_of_zero_and_one_on_the_tape_in_f32() {
    let loss = BinaryCrossEntropyLoss::new();
    let p = array(&[6], &[0.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
    let t = array(&[6], &[0.0, 1.0, 0.3, 0.0, 1.0, 0.7]);
    let ((v, _), (tv, _)) = finite_in::<f32, _>(&loss, &p, &t, "p ∈ {0, 1}");
    // By hand: 0, 100, 0.3·100, 100, 0, 0.3·100, averaged.
    assert!(
        (v - 260.0 / 6.0).abs() < 1e-4 && (tv - 260.0 / 6.0).abs() < 1e-4,
        "{v}, {tv}"
    );
}

#[test]
fn smooth_l1_with_a_beta_at_the_edge_of_f32() {
    // β = 1e-40 is subnormal in f32, so 1/(2β) overflows there; β = 1e-50
    // rounds to 0 (the L1 loss); β = 1e300 rounds to ∞ (the loss is 0). The
    // tape must stay finite and agree with the closed form.
    let p = array(&[2, 3], &[0.5, -2.0, 0.0, 1e-40, 3.0, -0.25]);
    let t = array(&[2, 3], &[0.0, 0.0, 0.0, 0.0, -1.0, 0.0]);
    for beta in [1e-40, 1e-45, 1e-50, 1e300] {
        let loss = SmoothL1Loss::new(beta);
        let ((v, g), (tv, tg)) = finite_in::<f32, _>(&loss, &p, &t, &format!("β = {beta:e}"));
        assert!(
            (v - tv).abs() <= 1e-6 * v.abs().max(1.0),
            "β = {beta:e}: {v} vs tape {tv}"
        );
        assert_close(&tg, &g, 1e-6, 1e-6, &format!("β = {beta:e}: tape gradient"));
        finite_in::<f64, _>(&loss, &p, &t, &format!("β = {beta:e}"));
    }
}

#[test]
fn huber_with_a_delta_beyond_f32() {
    // δ = 1e300 is ∞ in f32: every residual is in the quadratic part, ½d².
    let loss = HuberLoss::new(1e300).with_reduction(Reduction::Sum);
    let p = array(&[3], &[0.5, -2.0, 3.0]);
    let t = array(&[3], &[0.0, 0.0, 1.0]);
    let ((v, g), (tv, tg)) = finite_in::<f32, _>(&loss, &p, &t, "δ = 1e300");
    assert_eq!(v, 0.125 + 2.0 + 2.0);
    assert!((tv - v).abs() < 1e-6, "tape {tv}");
    assert_eq!(g, array(&[3], &[0.5, -2.0, 2.0]));
    assert_close(&tg, &g, 1e-6, 0.0, "tape gradient");
    finite_in::<f64, _>(&loss, &p, &t, "δ = 1e300");
    // A δ that underflows to 0 in f32 gives the zero loss, finite on every route.
    finite_in_both(&HuberLoss::new(1e-50), &p, &t, "δ = 1e-50");
}

#[test]
fn ce_logits_of_1e4_on_the_tape_in_f32_and_beyond_in_both() {
    let e = 1e4;
    // [N, C] with class indices and with probabilities, and [N, C, d] (spatial).
    let logits = array(&[3, 3], &[e, -e, 0.0, -e, e, e - 3.0, e, e, -e]);
    let classes = array(&[3], &[1.0, 2.0, 0.0]);
    let soft = array(&[3, 3], &[0.5, 0.5, 0.0, 0.0, 0.25, 0.75, 1.0, 0.0, 0.0]);
    let spatial = array(&[1, 3, 2], &[e, -e, -e, e, 0.0, 0.0]);
    let spatial_classes = array(&[1, 2], &[1.0, 1.0]);
    let options = [
        CrossEntropyLoss::new(),
        CrossEntropyLoss::new().with_label_smoothing(0.1),
        CrossEntropyLoss::new().with_class_weights(vec![0.5, 2.0, 1.0]),
    ];
    for (i, loss) in options.iter().enumerate() {
        finite_in_both(loss, &logits, &classes, &format!("options {i}: indices"));
        finite_in_both(loss, &logits, &soft, &format!("options {i}: probabilities"));
        finite_in_both(loss, &spatial, &spatial_classes, &format!("options {i}: spatial"));
    }
    // Far beyond: the loss is the gap, 2e30 in f32 and 2e300 in f64.
    let (x, y) = (array(&[2], &[1e30, -1e30]), array(&[], &[1.0]));
    let ((v, g), (tv, tg)) = finite_in::<f32, _>(&CrossEntropyLoss::new(), &x, &y, "±1e30");
    assert!((v - 2e30).abs() < 1e24 && (tv - 2e30).abs() < 1e24, "{v}, {tv}");
    assert_eq!((&g, &tg), (&array(&[2], &[1.0, -1.0]), &array(&[2], &[1.0, -1.0])));
    let (x, y) = (array(&[2], &[1e300, -1e300]), array(&[], &[1.0]));
    let ((v, _), _) = finite_in::<f64, _>(&CrossEntropyLoss::new(), &x, &y, "±1e300");
    assert_eq!(v, 2e300);
}

#[test]
fn metric_losses_with_nearly_identical_points() {
    // Distances of 1e-20 (f32: the squared distance is subnormal) and 1e-200
    // (f64): the hinge's slope h/d is huge, but times the difference it is
    // bounded by the margin, so the gradient stays finite.
    for gap in [1e-20, 1e-200] {
        let pairs = array(&[2, 2, 2], &[0.0, 0.0, gap, 0.0, 1.0, 1.0, 1.0, 1.0 + gap]);
        let labels = array(&[2], &[0.0, 1.0]);
        let triplets = array(&[3, 2], &[0.0, 0.0, gap, 0.0, 0.0, gap]);
        for margin in [0.0, 1.0] {
            let what = format!("gap {gap:e}, margin {margin}");
            finite_in_both(&ContrastiveLoss::new(margin), &pairs, &labels, &what);
            finite_in_both(&TripletLoss::new(margin), &triplets, &labels, &what);
        }
    }
}
