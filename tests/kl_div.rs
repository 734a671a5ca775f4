//! KL divergence on probability and log-probability targets: PyTorch
//! fixtures (`batchmean` and `sum`), gradients by three derivations, f32
//! against f64, sharding, the mean over samples, zero targets, and errors.

mod common;

use common::{Family, GradAtol, Rng, assert_close, assert_close_scalar, assert_matches_fixture, fixtures, reduction};
use tapeloss::losses::value_and_grad_on_tape;
use tapeloss::ndarray::{ArrayD, IxDyn, array};
use tapeloss::{Error, KlDivLoss, Loss, Reduction};

/// Both forms, with a name.
fn variants(r: Reduction) -> Vec<(String, KlDivLoss)> {
    vec![
        ("probabilities".into(), KlDivLoss::new().with_reduction(r)),
        ("log targets".into(), KlDivLoss::with_log_target().with_reduction(r)),
    ]
}

/// Seeded log-probabilities in [−4, 1] and targets for `loss`: probabilities
/// in [0, 2] with about a fifth exactly 0, or log-probabilities in [−4, 2].
fn inputs(rng: &mut Rng, loss: &KlDivLoss, shape: &[usize]) -> (ArrayD<f64>, ArrayD<f64>) {
    let q = rng.array(shape, -4.0, 1.0);
    let t = if loss.log_target() {
        rng.array(shape, -4.0, 2.0)
    } else {
        rng.array(shape, 0.0, 2.0).mapv(|p| if p < 0.4 { 0.0 } else { p })
    };
    (q, t)
}

#[test]
fn matches_pytorch() {
    let cases = fixtures("divergence");
    for (key, value) in [("reduction", "batchmean"), ("reduction", "sum")] {
        assert!(cases.iter().any(|c| c.options[key] == value), "no {value} fixtures");
    }
    assert!(cases.iter().any(|c| c.options["log_target"] == true));
    assert!(cases.iter().any(|c| c.predictions.ndim() == 0), "no 0-d fixture");
    for case in &cases {
        assert_eq!(case.loss, "kl_div");
        let loss = match case.options["log_target"].as_bool() {
            Some(true) => KlDivLoss::with_log_target(),
            _ => KlDivLoss::new(),
        }
        .with_reduction(reduction(&case.options));
        let atol = GradAtol {
            closed: 1e-300,
            tape: Some(1e-300),
        };
        assert_matches_fixture(&loss, case, atol);
    }
}

const FAMILY: Family<KlDivLoss> = Family { variants, inputs };

#[test]
fn gradients_agree() {
    FAMILY.gradients_agree(51);
}

#[test]
fn f32_agrees_with_f64() {
    FAMILY.f32_agrees(52);
}

#[test]
fn shards_add_up_to_the_batch() {
    FAMILY.shards_add_up(53);
}

/// `Mean` divides by the batch size `shape[0]`, not by the number of
/// elements (PyTorch's `batchmean`), on the closed form and on the tape; a
/// 0-d input is a batch of one.
#[test]
fn mean_is_over_samples() {
    // Two samples of three classes, worked by hand with p·ln(p/e^q):
    // sample 0: ½·ln(½/¼) + ½·ln(½/½) + 0 = ½·ln 2;
    // sample 1: 1·ln(1/e^(−1)) + 0·… + 0·… = 1.
    let q = array![[0.25_f64.ln(), 0.5_f64.ln(), -3.0], [-1.0, 7.0, -2.0]].into_dyn();
    let p = array![[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]].into_dyn();
    let total = 0.5 * 2.0_f64.ln() + 1.0;
    let grad_sum = array![[-0.5, -0.5, 0.0], [-1.0, 0.0, 0.0]].into_dyn();
    for (r, scale) in [(Reduction::Mean, 0.5), (Reduction::Sum, 1.0)] {
        let loss = KlDivLoss::new().with_reduction(r);
        let (v, g) = loss.value_and_grad(&q, &p).unwrap();
        assert_close_scalar(v, total * scale, 1e-15, 0.0, &format!("{r:?} value"));
        assert_close(&g, &(&grad_sum * scale), 0.0, 0.0, &format!("{r:?} gradient"));
        let (tv, tg) = value_and_grad_on_tape(&loss, &q, &p).unwrap();
        assert_close_scalar(tv, total * scale, 1e-15, 0.0, &format!("{r:?} tape value"));
        assert_close(&tg, &(&grad_sum * scale), 0.0, 0.0, &format!("{r:?} tape gradient"));
    }
    // [2, 3, 1]: still 2 samples; [1, 6]: one sample holding every element.
    for (shape, samples) in [(&[2, 3, 1][..], 2.0), (&[1, 6], 1.0), (&[6], 6.0)] {
        let (q, p) = (
            q.clone().into_shape_with_order(IxDyn(shape)).unwrap(),
            p.clone().into_shape_with_order(IxDyn(shape)).unwrap(),
        );
        let v = KlDivLoss::new().forward(&q, &p).unwrap();
        assert_close_scalar(v, total / samples, 1e-15, 0.0, &format!("{shape:?}"));
        let out = {
            let tape = tapeloss::Tape::new();
            KlDivLoss::new()
                .record(&tape, tape.var(q.clone()), &p)
                .unwrap()
                .item()
                .unwrap()
        };
        assert_close_scalar(out, total / samples, 1e-15, 0.0, &format!("{shape:?} record"));
    }
    // 0-d: p·(ln p − q) = 0.25·(ln 0.25 + 2), Mean = Sum.
    let (q, p) = (ArrayD::from_elem(IxDyn(&[]), -2.0), ArrayD::from_elem(IxDyn(&[]), 0.25));
    let expected = 0.25 * (0.25_f64.ln() + 2.0);
    for r in [Reduction::Mean, Reduction::Sum] {
        let (v, g) = KlDivLoss::new().with_reduction(r).value_and_grad(&q, &p).unwrap();
        assert_close_scalar(v, expected, 1e-15, 0.0, "0-d value");
        assert_eq!(g[[]], -0.25);
    }
}

/// Log targets are the probability targets' logs: the same value and
/// gradient (where p > 0).
#[test]
fn log_targets_agree_with_probability_targets() {
    let mut rng = Rng::new(54);
    let q = rng.array(&[4, 5], -3.0, 0.0);
    let p = rng.array(&[4, 5], 0.01, 1.5);
    for r in [Reduction::Mean, Reduction::Sum] {
        let (v, g) = KlDivLoss::new().with_reduction(r).value_and_grad(&q, &p).unwrap();
        let (lv, lg) = KlDivLoss::with_log_target()
            .with_reduction(r)
            .value_and_grad(&q, &p.mapv(f64::ln))
            .unwrap();
        assert_close_scalar(lv, v, 1e-13, 0.0, "value");
        assert_close(&lg, &g, 1e-14, 0.0, "gradient");
    }
}

/// A zero target adds nothing whatever its log-probability (no 0·ln 0 or
/// 0·q turning into NaN), on every route and in both precisions.
#[test]
fn zero_targets_add_nothing() {
    let q = array![-1e30, 0.0, 1e30, -3.0].into_dyn();
    let p = array![0.0, 0.0, 0.0, 0.5].into_dyn();
    let expected = 0.5 * (0.5_f64.ln() + 3.0);
    let loss = KlDivLoss::new().with_reduction(Reduction::Sum);
    let (v, g) = loss.value_and_grad(&q, &p).unwrap();
    assert_close_scalar(v, expected, 1e-15, 0.0, "value");
    assert_eq!(g, array![0.0, 0.0, 0.0, -0.5].into_dyn());
    let (tv, tg) = value_and_grad_on_tape(&loss, &q, &p).unwrap();
    assert_close_scalar(tv, expected, 1e-15, 0.0, "tape value");
    assert_eq!(tg, g);
    let (v32, g32) = loss
        .value_and_grad(&q.mapv(|v| v as f32), &p.mapv(|v| v as f32))
        .unwrap();
    assert_close_scalar(f64::from(v32), expected, 1e-6, 0.0, "f32 value");
    assert_eq!(g32, array![0.0_f32, 0.0, 0.0, -0.5].into_dyn());
}

#[test]
fn invalid_targets_and_non_finite_inputs_are_errors() {
    // Smoke checks only; tests/errors.rs covers every method.
    let q = array![-1.0, -2.0, -0.5].into_dyn();
    let err = KlDivLoss::new()
        .forward(&q, &array![0.2, -0.1, 0.9].into_dyn())
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidTarget { index, value, .. } if index == &[1] && *value == -0.1),
        "{err}"
    );
    assert!(err.to_string().contains("KlDivLoss"), "{err}");
    // An infinite log-probability is an error even where p = 0 (PyTorch: NaN).
    let err = KlDivLoss::new()
        .value_and_grad(
            &array![-1.0, f64::NEG_INFINITY, -0.5].into_dyn(),
            &array![0.5, 0.0, 0.5].into_dyn(),
        )
        .unwrap_err();
    assert!(
        matches!(&err, Error::NonFinite { arg: "predictions", index, .. } if index == &[1]),
        "{err}"
    );
    // ln 0 = −∞ as a log target (PyTorch: NaN).
    let err = KlDivLoss::with_log_target()
        .forward(&q, &array![-1.0, -1.0, f64::NEG_INFINITY].into_dyn())
        .unwrap_err();
    assert!(
        matches!(&err, Error::NonFinite { arg: "targets", index, .. } if index == &[2]),
        "{err}"
    );
}
