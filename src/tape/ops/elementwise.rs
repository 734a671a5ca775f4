//! Elementwise functions of one input: `y = f(x)` and its derivative `dy/dx`,
//! written side by side; the derivative may use `x` or `y`, whichever is cheaper.

use ndarray::{ArrayD, Zip};

use super::Op;
use crate::error::{Error, Result};
use crate::float::Float;
use crate::kernels::scalar::{log_sigmoid, sigmoid, softplus};
use crate::tape::Var;

/// An elementwise function of one input, with its parameters.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Unary<F> {
    Neg,
    Exp,
    Ln,
    Log1p,
    Sqrt,
    Square,
    Powf(F),
    Abs,
    Relu,
    Sigmoid,
    Tanh,
    Softplus,
    LogSigmoid,
    Clamp(F, F),
    AddScalar(F),
    MulScalar(F),
}

impl<F: Float> Unary<F> {
    /// `y = f(x)` for one element.
    #[inline(always)]
    fn apply(self, x: F) -> F {
        let zero = F::zero();
        match self {
            Unary::Neg => -x,
            Unary::Exp => x.exp(),
            Unary::Ln => x.ln(),
            Unary::Log1p => x.ln_1p(),
            Unary::Sqrt => x.sqrt(),
            Unary::Square => x * x,
            Unary::Powf(p) => x.powf(p),
            Unary::Abs => x.abs(),
            Unary::Relu => x.max(zero),
            Unary::Sigmoid => sigmoid(x),
            Unary::Tanh => x.tanh(),
            Unary::Softplus => softplus(x),
            Unary::LogSigmoid => log_sigmoid(x),
            Unary::Clamp(lo, hi) => x.max(lo).min(hi),
            Unary::AddScalar(c) => x + c,
            Unary::MulScalar(c) => x * c,
        }
    }

    /// `dy/dx` for one element, given `x` and `y = f(x)`. At kinks it takes
    /// PyTorch's choice: `relu'(0) = 0`, `abs'(0) = 0`, and clamp passes the
    /// gradient on the closed interval `[min, max]`.
    #[inline(always)]
    fn derivative(self, x: F, y: F) -> F {
        let (zero, one) = (F::zero(), F::one());
        match self {
            Unary::Neg => -one,
            Unary::Exp => y,
            Unary::Ln => one / x,
            Unary::Log1p => one / (one + x),
            Unary::Sqrt => F::from_f64(0.5) / y,
            Unary::Square => x + x,
            Unary::Powf(p) => p * x.powf(p - one),
            Unary::Abs => {
                if x > zero {
                    one
                } else if x < zero {
                    -one
                } else {
                    zero
                }
            }
            Unary::Relu => {
                if x > zero {
                    one
                } else {
                    zero
                }
            }
            Unary::Sigmoid => y * (one - y),
            Unary::Tanh => one - y * y,
            Unary::Softplus => sigmoid(x),
            Unary::LogSigmoid => sigmoid(-x),
            Unary::Clamp(lo, hi) => {
                if x >= lo && x <= hi {
                    one
                } else {
                    zero
                }
            }
            Unary::AddScalar(_) => one,
            Unary::MulScalar(c) => c,
        }
    }
}

/// The local backward rule: `dx = grad ⊙ f'(x)`.
pub(crate) fn backward<F: Float>(f: Unary<F>, x: &ArrayD<F>, y: &ArrayD<F>, grad: &ArrayD<F>) -> ArrayD<F> {
    Zip::from(grad)
        .and(x)
        .and(y)
        .map_collect(|&g, &x, &y| g * f.derivative(x, y))
}

/// Elementwise functions of one value.
impl<'t, F: Float> Var<'t, F> {
    fn unary(self, f: Unary<F>) -> Result<Var<'t, F>> {
        let value = self.value_ref().mapv(|x| f.apply(x));
        Ok(self.record(value, Op::Unary { input: self.index, f }))
    }

    /// `−x`.
    pub fn neg(self) -> Result<Var<'t, F>> {
        self.unary(Unary::Neg)
    }

    /// `eˣ`; derivative `eˣ`.
    pub fn exp(self) -> Result<Var<'t, F>> {
        self.unary(Unary::Exp)
    }

    /// Natural logarithm; derivative `1/x`. `ln 0 = −∞` and a negative input
    /// gives NaN, as in IEEE arithmetic: clamp first where that can happen.
    pub fn ln(self) -> Result<Var<'t, F>> {
        self.unary(Unary::Ln)
    }

    /// `ln(1 + x)`, accurate for small `x`; derivative `1/(1 + x)`.
    pub fn log1p(self) -> Result<Var<'t, F>> {
        self.unary(Unary::Log1p)
    }

    /// `√x`; derivative `1/(2√x)`, which is `+∞` at 0.
    pub fn sqrt(self) -> Result<Var<'t, F>> {
        self.unary(Unary::Sqrt)
    }

    /// `x²`; derivative `2x`.
    pub fn square(self) -> Result<Var<'t, F>> {
        self.unary(Unary::Square)
    }

    /// `xᵖ`; derivative `p·xᵖ⁻¹`.
    pub fn powf(self, p: F) -> Result<Var<'t, F>> {
        self.unary(Unary::Powf(p))
    }

    /// `|x|`; derivative `sign(x)`, taken as 0 at `x = 0` like PyTorch.
    pub fn abs(self) -> Result<Var<'t, F>> {
        self.unary(Unary::Abs)
    }

    /// `max(x, 0)`; derivative 1 for `x > 0`, else 0 (0 at the kink, like PyTorch).
    pub fn relu(self) -> Result<Var<'t, F>> {
        self.unary(Unary::Relu)
    }

    /// `σ(x) = 1/(1 + e⁻ˣ)`, stable for any `x`; derivative `σ(x)(1 − σ(x))`.
    pub fn sigmoid(self) -> Result<Var<'t, F>> {
        self.unary(Unary::Sigmoid)
    }

    /// `tanh x`; derivative `1 − tanh² x`.
    pub fn tanh(self) -> Result<Var<'t, F>> {
        self.unary(Unary::Tanh)
    }

    /// `ln(1 + eˣ)`, computed as `max(x, 0) + ln(1 + e^(−|x|))` so it is exact
    /// and finite for any finite `x`; derivative `σ(x)`.
    pub fn softplus(self) -> Result<Var<'t, F>> {
        self.unary(Unary::Softplus)
    }

    /// `ln σ(x) = −softplus(−x)`, finite for any finite `x`; derivative `σ(−x)`.
    pub fn log_sigmoid(self) -> Result<Var<'t, F>> {
        self.unary(Unary::LogSigmoid)
    }

    /// Clamps into `[min, max]`; derivative 1 inside the closed interval, else 0
    /// (PyTorch's convention at the bounds).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] when `min > max` or either bound is NaN.
    pub fn clamp(self, min: F, max: F) -> Result<Var<'t, F>> {
        if min.is_nan() || max.is_nan() || min > max {
            return Err(Error::InvalidParameter {
                name: format!("clamp(min = {min}, max = {max})"),
                value: if min.is_nan() { min.as_f64() } else { max.as_f64() },
                expected: "bounds that are not NaN, with min ≤ max",
            });
        }
        self.unary(Unary::Clamp(min, max))
    }

    /// `x + c` for a scalar `c`.
    pub fn add_scalar(self, c: F) -> Result<Var<'t, F>> {
        self.unary(Unary::AddScalar(c))
    }

    /// `c·x` for a scalar `c`.
    pub fn mul_scalar(self, c: F) -> Result<Var<'t, F>> {
        self.unary(Unary::MulScalar(c))
    }
}
