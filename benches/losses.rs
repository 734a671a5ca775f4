//! Closed form against tape for every loss, at 1e3, 1e5 and 1e6 elements of
//! predictions (f32, value and gradient). Short measurements, so the whole run
//! takes a few minutes: `cargo bench --bench losses`.
//!
//! The peer comparison (PyTorch, JAX) is `python3 bench/compare.py`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tapeloss::losses::value_and_grad_on_tape;
use tapeloss::ndarray::{ArrayD, IxDyn};
use tapeloss::{
    BinaryCrossEntropyLoss, ContrastiveLoss, CrossEntropyLoss, FocalLoss, HingeEmbeddingLoss, HuberLoss, Loss,
    MeanAbsoluteError, MeanSquaredError, SmoothL1Loss, SoftMarginLoss, TripletLoss,
};
use tapeloss::{KlDivLoss, MultiMarginLoss, NllLoss, PoissonNllLoss};

/// Inputs for `n` prediction elements: predictions and targets.
type Inputs = fn(usize, &mut Rng) -> (ArrayD<f32>, ArrayD<f32>);

/// Every loss to time.
fn losses() -> Vec<(&'static str, Box<dyn Loss<f32>>, Inputs)> {
    vec![
        ("mse", Box::new(MeanSquaredError::new()), same_shape),
        ("mae", Box::new(MeanAbsoluteError::new()), same_shape),
        ("huber", Box::new(HuberLoss::new(1.0)), same_shape),
        ("smooth_l1", Box::new(SmoothL1Loss::new(1.0)), same_shape),
        ("bce", Box::new(BinaryCrossEntropyLoss::new()), probabilities),
        ("bce_logits", Box::new(BinaryCrossEntropyLoss::with_logits()), logits),
        ("cross_entropy", Box::new(CrossEntropyLoss::new()), class_indices),
        ("focal", Box::new(FocalLoss::new(2.0, Some(0.25), 1e-7)), one_hot),
        ("contrastive", Box::new(ContrastiveLoss::new(1.0)), pairs),
        ("triplet", Box::new(TripletLoss::new(1.0)), triplets),
        ("soft_margin", Box::new(SoftMarginLoss::new()), signed_labels),
        ("hinge_embedding", Box::new(HingeEmbeddingLoss::new(1.0)), signed_labels),
        // Log-probabilities and probability targets; log-rates and soft counts.
        ("kl_div", Box::new(KlDivLoss::new()), logits),
        ("poisson_nll", Box::new(PoissonNllLoss::new()), logits),
        // Scores (any numbers in [−4, 4]) with class indices, as for cross-entropy.
        ("nll", Box::new(NllLoss::new()), class_indices),
        ("multi_margin", Box::new(MultiMarginLoss::new()), class_indices),
    ]
}

/// SplitMix64: reproducible inputs without a dependency.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32
    }

    fn array(&mut self, shape: &[usize], lo: f32, hi: f32) -> ArrayD<f32> {
        ArrayD::from_shape_simple_fn(IxDyn(shape), || lo + (hi - lo) * self.unit())
    }
}

fn same_shape(n: usize, rng: &mut Rng) -> (ArrayD<f32>, ArrayD<f32>) {
    (rng.array(&[n], -2.0, 2.0), rng.array(&[n], -2.0, 2.0))
}

fn probabilities(n: usize, rng: &mut Rng) -> (ArrayD<f32>, ArrayD<f32>) {
    (rng.array(&[n], 0.01, 0.99), rng.array(&[n], 0.0, 1.0))
}

/// Scores or distances in [−2, 2] with labels −1 or 1.
fn signed_labels(n: usize, rng: &mut Rng) -> (ArrayD<f32>, ArrayD<f32>) {
    let labels = ArrayD::from_shape_simple_fn(IxDyn(&[n]), || if rng.unit() > 0.5 { 1.0 } else { -1.0 });
    (rng.array(&[n], -2.0, 2.0), labels)
}

fn logits(n: usize, rng: &mut Rng) -> (ArrayD<f32>, ArrayD<f32>) {
    (rng.array(&[n], -8.0, 8.0), rng.array(&[n], 0.0, 1.0))
}

/// 100 classes per sample, class-index targets.
fn class_indices(n: usize, rng: &mut Rng) -> (ArrayD<f32>, ArrayD<f32>) {
    let rows = (n / 100).max(1);
    let targets = ArrayD::from_shape_simple_fn(IxDyn(&[rows]), || (rng.unit() * 99.99).floor());
    (rng.array(&[rows, 100], -4.0, 4.0), targets)
}

fn one_hot(n: usize, rng: &mut Rng) -> (ArrayD<f32>, ArrayD<f32>) {
    let rows = (n / 100).max(1);
    let mut t = ArrayD::zeros(IxDyn(&[rows, 100]));
    for r in 0..rows {
        t[[r, (rng.unit() * 99.99) as usize]] = 1.0;
    }
    (rng.array(&[rows, 100], 0.001, 0.999), t)
}

/// [N, 2, 128] pairs with 0/1 labels.
fn pairs(n: usize, rng: &mut Rng) -> (ArrayD<f32>, ArrayD<f32>) {
    let rows = (n / 256).max(1);
    let labels = ArrayD::from_shape_simple_fn(IxDyn(&[rows]), || (rng.unit() > 0.5) as u8 as f32);
    (rng.array(&[rows, 2, 128], -1.0, 1.0), labels)
}

/// [N, 3, 128] triplets; the targets are ignored.
fn triplets(n: usize, rng: &mut Rng) -> (ArrayD<f32>, ArrayD<f32>) {
    let rows = (n / 384).max(1);
    (rng.array(&[rows, 3, 128], -1.0, 1.0), ArrayD::zeros(IxDyn(&[rows])))
}

fn closed_form_vs_tape(c: &mut Criterion) {
    let mut rng = Rng(7);
    for (name, loss, inputs) in losses() {
        let mut group = c.benchmark_group(name);
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(200))
            .measurement_time(Duration::from_millis(600));
        for n in [1_000, 100_000, 1_000_000] {
            let (p, t) = inputs(n, &mut rng);
            let mut grad = ArrayD::zeros(p.raw_dim());
            group.throughput(Throughput::Elements(p.len() as u64));
            group.bench_function(BenchmarkId::new("closed_form", n), |b| {
                b.iter(|| black_box(loss.value_and_grad_into(black_box(&p), &t, &mut grad).ok()))
            });
            group.bench_function(BenchmarkId::new("tape", n), |b| {
                b.iter(|| black_box(value_and_grad_on_tape(loss.as_ref(), black_box(&p), &t).ok()))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, closed_form_vs_tape);
criterion_main!(benches);
