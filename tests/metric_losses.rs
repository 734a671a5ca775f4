//! Contrastive and triplet losses: PyTorch fixtures, gradients by three
//! derivations, f32 against f64, sharding, identical points, the seed's example
//! worked by hand, and a few error smoke tests.

mod common;

use common::{
    GradAtol, Rng, assert_close, assert_close_scalar, assert_gradients_agree, assert_matches_fixture, fixtures,
    opt_f64, reduction,
};
use tapeloss::ndarray::{Array, ArrayD, Axis, IxDyn, array, concatenate};
use tapeloss::{ContrastiveLoss, Error, Loss, Reduction, TripletLoss};

/// Distances of row `i`'s parts `u` and `v` in a `[N, k, D]` array, by a plain loop.
fn distance(x: &ArrayD<f64>, i: usize, u: usize, v: usize) -> f64 {
    let d = x.shape()[2];
    (0..d)
        .map(|k| (x[[i, u, k]] - x[[i, v, k]]).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// Seeded `[N, 2, D]` pairs with every distance and every |m − d| at least `gap`.
fn pairs_away_from_kinks(rng: &mut Rng, n: usize, d: usize, margin: f64, gap: f64) -> ArrayD<f64> {
    loop {
        let x = rng.array(&[n, 2, d], -1.0, 1.0);
        if (0..n).all(|i| {
            let dist = distance(&x, i, 0, 1);
            dist > gap && (margin - dist).abs() > gap
        }) {
            return x;
        }
    }
}

/// Seeded `[N, 3, D]` triplets with both distances and |d⁺ − d⁻ + m| at least
/// `gap`, and (for N ≥ 4) both sides of the hinge present.
fn triplets_away_from_kinks(rng: &mut Rng, n: usize, d: usize, margin: f64, gap: f64) -> ArrayD<f64> {
    loop {
        let x = rng.array(&[n, 3, d], -1.0, 1.0);
        let hinges: Vec<f64> = (0..n)
            .map(|i| distance(&x, i, 0, 1) - distance(&x, i, 0, 2) + margin)
            .collect();
        let far = (0..n).all(|i| distance(&x, i, 0, 1) > gap && distance(&x, i, 0, 2) > gap && hinges[i].abs() > gap);
        let both_sides = n < 4 || (hinges.iter().any(|&h| h > 0.0) && hinges.iter().any(|&h| h < 0.0));
        if far && both_sides {
            return x;
        }
    }
}

fn to_f32(x: &ArrayD<f64>) -> ArrayD<f32> {
    x.mapv(|v| v as f32)
}

fn to_f64(x: &ArrayD<f32>) -> ArrayD<f64> {
    x.mapv(f64::from)
}

// ---------------------------------------------------------------- PyTorch

/// The tape's gradients go through `norm_axis`, whose rounding differs from
/// the closed forms' at gradients near 0.
const METRIC_ATOL: GradAtol = GradAtol {
    closed: 1e-300,
    tape: Some(1e-15),
};

#[test]
fn contrastive_matches_pytorch_definition() {
    let cases: Vec<_> = fixtures("metric")
        .into_iter()
        .filter(|c| c.loss == "contrastive")
        .collect();
    assert!(cases.len() >= 30, "too few contrastive fixtures: {}", cases.len());
    for case in cases {
        let margin = opt_f64(&case.options, "margin").expect("margin");
        let loss = ContrastiveLoss::new(margin).with_reduction(reduction(&case.options));
        assert_matches_fixture(&loss, &case, METRIC_ATOL);
    }
}

#[test]
fn triplet_matches_pytorch() {
    let cases: Vec<_> = fixtures("metric").into_iter().filter(|c| c.loss == "triplet").collect();
    assert!(cases.len() >= 20, "too few triplet fixtures: {}", cases.len());
    assert!(cases.iter().any(|c| c.name.starts_with("triplet_builtin_")));
    assert!(cases.iter().any(|c| c.targets.iter().any(|t| t.is_nan())));
    for case in cases {
        let margin = opt_f64(&case.options, "margin").expect("margin");
        let loss = TripletLoss::new(margin).with_reduction(reduction(&case.options));
        assert_matches_fixture(&loss, &case, METRIC_ATOL);
    }
}

// ---------------------------------------------------------------- three derivations

#[test]
fn contrastive_gradients_agree() {
    let mut rng = Rng::new(31);
    for (n, d) in [(1, 1), (4, 3), (6, 9)] {
        for margin in [0.0, 0.5, 2.0] {
            let x = pairs_away_from_kinks(&mut rng, n, d, margin, 1e-3);
            let hard = Array::from_shape_fn(n, |i| if i % 2 == 0 { 1.0 } else { 0.0 }).into_dyn();
            let soft = rng.array(&[n], 0.05, 0.95);
            for (labels, y) in [("hard", hard), ("soft", soft)] {
                for layout in [vec![n], vec![n, 1]] {
                    let y = y.clone().into_shape_with_order(IxDyn(&layout)).unwrap();
                    for r in [Reduction::Mean, Reduction::Sum] {
                        assert_gradients_agree(
                            &ContrastiveLoss::new(margin).with_reduction(r),
                            &x,
                            &y,
                            &format!("contrastive [{n}, 2, {d}] m={margin} {labels} targets {layout:?} {r:?}"),
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn triplet_gradients_agree() {
    let mut rng = Rng::new(32);
    let ignored = ArrayD::zeros(IxDyn(&[1]));
    for (n, d) in [(1, 2), (5, 3), (8, 7)] {
        for margin in [0.0, 0.5, 1.0] {
            let x = triplets_away_from_kinks(&mut rng, n, d, margin, 1e-3);
            for r in [Reduction::Mean, Reduction::Sum] {
                let loss = TripletLoss::new(margin).with_reduction(r);
                let what = format!("triplet [{n}, 3, {d}] m={margin} {r:?}");
                assert_gradients_agree(&loss, &x, &ignored, &what);
                if n == 1 {
                    // The same triplet as [3, D].
                    let one = x.clone().into_shape_with_order(IxDyn(&[3, d])).unwrap();
                    assert_gradients_agree(&loss, &one, &ignored, &format!("{what} as [3, {d}]"));
                }
            }
        }
    }
}

// ---------------------------------------------------------------- f32 against f64

/// f32 value and gradient within 1e-5 (relative to the value, and to the
/// largest gradient element) of f64 on the same, f32-representable inputs.
fn assert_f32_matches_f64<L: Loss<f32> + Loss<f64>>(loss: &L, x: &ArrayD<f64>, t: &ArrayD<f64>, what: &str) {
    let (x32, t32) = (to_f32(x), to_f32(t));
    let (v64, g64) = Loss::<f64>::value_and_grad(loss, &to_f64(&x32), &to_f64(&t32)).unwrap();
    let (v32, g32) = Loss::<f32>::value_and_grad(loss, &x32, &t32).unwrap();
    assert_close_scalar(f64::from(v32), v64, 1e-5, 0.0, &format!("{what}: f32 value"));
    let scale = g64.iter().fold(0.0_f64, |m, g| m.max(g.abs()));
    assert_close(
        &to_f64(&g32),
        &g64,
        1e-5,
        1e-5 * scale,
        &format!("{what}: f32 gradient"),
    );
}

#[test]
fn f32_agrees_with_f64() {
    let mut rng = Rng::new(33);
    for (n, d) in [(7, 5), (512, 128)] {
        let pairs = pairs_away_from_kinks(&mut rng, n, d, 6.0, 1e-2);
        let labels = rng.array(&[n], 0.0, 1.0);
        let triplets = triplets_away_from_kinks(&mut rng, n, d, 1.0, 1e-2);
        for r in [Reduction::Mean, Reduction::Sum] {
            let what = format!("[{n}, _, {d}] {r:?}");
            assert_f32_matches_f64(
                &ContrastiveLoss::new(6.0).with_reduction(r),
                &pairs,
                &labels,
                &format!("contrastive {what}"),
            );
            assert_f32_matches_f64(
                &TripletLoss::new(1.0).with_reduction(r),
                &triplets,
                &labels,
                &format!("triplet {what}"),
            );
        }
    }
}

// ---------------------------------------------------------------- sharding

/// Shards along the batch axis, each with `Reduction::Sum`, add up to the whole
/// batch's sum: the value to rounding, the gradient exactly (rows are independent).
fn assert_shards_add_up<L: Loss<f64>>(loss: &L, x: &ArrayD<f64>, t: &ArrayD<f64>, bounds: &[usize], what: &str) {
    let (whole_value, whole_grad) = loss.value_and_grad(x, t).unwrap();
    let mut value = 0.0;
    let mut grads = Vec::new();
    for w in bounds.windows(2) {
        let xs = x.slice_axis(Axis(0), (w[0]..w[1]).into()).to_owned();
        let ts = t.slice_axis(Axis(0), (w[0]..w[1]).into()).to_owned();
        let (v, g) = loss.value_and_grad(&xs, &ts).unwrap();
        value += v;
        grads.push(g);
    }
    let views: Vec<_> = grads.iter().map(|g| g.view()).collect();
    let grad = concatenate(Axis(0), &views).unwrap();
    assert_close_scalar(value, whole_value, 1e-12, 0.0, &format!("{what}: value"));
    assert_eq!(grad, whole_grad, "{what}: gradient");
}

#[test]
fn shards_add_up_with_sum() {
    let mut rng = Rng::new(34);
    let n = 23;
    let bounds = [0, 5, 6, 17, 23];
    let pairs = rng.array(&[n, 2, 6], -1.0, 1.0);
    let labels = rng.array(&[n, 1], 0.0, 1.0);
    let contrastive = ContrastiveLoss::new(1.5).with_reduction(Reduction::Sum);
    assert_shards_add_up(&contrastive, &pairs, &labels, &bounds, "contrastive");
    let triplets = rng.array(&[n, 3, 6], -1.0, 1.0);
    let triplet = TripletLoss::new(0.5).with_reduction(Reduction::Sum);
    assert_shards_add_up(&triplet, &triplets, &labels, &bounds, "triplet");
}

// ---------------------------------------------------------------- identical points

/// Closed form and tape, in f32 and f64: the value, and a gradient that is
/// finite and equal to `expected` (zero for the d = 0 parts).
fn assert_at_zero_distance<L: Loss<f32> + Loss<f64>>(
    loss: &L,
    x: &ArrayD<f64>,
    t: &ArrayD<f64>,
    value: f64,
    expected: &ArrayD<f64>,
    what: &str,
) {
    let (v, g) = Loss::<f64>::value_and_grad(loss, x, t).unwrap();
    assert_close_scalar(v, value, 1e-12, 1e-15, &format!("{what}: f64 value"));
    assert_close(&g, expected, 1e-12, 1e-15, &format!("{what}: f64 gradient"));
    let (v, g) = tapeloss::losses::value_and_grad_on_tape(loss, x, t).unwrap();
    assert!(
        g.iter().all(|g| g.is_finite()),
        "{what}: tape f64 gradient not finite: {g}"
    );
    assert_close_scalar(v, value, 1e-12, 1e-15, &format!("{what}: tape f64 value"));
    assert_close(&g, expected, 1e-12, 1e-15, &format!("{what}: tape f64 gradient"));
    let (x32, t32) = (to_f32(x), to_f32(t));
    for (v, g) in [
        Loss::<f32>::value_and_grad(loss, &x32, &t32).unwrap(),
        tapeloss::losses::value_and_grad_on_tape(loss, &x32, &t32).unwrap(),
    ] {
        assert!(g.iter().all(|g| g.is_finite()), "{what}: f32 gradient not finite: {g}");
        assert_close_scalar(f64::from(v), value, 1e-6, 1e-7, &format!("{what}: f32 value"));
        assert_close(&to_f64(&g), expected, 1e-6, 1e-7, &format!("{what}: f32 gradient"));
    }
}

#[test]
fn contrastive_identical_points_have_finite_zero_gradients() {
    // Pair 0 identical (dissimilar, hard), pair 1 identical (soft 0.25), pair 2
    // identical (similar), pair 3 apart (dissimilar, inside the margin).
    let x = array![
        [[0.3, -0.2], [0.3, -0.2]],
        [[1.0, 1.0], [1.0, 1.0]],
        [[-0.5, 0.0], [-0.5, 0.0]],
        [[0.0, 0.0], [0.0, 0.5]],
    ]
    .into_dyn();
    let y = array![0.0, 0.25, 1.0, 0.0].into_dyn();
    let m: f64 = 2.0;
    // Terms: m², 0.75·m², 0, (m − 0.5)²; mean over 4.
    let value = (m * m + 0.75 * m * m + (m - 0.5).powi(2)) / 4.0;
    // Only pair 3 moves: ∂/∂x₁ = ¼·(−2)(m − 0.5)/0.5·(x₁ − x₂) with x₁ − x₂ = (0, −0.5).
    let mut expected = ArrayD::zeros(IxDyn(&[4, 2, 2]));
    expected[[3, 0, 1]] = 0.25 * -2.0 * (m - 0.5) / 0.5 * -0.5;
    expected[[3, 1, 1]] = -expected[[3, 0, 1]];
    assert_at_zero_distance(&ContrastiveLoss::new(m), &x, &y, value, &expected, "contrastive");
}

#[test]
fn triplet_identical_points_have_finite_zero_gradients() {
    let ignored = ArrayD::zeros(IxDyn(&[1]));
    let m: f64 = 1.0;
    // a = p = n: loss m, no direction anywhere.
    let all_same = array![[[0.5, -1.0, 2.0], [0.5, -1.0, 2.0], [0.5, -1.0, 2.0]]].into_dyn();
    let zeros = ArrayD::zeros(IxDyn(&[1, 3, 3]));
    assert_at_zero_distance(&TripletLoss::new(m), &all_same, &ignored, m, &zeros, "a = p = n");

    // a = p, n at distance 0.6 (active): only the negative's part moves,
    // ∂/∂n = (a − n)/d⁻, ∂/∂a = −∂/∂n, ∂/∂p = 0.
    let a_is_p = array![[[0.0, 0.0], [0.0, 0.0], [0.6, 0.0]]].into_dyn();
    let grad = array![[[1.0, 0.0], [0.0, 0.0], [-1.0, 0.0]]].into_dyn();
    assert_at_zero_distance(&TripletLoss::new(m), &a_is_p, &ignored, 1.0 - 0.6, &grad, "a = p");

    // a = n, p at distance 0.8 (always active): ∂/∂p = −(a − p)/d⁺,
    // ∂/∂a = −∂/∂p, ∂/∂n = 0.
    let a_is_n = array![[[0.0, 0.0], [0.0, 0.8], [0.0, 0.0]]].into_dyn();
    let grad = array![[[0.0, -1.0], [0.0, 1.0], [0.0, 0.0]]].into_dyn();
    assert_at_zero_distance(&TripletLoss::new(m), &a_is_n, &ignored, 0.8 + 1.0, &grad, "a = n");
}

// ---------------------------------------------------------------- the seed's example

#[test]
fn seed_triplet_example_worked_by_hand() {
    // anchor [1, 0, 0], positive [0.9, 0.1, 0], negative [0, 0, 1]:
    // d⁺ = √(0.1² + 0.1²) = √0.02, d⁻ = √(1 + 1) = √2.
    let embeddings = Array::from_shape_vec((3, 3), vec![1.0, 0.0, 0.0, 0.9, 0.1, 0.0, 0.0, 0.0, 1.0])
        .unwrap()
        .into_dyn();
    let targets = Array::zeros((3,)).into_dyn();
    let (dp, dn) = (0.02_f64.sqrt(), 2.0_f64.sqrt());

    // Margin 1: √0.02 − √2 + 1 ≈ −0.27 < 0, so the loss and its gradient are 0.
    let (value, grad) = TripletLoss::new(1.0).value_and_grad(&embeddings, &targets).unwrap();
    assert_eq!(value, (dp - dn + 1.0).max(0.0));
    assert_eq!(value, 0.0);
    assert!(grad.iter().all(|&g| g == 0.0));

    // Margin 2 makes it active: value √0.02 − √2 + 2, and
    // ∂/∂p = −(a − p)/d⁺ = −(0.1, −0.1, 0)/√0.02, ∂/∂n = (a − n)/d⁻ = (1, 0, −1)/√2,
    // ∂/∂a = −∂/∂p − ∂/∂n.
    let (value, grad) = TripletLoss::new(2.0).value_and_grad(&embeddings, &targets).unwrap();
    assert_close_scalar(value, dp - dn + 2.0, 1e-15, 0.0, "seed, margin 2");
    let gp = [-0.1 / dp, 0.1 / dp, 0.0];
    let gn = [1.0 / dn, 0.0, -1.0 / dn];
    let expected = Array::from_shape_fn((3, 3), |(row, k)| match row {
        0 => -gp[k] - gn[k],
        1 => gp[k],
        _ => gn[k],
    })
    .into_dyn();
    assert_close(&grad, &expected, 1e-14, 1e-15, "seed gradient, margin 2");

    // The same in f32.
    let value32 = TripletLoss::new(2.0)
        .forward(&to_f32(&embeddings), &ArrayD::<f32>::zeros(IxDyn(&[3])))
        .unwrap();
    assert_close_scalar(f64::from(value32), dp - dn + 2.0, 1e-6, 0.0, "seed, margin 2, f32");
}

// ---------------------------------------------------------------- buffers and layouts

#[test]
fn into_overwrites_the_buffer_and_layouts_do_not_matter() {
    let mut rng = Rng::new(35);
    let triplets = rng.array(&[6, 3, 4], -1.0, 1.0);
    let pairs = rng.array(&[6, 2, 4], -1.0, 1.0);
    let labels = rng.array(&[6], 0.0, 1.0);
    let triplet = TripletLoss::new(0.3);
    let contrastive = ContrastiveLoss::new(1.0);

    // A buffer full of NaN is overwritten everywhere, inactive triplets included.
    for (loss, x, t) in [
        (&triplet as &dyn Loss<f64>, &triplets, &labels),
        (&contrastive as &dyn Loss<f64>, &pairs, &labels),
    ] {
        let (value, grad) = loss.value_and_grad(x, t).unwrap();
        let mut buffer = ArrayD::from_elem(x.raw_dim(), f64::NAN);
        assert_eq!(loss.value_and_grad_into(x, t, &mut buffer).unwrap(), value);
        assert_eq!(buffer, grad);
    }

    // A non-standard layout gives the same numbers: the triplets stored [D, 3, N]
    // and viewed back as [N, 3, D].
    let stored = triplets.clone().reversed_axes().as_standard_layout().into_owned();
    let view = stored.reversed_axes();
    assert!(!view.is_standard_layout());
    assert_eq!(
        triplet.value_and_grad(&view, &labels).unwrap(),
        triplet.value_and_grad(&triplets, &labels).unwrap()
    );
}

// ---------------------------------------------------------------- error smoke tests

#[test]
fn errors_name_the_argument() {
    let labels = ArrayD::<f64>::zeros(IxDyn(&[4]));

    let err = ContrastiveLoss::new(1.0)
        .forward(&ArrayD::zeros(IxDyn(&[4, 3, 2])), &labels)
        .unwrap_err();
    assert!(matches!(err, Error::InvalidShape { arg: "predictions", .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("predictions") && msg.contains("[4, 3, 2]") && msg.contains("[N, 2, D]"),
        "{msg}"
    );

    let err = ContrastiveLoss::new(1.0)
        .backward(&ArrayD::<f64>::zeros(IxDyn(&[4, 2, 2])), &ArrayD::zeros(IxDyn(&[3])))
        .unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err:?}");

    let bad = array![0.0, 1.0, 1.5, 0.0].into_dyn();
    let err = ContrastiveLoss::new(1.0)
        .value_and_grad(&ArrayD::zeros(IxDyn(&[4, 2, 2])), &bad)
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidTarget { index, value, .. } if index == &[2] && *value == 1.5),
        "{err:?}"
    );

    let nan = array![0.0, f64::NAN, 1.0, 0.0].into_dyn();
    let err = ContrastiveLoss::new(1.0)
        .forward(&ArrayD::zeros(IxDyn(&[4, 2, 2])), &nan)
        .unwrap_err();
    // A NaN label is a non-finite target, as for every other loss.
    assert!(
        matches!(&err, Error::NonFinite { arg: "targets", index, .. } if index == &[1]),
        "{err:?}"
    );

    let err = ContrastiveLoss::new(1.0)
        .forward(&ArrayD::zeros(IxDyn(&[4, 2, 0])), &labels)
        .unwrap_err();
    assert!(matches!(err, Error::Empty { arg: "predictions", .. }), "{err:?}");

    let err = TripletLoss::new(1.0)
        .forward(&ArrayD::zeros(IxDyn(&[2, 4, 3])), &labels)
        .unwrap_err();
    assert!(err.to_string().contains("[N, 3, D] or [3, D]"), "{err}");
    let err = TripletLoss::new(1.0)
        .forward(&ArrayD::zeros(IxDyn(&[0, 3, 3])), &labels)
        .unwrap_err();
    assert!(matches!(err, Error::Empty { .. }), "{err:?}");

    // Every computing method reports a bad margin.
    for margin in [-1.0, f64::NAN, f64::INFINITY] {
        let (x, t) = (ArrayD::<f64>::zeros(IxDyn(&[1, 3, 2])), ArrayD::zeros(IxDyn(&[1])));
        let loss = TripletLoss::new(margin);
        let tape = tapeloss::Tape::new();
        let results = [
            loss.forward(&x, &t).err(),
            loss.backward(&x, &t).err(),
            loss.value_and_grad(&x, &t).err(),
            loss.value_and_grad_into(&x, &t, &mut x.clone()).err(),
            loss.record(&tape, tape.var(x.clone()), &t).err(),
        ];
        for err in results {
            assert!(
                matches!(&err, Some(Error::InvalidParameter { name, .. }) if name == "margin"),
                "margin {margin}: {err:?}"
            );
        }
        let pairs = ArrayD::<f64>::zeros(IxDyn(&[1, 2, 2]));
        let err = ContrastiveLoss::new(margin).value_and_grad(&pairs, &t).unwrap_err();
        assert!(matches!(err, Error::InvalidParameter { .. }), "{err:?}");
    }

    // A non-finite embedding is named, even where the loss term alone would hide
    // it (a dissimilar pair infinitely far apart has term 0 but a NaN gradient).
    let mut x = ArrayD::<f64>::zeros(IxDyn(&[2, 2, 3]));
    x[[1, 0, 2]] = f64::INFINITY;
    let err = ContrastiveLoss::new(1.0)
        .value_and_grad(&x, &ArrayD::zeros(IxDyn(&[2])))
        .unwrap_err();
    assert!(
        matches!(&err, Error::NonFinite { arg: "predictions", index, .. } if index == &[1, 0, 2]),
        "{err:?}"
    );
    // Ignored triplet targets are never blamed.
    let mut x = ArrayD::<f64>::zeros(IxDyn(&[2, 3, 3]));
    x[[0, 2, 1]] = f64::NAN;
    let err = TripletLoss::new(1.0)
        .forward(&x, &array![f64::NAN].into_dyn())
        .unwrap_err();
    assert!(
        matches!(&err, Error::NonFinite { arg: "predictions", index, .. } if index == &[0, 2, 1]),
        "{err:?}"
    );
}
