//! Cross-entropy: PyTorch fixtures for every option and layout, gradients by
//! three derivations, f32 against the f64 reference, sharding, huge and
//! masking logits, and a few error smoke tests (tests/errors.rs has the rest).

mod common;

use common::{
    GradAtol, Rng, assert_close, assert_close_scalar, assert_gradients_agree, assert_into_agrees,
    assert_matches_fixture, fixtures, opt_f64,
};
use tapeloss::ndarray::{ArrayD, Axis, IxDyn, Slice};
use tapeloss::{CrossEntropyLoss, Error, Loss, Reduction, Tape};

fn loss_from(options: &serde_json::Value) -> CrossEntropyLoss {
    let mut loss = CrossEntropyLoss::new().with_reduction(match options["reduction"].as_str() {
        Some("sum") => Reduction::Sum,
        _ => Reduction::Mean,
    });
    if let Some(eps) = opt_f64(options, "label_smoothing") {
        loss = loss.with_label_smoothing(eps);
    }
    if let Some(w) = options.get("class_weights").and_then(|w| w.as_array()) {
        loss = loss.with_class_weights(w.iter().map(|v| v.as_f64().unwrap()).collect());
    }
    if let Some(i) = options.get("ignore_index").and_then(|i| i.as_u64()) {
        loss = loss.with_ignore_index(i as usize);
    }
    loss
}

fn to_f32(a: &ArrayD<f64>) -> ArrayD<f32> {
    a.mapv(|v| v as f32)
}

fn to_f64(a: &ArrayD<f32>) -> ArrayD<f64> {
    a.mapv(f64::from)
}

/// Gradients near 0 come out of `A·softmax − a`, a difference: allow for the
/// rounding of its terms.
const GRAD_ATOL: f64 = 1e-15;

#[test]
fn matches_pytorch_in_f64() {
    for case in fixtures("cross_entropy") {
        let loss = loss_from(&case.options);
        let atol = GradAtol {
            closed: GRAD_ATOL,
            tape: Some(GRAD_ATOL),
        };
        assert_matches_fixture(&loss, &case, atol);
        assert_into_agrees(&loss, &case);
    }
}

#[test]
fn f32_lies_within_1e_5_of_the_f64_reference() {
    let well_conditioned = |name: &str| !name.contains("huge") && !name.contains("masked");
    for case in fixtures("cross_entropy")
        .into_iter()
        .filter(|c| well_conditioned(&c.name))
    {
        let loss = loss_from(&case.options);
        let (value, grad) = loss
            .value_and_grad(&to_f32(&case.predictions), &to_f32(&case.targets))
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_close_scalar(f64::from(value), case.value, 1e-5, 0.0, &case.name);
        let largest = case.grad.iter().fold(0.0_f64, |m, g| m.max(g.abs()));
        assert_close(&to_f64(&grad), &case.grad, 1e-5, 1e-6 * largest, &case.name);
    }
}

/// Random logits and targets of either mode for a shape; `ignore` marks some
/// class-index targets as ignored.
fn inputs(rng: &mut Rng, shape: &[usize], probabilities: bool, ignore: Option<usize>) -> (ArrayD<f64>, ArrayD<f64>) {
    let logits = rng.array(shape, -3.0, 3.0);
    let axis = usize::from(shape.len() > 1);
    let classes = shape[axis];
    if probabilities {
        let mut t = rng.array(shape, 0.0, 1.0);
        let sums = t.sum_axis(Axis(axis)).insert_axis(Axis(axis));
        t /= &sums;
        return (logits, t);
    }
    let mut index_shape = shape.to_vec();
    index_shape.remove(axis);
    let mut k = 0;
    let t = ArrayD::from_shape_simple_fn(IxDyn(&index_shape), || {
        k += 1;
        match ignore {
            Some(i) if k % 3 == 0 => i as f64,
            _ => rng.below(classes) as f64,
        }
    });
    (logits, t)
}

/// Every option, alone and together, for a number of classes.
fn option_sets(classes: usize, probabilities: bool) -> Vec<(String, CrossEntropyLoss)> {
    let weights: Vec<f64> = (0..classes).map(|c| 0.25 + c as f64 * 0.5).collect();
    let mut out = vec![
        ("plain".to_string(), CrossEntropyLoss::new()),
        (
            "weights".into(),
            CrossEntropyLoss::new().with_class_weights(weights.clone()),
        ),
        ("smoothing".into(), CrossEntropyLoss::new().with_label_smoothing(0.2)),
        (
            "weights+smoothing".into(),
            CrossEntropyLoss::new()
                .with_class_weights(weights.clone())
                .with_label_smoothing(0.3),
        ),
    ];
    if !probabilities {
        out.push(("ignore".into(), CrossEntropyLoss::new().with_ignore_index(1)));
        out.push((
            "ignore+weights+smoothing".into(),
            CrossEntropyLoss::new()
                .with_ignore_index(1)
                .with_class_weights(weights)
                .with_label_smoothing(0.1),
        ));
    }
    out
}

#[test]
fn gradients_agree_for_every_option_and_layout() {
    let mut rng = Rng::new(7);
    for shape in [&[6, 11][..], &[3, 4, 5], &[2, 3, 2, 2], &[5]] {
        for probabilities in [false, true] {
            let ignore = (!probabilities).then_some(1);
            let (x, t) = inputs(&mut rng, shape, probabilities, ignore);
            let classes = shape[usize::from(shape.len() > 1)];
            for (name, loss) in option_sets(classes, probabilities) {
                for r in [Reduction::Mean, Reduction::Sum] {
                    let loss = loss.clone().with_reduction(r);
                    // A single sample with its target ignored has nothing to average.
                    if shape.len() == 1 && name.starts_with("ignore") && t.iter().all(|&v| v == 1.0) {
                        continue;
                    }
                    let what = format!("{shape:?} probabilities={probabilities} {name} {r:?}");
                    assert_gradients_agree(&loss, &x, &t, &what);
                }
            }
        }
    }
}

#[test]
fn shards_taken_with_sum_add_up() {
    let mut rng = Rng::new(11);
    for shape in [&[12, 5][..], &[6, 3, 4]] {
        for probabilities in [false, true] {
            let ignore = (!probabilities).then_some(2);
            let (x, mut t) = inputs(&mut rng, shape, probabilities, ignore);
            if !probabilities {
                // A shard made only of ignored targets (padding) adds 0.
                t.slice_axis_mut(Axis(0), Slice::from(0..2)).fill(2.0);
            }
            for (name, loss) in option_sets(shape[1], probabilities) {
                let loss = loss.with_reduction(Reduction::Sum);
                let (whole, whole_grad) = loss.value_and_grad(&x, &t).unwrap();
                let mut total = 0.0;
                let mut grads = Vec::new();
                for range in [0..2, 2..5, 5..shape[0]] {
                    let xs = x.slice_axis(Axis(0), Slice::from(range.clone())).to_owned();
                    let ts = t.slice_axis(Axis(0), Slice::from(range)).to_owned();
                    let (v, g) = loss.value_and_grad(&xs, &ts).unwrap();
                    total += v;
                    grads.push(g);
                }
                let views: Vec<_> = grads.iter().map(|g| g.view()).collect();
                let joined = tapeloss::ndarray::concatenate(Axis(0), &views).unwrap();
                let what = format!("{shape:?} probabilities={probabilities} {name}");
                assert_close_scalar(total, whole, 1e-12, 0.0, &what);
                assert_close(&joined, &whole_grad, 1e-12, 1e-300, &what);
            }
        }
    }
}

#[test]
fn huge_logits_give_finite_values_and_gradients() {
    let x = [[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4 - 3.0], [1e4, 1e4, -1e4]];
    let logits = ArrayD::from_shape_vec(IxDyn(&[3, 3]), x.iter().flatten().copied().collect()).unwrap();
    let y = ArrayD::from_shape_vec(IxDyn(&[3]), vec![1.0, 2.0, 0.0]).unwrap();
    let soft = ArrayD::from_elem(IxDyn(&[3, 3]), 1.0 / 3.0);
    // By hand: 2e4, ln(1 + e³) − 3 + 3 = ln(1 + e³), ln 2.
    let by_hand = (2e4 + (1.0 + 3f64.exp()).ln() + 2f64.ln()) / 3.0;
    for (name, loss) in option_sets(3, false) {
        for (indices, targets) in [(true, &y), (false, &soft)] {
            if !indices && name.starts_with("ignore") {
                continue;
            }
            let (v64, g64) = loss.value_and_grad(&logits, targets).unwrap();
            let (v32, g32) = loss.value_and_grad(&to_f32(&logits), &to_f32(targets)).unwrap();
            assert!(v64.is_finite() && g64.iter().all(|g| g.is_finite()), "{name} f64");
            assert!(v32.is_finite() && g32.iter().all(|g| g.is_finite()), "{name} f32");
            assert_close_scalar(f64::from(v32), v64, 1e-6, 0.0, &format!("{name}: f32 vs f64"));
            if name == "plain" && indices {
                assert_close_scalar(v64, by_hand, 1e-15, 0.0, "by hand");
            }
            let (tv, tg) = tapeloss::losses::value_and_grad_on_tape(&loss, &logits, targets).unwrap();
            assert_close_scalar(tv, v64, 1e-12, 0.0, &format!("{name}: tape"));
            assert_close(&tg, &g64, 1e-12, 1e-13, &format!("{name}: tape"));
            // The tape in f32 too: its log_softmax must not round x − logsumexp
            // at the logsumexp's size (an ulp of 1e-3 here).
            let (tv32, tg32) =
                tapeloss::losses::value_and_grad_on_tape(&loss, &to_f32(&logits), &to_f32(targets)).unwrap();
            assert_close_scalar(f64::from(tv32), v64, 1e-6, 0.0, &format!("{name}: f32 tape"));
            assert_close(&tg32.mapv(f64::from), &g64, 1e-5, 1e-7, &format!("{name}: f32 tape"));
        }
    }
}

#[test]
fn negative_infinity_masks_a_class() {
    let inf = f64::NEG_INFINITY;
    let logits = ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![1.0, inf, 0.0, inf, 2.0, inf]).unwrap();
    let y = ArrayD::from_shape_vec(IxDyn(&[2]), vec![0.0, 1.0]).unwrap();
    let probs = ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![0.25, 0.0, 0.75, 0.0, 1.0, 0.0]).unwrap();
    // Sample 1 has a single class left: its loss is 0.
    let p0 = 1.0 / (1.0 + (-1f64).exp());
    let by_hand_index = -p0.ln() / 2.0;
    let by_hand_probs = (-0.25 * p0.ln() - 0.75 * (1.0 - p0).ln()) / 2.0;
    for (targets, expected, weights) in [
        (&y, by_hand_index, vec![1.0, 1.0, 1.0]),
        (&probs, by_hand_probs, vec![1.0, 1.0, 1.0]),
        (&probs, by_hand_probs, vec![1.0, 0.0, 1.0]),
    ] {
        let loss = CrossEntropyLoss::new().with_class_weights(weights);
        let (v, g) = loss.value_and_grad(&logits, targets).unwrap();
        assert_close_scalar(v, expected, 1e-15, 0.0, "masked");
        assert!(g.iter().all(|g| g.is_finite()));
        for at in [[0, 1], [1, 0], [1, 2]] {
            assert_eq!(g[at], 0.0, "gradient of a masked class");
        }
        let (v32, g32) = loss.value_and_grad(&to_f32(&logits), &to_f32(targets)).unwrap();
        assert_close_scalar(f64::from(v32), expected, 1e-6, 0.0, "masked f32");
        assert_eq!(g32[[0, 1]], 0.0);
        let (tv, tg) = tapeloss::losses::value_and_grad_on_tape(&loss, &logits, targets).unwrap();
        assert_close_scalar(tv, expected, 1e-15, 0.0, "masked on the tape");
        assert_close(&tg, &g, 1e-14, 1e-300, "masked on the tape");
    }
    // Smoothing gives the masked class a share of the target: the loss is infinite.
    let smoothed = CrossEntropyLoss::new().with_label_smoothing(0.1);
    assert!(matches!(
        smoothed.forward(&logits, &y),
        Err(Error::NonFinite { arg: "predictions", .. })
    ));
}

#[test]
fn any_memory_layout_gives_the_same_numbers() {
    let mut rng = Rng::new(3);
    let (x, t) = inputs(&mut rng, &[7, 4], false, None);
    // The same logits stored column-major, and a column-major gradient buffer.
    let transposed = x.t().as_standard_layout().into_owned().reversed_axes();
    assert!(transposed.as_slice().is_none() && transposed == x);
    let loss = CrossEntropyLoss::new().with_label_smoothing(0.1);
    let (value, grad) = loss.value_and_grad(&x, &t).unwrap();
    let mut buffer = ArrayD::zeros(IxDyn(&[4, 7])).reversed_axes();
    let v = loss.value_and_grad_into(&transposed, &t, &mut buffer).unwrap();
    assert_eq!(v, value);
    assert_eq!(buffer, grad);
}

#[test]
fn a_few_errors_name_what_is_wrong() {
    let x = ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![0.0; 6]).unwrap();
    let y = ArrayD::from_shape_vec(IxDyn(&[2]), vec![1.0, 3.0]).unwrap();
    let loss = CrossEntropyLoss::new();
    match loss.forward(&x, &y) {
        Err(e @ Error::InvalidTarget { .. }) => {
            assert!(matches!(&e, Error::InvalidTarget { index, .. } if index == &vec![1]));
            assert!(e.to_string().contains("< 3"), "{e}");
        }
        other => panic!("expected InvalidTarget, got {other:?}"),
    }
    let all_ignored = ArrayD::from_shape_vec(IxDyn(&[2]), vec![1.0, 1.0]).unwrap();
    let ignoring = CrossEntropyLoss::new().with_ignore_index(1);
    assert!(matches!(
        ignoring.backward(&x, &all_ignored),
        Err(Error::AllTargetsIgnored { ignore_index: 1, .. })
    ));
    let tape = Tape::new();
    assert!(matches!(
        ignoring.record(&tape, tape.var(x.clone()), &all_ignored),
        Err(Error::AllTargetsIgnored { .. })
    ));
    // With Sum, an all-padding batch is a legitimate shard: 0, as in PyTorch.
    let (v, g) = ignoring
        .clone()
        .with_reduction(Reduction::Sum)
        .value_and_grad(&x, &all_ignored)
        .unwrap();
    assert_eq!((v, g.sum()), (0.0, 0.0));

    let wrong = ArrayD::from_shape_vec(IxDyn(&[3]), vec![0.0; 3]).unwrap();
    let e = loss.forward(&x, &wrong).unwrap_err();
    assert!(matches!(&e, Error::ShapeMismatch { lhs, rhs, .. } if lhs == &vec![2, 3] && rhs == &vec![3]));
    assert!(
        e.to_string().contains("class probabilities") && e.to_string().contains("class indices"),
        "{e}"
    );

    let e = CrossEntropyLoss::new()
        .with_label_smoothing(1.5)
        .forward(&x, &y)
        .unwrap_err();
    assert!(
        matches!(&e, Error::InvalidParameter { name, .. } if name == "label_smoothing"),
        "{e}"
    );
    let e = CrossEntropyLoss::new()
        .with_class_weights(vec![1.0, -1.0, 1.0])
        .forward(&x, &y)
        .unwrap_err();
    assert!(e.to_string().contains("class_weights[1]"), "{e}");
}

/// Times `value_and_grad_into` on the workload (logits 4096×1000,
/// class indices, f32). Run with
/// `cargo test --release --test cross_entropy -- --ignored --nocapture timing`.
#[test]
#[ignore = "timing, run in release"]
fn timing_4096_by_1000_f32() {
    let mut rng = Rng::new(5);
    let x = rng.array(&[4096, 1000], -4.0, 4.0).mapv(|v| v as f32);
    let y = ArrayD::from_shape_simple_fn(IxDyn(&[4096]), || rng.below(1000) as f32);
    let loss = CrossEntropyLoss::new();
    let mut grad = ArrayD::zeros(x.raw_dim());
    let mut times = Vec::new();
    for _ in 0..30 {
        let start = std::time::Instant::now();
        std::hint::black_box(loss.value_and_grad_into(&x, &y, &mut grad).unwrap());
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "value_and_grad_into 4096x1000 f32: median {:.2} ms, min {:.2} ms",
        times[times.len() / 2],
        times[0]
    );
}
