//! The same input gives the same bits on 1 to 4 threads: the losses
//! that split rows (cross-entropy, triplet, contrastive, multi-margin, NLL) or elements (the
//! pointwise ones) across rayon's pool sum them along a fixed tree. Inputs are
//! large enough to cross each loss's parallel threshold. And `value_and_grad`
//! (which may build its gradient in order on one thread) gives the bits of
//! `value_and_grad_into` (which may use the pool).

mod common;

use common::Rng;
use tapeloss::ndarray::{ArrayD, IxDyn};
use tapeloss::{
    BinaryCrossEntropyLoss, ContrastiveLoss, CrossEntropyLoss, FocalLoss, HuberLoss, Loss, MeanSquaredError,
    MultiMarginLoss, NllLoss, Reduction, TripletLoss,
};

/// `value_and_grad` and `forward` of `loss` in a pool of `threads` threads, as bits.
fn run<F: tapeloss::Float, L: Loss<F> + Sync>(
    loss: &L,
    p: &ArrayD<F>,
    t: &ArrayD<F>,
    threads: usize,
) -> (F, F, ArrayD<F>) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a thread pool");
    pool.install(|| {
        let (value, grad) = loss.value_and_grad(p, t).expect("value_and_grad");
        let forward = loss.forward(p, t).expect("forward");
        let mut into = ArrayD::from_elem(p.raw_dim(), F::nan());
        let value_into = loss.value_and_grad_into(p, t, &mut into).expect("value_and_grad_into");
        assert_eq!(
            value_into.as_f64().to_bits(),
            value.as_f64().to_bits(),
            "into vs new, value"
        );
        let same = into
            .iter()
            .zip(grad.iter())
            .all(|(a, b)| a.as_f64().to_bits() == b.as_f64().to_bits());
        assert!(same, "into vs new, gradient on {threads} threads");
        (value, forward, grad)
    })
}

fn assert_same_bits<F: tapeloss::Float, L: Loss<F> + Sync>(loss: &L, p: &ArrayD<F>, t: &ArrayD<F>, what: &str) {
    let one = run(loss, p, t, 1);
    for threads in [2, 3, 4] {
        let other = run(loss, p, t, threads);
        let bits = |r: &(F, F, ArrayD<F>)| (r.0.as_f64().to_bits(), r.1.as_f64().to_bits());
        assert_eq!(bits(&other), bits(&one), "{what}: value on {threads} threads");
        let same = other
            .2
            .iter()
            .zip(one.2.iter())
            .all(|(a, b)| a.as_f64().to_bits() == b.as_f64().to_bits());
        assert!(same, "{what}: gradient on {threads} threads");
    }
}

fn f32s(a: &ArrayD<f64>) -> ArrayD<f32> {
    a.mapv(|v| v as f32)
}

#[test]
fn cross_entropy_rows_and_slabs() {
    let mut rng = Rng::new(1);
    // [N, C]: 1500 rows of 100 classes; [N, C, d]: 40 slabs of 10 × 100.
    for shape in [vec![1500, 100], vec![40, 10, 100]] {
        let x = rng.array(&shape, -4.0, 4.0);
        let mut target_shape = shape.clone();
        let classes = target_shape.remove(1);
        let y = ArrayD::from_shape_simple_fn(IxDyn(&target_shape), || rng.below(classes) as f64);
        let soft = rng.array(&shape, 0.0, 1.0);
        let smoothed = CrossEntropyLoss::new().with_label_smoothing(0.1);
        assert_same_bits(&CrossEntropyLoss::new(), &x, &y, "indices f64");
        assert_same_bits(&CrossEntropyLoss::new(), &f32s(&x), &f32s(&y), "indices f32");
        assert_same_bits(&smoothed, &f32s(&x), &f32s(&y), "smoothed f32");
        assert_same_bits(&CrossEntropyLoss::new(), &f32s(&x), &f32s(&soft), "probabilities f32");
    }
}

#[test]
fn triplet_and_contrastive_rows() {
    let mut rng = Rng::new(2);
    let d = 16;
    let triplets = rng.array(&[12_000, 3, d], -1.0, 1.0);
    let pairs = rng.array(&[17_000, 2, d], -1.0, 1.0);
    let labels = ArrayD::from_shape_simple_fn(IxDyn(&[17_000]), || rng.below(2) as f64);
    let ignored = ArrayD::zeros(IxDyn(&[1]));
    for loss in [
        TripletLoss::new(1.0),
        TripletLoss::new(0.5).with_reduction(Reduction::Sum),
    ] {
        assert_same_bits(&loss, &triplets, &ignored, "triplet f64");
        assert_same_bits(&loss, &f32s(&triplets), &f32s(&ignored), "triplet f32");
    }
    let loss = ContrastiveLoss::new(1.0);
    assert_same_bits(&loss, &pairs, &labels, "contrastive f64");
    assert_same_bits(&loss, &f32s(&pairs), &f32s(&labels), "contrastive f32");
}

#[test]
fn multi_margin_and_nll_rows() {
    let mut rng = Rng::new(4);
    // 600 rows of 1000 classes: past the 2¹⁹ elements from which rows split.
    let x = rng.array(&[600, 1000], -2.0, 2.0);
    let y = ArrayD::from_shape_simple_fn(IxDyn(&[600]), || rng.below(1000) as f64);
    for loss in [MultiMarginLoss::new(), MultiMarginLoss::new().with_p(2)] {
        assert_same_bits(&loss, &x, &y, "multi-margin f64");
        assert_same_bits(&loss, &f32s(&x), &f32s(&y), "multi-margin f32");
    }
    let log_probabilities = x.mapv(|v| v - 3.0);
    assert_same_bits(&NllLoss::new(), &f32s(&log_probabilities), &f32s(&y), "NLL f32");
}

#[test]
fn pointwise_elements() {
    let mut rng = Rng::new(3);
    let n = 600_000; // above the streaming threshold of 2¹⁹ elements
    let p = rng.array(&[n], -3.0, 3.0);
    let t = rng.array(&[n], 0.0, 1.0);
    assert_same_bits(&MeanSquaredError::new(), &f32s(&p), &f32s(&t), "MSE f32");
    assert_same_bits(&BinaryCrossEntropyLoss::with_logits(), &f32s(&p), &f32s(&t), "BCE f32");
    assert_same_bits(&BinaryCrossEntropyLoss::with_logits(), &p, &t, "BCE f64");
    assert_same_bits(&HuberLoss::new(0.5), &f32s(&p), &f32s(&t), "Huber f32");
    let probabilities = p
        .mapv(|v| (v / 3.0 + 1.0) / 2.0)
        .into_shape_with_order((n / 100, 100))
        .expect("rows")
        .into_dyn();
    let t = t.into_shape_with_order((n / 100, 100)).expect("rows").into_dyn();
    for gamma in [0.0, 2.0, 1.5] {
        let loss = FocalLoss::new(gamma, Some(0.25), 1e-7);
        assert_same_bits(&loss, &f32s(&probabilities), &f32s(&t), &format!("focal γ={gamma} f32"));
    }
    // Below every threshold: one thread, and both paths still agree.
    let small = rng.array(&[1000], -3.0, 3.0);
    assert_same_bits(&MeanSquaredError::new(), &small, &small.mapv(|v| v * 0.5), "MSE small");
}

/// A value's bits and a gradient's.
type Bits = (u32, Vec<u32>);

/// `Σ softmax(x)²` along rows on the tape in a pool of `threads` threads: the
/// value's bits, and the softmax's then the gradient's.
fn softmax_bits(x: &ArrayD<f32>, threads: usize) -> Bits {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a thread pool");
    pool.install(|| {
        let tape = tapeloss::Tape::<f32>::new();
        let v = tape.var(x.clone());
        let p = v.softmax(1).expect("softmax");
        let loss = p.square().and_then(|s| s.sum()).expect("loss");
        let grads = tape.backward(loss).expect("backward");
        let bits = p
            .value()
            .iter()
            .chain(grads.wrt(v).expect("grad"))
            .map(|g| g.to_bits())
            .collect();
        (loss.item().expect("scalar").to_bits(), bits)
    })
}

/// The tape's derivation of a loss in a pool of `threads` threads, as bits.
fn tape_bits<L: Loss<f32> + Sync>(loss: &L, p: &ArrayD<f32>, t: &ArrayD<f32>, threads: usize) -> Bits {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a thread pool");
    let (value, grad) = pool
        .install(|| tapeloss::losses::value_and_grad_on_tape(loss, p, t))
        .expect("value_and_grad_on_tape");
    (value.to_bits(), grad.iter().map(|g| g.to_bits()).collect())
}

/// The tape's row kernels (`log_softmax`, `softmax` and their backwards,
/// slicing and its backward, broadcasting and its backward) and its copies
/// split their rows or elements over the pool:
/// the same bits on 1 to 4 threads, above each threshold.
#[test]
fn tape_routes() {
    let mut rng = Rng::new(4);
    let logits = f32s(&rng.array(&[700, 100], -4.0, 4.0));
    let classes = ArrayD::from_shape_simple_fn(IxDyn(&[700]), || rng.below(100) as f32);
    let triplets = f32s(&rng.array(&[1400, 3, 128], -1.0, 1.0)); // 2¹⁹ elements and more
    let pairs = f32s(&rng.array(&[2100, 2, 128], -1.0, 1.0));
    let labels = ArrayD::from_shape_simple_fn(IxDyn(&[2100]), || rng.below(2) as f32);
    let (p, t) = (
        f32s(&rng.array(&[600_000], -3.0, 3.0)),
        f32s(&rng.array(&[600_000], -3.0, 3.0)),
    );
    let ignored = ArrayD::zeros(IxDyn(&[1]));
    let margin_logits = f32s(&rng.array(&[700, 800], -4.0, 4.0));
    let margin_classes = ArrayD::from_shape_simple_fn(IxDyn(&[700]), || rng.below(800) as f32);
    let cases: [(&str, &dyn Fn(usize) -> Bits); 6] = [
        // `x − x_y` broadcast along the rows, and its gradient summed back.
        ("multi-margin", &|k| {
            tape_bits(&MultiMarginLoss::new(), &margin_logits, &margin_classes, k)
        }),
        ("softmax", &|k| softmax_bits(&logits, k)),
        ("cross-entropy", &|k| {
            tape_bits(&CrossEntropyLoss::new(), &logits, &classes, k)
        }),
        ("triplet", &|k| {
            tape_bits(&TripletLoss::new(1.0), &triplets, &ignored, k)
        }),
        ("contrastive", &|k| {
            tape_bits(&ContrastiveLoss::new(1.0), &pairs, &labels, k)
        }),
        ("MSE", &|k| tape_bits(&MeanSquaredError::new(), &p, &t, k)),
    ];
    for (what, run) in cases {
        let one = run(1);
        for threads in [2, 3, 4] {
            assert!(run(threads) == one, "{what} on the tape: bits on {threads} threads");
        }
    }
}
