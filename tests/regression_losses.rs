//! MSE, MAE, Huber and smooth L1: gradients by three derivations, PyTorch
//! fixtures, f32 against f64, and sharding.

mod common;

use common::{
    GradAtol, Rng, assert_close_scalar, assert_f32_agrees, assert_gradients_agree, assert_matches_fixture,
    assert_shards_add_up, fixtures, opt_f64, reduction,
};
use tapeloss::losses::value_and_grad_on_tape;
use tapeloss::ndarray::{ArrayD, IxDyn, array};
use tapeloss::{Error, Float, HuberLoss, Loss, MeanAbsoluteError, MeanSquaredError, Reduction, SmoothL1Loss};

/// One regression loss with one set of options, and the residuals |d| where
/// its slope jumps.
struct Variant {
    name: String,
    loss: Box<dyn Loss<f64>>,
    kinks: Vec<f64>,
}

/// Every regression loss and option exercised below.
fn variants(r: Reduction) -> Vec<Variant> {
    let variant = |name: String, loss: Box<dyn Loss<f64>>, kinks: Vec<f64>| Variant { name, loss, kinks };
    let mut out = vec![
        variant(
            "mse".into(),
            Box::new(MeanSquaredError::new().with_reduction(r)),
            vec![],
        ),
        variant(
            "mae".into(),
            Box::new(MeanAbsoluteError::new().with_reduction(r)),
            vec![0.0],
        ),
    ];
    for delta in [0.5, 1.0, 2.5] {
        out.push(variant(
            format!("huber δ={delta}"),
            Box::new(HuberLoss::new(delta).with_reduction(r)),
            vec![0.0, delta],
        ));
    }
    for beta in [0.0, 0.5, 1.0, 2.5] {
        out.push(variant(
            format!("smooth_l1 β={beta}"),
            Box::new(SmoothL1Loss::new(beta).with_reduction(r)),
            vec![0.0, beta],
        ));
    }
    out
}

/// Seeded predictions and targets whose residuals keep at least 1e-3 from
/// every kink (|d| ∈ `kinks`), so finite differences are meaningful. The
/// residuals spread over [−3, 3], on both sides of every threshold.
fn away_from_kinks(rng: &mut Rng, shape: &[usize], kinks: &[f64]) -> (ArrayD<f64>, ArrayD<f64>) {
    let t = rng.array(shape, -2.0, 2.0);
    let d = ArrayD::from_shape_simple_fn(IxDyn(shape), || {
        loop {
            let d = rng.uniform(-3.0, 3.0);
            if kinks.iter().all(|k| (d.abs() - k).abs() > 1e-3) {
                break d;
            }
        }
    });
    (&t + &d, t)
}

#[test]
fn matches_pytorch() {
    let cases = fixtures("regression");
    for loss_name in ["mse", "mae", "huber", "smooth_l1"] {
        assert!(cases.iter().any(|c| c.loss == loss_name), "no {loss_name} fixtures");
    }
    for case in cases {
        let r = reduction(&case.options);
        let loss: Box<dyn Loss<f64>> = match case.loss.as_str() {
            "mse" => Box::new(MeanSquaredError::new().with_reduction(r)),
            "mae" => Box::new(MeanAbsoluteError::new().with_reduction(r)),
            "huber" => Box::new(HuberLoss::new(opt_f64(&case.options, "delta").unwrap()).with_reduction(r)),
            "smooth_l1" => Box::new(SmoothL1Loss::new(opt_f64(&case.options, "beta").unwrap()).with_reduction(r)),
            other => panic!("unknown loss {other}"),
        };
        // The tape composition agrees too, even exactly at the kinks.
        let atol = GradAtol {
            closed: 1e-300,
            tape: Some(1e-300),
        };
        assert_matches_fixture(loss.as_ref(), &case, atol);
    }
}

#[test]
fn gradients_agree() {
    let mut rng = Rng::new(1);
    for shape in [&[5][..], &[3, 4], &[2, 3, 2]] {
        for r in [Reduction::Mean, Reduction::Sum] {
            for v in variants(r) {
                let (p, t) = away_from_kinks(&mut rng, shape, &v.kinks);
                assert_gradients_agree(v.loss.as_ref(), &p, &t, &format!("{} {shape:?} {r:?}", v.name));
            }
        }
    }
}

#[test]
fn f32_agrees_with_f64() {
    let mut rng = Rng::new(2);
    let (p, t) = away_from_kinks(&mut rng, &[6, 7], &[0.0, 0.5, 1.0, 2.5]);
    for r in [Reduction::Mean, Reduction::Sum] {
        assert_f32_agrees(&MeanSquaredError::new().with_reduction(r), &p, &t, "mse");
        assert_f32_agrees(&MeanAbsoluteError::new().with_reduction(r), &p, &t, "mae");
        for k in [0.5, 1.0, 2.5] {
            assert_f32_agrees(&HuberLoss::new(k).with_reduction(r), &p, &t, &format!("huber {k}"));
            assert_f32_agrees(
                &SmoothL1Loss::new(k).with_reduction(r),
                &p,
                &t,
                &format!("smooth_l1 {k}"),
            );
        }
        assert_f32_agrees(&SmoothL1Loss::new(0.0).with_reduction(r), &p, &t, "smooth_l1 0");
    }
}

#[test]
fn shards_add_up_to_the_batch() {
    let mut rng = Rng::new(3);
    let p = rng.array(&[9, 4], -3.0, 3.0);
    let t = rng.array(&[9, 4], -3.0, 3.0);
    for v in variants(Reduction::Sum) {
        assert_shards_add_up(v.loss.as_ref(), &p, &t, &[2, 3, 7], &v.name);
    }
}

#[test]
fn worked_by_hand() {
    // d = −3, −1, −0.25, 0, 0.5, 2 against δ = β = 1.
    let p = array![-3.0, -1.0, -0.25, 0.0, 0.5, 2.0].into_dyn();
    let t = ArrayD::zeros(IxDyn(&[6]));
    let sum = Reduction::Sum;
    let (v, g) = MeanAbsoluteError::new()
        .with_reduction(sum)
        .value_and_grad(&p, &t)
        .unwrap();
    assert_eq!(v, 6.75);
    assert_eq!(g, array![-1.0, -1.0, -1.0, 0.0, 1.0, 1.0].into_dyn());
    let (v, g) = HuberLoss::new(1.0).with_reduction(sum).value_and_grad(&p, &t).unwrap();
    assert_eq!(v, 2.5 + 0.5 + 0.03125 + 0.0 + 0.125 + 1.5);
    assert_eq!(g, array![-1.0, -1.0, -0.25, 0.0, 0.5, 1.0].into_dyn());
    // Huber with δ = 2 is twice smooth L1 with β = 2.
    let huber = HuberLoss::new(2.0).forward(&p, &t).unwrap();
    let smooth = SmoothL1Loss::new(2.0).forward(&p, &t).unwrap();
    assert_close_scalar(huber, 2.0 * smooth, 1e-15, 0.0, "huber = β·smooth_l1");
    // β = 0 is L1.
    let l1 = SmoothL1Loss::new(0.0).value_and_grad(&p, &t).unwrap();
    assert_eq!(l1, MeanAbsoluteError::new().value_and_grad(&p, &t).unwrap());
}

/// Smooth L1's slope `d/β` on the tape keeps its relative accuracy where
/// `|d| ≪ β` (a composition whose `+1` and `−1` met `d/β` one at a time lost
/// it to rounding near 1: 2e-4 relative in `f32` at `d = 1e-4`).
#[test]
fn smooth_l1_tape_slope_is_accurate_far_inside_beta() {
    fn check<F: Float>(beta: f64, residuals: &[f64], rtol: f64) {
        let p = ArrayD::from_shape_vec(
            IxDyn(&[residuals.len()]),
            residuals.iter().map(|&d| F::from_f64(d)).collect(),
        )
        .unwrap();
        let t = ArrayD::<F>::zeros(IxDyn(&[residuals.len()]));
        let loss = SmoothL1Loss::new(beta).with_reduction(Reduction::Sum);
        let (_, grad) = value_and_grad_on_tape(&loss, &p, &t).unwrap();
        for (&d, &g) in residuals.iter().zip(&grad) {
            // The expected slope, rounded once to `F`.
            let expected = F::from_f64(if d.abs() < beta { d / beta } else { d.signum() }).as_f64();
            let error = (g.as_f64() - expected).abs() / expected.abs();
            assert!(
                error <= rtol,
                "β = {beta}, d = {d:e}: tape {:e}, d/β {expected:e}",
                g.as_f64()
            );
        }
    }
    let residuals = [1e-4, -3e-5, 2e-6, 0.01, 0.5, -0.999, 1.0, 3.0];
    check::<f32>(1.0, &residuals, 3.0 * f64::from(f32::EPSILON));
    check::<f32>(1000.0, &[0.01, -1e-3, 7.0], 3.0 * f64::from(f32::EPSILON));
    check::<f64>(1.0, &residuals, 3.0 * f64::EPSILON);
    check::<f64>(1e12, &[1e-3, -2.5, 1e6], 3.0 * f64::EPSILON);
}

#[test]
fn invalid_thresholds_are_errors() {
    // Smoke checks only; tests/errors.rs covers every case.
    let p = array![1.0, 2.0].into_dyn();
    for delta in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let err = HuberLoss::new(delta).value_and_grad(&p, &p).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidParameter { name, .. } if name == "delta"),
            "{err}"
        );
    }
    let err = SmoothL1Loss::new(-0.5).forward(&p, &p).unwrap_err();
    assert!(err.to_string().contains("beta"), "{err}");
}
