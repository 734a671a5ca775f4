//! Learn an embedding of the handwritten digits in which images of the same
//! digit lie close together, with `TripletLoss` (or `ContrastiveLoss`).
//!
//! ```sh
//! cargo run --release --example metric_learning                        # triplet, 2-D and 16-D
//! cargo run --release --example metric_learning -- --loss contrastive
//! ```
//!
//! A 64→64→D MLP (tape ops: `matmul`, bias `add`, `relu`) maps each 8×8 image
//! to a point in D dimensions. Each step draws labelled training images and
//! groups them:
//! - triplets (anchor, positive of the same digit, negative of another digit)
//!   laid out `[N, 3, D]` for `TripletLoss`, which wants `‖a−p‖ + margin ≤ ‖a−n‖`;
//! - or pairs `[N, 2, D]`, half of the same digit (target 1) and half not (0),
//!   for `ContrastiveLoss`, which pulls the first together and pushes the
//!   second beyond the margin.
//!
//! The negatives are mined: each anchor's negative is the nearest of a few
//! random candidates of other digits in the current embedding, so the steps
//! keep finding triplets that still violate the margin.
//!
//! The number to judge is the 1-nearest-neighbour accuracy on the held-out
//! test images, classified by their nearest training image in the learned
//! space; it is printed before and after training, next to the same measure
//! on the raw 64 pixels. The 2-D embedding of the test images is drawn,
//! coloured by digit, in an SVG next to the executable.

mod common;

use std::time::Instant;

use common::svg::{self, Panel, ScatterPlot};
use common::{AnyResult, CLASSES, Digits, Flags, Mlp, PIXELS, Rng, Sgd};
use tapeloss::ndarray::{Array2, ArrayD, IxDyn};
use tapeloss::{ContrastiveLoss, Loss, Tape, TripletLoss};

const SPLIT_SEED: u64 = 2024;
const HIDDEN: usize = 64;
/// Triplets (or pairs) per step.
const BATCH: usize = 64;
/// Random candidates of another digit per anchor, of which the nearest is the negative.
const CANDIDATES: usize = 8;
const SGD: Sgd = Sgd {
    learning_rate: 0.02,
    momentum: 0.9,
    weight_decay: 1e-4,
};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Objective {
    Triplet,
    Contrastive,
}

fn main() -> std::process::ExitCode {
    common::exit_status(run())
}

fn run() -> AnyResult<()> {
    let flags = Flags::parse(
        "Learn a metric embedding of the UCI digits with TripletLoss or ContrastiveLoss.",
        &[
            ("loss", "triplet", "triplet | contrastive"),
            ("dims", "2,16", "embedding sizes to train, comma-separated"),
            ("epochs", "50", "passes over the training images (as anchors)"),
            ("margin", "1.0", "the loss's margin"),
            ("seed", "1", "initial weights and sampling (the split is fixed)"),
        ],
    );
    let objective = match flags.get::<String>("loss").as_str() {
        "triplet" => Objective::Triplet,
        "contrastive" => Objective::Contrastive,
        other => return Err(format!("--loss {other}: expected triplet or contrastive").into()),
    };
    let dims = flags
        .get::<String>("dims")
        .split(',')
        .map(|d| d.trim().parse::<usize>().ok().filter(|&d| d > 0))
        .collect::<Option<Vec<usize>>>()
        .ok_or("--dims: expected positive sizes such as 2,16")?;
    let (epochs, margin, seed): (usize, f64, u64) = (flags.get("epochs"), flags.get("margin"), flags.get("seed"));

    let (train, test) = Digits::load()?.stratified_split(0.2, SPLIT_SEED);
    let loss_name = match objective {
        Objective::Triplet => "TripletLoss",
        Objective::Contrastive => "ContrastiveLoss",
    };
    println!(
        "digits: {} train / {} test images; {loss_name}(margin {margin}), {BATCH} {} per step, {epochs} epochs, seed {seed}",
        train.len(),
        test.len(),
        if objective == Objective::Triplet {
            "triplets"
        } else {
            "pairs"
        },
    );
    let raw = common::nearest_neighbour_accuracy(&train.images, &train.labels, &test.images, &test.labels);
    println!("1-NN test accuracy on the raw 64 pixels: {raw:.3}");

    let mut results = Vec::new();
    let mut picture = None;
    for &dim in &dims {
        println!("\nembedding: {PIXELS}-{HIDDEN}-{dim} MLP with relu");
        let mut rng = Rng::new(seed);
        let mut model = Mlp::new(&[PIXELS, HIDDEN, dim], &mut rng);
        let before = knn(&model, &train, &test)?;
        let untrained = model.predict(&test.images)?;
        println!("before training: 1-NN test accuracy {before:.3}");
        let what = match objective {
            Objective::Triplet => "negatives",
            Objective::Contrastive => "dissimilar pairs",
        };
        let start = Instant::now();
        for epoch in 1..=epochs {
            let (loss, violating) = train_epoch(&mut model, objective, margin, &train, &mut rng)?;
            let accuracy = knn(&model, &train, &test)?;
            println!(
                "epoch {epoch:>3}/{epochs}  loss {loss:.4}  {what} inside the margin {:>5.1}%  1-NN test acc {accuracy:.3}  {:>6.2}s",
                100.0 * violating,
                start.elapsed().as_secs_f64()
            );
        }
        let after = knn(&model, &train, &test)?;
        if dim == 2 && picture.is_none() {
            picture = Some((untrained, model.predict(&test.images)?, before, after));
        }
        results.push((dim, before, after, start.elapsed().as_secs_f64()));
    }

    println!(
        "\n1-NN accuracy on the {} test images (nearest of the {} training images):",
        test.len(),
        train.len()
    );
    println!("{:<32} {:>9} {:>9} {:>8}", "space", "untrained", "trained", "time");
    println!("{:<32} {raw:>9.3} {raw:>9.3} {:>8}", "raw pixels (64-D, no model)", "-");
    for (dim, before, after, seconds) in &results {
        let space = format!("{loss_name} embedding ({dim}-D)");
        println!("{space:<32} {before:>9.3} {after:>9.3} {seconds:>7.2}s");
    }
    if let Some((untrained, trained, before, after)) = picture {
        let path = common::output_path("metric_learning.svg");
        let title = format!("tapeloss: 2-D {loss_name} embedding of the UCI digits (test images)");
        svg::write(
            &path,
            &title,
            &[
                scatter(
                    &format!("before training (1-NN acc {before:.3})"),
                    &untrained,
                    &test.labels,
                ),
                scatter(&format!("after training (1-NN acc {after:.3})"), &trained, &test.labels),
            ],
        )?;
        println!("embedding picture: {}", path.display());
    }
    Ok(())
}

/// One pass with every training image as an anchor once. Returns the mean
/// loss and the share of triplets (or of dissimilar pairs) that violated the
/// margin when they were drawn.
fn train_epoch(
    model: &mut Mlp,
    objective: Objective,
    margin: f64,
    train: &Digits,
    rng: &mut Rng,
) -> AnyResult<(f64, f64)> {
    let by_class: Vec<Vec<usize>> = (0..CLASSES)
        .map(|c| (0..train.len()).filter(|&i| train.labels[i] == c).collect())
        .collect();
    // Mining reads the embedding as it stood at the start of the epoch.
    let embedded = model.predict(&train.images)?;
    let (mut loss_sum, mut groups, mut violations, mut checked) = (0.0, 0usize, 0usize, 0usize);
    for anchors in common::batches(train.len(), BATCH, rng) {
        let mut rows = Vec::new();
        let mut targets = Vec::new();
        for (k, &a) in anchors.iter().enumerate() {
            let same = &by_class[train.labels[a]];
            let positive = loop {
                let p = same[rng.below(same.len())];
                if p != a {
                    break p;
                }
            };
            let negative = mine_negative(a, &embedded, &train.labels, &by_class, rng);
            match objective {
                Objective::Triplet => rows.extend([a, positive, negative]),
                // Alternate similar and dissimilar pairs, so each batch is balanced.
                Objective::Contrastive if k % 2 == 0 => {
                    rows.extend([a, positive]);
                    targets.push(1.0);
                }
                Objective::Contrastive => {
                    rows.extend([a, negative]);
                    targets.push(0.0);
                }
            }
        }
        let n = anchors.len();
        let group = rows.len() / n; // 3 for triplets, 2 for pairs
        let part = train.subset(&rows);
        let tape = Tape::new();
        let forward = model.forward(&tape, tape.constant(part.images.into_dyn()), true)?;
        // Rows come in consecutive groups, so [group·N, D] reshapes to [N, group, D].
        let dim = forward.output.shape()[1];
        let grouped = forward.output.reshape(&[n, group, dim])?;
        let loss = match objective {
            Objective::Triplet => TripletLoss::new(margin).record(&tape, grouped, &ArrayD::zeros(IxDyn(&[n]))),
            Objective::Contrastive => ContrastiveLoss::new(margin).record(
                &tape,
                grouped,
                &ArrayD::from_shape_vec(IxDyn(&[n]), targets.clone())?,
            ),
        }?;
        let grads = tape.backward(loss)?;
        model.sgd_step(&grads, &forward, &SGD)?;
        loss_sum += loss.item()? * n as f64;
        groups += n;
        let (violating, counted) = count_violations(&grouped.value(), &targets, objective, margin);
        violations += violating;
        checked += counted;
    }
    Ok((loss_sum / groups as f64, violations as f64 / checked.max(1) as f64))
}

/// The nearest (in `embedded`) of a few random images of other digits.
fn mine_negative(
    anchor: usize,
    embedded: &Array2<f64>,
    labels: &[usize],
    by_class: &[Vec<usize>],
    rng: &mut Rng,
) -> usize {
    let mut best = (f64::INFINITY, anchor);
    for _ in 0..CANDIDATES {
        let class = (labels[anchor] + 1 + rng.below(CLASSES - 1)) % CLASSES;
        let candidate = by_class[class][rng.below(by_class[class].len())];
        let d = squared_distance(embedded.row(anchor).iter(), embedded.row(candidate).iter());
        if d < best.0 {
            best = (d, candidate);
        }
    }
    best.1
}

fn squared_distance<'a>(a: impl Iterator<Item = &'a f64>, b: impl Iterator<Item = &'a f64>) -> f64 {
    a.zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// How many groups still violate the margin: triplets with
/// `‖a−p‖ + margin > ‖a−n‖`, or dissimilar pairs closer than the margin.
/// Returns (violating, groups counted).
fn count_violations(grouped: &ArrayD<f64>, targets: &[f64], objective: Objective, margin: f64) -> (usize, usize) {
    let dim = grouped.shape()[2];
    let dist = |i: usize, k: usize| {
        (0..dim)
            .map(|d| (grouped[[i, 0, d]] - grouped[[i, k, d]]).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let counted: Vec<bool> = (0..grouped.shape()[0])
        .filter(|&i| objective == Objective::Triplet || targets[i] == 0.0)
        .map(|i| match objective {
            Objective::Triplet => dist(i, 1) + margin > dist(i, 2),
            Objective::Contrastive => dist(i, 1) < margin,
        })
        .collect();
    (counted.iter().filter(|&&v| v).count(), counted.len())
}

/// 1-NN accuracy of the test images against the training images, both embedded.
fn knn(model: &Mlp, train: &Digits, test: &Digits) -> AnyResult<f64> {
    let reference = model.predict(&train.images)?;
    let queries = model.predict(&test.images)?;
    Ok(common::nearest_neighbour_accuracy(
        &reference,
        &train.labels,
        &queries,
        &test.labels,
    ))
}

fn scatter(title: &str, points: &Array2<f64>, labels: &[usize]) -> Panel {
    Panel::Scatter(ScatterPlot {
        title: title.into(),
        x_label: "embedding dimension 1".into(),
        y_label: "embedding dimension 2".into(),
        points: points
            .rows()
            .into_iter()
            .zip(labels)
            .map(|(r, &l)| (r[0], r[1], l))
            .collect(),
        group_names: (0..CLASSES).map(|c| format!("digit {c}")).collect(),
    })
}
