//! The tape's price: for every built-in loss on its workload from the
//! performance issue, the median time of the fused closed form
//! (`Loss::value_and_grad`) against the tape's derivation of the same value
//! and gradient (`losses::value_and_grad_on_tape`), in `f32`.
//!
//! Run with `cargo run --release --example tape_vs_closed [-- [--warm] [--small] [NAME_FILTER [BLOCKS]]]`.
//! `--small` runs every workload at about 1,000 elements instead (a loss on
//! a small batch, where the tape's bookkeeping per op weighs most).
//!
//! Each side is timed in blocks of back-to-back calls lasting about 100 ms,
//! closed form and tape alternating block by block, so a burst of load on a
//! shared machine hits both. Two medians over the blocks are printed per side,
//! in milliseconds per call (microseconds with `--small`): the CPU time of
//! all of this process's threads (from `/proc/self/task/*/schedstat`, where
//! available), which a busy neighbour does not inflate, and wall-clock time.
//! Both sides split large inputs over the thread pool, but not alike: the
//! closed forms of the cheap losses build their gradient on one thread,
//! which measured faster (their CPU time is about their wall time below),
//! while the tape's chains run on both cores.
//! So with two threads the CPU ratio weighs the tape's second core (and the
//! pool's spinning) against a closed form on one, and the wall-clock ratio
//! is the time a caller waits; `RAYON_NUM_THREADS=1` puts both sides on one
//! thread, where the two ratios agree.
//!
//! The tape is handed the caller's arrays themselves (see `src/tape/lent.rs`),
//! so the route copies neither input.
//!
//! The last columns count the minor page faults per call. With glibc's
//! allocator, arrays of a few MiB come from the heap, and freeing more than
//! its trim threshold at the top of the heap returns that memory to the
//! system, so the next call faults every page in again (about 1 µs per 4 KiB
//! page here). The threshold adapts (twice the largest block of up to 32 MiB
//! freed so far), so how often that happens depends on the process's history.
//! `--warm` frees a 31 MiB block first, as a long-running process will have
//! done, which raises the threshold to 62 MiB; without it, the 16 MiB arrays
//! of cross-entropy are returned and faulted in again on every call.

use std::hint::black_box;
use std::time::Instant;

use tapeloss::losses::{
    BinaryCrossEntropyLoss, ContrastiveLoss, CrossEntropyLoss, FocalLoss, HingeEmbeddingLoss, HuberLoss, Loss,
    MeanAbsoluteError, MeanSquaredError, SmoothL1Loss, SoftMarginLoss, TripletLoss, value_and_grad_on_tape,
};
use tapeloss::ndarray::{ArrayD, IxDyn};
use tapeloss::{KlDivLoss, MultiMarginLoss, NllLoss, PoissonNllLoss};

/// A seeded xorshift generator: the same inputs on every run.
struct Rng(u64);

impl Rng {
    fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }

    fn array(&mut self, shape: &[usize], lo: f32, hi: f32) -> ArrayD<f32> {
        ArrayD::from_shape_simple_fn(IxDyn(shape), || lo + (hi - lo) * self.next_f32())
    }
}

/// CPU time of every thread of this process in nanoseconds (the closed
/// forms run on a thread pool above a size threshold), if the kernel reports
/// it.
fn process_cpu_ns() -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// Minor page faults of this process so far, if the kernel reports them.
fn minor_faults() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the parenthesised command name; minflt is the 10th field.
    stat.rsplit_once(')')?.1.split_whitespace().nth(7)?.parse().ok()
}

/// One workload: a loss and its inputs.
struct Case {
    name: &'static str,
    size: String,
    loss: Box<dyn Loss<f32>>,
    predictions: ArrayD<f32>,
    targets: ArrayD<f32>,
}

/// `dims` as `a×b×c`.
fn size_of(dims: &[usize]) -> String {
    dims.iter().map(usize::to_string).collect::<Vec<_>>().join("×")
}

/// The workloads: those of the performance issue, or with `small` about
/// 1,000 elements each.
fn cases(small: bool) -> Vec<Case> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let n = if small { 1000 } else { 1 << 20 };
    let pick = |large: &[usize], few: &[usize]| if small { few.to_vec() } else { large.to_vec() };
    let (focal, logits, classes) = (
        pick(&[65536, 16], &[63, 16]),
        pick(&[4096, 1000], &[10, 100]),
        if small { 100.0 } else { 1000.0 },
    );
    let (triplets, pairs) = (pick(&[4096, 3, 128], &[8, 3, 42]), pick(&[4096, 2, 128], &[8, 2, 64]));
    let mut out = Vec::new();
    let pointwise = |name, loss: Box<dyn Loss<f32>>, p: (f32, f32), t: (f32, f32), rng: &mut Rng| Case {
        name,
        size: if small { size_of(&[n]) } else { "1,048,576".into() },
        loss,
        predictions: rng.array(&[n], p.0, p.1),
        targets: rng.array(&[n], t.0, t.1),
    };
    out.push(pointwise(
        "MSE",
        Box::new(MeanSquaredError::new()),
        (-2.0, 2.0),
        (-2.0, 2.0),
        &mut rng,
    ));
    out.push(pointwise(
        "MAE",
        Box::new(MeanAbsoluteError::new()),
        (-2.0, 2.0),
        (-2.0, 2.0),
        &mut rng,
    ));
    out.push(pointwise(
        "Huber δ=1",
        Box::new(HuberLoss::new(1.0)),
        (-2.0, 2.0),
        (-2.0, 2.0),
        &mut rng,
    ));
    out.push(pointwise(
        "SmoothL1 β=1",
        Box::new(SmoothL1Loss::new(1.0)),
        (-2.0, 2.0),
        (-2.0, 2.0),
        &mut rng,
    ));
    out.push(pointwise(
        "BCE logits",
        Box::new(BinaryCrossEntropyLoss::with_logits()),
        (-4.0, 4.0),
        (0.0, 1.0),
        &mut rng,
    ));
    out.push(pointwise(
        "BCE probabilities",
        Box::new(BinaryCrossEntropyLoss::new()),
        (0.01, 0.99),
        (0.0, 1.0),
        &mut rng,
    ));
    // The margin losses take labels −1 or 1: targets in [0, 1] rounded, then mapped.
    let signed = |mut case: Case| {
        case.targets.mapv_inplace(|t| 2.0 * t.round() - 1.0);
        case
    };
    out.push(signed(pointwise(
        "soft margin",
        Box::new(SoftMarginLoss::new()),
        (-4.0, 4.0),
        (0.0, 1.0),
        &mut rng,
    )));
    out.push(signed(pointwise(
        "hinge emb. Δ=1",
        Box::new(HingeEmbeddingLoss::new(1.0)),
        (0.0, 2.0),
        (0.0, 1.0),
        &mut rng,
    )));
    out.push(pointwise(
        "KL divergence",
        Box::new(KlDivLoss::new()),
        (-8.0, 0.0),
        (0.0, 1.0),
        &mut rng,
    ));
    out.push(pointwise(
        "Poisson NLL",
        Box::new(PoissonNllLoss::new()),
        (-4.0, 4.0),
        (0.0, 8.0),
        &mut rng,
    ));
    out.push(Case {
        name: "focal γ=2 α=.25",
        size: size_of(&focal),
        loss: Box::new(FocalLoss::new(2.0, Some(0.25), 1e-6)),
        predictions: rng.array(&focal, 0.01, 0.99),
        targets: rng.array(&focal, 0.0, 1.0).mapv(f32::round),
    });
    out.push(Case {
        name: "cross-entropy",
        size: size_of(&logits),
        loss: Box::new(CrossEntropyLoss::new()),
        predictions: rng.array(&logits, -3.0, 3.0),
        targets: rng
            .array(&logits[..1], 0.0, classes)
            .mapv(|t| t.floor().min(classes - 1.0)),
    });
    // Log-probabilities in [−8, 0] and scores in [−3, 3], with the same class indices.
    for (name, loss, range) in [
        ("NLL", Box::new(NllLoss::new()) as Box<dyn Loss<f32>>, (-8.0, 0.0)),
        ("multi-margin", Box::new(MultiMarginLoss::new()), (-3.0, 3.0)),
    ] {
        out.push(Case {
            name,
            size: size_of(&logits),
            loss,
            predictions: rng.array(&logits, range.0, range.1),
            targets: rng
                .array(&logits[..1], 0.0, classes)
                .mapv(|t| t.floor().min(classes - 1.0)),
        });
    }
    out.push(Case {
        name: "triplet",
        size: size_of(&triplets),
        loss: Box::new(TripletLoss::new(1.0)),
        predictions: rng.array(&triplets, -0.1, 0.1),
        targets: ArrayD::zeros(IxDyn(&[3])),
    });
    out.push(Case {
        name: "contrastive",
        size: size_of(&pairs),
        loss: Box::new(ContrastiveLoss::new(1.0)),
        predictions: rng.array(&pairs, -0.1, 0.1),
        targets: rng.array(&pairs[..1], 0.0, 1.0).mapv(f32::round),
    });
    out
}

/// The median of some samples (sorted in place).
fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    let mid = samples.len() / 2;
    if samples.len() % 2 == 1 {
        samples[mid]
    } else {
        (samples[mid - 1] + samples[mid]) / 2.0
    }
}

/// Per call of `calls` back-to-back calls: wall milliseconds, CPU
/// milliseconds and minor page faults. The thread's CPU clock in `/proc`
/// advances in coarse steps, so it is read only around a block long enough
/// (about 100 ms) for a step to matter little.
fn time_block(calls: usize, f: &mut dyn FnMut()) -> (f64, Option<f64>, Option<f64>) {
    let (faults0, cpu0) = (minor_faults(), process_cpu_ns());
    let t0 = Instant::now();
    for _ in 0..calls {
        f();
    }
    let wall = t0.elapsed().as_secs_f64() * 1e3 / calls as f64;
    let per_call = |a: Option<u64>, b: Option<u64>, unit: f64| match (a, b) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / unit / calls as f64),
        _ => None,
    };
    let cpu = per_call(cpu0, process_cpu_ns(), 1e6);
    (wall, cpu, per_call(faults0, minor_faults(), 1.0))
}

/// How many calls make a block of about 100 ms, from one timed call.
fn block_size(f: &mut dyn FnMut()) -> usize {
    let t0 = Instant::now();
    f();
    let once = t0.elapsed().as_secs_f64();
    ((0.1 / once.max(1e-7)).ceil() as usize).clamp(1, 1_000_000)
}

fn main() -> tapeloss::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let warm = args.iter().any(|a| a == "--warm");
    let small = args.iter().any(|a| a == "--small");
    args.retain(|a| a != "--warm" && a != "--small");
    // Times per call in milliseconds, or microseconds for the small inputs.
    let (unit, per_ms) = if small { ("µs", 1e3) } else { ("ms", 1.0) };
    let filter = args.first().map(|s| s.to_lowercase()).unwrap_or_default();
    let min_blocks: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(15);
    if warm {
        black_box(vec![1_u8; 31 << 20]); // allocated and freed: see the module docs
    }

    println!(
        "{:<18} {:>11} | {:>9} {:>9} | {:>9} {:>9} | {:>6} {:>6} | {:>7} {:>7}",
        "loss",
        "size",
        format!("closed {unit}"),
        "(wall)",
        format!("tape {unit}"),
        "(wall)",
        "ratio",
        "(wall)",
        "faults",
        "(tape)"
    );
    for case in cases(small) {
        if !case.name.to_lowercase().contains(&filter) {
            continue;
        }
        let (p, t, loss) = (&case.predictions, &case.targets, case.loss.as_ref());
        // Both agree before anything is timed (and the pages are warm).
        let (vc, gc) = loss.value_and_grad(p, t)?;
        let (vt, gt) = value_and_grad_on_tape(loss, p, t)?;
        let worst = gc.iter().zip(&gt).map(|(a, b)| (a - b).abs()).fold(0.0_f32, f32::max);
        let scale = gc.iter().map(|a| a.abs()).fold(0.0_f32, f32::max);
        assert!(
            (vc - vt).abs() <= 1e-3 * vc.abs().max(1e-3) && worst <= 1e-3 * scale.max(1e-12),
            "{}: closed form and tape disagree: value {vc} vs {vt}, gradient by up to {worst}",
            case.name
        );

        let mut run_closed = || {
            black_box(loss.value_and_grad(black_box(p), black_box(t)).ok());
        };
        let mut run_tape = || {
            black_box(value_and_grad_on_tape(loss, black_box(p), black_box(t)).ok());
        };
        let k_closed = block_size(&mut run_closed);
        let k_tape = block_size(&mut run_tape);
        let (mut closed, mut tape) = ((vec![], vec![], vec![]), (vec![], vec![], vec![]));
        while closed.0.len() < min_blocks {
            // Alternating blocks, so that a burst of load hits every side.
            let (w, c, f) = time_block(k_closed, &mut run_closed);
            closed.0.push(w);
            closed.1.extend(c);
            closed.2.extend(f);
            let (w, c, f) = time_block(k_tape, &mut run_tape);
            tape.0.push(w);
            tape.1.extend(c);
            tape.2.extend(f);
        }
        let faults = |v: &mut Vec<f64>| if v.is_empty() { f64::NAN } else { median(v) };
        let (fc, ft) = (faults(&mut closed.2), faults(&mut tape.2));
        let (cw, tw) = (median(&mut closed.0), median(&mut tape.0));
        let cpu = if closed.1.len() == closed.0.len() && tape.1.len() == tape.0.len() {
            Some((median(&mut closed.1), median(&mut tape.1)))
        } else {
            None
        };
        let (cc, tc) = cpu.unwrap_or((cw, tw));
        println!(
            "{:<18} {:>11} | {:>9.3} {:>9.3} | {:>9.3} {:>9.3} | {:>5.1}× {:>5.1}× | {:>7.0} {:>7.0}   ({} blocks of {}/{})",
            case.name,
            case.size,
            cc * per_ms,
            cw * per_ms,
            tc * per_ms,
            tw * per_ms,
            tc / cc,
            tw / cw,
            fc,
            ft,
            closed.0.len(),
            k_closed,
            k_tape
        );
    }
    Ok(())
}
