//! The scalar bound shared by the whole crate.

use ndarray::NdFloat;

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// The floating-point element types the crate computes in: `f32` and `f64`.
///
/// It extends [`ndarray::NdFloat`] (so every `num_traits::Float` method such as
/// `exp`, `ln` and `ln_1p` is available) with conversions to `f64` (exact) and
/// from it (rounding to nearest for `f32`), the type in which every loss keeps
/// its hyperparameters. The trait is
/// sealed: the kernels and tolerances are written for exactly these two types.
///
/// ```
/// use tapeloss::Float;
/// fn half<F: Float>(x: F) -> F { x * F::from_f64(0.5) }
/// assert_eq!(half(3.0_f32), 1.5);
/// assert_eq!(half(3.0_f64).as_f64(), 1.5);
/// ```
pub trait Float: NdFloat + Default + sealed::Sealed + 'static {
    /// The type's name, `"f32"` or `"f64"`, for messages and reports.
    const NAME: &'static str;

    /// Converts from `f64`, rounding to nearest for `f32`.
    fn from_f64(value: f64) -> Self;

    /// Converts to `f64` exactly.
    fn as_f64(self) -> f64;
}

impl Float for f32 {
    const NAME: &'static str = "f32";

    #[inline(always)]
    fn from_f64(value: f64) -> Self {
        value as f32
    }

    #[inline(always)]
    fn as_f64(self) -> f64 {
        f64::from(self)
    }
}

impl Float for f64 {
    const NAME: &'static str = "f64";

    #[inline(always)]
    fn from_f64(value: f64) -> Self {
        value
    }

    #[inline(always)]
    fn as_f64(self) -> f64 {
        self
    }
}
