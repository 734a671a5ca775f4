//! Binary cross-entropy on probabilities and on logits: PyTorch fixtures,
//! gradients by three derivations, f32 against f64, sharding and stability at
//! the edges (p ∈ {0, 1}, logits of ±1e4).

mod common;

use common::{
    GradAtol, Rng, assert_close, assert_close_scalar, assert_f32_agrees, assert_gradients_agree,
    assert_matches_fixture, assert_shards_add_up, fixtures, opt_f64, reduction,
};
use tapeloss::ndarray::{ArrayD, IxDyn, array};
use tapeloss::{BinaryCrossEntropyLoss, Error, Loss, Reduction};

/// Every option of the loss, with a name.
fn variants(r: Reduction) -> Vec<(String, BinaryCrossEntropyLoss)> {
    let mut out = vec![
        (
            "probabilities".to_string(),
            BinaryCrossEntropyLoss::new().with_reduction(r),
        ),
        (
            "logits".to_string(),
            BinaryCrossEntropyLoss::with_logits().with_reduction(r),
        ),
    ];
    for w in [0.0, 0.5, 3.0] {
        out.push((
            format!("logits pos_weight={w}"),
            BinaryCrossEntropyLoss::with_logits()
                .with_pos_weight(w)
                .with_reduction(r),
        ));
    }
    out
}

/// Seeded inputs for `loss`: probabilities in [0.02, 0.98] or logits in
/// [−6, 6], and targets that are hard (0/1) or soft.
fn inputs(rng: &mut Rng, loss: &BinaryCrossEntropyLoss, shape: &[usize], soft: bool) -> (ArrayD<f64>, ArrayD<f64>) {
    let p = if loss.on_logits() {
        rng.array(shape, -6.0, 6.0)
    } else {
        rng.array(shape, 0.02, 0.98)
    };
    let t = ArrayD::from_shape_simple_fn(IxDyn(shape), || {
        if soft {
            rng.unit()
        } else {
            f64::from(u8::from(rng.unit() < 0.5))
        }
    });
    (p, t)
}

#[test]
fn matches_pytorch() {
    let cases = fixtures("binary");
    assert!(cases.iter().any(|c| c.loss == "bce") && cases.iter().any(|c| c.loss == "bce_logits"));
    for case in cases {
        let r = reduction(&case.options);
        let loss = match case.loss.as_str() {
            "bce" => BinaryCrossEntropyLoss::new(),
            "bce_logits" => match opt_f64(&case.options, "pos_weight") {
                Some(w) => BinaryCrossEntropyLoss::with_logits().with_pos_weight(w),
                None => BinaryCrossEntropyLoss::with_logits(),
            },
            other => panic!("unknown loss {other}"),
        }
        .with_reduction(r);
        // The tape composition has the same value everywhere, the edges
        // included; its gradient is the log's own, not PyTorch's clamped one.
        let atol = GradAtol {
            closed: 1e-300,
            tape: None,
        };
        assert_matches_fixture(&loss, &case, atol);
    }
}

#[test]
fn gradients_agree() {
    let mut rng = Rng::new(11);
    for shape in [&[7][..], &[3, 4], &[2, 3, 2]] {
        for r in [Reduction::Mean, Reduction::Sum] {
            for (name, loss) in variants(r) {
                for soft in [false, true] {
                    let (p, t) = inputs(&mut rng, &loss, shape, soft);
                    assert_gradients_agree(&loss, &p, &t, &format!("{name} {shape:?} {r:?} soft={soft}"));
                }
            }
        }
    }
}

#[test]
fn f32_agrees_with_f64() {
    let mut rng = Rng::new(12);
    for r in [Reduction::Mean, Reduction::Sum] {
        for (name, loss) in variants(r) {
            let (p, t) = inputs(&mut rng, &loss, &[5, 8], true);
            assert_f32_agrees(&loss, &p, &t, &name);
        }
    }
}

#[test]
fn shards_add_up_to_the_batch() {
    let mut rng = Rng::new(13);
    for (name, loss) in variants(Reduction::Sum) {
        let (p, t) = inputs(&mut rng, &loss, &[10, 3], true);
        assert_shards_add_up(&loss, &p, &t, &[1, 4, 8], &name);
    }
}

/// p ∈ {0, 1} with every kind of target: finite loss (each log floored at
/// −100) and PyTorch's finite gradient (p − t)/max(p(1 − p), 1e-12), in f32 and
/// f64; the tape's gradient is finite too (no 0·∞).
#[test]
fn probabilities_of_zero_and_one_are_finite() {
    let p = array![0.0, 0.0, 0.0, 1.0, 1.0, 1.0];
    let t = array![0.0, 1.0, 0.3, 0.0, 1.0, 0.7];
    let loss = BinaryCrossEntropyLoss::new().with_reduction(Reduction::Sum);
    // By hand: 0, 100, 0.3·100, 100, 0, 0.3·100.
    let (v, g) = loss
        .value_and_grad(&p.clone().into_dyn(), &t.clone().into_dyn())
        .unwrap();
    assert_close_scalar(v, 260.0, 1e-15, 0.0, "f64 value");
    let floor = f64::from(1e-12_f32); // ATen's floor is a float
    let expected = array![0.0, -1.0 / floor, -0.3 / floor, 1.0 / floor, 0.0, 0.3 / floor].into_dyn();
    assert_close(&g, &expected, 1e-15, 0.0, "f64 gradient");

    let (v32, g32) = loss
        .value_and_grad(&p.mapv(|v| v as f32).into_dyn(), &t.mapv(|v| v as f32).into_dyn())
        .unwrap();
    assert!((v32 - 260.0).abs() < 1e-3, "f32 value {v32}");
    assert!(g32.iter().all(|g| g.is_finite()), "f32 gradient {g32}");
    assert_eq!(g32[1], -1.0 / 1e-12_f32);

    for (p, t) in [(0.0_f64, 1.0_f64), (1.0, 0.0), (0.0, 0.3), (1.0, 0.7)] {
        let (p, t) = (array![p].into_dyn(), array![t].into_dyn());
        let (v, g) = tapeloss::losses::value_and_grad_on_tape(&loss, &p, &t).unwrap();
        assert!(
            v.is_finite() && g.iter().all(|g| g.is_finite()),
            "tape at p = {p}, t = {t}: {v}, {g}"
        );
    }
}

/// Logits of ±1e4: finite loss and gradient in f32 and f64, by hand: the
/// confidently wrong side costs |x|·(weight), the right side nothing.
#[test]
fn huge_logits_are_finite() {
    let x = array![1e4, 1e4, -1e4, -1e4, 1e4];
    let t = array![1.0, 0.0, 1.0, 0.0, 0.5];
    let loss = BinaryCrossEntropyLoss::with_logits()
        .with_pos_weight(2.0)
        .with_reduction(Reduction::Sum);
    let (v, g) = loss
        .value_and_grad(&x.clone().into_dyn(), &t.clone().into_dyn())
        .unwrap();
    assert_eq!(v, 0.0 + 1e4 + 2.0 * 1e4 + 0.0 + 0.5 * 1e4);
    assert_eq!(g, array![0.0, 1.0, -2.0, 0.0, 0.5].into_dyn());
    let (v32, g32) = loss
        .value_and_grad(&x.mapv(|v| v as f32).into_dyn(), &t.mapv(|v| v as f32).into_dyn())
        .unwrap();
    assert_eq!(v32, 3.5e4);
    assert_eq!(g32, array![0.0_f32, 1.0, -2.0, 0.0, 0.5].into_dyn());
    let (tv, tg) = tapeloss::losses::value_and_grad_on_tape(&loss, &x.into_dyn(), &t.into_dyn()).unwrap();
    assert_eq!((tv, tg), (v, g));
}

/// Where the target agrees with a confident logit, the slope is tiny and
/// PyTorch's σ(x) − t loses it to cancellation; here it is the exact
/// −w·σ(−x) (and the loss w·softplus(−x)), worked by hand, on the closed
/// form and on the tape (whose linear part once sent `(1 − 2σ) − 1` back and
/// lost σ below half an ulp of 1), in `f64` and `f32`.
#[test]
fn confident_logits_keep_full_precision() {
    let sigma = |z: f64| 1.0 / (1.0 + (-z).exp());
    for w in [3.0, 1.0] {
        let loss = match w {
            1.0 => BinaryCrossEntropyLoss::with_logits(),
            _ => BinaryCrossEntropyLoss::with_logits().with_pos_weight(w),
        };
        for x in [20.0, 30.0, 40.0] {
            for (logit, target, slope, value) in [
                (x, 1.0, -w * sigma(-x), w * (-x).exp().ln_1p()),
                (-x, 0.0, sigma(-x), (-x).exp().ln_1p()),
            ] {
                let (p, t) = (array![logit].into_dyn(), array![target].into_dyn());
                let closed = loss.value_and_grad(&p, &t).unwrap();
                let tape = tapeloss::losses::value_and_grad_on_tape(&loss, &p, &t).unwrap();
                for ((v, g), route) in [(closed, "closed"), (tape, "tape")] {
                    let at = format!("{route}, w = {w}, x = {logit}");
                    assert_close_scalar(g[0], slope, 1e-14, 0.0, &format!("slope, {at}"));
                    assert_close_scalar(v, value, 1e-14, 0.0, &format!("value, {at}"));
                }
                // f32 from x = 18, where σ(−x) is below half an ulp of 1.
                let (p32, t32) = (p.mapv(|v| v as f32 * 0.9), t.mapv(|v| v as f32));
                let slope32 = if target == 1.0 {
                    -w * sigma(-0.9 * x)
                } else {
                    sigma(-0.9 * x)
                };
                let closed = loss.value_and_grad(&p32, &t32).unwrap();
                let tape = tapeloss::losses::value_and_grad_on_tape(&loss, &p32, &t32).unwrap();
                for ((_, g), route) in [(closed, "closed"), (tape, "tape")] {
                    let at = format!("f32 slope, {route}, w = {w}, x = {}", 0.9 * logit);
                    assert_close_scalar(f64::from(g[0]), slope32, 1e-5, 0.0, &at);
                }
            }
        }
    }
}

#[test]
fn out_of_range_inputs_are_errors() {
    // Smoke checks only; tests/errors.rs covers every case.
    let t = array![0.0, 1.0].into_dyn();
    let err = BinaryCrossEntropyLoss::new()
        .forward(&array![0.5, 1.5].into_dyn(), &t)
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput { arg: "predictions", index, .. } if index == &[1]),
        "{err}"
    );
    let err = BinaryCrossEntropyLoss::new()
        .forward(&array![0.5, f64::NAN].into_dyn(), &t)
        .unwrap_err();
    assert!(matches!(&err, Error::NonFinite { arg: "predictions", .. }), "{err}");
    let err = BinaryCrossEntropyLoss::with_logits()
        .backward(&array![0.5, 9.0].into_dyn(), &array![-0.1, 1.0].into_dyn())
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidTarget { index, .. } if index == &[0]),
        "{err}"
    );
    let err = BinaryCrossEntropyLoss::with_logits()
        .with_pos_weight(-1.0)
        .forward(&t, &t)
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidParameter { name, .. } if name == "pos_weight"),
        "{err}"
    );
}
