//! Multi-class hinge loss on class indices: PyTorch fixtures for p = 1 and
//! 2, margins, weights and both layouts (closed form and tape, f64 and f32),
//! the slope 0 at the kink, gradients by three derivations away from it,
//! sharding, and a few error smoke tests (tests/errors.rs has the rest).

mod common;

use common::{
    Family, GradAtol, Rng, assert_close, assert_close_scalar, assert_f32_matches_fixture, assert_into_agrees,
    assert_matches_fixture, fixture_errors, fixtures, opt_f64, reduction,
};
use tapeloss::losses::value_and_grad_on_tape;
use tapeloss::ndarray::{ArrayD, IxDyn, array};
use tapeloss::{Error, Loss, MultiMarginLoss, Reduction};

fn loss_from(options: &serde_json::Value) -> MultiMarginLoss {
    let mut loss = MultiMarginLoss::new().with_reduction(reduction(options));
    if let Some(w) = options.get("class_weights").and_then(|w| w.as_array()) {
        loss = loss.with_class_weights(w.iter().map(|v| v.as_f64().unwrap()).collect());
    }
    if let Some(p) = options.get("p").and_then(|p| p.as_u64()) {
        loss = loss.with_p(p as u32);
    }
    if let Some(margin) = opt_f64(options, "margin") {
        loss = loss.with_margin(margin);
    }
    loss
}

fn margin_fixtures() -> Vec<common::Fixture> {
    let cases: Vec<_> = fixtures("class_index")
        .into_iter()
        .filter(|c| c.loss == "multi_margin_loss")
        .collect();
    for key in ["class_weights", "p", "margin"] {
        assert!(cases.iter().any(|c| c.options.get(key).is_some()), "no {key} fixtures");
    }
    assert!(cases.iter().any(|c| c.name.contains("kink")), "no kink fixture");
    assert!(cases.iter().any(|c| c.predictions.ndim() == 1), "no 1-d fixture");
    cases
}

/// The closed form and the tape against PyTorch (the kink cases included:
/// both give its slope 0 there), and `value_and_grad_into` (into a buffer of
/// NaN) against `value_and_grad`.
#[test]
fn matches_pytorch_in_f64() {
    let (mut value_err, mut grad_err) = (0.0_f64, 0.0_f64);
    for case in margin_fixtures() {
        let loss = loss_from(&case.options);
        // Sums of C − 1 slopes of rounded hinges: allow for their rounding.
        let atol = GradAtol {
            closed: 1e-15,
            tape: Some(1e-15),
        };
        assert_matches_fixture(&loss, &case, atol);
        assert_into_agrees(&loss, &case);
        let (v, g) = fixture_errors(&loss, &case);
        (value_err, grad_err) = (value_err.max(v), grad_err.max(g));
    }
    println!(
        "MultiMarginLoss f64 against PyTorch: value {value_err:e} relative, gradient {grad_err:e} absolute at most"
    );
}

#[test]
fn f32_lies_within_1e_5_of_the_f64_reference() {
    // Scores of 1e4 keep 3 or 4 digits of a hinge of 0.5 in f32; a loss of 0
    // (every hinge past the margin) has no relative error to speak of.
    for case in margin_fixtures().into_iter().filter(|c| !c.name.contains("large")) {
        assert_f32_matches_fixture(&loss_from(&case.options), &case, 1e-7);
    }
}

/// The number of classes in the [`Family`] checks.
const CLASSES: usize = 4;

/// Every option, with a name.
fn variants(r: Reduction) -> Vec<(String, MultiMarginLoss)> {
    let weights = vec![0.25, 2.0, 1.0, 0.5];
    let mut out = Vec::new();
    for p in [1, 2] {
        out.push((format!("p={p}"), MultiMarginLoss::new().with_p(p)));
        out.push((
            format!("p={p} margin=2.5 weights"),
            MultiMarginLoss::new()
                .with_p(p)
                .with_margin(2.5)
                .with_class_weights(weights.clone()),
        ));
    }
    out.push(("margin=-0.5".into(), MultiMarginLoss::new().with_margin(-0.5)));
    out.into_iter().map(|(name, l)| (name, l.with_reduction(r))).collect()
}

/// Seeded scores `[N, CLASSES]` (N the product of `shape` but its last size,
/// or `[CLASSES]` for a 1-D `shape`) in [−2, 2], and class indices; no score
/// within 1e-3 of a kink, where finite differences straddle it.
fn inputs(rng: &mut Rng, loss: &MultiMarginLoss, shape: &[usize]) -> (ArrayD<f64>, ArrayD<f64>) {
    let scores_shape = match shape {
        [_] => vec![CLASSES],
        _ => vec![shape[..shape.len() - 1].iter().product(), CLASSES],
    };
    let rows = if scores_shape.len() == 1 { 1 } else { scores_shape[0] };
    let mut x = rng.array(&scores_shape, -2.0, 2.0);
    let y: Vec<usize> = (0..rows).map(|_| rng.below(CLASSES)).collect();
    for (n, &c) in y.iter().enumerate() {
        for j in 0..CLASSES {
            let at = if rows == 1 && scores_shape.len() == 1 {
                vec![j]
            } else {
                vec![n, j]
            };
            let at_y = if at.len() == 1 { vec![c] } else { vec![n, c] };
            let z = loss.margin() - x[IxDyn(&at_y)] + x[IxDyn(&at)];
            if j != c && z.abs() < 1e-3 {
                x[IxDyn(&at)] += 0.01;
            }
        }
    }
    let t = ArrayD::from_shape_vec(
        IxDyn(&scores_shape[..scores_shape.len() - 1]),
        y.iter().map(|&c| c as f64).collect(),
    )
    .unwrap();
    (x, t)
}

const FAMILY: Family<MultiMarginLoss> = Family { variants, inputs };

#[test]
fn gradients_agree() {
    FAMILY.gradients_agree(71);
}

#[test]
fn f32_agrees_with_f64() {
    FAMILY.f32_agrees(72);
}

#[test]
fn shards_add_up_to_the_batch() {
    FAMILY.shards_add_up(73);
}

/// `Σ_n w_y·Σ_{j≠y} max(0, Δ − x_y + x_j)^p / C`, then divided by N, and
/// its gradient, by plain loops in f64 straight from the formula.
fn plain_loops(x: &ArrayD<f64>, y: &[usize], p: u32, margin: f64, w: &[f64]) -> (f64, ArrayD<f64>) {
    let (n, c) = (x.shape()[0], x.shape()[1]);
    let (mut total, mut grad) = (0.0, ArrayD::zeros(x.raw_dim()));
    for (i, &yi) in y.iter().enumerate() {
        for j in (0..c).filter(|&j| j != yi) {
            let z = margin - x[[i, yi]] + x[[i, j]];
            if z > 0.0 {
                total += w[yi] * z.powi(p as i32) / c as f64;
                let slope = w[yi] * if p == 1 { 1.0 } else { 2.0 * z } / (c * n) as f64;
                grad[[i, j]] += slope;
                grad[[i, yi]] -= slope;
            }
        }
    }
    (total / n as f64, grad)
}

/// The vectorised rows, on both cores past the threshold (600 × 1000
/// scores), against [`plain_loops`], for p = 1 and 2 with class weights.
#[test]
fn large_batches_match_plain_loops() {
    let mut rng = Rng::new(74);
    let (n, c) = (600, 1000);
    let x = rng.array(&[n, c], -2.0, 2.0);
    let y: Vec<usize> = (0..n).map(|_| rng.below(c)).collect();
    let t = ArrayD::from_shape_vec(IxDyn(&[n]), y.iter().map(|&k| k as f64).collect()).unwrap();
    let w: Vec<f64> = (0..c).map(|_| rng.uniform(0.5, 2.0)).collect();
    for p in [1, 2] {
        let loss = MultiMarginLoss::new()
            .with_p(p)
            .with_margin(0.75)
            .with_class_weights(w.clone());
        let (value, grad) = loss.value_and_grad(&x, &t).unwrap();
        let (expected, expected_grad) = plain_loops(&x, &y, p, 0.75, &w);
        assert_close_scalar(value, expected, 1e-12, 0.0, &format!("p={p} value"));
        assert_close(&grad, &expected_grad, 1e-10, 1e-20, &format!("p={p} gradient"));
    }
}

/// At the kink `Δ − x_y + x_j = 0` the slope is 0 (PyTorch's), on both
/// routes, for p = 1 and 2; just past it, 1/(C·N) for p = 1.
#[test]
fn slope_at_the_kink_is_zero() {
    // y = 0, x_1 = x_0 − 1 exactly: z_1 = 0; z_2 = 0.75.
    let x = array![[1.0, 0.0, 0.75]].into_dyn();
    let y = array![0.0].into_dyn();
    for (p, h2) in [(1, 1.0), (2, 2.0 * 0.75)] {
        let loss = MultiMarginLoss::new().with_p(p);
        let expected = array![[-h2 / 3.0, 0.0, h2 / 3.0]].into_dyn();
        // atol 0: the kink's slope must be exactly 0.
        let (_, g) = loss.value_and_grad(&x, &y).unwrap();
        assert_close(&g, &expected, 1e-15, 0.0, &format!("p={p}"));
        let (_, tg) = value_and_grad_on_tape(&loss, &x, &y).unwrap();
        assert_close(&tg, &expected, 1e-15, 0.0, &format!("p={p} tape"));
    }
    let past = array![[1.0, 1e-9, 0.75]].into_dyn();
    let (_, g) = MultiMarginLoss::new().value_and_grad(&past, &y).unwrap();
    assert_eq!(g[[0, 1]], 1.0 / 3.0);
}

/// `Mean` divides by N, not by the weights (unlike NLL), and a single class
/// has no hinge at all.
#[test]
fn mean_is_over_samples_not_weights() {
    let x = array![[0.5, 0.5, 0.0], [1.0, 0.3, 2.0]].into_dyn();
    let y = array![0.0, 2.0].into_dyn();
    let w = vec![0.5, 7.0, 3.0];
    // Sample 0: (1 + 0.5)/3·w_0; sample 1: z_0 = 0 (the kink), z_1 = −0.7: 0.
    let sum = 0.5 * 1.5 / 3.0;
    for (r, d) in [(Reduction::Mean, 2.0), (Reduction::Sum, 1.0)] {
        let loss = MultiMarginLoss::new().with_class_weights(w.clone()).with_reduction(r);
        let v = loss.forward(&x, &y).unwrap();
        assert_close_scalar(v, sum / d, 1e-15, 0.0, &format!("{r:?}"));
        let (tv, _) = value_and_grad_on_tape(&loss, &x, &y).unwrap();
        assert_close_scalar(tv, sum / d, 1e-15, 0.0, &format!("{r:?} tape"));
    }
    let one = MultiMarginLoss::new().value_and_grad(&array![[3.0], [-2.0]].into_dyn(), &array![0.0, 0.0].into_dyn());
    assert_eq!(one.unwrap(), (0.0, array![[0.0], [0.0]].into_dyn()));
    // A 0-d target for one sample [C]: (1 − 0.2 + 0.5) + (1 − 0.2 + 0.9), over 3.
    let (v, g) = MultiMarginLoss::new()
        .value_and_grad(&array![0.5, 0.2, 0.9].into_dyn(), &ArrayD::from_elem(IxDyn(&[]), 1.0))
        .unwrap();
    assert_close_scalar(v, 3.0 / 3.0, 1e-15, 0.0, "0-d");
    assert_close(
        &g,
        &array![1.0 / 3.0, -2.0 / 3.0, 1.0 / 3.0].into_dyn(),
        1e-15,
        0.0,
        "0-d grad",
    );
}

#[test]
fn invalid_parameters_targets_and_scores_are_errors() {
    // Smoke checks only; tests/errors.rs covers every method.
    let x = array![[0.5, 0.5, 0.0], [1.0, 0.3, 2.0]].into_dyn();
    let y = array![0.0, 2.0].into_dyn();
    for p in [0, 3] {
        let err = MultiMarginLoss::new().with_p(p).forward(&x, &y).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidParameter { name, .. } if name == "p"),
            "{err}"
        );
    }
    let err = MultiMarginLoss::new()
        .forward(&x, &array![0.0, 1.5].into_dyn())
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidTarget { index, .. } if index == &[1]),
        "{err}"
    );
    let mut inf = x.clone();
    inf[[1, 0]] = f64::NEG_INFINITY; // its hinge would be 0
    let err = MultiMarginLoss::new().forward(&inf, &y).unwrap_err();
    assert!(
        matches!(&err, Error::NonFinite { arg: "predictions", index, .. } if index == &[1, 0]),
        "{err}"
    );
    let err = MultiMarginLoss::new()
        .forward(&ArrayD::<f64>::zeros(IxDyn(&[2, 3, 2])), &ArrayD::zeros(IxDyn(&[2, 2])))
        .unwrap_err();
    assert!(matches!(&err, Error::InvalidShape { .. }), "{err}");
    assert!(err.to_string().contains("MultiMarginLoss"), "{err}");
}
