//! Peak heap use of one value-and-gradient call, closed form against tape, on
//! the workloads of the performance issue: mean squared error on 2²⁰ `f32`
//! elements and cross-entropy on `f32` logits of 4096 × 1000 with class-index
//! targets.
//!
//! For each, the peak of live bytes above what was live before the call:
//! - the closed form, `Loss::value_and_grad` (its gradient is most of it);
//! - the tape, `losses::value_and_grad_on_tape`, which lends the caller's
//!   predictions and targets to a tape (no copies), records the loss, sweeps
//!   once and returns the gradient;
//! - the same tape call taken apart, on a tape built here as a user would:
//!   the peak while recording, and the peak once the sweep has run (the
//!   sweep adds gradients in flight). This tape owns a clone of the
//!   predictions, made before the count starts, and `record` copies the
//!   targets onto it (a tape built outside `value_and_grad_on_tape` is lent
//!   nothing).
//!
//! Each is also given as a multiple of the predictions' size. Run with
//! `cargo run --release --example tape_memory`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use tapeloss::Tape;
use tapeloss::losses::{CrossEntropyLoss, Loss, MeanSquaredError, value_and_grad_on_tape};
use tapeloss::ndarray::{ArrayD, IxDyn};

/// The system allocator, counting live bytes and their high-water mark.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to `System`, which upholds the
// `GlobalAlloc` contract; the counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same layout, same contract as the caller's.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same layout, same contract as the caller's.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with this layout (see `alloc`).
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const MIB: f64 = 1024.0 * 1024.0;

/// Starts counting a new peak from what is live now; returns that baseline.
fn reset() -> usize {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    base
}

/// The peak above `base` so far.
fn peak_since(base: usize) -> usize {
    PEAK.load(Ordering::Relaxed) - base
}

fn report(what: &str, bytes: usize, input_bytes: usize) {
    println!(
        "  {what:<44} {:>8.2} MiB  {:>5.2} × the predictions",
        bytes as f64 / MIB,
        bytes as f64 / input_bytes as f64
    );
}

/// Measures one workload; `tape_only` records the same loss and sweeps, with
/// the predictions already moved onto the tape.
fn measure(name: &str, loss: &dyn Loss<f32>, p: ArrayD<f32>, t: ArrayD<f32>) -> tapeloss::Result<()> {
    let input_bytes = p.len() * std::mem::size_of::<f32>();
    println!(
        "{name}: predictions {:?} = {:.2} MiB",
        p.shape(),
        input_bytes as f64 / MIB
    );

    let base = reset();
    let (closed_value, grad) = loss.value_and_grad(&p, &t)?;
    let closed = peak_since(base);
    drop(grad);

    let base = reset();
    let (tape_value, grad) = value_and_grad_on_tape(loss, &p, &t)?;
    let whole = peak_since(base);
    drop(grad);

    // The same call taken apart; the predictions' copy is made before the
    // baseline here, so these peaks leave it out.
    let tape = Tape::new();
    let x = tape.var(p.clone());
    let base = reset();
    let out = loss.record(&tape, x, &t)?;
    let recorded = peak_since(base);
    let grads = tape.backward(out)?;
    let swept = peak_since(base);
    drop(grads);

    println!("  value: closed form {closed_value}, tape {tape_value}");
    report("closed form, value_and_grad", closed, input_bytes);
    report("tape, value_and_grad_on_tape", whole, input_bytes);
    report("  of which recording (predictions on the tape)", recorded, input_bytes);
    report("  recording and sweep", swept, input_bytes);
    Ok(())
}

/// A seeded xorshift stream in `[0, 1)`.
fn uniform(seed: u64) -> impl FnMut() -> f32 {
    let mut state = seed;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32
    }
}

fn main() -> tapeloss::Result<()> {
    let mut u = uniform(0x9E37_79B9_7F4A_7C15);
    let n = 1 << 20;
    let p = ArrayD::from_shape_simple_fn(IxDyn(&[n]), || 4.0 * u() - 2.0);
    let t = ArrayD::from_shape_simple_fn(IxDyn(&[n]), || 4.0 * u() - 2.0);
    measure("MSE on 2^20 f32 elements", &MeanSquaredError::new(), p, t)?;
    println!();

    let logits = ArrayD::from_shape_simple_fn(IxDyn(&[4096, 1000]), || 6.0 * u() - 3.0);
    let classes = ArrayD::from_shape_simple_fn(IxDyn(&[4096]), || (1000.0 * u()).floor().min(999.0));
    measure(
        "Cross-entropy on 4096 x 1000 f32 logits, class indices",
        &CrossEntropyLoss::new(),
        logits,
        classes,
    )
}
