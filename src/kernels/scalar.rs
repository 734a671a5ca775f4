//! Numerically stable scalar functions shared by tape ops and closed forms.

use crate::float::Float;

/// The logistic function 1 / (1 + e^(−x)), without overflow for any x.
#[inline(always)]
pub(crate) fn sigmoid<F: Float>(x: F) -> F {
    // e^(−|x|) ≤ 1, so neither branch overflows.
    let z = (-x.abs()).exp();
    if x >= F::zero() {
        F::one() / (F::one() + z)
    } else {
        z / (F::one() + z)
    }
}

/// ln(1 + e^x), as max(x, 0) + ln(1 + e^(−|x|)): exact for large |x|.
#[inline(always)]
pub(crate) fn softplus<F: Float>(x: F) -> F {
    x.max(F::zero()) + (-x.abs()).exp().ln_1p()
}

/// ln σ(x) = −softplus(−x), finite for every finite x.
#[inline(always)]
pub(crate) fn log_sigmoid<F: Float>(x: F) -> F {
    x.min(F::zero()) - (-x.abs()).exp().ln_1p()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_at_extremes() {
        assert_eq!(sigmoid(1e4_f64), 1.0);
        assert_eq!(sigmoid(-1e4_f64), 0.0);
        assert_eq!(softplus(1e4_f32), 1e4);
        assert_eq!(softplus(-1e4_f32), 0.0);
        assert_eq!(log_sigmoid(-1e4_f64), -1e4);
        // Against the naive forms where those are accurate.
        for &x in &[-3.0_f64, -0.5, 0.0, 0.7, 4.0] {
            assert!((sigmoid(x) - 1.0 / (1.0 + (-x).exp())).abs() < 1e-15);
            assert!((softplus(x) - (1.0 + x.exp()).ln()).abs() < 1e-14);
            assert!((log_sigmoid(x) - (1.0 / (1.0 + (-x).exp())).ln()).abs() < 1e-14);
        }
    }
}
