//! The measurements behind tapeloss's dependency choices, on the fused MSE
//! kernel (value and gradient, f32), with the crate's `#![forbid(unsafe_code)]`:
//! 1. SIMD dispatch: pulp against multiversion against none;
//! 2. threads: rayon::join against std::thread::scope, and the size from
//!    which two threads beat one (the kernels' parallel threshold).
//! Prints markdown tables of per-call medians (single calls, so a busy
//! machine's time slicing shows in the tail rather than the median).
#![forbid(unsafe_code)]

use std::hint::black_box;
use std::time::Instant;

use multiversion::multiversion;

const LANES: usize = 16; // as in tapeloss's kernels/pointwise.rs

/// The kernel as tapeloss writes it: lane accumulators, stores after loads.
#[inline(always)]
fn kernel(p: &[f32], t: &[f32], g: &mut [f32], scale: f32) -> f32 {
    let mut total = 0.0;
    for ((pb, tb), gb) in p.chunks(4096).zip(t.chunks(4096)).zip(g.chunks_mut(4096)) {
        let mut acc = [0f32; LANES];
        for ((pc, tc), gc) in pb.chunks_exact(LANES).zip(tb.chunks_exact(LANES)).zip(gb.chunks_exact_mut(LANES)) {
            let mut out = [0f32; LANES];
            for k in 0..LANES {
                let d = pc[k] - tc[k];
                acc[k] += d * d;
                out[k] = scale * (d + d);
            }
            gc.copy_from_slice(&out);
        }
        total += acc.iter().sum::<f32>();
    }
    total
}

#[inline(never)]
fn baseline(p: &[f32], t: &[f32], g: &mut [f32], s: f32) -> f32 {
    kernel(p, t, g, s)
}

// Compiles: the `unsafe` blocks multiversion expands into this crate are not
// seen by `forbid(unsafe_code)` (they carry the macro's spans).
#[multiversion(targets = "simd")]
fn multiversioned(p: &[f32], t: &[f32], g: &mut [f32], s: f32) -> f32 {
    kernel(p, t, g, s)
}

/// The kernel as a pulp operation: a struct whose `with_simd` is inlined
/// into pulp's feature-enabled function. (A closure that only borrows would
/// reach pulp through a `FnOnce` shim that LLVM may leave out of line, losing
/// the target features.)
struct Mse<'a> {
    p: &'a [f32],
    t: &'a [f32],
    g: &'a mut [f32],
    s: f32,
}

impl pulp::WithSimd for Mse<'_> {
    type Output = f32;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) -> f32 {
        kernel(self.p, self.t, self.g, self.s)
    }
}

fn pulp_auto(p: &[f32], t: &[f32], g: &mut [f32], s: f32) -> f32 {
    // Detected once, as tapeloss does: pulp's detection runs CPUID, which a
    // virtual machine may trap.
    static ARCH: std::sync::OnceLock<pulp::Arch> = std::sync::OnceLock::new();
    ARCH.get_or_init(pulp::Arch::new).dispatch(Mse { p, t, g, s })
}

fn pulp_avx2(p: &[f32], t: &[f32], g: &mut [f32], s: f32) -> f32 {
    static V3: std::sync::OnceLock<Option<pulp::x86::V3>> = std::sync::OnceLock::new();
    match *V3.get_or_init(pulp::x86::V3::try_new) {
        Some(v3) => pulp::Simd::vectorize(v3, Mse { p, t, g, s }),
        None => f32::NAN,
    }
}

fn median_us(mut call: impl FnMut() -> f32) -> f64 {
    for _ in 0..20 {
        black_box(call());
    }
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < 50 || start.elapsed().as_secs_f64() < 0.5 {
        let t0 = Instant::now();
        black_box(call());
        times.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

type Kernel = fn(&[f32], &[f32], &mut [f32], f32) -> f32;

/// Two halves of the kernel on two threads, by `rayon::join`.
fn halves_rayon(p: &[f32], t: &[f32], g: &mut [f32], s: f32) -> f32 {
    let mid = p.len() / 2;
    let ((p0, p1), (t0, t1)) = (p.split_at(mid), t.split_at(mid));
    let (g0, g1) = g.split_at_mut(mid);
    let (a, b) = rayon::join(|| pulp_auto(p0, t0, g0, s), || pulp_auto(p1, t1, g1, s));
    a + b
}

/// Two halves of the kernel on two threads, spawning one per call.
fn halves_scope(p: &[f32], t: &[f32], g: &mut [f32], s: f32) -> f32 {
    let mid = p.len() / 2;
    let ((p0, p1), (t0, t1)) = (p.split_at(mid), t.split_at(mid));
    let (g0, g1) = g.split_at_mut(mid);
    std::thread::scope(|scope| {
        let other = scope.spawn(|| pulp_auto(p1, t1, g1, s));
        let a = pulp_auto(p0, t0, g0, s);
        a + other.join().unwrap_or(f32::NAN)
    })
}

fn inputs(n: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let p = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
    let t = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
    (p, t, vec![0.0f32; n])
}

fn table(title: &str, sizes: &[usize], variants: &[(&str, Kernel)]) {
    println!("\n{title}\n");
    println!("| n | {} |", variants.iter().map(|v| v.0).collect::<Vec<_>>().join(" | "));
    println!("|---|{}", "---|".repeat(variants.len()));
    for &n in sizes {
        let (p, t, mut g) = inputs(n);
        let cells: Vec<String> = variants
            .iter()
            .map(|(_, f)| format!("{:.2} µs", median_us(|| f(black_box(&p), &t, &mut g, 1.0 / n as f32))))
            .collect();
        println!("| {n} | {} |", cells.join(" | "));
    }
}

fn main() {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at start: {}", load.split_whitespace().next().unwrap_or("?"));
    table(
        "SIMD dispatch, one thread (median per call)",
        &[1_000, 100_000, 1 << 20, 10_000_000],
        &[
            ("no dispatch (SSE2)", baseline),
            ("multiversion", multiversioned),
            ("pulp (best: AVX-512 here)", pulp_auto),
            ("pulp, AVX2 forced", pulp_avx2),
        ],
    );
    let nothing_rayon = median_us(|| {
        let (a, b) = rayon::join(|| black_box(1.0f32), || black_box(2.0f32));
        a + b
    });
    let nothing_scope = median_us(|| {
        std::thread::scope(|scope| {
            let other = scope.spawn(|| black_box(2.0f32));
            black_box(1.0f32) + other.join().unwrap_or(f32::NAN)
        })
    });
    println!("\nHanding an empty half to a second thread: rayon::join {nothing_rayon:.2} µs, std::thread::scope {nothing_scope:.2} µs");
    table(
        "Two threads against one (pulp best level; median per call)",
        &[16_384, 32_768, 65_536, 131_072, 262_144, 1 << 20, 4 << 20],
        &[
            ("one thread", pulp_auto),
            ("rayon::join, two halves", halves_rayon),
            ("std::thread::scope, two halves", halves_scope),
        ],
    );
}
