//! Soft margin and hinge embedding: PyTorch fixtures, gradients by three
//! derivations, f32 against f64, sharding, stability and label checks.

mod common;

use common::{
    GradAtol, Rng, assert_close_scalar, assert_f32_agrees, assert_gradients_agree, assert_matches_fixture,
    assert_shards_add_up, fixtures, opt_f64, reduction,
};
use tapeloss::losses::value_and_grad_on_tape;
use tapeloss::ndarray::{ArrayD, IxDyn, array};
use tapeloss::{Error, HingeEmbeddingLoss, Loss, Reduction, SoftMarginLoss};

/// Labels −1 or 1, at random.
fn labels(rng: &mut Rng, shape: &[usize]) -> ArrayD<f64> {
    ArrayD::from_shape_simple_fn(IxDyn(shape), || if rng.uniform(0.0, 1.0) < 0.5 { -1.0 } else { 1.0 })
}

/// Distances in [−1, 3] that keep at least 1e-3 from the margin, where the
/// hinge's slope jumps.
fn distances_away_from(rng: &mut Rng, shape: &[usize], margin: f64) -> ArrayD<f64> {
    ArrayD::from_shape_simple_fn(IxDyn(shape), || {
        loop {
            let d = rng.uniform(-1.0, 3.0);
            if (d - margin).abs() > 1e-3 {
                break d;
            }
        }
    })
}

#[test]
fn matches_pytorch() {
    let cases = fixtures("margin");
    for loss_name in ["soft_margin", "hinge_embedding"] {
        assert!(cases.iter().any(|c| c.loss == loss_name), "no {loss_name} fixtures");
    }
    for case in cases {
        let r = reduction(&case.options);
        let loss: Box<dyn Loss<f64>> = match case.loss.as_str() {
            "soft_margin" => Box::new(SoftMarginLoss::new().with_reduction(r)),
            "hinge_embedding" => {
                Box::new(HingeEmbeddingLoss::new(opt_f64(&case.options, "margin").unwrap()).with_reduction(r))
            }
            other => panic!("unknown loss {other}"),
        };
        // Both slopes are ±s, 0 or σ(·)·s: relative agreement throughout,
        // the tape's included, even exactly at the margin.
        let atol = GradAtol {
            closed: 1e-300,
            tape: Some(1e-300),
        };
        assert_matches_fixture(loss.as_ref(), &case, atol);
    }
}

#[test]
fn gradients_agree() {
    let mut rng = Rng::new(11);
    for shape in [&[5][..], &[3, 4], &[2, 3, 2]] {
        for r in [Reduction::Mean, Reduction::Sum] {
            let y = labels(&mut rng, shape);
            let scores = rng.array(shape, -6.0, 6.0);
            assert_gradients_agree(
                &SoftMarginLoss::new().with_reduction(r),
                &scores,
                &y,
                &format!("soft margin {shape:?} {r:?}"),
            );
            for margin in [0.0, 0.5, 2.0] {
                let x = distances_away_from(&mut rng, shape, margin);
                assert_gradients_agree(
                    &HingeEmbeddingLoss::new(margin).with_reduction(r),
                    &x,
                    &y,
                    &format!("hinge embedding Δ={margin} {shape:?} {r:?}"),
                );
            }
        }
    }
}

#[test]
fn f32_agrees_with_f64() {
    let mut rng = Rng::new(12);
    let y = labels(&mut rng, &[6, 7]);
    let scores = rng.array(&[6, 7], -8.0, 8.0);
    let x = distances_away_from(&mut rng, &[6, 7], 1.0);
    for r in [Reduction::Mean, Reduction::Sum] {
        assert_f32_agrees(&SoftMarginLoss::new().with_reduction(r), &scores, &y, "soft margin");
        assert_f32_agrees(&HingeEmbeddingLoss::new(1.0).with_reduction(r), &x, &y, "hinge");
    }
}

#[test]
fn shards_add_up_to_the_batch() {
    let mut rng = Rng::new(13);
    let y = labels(&mut rng, &[9, 4]);
    let scores = rng.array(&[9, 4], -4.0, 4.0);
    let x = distances_away_from(&mut rng, &[9, 4], 1.0);
    let sum = Reduction::Sum;
    assert_shards_add_up(
        &SoftMarginLoss::new().with_reduction(sum),
        &scores,
        &y,
        &[2, 5],
        "soft margin",
    );
    assert_shards_add_up(
        &HingeEmbeddingLoss::new(1.0).with_reduction(sum),
        &x,
        &y,
        &[3, 7],
        "hinge",
    );
}

/// Distances near `f32`'s limit: a similar pair's term is `x` itself (its
/// hinge factor is 0, never `Δ − x` overflowed), a dissimilar one's is
/// `max(0, Δ − x)`; at the kink `x = Δ` the slope is 0, as in PyTorch. The
/// tape, which joins the cases with the label's indicator, agrees bit for bit.
#[test]
fn hinge_is_exact_for_extreme_distances() {
    let x = array![1e38_f32, -1e38, 2e38, -2e38, 1.0, 0.5].into_dyn();
    let y = array![1.0_f32, 1.0, -1.0, -1.0, -1.0, -1.0].into_dyn();
    let loss = HingeEmbeddingLoss::new(1.0).with_reduction(Reduction::Sum);
    let (value, grad) = loss.value_and_grad(&x, &y).unwrap();
    assert_eq!(value, 2e38 + 0.5);
    assert_eq!(grad, array![1.0_f32, 1.0, 0.0, -1.0, 0.0, -1.0].into_dyn());
    let (tape_value, tape_grad) = value_and_grad_on_tape(&loss, &x, &y).unwrap();
    assert_eq!(tape_value, value);
    assert_eq!(tape_grad, grad);
}

/// Where `−y·x` is beyond `f32`'s `exp` range, PyTorch's `log1p(exp(−y·x))`
/// overflows to `inf` with a NaN slope; here the term is `−y·x` (its
/// `ln(1 + e^(−|z|))` part is below half an ulp) and the slope `−y`.
#[test]
fn soft_margin_is_finite_for_extreme_scores() {
    let x = array![-100.0_f32, 1e4, 3e38, -3e38].into_dyn();
    let y = array![1.0_f32, -1.0, 1.0, -1.0].into_dyn();
    let loss = SoftMarginLoss::new().with_reduction(Reduction::Sum);
    let (value, grad) = loss.value_and_grad(&x, &y).unwrap();
    assert_eq!(value, 100.0 + 1e4 + 0.0 + 0.0);
    assert_eq!(grad, array![-1.0_f32, 1.0, -0.0, 0.0].into_dyn());
    let (tape_value, tape_grad) = value_and_grad_on_tape(&loss, &x, &y).unwrap();
    assert_eq!(tape_value, value);
    assert_eq!(tape_grad.mapv(f32::abs), grad.mapv(f32::abs));
    // At 0 the term is ln 2 and the slope −y/2, exactly.
    let (value, grad) = loss
        .value_and_grad(&array![0.0_f32].into_dyn(), &array![1.0_f32].into_dyn())
        .unwrap();
    assert!((value - std::f32::consts::LN_2).abs() <= f32::EPSILON * value);
    assert_eq!(grad[0], -0.5);
}

#[test]
fn labels_other_than_plus_or_minus_one_are_errors() {
    let x = array![[0.5, 1.0], [2.0, -1.0]].into_dyn();
    let losses: [(&str, Box<dyn Loss<f64>>); 2] = [
        ("SoftMarginLoss", Box::new(SoftMarginLoss::new())),
        ("HingeEmbeddingLoss", Box::new(HingeEmbeddingLoss::new(1.0))),
    ];
    for (name, loss) in &losses {
        for bad in [0.0, 0.5, 2.0, -1.5] {
            let y = array![[1.0, -1.0], [bad, 1.0]].into_dyn();
            let err = loss.value_and_grad(&x, &y).unwrap_err();
            assert!(
                matches!(&err, Error::InvalidTarget { index, value, .. } if index == &[1, 0] && *value == bad),
                "{name} label {bad}: {err}"
            );
            let message = err.to_string();
            assert!(message.contains(name) && message.contains("−1 or 1"), "{message}");
            assert!(loss.forward(&x, &y).is_err() && value_and_grad_on_tape(loss.as_ref(), &x, &y).is_err());
        }
        let y = array![[1.0, f64::NAN], [1.0, 1.0]].into_dyn();
        let err = loss.forward(&x, &y).unwrap_err();
        assert!(
            matches!(&err, Error::NonFinite { arg: "targets", index, .. } if index == &[0, 1]),
            "{name}: {err}"
        );
    }
}

/// A NaN or infinite input is an error on every route, whatever its label:
/// also where the term would be 0 (an infinite distance past the margin, or
/// an infinitely confident right score), and for NaN on the hinge, whose
/// comparison with the margin is false for NaN.
#[test]
fn a_non_finite_input_is_an_error_whatever_its_label() {
    let y = array![-1.0, 1.0].into_dyn();
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        for x in [array![bad, 0.5].into_dyn(), array![0.5, bad].into_dyn()] {
            for loss in [
                Box::new(HingeEmbeddingLoss::new(1.0)) as Box<dyn Loss<f64>>,
                Box::new(SoftMarginLoss::new()),
            ] {
                for result in [
                    loss.forward(&x, &y).map(|_| ()),
                    loss.value_and_grad(&x, &y).map(|_| ()),
                    value_and_grad_on_tape(loss.as_ref(), &x, &y).map(|_| ()),
                ] {
                    let err = result.unwrap_err();
                    assert!(
                        matches!(&err, Error::NonFinite { arg: "predictions", .. }),
                        "{x}: {err}"
                    );
                }
            }
        }
    }
}

#[test]
fn hinge_margin_must_be_finite() {
    let x = array![0.5, 2.0].into_dyn();
    let y = array![-1.0, 1.0].into_dyn();
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let err = HingeEmbeddingLoss::new(bad).value_and_grad(&x, &y).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidParameter { name, .. } if name == "margin"),
            "{err}"
        );
    }
    // Zero and negative margins are taken, as in PyTorch: with Δ = −1 every
    // dissimilar distance above −1 costs nothing.
    let (value, grad) = HingeEmbeddingLoss::new(-1.0)
        .with_reduction(Reduction::Sum)
        .value_and_grad(&x, &y)
        .unwrap();
    assert_eq!((value, grad), (2.0, array![0.0, 1.0].into_dyn()));
}

#[test]
fn hinge_worked_by_hand() {
    // Δ = 2: similar pairs cost their distance; dissimilar ones 2 − x below 2.
    let x = array![[0.0, 1.5], [2.0, 3.0], [-1.0, 0.25]].into_dyn();
    let y = array![[-1.0, -1.0], [-1.0, -1.0], [1.0, 1.0]].into_dyn();
    let (value, grad) = HingeEmbeddingLoss::new(2.0).value_and_grad(&x, &y).unwrap();
    assert_close_scalar(value, 1.75 / 6.0, 1e-15, 0.0, "hinge value"); // 2 + ½ + 0 + 0 − 1 + ¼
    let s = 1.0 / 6.0;
    assert_eq!(grad, array![[-s, -s], [0.0, 0.0], [s, s]].into_dyn());
    assert_eq!(HingeEmbeddingLoss::default(), HingeEmbeddingLoss::new(1.0));
}
