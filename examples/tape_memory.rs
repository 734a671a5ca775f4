//! Peak heap use of the tape for mean squared error on 2²⁰ `f32` elements:
//! `p.sub(t).square().mean()` and one backward sweep.
//!
//! Run with `cargo run --release --example tape_memory`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use tapeloss::Tape;
use tapeloss::ndarray::ArrayD;

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

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with this layout (see `alloc`).
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const MIB: f64 = 1024.0 * 1024.0;

fn mib(bytes: usize) -> String {
    format!("{:.2} MiB", bytes as f64 / MIB)
}

fn main() -> tapeloss::Result<()> {
    let n = 1 << 20;
    let array_bytes = n * std::mem::size_of::<f32>();
    let p = ArrayD::from_shape_fn(vec![n], |i| (i[0] % 1000) as f32 / 1000.0);
    let t = ArrayD::from_shape_fn(vec![n], |i| (i[0] % 777) as f32 / 777.0);
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);

    let tape = Tape::<f32>::new();
    let p = tape.var(p); // the inputs move onto the tape: no copy
    let t = tape.constant(t);
    let loss = p.sub(t)?.square()?.mean()?;
    let forward_peak = PEAK.load(Ordering::Relaxed) - base;

    let grads = tape.backward(loss)?;
    let total_peak = PEAK.load(Ordering::Relaxed) - base;
    let dp = grads.wrt(p).map_or(0, |g| g.len());

    println!("MSE on {n} f32 elements (one array = {})", mib(array_bytes));
    println!("loss = {}, gradient elements = {dp}", loss.item()?);
    println!(
        "peak above the inputs, forward only:      {} ({:.2} arrays)",
        mib(forward_peak),
        forward_peak as f64 / array_bytes as f64
    );
    println!(
        "peak above the inputs, forward + backward: {} ({:.2} arrays)",
        mib(total_peak),
        total_peak as f64 / array_bytes as f64
    );
    Ok(())
}
