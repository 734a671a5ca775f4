//! Elementwise functions of one input: `y = f(x)` and its derivative `dy/dx`,
//! written side by side; the derivative may use `x` or `y`, whichever is cheaper.

use super::Op;
use crate::error::{Domain, Error, Result, parameter};
use crate::float::Float;
use crate::kernels::fastmath::{self, MulAdd};
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
    /// `powf` with a small integer exponent: repeated products, which
    /// vectorise, where `powf` is a libm call per element.
    Powi(i32),
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
    pub(crate) fn apply(self, m: MulAdd, x: F) -> F {
        let zero = F::zero();
        match self {
            Unary::Neg => -x,
            // The branch-free versions (within 1–2 ulp), which vectorise.
            Unary::Exp => fastmath::exp(m, x),
            Unary::Ln => fastmath::ln(m, x),
            Unary::Log1p => fastmath::ln_1p(m, x),
            Unary::Sqrt => x.sqrt(),
            Unary::Square => x * x,
            Unary::Powf(p) => x.powf(p),
            Unary::Powi(n) => powi(x, n),
            Unary::Abs => x.abs(),
            // Comparisons rather than `F::max`, so that NaN propagates.
            Unary::Relu => {
                if x <= zero {
                    zero
                } else {
                    x
                }
            }
            Unary::Sigmoid => sigmoid(m, x),
            Unary::Tanh => x.tanh(),
            Unary::Softplus => softplus(m, x),
            Unary::LogSigmoid => log_sigmoid(m, x),
            Unary::Clamp(lo, hi) => {
                if x < lo {
                    lo
                } else if x > hi {
                    hi
                } else {
                    x
                }
            }
            Unary::AddScalar(c) => x + c,
            Unary::MulScalar(c) => x * c,
        }
    }

    /// `dy/dx` for one element, given `x` and `y = f(x)`. At kinks it takes
    /// PyTorch's choice: `relu'(0) = 0`, `abs'(0) = 0`, and clamp passes the
    /// gradient only strictly inside `(min, max)` (torch 2.15, scalar bounds).
    #[inline(always)]
    pub(crate) fn derivative(self, m: MulAdd, x: F, y: F) -> F {
        let (zero, one) = (F::zero(), F::one());
        match self {
            Unary::Neg => -one,
            Unary::Exp => y,
            Unary::Ln => one / x,
            Unary::Log1p => one / (one + x),
            Unary::Sqrt => F::from_f64(0.5) / y,
            Unary::Square => x + x,
            Unary::Powf(p) => p * x.powf(p - one),
            // The constant x⁰ has slope 0, also at x = 0 (0·0⁻¹ would be NaN).
            Unary::Powi(0) => zero,
            Unary::Powi(n) => F::from_f64(f64::from(n)) * powi(x, n - 1),
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
            Unary::Softplus => sigmoid(m, x),
            Unary::LogSigmoid => sigmoid(m, -x),
            Unary::Clamp(lo, hi) => {
                if x > lo && x < hi {
                    one
                } else {
                    zero
                }
            }
            Unary::AddScalar(_) => one,
            Unary::MulScalar(c) => c,
        }
    }

    /// `dy/dx` when it is the same finite number for every element (`−x`,
    /// `x + c`, `c·x`): the fusion then passes a gradient on without a pass
    /// of its own.
    pub(crate) fn constant_derivative(self) -> Option<F> {
        match self {
            Unary::Neg => Some(-F::one()),
            Unary::AddScalar(_) => Some(F::one()),
            Unary::MulScalar(c) if c.is_finite() => Some(c),
            _ => None,
        }
    }
}

/// Expands `$run!(op)` once per variant of `$f`, with `op` an expression
/// that builds that variant (`Unary::Square`, `Unary::Powf(p)`). Used inside
/// a closure, the variant is then a constant there: a loop is compiled once
/// per function, with `apply` or `derivative` folded into straight-line (and,
/// where the maths allows, vectorised) code instead of a jump on the variant
/// for every element.
macro_rules! specialise {
    ($f:expr, $run:ident) => {
        match $f {
            Unary::Neg => $run!(Unary::Neg),
            Unary::Exp => $run!(Unary::Exp),
            Unary::Ln => $run!(Unary::Ln),
            Unary::Log1p => $run!(Unary::Log1p),
            Unary::Sqrt => $run!(Unary::Sqrt),
            Unary::Square => $run!(Unary::Square),
            Unary::Powf(p) => $run!(Unary::Powf(p)),
            // The exponents worth a loop of their own (focal's default γ = 2).
            Unary::Powi(2) => $run!(Unary::Powi(2)),
            Unary::Powi(3) => $run!(Unary::Powi(3)),
            Unary::Powi(n) => $run!(Unary::Powi(n)),
            Unary::Abs => $run!(Unary::Abs),
            Unary::Relu => $run!(Unary::Relu),
            Unary::Sigmoid => $run!(Unary::Sigmoid),
            Unary::Tanh => $run!(Unary::Tanh),
            Unary::Softplus => $run!(Unary::Softplus),
            Unary::LogSigmoid => $run!(Unary::LogSigmoid),
            Unary::Clamp(lo, hi) => $run!(Unary::Clamp(lo, hi)),
            Unary::AddScalar(c) => $run!(Unary::AddScalar(c)),
            Unary::MulScalar(c) => $run!(Unary::MulScalar(c)),
        }
    };
}
pub(crate) use specialise as specialise_unary;

/// `xⁿ` by repeated squaring (`n` may be negative).
#[inline(always)]
fn powi<F: Float>(x: F, n: i32) -> F {
    let (mut base, mut k, mut result) = (x, n.unsigned_abs(), F::one());
    while k > 0 {
        if k & 1 == 1 {
            result *= base;
        }
        base *= base;
        k >>= 1;
    }
    if n < 0 { F::one() / result } else { result }
}

/// Elementwise functions of one value.
///
/// These never fail on the array itself: they return `Result` so that
/// compositions chain with `?`. Only the scalar arguments are checked:
/// `powf`, `add_scalar` and `mul_scalar` reject a NaN or infinite one, `clamp`
/// a NaN bound (an infinite bound clamps one side only). Values follow
/// IEEE arithmetic (`ln` of a negative is NaN, `exp` may overflow to `+∞`),
/// and a NaN input gives a NaN output for every function here.
// `neg` is a pinned name; returning `Result`, it cannot be `std::ops::Neg`.
#[allow(clippy::should_implement_trait)]
impl<'t, F: Float> Var<'t, F> {
    /// Records `f(self)`, computed lazily (see `tape/fusion.rs`).
    fn unary(self, f: Unary<F>) -> Result<Var<'t, F>> {
        Ok(self.record_lazy(self.shape(), Op::Unary { input: self.index, f }))
    }

    /// `−x`.
    ///
    /// # Errors
    /// None: always `Ok`.
    pub fn neg(self) -> Result<Var<'t, F>> {
        self.unary(Unary::Neg)
    }

    /// `eˣ`; derivative `eˣ`.
    ///
    /// # Errors
    /// None: always `Ok`.
    pub fn exp(self) -> Result<Var<'t, F>> {
        self.unary(Unary::Exp)
    }

    /// Natural logarithm; derivative `1/x`. `ln 0 = −∞` and a negative input
    /// gives NaN, as in IEEE arithmetic: clamp first where that can happen.
    ///
    /// # Errors
    /// None: always `Ok`.
    pub fn ln(self) -> Result<Var<'t, F>> {
        self.unary(Unary::Ln)
    }

    /// `ln(1 + x)`, accurate for small `x`; derivative `1/(1 + x)`.
    ///
    /// # Errors
    /// None: always `Ok`.
    pub fn log1p(self) -> Result<Var<'t, F>> {
        self.unary(Unary::Log1p)
    }

    /// `√x`; derivative `1/(2√x)`, which is `+∞` at 0.
    ///
    /// # Errors
    /// None: always `Ok`.
    pub fn sqrt(self) -> Result<Var<'t, F>> {
        self.unary(Unary::Sqrt)
    }

    /// `x²`; derivative `2x`.
    ///
    /// # Errors
    /// None: always `Ok`.
    pub fn square(self) -> Result<Var<'t, F>> {
        self.unary(Unary::Square)
    }

    /// `xᵖ`; derivative `p·xᵖ⁻¹`, and 0 everywhere for `p = 0` (also at
    /// `x = 0`, as PyTorch's `pow`). A negative `x` with a fractional `p`
    /// gives NaN, as `f64::powf` does; integer exponents up to 16 in size are
    /// computed as products, which vectorise.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] when `p` is NaN or infinite.
    pub fn powf(self, p: F) -> Result<Var<'t, F>> {
        // `0·∞`, `∞ − ∞` and `0^−∞` would turn numbers into NaN.
        parameter("powf(p)", p.as_f64(), Domain::Finite)?;
        // Integer exponents as products: exact where `powf` rounds anyway,
        // and vectorised.
        if p.fract() == F::zero() && p.abs() <= F::from_f64(16.0) {
            return self.unary(Unary::Powi(p.as_f64() as i32));
        }
        self.unary(Unary::Powf(p))
    }

    /// `|x|`; derivative `sign(x)`, taken as 0 at `x = 0` like PyTorch.
    ///
    /// # Errors
    /// None: always `Ok`.
    pub fn abs(self) -> Result<Var<'t, F>> {
        self.unary(Unary::Abs)
    }

    /// `max(x, 0)`; derivative 1 for `x > 0`, else 0 (0 at the kink, like
    /// PyTorch). NaN stays NaN.
    ///
    /// ```
    /// # use tapeloss::{Tape, ndarray::array};
    /// # fn main() -> tapeloss::Result<()> {
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(array![-1.0, 0.0, 2.0].into_dyn());
    /// let grads = tape.backward(x.relu()?.sum()?)?;
    /// assert_eq!(grads.wrt(x).unwrap(), &array![0.0, 0.0, 1.0].into_dyn());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// None: always `Ok`.
    pub fn relu(self) -> Result<Var<'t, F>> {
        self.unary(Unary::Relu)
    }

    /// `σ(x) = 1/(1 + e⁻ˣ)`, stable for any `x`; derivative `σ(x)(1 − σ(x))`.
    ///
    /// # Errors
    /// None: always `Ok`.
    pub fn sigmoid(self) -> Result<Var<'t, F>> {
        self.unary(Unary::Sigmoid)
    }

    /// `tanh x`; derivative `1 − tanh² x`.
    ///
    /// # Errors
    /// None: always `Ok`.
    pub fn tanh(self) -> Result<Var<'t, F>> {
        self.unary(Unary::Tanh)
    }

    /// `ln(1 + eˣ)`, computed as `max(x, 0) + ln(1 + e^(−|x|))` so it is exact
    /// and finite for any finite `x`; derivative `σ(x)`.
    ///
    /// ```
    /// # use tapeloss::{Tape, ndarray::array};
    /// # fn main() -> tapeloss::Result<()> {
    /// let tape = Tape::<f32>::new();
    /// let y = tape.var(array![1e4_f32, -1e4].into_dyn()).softplus()?;
    /// assert_eq!(y.value(), array![1e4_f32, 0.0].into_dyn()); // no overflow
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// None: always `Ok`.
    pub fn softplus(self) -> Result<Var<'t, F>> {
        self.unary(Unary::Softplus)
    }

    /// `ln σ(x) = −softplus(−x)`, finite for any finite `x`; derivative `σ(−x)`.
    ///
    /// # Errors
    /// None: always `Ok`.
    pub fn log_sigmoid(self) -> Result<Var<'t, F>> {
        self.unary(Unary::LogSigmoid)
    }

    /// Clamps into `[min, max]`; derivative 1 strictly inside `(min, max)`,
    /// else 0: at a bound the gradient is 0, as in PyTorch 2.15's `clamp` with
    /// scalar bounds. Infinite bounds are allowed, so
    /// `clamp(0, ∞)` bounds one side only; NaN stays NaN.
    ///
    /// ```
    /// # use tapeloss::{Tape, ndarray::array};
    /// # fn main() -> tapeloss::Result<()> {
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(array![-2.0, 0.0, 1.0, 3.0].into_dyn());
    /// let y = x.clamp(0.0, 1.0)?;
    /// assert_eq!(y.value(), array![0.0, 0.0, 1.0, 1.0].into_dyn());
    /// let grads = tape.backward(y.sum()?)?;
    /// assert_eq!(grads.wrt(x).unwrap(), &array![0.0, 0.0, 0.0, 0.0].into_dyn()); // 0 at and beyond the bounds
    /// assert!(x.clamp(1.0, 0.0).is_err());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] when `min > max` or either bound is NaN.
    pub fn clamp(self, min: F, max: F) -> Result<Var<'t, F>> {
        parameter("clamp(min)", min.as_f64(), Domain::NotNan)?;
        parameter("clamp(max)", max.as_f64(), Domain::NotNan)?;
        if min > max {
            return Err(Error::InvalidParameter {
                name: format!("clamp(min = {min}, max = {max})"),
                value: min.as_f64(),
                expected: "min ≤ max",
            });
        }
        self.unary(Unary::Clamp(min, max))
    }

    /// `x + c` for a scalar `c`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] when `c` is NaN or infinite.
    pub fn add_scalar(self, c: F) -> Result<Var<'t, F>> {
        parameter("add_scalar(c)", c.as_f64(), Domain::Finite)?;
        self.unary(Unary::AddScalar(c))
    }

    /// `c·x` for a scalar `c`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] when `c` is NaN or infinite.
    pub fn mul_scalar(self, c: F) -> Result<Var<'t, F>> {
        parameter("mul_scalar(c)", c.as_f64(), Domain::Finite)?;
        self.unary(Unary::MulScalar(c))
    }
}
