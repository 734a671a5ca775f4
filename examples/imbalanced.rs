//! One digit against the rest at a 1:9 class ratio: binary cross-entropy
//! against focal loss, judged by precision, recall and average precision.
//!
//! ```sh
//! cargo run --release --example imbalanced
//! cargo run --release --example imbalanced -- --digit 3
//! ```
//!
//! The images of one digit (8 by default, one of the harder ones) are the
//! positives; images of the other nine digits are drawn (seeded) until there
//! are exactly nine negatives per positive (a digit with more than a ninth of
//! the others gives up a few). The model is logistic regression, one logit
//! `z = x·w + b` per image recorded on the tape, and three objectives train it
//! from the same initial weights:
//! - `BinaryCrossEntropyLoss::with_logits()` on `z`;
//! - the same with `.with_pos_weight(9.0)`, the usual fix that counts each
//!   positive nine times;
//! - `FocalLoss` (γ = 2) on the two-column probabilities `[1 − σ(z), σ(z)]`
//!   (its `[N, C]` layout) against one-hot targets `[1 − y, y]`. Its `alpha`
//!   scales every class alike, so it is left at `None`.
//!
//! Every image is held out once in a stratified 5-fold cross-validation (each
//! fold keeps the 1:9 ratio). For each loss the example prints precision and
//! recall at the threshold σ(z) = 0.5, and average precision (the area under
//! the precision–recall curve, which needs no threshold; a model that guesses
//! scores 0.1), as mean ± standard deviation over the folds. The metrics
//! follow scikit-learn's `precision_score`, `recall_score` and
//! `average_precision_score`, ties included.

mod common;

use std::time::Instant;

use common::{AnyResult, Digits, Flags, Mlp, PIXELS, Rng, Sgd};
use tapeloss::ndarray::{Array2, ArrayD, Axis, IxDyn};
use tapeloss::{BinaryCrossEntropyLoss, FocalLoss, Loss, Tape, Var};

const SPLIT_SEED: u64 = 2024;
const FOLDS: usize = 5;
const BATCH: usize = 64;
const LEARNING_RATE: f64 = 0.1;
const SGD: Sgd = Sgd {
    learning_rate: LEARNING_RATE,
    momentum: 0.9,
    weight_decay: 1e-3,
};

#[derive(Clone, Copy)]
enum Objective {
    Bce,
    WeightedBce,
    Focal,
}

impl Objective {
    const ALL: [Objective; 3] = [Objective::Bce, Objective::WeightedBce, Objective::Focal];

    fn name(self) -> &'static str {
        match self {
            Objective::Bce => "BCE (with logits)",
            Objective::WeightedBce => "BCE, pos_weight 9",
            Objective::Focal => "focal, gamma 2",
        }
    }

    /// The loss of logits `z` (`[N, 1]`) for 0/1 targets `y` (`[N, 1]`).
    fn record<'t>(self, tape: &'t Tape<f64>, z: Var<'t, f64>, y: &ArrayD<f64>) -> tapeloss::Result<Var<'t, f64>> {
        match self {
            Objective::Bce => BinaryCrossEntropyLoss::with_logits().record(tape, z, y),
            Objective::WeightedBce => BinaryCrossEntropyLoss::with_logits()
                .with_pos_weight(9.0)
                .record(tape, z, y),
            Objective::Focal => {
                // [σ(z)] → [1 − σ(z), σ(z)] by broadcasting against the rows [−1, 1] and [1, 0].
                let p = z.sigmoid()?;
                let flip = tape.constant(ArrayD::from_shape_vec(IxDyn(&[1, 2]), vec![-1.0, 1.0])?);
                let offset = tape.constant(ArrayD::from_shape_vec(IxDyn(&[1, 2]), vec![1.0, 0.0])?);
                let two_class = p.mul(flip)?.add(offset)?;
                let one_hot = ArrayD::from_shape_fn(IxDyn(&[y.len(), 2]), |i| {
                    let t = y[[i[0], 0]];
                    if i[1] == 1 { t } else { 1.0 - t }
                });
                FocalLoss::new(2.0, None, 1e-7).record(tape, two_class, &one_hot)
            }
        }
    }
}

/// Images and 0/1 labels for one digit against the rest.
struct Binary {
    images: Array2<f64>,
    labels: Vec<usize>,
}

fn main() -> std::process::ExitCode {
    common::exit_status(run())
}

fn run() -> AnyResult<()> {
    let flags = Flags::parse(
        "One digit against the rest at 1:9: binary cross-entropy against focal loss.",
        &[
            ("digit", "8", "the positive class, 0-9"),
            ("epochs", "100", "passes over the training part of each fold"),
            (
                "seed",
                "1",
                "initial weights and batch order (data and folds are fixed)",
            ),
        ],
    );
    let (digit, epochs, seed): (usize, usize, u64) = (flags.get("digit"), flags.get("epochs"), flags.get("seed"));
    if digit > 9 {
        return Err(format!("--digit {digit}: expected 0 to 9").into());
    }

    let data = one_against_rest(&Digits::load()?, digit);
    let positives = data.labels.iter().sum::<usize>();
    println!(
        "digit {digit} against the rest: {} images, {positives} positive, {} negative (1:9)",
        data.labels.len(),
        data.labels.len() - positives
    );
    println!(
        "model: logistic regression ({PIXELS} weights + bias) on the tape; SGD lr {LEARNING_RATE} decaying linearly to 0, \
         momentum {}, weight decay {}, batch {BATCH}, {epochs} epochs, seed {seed}",
        SGD.momentum, SGD.weight_decay
    );
    println!("evaluation: stratified {FOLDS}-fold cross-validation, every image held out once; mean ± sd over folds\n");

    let start = Instant::now();
    let mut rows = Vec::new();
    for objective in Objective::ALL {
        let mut folds = Vec::new();
        for fold in 0..FOLDS {
            let (train, test) = data.fold(fold);
            let model = train_one(objective, &train, epochs, seed)?;
            let scores: Vec<f64> = model.predict(&test.images)?.iter().map(|&z| sigmoid(z)).collect();
            folds.push(Metrics::of(&scores, &test.labels));
        }
        let total = |f: fn(&Metrics) -> usize| folds.iter().map(f).sum::<usize>();
        println!(
            "{:<18} average precision per fold: {}   TP {} FP {} FN {}",
            objective.name(),
            folds
                .iter()
                .map(|m| format!("{:.3}", m.average_precision))
                .collect::<Vec<_>>()
                .join(" "),
            total(|m| m.true_positives),
            total(|m| m.false_positives),
            total(|m| m.false_negatives),
        );
        rows.push((objective, folds));
    }

    println!(
        "\n{:<18} {:>15} {:>15} {:>17}",
        "loss", "precision", "recall", "average precision"
    );
    for (objective, folds) in &rows {
        let cell = |f: fn(&Metrics) -> f64| {
            let (mean, sd) = mean_sd(folds.iter().map(f));
            format!("{mean:.3} ± {sd:.3}")
        };
        println!(
            "{:<18} {:>15} {:>15} {:>17}",
            objective.name(),
            cell(|m| m.precision),
            cell(|m| m.recall),
            cell(|m| m.average_precision)
        );
    }
    println!("precision and recall at sigma(z) = 0.5; average precision needs no threshold (chance: 0.100)");
    println!("time: {:.2}s", start.elapsed().as_secs_f64());
    Ok(())
}

/// The images of `digit` (at most a ninth as many as the others) and nine
/// times as many others drawn at random, in a seeded order; label 1 marks
/// the digit.
fn one_against_rest(all: &Digits, digit: usize) -> Binary {
    let mut rng = Rng::new(SPLIT_SEED);
    let mut positives: Vec<usize> = (0..all.len()).filter(|&i| all.labels[i] == digit).collect();
    let mut negatives: Vec<usize> = (0..all.len()).filter(|&i| all.labels[i] != digit).collect();
    rng.shuffle(&mut positives);
    rng.shuffle(&mut negatives);
    // A digit with more than a ninth of the other images keeps only that many.
    positives.truncate(negatives.len() / 9);
    negatives.truncate(9 * positives.len());
    let indices: Vec<usize> = positives.iter().chain(&negatives).copied().collect();
    Binary {
        images: all.subset(&indices).images,
        labels: indices.iter().map(|&i| usize::from(all.labels[i] == digit)).collect(),
    }
}

impl Binary {
    /// Fold `k` of [`FOLDS`]: every `FOLDS`-th positive and every
    /// `FOLDS`-th negative is held out, so both parts keep the 1:9 ratio.
    /// Returns (train, test).
    fn fold(&self, k: usize) -> (Binary, Binary) {
        let (mut train, mut test) = (Vec::new(), Vec::new());
        for class in [1, 0] {
            let members = (0..self.labels.len()).filter(|&i| self.labels[i] == class);
            for (rank, i) in members.enumerate() {
                if rank % FOLDS == k { test.push(i) } else { train.push(i) }
            }
        }
        (self.subset(&train), self.subset(&test))
    }

    fn subset(&self, indices: &[usize]) -> Binary {
        Binary {
            images: self.images.select(Axis(0), indices),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
        }
    }
}

/// Logistic regression, `z = x·w + b`, trained with `objective`; the learning
/// rate falls linearly to 0 so that every loss settles near its own optimum.
fn train_one(objective: Objective, train: &Binary, epochs: usize, seed: u64) -> AnyResult<Mlp> {
    let mut rng = Rng::new(seed);
    let mut model = Mlp::new(&[PIXELS, 1], &mut rng);
    for epoch in 0..epochs {
        let sgd = Sgd {
            learning_rate: LEARNING_RATE * (1.0 - epoch as f64 / epochs as f64),
            ..SGD
        };
        for batch in common::batches(train.labels.len(), BATCH, &mut rng) {
            let x = train.images.select(Axis(0), &batch);
            let y = ArrayD::from_shape_fn(IxDyn(&[batch.len(), 1]), |i| train.labels[batch[i[0]]] as f64);
            let tape = Tape::new();
            let forward = model.forward(&tape, tape.constant(x.into_dyn()), true)?;
            let loss = objective.record(&tape, forward.output, &y)?;
            let grads = tape.backward(loss)?;
            model.sgd_step(&grads, &forward, &sgd)?;
        }
    }
    Ok(model)
}

fn mean_sd(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let v: Vec<f64> = values.collect();
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (v.len() as f64 - 1.0).max(1.0);
    (mean, var.sqrt())
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

struct Metrics {
    precision: f64,
    recall: f64,
    average_precision: f64,
    true_positives: usize,
    false_positives: usize,
    false_negatives: usize,
}

impl Metrics {
    /// Precision and recall at score 0.5, and average precision:
    /// `Σₖ (Rₖ − Rₖ₋₁)·Pₖ` over the distinct scores taken as thresholds from
    /// the highest down (scikit-learn's `average_precision_score`).
    fn of(scores: &[f64], labels: &[usize]) -> Metrics {
        let positives = labels.iter().filter(|&&l| l == 1).count();
        let predicted = |i: usize| scores[i] >= 0.5;
        let tp = (0..labels.len()).filter(|&i| predicted(i) && labels[i] == 1).count();
        let fp = (0..labels.len()).filter(|&i| predicted(i) && labels[i] == 0).count();
        let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };

        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
        let (mut ap, mut hits, mut previous_recall) = (0.0, 0usize, 0.0);
        for (rank, &i) in order.iter().enumerate() {
            hits += labels[i];
            // Tied scores form one threshold: score only after the last of them.
            let last_of_tie = order.get(rank + 1).is_none_or(|&next| scores[next] != scores[i]);
            if last_of_tie {
                let recall = ratio(hits, positives);
                ap += (recall - previous_recall) * ratio(hits, rank + 1);
                previous_recall = recall;
            }
        }
        Metrics {
            precision: ratio(tp, tp + fp),
            recall: ratio(tp, positives),
            average_precision: ap,
            true_positives: tp,
            false_positives: fp,
            false_negatives: positives - tp,
        }
    }
}
