//! Poisson negative log-likelihood on log-rates and on rates, with and
//! without the Stirling term: PyTorch fixtures, gradients by three
//! derivations, f32 against f64, sharding, overflow and errors.

mod common;

use common::{Family, GradAtol, Rng, assert_close_scalar, assert_matches_fixture, fixtures, opt_f64, reduction};
use tapeloss::losses::value_and_grad_on_tape;
use tapeloss::ndarray::{ArrayD, IxDyn, array};
use tapeloss::{Error, Loss, PoissonNllLoss, Reduction};

/// Every option, with a name.
fn variants(r: Reduction) -> Vec<(String, PoissonNllLoss)> {
    let mut out = Vec::new();
    for (form, loss) in [
        ("log-rates", PoissonNllLoss::new()),
        ("rates", PoissonNllLoss::with_rates()),
        ("rates eps=0.5", PoissonNllLoss::with_rates().with_eps(0.5)),
    ] {
        out.push((form.to_string(), loss.with_reduction(r)));
        out.push((format!("{form} full"), loss.with_full().with_reduction(r)));
    }
    out
}

/// Seeded predictions for `loss` (log-rates in [−3, 2], or rates in
/// [0.05, 6]) and counts in [0, 8], a third of them whole (0, 1, 2, …).
fn inputs(rng: &mut Rng, loss: &PoissonNllLoss, shape: &[usize]) -> (ArrayD<f64>, ArrayD<f64>) {
    let x = if loss.log_input() {
        rng.array(shape, -3.0, 2.0)
    } else {
        rng.array(shape, 0.05, 6.0)
    };
    let t = ArrayD::from_shape_simple_fn(IxDyn(shape), || {
        let c = rng.uniform(0.0, 8.0);
        if rng.unit() < 0.33 { c.floor() } else { c }
    });
    (x, t)
}

#[test]
fn matches_pytorch() {
    let cases = fixtures("poisson");
    for (key, value) in [
        ("log_input", true),
        ("log_input", false),
        ("full", true),
        ("full", false),
    ] {
        assert!(
            cases.iter().any(|c| c.options[key] == value),
            "no {key}={value} fixtures"
        );
    }
    for case in &cases {
        assert_eq!(case.loss, "poisson_nll");
        let o = &case.options;
        let mut loss = if o["log_input"] == true {
            PoissonNllLoss::new()
        } else {
            PoissonNllLoss::with_rates()
        };
        if o["full"] == true {
            loss = loss.with_full();
        }
        let loss = loss.with_eps(opt_f64(o, "eps").unwrap()).with_reduction(reduction(o));
        let atol = GradAtol {
            closed: 1e-300,
            tape: Some(1e-300),
        };
        assert_matches_fixture(&loss, case, atol);
    }
}

const FAMILY: Family<PoissonNllLoss> = Family { variants, inputs };

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

/// The Stirling term by hand: only counts above 1 get one, it is the same
/// for both forms, and the gradient does not change.
#[test]
fn stirling_term_by_hand() {
    let t = array![0.0, 1.0, 2.0, 10.0].into_dyn();
    let stirling = |c: f64| c * c.ln() - c + 0.5 * (2.0 * std::f64::consts::PI * c).ln();
    let expected = stirling(2.0) + stirling(10.0);
    for (x, loss) in [
        (array![0.5, -1.0, 0.0, 2.0].into_dyn(), PoissonNllLoss::new()),
        (array![0.5, 1.0, 0.0, 2.0].into_dyn(), PoissonNllLoss::with_rates()),
    ] {
        let loss = loss.with_reduction(Reduction::Sum);
        let (plain, plain_grad) = loss.value_and_grad(&x, &t).unwrap();
        let (full, full_grad) = loss.with_full().value_and_grad(&x, &t).unwrap();
        assert_close_scalar(full - plain, expected, 1e-13, 0.0, "closed form");
        assert_eq!(full_grad, plain_grad);
        let (tape_plain, tape_plain_grad) = value_and_grad_on_tape(&loss, &x, &t).unwrap();
        let (tape_full, tape_grad) = value_and_grad_on_tape(&loss.with_full(), &x, &t).unwrap();
        assert_close_scalar(tape_full - tape_plain, expected, 1e-13, 0.0, "tape");
        assert_eq!(tape_grad, tape_plain_grad);
    }
}

/// On rates, a rate of 0 costs `−t·ln eps` with slope `1 − t/eps`, worked by
/// hand; the tape agrees.
#[test]
fn zero_rates_are_finite() {
    let x = array![0.0, 0.0].into_dyn();
    let t = array![0.0, 3.0].into_dyn();
    let loss = PoissonNllLoss::with_rates().with_reduction(Reduction::Sum);
    let (v, g) = loss.value_and_grad(&x, &t).unwrap();
    assert_close_scalar(v, -3.0 * 1e-8_f64.ln(), 1e-15, 0.0, "value");
    assert_eq!(g[0], 1.0);
    assert_close_scalar(g[1], 1.0 - 3.0 / 1e-8, 1e-15, 0.0, "slope");
    let (tv, tg) = value_and_grad_on_tape(&loss, &x, &t).unwrap();
    assert_close_scalar(tv, v, 1e-15, 0.0, "tape value");
    assert_close_scalar(tg[1], g[1], 1e-15, 0.0, "tape slope");
}

/// e^x beyond the float's range is an error on every route, not an infinite
/// loss; just inside it the loss is finite.
#[test]
fn overflowing_exp_is_an_error() {
    let loss = PoissonNllLoss::new();
    let t = array![1.0, 0.0].into_dyn();
    let finite: f64 = loss.forward(&array![0.0, 709.0].into_dyn(), &t).unwrap();
    assert_close_scalar(finite, (1.0 + 709.0_f64.exp()) / 2.0, 1e-14, 0.0, "e^709");
    let x = array![0.0, 710.0].into_dyn();
    let x32 = array![0.0_f32, 89.0].into_dyn();
    let t32 = t.mapv(|v| v as f32);
    // The value overflows, and so does its slope e^x − t, which the gradient
    // methods name with its index.
    let value_only = [
        loss.forward(&x, &t).map(drop),
        value_and_grad_on_tape(&loss, &x, &t).map(drop),
        loss.forward(&x32, &t32).map(drop),
        value_and_grad_on_tape(&loss, &x32, &t32).map(drop),
    ];
    for result in value_only {
        let err = result.unwrap_err();
        assert!(matches!(err, Error::NonFinite { arg: "loss value", .. }), "{err:?}");
    }
    for result in [
        loss.value_and_grad(&x, &t).map(drop),
        loss.backward(&x32, &t32).map(drop),
    ] {
        let err = result.unwrap_err();
        assert!(
            matches!(&err, Error::NonFinite { arg: "gradient", index, .. } if index == &[1]),
            "{err:?}"
        );
    }
}

/// A slope `1 − t/(λ + eps)` that overflows while the loss does not is an
/// error from the gradient methods; the value alone is fine.
#[test]
fn overflowing_rate_slope_is_an_error() {
    // f32: t/eps = 1e31/1e-8 = 1e39 overflows; t·ln eps = −1.8e32 does not.
    let loss = PoissonNllLoss::with_rates();
    let x = array![0.0_f32, 1.0].into_dyn();
    let t = array![1e31_f32, 1.0].into_dyn();
    let value = loss.forward(&x, &t).unwrap();
    assert_close_scalar(
        f64::from(value),
        (-1e31 * 1e-8_f64.ln() + 1.0) / 2.0,
        1e-5,
        0.0,
        "value",
    );
    let mut grad = ArrayD::zeros(x.raw_dim());
    for result in [
        loss.backward(&x, &t).map(drop),
        loss.value_and_grad(&x, &t).map(drop),
        loss.value_and_grad_into(&x, &t, &mut grad).map(drop),
        value_and_grad_on_tape(&loss, &x, &t).map(drop),
    ] {
        let err = result.unwrap_err();
        assert!(
            matches!(&err, Error::NonFinite { arg: "gradient", index, .. } if index == &[0]),
            "{err:?}"
        );
    }
}

#[test]
fn invalid_inputs_are_errors() {
    // Smoke checks only; tests/errors.rs covers every method.
    let x = array![0.5, 1.0, 2.0].into_dyn();
    let err = PoissonNllLoss::new()
        .forward(&x, &array![1.0, -1.0, 2.0].into_dyn())
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidTarget { index, .. } if index == &[1]),
        "{err}"
    );
    let err = PoissonNllLoss::with_rates()
        .forward(&array![0.5, 1.0, -1e-9].into_dyn(), &x)
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput { arg: "predictions", index, .. } if index == &[2]),
        "{err}"
    );
    // Negative log-rates are fine.
    assert!(
        PoissonNllLoss::new()
            .forward(&array![-0.5, -1.0, -2.0].into_dyn(), &x)
            .is_ok()
    );
    for eps in [0.0, -1e-8, f64::NAN] {
        let err = PoissonNllLoss::with_rates().with_eps(eps).forward(&x, &x).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidParameter { name, .. } if name == "eps"),
            "{err}"
        );
    }
}
