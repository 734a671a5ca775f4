//! Focal loss on probabilities: fixtures from PyTorch autograd on the
//! definition, gradients by three derivations, the sign of the focusing term,
//! f32 against f64, sharding over samples and the edges p ∈ {0, 1}.

mod common;

use common::{
    GradAtol, Rng, assert_close, assert_close_scalar, assert_f32_agrees, assert_gradients_agree,
    assert_matches_fixture, assert_shards_add_up, fixtures, opt_f64, reduction,
};
use tapeloss::ndarray::{Array2, ArrayD, Axis, IxDyn, array};
use tapeloss::{Error, FocalLoss, Loss, Reduction};

const GAMMAS: [f64; 5] = [0.0, 0.5, 1.0, 2.0, 3.5];

/// Seeded rows of probabilities in [0.02, 0.98] (not normalised: the loss
/// does not need it) and one-hot or soft targets.
fn inputs(rng: &mut Rng, shape: &[usize], soft: bool) -> (ArrayD<f64>, ArrayD<f64>) {
    let p = rng.array(shape, 0.02, 0.98);
    let classes = *shape.last().unwrap();
    let mut t = ArrayD::zeros(IxDyn(shape));
    for mut row in t.lanes_mut(Axis(shape.len() - 1)) {
        if soft {
            let raw: Vec<f64> = (0..classes).map(|_| rng.unit()).collect();
            let total: f64 = raw.iter().sum();
            row.iter_mut().zip(raw).for_each(|(t, r)| *t = r / total);
        } else {
            row[rng.below(classes)] = 1.0;
        }
    }
    (p, t)
}

#[test]
fn matches_pytorch_autograd() {
    let cases = fixtures("focal");
    for case in cases {
        let o = &case.options;
        let loss = FocalLoss::new(
            opt_f64(o, "gamma").unwrap(),
            opt_f64(o, "alpha"),
            opt_f64(o, "epsilon").unwrap(),
        )
        .with_reduction(reduction(o));
        // The tape composition matches autograd too, edges included.
        let atol = GradAtol {
            closed: 1e-300,
            tape: Some(1e-300),
        };
        assert_matches_fixture(&loss, &case, atol);
    }
}

#[test]
fn gradients_agree() {
    let mut rng = Rng::new(21);
    for shape in [&[4, 5][..], &[6], &[3, 2]] {
        for gamma in GAMMAS {
            for alpha in [None, Some(0.25)] {
                for r in [Reduction::Mean, Reduction::Sum] {
                    for soft in [false, true] {
                        let (p, t) = inputs(&mut rng, shape, soft);
                        let loss = FocalLoss::new(gamma, alpha, 1e-7).with_reduction(r);
                        let what = format!("{shape:?} γ={gamma} α={alpha:?} {r:?} soft={soft}");
                        assert_gradients_agree(&loss, &p, &t, &what);
                    }
                }
            }
        }
    }
}

/// With ε = 0.05 some probabilities sit below ε or above 1 − ε, where the
/// clamp holds ln q constant: only the (1 − p)^γ factor moves there.
#[test]
fn gradients_agree_where_the_clamp_is_active() {
    let p = array![[0.01, 0.5, 0.97], [0.03, 0.985, 0.2]].into_dyn();
    let t = array![[0.6, 0.1, 0.3], [0.5, 0.25, 0.25]].into_dyn();
    for gamma in GAMMAS {
        let loss = FocalLoss::new(gamma, Some(0.5), 0.05);
        assert_gradients_agree(&loss, &p, &t, &format!("clamped, γ={gamma}"));
    }
    // At γ = 0 the term is −α·t·ln ε below ε: constant, so no slope at all.
    let g = FocalLoss::new(0.0, Some(0.5), 0.05).backward(&p, &t).unwrap();
    assert_eq!((g[[0, 0]], g[[1, 0]], g[[0, 2]], g[[1, 1]]), (0.0, 0.0, 0.0, 0.0));
}

/// At the clamp's bounds themselves the log passes no gradient, as
/// PyTorch's `clamp` (and the tape's) pass none there: only the focusing
/// part is left, `∂ℓ/∂p = s·α·t·γ(1 − p)^(γ−1)·ln q`, worked by hand here.
#[test]
fn the_log_passes_no_gradient_at_the_clamp_bounds() {
    let loss = FocalLoss::new(2.0, None, 0.01);
    let p = array![[0.01, 0.99], [0.99, 0.01]].into_dyn();
    let t = array![[1.0, 0.0], [1.0, 0.0]].into_dyn();
    // s = 1/2, α = 1, γ = 2: 2·(1 − p)·ln q / 2 = (1 − p)·ln p.
    let by_hand = array![[0.99 * 0.01_f64.ln(), 0.0], [0.01 * 0.99_f64.ln(), 0.0]].into_dyn();
    let (_, closed) = loss.value_and_grad(&p, &t).unwrap();
    assert_close(&closed, &by_hand, 1e-15, 1e-12, "closed form at ε and 1 − ε");
    let (_, tape) = tapeloss::losses::value_and_grad_on_tape(&loss, &p, &t).unwrap();
    assert_close(&tape, &by_hand, 1e-15, 1e-12, "tape at ε and 1 − ε");
    let p32 = p.mapv(|v| v as f32);
    let (_, closed32) = loss.value_and_grad(&p32, &t.mapv(|v| v as f32)).unwrap();
    assert_close(
        &closed32.mapv(f64::from),
        &by_hand,
        1e-6,
        1e-5,
        "f32 closed form at ε and 1 − ε",
    );
}

/// The published slip: the focusing term's derivative is
/// +α·t·γ(1 − p)^(γ−1)·ln p, not its negation. At p = 0.6, γ = 2 the right
/// slope is −0.675…, the wrong one +0.142… (it would push the target's
/// probability down). Central differences decide.
#[test]
fn focusing_term_has_the_right_sign() {
    let loss = FocalLoss::new(2.0, None, 1e-7);
    let t = array![1.0, 0.0].into_dyn();
    let at = |p0: f64| loss.forward(&array![p0, 1.0 - p0].into_dyn(), &t).unwrap();
    let h = 1e-6;
    let numeric = (at(0.6 + h) - at(0.6 - h)) / (2.0 * h);
    let grad = loss.backward(&array![0.6, 0.4].into_dyn(), &t).unwrap();

    let (p, q) = (0.6_f64, 0.4_f64);
    let right = 2.0 * q * p.ln() - q * q / p;
    let wrong = -2.0 * q * p.ln() - q * q / p;
    assert_close_scalar(numeric, right, 1e-8, 0.0, "finite differences vs the true derivative");
    assert!(
        (numeric - wrong).abs() > 0.5,
        "finite differences cannot tell the slip apart"
    );
    assert_close_scalar(grad[0], numeric, 1e-8, 0.0, "closed form vs finite differences");
    assert!(grad[0] < 0.0, "raising the target's probability must lower the loss");
    let (_, tape) = tapeloss::losses::value_and_grad_on_tape(&loss, &array![0.6, 0.4].into_dyn(), &t).unwrap();
    assert_close_scalar(tape[0], numeric, 1e-8, 0.0, "tape vs finite differences");
}

/// The seed's example, worked by hand.
#[test]
fn seed_example_by_hand() {
    let loss = FocalLoss::new(2.0, Some(0.25), 1e-10);
    let p = array![[0.9, 0.1], [0.6, 0.4]].into_dyn();
    let t = array![[1.0, 0.0], [1.0, 0.0]].into_dyn();
    let easy = -0.25 * 0.1_f64.powi(2) * 0.9_f64.ln();
    let hard = -0.25 * 0.4_f64.powi(2) * 0.6_f64.ln();
    assert_close_scalar(
        loss.forward(&p, &t).unwrap(),
        (easy + hard) / 2.0,
        1e-15,
        0.0,
        "mean over N",
    );
    let sum = loss.with_reduction(Reduction::Sum).forward(&p, &t).unwrap();
    assert_close_scalar(sum, easy + hard, 1e-15, 0.0, "sum over samples");
    // One sample as [C]: N = 1.
    let one = loss
        .forward(&array![0.6, 0.4].into_dyn(), &array![1.0, 0.0].into_dyn())
        .unwrap();
    assert_close_scalar(one, hard, 1e-15, 0.0, "1-D input");
}

#[test]
fn f32_agrees_with_f64() {
    let mut rng = Rng::new(22);
    for gamma in GAMMAS {
        for alpha in [None, Some(0.25)] {
            let (p, t) = inputs(&mut rng, &[5, 4], true);
            let loss = FocalLoss::new(gamma, alpha, 1e-7);
            assert_f32_agrees(&loss, &p, &t, &format!("γ={gamma} α={alpha:?}"));
        }
    }
}

/// Sum is over samples, so shards of rows add back to the batch.
#[test]
fn shards_add_up_to_the_batch() {
    let mut rng = Rng::new(23);
    for gamma in GAMMAS {
        let (p, t) = inputs(&mut rng, &[10, 4], true);
        let loss = FocalLoss::new(gamma, Some(0.25), 1e-7).with_reduction(Reduction::Sum);
        assert_shards_add_up(&loss, &p, &t, &[1, 5, 6], &format!("γ={gamma}"));
    }
}

/// p ∈ {0, 1} on target and non-target classes: finite loss and gradient in
/// f32 and f64 for γ = 0 (no 0·∞ from (1 − p)^(γ−1)) and γ ≥ 1.
#[test]
fn probabilities_of_zero_and_one_are_finite() {
    let p = Array2::<f64>::from_shape_vec((3, 2), vec![1.0, 0.0, 0.0, 1.0, 0.5, 0.5]).unwrap();
    let t = Array2::<f64>::from_shape_vec((3, 2), vec![1.0, 0.0, 0.7, 0.3, 1.0, 0.0]).unwrap();
    for gamma in [0.0, 1.0, 2.0, 3.5] {
        let loss = FocalLoss::new(gamma, Some(0.25), 1e-7);
        let (v, g) = loss
            .value_and_grad(&p.clone().into_dyn(), &t.clone().into_dyn())
            .unwrap();
        assert!(
            v.is_finite() && g.iter().all(|g| g.is_finite()),
            "f64 γ={gamma}: {v}, {g}"
        );
        let (v32, g32) = loss
            .value_and_grad(&p.mapv(|v| v as f32).into_dyn(), &t.mapv(|v| v as f32).into_dyn())
            .unwrap();
        assert!(
            v32.is_finite() && g32.iter().all(|g| g.is_finite()),
            "f32 γ={gamma}: {v32}, {g32}"
        );
        let (tv, tg) =
            tapeloss::losses::value_and_grad_on_tape(&loss, &p.clone().into_dyn(), &t.clone().into_dyn()).unwrap();
        assert!(
            tv.is_finite() && tg.iter().all(|g| g.is_finite()),
            "tape γ={gamma}: {tv}, {tg}"
        );
    }
    // At γ = 0 it is α-weighted cross-entropy on clamped probabilities, by hand.
    let v = FocalLoss::new(0.0, Some(0.25), 1e-7)
        .with_reduction(Reduction::Sum)
        .forward(&p.into_dyn(), &t.into_dyn())
        .unwrap();
    let expected = -0.25 * ((1.0 - 1e-7_f64).ln() + 0.7 * 1e-7_f64.ln() + 0.3 * (1.0 - 1e-7_f64).ln() + 0.5_f64.ln());
    assert_close_scalar(v, expected, 1e-14, 0.0, "γ = 0 by hand");
}

/// For 0 < γ < 1 the slope of (1 − p)^γ is infinite at p = 1: the value is
/// fine, the gradient methods report the element instead of returning ∞.
#[test]
fn infinite_slope_at_one_is_reported() {
    let loss = FocalLoss::new(0.5, None, 1e-7);
    let p = array![[0.5_f64, 0.5], [1.0, 0.0]].into_dyn();
    let t = array![[1.0, 0.0], [0.4, 0.6]].into_dyn();
    assert!(loss.forward(&p, &t).unwrap().is_finite());
    let err = loss.backward(&p, &t).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput { arg: "predictions", index, .. } if index == &[1, 0]),
        "{err}"
    );
    // The tape route refuses it too, rather than a finite stand-in for ∞.
    let err = tapeloss::losses::value_and_grad_on_tape(&loss, &p, &t).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput { arg: "predictions", index, .. } if index == &[1, 0]),
        "tape: {err}"
    );
    // With a zero target there is no term, so nothing to report.
    let t = array![[1.0, 0.0], [0.0, 1.0]].into_dyn();
    let (_, g) = loss.value_and_grad(&p, &t).unwrap();
    assert!(g.iter().all(|g| g.is_finite()), "{g}");
    let (_, tape) = tapeloss::losses::value_and_grad_on_tape(&loss, &p, &t).unwrap();
    assert!(tape.iter().all(|g| g.is_finite()), "tape: {tape}");
}

#[test]
fn invalid_input_smoke() {
    // Smoke checks only; tests/errors.rs covers every case.
    let p = array![[0.5, 0.5]].into_dyn();
    let err = FocalLoss::new(-1.0, None, 1e-7).forward(&p, &p).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidParameter { name, .. } if name == "gamma"),
        "{err}"
    );
    let cube = ArrayD::from_elem(IxDyn(&[2, 2, 2]), 0.5);
    let err = FocalLoss::new(2.0, None, 1e-7).forward(&cube, &cube).unwrap_err();
    assert!(matches!(&err, Error::InvalidShape { arg: "predictions", .. }), "{err}");
    let err = FocalLoss::new(2.0, None, 1e-7)
        .backward(&array![[0.5, 1.2]].into_dyn(), &p)
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput { index, .. } if index == &[0, 1]),
        "{err}"
    );
}
