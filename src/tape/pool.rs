//! A per-thread pool of the tape's large buffers, so that a training loop
//! that builds a tape per step reuses the same memory instead of asking the
//! system for it on every call.
//!
//! Without it, each call allocated and freed arrays of the input's size.
//! glibc returns a freed region at the top of its heap to the system once it
//! exceeds its trim threshold (twice the largest block freed so far, at most
//! 64 MiB), so the next call faulted every page in again, and with rayon's
//! worker sharing the address space each return cost a TLB shootdown across
//! cores. Huber on 2²⁰ elements took 14 ms a call that way against 2.0 ms with
//! trimming turned off (`MALLOC_TRIM_THRESHOLD_`), in `bench_workloads`.
//!
//! Buffers come back when a [`super::Tape`] or [`super::Gradients`] is
//! dropped and when the sweep has passed a gradient on; they go out to the
//! tape's copies of its inputs, the arrays the fused chains write, and new
//! gradients. Only buffers of at least [`MIN_BYTES`] are kept (the allocator
//! serves smaller ones from its own free lists), at most [`MAX_BUFFERS`] of
//! them and [`MAX_BYTES`] in all per thread; past that the oldest is freed.
//! A buffer is handed out with length 0, so every caller writes each element
//! it reads (no stale values can leak through), except by [`for_overwrite`],
//! whose callers overwrite every element before anything reads it.

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::mem::size_of;
use std::thread::LocalKey;

use ndarray::ArrayD;

use super::layout::from_vec;
use crate::float::Float;
use crate::kernels::parallel;

/// Smaller buffers are left to the allocator.
pub(crate) const MIN_BYTES: usize = 1 << 18;
/// The most a thread's pool holds, over both float types.
pub(crate) const MAX_BYTES: usize = 1 << 26;
/// The most buffers a thread's pool holds.
pub(crate) const MAX_BUFFERS: usize = 16;

/// Free buffers, oldest first: each a `Vec<f32>` or `Vec<f64>` with its size
/// in bytes.
#[derive(Default)]
struct Pool {
    free: Vec<(usize, Box<dyn Any>)>,
    bytes: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool::default());
    static REGISTERS: RefCell<Registers> = RefCell::new(Registers::default());
}

/// The most registers a thread keeps per float type (256 KiB of `f32`
/// registers of 1024 elements).
const MAX_REGISTERS: usize = 64;

/// The fused chains' free registers, kept between calls: a chain writes
/// each register before reading it, so a reused one needs no zeroing, where
/// a new one is zeroed (at about 1,000 elements, the 28 zeroed registers of
/// BCE on logits' chain cost a sixth of its tape time: 9.0 → 7.5 µs).
#[derive(Default)]
struct Registers {
    f32s: Vec<Vec<f32>>,
    f64s: Vec<Vec<f64>>,
}

impl Registers {
    /// The free registers of `F`.
    fn of<F: Float>(&mut self) -> Option<&mut Vec<Vec<F>>> {
        if TypeId::of::<F>() == TypeId::of::<f32>() {
            (&mut self.f32s as &mut dyn Any).downcast_mut()
        } else {
            (&mut self.f64s as &mut dyn Any).downcast_mut()
        }
    }

    /// The bytes held.
    fn bytes(&self) -> usize {
        let f32s: usize = self.f32s.iter().map(Vec::capacity).sum();
        let f64s: usize = self.f64s.iter().map(Vec::capacity).sum();
        f32s * size_of::<f32>() + f64s * size_of::<f64>()
    }
}

/// `count` registers of `len` elements whose values are unspecified (an
/// earlier chain's, or zeros), for a caller that writes each element before
/// reading it; hand them back with [`give_registers`].
pub(crate) fn registers<F: Float>(count: usize, len: usize) -> Vec<Vec<F>> {
    let mut taken = (REGISTERS.try_with(|registers| {
        let mut registers = registers.try_borrow_mut().ok()?;
        let free = registers.of::<F>()?;
        Some(free.split_off(free.len().saturating_sub(count)))
    }))
    .ok()
    .flatten()
    .unwrap_or_default();
    // Shortening writes nothing; lengthening zeroes only the new part.
    taken.iter_mut().for_each(|register| register.resize(len, F::zero()));
    taken.resize_with(count, || vec![F::zero(); len]);
    // Debug builds (the test suite's) poison them: a chain that read an
    // element it had not written would give NaN.
    if cfg!(debug_assertions) {
        taken.iter_mut().for_each(|register| register.fill(F::nan()));
    }
    taken
}

/// Keeps `registers` for the next chain on this thread, up to
/// [`MAX_REGISTERS`].
pub(crate) fn give_registers<F: Float>(registers: Vec<Vec<F>>) {
    let _ = REGISTERS.try_with(|free| {
        if let Ok(mut free) = free.try_borrow_mut()
            && let Some(free) = free.of::<F>()
        {
            let room = MAX_REGISTERS.saturating_sub(free.len());
            free.extend(registers.into_iter().take(room));
        }
    });
}

/// An empty `Vec` with room for `len` elements: the smallest pooled buffer
/// that fits and is at most a quarter larger (a gradient handed to the user
/// keeps its buffer, so a much larger one would be held for nothing), else
/// a new allocation.
pub(crate) fn take<F: Float>(len: usize) -> Vec<F> {
    match pooled(len) {
        Some(mut buffer) => {
            buffer.clear();
            buffer
        }
        None => Vec::with_capacity(len),
    }
}

/// The pooled buffer [`take`] would hand out, as it came back (holding
/// whatever values it held then).
fn pooled<F: Float>(len: usize) -> Option<Vec<F>> {
    let bytes = len.saturating_mul(size_of::<F>());
    if bytes < MIN_BYTES {
        return None;
    }
    POOL.try_with(|pool| {
        let mut pool = pool.try_borrow_mut().ok()?;
        let (k, _) = (pool.free.iter().enumerate())
            .filter(|(_, (size, buffer))| buffer.is::<Vec<F>>() && (bytes..=bytes + bytes / 4).contains(size))
            .min_by_key(|(_, (size, _))| *size)?;
        let (size, buffer) = pool.free.remove(k);
        pool.bytes -= size;
        buffer.downcast::<Vec<F>>().ok().map(|buffer| *buffer)
    })
    .ok()
    .flatten()
}

/// A buffer of `len` elements whose values are unspecified (an earlier
/// array's, or zeros), for a caller that overwrites every element before
/// anything reads it: a reused buffer needs no zeroing pass, which would cost
/// a write of the whole array, and the writes can then come from several
/// threads at once. Callers are the kernels that write each element exactly
/// once (tested with buffers full of stale values in `tests/tape_fusion.rs`).
pub(crate) fn for_overwrite<F: Float>(len: usize) -> Vec<F> {
    // Zeroed on both cores when large, as a closed form's new gradient is:
    // a miss is usually the gradient the caller keeps.
    reused(len).unwrap_or_else(|| parallel::zeros(len))
}

/// `len` zeros in a pooled buffer, written on both cores when large (a
/// scatter's 16 MB gradient, say).
pub(crate) fn zeroed<F: Float>(len: usize) -> Vec<F> {
    match reused(len) {
        Some(mut buffer) => {
            parallel::for_each_chunk(
                &mut buffer,
                #[inline(always)]
                |piece| piece.fill(F::zero()),
            );
            buffer
        }
        None => parallel::zeros(len),
    }
}

/// A pooled buffer of `len` elements, holding what it held when it came
/// back (only the part the earlier array did not fill is written here).
fn reused<F: Float>(len: usize) -> Option<Vec<F>> {
    pooled(len).map(|mut buffer| {
        buffer.truncate(len);
        buffer.resize(len, F::zero());
        buffer
    })
}

/// A copy of `x`, row-major, in a pooled buffer: on both cores when `x` is
/// large and contiguous, like the streaming kernels.
pub(crate) fn copy_of<F: Float>(x: &ArrayD<F>) -> ArrayD<F> {
    let buffer = match x.as_slice() {
        Some(elements) => {
            let mut buffer = for_overwrite(elements.len());
            parallel::for_each_piece(&mut buffer, elements, <[F]>::copy_from_slice);
            buffer
        }
        None => {
            let mut buffer = take(x.len());
            buffer.extend(x.iter().copied());
            buffer
        }
    };
    from_vec(x.shape(), buffer)
}

/// Returns a buffer to the pool (or frees it, if small or the pool is full).
pub(crate) fn give<F: Float>(buffer: Vec<F>) {
    let bytes = buffer.capacity().saturating_mul(size_of::<F>());
    if !(MIN_BYTES..=MAX_BYTES).contains(&bytes) {
        return;
    }
    let _ = POOL.try_with(|pool| {
        let Ok(mut pool) = pool.try_borrow_mut() else {
            return;
        };
        while !pool.free.is_empty() && (pool.free.len() >= MAX_BUFFERS || pool.bytes + bytes > MAX_BYTES) {
            let (size, _) = pool.free.remove(0);
            pool.bytes -= size;
        }
        pool.bytes += bytes;
        pool.free.push((bytes, Box::new(buffer)));
    });
}

/// Returns an array's buffer to the pool.
pub(crate) fn give_array<F: Float>(array: ArrayD<F>) {
    give(array.into_raw_vec_and_offset().0);
}

/// Frees every pooled buffer and kept register of this thread; returns
/// their bytes.
pub(crate) fn release() -> usize {
    emptied(&POOL, |pool| pool.bytes) + emptied(&REGISTERS, Registers::bytes)
}

/// Empties this thread's `cache`, returning what `bytes` says it held (0 if
/// the cache is gone or in use).
fn emptied<T: Default>(cache: &'static LocalKey<RefCell<T>>, bytes: impl Fn(&T) -> usize) -> usize {
    (cache.try_with(|cache| {
        cache
            .try_borrow_mut()
            .map(|mut cache| bytes(&std::mem::take(&mut *cache)))
    }))
    .ok()
    .and_then(Result::ok)
    .unwrap_or(0)
}

/// The bytes this thread's pool holds (for tests).
#[cfg(test)]
pub(crate) fn pooled_bytes() -> usize {
    POOL.with(|pool| pool.borrow().bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_buffers_are_reused_and_small_ones_are_not_kept() {
        let n = 2 * MIN_BYTES / 4;
        let mut a = take::<f32>(n);
        a.resize(n, 7.0);
        let address = a.as_ptr();
        let before = pooled_bytes();
        give(a);
        assert_eq!(pooled_bytes(), before + n * 4);
        // An f64 request does not get the f32 buffer; an f32 one does, empty.
        let b = take::<f64>(n / 2);
        assert_ne!(b.as_ptr().cast::<f32>(), address);
        let c = take::<f32>(n);
        assert_eq!((c.as_ptr(), c.len()), (address, 0));
        assert_eq!(pooled_bytes(), before);
        // Small buffers go straight back to the allocator.
        give(vec![0.0_f32; 16]);
        assert_eq!(pooled_bytes(), before);
        // A request much smaller than a pooled buffer does not take it; one
        // slightly smaller does.
        give(c);
        let half = take::<f32>(n / 2);
        assert_eq!(half.capacity(), n / 2);
        let most = take::<f32>(n - n / 8);
        assert_eq!(most.as_ptr(), address);
        assert_eq!(zeroed::<f32>(n), vec![0.0; n]);
    }

    #[test]
    fn registers_are_reused_by_type_and_bounded() {
        release();
        let taken = registers::<f32>(3, 100);
        assert!(taken.len() == 3 && taken.iter().all(|r| r.len() == 100));
        let addresses: Vec<*const f32> = taken.iter().map(|r| r.as_ptr()).collect();
        give_registers(taken);
        // An f64 request does not get them; a shorter f32 one does.
        let other = registers::<f64>(1, 10);
        assert!(!addresses.contains(&other[0].as_ptr().cast()));
        let again = registers::<f32>(2, 50);
        assert!(again.iter().all(|r| r.len() == 50 && addresses.contains(&r.as_ptr())));
        give_registers(again);
        give_registers((0..2 * MAX_REGISTERS).map(|_| vec![0.0_f32; 4]).collect());
        REGISTERS.with(|registers| assert_eq!(registers.borrow().f32s.len(), MAX_REGISTERS));
        assert!(release() >= 100 * size_of::<f32>());
        assert_eq!(release(), 0);
    }

    #[test]
    fn zeroed_buffers_are_zero_when_reused() {
        // One below the length where zeroing splits over the cores, one past it.
        for n in [MIN_BYTES / 4, 1 << 20] {
            let mut stale = take::<f32>(n);
            stale.resize(n, 7.0);
            let address = stale.as_ptr();
            give(stale);
            let zeros = zeroed::<f32>(n);
            assert_eq!(zeros.as_ptr(), address, "n = {n}: the pooled buffer");
            assert!(zeros.iter().all(|&v| v == 0.0), "n = {n}");
        }
    }

    #[test]
    fn the_pool_stays_within_its_bounds() {
        let n = MIN_BYTES / 8;
        for _ in 0..3 * MAX_BUFFERS {
            give(Vec::<f64>::with_capacity(n));
            POOL.with(|pool| {
                let pool = pool.borrow();
                assert!(pool.free.len() <= MAX_BUFFERS && pool.bytes <= MAX_BYTES);
                assert_eq!(pool.bytes, pool.free.iter().map(|(size, _)| size).sum::<usize>());
            });
        }
        // Too large to keep at all.
        let before = pooled_bytes();
        give(Vec::<f32>::with_capacity(MAX_BYTES / 4 + 1));
        assert_eq!(pooled_bytes(), before);
    }

    #[test]
    fn copies_are_row_major_whatever_the_layout() {
        let x = ArrayD::from_shape_vec(vec![2, 3], (0..6).map(f64::from).collect()).expect("2×3");
        assert_eq!(copy_of(&x), x);
        let transposed = x.t().to_owned();
        let column_major = x.clone().reversed_axes();
        assert_eq!(copy_of(&column_major), transposed);
    }
}
