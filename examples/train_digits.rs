//! Train a small neural network on real handwritten digits with tapeloss.
//!
//! ```sh
//! cargo run --release --example train_digits                 # cross-entropy
//! cargo run --release --example train_digits -- --loss all   # compare three losses
//! ```
//!
//! The data are the 1,797 UCI 8×8 digit images shipped in `data/` (see
//! `data/README.md`), split 80/20 per class with a fixed seed. The model is a
//! 64→64→10 multilayer perceptron written with tape ops (`matmul`, bias
//! `add`, `relu`); the loss is recorded on the same tape with `Loss::record`,
//! `tape.backward` differentiates it, and SGD with momentum updates every
//! parameter from `grads.wrt(...)`.
//!
//! `--loss` picks the objective:
//! - `ce`: `CrossEntropyLoss` on the logits, with class-index targets;
//! - `ce-smooth`: the same with label smoothing 0.1;
//! - `focal`: `FocalLoss` (γ = 2) on `softmax(logits)`, with one-hot targets;
//! - `all`: the three in turn, then a comparison table.
//!
//! Each epoch prints one line; the run ends with `test accuracy: 0.xxx` and
//! writes the loss and accuracy curves to an SVG next to the executable.

mod common;

use std::time::Instant;

use common::svg::{self, LineChart, PALETTE, Panel, Series};
use common::{AnyResult, CLASSES, Digits, Flags, Mlp, PIXELS, Rng, Sgd};
use tapeloss::{CrossEntropyLoss, FocalLoss, Loss, Tape, Var};

/// The split is the same whatever `--seed` says, so runs with different
/// seeds are judged on the same test images.
const SPLIT_SEED: u64 = 2024;
const HIDDEN: usize = 64;
const BATCH: usize = 32;
const SGD: Sgd = Sgd {
    learning_rate: 0.05,
    momentum: 0.9,
    weight_decay: 1e-4,
};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Objective {
    CrossEntropy,
    Smoothed,
    Focal,
}

impl Objective {
    const ALL: [Objective; 3] = [Objective::CrossEntropy, Objective::Smoothed, Objective::Focal];

    fn flag(self) -> &'static str {
        match self {
            Objective::CrossEntropy => "ce",
            Objective::Smoothed => "ce-smooth",
            Objective::Focal => "focal",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Objective::CrossEntropy => "CrossEntropyLoss on logits",
            Objective::Smoothed => "CrossEntropyLoss, label smoothing 0.1",
            Objective::Focal => "FocalLoss(gamma 2) on softmax(logits)",
        }
    }

    /// The loss of `logits` (`[N, 10]`) for `labels`, recorded on their tape.
    fn record<'t>(self, tape: &'t Tape<f64>, logits: Var<'t, f64>, labels: &[usize]) -> tapeloss::Result<Var<'t, f64>> {
        match self {
            Objective::CrossEntropy => CrossEntropyLoss::new().record(tape, logits, &common::class_targets(labels)),
            Objective::Smoothed => {
                CrossEntropyLoss::new()
                    .with_label_smoothing(0.1)
                    .record(tape, logits, &common::class_targets(labels))
            }
            Objective::Focal => {
                let probabilities = logits.softmax(1)?;
                FocalLoss::new(2.0, None, 1e-7).record(tape, probabilities, &common::one_hot(labels, CLASSES))
            }
        }
    }
}

/// What one epoch measured.
struct Epoch {
    train_loss: f64,
    test_loss: f64,
    train_accuracy: f64,
    test_accuracy: f64,
    seconds: f64,
}

fn main() -> std::process::ExitCode {
    common::exit_status(run())
}

fn run() -> AnyResult<()> {
    let flags = Flags::parse(
        "Train a 64-64-10 MLP on the UCI handwritten digits with tapeloss.",
        &[
            ("loss", "ce", "ce | ce-smooth | focal | all"),
            ("epochs", "30", "passes over the training set"),
            ("seed", "1", "initial weights and batch order (the split is fixed)"),
        ],
    );
    let objectives: Vec<Objective> = match flags.get::<String>("loss").as_str() {
        "all" => Objective::ALL.to_vec(),
        name => match Objective::ALL.into_iter().find(|o| o.flag() == name) {
            Some(o) => vec![o],
            None => return Err(format!("--loss {name}: expected ce, ce-smooth, focal or all").into()),
        },
    };
    let (epochs, seed): (usize, u64) = (flags.get("epochs"), flags.get("seed"));
    if epochs == 0 {
        return Err("--epochs 0: expected at least one epoch".into());
    }

    let (train, test) = Digits::load()?.stratified_split(0.2, SPLIT_SEED);
    println!(
        "digits: {} train / {} test images of 8x8 pixels, 10 classes (stratified 80/20 split)",
        train.len(),
        test.len()
    );
    println!(
        "model: {PIXELS}-{HIDDEN}-{CLASSES} MLP with relu, {} parameters; SGD lr {} momentum {} weight decay {}, batch {BATCH}, seed {seed}",
        Mlp::new(&[PIXELS, HIDDEN, CLASSES], &mut Rng::new(seed)).parameter_count(),
        SGD.learning_rate,
        SGD.momentum,
        SGD.weight_decay,
    );

    let mut runs = Vec::new();
    for &objective in &objectives {
        println!("\nloss: {} (--loss {})", objective.describe(), objective.flag());
        let (history, model) = train_one(objective, &train, &test, epochs, seed)?;
        runs.push((objective, history, model));
    }

    let path = common::output_path("train_digits.svg");
    plot(&runs, &path)?;
    println!("\ncurves: {}", path.display());

    if runs.len() > 1 {
        // The objectives' own values are not comparable; the same metrics on the test set are.
        println!(
            "\ncomparison on the {} test images (one image = {:.4} of accuracy):",
            test.len(),
            1.0 / test.len() as f64
        );
        println!(
            "{:<10} {:>9} {:>9} {:>9} {:>9} {:>8}",
            "loss", "train acc", "test acc", "test NLL", "test ECE", "time"
        );
        for (objective, history, model) in &runs {
            let last = history.last().ok_or("no epochs were run")?;
            let (nll, ece) = calibration(model, &test)?;
            println!(
                "{:<10} {:>9.3} {:>9.3} {:>9.4} {:>9.4} {:>7.2}s",
                objective.flag(),
                last.train_accuracy,
                last.test_accuracy,
                nll,
                ece,
                last.seconds
            );
        }
        println!("NLL: cross-entropy of the predicted probabilities; ECE: expected calibration error, 15 bins");
    } else if let Some(last) = runs.first().and_then(|(_, h, _)| h.last()) {
        println!("test accuracy: {:.3}", last.test_accuracy);
    }
    Ok(())
}

/// Trains a fresh model with `objective`, printing one line per epoch.
fn train_one(
    objective: Objective,
    train: &Digits,
    test: &Digits,
    epochs: usize,
    seed: u64,
) -> AnyResult<(Vec<Epoch>, Mlp)> {
    let mut rng = Rng::new(seed);
    let mut model = Mlp::new(&[PIXELS, HIDDEN, CLASSES], &mut rng);
    let start = Instant::now();
    let mut history = Vec::new();
    for epoch in 1..=epochs {
        let (mut loss_sum, mut seen) = (0.0, 0);
        for batch in common::batches(train.len(), BATCH, &mut rng) {
            let part = train.subset(&batch);
            // A fresh tape per step: record the forward pass and the loss, sweep back once.
            let tape = Tape::new();
            let x = tape.constant(part.images.into_dyn());
            let forward = model.forward(&tape, x, true)?;
            let loss = objective.record(&tape, forward.output, &part.labels)?;
            let grads = tape.backward(loss)?;
            model.sgd_step(&grads, &forward, &SGD)?;
            loss_sum += loss.item()? * batch.len() as f64;
            seen += batch.len();
        }
        let (_, train_accuracy) = evaluate(&model, objective, train)?;
        let (test_loss, test_accuracy) = evaluate(&model, objective, test)?;
        let e = Epoch {
            train_loss: loss_sum / seen as f64,
            test_loss,
            train_accuracy,
            test_accuracy,
            seconds: start.elapsed().as_secs_f64(),
        };
        println!(
            "epoch {epoch:>3}/{epochs}  loss {:.4} (test {:.4})  train acc {:.3}  test acc {:.3}  {:>6.2}s",
            e.train_loss, e.test_loss, e.train_accuracy, e.test_accuracy, e.seconds
        );
        history.push(e);
    }
    Ok((history, model))
}

/// The loss and accuracy on a whole set, on a tape that tracks nothing.
fn evaluate(model: &Mlp, objective: Objective, data: &Digits) -> AnyResult<(f64, f64)> {
    let tape = Tape::new();
    let logits = model
        .forward(&tape, tape.constant(data.images.clone().into_dyn()), false)?
        .output;
    let loss = objective.record(&tape, logits, &data.labels)?.item()?;
    let predicted = common::argmax_rows(&logits.value().into_dimensionality()?);
    Ok((loss, common::accuracy(&predicted, &data.labels)))
}

/// The test set's negative log-likelihood under the model's softmax
/// probabilities (the library's `CrossEntropyLoss::forward`), and the
/// expected calibration error: how far confidence is from accuracy, averaged
/// over 15 equal-width confidence bins weighted by their share of images.
fn calibration(model: &Mlp, data: &Digits) -> AnyResult<(f64, f64)> {
    let logits = model.predict(&data.images)?;
    let nll = CrossEntropyLoss::new().forward(&logits.clone().into_dyn(), &common::class_targets(&data.labels))?;
    const BINS: usize = 15;
    let mut bins = [(0.0f64, 0.0f64); BINS]; // (Σ confidence, Σ correct)
    for (row, &label) in logits.rows().into_iter().zip(&data.labels) {
        let max = row.fold(f64::NEG_INFINITY, |m, &v| m.max(v));
        let total: f64 = row.iter().map(|&v| (v - max).exp()).sum();
        let (best, _) = row
            .iter()
            .enumerate()
            .fold((0, f64::NEG_INFINITY), |b, (i, &v)| if v > b.1 { (i, v) } else { b });
        let confidence = 1.0 / total; // exp(max - max) / Σ
        let bin = ((confidence * BINS as f64) as usize).min(BINS - 1);
        bins[bin].0 += confidence;
        bins[bin].1 += f64::from(u8::from(best == label));
    }
    // Σ_bins (n_b / N)·|accuracy_b − confidence_b| = Σ_bins |Σ correct − Σ confidence| / N
    let ece = bins.iter().map(|&(conf, hits)| (hits - conf).abs()).sum::<f64>() / data.len() as f64;
    Ok((nll, ece))
}

/// Loss curves on the left, accuracy curves on the right.
fn plot(runs: &[(Objective, Vec<Epoch>, Mlp)], path: &std::path::Path) -> std::io::Result<()> {
    let single = runs.len() == 1;
    let curve = |history: &[Epoch], f: fn(&Epoch) -> f64| -> Vec<(f64, f64)> {
        history
            .iter()
            .enumerate()
            .map(|(i, e)| ((i + 1) as f64, f(e)))
            .collect()
    };
    let mut loss = Vec::new();
    let mut accuracy = Vec::new();
    for (k, (objective, history, _)) in runs.iter().enumerate() {
        let (name, color) = (objective.flag(), PALETTE[k]);
        let (train_color, test_color) = if single {
            (PALETTE[0], PALETTE[1])
        } else {
            (color, color)
        };
        let label = |what: &str| {
            if single {
                what.to_string()
            } else {
                format!("{name} {what}")
            }
        };
        loss.push(Series {
            name: label("train"),
            color: train_color,
            dashed: true,
            points: curve(history, |e| e.train_loss),
        });
        loss.push(Series {
            name: label("test"),
            color: test_color,
            dashed: false,
            points: curve(history, |e| e.test_loss),
        });
        accuracy.push(Series {
            name: label("train"),
            color: train_color,
            dashed: true,
            points: curve(history, |e| e.train_accuracy),
        });
        accuracy.push(Series {
            name: label("test"),
            color: test_color,
            dashed: false,
            points: curve(history, |e| e.test_accuracy),
        });
    }
    let losses: Vec<&str> = runs.iter().map(|(o, _, _)| o.flag()).collect();
    svg::write(
        path,
        &format!("tapeloss: 64-64-10 MLP on UCI digits ({})", losses.join(", ")),
        &[
            Panel::Lines(LineChart {
                title: "loss".into(),
                x_label: "epoch".into(),
                y_label: "mean loss (log scale)".into(),
                series: loss,
                y_range: None,
                log_y: true,
            }),
            Panel::Lines(LineChart {
                title: "accuracy".into(),
                x_label: "epoch".into(),
                y_label: "accuracy".into(),
                series: accuracy,
                y_range: None,
                log_y: false,
            }),
        ],
    )
}
