//! Runtime SIMD dispatch, with no special build flags and no `unsafe` here.
//!
//! The kernels are plain scalar Rust written so that LLVM vectorises them
//! (fixed-width lane arrays, loads before stores, no branches in the loop
//! body). [`dispatch`] runs such a kernel inside a function compiled for the
//! best instruction set the CPU reports at run time (AVX-512, AVX2 + FMA, or
//! the baseline; [`dispatch_streaming`] stops at AVX2), through [`pulp`], whose audited `unsafe` checks the CPU
//! features once and keeps them out of this crate (see docs/benchmarks.md,
//! "Why these dependencies").
//!
//! A kernel is a [`pulp::WithSimd`] value whose `with_simd` is
//! `#[inline(always)]` and calls only `#[inline(always)]` code, so that all of
//! it is compiled with the target features. (A closure that merely borrows
//! reaches pulp through a `FnOnce` shim which LLVM may keep out of line,
//! silently compiling the kernel for the baseline.)
//!
//! The dispatched code computes the same operations in the same order as the
//! baseline. Rust never contracts `a * b + c` into a fused multiply-add on its
//! own; the one place that asks for it is `fastmath`'s `MulAdd`, in the
//! polynomials of `exp` and `ln`, fused on levels with FMA (AVX2, AVX-512).
//! So AVX2 and AVX-512 give the same bits, and the baseline may differ from
//! them in the last bit of a term with `exp` or `ln` (within the same stated
//! error bounds); every level gives the same bits on any number of threads.
//!
//! `TAPELOSS_SIMD=baseline` or `=avx2`, read once per process, caps the level
//! (for benchmarks and for ruling SIMD out when debugging). It cannot raise
//! it, and changes the speed and, at the baseline, those last bits.

use std::sync::OnceLock;

pub(crate) use pulp::WithSimd as Kernel;

/// The instruction set chosen once per process.
fn arch() -> pulp::Arch {
    static ARCH: OnceLock<pulp::Arch> = OnceLock::new();
    *ARCH.get_or_init(|| capped(pulp::Arch::new(), std::env::var("TAPELOSS_SIMD").ok().as_deref()))
}

/// `best`, lowered to the level named by `cap` when that is lower.
fn capped(best: pulp::Arch, cap: Option<&str>) -> pulp::Arch {
    match cap {
        Some("baseline") => pulp::Arch::Scalar,
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        Some("avx2") => match best {
            pulp::Arch::V4(_) => pulp::x86::V3::try_new().map_or(pulp::Arch::Scalar, pulp::Arch::V3),
            other => other,
        },
        _ => best,
    }
}

/// Runs `kernel` compiled for the best instruction set of this CPU: for
/// kernels that compute more than they move (exp, ln, divisions), where
/// AVX-512 measured 1.7× faster than AVX2 here.
#[inline(always)]
pub(crate) fn dispatch<K: Kernel>(kernel: K) -> K::Output {
    #[cfg(test)]
    if FORCE_BASELINE.get() {
        return pulp::Arch::Scalar.dispatch(kernel);
    }
    arch().dispatch(kernel)
}

/// Runs `kernel` compiled for AVX2 at most: for kernels that stream memory
/// with a few operations per element (MSE's), where 512-bit vectors measured
/// 2–16% slower than 256-bit ones in L3 and mostly slower from DRAM, and only
/// about 5% faster in L2, on a Zen 4 (docs/benchmarks.md).
#[inline(always)]
pub(crate) fn dispatch_streaming<K: Kernel>(kernel: K) -> K::Output {
    #[cfg(test)]
    if FORCE_BASELINE.get() {
        return pulp::Arch::Scalar.dispatch(kernel);
    }
    streaming_arch().dispatch(kernel)
}

/// [`arch`] capped at AVX2.
fn streaming_arch() -> pulp::Arch {
    static ARCH: OnceLock<pulp::Arch> = OnceLock::new();
    *ARCH.get_or_init(|| capped(arch(), Some("avx2")))
}

#[cfg(test)]
thread_local! {
    static FORCE_BASELINE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with every [`dispatch`] on this thread held to the baseline
/// instruction set: the reference the tests compare the dispatched kernels
/// with, bit for bit where no `exp` or `ln` is involved.
#[cfg(test)]
pub(crate) fn baseline<R>(f: impl FnOnce() -> R) -> R {
    FORCE_BASELINE.set(true);
    let result = f();
    FORCE_BASELINE.set(false);
    result
}

/// The name of a level: `"avx512"`, `"avx2"`, `"neon"` or `"baseline"`.
#[cfg(test)]
fn name(arch: pulp::Arch) -> &'static str {
    match arch {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        pulp::Arch::V4(_) => "avx512",
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        pulp::Arch::V3(_) => "avx2",
        #[cfg(target_arch = "aarch64")]
        pulp::Arch::Neon(_) => "neon",
        _ => "baseline",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_the_best_level_the_cpu_has() {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        {
            let avx512 = std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512bw")
                && std::is_x86_feature_detected!("avx512cd")
                && std::is_x86_feature_detected!("avx512dq")
                && std::is_x86_feature_detected!("avx512vl");
            let avx2 = std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
            let expected = if avx512 {
                "avx512"
            } else if avx2 {
                "avx2"
            } else {
                "baseline"
            };
            assert_eq!(name(pulp::Arch::new()), expected);
            let avx2_or_less = if avx2 { "avx2" } else { "baseline" };
            assert_eq!(name(capped(pulp::Arch::new(), Some("avx2"))), avx2_or_less);
        }
        assert_eq!(name(capped(pulp::Arch::new(), Some("baseline"))), "baseline");
        assert_eq!(name(capped(pulp::Arch::new(), Some("junk"))), name(pulp::Arch::new()));
    }

    #[test]
    fn baseline_override_is_scoped_to_the_call() {
        assert!(baseline(|| FORCE_BASELINE.get()));
        assert!(!FORCE_BASELINE.get());
    }
}
