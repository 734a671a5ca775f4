//! Negative log-likelihood on class indices: PyTorch fixtures for every
//! option and layout (closed form and tape, f64 and f32), gradients by three
//! derivations, sharding, NLL of log_softmax against cross-entropy, masked
//! `−∞` log-probabilities, and a few error smoke tests (tests/errors.rs has
//! the rest).

mod common;

use common::{
    Family, GradAtol, Rng, assert_close, assert_close_scalar, assert_f32_matches_fixture, assert_into_agrees,
    assert_matches_fixture, fixture_errors, fixtures, reduction,
};
use tapeloss::losses::value_and_grad_on_tape;
use tapeloss::ndarray::{ArrayD, Axis, IxDyn, array};
use tapeloss::{CrossEntropyLoss, Error, Loss, NllLoss, Reduction, Tape};

fn loss_from(options: &serde_json::Value) -> NllLoss {
    let mut loss = NllLoss::new().with_reduction(reduction(options));
    if let Some(w) = options.get("class_weights").and_then(|w| w.as_array()) {
        loss = loss.with_class_weights(w.iter().map(|v| v.as_f64().unwrap()).collect());
    }
    if let Some(i) = options.get("ignore_index").and_then(|i| i.as_u64()) {
        loss = loss.with_ignore_index(i as usize);
    }
    loss
}

fn nll_fixtures() -> Vec<common::Fixture> {
    let cases: Vec<_> = fixtures("class_index")
        .into_iter()
        .filter(|c| c.loss == "nll_loss")
        .collect();
    for key in ["class_weights", "ignore_index"] {
        assert!(cases.iter().any(|c| c.options.get(key).is_some()), "no {key} fixtures");
    }
    for ndim in 1..=4 {
        assert!(
            cases.iter().any(|c| c.predictions.ndim() == ndim),
            "no {ndim}-d fixture"
        );
    }
    assert!(
        cases.iter().any(|c| c.predictions.iter().any(|v| v.is_infinite())),
        "no −∞ fixture"
    );
    cases
}

/// The closed form and the tape against PyTorch, and `value_and_grad_into`
/// (into a buffer of NaN) against `value_and_grad`.
#[test]
fn matches_pytorch_in_f64() {
    let (mut value_err, mut grad_err) = (0.0_f64, 0.0_f64);
    for case in nll_fixtures() {
        let loss = loss_from(&case.options);
        // The gradient is −w_y/D: PyTorch's, to the last bits.
        let atol = GradAtol {
            closed: 1e-16,
            tape: Some(1e-16),
        };
        assert_matches_fixture(&loss, &case, atol);
        assert_into_agrees(&loss, &case);
        let (v, g) = fixture_errors(&loss, &case);
        (value_err, grad_err) = (value_err.max(v), grad_err.max(g));
    }
    println!("NllLoss f64 against PyTorch: value {value_err:e} relative, gradient {grad_err:e} absolute at most");
}

#[test]
fn f32_lies_within_1e_5_of_the_f64_reference() {
    for case in nll_fixtures() {
        assert_f32_matches_fixture(&loss_from(&case.options), &case, 0.0);
    }
}

/// The number of classes in the [`Family`] checks, whatever the shape asked for.
const CLASSES: usize = 4;

/// Every option, with a name.
fn variants(r: Reduction) -> Vec<(String, NllLoss)> {
    let weights = vec![0.25, 2.0, 1.0, 0.5];
    vec![
        ("plain".into(), NllLoss::new().with_reduction(r)),
        (
            "weights".into(),
            NllLoss::new().with_class_weights(weights.clone()).with_reduction(r),
        ),
        ("ignore".into(), NllLoss::new().with_ignore_index(1).with_reduction(r)),
        (
            "ignore+weights".into(),
            NllLoss::new()
                .with_ignore_index(1)
                .with_class_weights(weights)
                .with_reduction(r),
        ),
    ]
}

/// Seeded log-probabilities in [−5, 0] of `shape` with its class axis (1, or
/// 0 for `[C]`) made [`CLASSES`] long, and class indices of the shape
/// without it: every third the ignored index when there is one, never the
/// first.
fn inputs(rng: &mut Rng, loss: &NllLoss, shape: &[usize]) -> (ArrayD<f64>, ArrayD<f64>) {
    let axis = usize::from(shape.len() > 1);
    let mut shape = shape.to_vec();
    shape[axis] = CLASSES;
    let x = rng.array(&shape, -5.0, 0.0);
    shape.remove(axis);
    let mut k = 0;
    let t = ArrayD::from_shape_simple_fn(IxDyn(&shape), || {
        k += 1;
        match loss.ignore_index() {
            Some(i) if k % 3 == 0 => i as f64,
            Some(i) => ((i + 1 + rng.below(CLASSES - 1)) % CLASSES) as f64,
            None => rng.below(CLASSES) as f64,
        }
    });
    (x, t)
}

const FAMILY: Family<NllLoss> = Family { variants, inputs };

#[test]
fn gradients_agree() {
    FAMILY.gradients_agree(61);
}

#[test]
fn f32_agrees_with_f64() {
    FAMILY.f32_agrees(62);
}

#[test]
fn shards_add_up_to_the_batch() {
    FAMILY.shards_add_up(63);
}

/// NLL of `log_softmax(x)` is cross-entropy of `x`, with weights and an
/// ignored index, value and gradient, with `log_softmax` on the tape.
#[test]
fn nll_of_log_softmax_is_cross_entropy() {
    let mut rng = Rng::new(64);
    let weights = vec![1.0, 0.5, 2.0, 3.0];
    for shape in [&[6, 4][..], &[2, 4, 3], &[4]] {
        let axis = usize::from(shape.len() > 1);
        let logits = rng.array(shape, -3.0, 3.0);
        let (_, t) = inputs(&mut rng, &NllLoss::new().with_ignore_index(2), shape);
        let lse = logits.map_axis(Axis(axis), |row| row.iter().map(|v| v.exp()).sum::<f64>().ln());
        let log_p = &logits - &lse.insert_axis(Axis(axis));
        for r in [Reduction::Mean, Reduction::Sum] {
            let nll = NllLoss::new()
                .with_class_weights(weights.clone())
                .with_ignore_index(2)
                .with_reduction(r);
            let ce = CrossEntropyLoss::new()
                .with_class_weights(weights.clone())
                .with_ignore_index(2)
                .with_reduction(r);
            let what = format!("{shape:?} {r:?}");
            let (expected, expected_grad) = ce.value_and_grad(&logits, &t).unwrap();
            assert_close_scalar(nll.forward(&log_p, &t).unwrap(), expected, 1e-13, 0.0, &what);
            let tape = Tape::new();
            let x = tape.var(logits.clone());
            let out = nll.record(&tape, x.log_softmax(axis).unwrap(), &t).unwrap();
            assert_close_scalar(out.item().unwrap(), expected, 1e-13, 0.0, &what);
            let grads = tape.backward(out).unwrap();
            assert_close(grads.wrt(x).unwrap(), &expected_grad, 1e-12, 1e-15, &what);
        }
    }
}

/// The weighted mean divides by `Σ w_y` over the targets kept; `Sum` does
/// not divide; an ignored sample, and a `−∞` off the targets, add nothing.
#[test]
fn weighted_mean_by_hand() {
    let ninf = f64::NEG_INFINITY;
    let x = array![
        [-0.5, ninf, -2.0],
        [ninf, -0.25, ninf],
        [-1.0, -3.0, -1.5],
        [ninf, ninf, ninf]
    ]
    .into_dyn();
    let y = array![0.0, 1.0, 2.0, 7.0].into_dyn();
    let w = vec![2.0, 4.0, 0.5];
    for (r, d) in [(Reduction::Mean, 2.0 + 4.0 + 0.5), (Reduction::Sum, 1.0)] {
        let loss = NllLoss::new()
            .with_class_weights(w.clone())
            .with_ignore_index(7)
            .with_reduction(r);
        let expected = (2.0 * 0.5 + 4.0 * 0.25 + 0.5 * 1.5) / d;
        let grad = array![
            [-2.0 / d, 0.0, 0.0],
            [0.0, -4.0 / d, 0.0],
            [0.0, 0.0, -0.5 / d],
            [0.0, 0.0, 0.0]
        ]
        .into_dyn();
        let (v, g) = loss.value_and_grad(&x, &y).unwrap();
        assert_close_scalar(v, expected, 1e-15, 0.0, &format!("{r:?}"));
        assert_eq!(g, grad, "{r:?}");
        let (tv, tg) = value_and_grad_on_tape(&loss, &x, &y).unwrap();
        assert_close_scalar(tv, expected, 1e-15, 0.0, &format!("{r:?} tape"));
        assert_close(&tg, &grad, 1e-15, 0.0, &format!("{r:?} tape"));
    }
    // A 0-d target for one sample [C].
    let (v, g) = NllLoss::new()
        .value_and_grad(
            &array![-1.0, -2.0, -3.0].into_dyn(),
            &ArrayD::from_elem(IxDyn(&[]), 2.0),
        )
        .unwrap();
    assert_eq!((v, g), (3.0, array![0.0, 0.0, -1.0].into_dyn()));
}

#[test]
fn invalid_targets_and_non_finite_inputs_are_errors() {
    // Smoke checks only; tests/errors.rs covers every method.
    let x = array![[-1.0, -2.0, -0.5], [-0.1, -3.0, -2.5]].into_dyn();
    let err = NllLoss::new().forward(&x, &array![0.0, 3.0].into_dyn()).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidTarget { index, value, .. } if index == &[1] && *value == 3.0),
        "{err}"
    );
    // −∞ at a target that counts.
    let mut bad = x.clone();
    bad[[1, 2]] = f64::NEG_INFINITY;
    let err = NllLoss::new()
        .value_and_grad(&bad, &array![0.0, 2.0].into_dyn())
        .unwrap_err();
    assert!(
        matches!(&err, Error::NonFinite { arg: "predictions", index, .. } if index == &[1, 2]),
        "{err}"
    );
    // A NaN off the targets (PyTorch does not read it).
    bad[[1, 2]] = f64::NAN;
    let err = NllLoss::new().forward(&bad, &array![0.0, 0.0].into_dyn()).unwrap_err();
    assert!(
        matches!(&err, Error::NonFinite { arg: "predictions", index, .. } if index == &[1, 2]),
        "{err}"
    );
    assert!(err.to_string().contains("NllLoss"), "{err}");
}

/// Past the parallel threshold (600 × 1000 scores, where the zeroing and the
/// scan for NaN and +∞ share one pass on both cores): the value and every
/// gradient element against a plain loop, into a buffer of NaN and into a
/// new one; a NaN or +∞ off every target, at the last element, is still
/// found and named, by both.
#[test]
fn large_batches_zero_scan_and_match_a_plain_loop() {
    let mut rng = Rng::new(81);
    let (n, c) = (600, 1000);
    let mut x = rng.array(&[n, c], -6.0, 0.0);
    let y: Vec<usize> = (0..n).map(|_| rng.below(c - 1)).collect(); // never the last class
    let t = ArrayD::from_shape_vec(IxDyn(&[n]), y.iter().map(|&k| k as f64).collect()).unwrap();
    let w: Vec<f64> = (0..c).map(|_| rng.uniform(0.5, 2.0)).collect();
    let loss = NllLoss::new().with_class_weights(w.clone());
    let total_weight: f64 = y.iter().map(|&k| w[k]).sum();
    let expected = -y.iter().enumerate().map(|(i, &k)| w[k] * x[[i, k]]).sum::<f64>() / total_weight;
    let mut expected_grad = ArrayD::zeros(x.raw_dim());
    for (i, &k) in y.iter().enumerate() {
        expected_grad[[i, k]] = -w[k] / total_weight;
    }
    let (value, grad) = loss.value_and_grad(&x, &t).unwrap();
    let mut into = ArrayD::from_elem(x.raw_dim(), f64::NAN);
    let value_into = loss.value_and_grad_into(&x, &t, &mut into).unwrap();
    for (what, v, g) in [("new", value, &grad), ("into", value_into, &into)] {
        assert_close_scalar(v, expected, 1e-12, 0.0, what);
        assert_close(g, &expected_grad, 1e-15, 0.0, what);
    }
    for bad in [f64::NAN, f64::INFINITY] {
        x[[n - 1, c - 1]] = bad;
        let named = |r: Result<_, Error>| match r {
            Err(Error::NonFinite { arg, index, .. }) => arg == "predictions" && index == [n - 1, c - 1],
            _ => false,
        };
        assert!(named(loss.value_and_grad(&x, &t).map(|_| ())), "{bad} new");
        assert!(
            named(loss.value_and_grad_into(&x, &t, &mut into).map(|_| ())),
            "{bad} into"
        );
        assert!(named(loss.forward(&x, &t).map(|_| ())), "{bad} forward");
    }
}
