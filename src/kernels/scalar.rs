//! Numerically stable scalar functions shared by tape ops and closed forms.

use super::fastmath::{self, MulAdd};
use crate::float::Float;

/// The logistic function 1 / (1 + e^(−x)), without overflow for any x
/// (e^(−|x|) ≤ 1 in both arms), from [`Logistic`]'s fast `exp`.
#[inline(always)]
pub(crate) fn sigmoid<F: Float>(m: MulAdd, x: F) -> F {
    let k = Logistic::new(m, x);
    k.a * k.r
}

/// ln(1 + e^x), as max(x, 0) + ln(1 + e^(−|x|)): exact for large |x|.
#[inline(always)]
pub(crate) fn softplus<F: Float>(m: MulAdd, x: F) -> F {
    x.max(F::zero()) + Logistic::new(m, x).l
}

/// ln σ(x) = −softplus(−x), finite for every finite x.
#[inline(always)]
pub(crate) fn log_sigmoid<F: Float>(m: MulAdd, x: F) -> F {
    x.min(F::zero()) - Logistic::new(m, x).l
}

/// What softplus(±x) and σ(±x) share, from one fast `exp`, one fast `ln`
/// (≤ 1 ulp each, [`fastmath`]) and one division, for the vectorised closed
/// forms: `softplus(x) = max(x, 0) + l`, `softplus(−x) = max(−x, 0) + l`,
/// `σ(x) = a·r` and `σ(−x) = b·r`. Divisions are the slowest instructions
/// in these loops (a profile of BCE on logits had three per element); the
/// one reciprocal serves both sigmoids and `ln_1p`'s correction.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Logistic<F> {
    /// `l = ln(1 + e^(−|x|))`.
    pub(crate) l: F,
    /// `(a, b)`: `(1, e^(−|x|))` for `x ≥ 0`, else `(e^(−|x|), 1)`.
    pub(crate) a: F,
    pub(crate) b: F,
    /// `r = 1/(1 + e^(−|x|))`.
    pub(crate) r: F,
}

impl<F: Float> Logistic<F> {
    #[inline(always)]
    pub(crate) fn new(m: MulAdd, x: F) -> Self {
        let z = fastmath::exp(m, -x.abs());
        let one = F::one();
        // Selects, not branches, so the loop stays vectorised; NaN takes the
        // second arm and spreads through `z`.
        let (a, b) = if x >= F::zero() { (one, z) } else { (z, one) };
        let d = one + z;
        let r = one / d;
        // ln(1 + z) = ln d + ln(1 + c/d), where c = z − (d − 1) is the
        // rounding error of d, so c/d is below an ulp and ln(1 + c/d) = c·r
        // to second order. (For z < ulp/2, d = 1 and l = z exactly.)
        Logistic {
            l: m.apply(z - (d - one), r, fastmath::ln_normal(m, d)),
            a,
            b,
            r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_at_extremes() {
        for m in [MulAdd::SEPARATE, MulAdd::FUSED] {
            stable_at_extremes_with(m);
        }
    }

    fn stable_at_extremes_with(m: MulAdd) {
        assert_eq!(sigmoid(m, 1e4_f64), 1.0);
        assert_eq!(sigmoid(m, -1e4_f64), 0.0);
        assert_eq!(softplus(m, 1e4_f32), 1e4);
        assert_eq!(softplus(m, -1e4_f32), 0.0);
        assert_eq!(log_sigmoid(m, -1e4_f64), -1e4);
        // Against the naive forms where those are accurate.
        for &x in &[-3.0_f64, -0.5, 0.0, 0.7, 4.0] {
            assert!((sigmoid(m, x) - 1.0 / (1.0 + (-x).exp())).abs() < 1e-15);
            assert!((softplus(m, x) - (1.0 + x.exp()).ln()).abs() < 1e-14);
            assert!((log_sigmoid(m, x) - (1.0 / (1.0 + (-x).exp())).ln()).abs() < 1e-14);
        }
    }

    #[test]
    fn logistic_parts_give_softplus_and_sigmoid() {
        for m in [MulAdd::SEPARATE, MulAdd::FUSED] {
            logistic_parts_with(m);
        }
    }

    fn logistic_parts_with(m: MulAdd) {
        for &x in &[-1e4_f64, -40.0, -3.0, -0.5, 0.0, 0.7, 4.0, 40.0, 1e4] {
            let k = Logistic::new(m, x);
            let close = |a: f64, b: f64| (a - b).abs() <= 4.0 * f64::EPSILON * b.abs();
            assert!(close(x.max(0.0) + k.l, softplus(m, x)), "softplus(m, {x})");
            assert!(close((-x).max(0.0) + k.l, softplus(m, -x)), "softplus(m, −{x})");
            assert!(close(k.a * k.r, sigmoid(m, x)), "σ({x})");
            assert!(close(k.b * k.r, sigmoid(m, -x)), "σ(−{x})");
        }
        assert!(Logistic::new(m, f32::NAN).a.is_nan());
        assert!(Logistic::new(m, f32::NAN).l.is_nan());
    }

    #[test]
    fn logistic_parts_within_two_ulp_in_f32() {
        use crate::kernels::fastmath::tests::ulps32;
        // Every x in steps of 1/1024 over ±120 (through e^(−|x|)'s subnormal
        // range), against f64 evaluations of the same e^(−|x|) rounded once.
        for (i, m) in (-122_880..=122_880).flat_map(|i| [(i, MulAdd::SEPARATE), (i, MulAdd::FUSED)]) {
            let x = i as f32 / 1024.0;
            let k = Logistic::new(m, x);
            let z = f64::from(if x >= 0.0 { k.b } else { k.a });
            let want_l = z.ln_1p() as f32;
            assert!(ulps32(k.l, want_l) <= 2, "l at {x}: {} vs {want_l}", k.l);
            let want_r = (1.0 / (1.0 + z)) as f32;
            assert!(ulps32(k.r, want_r) <= 1, "r at {x}: {} vs {want_r}", k.r);
        }
    }
}
