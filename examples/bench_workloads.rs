//! Times tapeloss on the workloads of bench/peers.py (f32, value and
//! gradient with respect to the predictions) and prints the same JSON lines,
//! one per (workload, variant):
//!
//! - `tapeloss` / `value_and_grad_into`: the fused closed form into a reused
//!   gradient buffer (the training-loop call);
//! - `tapeloss` / `value_and_grad`: the same, allocating the gradient it
//!   returns, as PyTorch and JAX do;
//! - `tapeloss_tape` / `value_and_grad_on_tape`: the gradient the tape derives
//!   from the loss's `record`.
//!
//! `--memory` instead reports, per workload, the peak resident memory that one
//! call adds (`VmHWM` of a fresh child process, after its inputs exist): the
//! allocating closed form against the tape.
//!
//! `--rows` instead times the row-wise losses (cross-entropy, triplet,
//! contrastive) from 32 to 8192 rows on one thread and on two, for their
//! parallel thresholds.
//!
//! `--scaling` instead times MSE from 1e3 to 1e7 elements next to a
//! STREAM-like triad with the same memory traffic (read two arrays, write
//! one), to show the fraction of memory bandwidth reached.
//!
//! Run: `cargo run --release --example bench_workloads [-- --scaling] [--min-seconds S]`
//! (`--workloads mse,huber` and `--variants into,alloc,tape,forward` select, e.g. to
//! profile one with `perf record -e cpu-clock`)
//! (`bench/compare.py` runs it with the peers and prints the ratio table).

use std::hint::black_box;
use std::time::Instant;

use tapeloss::losses::value_and_grad_on_tape;
use tapeloss::ndarray::{ArrayD, IxDyn};
use tapeloss::{
    BinaryCrossEntropyLoss, ContrastiveLoss, CrossEntropyLoss, HingeEmbeddingLoss, HuberLoss, KlDivLoss, Loss,
    MeanSquaredError, MultiMarginLoss, NllLoss, PoissonNllLoss, SoftMarginLoss, TripletLoss,
};

/// SplitMix64 with Box–Muller, so inputs are reproducible without a
/// dependency; the distributions match bench/peers.py's.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        (-2.0 * self.unit().ln()).sqrt() * (std::f64::consts::TAU * self.unit()).cos()
    }

    fn array(&mut self, shape: &[usize], mut sample: impl FnMut(&mut Rng) -> f64) -> ArrayD<f32> {
        ArrayD::from_shape_simple_fn(IxDyn(shape), || sample(self) as f32)
    }
}

/// A label −1 or 1, each with probability ½.
fn signed_label(rng: &mut Rng) -> f64 {
    if rng.next().is_multiple_of(2) { -1.0 } else { 1.0 }
}

/// One workload: inputs and the loss.
struct Workload {
    name: &'static str,
    predictions: ArrayD<f32>,
    targets: ArrayD<f32>,
    loss: Box<dyn Loss<f32>>,
}

const N_POINTWISE: usize = 1 << 20;
const MARGIN: f64 = 1.0;

const NAMES: [&str; 12] = [
    "mse",
    "huber",
    "bce_logits",
    "cross_entropy",
    "triplet",
    "contrastive",
    "soft_margin",
    "hinge_embedding",
    "kl_div",
    "poisson_nll",
    "nll",
    "multi_margin",
];

/// Every workload, each generated only when asked for (so that a memory
/// measurement of one sees no other's inputs).
fn workloads() -> impl Iterator<Item = Workload> {
    NAMES.into_iter().filter_map(workload)
}

/// One workload by name, its inputs seeded by its position in [`NAMES`].
fn workload(name: &str) -> Option<Workload> {
    let seed = NAMES.iter().position(|&n| n == name)? as u64;
    let mut rng = Rng(seed);
    let normal = |shape: &[usize], rng: &mut Rng| rng.array(shape, Rng::normal);
    let n = [N_POINTWISE];
    let (predictions, targets, loss): (_, _, Box<dyn Loss<f32>>) = match name {
        "mse" => (
            normal(&n, &mut rng),
            normal(&n, &mut rng),
            Box::new(MeanSquaredError::new()),
        ),
        "huber" => (
            normal(&n, &mut rng),
            normal(&n, &mut rng),
            Box::new(HuberLoss::new(1.0)),
        ),
        "bce_logits" => (
            rng.array(&n, |r| 4.0 * r.normal()),
            rng.array(&n, Rng::unit),
            Box::new(BinaryCrossEntropyLoss::with_logits()),
        ),
        "cross_entropy" => (
            normal(&[4096, 1000], &mut rng),
            rng.array(&[4096], |r| (r.next() % 1000) as f64),
            Box::new(CrossEntropyLoss::new()),
        ),
        "triplet" => (
            normal(&[4096, 3, 128], &mut rng),
            ArrayD::zeros(IxDyn(&[4096])),
            Box::new(TripletLoss::new(MARGIN)),
        ),
        "contrastive" => (
            normal(&[4096, 2, 128], &mut rng),
            rng.array(&[4096], |r| (r.next() % 2) as f64),
            Box::new(ContrastiveLoss::new(MARGIN)),
        ),
        "soft_margin" => (
            rng.array(&n, |r| 4.0 * r.normal()),
            rng.array(&n, signed_label),
            Box::new(SoftMarginLoss::new()),
        ),
        "hinge_embedding" => (
            rng.array(&n, |r| 2.0 * r.unit()),
            rng.array(&n, signed_label),
            Box::new(HingeEmbeddingLoss::new(MARGIN)),
        ),
        "kl_div" => (
            rng.array(&n, |r| -8.0 * r.unit()),
            rng.array(&n, Rng::unit),
            Box::new(KlDivLoss::new()),
        ),
        "poisson_nll" => (
            normal(&n, &mut rng),
            rng.array(&n, |r| (r.next() % 4) as f64),
            Box::new(PoissonNllLoss::new()),
        ),
        "nll" => (
            normal(&[4096, 1000], &mut rng),
            rng.array(&[4096], |r| (r.next() % 1000) as f64),
            Box::new(NllLoss::new()),
        ),
        "multi_margin" => (
            normal(&[4096, 1000], &mut rng),
            rng.array(&[4096], |r| (r.next() % 1000) as f64),
            Box::new(MultiMarginLoss::new().with_margin(MARGIN)),
        ),
        _ => return None,
    };
    Some(Workload {
        name: NAMES[seed as usize],
        predictions,
        targets,
        loss,
    })
}

/// Median, minimum and 90th percentile of single-call times, after warm-up,
/// over at least `min_repeats` calls and `min_seconds`.
struct Stats {
    median_ms: f64,
    min_ms: f64,
    p90_ms: f64,
    repeats: usize,
}

fn measure(min_seconds: f64, min_repeats: usize, mut call: impl FnMut()) -> Stats {
    for _ in 0..10 {
        call();
    }
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < min_repeats || start.elapsed().as_secs_f64() < min_seconds {
        let t0 = Instant::now();
        call();
        times.push(t0.elapsed().as_secs_f64() * 1e3);
        if times.len() >= 100 * min_repeats {
            break;
        }
    }
    times.sort_by(f64::total_cmp);
    Stats {
        median_ms: (times[(times.len() - 1) / 2] + times[times.len() / 2]) / 2.0,
        min_ms: times[0],
        p90_ms: times[(9 * (times.len() - 1)) / 10],
        repeats: times.len(),
    }
}

/// What the JSON lines say about this machine and run.
fn context() -> String {
    let simd = if cfg!(any(target_arch = "x86", target_arch = "x86_64")) {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        {
            if std::is_x86_feature_detected!("avx512f") {
                "avx512"
            } else if std::is_x86_feature_detected!("avx2") {
                "avx2"
            } else {
                "baseline"
            }
        }
        #[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
        "baseline"
    } else {
        "baseline"
    };
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()))
        .unwrap_or(f64::NAN);
    format!(
        r#""version": "{}", "threads": {}, "simd": "{simd}", "loadavg": {load}"#,
        env!("CARGO_PKG_VERSION"),
        rayon::current_num_threads()
    )
}

fn row(workload: &str, peer: &str, variant: &str, s: &Stats) -> String {
    format!(
        r#"{{"workload": "{workload}", "peer": "{peer}", "variant": "{variant}", "median_ms": {:.6}, "min_ms": {:.6}, "p90_ms": {:.6}, "repeats": {}, {}}}"#,
        s.median_ms,
        s.min_ms,
        s.p90_ms,
        s.repeats,
        context()
    )
}

fn run_workloads(min_seconds: f64, only: Option<&str>, variants: &str) -> tapeloss::Result<()> {
    let wanted = |v: &str| variants.split(',').any(|w| w == v);
    for w in workloads() {
        if only.is_some_and(|o| !o.split(',').any(|name| name == w.name)) {
            continue;
        }
        let loss = &w.loss;
        let (p, t) = (&w.predictions, &w.targets);
        let mut grad = ArrayD::zeros(p.raw_dim());
        // Fail loudly rather than time an error path.
        loss.value_and_grad_into(p, t, &mut grad)?;
        value_and_grad_on_tape(loss.as_ref(), p, t)?;

        if wanted("into") {
            let s = measure(min_seconds, 50, || {
                black_box(loss.value_and_grad_into(black_box(p), t, &mut grad).ok());
            });
            println!("{}", row(w.name, "tapeloss", "value_and_grad_into", &s));
        }
        if wanted("alloc") {
            let s = measure(min_seconds, 50, || {
                black_box(loss.value_and_grad(black_box(p), t).ok());
            });
            println!("{}", row(w.name, "tapeloss", "value_and_grad", &s));
        }
        if wanted("forward") {
            let s = measure(min_seconds, 50, || {
                black_box(loss.forward(black_box(p), t).ok());
            });
            println!("{}", row(w.name, "tapeloss", "forward", &s));
        }
        if wanted("tape") {
            let s = measure(min_seconds, 20, || {
                black_box(value_and_grad_on_tape(loss.as_ref(), black_box(p), t).ok());
            });
            println!("{}", row(w.name, "tapeloss_tape", "value_and_grad_on_tape", &s));
        }
    }
    Ok(())
}

/// c = a + ½·b: the memory traffic of a fused pointwise loss (read two
/// arrays, write one), compiled for AVX2 like tapeloss's streaming kernels.
struct Triad<'a> {
    a: &'a [f32],
    b: &'a [f32],
    c: &'a mut [f32],
}

impl pulp::WithSimd for Triad<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        for ((ci, &ai), &bi) in self.c.iter_mut().zip(self.a).zip(self.b) {
            *ci = ai + 0.5 * bi;
        }
    }
}

fn triad_one(a: &[f32], b: &[f32], c: &mut [f32]) {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    if let Some(avx2) = pulp::x86::V3::try_new() {
        return pulp::Simd::vectorize(avx2, Triad { a, b, c });
    }
    pulp::Simd::vectorize(pulp::Scalar, Triad { a, b, c })
}

/// The triad on `threads` threads (spawned per call, so at small n this
/// measures the spawn, and the best of one and two threads is the bound).
fn triad(a: &[f32], b: &[f32], c: &mut [f32], threads: usize) {
    if threads < 2 {
        return triad_one(a, b, c);
    }
    let chunk = a.len().div_ceil(threads);
    std::thread::scope(|scope| {
        for ((a, b), c) in a.chunks(chunk).zip(b.chunks(chunk)).zip(c.chunks_mut(chunk)) {
            scope.spawn(move || triad_one(a, b, c));
        }
    });
}

fn run_scaling(min_seconds: f64) -> tapeloss::Result<()> {
    let mut rng = Rng(1);
    let mse = MeanSquaredError::new();
    let single = rayon::ThreadPoolBuilder::new().num_threads(1).build().ok();
    for n in [1_000, 10_000, 100_000, 1_000_000, 10_000_000] {
        let p = rng.array(&[n], Rng::normal);
        let t = rng.array(&[n], Rng::normal);
        let mut g = ArrayD::zeros(p.raw_dim());
        let bytes = 12.0 * n as f64; // read p and t, write the gradient (f32)
        let s = measure(min_seconds, 20, || {
            black_box(mse.value_and_grad_into(black_box(&p), &t, &mut g).ok());
        });
        let s1 = match &single {
            Some(pool) => pool.install(|| {
                measure(min_seconds, 20, || {
                    black_box(mse.value_and_grad_into(black_box(&p), &t, &mut g).ok());
                })
            }),
            None => measure(0.0, 1, || {}),
        };
        let (a, b) = (p.as_slice().unwrap_or(&[]), t.as_slice().unwrap_or(&[]));
        let mut c = vec![0.0_f32; n];
        let one = measure(min_seconds, 20, || triad(black_box(a), b, &mut c, 1));
        let two = measure(min_seconds, 20, || triad(black_box(a), b, &mut c, 2));
        let gbs = |s: &Stats| bytes / (s.median_ms * 1e-3) / 1e9;
        let best = gbs(&one).max(gbs(&two));
        println!(
            r#"{{"mode": "scaling", "n": {n}, "mse_ms": {:.6}, "mse_min_ms": {:.6}, "mse_gbs": {:.2}, "mse_1t_ms": {:.6}, "mse_1t_gbs": {:.2}, "triad_1t_gbs": {:.2}, "triad_2t_gbs": {:.2}, "fraction_of_best_triad": {:.3}, {}}}"#,
            s.median_ms,
            s.min_ms,
            gbs(&s),
            s1.median_ms,
            gbs(&s1),
            gbs(&one),
            gbs(&two),
            gbs(&s).max(gbs(&s1)) / best,
            context()
        );
    }
    Ok(())
}

/// A name, predictions, targets and the loss.
type RowCase = (&'static str, ArrayD<f32>, ArrayD<f32>, Box<dyn Loss<f32> + Sync>);

/// The row-wise losses at growing batch sizes, on a pool of one thread and
/// of two: where a second thread starts to pay (`--rows`).
fn run_rows(min_seconds: f64) -> tapeloss::Result<()> {
    let pools: Vec<_> = [1, 2]
        .iter()
        .filter_map(|&n| rayon::ThreadPoolBuilder::new().num_threads(n).build().ok())
        .collect();
    let mut rng = Rng(3);
    for n in [32, 64, 128, 256, 512, 1024, 2048, 4096, 8192] {
        let cases: [RowCase; 3] = [
            (
                "cross_entropy_c1000",
                rng.array(&[n, 1000], Rng::normal),
                rng.array(&[n], |r| (r.next() % 1000) as f64),
                Box::new(CrossEntropyLoss::new()),
            ),
            (
                "triplet_d128",
                rng.array(&[n, 3, 128], Rng::normal),
                ArrayD::zeros(IxDyn(&[n])),
                Box::new(TripletLoss::new(MARGIN)),
            ),
            (
                "contrastive_d128",
                rng.array(&[n, 2, 128], Rng::normal),
                rng.array(&[n], |r| (r.next() % 2) as f64),
                Box::new(ContrastiveLoss::new(MARGIN)),
            ),
        ];
        for (name, p, t, loss) in &cases {
            let mut grad = ArrayD::zeros(p.raw_dim());
            let mut stats = pools.iter().map(|pool| {
                pool.install(|| {
                    measure(min_seconds, 20, || {
                        black_box(loss.value_and_grad_into(black_box(p), t, &mut grad).ok());
                    })
                })
            });
            let (Some(one), Some(two)) = (stats.next(), stats.next()) else {
                continue;
            };
            println!(
                r#"{{"mode": "rows", "loss": "{name}", "rows": {n}, "elements": {}, "one_thread_ms": {:.6}, "one_thread_min_ms": {:.6}, "two_threads_ms": {:.6}, "two_threads_min_ms": {:.6}, {}}}"#,
                p.len(),
                one.median_ms,
                one.min_ms,
                two.median_ms,
                two.min_ms,
                context()
            );
        }
    }
    Ok(())
}

/// The peak resident set of this process so far, in bytes (Linux).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// In a fresh process: the peak memory one call of `variant` adds.
fn memory_one(workload: &str, variant: &str) -> tapeloss::Result<()> {
    let Some(w) = self::workload(workload) else {
        return Ok(());
    };
    let loss = &w.loss;
    let before = peak_rss();
    match variant {
        "tape" => drop(value_and_grad_on_tape(loss.as_ref(), &w.predictions, &w.targets)?),
        _ => drop(loss.value_and_grad(&w.predictions, &w.targets)?),
    }
    if let (Some(before), Some(after)) = (before, peak_rss()) {
        let input = (w.predictions.len() + w.targets.len()) * std::mem::size_of::<f32>();
        println!(
            r#"{{"mode": "memory", "workload": "{workload}", "variant": "{variant}", "peak_added_bytes": {}, "input_bytes": {input}}}"#,
            after.saturating_sub(before)
        );
    }
    Ok(())
}

/// Runs [`memory_one`] in a child process per workload and variant.
fn run_memory() -> tapeloss::Result<()> {
    let Ok(exe) = std::env::current_exe() else {
        return Ok(());
    };
    for name in NAMES {
        for variant in ["closed", "tape"] {
            let out = std::process::Command::new(&exe)
                .args(["--memory-one", name, variant])
                .output();
            if let Ok(out) = out {
                print!("{}", String::from_utf8_lossy(&out.stdout));
            }
        }
    }
    Ok(())
}

fn main() -> tapeloss::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let value_of = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let min_seconds = value_of("--min-seconds").and_then(|s| s.parse().ok()).unwrap_or(1.0);
    if let Some(i) = args.iter().position(|a| a == "--memory-one") {
        let arg = |k: usize| args.get(i + k).map(String::as_str).unwrap_or("");
        return memory_one(arg(1), arg(2));
    }
    if args.iter().any(|a| a == "--memory") {
        run_memory()
    } else if args.iter().any(|a| a == "--scaling") {
        run_scaling(min_seconds)
    } else if args.iter().any(|a| a == "--rows") {
        run_rows(min_seconds)
    } else {
        let variants = value_of("--variants").unwrap_or_else(|| "into,alloc,tape".to_string());
        run_workloads(min_seconds, value_of("--workloads").as_deref(), &variants)
    }
}
