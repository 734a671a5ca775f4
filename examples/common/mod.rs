//! Code shared by the examples: the digits data, a seeded generator, a small
//! MLP on the tape with SGD and momentum, command-line flags, metrics, and a
//! hand-written SVG plotter (`svg`). Each example uses part of it.
#![allow(dead_code)]

pub mod svg;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;

use tapeloss::ndarray::{Array1, Array2, ArrayD, Axis, IxDyn};
use tapeloss::{Gradients, Tape, Var};

/// Any error, for the examples' `run` functions.
pub type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

/// The exit status of `run`: errors are printed as `error: message`.
pub fn exit_status(outcome: AnyResult<()>) -> std::process::ExitCode {
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// SplitMix64: tiny, seeded and portable, so every run draws the same numbers
/// on every machine (the test suite uses the same generator).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform integer in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Fisher–Yates.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

// ---------------------------------------------------------------------------
// The data

/// The UCI optical handwritten digits (see `data/README.md`), compiled into
/// the binary so nothing is read or downloaded at run time.
const DIGITS_CSV: &str = include_str!("../../data/digits.csv");

/// Images as rows of 64 pixels scaled to [0, 1], and their classes 0–9.
#[derive(Clone)]
pub struct Digits {
    pub images: Array2<f64>,
    pub labels: Vec<usize>,
}

pub const CLASSES: usize = 10;
pub const PIXELS: usize = 64;

impl Digits {
    /// All 1,797 images.
    pub fn load() -> AnyResult<Digits> {
        let mut pixels = Vec::with_capacity(1797 * PIXELS);
        let mut labels = Vec::with_capacity(1797);
        for (line_no, line) in DIGITS_CSV.lines().enumerate() {
            let values = line
                .split(',')
                .map(u8::from_str)
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|e| format!("data/digits.csv line {}: {e}", line_no + 1))?;
            match values.split_last() {
                Some((&label, image)) if image.len() == PIXELS && label < CLASSES as u8 => {
                    pixels.extend(image.iter().map(|&p| f64::from(p) / 16.0));
                    labels.push(label as usize);
                }
                _ => {
                    return Err(format!("data/digits.csv line {}: expected 64 pixels and a class", line_no + 1).into());
                }
            }
        }
        let images = Array2::from_shape_vec((labels.len(), PIXELS), pixels)?;
        Ok(Digits { images, labels })
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// The rows at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Digits {
        Digits {
            images: self.images.select(Axis(0), indices),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
        }
    }

    /// A seeded split that keeps each class's share: `test_fraction` of every
    /// class (rounded) goes to the test set. Returns (train, test).
    pub fn stratified_split(&self, test_fraction: f64, seed: u64) -> (Digits, Digits) {
        let mut rng = Rng::new(seed);
        let (mut train, mut test) = (Vec::new(), Vec::new());
        for class in 0..CLASSES {
            let mut members: Vec<usize> = (0..self.len()).filter(|&i| self.labels[i] == class).collect();
            rng.shuffle(&mut members);
            let n_test = (members.len() as f64 * test_fraction).round() as usize;
            test.extend_from_slice(&members[..n_test]);
            train.extend_from_slice(&members[n_test..]);
        }
        // Interleave the classes so that mini-batches taken in order would mix them.
        rng.shuffle(&mut train);
        rng.shuffle(&mut test);
        (self.subset(&train), self.subset(&test))
    }

    /// Class counts, for printing.
    pub fn class_counts(&self) -> [usize; CLASSES] {
        let mut counts = [0; CLASSES];
        for &l in &self.labels {
            counts[l] += 1;
        }
        counts
    }
}

/// Class indices as the whole numbers `CrossEntropyLoss` takes for targets.
pub fn class_targets(labels: &[usize]) -> ArrayD<f64> {
    ArrayD::from_shape_fn(IxDyn(&[labels.len()]), |i| labels[i[0]] as f64)
}

/// One-hot rows `[N, classes]`.
pub fn one_hot(labels: &[usize], classes: usize) -> ArrayD<f64> {
    ArrayD::from_shape_fn(IxDyn(&[labels.len(), classes]), |i| {
        f64::from(u8::from(labels[i[0]] == i[1]))
    })
}

// ---------------------------------------------------------------------------
// The model

/// A multilayer perceptron, `x → relu(x·W₁ + b₁) → … → x·Wₖ + bₖ`, with its
/// momentum buffers. Its forward pass is recorded on a tape; its update reads
/// the gradients back with `grads.wrt(...)`.
pub struct Mlp {
    /// `[W₁, b₁, W₂, b₂, …]`, `W` as `[inputs, outputs]` and `b` as `[outputs]`.
    params: Vec<ArrayD<f64>>,
    velocity: Vec<ArrayD<f64>>,
}

/// The values a forward pass put on the tape: the output and the parameter
/// handles whose gradients the update needs.
pub struct Forward<'t> {
    pub output: Var<'t, f64>,
    params: Vec<Var<'t, f64>>,
}

impl Mlp {
    /// Layer sizes such as `[64, 64, 10]`. He-uniform weights (suited to
    /// relu), zero biases.
    pub fn new(sizes: &[usize], rng: &mut Rng) -> Mlp {
        let mut params = Vec::new();
        for pair in sizes.windows(2) {
            let (fan_in, fan_out) = (pair[0], pair[1]);
            let limit = (6.0 / fan_in as f64).sqrt();
            let w = Array2::from_shape_simple_fn((fan_in, fan_out), || limit * (2.0 * rng.unit() - 1.0));
            params.push(w.into_dyn());
            params.push(Array1::<f64>::zeros(fan_out).into_dyn());
        }
        let velocity = params.iter().map(|p| ArrayD::zeros(p.raw_dim())).collect();
        Mlp { params, velocity }
    }

    /// How many numbers the model learns.
    pub fn parameter_count(&self) -> usize {
        self.params.iter().map(|p| p.len()).sum()
    }

    /// Records the forward pass of `x` (`[N, inputs]`) on `tape`. With
    /// `train`, the parameters are tracked leaves; otherwise constants, and
    /// the tape only evaluates.
    pub fn forward<'t>(&self, tape: &'t Tape<f64>, x: Var<'t, f64>, train: bool) -> tapeloss::Result<Forward<'t>> {
        let params: Vec<Var<'t, f64>> = self
            .params
            .iter()
            .map(|p| {
                if train {
                    tape.var(p.clone())
                } else {
                    tape.constant(p.clone())
                }
            })
            .collect();
        let layers = params.len() / 2;
        let mut h = x;
        for (layer, wb) in params.chunks(2).enumerate() {
            h = h.matmul(wb[0])?.add(wb[1])?; // the bias row broadcasts over the batch
            if layer + 1 < layers {
                h = h.relu()?;
            }
        }
        Ok(Forward { output: h, params })
    }

    /// The outputs for many rows at once, without tracking anything.
    pub fn predict(&self, x: &Array2<f64>) -> tapeloss::Result<Array2<f64>> {
        let tape = Tape::new();
        let out = self
            .forward(&tape, tape.constant(x.clone().into_dyn()), false)?
            .output
            .value();
        Ok(out.into_dimensionality()?)
    }

    /// One step of SGD with momentum and weight decay:
    /// `v ← μ·v + (∇ + λ·w)`, `w ← w − η·v`.
    pub fn sgd_step(&mut self, grads: &Gradients<f64>, fwd: &Forward<'_>, opt: &Sgd) -> AnyResult<()> {
        for ((w, v), var) in self.params.iter_mut().zip(&mut self.velocity).zip(&fwd.params) {
            let g = grads.wrt(*var).ok_or("a parameter was recorded as a constant")?;
            let decay = if w.ndim() == 2 { opt.weight_decay } else { 0.0 }; // no decay on biases
            v.zip_mut_with(g, |v, &g| *v = opt.momentum * *v + g);
            if decay > 0.0 {
                v.zip_mut_with(w, |v, &w| *v += decay * w);
            }
            w.zip_mut_with(v, |w, &v| *w -= opt.learning_rate * v);
        }
        Ok(())
    }
}

/// Settings of [`Mlp::sgd_step`].
#[derive(Clone, Copy, Debug)]
pub struct Sgd {
    pub learning_rate: f64,
    pub momentum: f64,
    pub weight_decay: f64,
}

/// The batches of one epoch: a fresh seeded permutation cut into pieces of
/// `batch_size` (the last may be smaller).
pub fn batches(n: usize, batch_size: usize, rng: &mut Rng) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut order);
    order.chunks(batch_size).map(<[usize]>::to_vec).collect()
}

// ---------------------------------------------------------------------------
// Metrics

/// The index of each row's largest value.
pub fn argmax_rows(scores: &Array2<f64>) -> Vec<usize> {
    scores
        .rows()
        .into_iter()
        .map(|row| {
            row.iter()
                .enumerate()
                .fold(
                    (0, f64::NEG_INFINITY),
                    |best, (i, &s)| if s > best.1 { (i, s) } else { best },
                )
                .0
        })
        .collect()
}

/// The share of predictions equal to the labels.
pub fn accuracy(predicted: &[usize], labels: &[usize]) -> f64 {
    let hits = predicted.iter().zip(labels).filter(|(p, l)| p == l).count();
    hits as f64 / labels.len() as f64
}

/// For each query row, the label of its nearest reference row (Euclidean),
/// then the accuracy of those labels.
pub fn nearest_neighbour_accuracy(
    reference: &Array2<f64>,
    reference_labels: &[usize],
    queries: &Array2<f64>,
    query_labels: &[usize],
) -> f64 {
    let predicted: Vec<usize> = queries
        .rows()
        .into_iter()
        .map(|q| {
            let mut best = (f64::INFINITY, 0);
            for (r, &label) in reference.rows().into_iter().zip(reference_labels) {
                let d: f64 = q.iter().zip(r.iter()).map(|(a, b)| (a - b) * (a - b)).sum();
                if d < best.0 {
                    best = (d, label);
                }
            }
            best.1
        })
        .collect();
    accuracy(&predicted, query_labels)
}

// ---------------------------------------------------------------------------
// Command line and output

/// `--name value` flags. `known` lists (name, default, help); anything else,
/// or `--help`, prints the usage and exits.
pub struct Flags {
    values: BTreeMap<&'static str, String>,
}

impl Flags {
    pub fn parse(about: &str, known: &[(&'static str, &str, &str)]) -> Flags {
        let usage = || {
            let mut text = format!("{about}\n\nflags:\n");
            for (name, default, help) in known {
                text += &format!("  --{name:<10} {help} (default: {default})\n");
            }
            text
        };
        let mut values: BTreeMap<&'static str, String> = known
            .iter()
            .map(|(name, default, _)| (*name, (*default).to_string()))
            .collect();
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            if arg == "--help" || arg == "-h" {
                print!("{}", usage());
                std::process::exit(0);
            }
            let (name, inline) = match arg.strip_prefix("--").map(|a| a.split_once('=')) {
                Some(Some((n, v))) => (n.to_string(), Some(v.to_string())),
                Some(None) => (arg[2..].to_string(), None),
                None => (String::new(), None),
            };
            let Some(&(key, _, _)) = known.iter().find(|(k, _, _)| *k == name) else {
                eprint!("unknown argument `{arg}`\n\n{}", usage());
                std::process::exit(2);
            };
            let Some(value) = inline.or_else(|| args.next()) else {
                eprint!("`--{key}` needs a value\n\n{}", usage());
                std::process::exit(2);
            };
            values.insert(key, value);
        }
        Flags { values }
    }

    /// The flag's value, parsed; a bad value exits with a message.
    pub fn get<T: FromStr>(&self, name: &str) -> T {
        let raw = self.values.get(name).map(String::as_str).unwrap_or("");
        raw.parse().unwrap_or_else(|_| {
            eprintln!("`--{name} {raw}`: not a valid value");
            std::process::exit(2);
        })
    }
}

/// Where an example writes its picture: next to its own executable (for
/// `cargo run --release --example x`, that is `target/release/examples/x.svg`).
pub fn output_path(file_name: &str) -> PathBuf {
    let dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(PathBuf::from))
        .unwrap_or_else(std::env::temp_dir);
    dir.join(file_name)
}
